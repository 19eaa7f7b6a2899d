"""boot.source for `-s`: U-Boot computes every address at boot from `${filesize}`.

Nothing is read while generating (the files need not exist yet), so the script keeps a running
`memaddr`, records `<name>_addr`/`<name>_size` after each load, rounds `memaddr` up to 2 MiB
with `setexpr` (`/` and `*`, which need no shell quoting), and builds each `reg` from
`setexpr`-split high and low cells. The /chosen edits are the same `plan_chosen_edits` list as
without `-s`, planned on placeholder addresses that are then replaced by variable references.

Without DEVICE_TREE the script edits and boots with U-Boot's own control DTB
(`setenv host_fdt_addr ${fdtcontroladdr}`), as upstream since 2025-08.

What `-s` cannot do, as upstream: account for a kernel's bss (only the file is loaded), avoid
/reserved-memory, check that everything fits below MEMORY_END, or write the edited DTB.
"""

from __future__ import annotations

import re

from ibtasks.config.model import Config
from ibtasks.formats.dtb.edits import render_fdt_command
from ibtasks.formats.hush import quote_string
from ibtasks.plan.boot_script import boot_command, extra_commands, fdt_growth, script_path
from ibtasks.plan.chosen import plan_chosen_edits
from ibtasks.plan.layout import LOWEST_SCRIPT_SLOT, SLOT, Layout, Region

# Placeholder cells: address i is (ADDR_HI + i, ADDR_LO + i), size i is (SIZE_HI + i, SIZE_LO + i).
# ADDR_HI + SIZE_HI < 2^32, so a placeholder's end (linux,initrd-end) still fits 64 bits.
ADDR_HI, ADDR_LO, SIZE_HI, SIZE_LO = 0xA5A50000, 0xB5B50000, 0x35350000, 0xD5D50000


def variable_name(key: str) -> str:
    """The U-Boot variable stem of a key: `DOMU_KERNEL[1]` -> `domu_kernel_1`."""
    return re.sub(r"[^a-z0-9]+", "_", key.lower()).strip("_")


def script_slot(config: Config) -> int:
    """Where boot.scr goes; the modules follow one slot later (no DTB is read in this mode)."""
    return max(config.memory_start + SLOT, LOWEST_SCRIPT_SLOT)


def _placeholder_layout(config: Config) -> Layout:
    regions = []
    for i, binary in enumerate(config.binaries()):
        address = ((ADDR_HI + i) << 32) | (ADDR_LO + i)
        size = ((SIZE_HI + i) << 32) | (SIZE_LO + i)
        regions.append(Region(binary.key, binary.path, address, size))
    slot = script_slot(config)
    return Layout(config.memory_start, config.memory_end, slot, tuple(regions), slot)


def _split(var: str) -> list[str]:
    """`<var>_hi`/`<var>_lo` from `<var>`, without `&` (lo = var - hi * 2^32)."""
    return [f"setexpr {var}_hi ${{{var}}} / 0x100000000",
            f"setexpr {var}_lo ${{{var}_hi}} * 0x100000000",
            f"setexpr {var}_lo ${{{var}}} - ${{{var}_lo}}"]


def _symbolic(text: str, names: list[str]) -> str:
    """Replace the placeholder cells and unit addresses of `text` by variable references."""
    def cell(match: re.Match[str]) -> str:
        value = int(match.group(1), 16)
        for base, suffix in ((ADDR_HI, "addr_hi"), (ADDR_LO, "addr_lo"), (SIZE_HI, "size_hi"),
                             (SIZE_LO, "size_lo")):
            if base <= value < base + len(names):
                return f"0x${{{names[value - base]}_{suffix}}}"
        return match.group(0)

    def unit(match: re.Match[str]) -> str:
        return f"@${{{names[int(match.group(1), 16) - ADDR_HI]}_addr}}"

    text = re.sub(r"@([0-9A-F]{8})[0-9A-F]{8}\b", unit, text)
    return re.sub(r"\b0x([0-9A-F]{8})\b", cell, text)


def render_calc_boot_source(config: Config) -> str:
    """The whole `-s` boot.source text."""
    keys = [b.key for b in config.binaries()]
    names = [variable_name(key) for key in keys]
    overlays = [variable_name(b.key) for b in config.boot.dt_overlays]
    first = script_slot(config) + SLOT
    lines = [f"setenv memaddr 0x{first:X}"]
    order = list(zip(config.binaries(), names, strict=True))
    if config.boot.boot_cmd == "bootefi":  # bootefi runs the file loaded last: Xen
        order = order[1:] + order[:1]
    for binary, name in order:
        load = config.boot.load_cmd_for(binary.key, config.load_cmd)
        lines += [f"{load} ${{memaddr}} {script_path(config, binary.path)}",
                  f"setexpr {name}_addr ${{memaddr}}",
                  f"setenv {name}_size ${{filesize}}",
                  "setexpr memaddr ${memaddr} + ${filesize}",
                  f"setexpr memaddr ${{memaddr}} + 0x{SLOT - 1:X}",
                  f"setexpr memaddr ${{memaddr}} / 0x{SLOT:X}",
                  f"setexpr memaddr ${{memaddr}} * 0x{SLOT:X}"]
        if config.boot.bitstream and binary.key == config.boot.bitstream.key:
            lines.append(f"fpga load 0 ${{{name}_addr}} ${{{name}_size}}")
    if config.host_dtb is None:
        # No DEVICE_TREE: edit the DTB U-Boot itself runs with, as upstream does.
        dtb_addr = "${host_fdt_addr}"
        lines.append("setenv host_fdt_addr ${fdtcontroladdr}")
    else:
        dtb_addr = f"${{{variable_name(config.host_dtb.key)}_addr}}"
    edits = plan_chosen_edits(config, _placeholder_layout(config))
    lines.append(f"fdt addr {dtb_addr}")
    lines.append(f"setexpr fdt_room 0x{fdt_growth(edits) + 1024:X}")
    lines += [f"setexpr fdt_room ${{fdt_room}} + ${{{name}_size}}" for name in overlays]
    lines.append("fdt resize ${fdt_room}")
    lines += [f"fdt apply ${{{name}_addr}}" for name in overlays]
    if config.linux_mode:
        lines += _linux_edits(config)
    else:
        commands = [_symbolic(render_fdt_command(edit), names) for edit in edits]
        text = "\n".join(commands)
        for name in names:  # split only what a reg uses (Xen itself has no node)
            for var in (f"{name}_addr", f"{name}_size"):
                if f"${{{var}_hi}}" in text:
                    lines += _split(var)
        lines += commands
    lines.append("setenv fdt_high 0xffffffffffffffff")
    if config.boot.print_chosen:
        lines.append("fdt print /chosen")
    lines += extra_commands(config)
    lines += boot_command(config, f"${{{variable_name(config.xen.key)}_addr}}", dtb_addr)
    return "\n".join(lines) + "\n"


def _linux_edits(config: Config) -> list[str]:
    lines = [f"fdt set /chosen bootargs {quote_string(config.boot.linux_cmd)}"]
    if config.boot.linux_ramdisk:
        name = variable_name(config.boot.linux_ramdisk.key)
        lines.append(f"setexpr {name}_end ${{{name}_addr}} + ${{{name}_size}}")
        lines += _split(f"{name}_addr") + _split(f"{name}_end")
        lines += [f"fdt set /chosen linux,initrd-start <0x${{{name}_addr_hi}} "
                  f"0x${{{name}_addr_lo}}>",
                  f"fdt set /chosen linux,initrd-end <0x${{{name}_end_hi}} 0x${{{name}_end_lo}}>"]
    return lines
