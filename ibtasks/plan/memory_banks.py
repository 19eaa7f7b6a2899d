"""RAM banks: the planned layout must lie inside the /memory banks of the DTB it boots with.

The seed checked the layout only against MEMORY_START/MEMORY_END, so a config whose range is
not RAM (a ZynqMP config with MEMORY_START=0 on a board whose RAM starts at 1 GiB) built a
script that U-Boot cannot load. Here every load, the boot script's slot included, must lie
inside one bank (adjacent banks count as one); MEMORY_START or MEMORY_END outside every bank
and a DTB without /memory are warnings: the loads are what must be RAM, and U-Boot fills in
/memory at boot on many boards (`fdt_fixup_memory_banks` from its own DRAM setup), so a DTB
without it boots there.
"""

from __future__ import annotations

from collections.abc import Sequence

from ibtasks.errors import UserError
from ibtasks.plan.layout import SLOT, Layout

Bank = tuple[int, int]  # (address, size in bytes), as a /memory reg entry


def merge_banks(banks: Sequence[Bank]) -> list[tuple[int, int]]:
    """The banks as sorted, disjoint (start, end) ranges, end exclusive; banks that touch or
    overlap are joined, so a load may span two adjacent banks."""
    merged: list[tuple[int, int]] = []
    for start, size in sorted(banks):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], start + size))
        else:
            merged.append((start, start + size))
    return merged


def describe_banks(banks: Sequence[Bank]) -> str:
    """`0x40000000-0xc0000000, 0x800000000-0x880000000` (merged ranges, end exclusive)."""
    return ", ".join(f"{start:#x}-{end:#x}" for start, end in merge_banks(banks))


def _inside(ranges: Sequence[tuple[int, int]], start: int, end: int) -> bool:
    return any(low <= start and end <= high for low, high in ranges)


def check_layout_in_banks(layout: Layout, banks: Sequence[Bank], dtb: str,
                          script_key: str = "UBOOT_SCRIPT") -> tuple[str, ...]:
    """Raise UserError unless the script slot (2 MiB) and every region of `layout` lie inside
    the RAM `banks` of the DTB named `dtb` (`DEVICE_TREE (board.dtb)`); return the warnings.

    The error names the region's key (`script_key` for the script's slot), its start and end
    in hex and the banks. No banks: one warning, nothing checked. MEMORY_START (first byte)
    or MEMORY_END (exclusive end) outside every bank: a warning naming the key.
    """
    if not banks:
        return (f"{dtb} has no /memory node (device_type = \"memory\") with a bank: the load "
                "addresses are not checked against RAM; U-Boot adds /memory at boot on many "
                "boards, but make sure MEMORY_START..MEMORY_END is RAM",)
    ranges = merge_banks(banks)
    where = f"its /memory banks are {describe_banks(banks)}"
    slots = [(script_key, layout.script_slot, layout.script_slot + SLOT)]
    slots += [(r.key, r.address, r.end) for r in layout.regions]
    for key, start, end in slots:
        if not _inside(ranges, start, max(end, start + 1)):
            raise UserError(
                f"loaded at {start:#x}-{end:#x}, which is not RAM of {dtb}: {where}; "
                "set MEMORY_START and MEMORY_END inside one of them",
                key,
            )
    warnings = []
    if not _inside(ranges, layout.memory_start, layout.memory_start + 1):
        warnings.append(f"MEMORY_START: {layout.memory_start:#x} is not RAM of {dtb} ({where})")
    if not any(low < layout.memory_end <= high for low, high in ranges):
        warnings.append(f"MEMORY_END: {layout.memory_end:#x} is not the end of or inside RAM "
                        f"of {dtb} ({where})")
    return tuple(warnings)
