"""Is DEVICE_TREE a board's DTB that the boot script can edit? Checked with its file check.

The script edits `/chosen` with `fdt set /chosen ...` as the original does, and U-Boot's `fdt set`
does not create a missing node (libfdt returns FDT_ERR_NOTFOUND); U-Boot adds /chosen itself only
later, in the boot command's own fixups. A DT overlay (`.dtbo`: `/fragment@N` nodes, `/__fixups__`)
has no /chosen and is not a board's tree at all: it belongs in DT_OVERLAY[n].
"""

from __future__ import annotations

from ibtasks.errors import UserError
from ibtasks.formats.fdtblob import read_fdt

OVERLAY_NODES = ("__fixups__", "__local_fixups__")


def check_host_dtb(data: bytes, key: str, name: str) -> None:
    """Raise `UserError` naming `key` (DEVICE_TREE) when the DTB `data` (the file `name`) is a
    DT overlay or has no /chosen node."""
    root = read_fdt(data, f"{key} ({name})")
    children = [child.name for child in root.children]
    overlay = next((c for c in children if c.startswith("fragment@") or c in OVERLAY_NODES),
                   None)
    if overlay is not None:
        raise UserError(f"{key}: {name} is a DT overlay (it has /{overlay}), not a board's DTB; "
                        f"give the board's DTB as {key} and the overlay as DT_OVERLAY[0] with "
                        "NUM_DT_OVERLAY=1")
    if "chosen" not in children:
        raise UserError(f"{key}: {name} has no /chosen node, which the script's `fdt set "
                        "/chosen ...` commands edit and U-Boot does not create; add "
                        "`chosen { };` to the board's .dts and compile it again")
