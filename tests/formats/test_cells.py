"""No silent overflow: every address and size is checked against the field it is written into.

The rule (ibtasks/formats/cells.py, layout.py): MEMORY_START/MEMORY_END fit 64 bits; a layout never
holds an address past 2^64 (the seed's MEMORY_END rule catches modules pushed there by their
size or by reserved memory near the top); device-tree values fit the cells of their node
(/chosen and domU nodes: 2 + 2; `cpus` and event-channel ports: one cell); a bootm uImage's
load/entry fields and the `fpga load` size hold 32 bits. Each error names the key.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from ibtasks.errors import UserError
from ibtasks.formats.cells import check_u32, to_cells
from ibtasks.plan.layout import Module, align_up, plan_layout
from ibtasks.tasks.boot_actions import write_layout
from ibtasks.tasks.task_inputs import LayoutInput
from tests.conftest import run_ibtasks

TOP = 1 << 64
MiB = 1 << 20
CONFIG = """\
MEMORY_START={start}
MEMORY_END={end}
DEVICE_TREE=mpsoc.dtb
XEN=xen
DOM0_KERNEL=Image-dom0
"""


def fail(inputs: Path, config: str) -> str:
    (inputs / "config").write_text(config)
    result = run_ibtasks("uboot-script-gen", "-c", "config", "-d", ".", "-t", "tftp",
                         cwd=inputs)
    assert result.returncode == 1, result.stdout
    assert not (inputs / "boot.scr").exists() and not (inputs / "boot.dtb").exists()
    return result.stderr


# ---- cells by hand --------------------------------------------------------------------------

def test_largest_64_bit_value_fills_two_cells() -> None:
    assert to_cells(TOP - 1, 2, "K", "a reg") == (0xFFFFFFFF, 0xFFFFFFFF)
    assert to_cells(0x800400000, 2, "K", "a reg") == (0x8, 0x400000)
    assert to_cells(0x1234, 1, "K", "cpus") == (0x1234,)


def test_value_of_65_bits_does_not_fit_two_cells() -> None:
    with pytest.raises(UserError) as info:
        to_cells(TOP, 2, "DOMU_KERNEL[0]", "the reg of /chosen/domU0/module@0", "config")
    assert str(info.value) == ("config: DOMU_KERNEL[0]: 0x10000000000000000 does not fit the "
                               "reg of /chosen/domU0/module@0 (2 cells, 64 bits)")


def test_value_of_33_bits_does_not_fit_a_32_bit_field() -> None:
    with pytest.raises(UserError) as info:
        check_u32(1 << 32, "BITSTREAM", "the size argument of 'fpga load'")
    assert str(info.value) == ("BITSTREAM: 0x100000000 (4294967296) does not fit the size "
                               "argument of 'fpga load' (32 bits)")
    assert check_u32(0xFFFFFFFF, "BITSTREAM", "x") == 0xFFFFFFFF


# ---- MEMORY_START/MEMORY_END and the layout near 2^64 -----------------------------------------

@pytest.mark.parametrize(("start", "end", "key", "line", "value"), [
    ("0x40000000", "0x10000000000000000", "MEMORY_END", 2, "0x10000000000000000"),
    ("0x10000000000000000", "0x20000000000000000", "MEMORY_START", 1,
     "0x10000000000000000"),
])
def test_memory_start_or_end_past_64_bits_is_rejected(seed_inputs: Path, start: str, end: str,
                                                      key: str, line: int, value: str) -> None:
    assert fail(seed_inputs, CONFIG.format(start=start, end=end)) == (
        f"ibtasks: error: config:{line}: {key}: {value} does not fit in 64 bits\n")


def test_layout_pushed_past_2_to_the_64_by_reserved_memory_is_rejected() -> None:
    # RAM up to the last byte; a reserved region covers the top 8 MiB. XEN (48 MiB) ends at
    # 2^64 - 12 MiB; the DTB (8 MiB) would overlap the region, so it is pushed to
    # align_up(2^64) = 2^64: the seed's rule refuses it, nothing wraps.
    start = TOP - 64 * MiB
    reserved = [(TOP - 8 * MiB, 8 * MiB)]
    modules = [Module("XEN", "xen", 48 * MiB), Module("DEVICE_TREE", "d.dtb", 8 * MiB)]
    with pytest.raises(UserError) as info:
        plan_layout(start, TOP - 1, modules, reserved)
    assert str(info.value).startswith(
        "MEMORY_END: not enough memory to load all binaries: they end at 0x10000000000800000")
    # Without the reservation everything ends below the last 2 MiB slot, in 64 bits.
    layout = plan_layout(start, TOP - 1, [*modules[:1], Module("DEVICE_TREE", "d.dtb", 512)])
    assert [r.address for r in layout.regions] == [start + 4 * MiB, start + 52 * MiB]
    assert layout.end == align_up(start + 52 * MiB + 512) < TOP - 2 * MiB
    assert all(to_cells(r.end, 2, r.key, "reg") for r in layout.regions)


def test_module_of_2_to_the_64_bytes_is_rejected_not_wrapped() -> None:
    with pytest.raises(UserError) as info:
        plan_layout(0x40000000, TOP - 1, [Module("XEN", "xen", TOP)])
    assert "they end at 0x10000000040400000" in str(info.value)


# ---- 32-bit fields: bootm's uImage, fpga load ------------------------------------------------

def test_bootm_xen_above_4_gib_is_rejected_naming_xen(seed_inputs: Path) -> None:
    subprocess.run(["fdtput", "-t", "x", str(seed_inputs / "mpsoc.dtb"), "/memory@40000000",
                    "reg", "8", "0", "0", "0x80000000"], check=True)
    config = CONFIG.format(start="0x800000000", end="0x880000000") + "BOOT_CMD=bootm\n"
    assert fail(seed_inputs, config) == (
        "ibtasks: error: XEN: 0x800400000 (34363932672) does not fit the load and entry fields "
        "of the legacy uImage BOOT_CMD=bootm boots (use booti above 4 GiB) (32 bits)\n")


def test_bootm_xen_below_4_gib_is_built(seed_inputs: Path) -> None:
    (seed_inputs / "config").write_text(
        CONFIG.format(start="0xC0000000", end="0xC8000000") + "BOOT_CMD=bootm\n")
    subprocess.run(["fdtput", "-t", "x", str(seed_inputs / "mpsoc.dtb"), "/memory@40000000",
                    "reg", "0", "0", "1", "0"], check=True)  # RAM 0-4 GiB
    result = run_ibtasks("uboot-script-gen", "-c", "config", "-d", ".", "-t", "tftp",
                         cwd=seed_inputs)
    assert result.returncode == 0, result.stderr
    listing = subprocess.run(["dumpimage", "-l", str(seed_inputs / "xen.ub")], check=True,
                             capture_output=True, text=True).stdout
    assert "Load Address: c0400000" in listing


def test_bitstream_of_4_gib_is_rejected_for_fpga_load(tmp_path: Path) -> None:
    # The layout task's inputs are the checks' JSON records (written by ib_check).
    checks = {}
    for key, size in (("XEN", 512), ("DEVICE_TREE", 458), ("BITSTREAM", 1 << 32)):
        checks[key] = tmp_path / f"{key}.json"
        checks[key].write_text(json.dumps({"key": key, "kind": "x", "size": size,
                                           "effective_size": size}))
    modules = [(key, key.lower(), str(path)) for key, path in checks.items()]
    with pytest.raises(UserError) as info:
        write_layout(LayoutInput(0x40000000, 0x200000000, tuple(m[:2] for m in modules), None,
                                 False), tuple(m[2] for m in modules), None,
                     str(tmp_path / "layout.json"))
    assert str(info.value) == ("BITSTREAM: 0x100000000 (4294967296) does not fit the size "
                               "argument of 'fpga load' (32 bits)")
    assert not (tmp_path / "layout.json").exists()


# ---- domain properties in their cells ---------------------------------------------------------

@pytest.mark.parametrize(("extra", "message"), [
    ("DOMU_VCPUS[0]=4294967296\n",
     "config: DOMU_VCPUS[0]: 0x100000000 does not fit /chosen/domU0 cpus (1 cells, 32 bits)"),
    ('DOMU_STATIC_MEM[0]="0x10000000000000000 0x1000000"\n',
     "config: DOMU_STATIC_MEM[0]: 0x10000000000000000 does not fit xen,static-mem (2 cells, "
     "64 bits)"),
    ('DOMU_SHARED_MEM[0]="shm1 0x10000000000000000 0x1000"\nDOMU_ENHANCED[0]=1\n',
     "config: DOMU_SHARED_MEM[0]: 0x10000000000000000 does not fit xen,shared-mem (2 cells, "
     "64 bits)"),
])
def test_domain_value_too_wide_for_its_cells_is_rejected(seed_inputs: Path, extra: str,
                                                          message: str) -> None:
    config = (CONFIG.format(start="0x40000000", end="0x80000000")
              + "NUM_DOMUS=1\nDOMU_KERNEL[0]=zynqmp-dom1/Image-domU\n" + extra)
    assert fail(seed_inputs, config) == f"ibtasks: error: {message}\n"
