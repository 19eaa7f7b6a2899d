"""The device tree of QEMU's arm64 `virt` machine for a Xen dom0less boot, and the machine a
DTB describes.

`write_virt_dtb` dumps the DTB QEMU itself generates for a `Machine` (same -cpu, -smp, -m,
gic-version and virtualization as the boot) and makes the three edits Xen's own CI makes, so a
config's DEVICE_TREE can name it. `machine_of_dtb` goes the other way: the cores, RAM and GIC
version a DTB describes, which `ibtasks run` boots by default.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from ibtasks.errors import UserError
from ibtasks.formats.dtb.facts import read_dt_facts
from ibtasks.formats.dtb.tree import node_prop, parse_dtb, walk
from ibtasks.fsutil import write_atomic
from ibtasks.qemu.machine import Machine, dump_dtb
from ibtasks.tools import DTC, FDTPUT, find_tool, run_tool

UART = "/pl011@9000000"
GPIO = "/pl061@9030000"
VIRT_RAM_START = 0x40000000  # where RAM starts on QEMU's arm64 `virt` machine

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


@dataclass(frozen=True)
class VirtOptions:
    """The options of QEMU's arm64 `virt` machine that its DTB shows: cores, RAM in MiB, the
    GIC version (2 or 3), and EL2 for Xen (virtualization=on)."""

    smp: int = 2
    memory_mb: int = 2048
    gic_version: int = 3
    virtualization: bool = True
    cpu: str = "cortex-a57"

    def machine(self) -> Machine:
        """The `Machine` with these options."""
        flags = f"virt,virtualization={'on' if self.virtualization else 'off'}" \
                f",gic-version={self.gic_version}"
        return Machine(machine=flags, cpu=self.cpu, smp=self.smp, memory_mb=self.memory_mb)


def write_virt_dtb(options: VirtOptions, out: Path) -> None:
    """Dump QEMU's DTB for `options`, apply `DTB_EDITS`, and write it atomically to `out`.

    Raises UserError naming the missing package (qemu-system-arm, device-tree-compiler) or the
    failing tool's last line."""
    with tempfile.TemporaryDirectory(prefix="ibtasks-virt-dtb.") as tmp:
        dtb = Path(tmp) / "virt.dtb"
        dump_dtb(options.machine(), dtb)
        for edit in DTB_EDITS:
            run_tool([find_tool(FDTPUT), str(dtb), *edit], f"fdtput {' '.join(edit)} on QEMU's DTB")
        # libfdt leaves stale bytes behind deleted properties; dtc writes the tree afresh
        # (to a file: run_tool keeps stdout as text).
        clean = Path(tmp) / "clean.dtb"
        run_tool([find_tool(DTC), "-q", "-I", "dtb", "-O", "dtb", "-o", str(clean), str(dtb)],
                 "dtc could not rewrite QEMU's DTB")
        write_atomic(out, clean.read_bytes())


def machine_of_dtb(data: bytes, source: str) -> VirtOptions:
    """The `virt` options a DTB describes: its `cpu@` nodes, the RAM of its /memory banks from
    0x40000000 (in MiB, rounded up), GICv3 when a node is `arm,gic-v3` (else 2), and
    virtualization on (Xen needs EL2). Raises UserError naming `source` when it has no cores or
    no RAM."""
    facts = read_dt_facts(data, source)
    cores = sum(1 for name in facts.cpus if name.startswith("cpu@") or name == "cpu")
    if not cores or not facts.memory:
        raise UserError(f"{source}: no /cpus cores or /memory banks: give --smp and --memory")
    end = max(address + size for address, size in facts.memory)
    memory_mb = -(-(end - VIRT_RAM_START) // (1 << 20))
    tree, _ = parse_dtb(data, source)
    gic = 2
    for node in walk(tree.root):
        compatible = node_prop(node, "compatible") or b""
        if b"arm,gic-v3" in compatible.split(b"\0"):
            gic = 3
    return VirtOptions(smp=cores, memory_mb=memory_mb, gic_version=gic)
