"""The emulated board: QEMU's machine, its command line and boot media, and what to type at
U-Boot to load a boot script from them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ibtasks.errors import UserError
from ibtasks.tools import find_tool, qemu_tool, run_tool

UBOOT_QEMU_ARM64 = Path("/usr/lib/u-boot/qemu_arm64/u-boot.bin")
"""U-Boot for QEMU's arm64 `virt` machine, from Debian's u-boot-qemu package."""


@dataclass(frozen=True)
class Machine:
    """The emulated board; the DTB dump and the boot must use the same values."""

    machine: str = "virt,virtualization=on,gic-version=3"
    cpu: str = "cortex-a57"
    smp: int = 2
    memory_mb: int = 2048
    qemu: str = "qemu-system-aarch64"
    accel: str = "tcg,thread=multi"

    @property
    def memory_start(self) -> int:
        """Where RAM starts on QEMU's arm64 `virt` machine."""
        return 0x40000000

    @property
    def memory_end(self) -> int:
        """Where RAM ends (exclusive), in bytes."""
        return self.memory_start + self.memory_mb * 1024 * 1024

    def base_args(self, machine_extra: str = "") -> list[str]:
        """QEMU's path and the machine's options; UserError naming the package if QEMU is
        missing."""
        return [
            find_tool(qemu_tool(self.qemu)),
            "-machine", self.machine + machine_extra,
            "-cpu", self.cpu,
            "-smp", str(self.smp),
            "-m", str(self.memory_mb),
        ]


def tftp_args(directory: Path) -> tuple[str, ...]:
    """A virtio network card on QEMU's user network, whose TFTP server serves `directory`."""
    return (
        "-netdev", f"user,id=net0,tftp={directory}",
        # romfile= : no iPXE option ROM; U-Boot drives the card itself.
        "-device", "virtio-net-pci,netdev=net0,romfile=",
    )


def tftp_commands(script: str = "boot.scr", address: int = 0x40000000) -> tuple[str, ...]:
    """U-Boot commands that fetch a boot script over TFTP from QEMU's user network and run it."""
    return (
        "setenv autoload no",
        "dhcp",
        "setenv serverip 10.0.2.2",
        f"tftpb {address:#x} {script}",
        f"source {address:#x}",
    )


def virtio_disk_args(image: Path, transport: str = "mmio") -> tuple[str, ...]:
    """A raw disk image as a virtio block device (`mmio` or `pci`); U-Boot calls it `virtio 0`."""
    device = "virtio-blk-device" if transport == "mmio" else "virtio-blk-pci"
    return (
        "-drive", f"if=none,file={image},format=raw,id=d0",
        "-device", f"{device},drive=d0",
    )


def ahci_disk_args(image: Path) -> tuple[str, ...]:
    """A raw disk image on an AHCI (SATA) controller; U-Boot calls it `scsi 0`."""
    return (
        "-device", "ahci,id=ahci0",
        "-drive", f"if=none,file={image},format=raw,id=d0",
        "-device", "ide-hd,drive=d0,bus=ahci0.0",
    )


def disk_commands(
    interface: str, partition: str = "0:1", script: str = "boot.scr", address: int = 0x40000000
) -> tuple[str, ...]:
    """U-Boot commands that load a boot script from a disk partition (`virtio` or `scsi`)."""
    return (
        f"{interface} scan",
        f"load {interface} {partition} {address:#x} {script}",
        f"source {address:#x}",
    )


def dump_dtb(machine: Machine, out: Path) -> None:
    """Write the DTB QEMU gives this machine (the one U-Boot passes on) to `out`.

    Raises UserError naming the QEMU package when QEMU is missing, or QEMU's last line when it
    cannot dump the DTB.
    """
    argv = [*machine.base_args(f",dumpdtb={out}"), "-display", "none"]
    failure = f"{machine.qemu} could not dump its DTB to {out}"
    run_tool(argv, failure, timeout=60)
    if not out.is_file():
        raise UserError(f"{failure}: no file written")
