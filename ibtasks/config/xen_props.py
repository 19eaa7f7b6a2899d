"""Xen-wide keys of upstream's device-tree extras: XEN_STATIC_HEAP, XEN_COLORS, DOM0_COLORS and
the boot-time cpupools (NUM_CPUPOOLS, CPUPOOL[n]), read into one frozen `XenProps`.

Formats follow upstream ImageBuilder's README and Xen's docs/misc/arm/device-tree/booting.txt;
the device-tree edits they lead to are planned in `plan.chosen`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ibtasks.config.number_lists import parse_range_list, parse_regions
from ibtasks.errors import UserError

if TYPE_CHECKING:
    from ibtasks.config.reader import KeyReader

SCHEDULERS = ("null", "credit", "credit2", "rtds", "arinc653")


@dataclass(frozen=True)
class CpuPool:
    """`CPUPOOL[n]="cpu@a,cpu@b [scheduler]"`: CPU node names under /cpus and a scheduler."""

    index: int
    cpus: tuple[str, ...]
    sched: str | None
    where: str


@dataclass(frozen=True)
class XenProps:
    """Xen-wide keys: static heap regions (bytes), cache colours (decimal lists) and pools."""

    static_heap: tuple[tuple[int, int], ...]
    static_heap_where: str | None
    xen_colors: str | None
    dom0_colors: str | None
    cpupools: tuple[CpuPool, ...]


def read_colors(reader: KeyReader, name: str, index: int | None = None) -> str | None:
    """A colour list key (`0-3,8`; decimal or 0x hex) in decimal; None when unset. Raises
    `UserError` naming the key."""
    text = reader.given(name, index)
    if text is None:
        return None
    colors = parse_range_list(text)
    if colors is None:
        raise UserError(f"{reader.label(name, index)}: expected colours like '0-3' or "
                        f"'0-3,8,10-11', got '{text}'", reader.where(name, index))
    return colors


def _cpupool(reader: KeyReader, index: int, count: int) -> CpuPool:
    text = reader.given("CPUPOOL", index)
    if text is None:
        raise UserError(f"CPUPOOL[{index}] is required (NUM_CPUPOOLS is {count})",
                        reader.where("NUM_CPUPOOLS"))
    where = reader.where("CPUPOOL", index) or reader.raw.source
    words = text.split()
    cpus = tuple(c for c in words[0].split(",") if c)
    sched = words[1] if len(words) > 1 else None
    if len(words) > 2 or not cpus:
        raise UserError(f"CPUPOOL[{index}]: expected 'cpu@a,cpu@b [scheduler]', got '{text}'",
                        where)
    if sched is not None and sched not in SCHEDULERS:
        raise UserError(f"CPUPOOL[{index}]: unknown scheduler '{sched}' (known: "
                        f"{', '.join(SCHEDULERS)})", where)
    return CpuPool(index, cpus, sched, where)


def read_xen_props(reader: KeyReader) -> XenProps:
    """Read XEN_STATIC_HEAP, XEN_COLORS, DOM0_COLORS, NUM_CPUPOOLS and CPUPOOL[n]; a CPU may be
    in one pool only. Raises `UserError` naming the key and its line."""
    count = reader.count("NUM_CPUPOOLS")
    pools = [_cpupool(reader, i, count) for i in range(count)]
    seen: dict[str, int] = {}
    for pool in pools:
        for cpu in pool.cpus:
            if cpu in seen:
                raise UserError(f"CPUPOOL[{pool.index}]: {cpu} is already in CPUPOOL[{seen[cpu]}]",
                                pool.where)
            seen[cpu] = pool.index
    heap = reader.given("XEN_STATIC_HEAP")
    return XenProps(
        static_heap=(parse_regions(heap, "XEN_STATIC_HEAP", reader.where("XEN_STATIC_HEAP"))
                     if heap else ()),
        static_heap_where=reader.where("XEN_STATIC_HEAP") or reader.raw.source,
        xen_colors=read_colors(reader, "XEN_COLORS"),
        dom0_colors=read_colors(reader, "DOM0_COLORS"),
        cpupools=tuple(pools),
    )
