"""boot.source: the U-Boot commands that load every binary, edit /chosen and start Xen.

A pure function of the config, the layout and the /chosen edits, in the seed's order, so users
who know the original script can read and tweak it.
"""

from __future__ import annotations

import os

from ibtasks.config import Config
from ibtasks.dtedit import Cells, DtEdit, MakeNode, Strings, render_fdt_command
from ibtasks.fitplan import image_name
from ibtasks.layout import Layout

MIN_FDT_RESIZE = 1024  # the seed's `fdt resize 1024`


def fdt_growth(edits: list[DtEdit]) -> int:
    """An upper bound of the bytes the edits add to a DTB (FDT structure and strings blocks).

    `fdt resize` must make at least this much room, or U-Boot fails with FDT_ERR_NOSPACE once
    there are many domUs; the seed's fixed 1024 bytes runs out after a few.
    """
    def pad(n: int) -> int:
        return (n + 3) & ~3

    total = 0
    for edit in edits:
        if isinstance(edit, MakeNode):
            total += 8 + pad(len(edit.name) + 1)  # BEGIN_NODE + name, END_NODE
            continue
        if isinstance(edit.value, Strings):
            size = sum(len(item.encode()) + 1 for item in edit.value.items)
        elif isinstance(edit.value, Cells):
            size = 4 * len(edit.value.items)
        else:
            size = 0
        total += 12 + pad(size) + len(edit.name) + 1  # PROP header, value, name in strings
    return total


def fdt_resize_bytes(edits: list[DtEdit]) -> int:
    growth = fdt_growth(edits)
    return max(MIN_FDT_RESIZE, (growth + MIN_FDT_RESIZE - 1) // MIN_FDT_RESIZE * MIN_FDT_RESIZE)


def script_path(config: Config, path: str) -> str:
    """How the script names an input: relative to the root (-d) directory, as the seed."""
    return os.path.normpath(path)


def output_script_path(config: Config, name: str) -> str:
    """How the script names one of our outputs, which live in the output directory."""
    absolute = config.output_dir.resolve() / name
    return os.path.relpath(absolute, config.root_dir.resolve())


def render_boot_source(config: Config, layout: Layout, edits: list[DtEdit]) -> str:
    """The whole boot.source text.

    With `preedited_dtb`, the script loads the edited DTB (FDTEDIT) at the DTB's address and
    has no `fdt` commands, for U-Boot builds without the `fdt` command.
    """
    lines = ["fit_addr=$fileaddr"] if config.fit else []  # where `source ADDR:boot_scr` was
    for region in layout.regions:
        if config.fit:  # the binaries are in the FIT; the DTB there is already edited
            lines.append(f"imxtract $fit_addr {image_name(region.key)} 0x{region.address:X}")
            continue
        path = script_path(config, region.path)
        if config.preedited_dtb and region.key == config.device_tree.key:
            path = output_script_path(config, config.fdtedit)
        lines.append(f"{config.load_cmd} 0x{region.address:X} {path}")
    dtb = layout.region(config.device_tree.key).address
    if not config.preedited_dtb and not config.fit:
        lines.append(f"fdt addr 0x{dtb:X}")
        lines.append(f"fdt resize {fdt_resize_bytes(edits)}")
        lines += [render_fdt_command(edit) for edit in edits]
    lines.append("setenv fdt_high 0xffffffffffffffff")
    xen = layout.region(config.xen.key).address
    lines.append(f"booti 0x{xen:X} - 0x{dtb:X}")
    return "\n".join(lines) + "\n"


def render_final_message(config: Config, layout: Layout) -> str:
    """The seed's last two stdout lines: where to load the script and how to run it."""
    if config.fit:  # upstream's FIT message; the FIT goes after the last binary
        fit_addr = f"{layout.end:#x}"
        return (f"Generated uboot FIT image {config.fit.name}, to be loaded at or after address "
                f"{fit_addr}:\n{config.load_cmd} {fit_addr} {config.fit.name}; "
                f"source {fit_addr}:boot_scr\n")
    slot = f"0x{layout.script_slot:X}"
    return (f"Generated uboot script {config.uboot_script}, to be loaded at address {slot}:\n"
            f"{config.load_cmd} {slot} {config.uboot_script}; source {slot}\n")
