"""The device tree of QEMU's arm64 `virt` machine, made fit for Xen with Debian's kernels: now
the product helper `ibtasks.qemu.board` (also `ibtasks qemu-dtb`); kept for the example and
the boot tests."""

from __future__ import annotations

from pathlib import Path

from ibtasks.qemu.board import DTB_EDITS, GPIO, UART, VirtOptions, write_virt_dtb
from ibtasks.qemu.runner import Machine, dump_dtb

__all__ = ["DTB_EDITS", "GPIO", "UART", "build_dtb", "dump_dtb"]


def build_dtb(machine: Machine, out: Path) -> None:
    """Dump QEMU's DTB for `machine`, apply `DTB_EDITS`, and write it to `out`."""
    flags = dict(part.split("=", 1) for part in machine.machine.split(",")[1:] if "=" in part)
    options = VirtOptions(smp=machine.smp, memory_mb=machine.memory_mb,
                          gic_version=int(flags.get("gic-version", "2")),
                          virtualization=flags.get("virtualization", "off") == "on",
                          cpu=machine.cpu)
    if options.machine() != machine:
        raise ValueError(f"machine {machine} is not a plain virt machine")
    write_virt_dtb(options, out)
