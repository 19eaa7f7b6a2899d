"""boot.source: the U-Boot commands that load every binary, edit /chosen and start Xen (or Linux).

A pure function of the config, the layout and the /chosen edits, in the seed's order, so users
who know the original script can read and tweak it.
"""

from __future__ import annotations

import os

from ibtasks.config.board_paths import absolute_lexical, board_path
from ibtasks.config.model import Config
from ibtasks.formats.dtb.edits import Cells, DtEdit, MakeNode, Strings, render_fdt_command
from ibtasks.formats.hush import quote_word
from ibtasks.plan.fit import image_name
from ibtasks.plan.layout import Layout

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


def fdt_resize_bytes(edits: list[DtEdit], overlay_bytes: int = 0) -> int:
    """`fdt resize`'s argument: room for the edits and for what the overlays add (at most
    their own size). U-Boot reads it as hex, so the decimal number only errs on the large side."""
    growth = fdt_growth(edits) + overlay_bytes
    return max(MIN_FDT_RESIZE, (growth + MIN_FDT_RESIZE - 1) // MIN_FDT_RESIZE * MIN_FDT_RESIZE)


def script_path(config: Config, path: str) -> str:
    """How the script names an input, as one shell word: the path the board asks for
    (`Binary.path`, already relative to the root (-d) directory, or absolute outside it),
    after `-p PREPEND_PATH` when given, quoted for U-Boot's shell (`hush.quote_word`)."""
    return quote_word(_prepend(config, path))


def output_script_path(config: Config, name: str) -> str:
    """How the script names one of our outputs, which live in the output directory."""
    path, _ = board_path(config.root_dir, os.path.join(absolute_lexical(config.output_dir),
                                                         name))
    return quote_word(_prepend(config, path))


def _prepend(config: Config, path: str) -> str:
    prefix = config.boot.prepend_path
    return f"{prefix}/{path}" if prefix else path


def xen_uimage_name(config: Config) -> str:
    """BOOT_CMD=bootm loads Xen (or LINUX) wrapped as a uImage: `<path>.ub` in the output dir,
    beside the original when outputs go to the -d directory, as upstream's `$XEN.ub`."""
    return f"{config.xen.path}.ub"


def boot_command(config: Config, kernel: str, dtb: str) -> list[str]:
    """The last line(s) of the script for BOOT_CMD (reference doc §1.1)."""
    cmd = config.boot.boot_cmd
    if cmd == "none":
        return [f"setenv host_kernel_addr {kernel}", f"setenv host_fdt_addr {dtb}"]
    if cmd == "bootefi":  # bootefi takes the image and the DTB only
        return [f"bootefi {kernel} {dtb}"]
    return [f"{cmd} {kernel} - {dtb}"]


def extra_commands(config: Config) -> list[str]:
    """APPEND_EXTRA_CMDS's lines, read while generating (the file is a file_dep)."""
    extra = config.boot.append_extra_cmds
    if extra is None:
        return []
    return (config.root_dir / extra.path).read_text().splitlines()


def _load_path(config: Config, key: str, path: str) -> str:
    if config.preedited_dtb and key == config.device_tree.key:
        return output_script_path(config, config.fdtedit)
    if config.boot.boot_cmd == "bootm" and key == config.xen.key:
        return output_script_path(config, xen_uimage_name(config))
    return script_path(config, path)


def render_boot_source(config: Config, layout: Layout, edits: list[DtEdit]) -> str:
    """The whole boot.source text.

    With `preedited_dtb`, the script loads the edited DTB (FDTEDIT) at the DTB's address and
    has no `fdt` commands, for U-Boot builds without the `fdt` command; DT overlays are then
    already applied to FDTEDIT and not loaded.
    """
    lines: list[str] = ["fit_addr=$fileaddr"] if config.fit else []  # `source ADDR:boot_scr`
    overlays = {b.key for b in config.boot.dt_overlays}
    last: list[str] = []
    for region in layout.regions:
        if (config.preedited_dtb or config.fit) and region.key in overlays:
            continue  # already applied to the edited DTB that is loaded
        if config.fit:  # the binaries are in the FIT; the DTB there is already edited
            line = f"imxtract $fit_addr {image_name(region.key)} 0x{region.address:X}"
        else:
            load = config.boot.load_cmd_for(region.key, config.load_cmd)
            line = f"{load} 0x{region.address:X} {_load_path(config, region.key, region.path)}"
        # bootefi runs the image U-Boot loaded last ("No UEFI binary known at ..." otherwise):
        # Xen keeps its address but its load line moves after all others.
        (last if config.boot.boot_cmd == "bootefi" and region.key == config.xen.key
         else lines).append(line)
        if config.boot.bitstream and region.key == config.boot.bitstream.key:
            # The FPGA is assumed to be device 0, as upstream; fpga takes the size in hex.
            lines.append(f"fpga load 0 0x{region.address:X} 0x{region.size:X}")
    lines += last
    dtb = layout.region(config.device_tree.key).address
    if not config.preedited_dtb and not config.fit:
        overlay_regions = [r for r in layout.regions if r.key in overlays]
        lines.append(f"fdt addr 0x{dtb:X}")
        lines.append(f"fdt resize {fdt_resize_bytes(edits, sum(r.size for r in overlay_regions))}")
        lines += [f"fdt apply 0x{r.address:X}" for r in overlay_regions]
        lines += [render_fdt_command(edit) for edit in edits]
    lines.append("setenv fdt_high 0xffffffffffffffff")
    if config.boot.print_chosen:
        if config.preedited_dtb or config.fit:  # no `fdt addr` above: point `fdt` at the DTB
            lines.append(f"fdt addr 0x{dtb:X}")
        lines.append("fdt print /chosen")
    lines += extra_commands(config)
    xen = layout.region(config.xen.key).address
    lines += boot_command(config, f"0x{xen:X}", f"0x{dtb:X}")
    return "\n".join(lines) + "\n"


def render_final_message(config: Config, layout: Layout) -> str:
    """The seed's last two stdout lines: where to load the script and how to run it."""
    if config.fit:  # upstream's FIT message; the FIT goes after the last binary
        fit_addr = f"{layout.end:#x}"
        return (f"Generated uboot FIT image {config.fit.name}, to be loaded at or after address "
                f"{fit_addr}:\n{config.load_cmd} {fit_addr} {quote_word(config.fit.name)}; "
                f"source {fit_addr}:boot_scr\n")
    slot = f"0x{layout.script_slot:X}"
    script = quote_word(_prepend(config, config.uboot_script))
    return (f"Generated uboot script {config.uboot_script}, to be loaded at address {slot}:\n"
            f"{config.load_cmd} {slot} {script}; source {slot}\n")
