"""The memory plan: addresses computed by hand at alignment edges, 64-bit RAM, reserved memory,
bss-aware kernels and the seed's not-enough-memory rule; also through the CLI, read back with
fdtget from the edited DTB.

The rule (imagebuilder-upstream.md section 2.2): the script slot is max(MEMORY_START + 2 MiB,
0xC00000); each module starts 2 MiB aligned after the previous one; the last one must end at
least one 2 MiB slot below MEMORY_END.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ibtasks.errors import UserError
from ibtasks.plan.layout import Layout, Module, Region, plan_layout
from tests.conftest import run_ibtasks

MiB = 1024 * 1024


def addresses(layout: Layout) -> list[int]:
    return [r.address for r in layout.regions]


def fdtget(dtb: Path, *args: str) -> str:
    return subprocess.run(["fdtget", "-t", "x", str(dtb), *args], check=True,
                          capture_output=True, text=True).stdout.strip()


# ---- plan_layout by hand ------------------------------------------------------------------------

def test_sizes_at_alignment_edges() -> None:
    modules = [Module("XEN", "a", 2 * MiB), Module("DOM0_KERNEL", "b", 2 * MiB + 1),
               Module("DEVICE_TREE", "c", 512)]
    layout = plan_layout(0x40000000, 0x50000000, modules)
    assert layout.script_slot == 0x40200000
    # 2 MiB exactly takes one slot; 2 MiB + 1 takes two; 512 B takes one.
    assert addresses(layout) == [0x40400000, 0x40600000, 0x40A00000]
    assert layout.end == 0x40C00000


def test_memory_start_zero_puts_the_script_at_12_mib() -> None:
    layout = plan_layout(0, 0x80000000, [Module("XEN", "xen", 512)])
    assert layout.script_slot == 0xC00000
    assert addresses(layout) == [0xE00000]


def test_memory_start_at_1_gib_puts_the_script_2_mib_above() -> None:
    layout = plan_layout(0x40000000, 0x80000000, [Module("XEN", "xen", 512)])
    assert layout.script_slot == 0x40200000
    assert addresses(layout) == [0x40400000]


def test_addresses_above_4_gib() -> None:
    layout = plan_layout(0x800000000, 0x880000000,
                         [Module("XEN", "xen", 3_000_000), Module("DEVICE_TREE", "d", 458)])
    assert layout.script_slot == 0x800200000
    # 3,000,000 = 0x2DC6C0: 0x800400000 + 0x2DC6C0 rounds up to 0x800800000.
    assert addresses(layout) == [0x800400000, 0x800800000]


def test_module_overlapping_reserved_memory_moves_past_it() -> None:
    reserved = [(0x40500000, 0x100000)]
    layout = plan_layout(0x40000000, 0x50000000,
                         [Module("XEN", "xen", 512), Module("DEVICE_TREE", "d", 512)], reserved)
    # 0x40400000 + 512 does not reach 0x40500000; the next slot 0x40600000 is clear too.
    assert addresses(layout) == [0x40400000, 0x40600000]
    layout = plan_layout(0x40000000, 0x50000000,
                         [Module("XEN", "xen", 2 * MiB), Module("DEVICE_TREE", "d", 512)],
                         [(0x40500000, 0x100001)])
    # XEN [0x40400000, 0x40600000) overlaps; it moves to align_up(0x40600001) = 0x40800000.
    assert addresses(layout) == [0x40800000, 0x40A00000]


def test_script_slot_moves_past_reserved_memory() -> None:
    layout = plan_layout(0x40000000, 0x50000000, [Module("XEN", "xen", 512)],
                         [(0x40200000, 0x1000)])
    assert layout.script_slot == 0x40400000
    assert addresses(layout) == [0x40600000]


def test_exactly_enough_memory_is_accepted() -> None:
    # The module ends at 0x40600000 (aligned); the seed wants one more slot: 0x40800000.
    layout = plan_layout(0x40000000, 0x40800000, [Module("XEN", "xen", 512)])
    assert layout.end == 0x40600000


def test_one_byte_short_of_memory_is_rejected() -> None:
    with pytest.raises(UserError) as info:
        plan_layout(0x40000000, 0x407FFFFF, [Module("XEN", "xen", 512)])
    assert str(info.value) == (
        "MEMORY_END: not enough memory to load all binaries: they end at 0x40600000, which "
        "needs MEMORY_END >= 0x40800000; MEMORY_END is 0x407fffff (0x1 (1) bytes short)")


def test_layout_survives_json() -> None:
    layout = plan_layout(0x800000000, 0x880000000,
                         [Module("XEN", "xen", 3_000_000), Module("DOMU_KERNEL[1]", "k", 9 * MiB),
                          Module("DEVICE_TREE", "d", 458)], [(0x800A00000, 0x1000)])
    assert Layout.from_json(layout.to_json()) == layout
    assert layout.region("DOMU_KERNEL[1]") == Region("DOMU_KERNEL[1]", "k", 0x800C00000, 9 * MiB)


# ---- through the CLI ----------------------------------------------------------------------------

BASE = """\
MEMORY_START={start}
MEMORY_END={end}
DEVICE_TREE={dtb}
XEN=xen
DOM0_KERNEL=Image-dom0
"""


def build(inputs: Path, config: str) -> list[str]:
    (inputs / "config").write_text(config)
    result = run_ibtasks("uboot-script-gen", "-c", "config", "-d", ".", "-t", "tftp",
                         cwd=inputs)
    assert result.returncode == 0, result.stderr
    return (inputs / "boot.source").read_text().splitlines()


def test_addresses_above_4_gib_reach_the_script_and_the_dtb(seed_inputs: Path) -> None:
    # A second RAM bank at 32 GiB (as on a ZynqMP), where the config loads everything.
    subprocess.run(["fdtput", "-t", "x", str(seed_inputs / "mpsoc.dtb"), "/memory@40000000",
                    "reg", "0", "0", "0", "0xc0000000", "8", "0", "0", "0x80000000"], check=True)
    source = build(seed_inputs, BASE.format(start="0x800000000", end="0x880000000",
                                            dtb="mpsoc.dtb"))
    # xen 3,000,000 B at 0x800400000 -> 0x800800000; dom0 5,000,000 B -> 0x800E00000.
    assert source[:3] == ["tftpb 0x800400000 xen", "tftpb 0x800800000 Image-dom0",
                          "tftpb 0x800E00000 mpsoc.dtb"]
    assert source[-1] == "booti 0x800400000 - 0x800E00000"
    dtb = seed_inputs / "boot.dtb"
    # 64-bit hi/lo cells: 0x800800000 = <0x8 0x800000>, 5,000,000 = 0x4c4b40.
    assert fdtget(dtb, "/chosen/dom0@800800000", "reg") == "8 800000 0 4c4b40"
    assert "fdt set /chosen/dom0@800800000 reg <0x8 0x800000 0x0 0x4C4B40>" in source


def test_module_past_reserved_memory_in_the_dtb(seed_inputs: Path) -> None:
    # mpsoc-reserved.dtb reserves [0x41000000, 0x41300000). Plan: xen 0x40400000, dom0
    # 0x40800000, ramdisk (1,200,640 B) 0x40E00000 -> 0x41000000, which is reserved: the domU
    # kernel moves to align_up(0x41300000) = 0x41400000, 4 MiB -> the DTB at 0x41800000.
    config = BASE.format(start="0x40000000", end="0x50000000", dtb="mpsoc-reserved.dtb")
    config += ("DOM0_RAMDISK=dom0-ramdisk.cpio\nNUM_DOMUS=1\n"
               "DOMU_KERNEL[0]=zynqmp-dom1/Image-domU\n")
    source = build(seed_inputs, config)
    assert source[:5] == ["tftpb 0x40400000 xen", "tftpb 0x40800000 Image-dom0",
                          "tftpb 0x40E00000 dom0-ramdisk.cpio",
                          "tftpb 0x41400000 zynqmp-dom1/Image-domU",
                          "tftpb 0x41800000 mpsoc-reserved.dtb"]
    dtb = seed_inputs / "boot.dtb"
    assert fdtget(dtb, "/reserved-memory/region@41000000", "reg") == "0 41000000 0 300000"
    assert fdtget(dtb, "/chosen/domU0/module@41400000", "reg") == "0 41400000 0 400000"


def test_kernel_bss_pushes_the_next_module(seed_inputs: Path) -> None:
    # Image-bss: 1,500,000 bytes, header image_size 9 MiB. At 0x40E00000 it needs up to
    # 0x41700000 -> the ramdisk goes to 0x41800000 (by file size it would be 0x41000000).
    config = BASE.format(start="0x40000000", end="0x50000000", dtb="mpsoc.dtb")
    config += ("NUM_DOMUS=1\nDOMU_KERNEL[0]=zynqmp-dom4/Image-bss\n"
               "DOMU_RAMDISK[0]=zynqmp-dom1/domU-ramdisk.cpio\n")
    source = build(seed_inputs, config)
    assert source[2:4] == ["tftpb 0x40E00000 zynqmp-dom4/Image-bss",
                           "tftpb 0x41800000 zynqmp-dom1/domU-ramdisk.cpio"]
    dtb = seed_inputs / "boot.dtb"
    # The reg size is the effective size too (upstream 8bf401c): 9 MiB = 0x900000.
    assert fdtget(dtb, "/chosen/domU0/module@40E00000", "reg") == "0 40e00000 0 900000"
    assert fdtget(dtb, "/chosen/domU0/module@41800000", "reg") == "0 41800000 0 200"


@pytest.mark.parametrize(("end", "ok"), [("0x41200000", True), ("0x411FFFFF", False)])
def test_not_enough_memory_boundary_through_the_cli(seed_inputs: Path, end: str, ok: bool
                                                    ) -> None:
    # xen 0x40400000, dom0 0x40800000 -> 0x40E00000, dtb (458 B) -> 0x41000000; + 2 MiB.
    (seed_inputs / "config").write_text(BASE.format(start="0x40000000", end=end,
                                                    dtb="mpsoc.dtb"))
    result = run_ibtasks("uboot-script-gen", "-c", "config", "-d", ".", "-t", "tftp",
                         cwd=seed_inputs)
    assert (result.returncode == 0) == ok, result.stderr
    assert (seed_inputs / "boot.scr").exists() == ok
