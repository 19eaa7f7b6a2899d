"""A board DTB of 20,000 nodes goes through the check and the edits intact (correctness only;
benchmarks/bench_large_inputs.py measures that the time per node stays flat).

The DTB is written by our own DTB writer (ibtasks.formats.dtb.tree) and read back with fdtget: every
node kept, the /chosen edits applied, and the cpupool's new phandles allocated downward from
0xfffffffe past the phandles the board already uses.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from ibtasks.formats.dtb.tree import cells_value, new_node, new_tree, strings_value, write_dtb
from tests.conftest import run_ibtasks

NODES = 20_000


def big_board(path: Path, nodes: int = NODES) -> None:
    """A root with /cpus (two CPUs without phandles), RAM at 1 GiB and `nodes` devices under
    /bus, each with a phandle; the last one takes 0xfffffffe, the first phandle we allocate."""
    devices = tuple(
        new_node(f"device@{i:x}", (
            ("compatible", strings_value("vendor,device")),
            ("reg", cells_value(i, 0x10)),
            ("phandle", cells_value(0xFFFFFFFE if i == nodes - 1 else i + 1))))
        for i in range(nodes))
    cpus = new_node("cpus", (("#address-cells", cells_value(1)), ("#size-cells", cells_value(0))),
                    tuple(new_node(f"cpu@{i}", (("device_type", strings_value("cpu")),
                                                ("reg", cells_value(i)))) for i in range(2)))
    root = new_node("", (("#address-cells", cells_value(2)), ("#size-cells", cells_value(2))), (
        new_node("chosen"),
        cpus,
        new_node("memory@40000000", (("device_type", strings_value("memory")),
                                     ("reg", cells_value(0, 0x40000000, 0, 0x80000000)))),
        new_node("bus", (("#address-cells", cells_value(1)), ("#size-cells", cells_value(1))),
                 devices),
    ))
    path.write_bytes(write_dtb(new_tree(root)))


def fdtget(dtb: Path, *args: str) -> str:
    return subprocess.run(["fdtget", str(dtb), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def test_dtb_of_20000_nodes_is_checked_and_edited_intact(seed_inputs: Path) -> None:
    big_board(seed_inputs / "big.dtb")
    (seed_inputs / "config").write_text(
        "MEMORY_START=0x40000000\nMEMORY_END=0x80000000\nDEVICE_TREE=big.dtb\nXEN=xen\n"
        "DOM0_KERNEL=Image-dom0\nNUM_CPUPOOLS=1\nCPUPOOL[0]=\"cpu@0,cpu@1 credit2\"\n")
    result = run_ibtasks("uboot-script-gen", "-c", "config", "-d", ".", "-t", "tftp",
                         cwd=seed_inputs)
    assert result.returncode == 0, result.stderr
    edited = seed_inputs / "boot.dtb"
    devices = fdtget(edited, "-l", "/bus").split()
    assert len(devices) == NODES
    assert devices[0] == "device@0" and devices[-1] == f"device@{NODES - 1:x}"
    assert fdtget(edited, "-t", "x", f"/bus/device@{NODES // 2:x}", "reg") == f"{NODES // 2:x} 10"
    # 0xfffffffe is taken by the last device: the CPUs get 0xfffffffd and 0xfffffffc, the pool
    # 0xfffffffb.
    assert fdtget(edited, "-t", "x", "/cpus/cpu@0", "phandle") == "fffffffd"
    assert fdtget(edited, "-t", "x", "/cpus/cpu@1", "phandle") == "fffffffc"
    assert fdtget(edited, "-t", "x", "/chosen/cpupool_0", "cpupool-cpus") == "fffffffd fffffffc"
    assert fdtget(edited, "-t", "x", "/chosen/cpupool_0", "phandle") == "fffffffb"
    assert fdtget(edited, "-t", "x", "/chosen/dom0@40800000", "reg") == "0 40800000 0 4c4b40"
