"""Every load lies in RAM: the layout is checked against the /memory banks of the DTB.

The rule (plan/memory_banks.py): the boot script's 2 MiB slot and every binary (start to start +
effective size) must lie inside one bank of the `device_type = "memory"` children of the root,
read with the root's #address-cells/#size-cells (adjacent banks join; disabled nodes are not
RAM); otherwise an error names the key, its start and end in hex and the banks. MEMORY_START or
MEMORY_END outside RAM and a DTB without /memory are warnings. With -s nothing is checked.

Sizes of the synthetic inputs (tests/conftest.py): xen 3,000,000 B = 0x2DC6C0 (two 2 MiB
slots), Image-dom0 5,000,000 B = 0x4C4B40 (three slots), mpsoc.dtb 458 B. With
MEMORY_START=0x40000000: script 0x40200000, xen 0x40400000-0x406dc6c0, dom0
0x40800000-0x40cc4b40, DTB 0x40e00000-0x40e001ca; they end at 0x41000000.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from ibtasks.errors import UserError
from ibtasks.plan.layout import Layout, Module, plan_layout
from ibtasks.plan.memory_banks import check_layout_in_banks, merge_banks
from tests.conftest import run_ibtasks

CONFIG = """\
MEMORY_START={start}
MEMORY_END={end}
DEVICE_TREE={dtb}
XEN=xen
DOM0_KERNEL=Image-dom0
"""
OUTPUTS = ("boot.source", "boot.scr", "boot.dtb")


def board(inputs: Path, body: str, cells: tuple[int, int] = (1, 1)) -> str:
    """Compile a board DTB with dtc: root cell sizes `cells`, `body` holds its memory nodes."""
    dts = (f"/dts-v1/;\n/ {{\n #address-cells = <{cells[0]}>;\n #size-cells = <{cells[1]}>;\n"
           f" chosen {{ }};\n{body}\n}};\n")
    subprocess.run(["dtc", "-q", "-I", "dts", "-O", "dtb", "-o", str(inputs / "board.dtb"), "-"],
                   input=dts, text=True, check=True)
    return "board.dtb"


def run(inputs: Path, start: str, end: str, dtb: str, *extra: str
        ) -> subprocess.CompletedProcess[str]:
    (inputs / "config").write_text(CONFIG.format(start=start, end=end, dtb=dtb))
    return run_ibtasks("uboot-script-gen", "-c", "config", "-d", ".", "-t", "tftp", *extra,
                       cwd=inputs)


def loads(inputs: Path) -> list[str]:
    return [line for line in (inputs / "boot.source").read_text().splitlines()
            if line.startswith("tftpb")]


# ---- errors: a load outside RAM -------------------------------------------------------------

def test_config_for_ram_at_zero_on_a_board_with_ram_at_1_gib_is_rejected(seed_inputs: Path
                                                                          ) -> None:
    # The seed README's range (a ZynqMP) with a QEMU-like board: the script's slot is
    # max(0 + 2 MiB, 0xC00000) = 0xC00000, below the board's RAM.
    dtb = board(seed_inputs, " memory@40000000 { device_type = \"memory\";"
                             " reg = <0x40000000 0x80000000>; };")
    result = run(seed_inputs, "0x0", "0x80000000", dtb)
    assert result.returncode == 1
    assert result.stderr == (
        "ibtasks: error: UBOOT_SCRIPT: loaded at 0xc00000-0xe00000, which is not RAM of "
        "DEVICE_TREE (board.dtb): its /memory banks are 0x40000000-0xc0000000; set "
        "MEMORY_START and MEMORY_END inside one of them\n")
    assert not any((seed_inputs / name).exists() for name in OUTPUTS)


def test_binary_running_past_the_end_of_a_bank_is_rejected_naming_its_key(seed_inputs: Path
                                                                          ) -> None:
    # Two banks in two nodes: 10 MiB at 1 GiB, then 256 MiB at 2 GiB. dom0 (0x40800000 +
    # 0x4c4b40) runs past 0x40a00000.
    dtb = board(seed_inputs,
                " memory@40000000 { device_type = \"memory\"; reg = <0x40000000 0xa00000>; };\n"
                " memory@80000000 { device_type = \"memory\"; reg = <0x80000000 0x10000000>; };")
    result = run(seed_inputs, "0x40000000", "0x90000000", dtb)
    assert result.returncode == 1
    assert result.stderr == (
        "ibtasks: error: DOM0_KERNEL: loaded at 0x40800000-0x40cc4b40, which is not RAM of "
        "DEVICE_TREE (board.dtb): its /memory banks are 0x40000000-0x40a00000, "
        "0x80000000-0x90000000; set MEMORY_START and MEMORY_END inside one of them\n")
    assert not any((seed_inputs / name).exists() for name in OUTPUTS)


def test_disabled_memory_node_is_not_ram(seed_inputs: Path) -> None:
    dtb = board(seed_inputs,
                " memory@40000000 { device_type = \"memory\"; status = \"disabled\";"
                " reg = <0x40000000 0x80000000>; };\n"
                " memory@c0000000 { device_type = \"memory\"; reg = <0xc0000000 0x10000000>; };")
    result = run(seed_inputs, "0x40000000", "0x80000000", dtb)
    assert result.returncode == 1
    assert result.stderr.startswith(
        "ibtasks: error: UBOOT_SCRIPT: loaded at 0x40200000-0x40400000, which is not RAM of "
        "DEVICE_TREE (board.dtb): its /memory banks are 0xc0000000-0xd0000000;")


def test_module_in_the_gap_between_two_banks_is_rejected() -> None:
    layout = plan_layout(0x40000000, 0x50000000, [Module("XEN", "xen", 0x100000),
                                                  Module("DEVICE_TREE", "d.dtb", 0x200)])
    banks = [(0x40000000, 0x600000), (0x40800000, 0x1000000)]  # hole 0x40600000-0x40800000
    with pytest.raises(UserError) as info:
        check_layout_in_banks(layout, banks, "DEVICE_TREE (d.dtb)")
    # XEN 0x40400000-0x40500000 is RAM; the DTB at 0x40600000 is in the hole.
    assert str(info.value) == (
        "DEVICE_TREE: loaded at 0x40600000-0x40600200, which is not RAM of DEVICE_TREE "
        "(d.dtb): its /memory banks are 0x40000000-0x40600000, 0x40800000-0x41800000; set "
        "MEMORY_START and MEMORY_END inside one of them")


# ---- accepted layouts ---------------------------------------------------------------------

def test_loads_across_adjacent_banks_of_one_node_are_accepted(seed_inputs: Path) -> None:
    # One node, two reg entries in 1 + 1 cells that touch at 0x40600000; xen
    # (0x40400000-0x406dc6c0) spans the seam.
    dtb = board(seed_inputs, " memory@40000000 { device_type = \"memory\";"
                             " reg = <0x40000000 0x600000 0x40600000 0x1000000>; };")
    result = run(seed_inputs, "0x40000000", "0x41600000", dtb)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert loads(seed_inputs) == ["tftpb 0x40400000 xen", "tftpb 0x40800000 Image-dom0",
                                  "tftpb 0x40E00000 board.dtb"]


def test_bank_above_4_gib_in_64_bit_cells_holds_the_loads(seed_inputs: Path) -> None:
    dtb = board(seed_inputs,
                " memory@40000000 { device_type = \"memory\"; reg = <0x0 0x40000000 0x0"
                " 0x40000000>; };\n"
                " memory@800000000 { device_type = \"memory\"; reg = <0x8 0x0 0x0 0x40000000>; };",
                cells=(2, 2))
    result = run(seed_inputs, "0x800000000", "0x840000000", dtb)
    assert result.returncode == 0, result.stderr
    assert loads(seed_inputs)[0] == "tftpb 0x800400000 xen"
    result = run(seed_inputs, "0x7FFE00000", "0x840000000", dtb)
    # The slot 0x800000000 is RAM; MEMORY_START itself is in the hole below the bank.
    assert result.returncode == 0, result.stderr
    assert result.stderr == (
        "ibtasks: warning: MEMORY_START: 0x7ffe00000 is not RAM of DEVICE_TREE (board.dtb) "
        "(its /memory banks are 0x40000000-0x80000000, 0x800000000-0x840000000)\n")


# ---- warnings -----------------------------------------------------------------------------

def test_dtb_without_memory_node_is_built_with_a_warning(seed_inputs: Path) -> None:
    dtb = board(seed_inputs, "")
    result = run(seed_inputs, "0x40000000", "0x80000000", dtb)
    assert result.returncode == 0
    assert result.stderr == (
        "ibtasks: warning: DEVICE_TREE (board.dtb) has no /memory node (device_type = "
        "\"memory\") with a bank: the load addresses are not checked against RAM; U-Boot adds "
        "/memory at boot on many boards, but make sure MEMORY_START..MEMORY_END is RAM\n")
    assert all((seed_inputs / name).exists() for name in OUTPUTS)
    # A no-op rebuild says it again (it is not replayed silently from the last run).
    again = run(seed_inputs, "0x40000000", "0x80000000", dtb)
    assert again.stderr == result.stderr


def test_memory_end_beyond_ram_is_a_warning(seed_inputs: Path) -> None:
    # conftest's mpsoc.dtb has RAM 0x0-0xc0000000.
    result = run(seed_inputs, "0x40000000", "0x100000000", "mpsoc.dtb")
    assert result.returncode == 0
    assert result.stderr == (
        "ibtasks: warning: MEMORY_END: 0x100000000 is not the end of or inside RAM of "
        "DEVICE_TREE (mpsoc.dtb) (its /memory banks are 0x0-0xc0000000)\n")


def test_memory_end_beyond_ram_is_an_error_with_strict_and_leaves_no_output(
        seed_inputs: Path) -> None:
    plain = run(seed_inputs, "0x40000000", "0x100000000", "mpsoc.dtb")
    assert plain.returncode == 0, plain.stderr
    result = run(seed_inputs, "0x40000000", "0x100000000", "mpsoc.dtb", "--strict")
    assert result.returncode == 1
    assert result.stderr == (
        "ibtasks: error: MEMORY_END: 0x100000000 is not the end of or inside RAM of "
        "DEVICE_TREE (mpsoc.dtb) (its /memory banks are 0x0-0xc0000000)\n")
    assert not [n for n in ("boot.source", "boot.scr", "boot.dtb") if (seed_inputs / n).exists()]


def test_with_s_nothing_is_checked_against_the_dtb(seed_inputs: Path) -> None:
    dtb = board(seed_inputs, " memory@80000000 { device_type = \"memory\";"
                             " reg = <0x80000000 0x10000000>; };")
    result = run(seed_inputs, "0x40000000", "0x80000000", dtb, "-s")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


# ---- the memory map and layout.json --------------------------------------------------------

def test_memory_map_prints_the_plan_and_the_ram_banks(seed_inputs: Path) -> None:
    result = run(seed_inputs, "0x40000000", "0x41200000", "mpsoc.dtb", "--memory-map")
    assert result.returncode == 0, result.stderr
    table = result.stdout.splitlines()[:8]
    assert [line.split() for line in table] == [
        ["Memory", "map:", "MEMORY_START", "0x40000000", "to", "MEMORY_END", "0x41200000",
         "(18", "MiB)"],
        ["0x40200000-0x40400000", "0x00200000", "(2", "MiB)", "boot", "script", "boot.scr"],
        ["0x40400000-0x406DC6C0", "0x002DC6C0", "(2.86", "MiB)", "XEN", "xen"],
        ["0x406DC6C0-0x40800000", "0x00123940", "(1.13", "MiB)", "(gap)"],
        ["0x40800000-0x40CC4B40", "0x004C4B40", "(4.76", "MiB)", "DOM0_KERNEL", "Image-dom0"],
        ["0x40CC4B40-0x40E00000", "0x0013B4C0", "(1.23", "MiB)", "(gap)"],
        ["0x40E00000-0x40E001CA", "0x000001CA", "(458", "bytes)", "DEVICE_TREE", "mpsoc.dtb"],
        ["0x40E001CA-0x41200000", "0x003FFE36", "(3.99", "MiB)", "(free", "to", "MEMORY_END)"],
    ]
    assert result.stdout.splitlines()[8] == ("RAM: 0x00000000-0xC0000000 (3 GiB) "
                                             "(/memory of the DTB)")
    assert result.stdout.splitlines()[9].startswith("Generated uboot script boot.scr")


def test_layout_json_of_an_older_ibtasks_reads_without_banks() -> None:
    layout = plan_layout(0x40000000, 0x50000000, [Module("XEN", "xen", 512)])
    old = json.loads(layout.to_json())
    del old["banks"], old["warnings"]
    assert Layout.from_json(json.dumps(old).encode()) == layout


def test_touching_and_overlapping_banks_merge() -> None:
    assert merge_banks([(0x80000000, 0x1000), (0x0, 0x1000), (0x1000, 0x1000),
                        (0x1800, 0x100)]) == [(0x0, 0x2000), (0x80000000, 0x80001000)]
