"""Build a Xen dom0less system from Debian's arm64 binaries with ibtasks and boot it under QEMU.

    doit -f examples/qemu-virt/dodo.py            # fetch, build, boot; prints a summary
    doit -f examples/qemu-virt/dodo.py list       # the tasks

Downloads go to the shared cache (`IBTASKS_CACHE`, default ~/.cache/ibtasks); everything else
to `build/` beside this file. A second run reuses the downloads and rebuilds nothing unchanged.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1])]

import board  # noqa: E402
import debian  # noqa: E402
import initramfs  # noqa: E402
import system  # noqa: E402
from doit.tools import config_changed  # noqa: E402

from ibtasks.fsutil import write_if_changed  # noqa: E402
from ibtasks.qemu.runner import BootSpec, Machine, boot, tftp_args, tftp_commands  # noqa: E402

STARTED = time.monotonic()
BUILD = HERE / "build"
TFTP = BUILD / "tftp"
CACHE = debian.cache_root()
MACHINE = Machine()

DOM0 = system.Domain(marker=system.marker_for("dom0"), kernel="Image", ramdisk="dom0.cpio.gz")
DOMUS = (
    system.Domain(marker=system.marker_for("domu0"), kernel="Image", ramdisk="domu0.cpio.gz",
                  mem_mb=256, cmd="console=ttyAMA0 example=domu0"),
    system.Domain(marker=system.marker_for("domu1"), kernel="Image", ramdisk="domu1.cpio.gz",
                  mem_mb=256, vcpus=1, cmd="console=ttyAMA0 example=domu1"),
)
BOOT_FILES = ("xen", "Image", "virt.dtb", "dom0.cpio.gz", "domu0.cpio.gz", "domu1.cpio.gz")

DOIT_CONFIG: dict[str, Any] = {
    "default_tasks": ["boot"],
    "verbosity": 2,
    "backend": "json",
    "dep_file": str(BUILD / ".doit.json"),
}


def say(message: str) -> None:
    print(f"qemu-virt: {message}", flush=True)


def fetch() -> None:
    found = debian.fetch_binaries(CACHE, say)
    versions = ", ".join(f"{name} {version}" for name, version in sorted(found.packages.items()))
    say(f"binaries: {versions}")


def binaries_present() -> bool:
    return debian.load_binaries(CACHE) is not None


def task_fetch() -> dict[str, Any]:
    """Download Xen, Linux and busybox for arm64 from Debian into the shared cache."""
    wanted = debian.expected_binaries(CACHE)
    return {
        "actions": [fetch],
        "targets": [str(wanted.xen), str(wanted.kernel), str(wanted.busybox)],
        "uptodate": [binaries_present],
    }


def link_binary(source: str, target: str) -> None:
    debian.copy_into(Path(source), Path(target))


def task_binaries() -> Iterator[dict[str, Any]]:
    """Put Xen and the kernel into the boot directory."""
    wanted = debian.expected_binaries(CACHE)
    for source, name in ((wanted.xen, "xen"), (wanted.kernel, "Image")):
        yield {
            "name": name,
            "actions": [(link_binary, [str(source), str(TFTP / name)])],
            "file_dep": [str(source)],
            "targets": [str(TFTP / name)],
        }


def write_initramfs(busybox: str, marker: str, target: str) -> None:
    image = initramfs.build_initramfs(Path(busybox).read_bytes(), marker)
    write_if_changed(target, image)
    say(f"initramfs {Path(target).name}: /init prints {marker} ({len(image)} bytes)")


def task_initramfs() -> Iterator[dict[str, Any]]:
    """One busybox initramfs per domain; its /init prints the domain's marker."""
    busybox = debian.expected_binaries(CACHE).busybox
    for domain in (DOM0, *DOMUS):
        target = TFTP / domain.ramdisk
        yield {
            "name": domain.ramdisk.split(".")[0],
            "actions": [(write_initramfs, [str(busybox), domain.marker, str(target)])],
            "file_dep": [str(busybox), str(HERE / "initramfs.py")],
            "targets": [str(target)],
            "uptodate": [config_changed({"marker": domain.marker})],
        }


def write_dtb(target: str) -> None:
    board.build_dtb(MACHINE, Path(target))
    say(f"device tree: QEMU's own for {MACHINE.cpu} x{MACHINE.smp}, {MACHINE.memory_mb} MiB, "
        "patched for Xen")


def task_dtb() -> dict[str, Any]:
    """Dump QEMU's device tree for this machine and patch it for Xen."""
    target = TFTP / "virt.dtb"
    return {
        "actions": [(write_dtb, [str(target)])],
        "file_dep": [str(HERE / "board.py")],
        "targets": [str(target)],
        "uptodate": [config_changed(repr(MACHINE))],
    }


def write_config(target: str) -> None:
    text = system.render_config(MACHINE, "xen", "virt.dtb", DOM0, DOMUS)
    write_if_changed(target, text.encode())


def task_config() -> dict[str, Any]:
    """The ImageBuilder config for dom0 and two dom0less domUs."""
    target = TFTP / "config"
    return {
        "actions": [(write_config, [str(target)])],
        "file_dep": [str(HERE / "system.py")],
        "targets": [str(target)],
        "uptodate": [config_changed(repr((MACHINE, DOM0, DOMUS)))],
    }


def make_script() -> None:
    output = system.generate_boot_script(TFTP / "config", TFTP)
    for line in output.strip().splitlines():
        say(f"uboot-script-gen: {line}")


def task_script() -> dict[str, Any]:
    """Run ibtasks' uboot-script-gen: boot.source and boot.scr for U-Boot."""
    return {
        "actions": [make_script],
        "file_dep": [str(TFTP / "config"), *(str(TFTP / name) for name in BOOT_FILES)],
        "targets": [str(TFTP / "boot.source"), str(TFTP / "boot.scr")],
    }


def run_boot(result_path: str) -> bool:
    markers = tuple(domain.marker for domain in (DOM0, *DOMUS))
    spec = BootSpec(
        commands=tftp_commands(),
        markers=markers,
        log_path=BUILD / "console.log",
        media_args=tftp_args(TFTP),
        machine=MACHINE,
    )
    say(f"booting under {MACHINE.qemu} (TCG) with U-Boot from {spec.firmware}; "
        f"waiting for {', '.join(markers)}")
    result = boot(spec)
    print(result.summary(), flush=True)
    say(f"total {time.monotonic() - STARTED:.1f} s for this run (boot {result.elapsed:.1f} s)")
    if not result.ok:
        print(f"last console lines:\n{result.tail(30)}", flush=True)
        return False
    summary = {
        "elapsed_seconds": result.elapsed,
        "markers": {marker: {"seconds": result.marker_times[marker],
                             "line": result.marker_lines[marker]} for marker in markers},
    }
    write_if_changed(result_path, (json.dumps(summary, indent=1) + "\n").encode())
    return True


def task_boot() -> dict[str, Any]:
    """Boot the system under QEMU and check that dom0 and every domU reach their /init."""
    return {
        "actions": [(run_boot, [str(BUILD / "boot-result.json")])],
        "file_dep": [str(TFTP / "boot.scr"), *(str(TFTP / name) for name in BOOT_FILES)],
        "targets": [str(BUILD / "boot-result.json")],
    }
