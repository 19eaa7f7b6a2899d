"""The memory map people look at (`--memory-map`, `--memory-map-svg FILE`): every load, the DTB's
reserved regions and the gaps between them, by address, with sizes in hex and in human units,
what moved past a reserved region (ibtasks.plan.layout), and the RAM banks. Pure text and SVG
from the layout; the CLI writes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from xml.sax.saxutils import escape, quoteattr

from ibtasks.plan.layout import LOWEST_SCRIPT_SLOT, SLOT, Layout, align_up
from ibtasks.plan.memory_banks import merge_banks

Kind = Literal["script", "module", "reserved", "gap", "free"]
UNITS = ((1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB"))


def human_size(size: int) -> str:
    """`2 MiB`, `2.86 MiB`, `458 bytes`: the largest binary unit the size reaches, exact when
    it is a whole number of them, else cut (not rounded) to two decimals, so a size just
    below 2 MiB never reads as `2.00 MiB`."""
    for unit, name in UNITS:
        if size >= unit:
            whole, rest = divmod(size, unit)
            hundredths = rest * 100 // unit
            return f"{whole} {name}" if not rest else f"{whole}.{hundredths:02d} {name}"
    return "1 byte" if size == 1 else f"{size} bytes"


def hex_address(value: int, wide: bool) -> str:
    """`0x00200000` (8 digits), or 16 digits when the map reaches past 4 GiB (`wide`)."""
    return f"0x{value:016X}" if wide else f"0x{value:08X}"


@dataclass(frozen=True)
class Span:
    """One row of the map: [start, end) in bytes, what it is, its label and file."""

    start: int
    end: int
    kind: Kind
    label: str
    path: str = ""

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class Move:
    """A load pushed up by reserved memory: where the seed's rule put it, where it is, and the
    reserved (start, end) ranges in between."""

    key: str
    planned: int
    placed: int
    reserved: tuple[tuple[int, int], ...]


def find_moves(layout: Layout, reserved: Sequence[tuple[int, int]],
               script_key: str = "boot script") -> list[Move]:
    """Each load (the script's slot, then the modules in order) whose address is above the one
    the seed's rule gives it (2 MiB after the previous load's end), with the reserved regions
    `(address, size)` it was moved past."""
    loads = [(script_key, layout.script_slot, SLOT,
              max(layout.memory_start + SLOT, LOWEST_SCRIPT_SLOT))]
    planned = layout.script_slot + SLOT
    for region in layout.regions:
        loads.append((region.key, region.address, region.size, planned))
        planned = align_up(region.end)
    moves = []
    for key, placed, _size, expected in loads:
        if placed > expected:
            past = tuple((a, a + s) for a, s in sorted(reserved)
                         if a < placed and a + s > expected)
            moves.append(Move(key, expected, placed, past))
    return moves


def map_spans(layout: Layout, reserved: Sequence[tuple[int, int]],
              script_name: str = "") -> list[Span]:
    """The rows of the map, by address: the script's slot, each module, each reserved region
    that meets [script slot, MEMORY_END), the gaps between the loads, and the free RAM after
    the last load up to MEMORY_END (split where a reserved region lies in it)."""
    used = [Span(layout.script_slot, layout.script_slot + SLOT, "script", "boot script",
                 script_name)]
    used += [Span(r.address, r.end, "module", r.key, r.path) for r in layout.regions]
    top = max(s.end for s in used)
    used += [Span(a, a + s, "reserved", "reserved") for a, s in reserved
             if a < layout.memory_end and a + s > layout.script_slot]
    used.sort(key=lambda s: (s.start, s.end))
    spans: list[Span] = []
    cursor = used[0].start
    for span in used:
        if span.start > cursor:
            spans.append(Span(cursor, span.start, "gap", "(gap)") if span.start <= top
                         else Span(cursor, span.start, "free", "(free)"))
        spans.append(span)
        cursor = max(cursor, span.end)
    if layout.memory_end > cursor:
        spans.append(Span(cursor, layout.memory_end, "free", "(free to MEMORY_END)"))
    return spans


def render_memory_map(layout: Layout, reserved: Sequence[tuple[int, int]] = (),
                      script_name: str = "") -> str:
    """The map as text: one row per span (start, end, size in hex and human units, what, file),
    then the loads that moved and why, the reserved regions and the RAM banks."""
    spans = map_spans(layout, reserved, script_name)
    ends = [layout.memory_end, *(a + s for a, s in (*reserved, *layout.banks))]
    wide = max(ends) > 1 << 32
    width = max(len(s.label) for s in spans)
    lines = [f"Memory map: MEMORY_START {hex_address(layout.memory_start, wide)} to MEMORY_END "
             f"{hex_address(layout.memory_end, wide)} "
             f"({human_size(layout.memory_end - layout.memory_start)})"]
    for s in spans:
        sizes = f"{hex_address(s.size, wide)} ({human_size(s.size)})"
        lines.append(f"  {hex_address(s.start, wide)}-{hex_address(s.end, wide)}  {sizes:<32} "
                     f"{s.label:<{width}}  {s.path}".rstrip())
    moves = find_moves(layout, reserved)
    for move in moves:
        past = ", ".join(f"{hex_address(a, wide)}-{hex_address(b, wide)}"
                         for a, b in move.reserved)
        lines.append(f"Moved: {move.key} from {hex_address(move.planned, wide)} to "
                     f"{hex_address(move.placed, wide)} (+{human_size(move.placed - move.planned)})"
                     f": it would overlap reserved memory {past}")
    for address, size in sorted(reserved):
        lines.append(f"Reserved: {hex_address(address, wide)}-{hex_address(address + size, wide)}"
                     f" ({human_size(size)}) (/reserved-memory or /memreserve/ of the DTB)")
    for start, end in merge_banks(layout.banks):
        lines.append(f"RAM: {hex_address(start, wide)}-{hex_address(end, wide)} "
                     f"({human_size(end - start)}) (/memory of the DTB)")
    return "\n".join(lines) + "\n"


# The picture: addresses grow upwards, one box per span; a box's height follows its size but
# is at least one text line tall, so the axis is marked at every boundary instead of evenly.
_ROW_MIN, _ROWS_HEIGHT, _WIDTH, _AXIS_X, _BOX_X, _BOX_W = 22, 640, 760, 150, 160, 420
_FILL = {"script": "#cfe8ff", "module": "#b9f0c0", "gap": "#ffffff", "free": "#f4f4f4"}


def render_memory_map_svg(layout: Layout, reserved: Sequence[tuple[int, int]] = (),
                          script_name: str = "") -> str:
    """The map as an SVG document: an address axis marked at every boundary, one box per load
    (key, file, size), reserved regions hatched, gaps and the free RAM as empty boxes, and a
    caption listing what moved."""
    spans = map_spans(layout, reserved, script_name)
    wide = layout.memory_end > 1 << 32 or any(a + s > 1 << 32 for a, s in reserved)
    # Loads, gaps and reserved regions to scale; free RAM (after the last load, hundreds of
    # MiB) one line each, in its place, so that the loads stay readable.
    shown = spans
    total = max(sum(s.size for s in spans if s.kind != "free"), 1)
    heights = [_ROW_MIN if s.kind == "free" else max(_ROW_MIN, round(_ROWS_HEIGHT * s.size / total))
               for s in spans]
    top = 56
    height = top + sum(heights) + 40 + 18 * len(find_moves(layout, reserved))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{height}" '
           f'viewBox="0 0 {_WIDTH} {height}" font-family="monospace" font-size="12">',
           '<title>ibtasks memory map</title>',
           '<defs><pattern id="hatch" width="8" height="8" patternUnits="userSpaceOnUse" '
           'patternTransform="rotate(45)"><rect width="8" height="8" fill="#ffe0e0"/>'
           '<line x1="0" y1="0" x2="0" y2="8" stroke="#c03030" stroke-width="3"/>'
           '</pattern></defs>',
           f'<rect width="{_WIDTH}" height="{height}" fill="white"/>',
           f'<text x="10" y="18" font-size="14">Memory map: '
           f'{hex_address(layout.memory_start, wide)} to {hex_address(layout.memory_end, wide)}'
           f' ({escape(human_size(layout.memory_end - layout.memory_start))})</text>',
           '<text x="10" y="34">addresses grow upwards; a tick at every boundary; '
           'free RAM one line, not to scale</text>']
    y = top + sum(heights)
    out.append(f'<line x1="{_AXIS_X}" y1="{top}" x2="{_AXIS_X}" y2="{y}" stroke="black"/>')
    for span, h in zip(shown, heights, strict=True):
        y -= h  # from the lowest address at the bottom upwards
        out.append(_box(span, y, h, wide))
        out.append(_tick(span.start, y + h, wide))
    out.append(_tick(shown[-1].end, y, wide))
    caption = top + sum(heights) + 30
    for move in find_moves(layout, reserved):
        out.append(f'<text x="10" y="{caption}">{escape(move.key)} moved from '
                   f'{hex_address(move.planned, wide)} to {hex_address(move.placed, wide)}: '
                   'past reserved memory</text>')
        caption += 18
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _tick(address: int, y: int, wide: bool) -> str:
    return (f'<line x1="{_AXIS_X - 6}" y1="{y}" x2="{_AXIS_X}" y2="{y}" stroke="black"/>'
            f'<text x="{_AXIS_X - 8}" y="{y + 4}" text-anchor="end">'
            f'{hex_address(address, wide)}</text>')


# A white outline under a label, so that it reads on a hatched box too.
_HALO = ' paint-order="stroke" stroke="white" stroke-width="4"'


def _box(span: Span, y: int, h: int, wide: bool) -> str:
    fill = "url(#hatch)" if span.kind == "reserved" else _FILL[span.kind]
    text = f"{span.label} {span.path}".strip()
    size = f"{hex_address(span.size, wide)} ({human_size(span.size)})"
    return (f'<g class={quoteattr(span.kind)}><rect x="{_BOX_X}" y="{y}" width="{_BOX_W}" '
            f'height="{h}" fill="{fill}" stroke="#404040"/>'
            f'<text x="{_BOX_X + 6}" y="{y + h / 2 + 4:.1f}"{_HALO}>{escape(text)}</text>'
            f'<text x="{_BOX_X + _BOX_W + 8}" y="{y + h / 2 + 4:.1f}">{escape(size)}</text></g>')
