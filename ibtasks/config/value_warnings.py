"""Warnings about values the original accepts silently but a user probably did not mean.

Each is a warning rather than an error because the original takes the value and a user could
mean it; `--strict` (or STRICT=y) turns them into errors. `build_config` adds them to the
config's warnings: indexed keys beyond their count, flag values that are neither yes nor no,
and a MEMORY_START that is not 2 MiB aligned.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ibtasks.config.settings import SETTINGS_BY_NAME, Kind, flag_word, parse_count

if TYPE_CHECKING:
    from ibtasks.config.reader import RawKey, RawValue

Values = Mapping["RawKey", "RawValue"]

# Indexed keys that are not per domU, with the key that counts them and what they are.
COUNTED_KEYS = {
    "DT_OVERLAY": ("NUM_DT_OVERLAY", "overlays"),
    "BOOT_AUX_FILE": ("NUM_BOOT_AUX_FILE", "boot aux files"),
    "CPUPOOL": ("NUM_CPUPOOLS", "cpupools"),
}
DOMU_COUNT = ("NUM_DOMUS", "domUs")

# Xen and arm64 Linux Images are placed at 2 MiB-aligned addresses (Linux's
# Documentation/arch/arm64/booting.rst; the original's layout steps by 2 MiB from MEMORY_START).
ALIGNMENT = 2 * 1024 * 1024


def _text(values: Values, name: str) -> str | None:
    value = values.get((name, None))
    return value.text if value is not None else None


def _count(values: Values, name: str) -> int | None:
    """The count key's value, or its row's default; None when it does not parse (build_config
    reports that)."""
    text = _text(values, name)
    if text is None or text.strip() == "":
        text = SETTINGS_BY_NAME[name].default or ""
    return parse_count(text)


def beyond_count_warnings(values: Values) -> tuple[str, ...]:
    """One warning per indexed key whose index lies beyond its count: the original loops
    `0..COUNT-1` and ignores the rest without a word (`DOMU_KERNEL[1]` with `NUM_DOMUS=1`).

    `values` are a RawConfig's (values in file order). An index
    given as `DT_OVERLAY[n]` beyond NUM_DT_OVERLAY is an error elsewhere (boot_options), so it is
    not repeated here.
    """
    found: list[str] = []
    for (name, index), value in values.items():
        if index is None:
            continue
        base = name.split(",")[0]  # DOMU_VCPU_HARD_AFFINITY,<vcpu>
        setting = SETTINGS_BY_NAME.get(base)
        if setting is None or not setting.per_domu or base == "DT_OVERLAY":
            continue
        count_name, what = COUNTED_KEYS.get(base, DOMU_COUNT)
        count = _count(values, count_name)
        if count is None or index < count:
            continue
        label = f"{base}[{index}]" if base == name else f"{base}[{index},{name.split(',')[1]}]"
        where = value.where
        if count == 0:
            state = "is 0" if _text(values, count_name) is not None else "is not set (0)"
            counted = f"{count_name} {state}"
            hint = f"; set {count_name}={index + 1} to use it"
        else:
            counted = f"{count_name}={count} counts {what} 0..{count - 1}"
            hint = ""
        found.append(f"{where}: {label} is set but {counted}: it is ignored{hint}")
    return tuple(found)


def flag_warnings(values: Values) -> tuple[str, ...]:
    """One warning per flag key (`DOMU_NOBOOT[0]`, `PREEDITED_DTB`, ...) whose value is neither
    a yes (1, y, yes, true, on) nor a no (0, n, no, false, off, empty): the original tests for
    a non-empty string, so `flase` or `maybe` count as set, and so they do here."""
    found: list[str] = []
    for (name, index), value in values.items():
        setting = SETTINGS_BY_NAME.get(name)
        text = value.text
        if setting is None or setting.kind is not Kind.FLAG or flag_word(text) is not None:
            continue
        label = name if index is None else f"{name}[{index}]"
        where = value.where
        found.append(f"{where}: {label}: '{text.strip()}' is neither yes (1, y, yes, true, "
                     "on) nor no (0, n, no, false, off); it counts as set, as in the original")
    return tuple(found)


def alignment_warnings(memory_start: int, where: str | None) -> tuple[str, ...]:
    """A warning when MEMORY_START (bytes) is not 2 MiB aligned: every load address follows
    from it in 2 MiB steps, as in the original, so none would be aligned. Xen and an arm64
    Image need 2 MiB-aligned placement; U-Boot's booti moves a misaligned kernel, but the
    modules (dom0's kernel, ramdisks, the DTB) stay where they were loaded."""
    if memory_start % ALIGNMENT == 0:
        return ()
    aligned = -(-memory_start // ALIGNMENT) * ALIGNMENT
    prefix = f"{where}: " if where else ""
    return (f"{prefix}MEMORY_START: {memory_start:#x} is not 2 MiB aligned, and every load "
            "address follows it (Xen and arm64 kernels need 2 MiB-aligned placement; booti moves "
            f"only the kernel it starts); use {aligned:#x}",)
