"""Upstream's domain and Xen keys reach the device tree: read back with fdtget from our edited DTB
and, identically, from the input DTB after the script's `fdt` commands are applied with fdtput.

Property names and formats: Xen docs/misc/arm/device-tree/booting.txt and cpupools.txt.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from ibtasks.config.build import build_config
from ibtasks.config.loader import raw_from_bash
from ibtasks.config.model import Options
from ibtasks.config.yaml_reader import read_yaml_config
from tests.conftest import run_ibtasks
from tests.fdtscript import apply_with_fdtput, dts_of

BASE = """\
MEMORY_START=0x40000000
MEMORY_END=0x80000000
DEVICE_TREE={dtb}
XEN=xen
"""
DOM0 = "DOM0_KERNEL=Image-dom0\n"
ONE_DOMU = "NUM_DOMUS=1\nDOMU_KERNEL[0]=zynqmp-dom1/Image-domU\n"
TWO_DOMUS = ONE_DOMU + "NUM_DOMUS=2\nDOMU_KERNEL[1]=zynqmp-dom2/Image-domU\n"


class Built:
    """Our edited DTB and the input DTB with our script applied by fdtput; reads must agree."""

    def __init__(self, inputs: Path, dtb: str) -> None:
        self.edited = inputs / "boot.dtb"
        self.by_fdtput = inputs / "by-fdtput.dtb"
        shutil.copy(inputs / dtb, self.by_fdtput)
        self.script = (inputs / "boot.source").read_text()
        apply_with_fdtput(self.by_fdtput, self.script)
        assert dts_of(self.edited) == dts_of(self.by_fdtput)

    def get(self, node: str, prop: str, kind: str = "x") -> str:
        """`fdtget -t kind`; the same from both trees."""
        values = [subprocess.run(["fdtget", "-t", kind, str(dtb), node, prop], check=True,
                                 capture_output=True, text=True).stdout.strip()
                  for dtb in (self.edited, self.by_fdtput)]
        assert values[0] == values[1]
        if kind == "x":  # fdtget prints bare hex; write cells as 0 and 0x...
            return " ".join(hex(int(w, 16)) if int(w, 16) else "0" for w in values[0].split())
        return values[0]

    def props(self, node: str) -> list[str]:
        return subprocess.run(["fdtget", "-p", str(self.edited), node], check=True,
                              capture_output=True, text=True).stdout.split()

    def children(self, node: str) -> list[str]:
        return subprocess.run(["fdtget", "-l", str(self.edited), node], check=True,
                              capture_output=True, text=True).stdout.split()


def build(inputs: Path, config: str, dtb: str = "mpsoc.dtb") -> Built:
    (inputs / "config").write_text(BASE.format(dtb=dtb) + config)
    result = run_ibtasks("uboot-script-gen", "-c", "config", "-d", ".", "-t", "tftp", cwd=inputs)
    assert result.returncode == 0, result.stderr
    return Built(inputs, dtb)


def compile_dts(inputs: Path, name: str, text: str) -> str:
    subprocess.run(["dtc", "-q", "-I", "dts", "-O", "dtb", "-o", str(inputs / name), "-"],
                   input=text, text=True, check=True)
    return name


def cpus_dts(root_cells: tuple[int, int] = (2, 2), cpu0_phandle: int | None = None,
             other_phandle: int | None = None) -> str:
    cpu0 = f"phandle = <{cpu0_phandle:#x}>;" if cpu0_phandle else ""
    other = f"thing {{ phandle = <{other_phandle:#x}>; }};" if other_phandle else ""
    return f"""/dts-v1/;
/ {{
    #address-cells = <{root_cells[0]}>;
    #size-cells = <{root_cells[1]}>;
    chosen {{ }};
    cpus {{
        #address-cells = <1>;
        #size-cells = <0>;
        cpu@0 {{ device_type = "cpu"; reg = <0>; {cpu0} }};
        cpu@1 {{ device_type = "cpu"; reg = <1>; }};
        cpu@2 {{ device_type = "cpu"; reg = <2>; }};
    }};
    {other}
}};
"""


# ---- dom0less without dom0; DOM0_MEM, DOM0_VCPUS ------------------------------------------------


def test_without_dom0_kernel_there_is_no_dom0_and_no_dom0_words_in_xen_cmd(
        seed_inputs: Path) -> None:
    built = build(seed_inputs, TWO_DOMUS)
    assert built.get("/chosen", "xen,xen-bootargs", "s") == \
        "console=dtuart dtuart=serial0 bootscrub=0 vwfi=native sched=null"
    assert built.children("/chosen") == ["domU1", "domU0"]
    assert "xen,dom0-bootargs" not in built.props("/chosen")
    assert "Image-dom0" not in built.script


def test_dom0_mem_and_vcpus_feed_the_default_xen_cmd(seed_inputs: Path) -> None:
    built = build(seed_inputs, DOM0 + "DOM0_MEM=768\nDOM0_VCPUS=2\n")
    assert built.get("/chosen", "xen,xen-bootargs", "s") == (
        "console=dtuart dtuart=serial0 dom0_mem=768M dom0_max_vcpus=2 bootscrub=0 vwfi=native "
        "sched=null")


def test_default_dom0_mem_stays_the_seeds_1g(seed_inputs: Path) -> None:
    built = build(seed_inputs, DOM0 + "DOM0_VCPUS=3\n")
    assert "dom0_mem=1G dom0_max_vcpus=3 " in built.get("/chosen", "xen,xen-bootargs", "s")


# ---- DOMU_ENHANCED, DOMU_VPL011 -----------------------------------------------------------------


@pytest.mark.parametrize(("dom0", "value", "expected"), [
    (True, None, "enabled"),  # upstream's default with a dom0
    (False, None, None),  # nobody runs xenstored
    (True, "0", None),
    (False, "1", "enabled"),
    (True, "2", "no-xenstore"),  # upstream writes "enabled" here; we do not copy that bug
    (False, "no-xenstore", "no-xenstore"),
])
def test_domu_enhanced(seed_inputs: Path, dom0: bool, value: str | None,
                       expected: str | None) -> None:
    extra = f"DOMU_ENHANCED[0]={value}\n" if value is not None else ""
    built = build(seed_inputs, (DOM0 if dom0 else "") + ONE_DOMU + extra)
    if expected is None:
        assert "xen,enhanced" not in built.props("/chosen/domU0")
    else:
        assert built.get("/chosen/domU0", "xen,enhanced", "s") == expected


def test_domu_vpl011_0_omits_vpl011_and_the_ttyama0_console(seed_inputs: Path) -> None:
    built = build(seed_inputs, DOM0 + TWO_DOMUS + "DOMU_VPL011[0]=0\n")
    assert "vpl011" not in built.props("/chosen/domU0")
    assert built.get("/chosen/domU1", "vpl011") == "0x1"
    kernel = next(c for c in built.children("/chosen/domU0") if c.startswith("module@"))
    assert built.get(f"/chosen/domU0/{kernel}", "bootargs", "s") == ""


# ---- static memory, direct map, shared memory ---------------------------------------------------


def test_domu_static_mem_sets_regions_memory_sum_and_direct_map(seed_inputs: Path) -> None:
    built = build(seed_inputs, ONE_DOMU +
                  'DOMU_STATIC_MEM[0]="0x60000000 0x1000000 0x100000000 0x200000"\n')
    assert built.get("/chosen/domU0", "xen,static-mem") == \
        "0 0x60000000 0 0x1000000 0x1 0 0 0x200000"
    assert built.get("/chosen/domU0", "memory") == f"0 {(0x1000000 + 0x200000) // 1024:#x}"
    assert "direct-map" in built.props("/chosen/domU0")


def test_domu_direct_map_0_with_static_mem_omits_direct_map(seed_inputs: Path) -> None:
    built = build(seed_inputs, ONE_DOMU + 'DOMU_STATIC_MEM[0]="0x60000000 0x1000000"\n'
                  "DOMU_DIRECT_MAP[0]=0\n")
    assert "direct-map" not in built.props("/chosen/domU0")


def test_domu_shared_mem_with_and_without_host_address(seed_inputs: Path) -> None:
    built = build(seed_inputs, TWO_DOMUS +
                  'DOMU_SHARED_MEM[0]="shm-a 0x70000000 0x10000000 0x200000; shm-b 0x8000000 '
                  '0x1000"\nDOMU_SHARED_MEM[1]="shm-a 0x70000000 0x20000000 0x200000"\n')
    assert built.children("/chosen/domU0")[1:] == ["shared-mem-shm-b", "shared-mem@70000000"]
    node = "/chosen/domU0/shared-mem@70000000"
    assert built.get(node, "compatible", "s") == "xen,domain-shared-memory-v1"
    assert built.get(node, "xen,shm-id", "s") == "shm-a"
    assert built.get(node, "xen,shared-mem") == "0 0x70000000 0 0x10000000 0 0x200000"
    assert built.get("/chosen/domU0/shared-mem-shm-b", "xen,shared-mem") == \
        "0 0x8000000 0 0x1000"
    assert built.get("/chosen/domU1/shared-mem@70000000", "xen,shared-mem") == \
        "0 0x70000000 0 0x20000000 0 0x200000"


# ---- one-number properties ----------------------------------------------------------------------


@pytest.mark.parametrize(("key", "value", "prop", "cell"), [
    ("DOMU_NR_SPIS", "64", "nr_spis", "0x40"),
    ("DOMU_GRANT_VER", "2", "max_grant_version", "0x2"),
    ("DOMU_GRANT_FRAMES", "32", "max_grant_frames", "0x20"),
    ("DOMU_MAPTRACK_FRAMES", "0", "max_maptrack_frames", "0"),
    ("DOMU_DOMID", "7", "domid", "0x7"),
    ("DOMU_TRAP_UNMAP", "0", "trap-unmapped-accesses", "0"),
    ("DOMU_CAPS", "control", "capabilities", "0x1"),
    ("DOMU_CAPS", "control,xenstore", "capabilities", "0x5"),
    ("DOMU_CAPS", "6", "capabilities", "0x6"),
])
def test_domu_number_properties(seed_inputs: Path, key: str, value: str, prop: str,
                                cell: str) -> None:
    built = build(seed_inputs, ONE_DOMU + f"{key}[0]={value}\n")
    assert built.get("/chosen/domU0", prop) == cell


def test_domu_caps_dom0_means_all_three_when_there_is_no_dom0(seed_inputs: Path) -> None:
    built = build(seed_inputs, ONE_DOMU + "DOMU_CAPS[0]=dom0\n")
    assert built.get("/chosen/domU0", "capabilities") == "0x7"


def test_domu_passthrough_prop_is_a_string(seed_inputs: Path) -> None:
    built = build(seed_inputs, ONE_DOMU + "DOMU_PASSTHROUGH_PROP[0]=enabled\n")
    assert built.get("/chosen/domU0", "passthrough", "s") == "enabled"


# ---- colours ------------------------------------------------------------------------------------


def test_colours_use_current_xens_llc_colors_and_command_line(seed_inputs: Path) -> None:
    built = build(seed_inputs, DOM0 + ONE_DOMU + "XEN_COLORS=0-1\nDOM0_COLORS=2-3\n"
                  "DOMU_COLORS[0]=4-7,9\n")
    assert built.get("/chosen/domU0", "llc-colors", "s") == "4-7,9"
    assert built.get("/chosen", "xen,xen-bootargs", "s").endswith(
        "sched=null llc-coloring=on xen-llc-colors=0-1 dom0-llc-colors=2-3")


def test_domu_colors_with_an_explicit_xen_cmd_that_enables_colouring(seed_inputs: Path) -> None:
    built = build(seed_inputs, DOM0 + ONE_DOMU + 'XEN_CMD="console=dtuart llc-coloring=on"\n'
                  "DOMU_COLORS[0]=3\n")
    assert built.get("/chosen/domU0", "llc-colors", "s") == "3"


# ---- cpupools -----------------------------------------------------------------------------------


def test_cpupool_reuses_existing_phandles_and_allocates_new_ones_downward(
        seed_inputs: Path) -> None:
    # cpu@0 already has phandle 0x5; 0xfffffffe is taken by another node, so new ones skip it.
    dtb = compile_dts(seed_inputs, "cpus.dtb", cpus_dts(cpu0_phandle=5, other_phandle=0xFFFFFFFE))
    built = build(seed_inputs, TWO_DOMUS + 'NUM_CPUPOOLS=2\nCPUPOOL[0]="cpu@0,cpu@1 credit2"\n'
                  'CPUPOOL[1]="cpu@2"\nDOMU_CPUPOOL[1]=1\nDOMU_CPUPOOL[0]=0\n', dtb)
    assert built.get("/cpus/cpu@0", "phandle") == "0x5"
    assert built.get("/cpus/cpu@1", "phandle") == "0xfffffffd"
    assert built.get("/chosen/cpupool_0", "phandle") == "0xfffffffc"
    assert built.get("/cpus/cpu@2", "phandle") == "0xfffffffb"
    assert built.get("/chosen/cpupool_1", "phandle") == "0xfffffffa"
    assert built.get("/chosen/cpupool_0", "compatible", "s") == "xen,cpupool"
    assert built.get("/chosen/cpupool_0", "cpupool-cpus") == "0x5 0xfffffffd"
    assert built.get("/chosen/cpupool_0", "cpupool-sched", "s") == "credit2"
    assert "cpupool-sched" not in built.props("/chosen/cpupool_1")
    assert built.get("/chosen/domU0", "domain-cpupool") == "0xfffffffc"
    assert built.get("/chosen/domU1", "domain-cpupool") == "0xfffffffa"
    assert "fdt set /cpus/cpu@0 phandle" not in built.script


# ---- static event channels, vCPU affinity, passthrough paths ------------------------------------


def test_static_event_channels_link_both_ends_by_phandle(seed_inputs: Path) -> None:
    built = build(seed_inputs, TWO_DOMUS + "DOMU_ENHANCED[0]=2\nDOMU_ENHANCED[1]=2\n"
                  'DOMU_STATIC_EVTCHNS[0]="10 1 20; 11 1 21"\n'
                  'DOMU_STATIC_EVTCHNS[1]="20 0 10; 21 0 11"\n')
    ends = {}
    for domu, port in (("domU0", 10), ("domU0", 11), ("domU1", 20), ("domU1", 21)):
        node = f"/chosen/{domu}/evtchn@{port:X}"
        assert built.get(node, "compatible", "s") == "xen,evtchn-v1"
        ends[domu, port] = (int(built.get(node, "phandle"), 16),
                            [int(c, 16) for c in built.get(node, "xen,evtchn").split()])
    assert ends["domU0", 10][1] == [10, ends["domU1", 20][0]]
    assert ends["domU1", 20][1] == [20, ends["domU0", 10][0]]
    assert ends["domU0", 11][1] == [11, ends["domU1", 21][0]]
    assert len({phandle for phandle, _ in ends.values()}) == 4


def test_vcpu_hard_affinity_from_a_bash_associative_array(seed_inputs: Path) -> None:
    built = build(seed_inputs, ONE_DOMU + "DOMU_VCPUS[0]=2\n"
                  "declare -A DOMU_VCPU_HARD_AFFINITY\n"
                  'DOMU_VCPU_HARD_AFFINITY[0,1]="1,4-7"\nDOMU_VCPU_HARD_AFFINITY[0,0]="0-3"\n')
    for vcpu, pcpus in ((0, "0-3"), (1, "1,4-7")):
        node = f"/chosen/domU0/vcpu{vcpu}"
        assert built.get(node, "compatible", "s") == "xen,vcpu"
        assert built.get(node, "id") == (hex(vcpu) if vcpu else "0")
        assert built.get(node, "hard-affinity", "s") == pcpus


def test_passthrough_paths_mark_host_nodes_also_for_domus_dom0_starts(seed_inputs: Path) -> None:
    built = build(seed_inputs, DOM0 + TWO_DOMUS + "DOMU_NOBOOT[1]=1\n"
                  'DOMU_PASSTHROUGH_PATHS[1]="/ethernet@ff0e0000"\n', "mpsoc-cpus.dtb")
    assert "xen,passthrough" in built.props("/ethernet@ff0e0000")
    assert built.children("/chosen")[0] == "domU0"  # domU1 is not booted by Xen


# ---- static heap --------------------------------------------------------------------------------


def test_static_heap_uses_the_root_nodes_two_plus_two_cells(seed_inputs: Path) -> None:
    built = build(seed_inputs, DOM0 + 'XEN_STATIC_HEAP="0x70000000 0x1000000 0x100000000 '
                  '0x2000000"\n')
    assert built.get("/chosen", "xen,static-heap") == \
        "0 0x70000000 0 0x1000000 0x1 0 0 0x2000000"


def test_static_heap_uses_the_root_nodes_one_plus_one_cells(seed_inputs: Path) -> None:
    dtb = compile_dts(seed_inputs, "cells11.dtb", cpus_dts(root_cells=(1, 1)))
    built = build(seed_inputs, DOM0 + 'XEN_STATIC_HEAP="0x70000000 0x1000000"\n', dtb)
    assert built.get("/chosen", "xen,static-heap") == "0x70000000 0x1000000"


# ---- config-only keys, rebuilds -----------------------------------------------------------------


def test_domu_driver_domain_is_a_config_field(seed_inputs: Path) -> None:
    text = BASE.format(dtb="mpsoc.dtb") + DOM0 + TWO_DOMUS + "DOMU_DRIVER_DOMAIN[1]=1\n"
    config = build_config(raw_from_bash(text, "config", {}),
                          Options(root_dir=seed_inputs, load_cmd="tftpb"))
    assert [d.driver_domain for d in config.domus] == [False, True]


def test_changing_a_domain_property_rebuilds_the_dtb_and_script(seed_inputs: Path) -> None:
    first = build(seed_inputs, ONE_DOMU + "DOMU_NR_SPIS[0]=10\n")
    assert first.get("/chosen/domU0", "nr_spis") == "0xa"
    second = build(seed_inputs, ONE_DOMU + "DOMU_NR_SPIS[0]=11\n")
    assert second.get("/chosen/domU0", "nr_spis") == "0xb"
    assert "nr_spis <0xB>" in second.script


def test_adding_a_passthrough_path_rechecks_the_device_tree(seed_inputs: Path) -> None:
    build(seed_inputs, DOM0 + ONE_DOMU, "mpsoc-cpus.dtb")
    built = build(seed_inputs, DOM0 + ONE_DOMU + 'DOMU_PASSTHROUGH_PATHS[0]="/ethernet@ff0e0000"\n',
                  "mpsoc-cpus.dtb")
    assert "xen,passthrough" in built.props("/ethernet@ff0e0000")


def test_yaml_domu_keys_reach_the_config(seed_inputs: Path) -> None:
    text = ("MEMORY_START: 0x40000000\nMEMORY_END: 0x80000000\nDEVICE_TREE: mpsoc.dtb\n"
            "XEN: xen\nDOM0_MEM: 700\nDOM0_KERNEL: Image-dom0\nDOMUS:\n"
            "  - KERNEL: zynqmp-dom1/Image-domU\n    ENHANCED: 2\n"
            "    STATIC_MEM: 0x60000000 0x1000000\n")
    config = build_config(read_yaml_config(text, "config.yaml"),
                          Options(root_dir=seed_inputs, load_cmd="tftpb"))
    assert config.domus[0].props.enhanced == "no-xenstore"
    assert config.domus[0].props.static_mem == ((0x60000000, 0x1000000),)
    assert config.domus[0].mem_mib == 16
    assert "dom0_mem=700M" in config.xen_cmd


def tasks_run(inputs: Path) -> set[str]:
    """Build through doit's JSON reporter; the tasks whose actions ran."""
    result = run_ibtasks("uboot-script-gen", "-c", "config", "-d", ".", "-t", "tftp", "--", "run",
                         "--reporter", "json", cwd=inputs)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout[: result.stdout.rindex("}") + 1])
    return {t["name"] for t in report["tasks"]
            if t["result"] == "success" and t["name"] != "ib_check"}


def test_domain_keys_rebuild_only_what_they_change(seed_inputs: Path) -> None:
    config = BASE.format(dtb="mpsoc-cpus.dtb") + DOM0 + ONE_DOMU + (
        'NUM_CPUPOOLS=1\nCPUPOOL[0]="cpu@1"\nDOMU_PASSTHROUGH_PATHS[0]="/ethernet@ff0e0000"\n')
    (seed_inputs / "config").write_text(config)
    assert "ib_dtb" in tasks_run(seed_inputs)
    # Moving lines changes only the places errors would name: nothing runs.
    (seed_inputs / "config").write_text("# a comment\n\n" + config)
    assert tasks_run(seed_inputs) == set()
    (seed_inputs / "config").write_text(config + "DOMU_NR_SPIS[0]=3\n")
    assert tasks_run(seed_inputs) == {"ib_dtb", "ib_boot_source", "ib_boot_scr"}


def test_yaml_cpupools_are_a_list(seed_inputs: Path) -> None:
    text = ("MEMORY_START: 0x40000000\nMEMORY_END: 0x80000000\nDEVICE_TREE: mpsoc.dtb\n"
            "XEN: xen\nDOM0_KERNEL: Image-dom0\nNUM_CPUPOOLS: 2\n"
            "CPUPOOL: ['cpu@1 null', 'cpu@2,cpu@3']\n")
    config = build_config(read_yaml_config(text, "config.yaml"),
                          Options(root_dir=seed_inputs, load_cmd="tftpb"))
    assert [(p.cpus, p.sched) for p in config.xen_props.cpupools] == [
        (("cpu@1",), "null"), (("cpu@2", "cpu@3"), None)]


def test_counts_in_hex_are_read_as_bash_arithmetic_reads_them(seed_inputs: Path) -> None:
    # The original computes `$((DOMU_MEM[i]*1024))`, so 0x100 MiB is 256 MiB.
    built = build(seed_inputs, "NUM_DOMUS=0x1\nDOMU_KERNEL[0]=zynqmp-dom1/Image-domU\n"
                               "DOMU_MEM[0]=0x100\nDOMU_VCPUS[0]=0x2\n")
    assert built.get("/chosen/domU0", "memory") == "0 0x40000"
    assert built.get("/chosen/domU0", "cpus") == "0x2"
