"""Whether a dom0 boots, and its command line: DOM0_KERNEL decides, the other DOM0_* keys need
it; a bare-metal LINUX boot has no Xen, no dom0 and no domUs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ibtasks.config.load_command import deduce_dom0_root
from ibtasks.errors import UserError

if TYPE_CHECKING:
    from ibtasks.config.reader import KeyReader

# Keys that describe dom0 and mean nothing without DOM0_KERNEL.
DOM0_KEYS = ("DOM0_RAMDISK", "DOM0_ROOTFS", "DOM0_CMD", "DOM0_MEM", "DOM0_VCPUS", "DOM0_COLORS")
# Keys a bare-metal LINUX boot cannot have.
XEN_ONLY_KEYS = ("DOM0_KERNEL", "DOM0_RAMDISK", "DOM0_ROOTFS", "XEN_CMD", "DOM0_CMD",
                 "DOM0_LOAD")


def check_dom0(reader: KeyReader) -> bool:
    """Whether a dom0 is started; without DOM0_KERNEL no other DOM0_* key may be set
    (`UserError` naming it)."""
    if reader.given("DOM0_KERNEL") is not None:
        return True
    for name in DOM0_KEYS:
        value = reader.raw.values.get((name, None))
        if value is not None and value.text:
            raise UserError(f"{name} is set but DOM0_KERNEL is not: without DOM0_KERNEL there "
                            "is no dom0", value.where)
    return False


def check_no_dom0(reader: KeyReader, num_domus: int) -> None:
    """A bare-metal LINUX boot: no key of Xen or dom0 and no domUs (`UserError` naming one)."""
    for name in XEN_ONLY_KEYS:
        if reader.where(name):
            raise UserError(f"{name}: a bare-metal LINUX boot has no Xen or dom0; remove it or "
                            "set XEN instead of LINUX", reader.where(name))
    if num_domus:
        raise UserError("NUM_DOMUS: a bare-metal LINUX boot has no domUs; set it to 0 or set "
                        "XEN instead of LINUX", reader.where("NUM_DOMUS"))


def dom0_command_line(reader: KeyReader, load_cmd: str, has_rootfs: bool) -> str:
    """DOM0_CMD (or its default) with `root=` added when missing, deduced from dom0's load
    command as the seed does (`load_command.deduce_dom0_root`)."""
    cmd = reader.command_line("DOM0_CMD")
    if "root=" in cmd:
        return cmd
    return f"{cmd} {deduce_dom0_root(load_cmd, has_rootfs)}".strip()
