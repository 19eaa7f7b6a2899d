"""Load commands (`-t`, LOAD_CMD, XEN_LOAD, DOM0_LOAD, DOMU_LOAD[n]) checked against U-Boot's.

The script writes `<load command> <address> <file>` for every binary, so the command must be one
of U-Boot's that load a named file to an address; a typo (a vendor template's `ex4load`) only
shows on the board as "Unknown command". A command we do not know may still exist in a vendor's
U-Boot, so this is a warning, with the closest known name.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ibtasks.errors import UserError
from ibtasks.formats.hush import describe_char, first_control

# The seed's -t shorthands, plus upstream's usb and virtio.
LOAD_CMD_ALIASES = {
    "tftp": "tftpb",
    "sd": "load mmc 0:1",
    "scsi": "load scsi 0:1",
    "usb": "fatload usb 0:1",
    "virtio": "load virtio 0:1",
}

# Partition numbers on our disk: the boot partition is 1, dom0's rootfs 2, then one per domU
# rootfs in domU order (only partitions that exist are counted).
BOOT_PARTITION = 1
DOM0_ROOTFS_PARTITION = 2

# U-Boot's commands that take `[<interface> <dev[:part]>] <addr> <filename>`, from its cmd/
# directory: the generic `load` (cmd/fs.c; also btrfs, exfat), one per filesystem (fat.c,
# ext2.c, ext4.c, sqfs.c, erofs.c, zfs.c, ubifs.c, jffs2.c's fsload, cramfs.c) and the network
# ones of cmd/net.c (`[loadAddress] [[hostIPaddr:]bootfilename]`). `tftpb` and `tftp` are the
# abbreviations of `tftpboot` that U-Boot's docs and the seed's `-t tftp` use (U-Boot accepts a
# unique prefix of a command name).
FILE_LOAD_COMMANDS = (
    "load", "fatload", "ext2load", "ext4load", "sqfsload", "erofsload", "zfsload", "ubifsload",
    "fsload", "cramfsload",
    "tftpboot", "tftpb", "tftp", "dhcp", "bootp", "rarpboot", "nfs", "wget",
)


def load_command_word(command: str) -> str:
    """The command that receives the address and file name: the first word of the last
    command of `command` (`usb start; fatload usb 0:1` -> `fatload`)."""
    last = re.split(r";|&&|\|\|", command)[-1]
    words = last.split()
    return words[0] if words else ""


def check_load_command(command: str, label: str, where: str | None) -> tuple[str | None,
                                                                             str | None]:
    """(an error, a warning) about the load command `command` given as `label` (`-t`,
    `DOMU_LOAD[0]`) at `where`; either may be None.

    An error when it has a control character (it would end the script line); a warning when
    its command word is not one of `FILE_LOAD_COMMANDS`, suggesting the closest by difflib.
    """
    place = f"{where}: " if where else ""
    control = first_control(command)
    if control is not None:
        return (f"{label}: the load command has a control character ({describe_char(control)})",
                None)
    word = load_command_word(command)
    if word in FILE_LOAD_COMMANDS:
        return None, None
    close = difflib.get_close_matches(word, FILE_LOAD_COMMANDS, n=1)
    hint = f"; did you mean {close[0]}?" if close else (
        f" (known: {', '.join(FILE_LOAD_COMMANDS)})")
    return None, (f"{place}{label}: '{word}' is not a U-Boot command that loads a file{hint}")


def resolve_load_cmd(text: str) -> str:
    """Map the seed's `-t` shorthands (tftp, sd, scsi) and upstream's (usb, virtio)."""
    return LOAD_CMD_ALIASES.get(text, text)


@dataclass(frozen=True)
class BlockDevice:
    """The disk U-Boot loads from, parsed from a load command such as `load mmc 0:1`."""

    kind: str  # mmc, scsi or virtio
    device: int
    partition: int  # the boot partition's number as U-Boot names it

    def partition_path(self, number: int) -> str:
        """Linux's name for partition `number` of this disk (mmcblk0p2, sda2, vda2)."""
        if self.kind == "mmc":
            return f"/dev/mmcblk{self.device}p{number}"
        prefix = "sd" if self.kind == "scsi" else "vd"
        return f"/dev/{prefix}{chr(ord('a') + self.device)}{number}"


def parse_block_device(load_cmd: str) -> BlockDevice | None:
    """The block device of a load command, or None when it loads from the network (tftpb)."""
    words = load_cmd.split()
    kind = next((w for w in ("mmc", "scsi", "virtio") if w in words), None)
    target = next((w for w in words if ":" in w), None)
    if kind is None or target is None:
        return None
    dev_text, _, part_text = target.partition(":")
    if not dev_text.isdigit() or not part_text.isdigit() or int(dev_text) > 25:
        return None
    return BlockDevice(kind, int(dev_text), int(part_text))


def number_rootfs_partitions(
    has_dom0_rootfs: bool, domu_has_rootfs: Sequence[bool]
) -> dict[int, int]:
    """Partition number of each domU rootfs: boot is 1, dom0's rootfs 2, then domUs in order.

    Only partitions that exist are counted (the original used 3 + domU index, quirk Q7).
    """
    numbers: dict[int, int] = {}
    next_number = DOM0_ROOTFS_PARTITION + (1 if has_dom0_rootfs else 0)
    for index, has_rootfs in enumerate(domu_has_rootfs):
        if has_rootfs:
            numbers[index] = next_number
            next_number += 1
    return numbers


def deduce_dom0_root(load_cmd: str, has_rootfs: bool) -> str:
    """The seed's `root=` for dom0: the ramdisk, or the partition after the boot partition of
    the load command's device (`load mmc 0:1` -> `root=/dev/mmcblk0p2`).

    Raises `UserError` (at DOM0_ROOTFS) when the load command names no disk Linux can name.
    """
    if not has_rootfs:
        return "root=/dev/ram0"
    device = parse_block_device(load_cmd)
    if device is None:
        raise UserError(
            f"cannot deduce dom0's root= from load command '{load_cmd}' (only mmc, scsi and "
            "virtio devices like 'load mmc 0:1'); add root= to DOM0_CMD",
            "DOM0_ROOTFS",
        )
    return f"root={device.partition_path(device.partition + DOM0_ROOTFS_PARTITION - 1)}"
