"""The device tree of QEMU's arm64 `virt` machine, made fit for Xen with Debian's kernels.

We boot with the DTB QEMU itself generates (dumped with the same -cpu/-smp/-m as the boot), with
three edits that Xen's own CI makes too.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from ibtasks.errors import UserError
from ibtasks.fsutil import write_atomic
from ibtasks.qemu.runner import Machine, dump_dtb

UART = "/pl011@9000000"
GPIO = "/pl061@9030000"

# Each is an fdtput argument list (after the file name).
DTB_EDITS: tuple[tuple[str, ...], ...] = (
    # Debian's kernel panics probing the PL061 GPIO as dom0 (Xen's CI disables it too).
    ("-t", "s", GPIO, "status", "disabled"),
    # Xen's default `dtuart=serial0` finds no UART without this alias: a silent boot.
    ("-c", "/aliases"),
    ("-t", "s", "/aliases", "serial0", UART),
    # QEMU puts fresh random seeds in every dump; without them two dumps are identical.
    ("-d", "/chosen", "rng-seed"),
    ("-d", "/chosen", "kaslr-seed"),
)


def build_dtb(machine: Machine, out: Path) -> None:
    """Dump QEMU's DTB for `machine`, apply `DTB_EDITS`, and write it to `out`."""
    with tempfile.TemporaryDirectory(prefix="qemu-virt-dtb.") as tmp:
        dtb = Path(tmp) / "virt.dtb"
        dump_dtb(machine, dtb)
        for edit in DTB_EDITS:
            _run(["fdtput", str(dtb), *edit])
        # libfdt leaves stale bytes behind deleted properties; dtc writes the tree afresh.
        write_atomic(out, _run(["dtc", "-q", "-I", "dtb", "-O", "dtb", str(dtb)]))


def _run(argv: list[str]) -> bytes:
    try:
        done = subprocess.run(argv, capture_output=True, check=False)
    except FileNotFoundError as exc:
        raise UserError(f"{argv[0]} not found: install device-tree-compiler") from exc
    if done.returncode != 0:
        raise UserError(f"{' '.join(argv)} failed on QEMU's DTB: {done.stderr.decode().strip()}")
    return done.stdout
