"""Text values made of numbers: `base size` region pairs, colour and CPU lists (`0-3,8`).

Every number in them is read as the table's NUMBER keys are (`settings.parse_count`: decimal or
0x hex, as bash arithmetic in the original; a leading 0 refused with the octal hint), and lists
are written back in decimal, so what Xen reads does not depend on how it parses a base.
"""

from __future__ import annotations

import itertools
import re

from ibtasks.config.settings import number_hint, parse_count
from ibtasks.errors import UserError, hex_and_dec

PAGE = 0x1000
_NUMBER = r"(?:0[xX][0-9a-fA-F]+|[0-9]+)"
_RANGE_LIST = re.compile(rf"{_NUMBER}(?:-{_NUMBER})?(?:,{_NUMBER}(?:-{_NUMBER})?)*")


def parse_numbers(words: list[str]) -> list[int] | None:
    """Each word as a number (`parse_count`), or None if any is not one."""
    numbers = [parse_count(w) for w in words]
    return None if any(n is None for n in numbers) else [n or 0 for n in numbers]


def numbers_hint(words: list[str]) -> str:
    """The octal hint when one of `words` is a leading-0 number, else ''."""
    return next((h for w in words if (h := number_hint(w))), "")


def parse_range_list(text: str) -> str | None:
    """A list like `0-3,8,0x10-0x11` (colours, pCPUs) in decimal (`0-3,8,16-17`), or None when
    it is not one: a range must not run backwards, and no number may have a leading 0."""
    if not _RANGE_LIST.fullmatch(text):
        return None
    parts = []
    for item in text.split(","):
        bounds = parse_numbers(item.split("-"))
        if bounds is None or bounds != sorted(bounds):
            return None
        parts.append("-".join(str(b) for b in bounds))
    return ",".join(parts)


def parse_regions(text: str, label: str, where: str | None) -> tuple[tuple[int, int], ...]:
    """`base size [base size ...]` (bytes): page aligned, non-empty, not overlapping each other.
    Raises `UserError` naming `label` (`DOMU_STATIC_MEM[1]`)."""
    words = text.split()
    numbers = parse_numbers(words)
    if len(words) % 2 or numbers is None:
        raise UserError(f"{label}: expected pairs of 'base size' numbers, got '{text}'"
                        f"{numbers_hint(words)}", where)
    pairs = [(numbers[i], numbers[i + 1]) for i in range(0, len(numbers), 2)]
    for base, size in pairs:
        if size == 0 or base % PAGE or size % PAGE:
            raise UserError(f"{label}: region {base:#x} size {hex_and_dec(size)} must be "
                            "non-empty and 4 KiB aligned", where)
    check_overlaps([(b, s, label, where) for b, s in pairs])
    return tuple(pairs)


def check_overlaps(regions: list[tuple[int, int, str, str | None]]) -> None:
    """Raise `UserError` naming both owners if two (base, size, owner, where) regions overlap;
    a region that overlaps any later one overlaps the next in address order."""
    ordered = sorted(regions, key=lambda r: (r[0], r[1], r[2]))
    for (b1, s1, o1, _), (b2, s2, o2, where) in itertools.pairwise(ordered):
        if b2 < b1 + s1:
            raise UserError(f"{o2}: region {b2:#x}-{b2 + s2:#x} overlaps {o1}'s "
                            f"{b1:#x}-{b1 + s1:#x}", where)
