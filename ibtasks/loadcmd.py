"""Load commands (`-t`, LOAD_CMD, XEN_LOAD, DOM0_LOAD, DOMU_LOAD[n]) checked against U-Boot's.

The script writes `<load command> <address> <file>` for every binary, so the command must be one
of U-Boot's that load a named file to an address; a typo (a vendor template's `ex4load`) only
shows on the board as "Unknown command". A command we do not know may still exist in a vendor's
U-Boot, so this is a warning, with the closest known name.
"""

from __future__ import annotations

import difflib
import re

from ibtasks.hush import describe_char, first_control

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
