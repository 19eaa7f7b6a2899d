"""The memory plan: where the boot script and every binary are loaded.

Exactly the seed's allocation (each module 2 MiB aligned after the previous one, the script slot
at max(MEMORY_START + 2 MiB, 0xC00000)), with two additions: 64-bit addresses, and modules that
would overlap a `/reserved-memory` region move past it (upstream patch 2025-03, Q13).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from ibtasks.errors import UserError, hex_and_dec

SLOT = 2 * 1024 * 1024  # the seed's `offset`: alignment and the script's slot size
LOWEST_SCRIPT_SLOT = 0xC00000  # below 12 MiB clashes with Xen's 1:1 map (seed 4f647f9)
ADDRESS_LIMIT = 1 << 64  # addresses go into 64-bit cell pairs (/chosen has 2 + 2 cells)


def align_up(value: int, alignment: int = SLOT) -> int:
    return (value + alignment - 1) & ~(alignment - 1)


@dataclass(frozen=True)
class Module:
    """A file to load: its config key (`DOMU_KERNEL[0]`), path and size once loaded."""

    key: str
    path: str
    size: int


@dataclass(frozen=True)
class Region:
    """A module placed in memory."""

    key: str
    path: str
    address: int
    size: int

    @property
    def end(self) -> int:
        return self.address + self.size


@dataclass(frozen=True)
class Layout:
    """Where everything goes, and the first free address after the last module."""

    memory_start: int
    memory_end: int
    script_slot: int
    regions: tuple[Region, ...]
    end: int
    banks: tuple[tuple[int, int], ...] = ()  # the DTB's RAM (address, size); () if unknown
    warnings: tuple[str, ...] = ()  # found while checking the plan against `banks`

    def region(self, key: str) -> Region:
        for region in self.regions:
            if region.key == key:
                return region
        raise KeyError(key)

    def to_json(self) -> bytes:
        data = asdict(self)
        return (json.dumps(data, indent=1) + "\n").encode()

    @classmethod
    def from_json(cls, text: bytes) -> Layout:
        """Read `to_json`'s text; one of an older ibtasks, without banks and warnings, reads
        as none (its ib_layout task reruns anyway, as the DTB check's record changed)."""
        data = json.loads(text)
        regions = tuple(Region(**r) for r in data.pop("regions"))
        banks = tuple((int(a), int(s)) for a, s in data.pop("banks", []))
        warnings = tuple(str(w) for w in data.pop("warnings", []))
        return cls(regions=regions, banks=banks, warnings=warnings, **data)


def _past_reserved(address: int, size: int, reserved: Sequence[tuple[int, int]]) -> int:
    """The first 2 MiB-aligned address at or after `address` where `size` bytes avoid `reserved`."""
    moved = True
    while moved:
        moved = False
        for start, length in reserved:
            if address < start + length and start < address + max(size, 1):
                address = align_up(start + length)
                moved = True
    return address


def plan_layout(memory_start: int, memory_end: int, modules: Sequence[Module],
                reserved: Sequence[tuple[int, int]] = ()) -> Layout:
    """Place the script and `modules` (sizes in bytes) in order, skipping `reserved`
    (address, size) ranges; raise `UserError` if they do not end one 2 MiB slot below
    `memory_end` (the seed's rule) or if MEMORY_START/MEMORY_END do not fit in 64 bits.

    Addresses are Python integers, so nothing wraps: a module pushed past 2^64 by its size or
    by a reserved region near the top is caught by the MEMORY_END rule, and every address and
    end of a returned layout fits a 64-bit cell pair.
    """
    for key, value in (("MEMORY_START", memory_start), ("MEMORY_END", memory_end)):
        if not 0 <= value < ADDRESS_LIMIT:
            raise UserError(f"{value:#x} does not fit in 64 bits", key)
    slot = max(memory_start + SLOT, LOWEST_SCRIPT_SLOT)
    slot = _past_reserved(slot, SLOT, reserved)
    address = slot + SLOT
    regions = []
    for module in modules:
        address = _past_reserved(address, module.size, reserved)
        regions.append(Region(module.key, module.path, address, module.size))
        address = align_up(address + module.size)
    # The seed's check: the last module must end at least one 2 MiB slot below MEMORY_END.
    if memory_end - address - SLOT < 0:
        need = address + SLOT - memory_end
        raise UserError(
            f"not enough memory to load all binaries: they end at {address:#x}, which needs "
            f"MEMORY_END >= {address + SLOT:#x}; MEMORY_END is {memory_end:#x} "
            f"({hex_and_dec(need)} bytes short)",
            "MEMORY_END",
        )
    return Layout(memory_start, memory_end, slot, tuple(regions), address)
