"""The memory map (plan/memory_map.py): sizes in hex and human units, the DTB's reserved regions
and the gaps, what moved past reserved memory and why; `--memory-map-svg` draws it, read back
with xml.etree.

Layouts are planned by hand-checkable numbers: MEMORY_START 0x40000000 puts the script at
0x40200000-0x40400000 and the first module at 0x40400000; each next one 2 MiB-aligned.
"""

from __future__ import annotations

import os
import subprocess
import xml.etree.ElementTree as ET
from itertools import pairwise
from pathlib import Path

from ibtasks.plan.layout import Module, plan_layout
from ibtasks.plan.memory_map import (
    find_moves,
    human_size,
    map_spans,
    render_memory_map,
    render_memory_map_svg,
)
from tests.conftest import run_ibtasks

MIB = 1 << 20
SVG = "{http://www.w3.org/2000/svg}"


def test_human_sizes_are_exact_or_cut_never_rounded_up() -> None:
    assert human_size(2 * MIB) == "2 MiB"
    assert human_size(2 * MIB - 512) == "1.99 MiB"
    assert human_size(3_000_000) == "2.86 MiB"
    assert human_size(458) == "458 bytes"
    assert human_size(1) == "1 byte"
    assert human_size(3 << 30) == "3 GiB"
    assert human_size(1536) == "1.50 KiB"


def test_a_module_pushed_past_a_reserved_region_is_named_with_the_region() -> None:
    reserved = [(0x40600000, 0x100000)]  # 1 MiB where the second module would go
    layout = plan_layout(0x40000000, 0x50000000,
                         [Module("XEN", "xen", 2 * MIB), Module("DOM0_KERNEL", "Image", MIB)],
                         reserved)
    assert layout.region("DOM0_KERNEL").address == 0x40800000
    [move] = find_moves(layout, reserved)
    assert (move.key, move.planned, move.placed) == ("DOM0_KERNEL", 0x40600000, 0x40800000)
    assert move.reserved == ((0x40600000, 0x40700000),)
    text = render_memory_map(layout, reserved, "boot.scr")
    assert ("Moved: DOM0_KERNEL from 0x40600000 to 0x40800000 (+2 MiB): it would overlap "
            "reserved memory 0x40600000-0x40700000") in text
    assert "  0x40600000-0x40700000  0x00100000 (1 MiB)" in text
    assert "Reserved: 0x40600000-0x40700000 (1 MiB) (/reserved-memory or /memreserve/" in text


def test_a_reserved_script_slot_moves_the_script_and_says_so() -> None:
    reserved = [(0x40200000, 0x1000)]
    layout = plan_layout(0x40000000, 0x50000000, [Module("XEN", "xen", MIB)], reserved)
    moves = find_moves(layout, reserved)
    assert [(m.key, m.planned, m.placed) for m in moves] == [
        ("boot script", 0x40200000, 0x40400000)]


def test_without_reserved_memory_nothing_moved() -> None:
    layout = plan_layout(0x40000000, 0x50000000,
                         [Module("XEN", "xen", 3_000_000), Module("DOM0_KERNEL", "Image", 512)])
    assert find_moves(layout, []) == []
    assert "Moved" not in render_memory_map(layout)


def test_spans_cover_every_byte_from_the_script_to_memory_end_with_gaps_between() -> None:
    reserved = [(0x40A00000, 0x200000), (0x60000000, MIB)]  # the second lies past the loads
    layout = plan_layout(0x40000000, 0x50000000,
                         [Module("XEN", "xen", 3_000_000), Module("DOM0_KERNEL", "Image", 512),
                          Module("DEVICE_TREE", "b.dtb", 4 * MIB)], reserved)
    spans = map_spans(layout, reserved)
    assert spans[0].start == layout.script_slot and spans[-1].end == 0x50000000
    assert all(a.end == b.start for a, b in pairwise(spans))
    assert [s.kind for s in spans] == ["script", "module", "gap", "module", "gap", "reserved",
                                       "module", "free"]
    assert spans[2].size == 0x40800000 - (0x40400000 + 3_000_000)


def test_reserved_regions_past_the_last_load_split_the_free_ram_and_are_listed() -> None:
    # Free RAM after the loads is not free where the DTB reserves it (a firmware buffer).
    reserved = [(0x48000000, 16 * MIB), (0x4FF00000, MIB)]
    layout = plan_layout(0x40000000, 0x50000000, [Module("XEN", "xen", MIB)], reserved)
    spans = map_spans(layout, reserved)
    assert [(s.kind, s.label) for s in spans[-4:]] == [
        ("free", "(free)"), ("reserved", "reserved"), ("free", "(free)"),
        ("reserved", "reserved")]
    assert spans[-1].end == 0x50000000 and all(a.end == b.start for a, b in pairwise(spans))
    text = render_memory_map(layout, reserved)
    assert "  0x48000000-0x49000000  0x01000000 (16 MiB)" in text
    assert "(free to MEMORY_END)" not in text  # the last reserved region ends at MEMORY_END


def test_maps_past_4_gib_use_16_hex_digits() -> None:
    layout = plan_layout(0x800000000, 0x880000000, [Module("XEN", "xen", MIB)])
    text = render_memory_map(layout)
    assert "  0x0000000800200000-0x0000000800400000  0x0000000000200000 (2 MiB)" in text


# ---- through the command line, on a DTB with /reserved-memory compiled by dtc -----------------

BOARD = """/dts-v1/;
/ { #address-cells = <2>; #size-cells = <2>; chosen { };
 memory@40000000 { device_type = "memory"; reg = <0 0x40000000 0 0x40000000>; };
 reserved-memory { #address-cells = <2>; #size-cells = <2>; ranges;
  buffer@40800000 { reg = <0 0x40800000 0 0x100000>; no-map; }; };
};
"""
CONFIG = "MEMORY_START=0x40000000\nMEMORY_END=0x50000000\nDEVICE_TREE=board.dtb\nXEN=xen\n" \
         "DOM0_KERNEL=Image-dom0\n"


def build(inputs: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    subprocess.run(["dtc", "-q", "-I", "dts", "-O", "dtb", "-o", str(inputs / "board.dtb"), "-"],
                   input=BOARD, text=True, check=True)
    (inputs / "config").write_text(CONFIG)
    return run_ibtasks("uboot-script-gen", "-c", "config", "-d", ".", "-t", "tftp", *extra,
                       cwd=inputs)


def test_memory_map_shows_the_dtbs_reserved_region_and_the_kernel_it_moved(
        seed_inputs: Path) -> None:
    result = build(seed_inputs, "--memory-map")
    assert result.returncode == 0, result.stderr
    source = (seed_inputs / "boot.source").read_text()
    assert "tftpb 0x40A00000 Image-dom0" in source  # where the map says the kernel went
    assert ("Moved: DOM0_KERNEL from 0x40800000 to 0x40A00000 (+2 MiB): it would overlap "
            "reserved memory 0x40800000-0x40900000") in result.stdout
    assert "  0x40800000-0x40900000  0x00100000 (1 MiB)" in result.stdout
    assert "RAM: 0x40000000-0x80000000 (1 GiB) (/memory of the DTB)" in result.stdout


def test_the_svg_has_one_box_per_load_and_hatched_reserved_memory(seed_inputs: Path) -> None:
    result = build(seed_inputs, "--memory-map-svg", "map.svg")
    assert result.returncode == 0, result.stderr
    root = ET.parse(seed_inputs / "map.svg").getroot()
    assert root.tag == f"{SVG}svg"
    assert root.find(f"{SVG}defs/{SVG}pattern[@id='hatch']") is not None
    boxes = {g.get("class"): [] for g in root.iter(f"{SVG}g")}
    for group in root.iter(f"{SVG}g"):
        texts = [t.text for t in group.iter(f"{SVG}text")]
        boxes[group.get("class")].append((group.find(f"{SVG}rect"), texts))
    assert [texts[0] for _, texts in boxes["module"]] == ["XEN xen", "DOM0_KERNEL Image-dom0",
                                                          "DEVICE_TREE board.dtb"]
    [(rect, texts)] = boxes["reserved"]
    assert rect.get("fill") == "url(#hatch)"
    assert texts == ["reserved", "0x00100000 (1 MiB)"]
    assert [texts[0] for _, texts in boxes["script"]] == ["boot script boot.scr"]
    axis = {t.text for t in root.iter(f"{SVG}text") if (t.text or "").startswith("0x")}
    assert {"0x40200000", "0x40800000", "0x40900000", "0x40A00000"} <= axis
    assert not [n for n in os.listdir(seed_inputs) if ".ibtmp-" in n]  # written atomically


def test_the_svg_draws_reserved_memory_past_the_loads_and_marks_memory_end() -> None:
    reserved = [(0x48000000, 16 * MIB), (0x4C000000, MIB)]
    layout = plan_layout(0x40000000, 0x50000000, [Module("XEN", "xen", MIB)], reserved)
    root = ET.fromstring(render_memory_map_svg(layout, reserved))
    kinds = [g.get("class") for g in root.iter(f"{SVG}g")]
    # Drawn from the lowest address at the bottom: the document lists them in address order.
    assert kinds == ["script", "module", "free", "reserved", "free", "reserved", "free"]
    heights = [(g.get("class"), float(g.find(f"{SVG}rect").get("height")))
               for g in root.iter(f"{SVG}g")]
    line = min(h for _, h in heights)  # one line: the smallest box there is
    assert [h for kind, h in heights if kind == "free"] == [line, line, line]
    assert dict(heights)["reserved"] > line  # the 1 MiB region, to scale with the loads
    axis = {t.text for t in root.iter(f"{SVG}text") if (t.text or "").startswith("0x")}
    assert {"0x48000000", "0x49000000", "0x4C000000", "0x4C100000", "0x50000000"} <= axis


def test_an_svg_path_that_cannot_be_written_is_one_line(seed_inputs: Path) -> None:
    result = build(seed_inputs, "--memory-map-svg", "config/map.svg")
    assert result.returncode == 1
    assert result.stderr == ("ibtasks: error: --memory-map-svg config/map.svg: config: is not "
                             "a directory\n")
    assert not (seed_inputs / "boot.scr").exists()  # checked before anything was built


def test_an_unchanged_rebuild_draws_a_deleted_svg_again(seed_inputs: Path) -> None:
    assert build(seed_inputs, "--memory-map-svg", "map.svg").returncode == 0
    (seed_inputs / "map.svg").unlink()
    result = build(seed_inputs, "--memory-map-svg", "map.svg")  # no replay of the last run
    assert result.returncode == 0, result.stderr
    assert ET.parse(seed_inputs / "map.svg").getroot().tag == f"{SVG}svg"
