"""Every validation rule of the domain and Xen keys: one config per rule, the exact message.

Config rules are checked where the config is built (the message is what the CLI prints after
`ibtasks: error: `); rules that need facts of the DTB (CPU nodes, node paths, root cells) fail in
the DTB task and are checked through the CLI, with no output left behind.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ibtasks.config.build import build_config
from ibtasks.config.loader import raw_from_bash
from ibtasks.config.model import Options
from ibtasks.config.yaml_reader import read_yaml_config
from ibtasks.errors import UserError
from tests.conftest import run_ibtasks

OUTPUTS = ("boot.source", "boot.scr", "boot.dtb")
BASE = """\
MEMORY_START=0x40000000
MEMORY_END=0x80000000
DEVICE_TREE=mpsoc-cpus.dtb
XEN=xen
"""
DOM0 = "DOM0_KERNEL=Image-dom0\n"
DOMUS = """\
NUM_DOMUS=2
DOMU_KERNEL[0]=zynqmp-dom1/Image-domU
DOMU_KERNEL[1]=zynqmp-dom2/Image-domU
"""


def error_of(inputs: Path, extra: str, dom0: bool = True) -> str:
    """The message of the UserError building the config raises; lines 1-7 are BASE + DOMUS."""
    text = BASE + DOMUS + (DOM0 if dom0 else "") + extra
    with pytest.raises(UserError) as caught:
        build_config(raw_from_bash(text, "config", {}), Options(root_dir=inputs, load_cmd="tftpb"))
    return str(caught.value)


def cli_error(inputs: Path, extra: str) -> str:
    (inputs / "config").write_text(BASE + DOMUS + DOM0 + extra)
    result = run_ibtasks("uboot-script-gen", "-c", "config", "-d", ".", "-t", "tftp", cwd=inputs)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert [name for name in OUTPUTS if (inputs / name).exists()] == []
    return result.stderr


# ---- no dom0, DOM0_MEM, DOM0_VCPUS, colours on the command line -----------------------------


@pytest.mark.parametrize("key", ["DOM0_RAMDISK=dom0-ramdisk.cpio", "DOM0_CMD=console=hvc0",
                                 "DOM0_MEM=512", "DOM0_VCPUS=2", "DOM0_COLORS=0-1",
                                 "DOM0_ROOTFS=rootfs-dom0.cpio.gz"])
def test_dom0_key_without_dom0_kernel_is_rejected(seed_inputs: Path, key: str) -> None:
    name = key.split("=")[0]
    assert error_of(seed_inputs, key + "\n", dom0=False) == (
        f"config:8: {name} is set but DOM0_KERNEL is not: without DOM0_KERNEL there is no dom0")


def test_no_dom0_and_no_domu_that_xen_starts_is_rejected(seed_inputs: Path) -> None:
    assert error_of(seed_inputs, "DOMU_NOBOOT[0]=1\nDOMU_NOBOOT[1]=1\n", dom0=False) == (
        "config:5: without DOM0_KERNEL at least one domU must be started by Xen "
        "(NUM_DOMUS, DOMU_KERNEL[n])")


@pytest.mark.parametrize("key", ["DOM0_MEM=512", "DOM0_VCPUS=2", "XEN_COLORS=0-1"])
def test_dom0_mem_vcpus_or_colours_with_an_explicit_xen_cmd_are_rejected(
        seed_inputs: Path, key: str) -> None:
    name = key.split("=")[0]
    assert error_of(seed_inputs, f"XEN_CMD=console=dtuart\n{key}\n") == (
        f"config:10: {name} only feeds the default XEN_CMD, but XEN_CMD is set: put it in "
        "XEN_CMD instead")


@pytest.mark.parametrize(("key", "message"), [
    ("DOM0_MEM=0", "DOM0_MEM: must be at least 1 MiB"),
    ("DOM0_MEM=1G", "DOM0_MEM: expected a whole number of MiB, got '1G'"),
    ("DOM0_VCPUS=0", "DOM0_VCPUS: must be at least 1"),
])
def test_bad_dom0_mem_or_vcpus_is_rejected(seed_inputs: Path, key: str, message: str) -> None:
    assert error_of(seed_inputs, key + "\n") == f"config:9: {message}"


def test_domu_colors_with_a_xen_cmd_without_colouring_is_rejected(seed_inputs: Path) -> None:
    assert error_of(seed_inputs, "XEN_CMD=console=dtuart\nDOMU_COLORS[0]=1-2\n") == (
        "config:9: DOMU_COLORS needs cache colouring: add llc-coloring=on to XEN_CMD")


@pytest.mark.parametrize("value", ["3-1", "a-b", "1-2,", "1 2"])
def test_bad_colours_are_rejected(seed_inputs: Path, value: str) -> None:
    assert error_of(seed_inputs, f'DOMU_COLORS[1]="{value}"\n') == (
        f"config:9: DOMU_COLORS[1]: expected colours like '0-3' or '0-3,8,10-11', got '{value}'")


# ---- per-domU values -------------------------------------------------------------------------


@pytest.mark.parametrize(("line", "message"), [
    ("DOMU_ENHANCED[0]=yes",
     "DOMU_ENHANCED[0]: expected 0, 1 (enabled) or 2 (no-xenstore), got 'yes'"),
    ("DOMU_NR_SPIS[0]=989", "DOMU_NR_SPIS[0]: expected a number from 0 to 988, got '989'"),
    ("DOMU_GRANT_VER[0]=3",
     "DOMU_GRANT_VER[0]: expected a grant table version from 1 to 2, got '3'"),
    ("DOMU_GRANT_FRAMES[0]=0", "DOMU_GRANT_FRAMES[0]: expected a number from 1 to 4294967295, "
                               "got '0'"),
    ("DOMU_MAPTRACK_FRAMES[0]=x", "DOMU_MAPTRACK_FRAMES[0]: expected a number from 0 to "
                                  "4294967295, got 'x'"),
    ("DOMU_DOMID[0]=32752", "DOMU_DOMID[0]: expected a domain id from 0 to 32751, got '32752'"),
    ("DOMU_TRAP_UNMAP[0]=2", "DOMU_TRAP_UNMAP[0]: expected 0 or 1 from 0 to 1, got '2'"),
    ("DOMU_CAPS[0]=root", "DOMU_CAPS[0]: unknown capability 'root' (known: none, control, "
                          "hardware, xenstore, dom0, or a number)"),
    ("DOMU_CAPS[0]=8", "DOMU_CAPS[0]: expected a capability mask from 0 to 7, got '8'"),
    ("DOMU_PASSTHROUGH_PROP[0]=on",
     "DOMU_PASSTHROUGH_PROP[0]: expected enabled or disabled, got 'on'"),
    ("DOMU_PASSTHROUGH_PATHS[0]=ethernet",
     "DOMU_PASSTHROUGH_PATHS[0]: 'ethernet' is not an absolute node path"),
    ("DOMU_DIRECT_MAP[0]=1", "DOMU_DIRECT_MAP[0]: needs DOMU_STATIC_MEM[0] (Xen: direct-map is "
                             "only valid with static allocation)"),
    ("DOMU_CPUPOOL[0]=0", "DOMU_CPUPOOL[0]: NUM_CPUPOOLS is 0: define CPUPOOL[n] first"),
])
def test_bad_domu_value_is_rejected(seed_inputs: Path, line: str, message: str) -> None:
    assert error_of(seed_inputs, line + "\n") == f"config:9: {message}"


@pytest.mark.parametrize(("value", "message"), [
    ("0x60000000", "expected pairs of 'base size' numbers, got '0x60000000'"),
    ("0x60000000 0x800", "region 0x60000000 size 0x800 (2048) must be non-empty and 4 KiB "
                         "aligned"),
    ("0x60000000 0x2000000 0x61000000 0x1000",
     "region 0x61000000-0x61001000 overlaps DOMU_STATIC_MEM[0]'s 0x60000000-0x62000000"),
])
def test_bad_static_mem_is_rejected(seed_inputs: Path, value: str, message: str) -> None:
    assert error_of(seed_inputs, f'DOMU_STATIC_MEM[0]="{value}"\n') == (
        f"config:9: DOMU_STATIC_MEM[0]: {message}")


def test_static_mem_of_two_domus_that_overlaps_is_rejected(seed_inputs: Path) -> None:
    assert error_of(seed_inputs, 'DOMU_STATIC_MEM[0]="0x60000000 0x2000000"\n'
                                 'DOMU_STATIC_MEM[1]="0x61000000 0x2000000"\n') == (
        "config:10: DOMU_STATIC_MEM[1]: region 0x61000000-0x63000000 overlaps DOMU_STATIC_MEM[0]'s "
        "0x60000000-0x62000000")


def test_domu_mem_that_disagrees_with_static_mem_is_rejected(seed_inputs: Path) -> None:
    assert error_of(seed_inputs, 'DOMU_STATIC_MEM[0]="0x60000000 0x2000000"\nDOMU_MEM[0]=64\n') \
        == ("config:10: DOMU_MEM[0] is 64 MiB but DOMU_STATIC_MEM[0] adds up to 32768 KiB: "
            "leave DOMU_MEM[0] out")


@pytest.mark.parametrize(("value", "message"), [
    ("shm 0x1000", "expected 'ID [host-address] guest-address size', got 'shm 0x1000'"),
    ("a-very-long-shm-id 0x1000 0x1000", "ID 'a-very-long-shm-id' is longer than 15 characters"),
    ("shm 0x1000 0x800", "region 'shm' must be non-empty and 4 KiB aligned"),
])
def test_bad_shared_mem_is_rejected(seed_inputs: Path, value: str, message: str) -> None:
    assert error_of(seed_inputs, f'DOMU_SHARED_MEM[0]="{value}"\n') == (
        f"config:9: DOMU_SHARED_MEM[0]: {message}")


def test_shared_mem_id_with_different_regions_is_rejected(seed_inputs: Path) -> None:
    assert error_of(seed_inputs, 'DOMU_SHARED_MEM[0]="shm 0x70000000 0x1000 0x1000"\n'
                                 'DOMU_SHARED_MEM[1]="shm 0x71000000 0x1000 0x1000"\n') == (
        "config:10: DOMU_SHARED_MEM[1]: region 'shm' must have the same host address and size "
        "as in DOMU_SHARED_MEM[0]")


@pytest.mark.parametrize(("lines", "message"), [
    ("DOMU_DOMID[0]=3\nDOMU_DOMID[1]=3\n",
     "config:10: DOMU_DOMID[1]: domain id 3 is also DOMU_DOMID[0]"),
    ("DOMU_DOMID[1]=0\n", "config:9: DOMU_DOMID[1]: domain id 0 is dom0's"),
    ("DOMU_CAPS[1]=hardware\n",
     "config:9: DOMU_CAPS[1]: there can be only one hardware domain and dom0 is it"),
])
def test_domain_ids_and_capabilities_that_clash_are_rejected(seed_inputs: Path, lines: str,
                                                             message: str) -> None:
    assert error_of(seed_inputs, lines) == message


def test_two_xenstore_domus_without_dom0_are_rejected(seed_inputs: Path) -> None:
    assert error_of(seed_inputs, "DOMU_CAPS[0]=xenstore\nDOMU_CAPS[1]=dom0\n", dom0=False) == (
        "config:9: DOMU_CAPS[1]: there can be only one xenstore domain and DOMU_CAPS[0] is it")


# ---- static event channels, vCPU affinity ----------------------------------------------------


@pytest.mark.parametrize(("lines", "message"), [
    ('DOMU_STATIC_EVTCHNS[0]="10 1"\n', "config:9: DOMU_STATIC_EVTCHNS[0]: expected "
                                         "'local-port remote-domU remote-port', got '10 1'"),
    ('DOMU_STATIC_EVTCHNS[0]="10 1 20; 10 1 21"\n',
     "config:9: DOMU_STATIC_EVTCHNS[0]: local port 10 is given twice"),
    ('DOMU_ENHANCED[0]=0\nDOMU_STATIC_EVTCHNS[0]="10 1 20"\n',
     "config:10: DOMU_STATIC_EVTCHNS[0]: needs PV interfaces: set DOMU_ENHANCED[0]=2 "
     "(no-xenstore) or 1"),
    ('DOMU_STATIC_EVTCHNS[0]="10 1 20"\n', "config:9: DOMU_STATIC_EVTCHNS[0]: "
                                            "DOMU_STATIC_EVTCHNS[1] must list the other end "
                                            "'20 0 10'"),
    ('DOMU_STATIC_EVTCHNS[0]="10 2 20"\n', "config:9: DOMU_STATIC_EVTCHNS[0]: domU2 is not "
                                            "another domU that Xen starts"),
    ('DOMU_NOBOOT[1]=1\nDOMU_STATIC_EVTCHNS[1]="20 0 10"\nDOMU_STATIC_EVTCHNS[0]="10 1 20"\n',
     "config:11: DOMU_STATIC_EVTCHNS[0]: domU1 is not another domU that Xen starts"),
])
def test_bad_static_event_channels_are_rejected(seed_inputs: Path, lines: str,
                                                message: str) -> None:
    assert error_of(seed_inputs, lines) == message


@pytest.mark.parametrize(("lines", "message"), [
    ("declare -A DOMU_VCPU_HARD_AFFINITY\nDOMU_VCPU_HARD_AFFINITY[0,1]=0-3\n",
     "config:10: DOMU_VCPU_HARD_AFFINITY[0,1]: vCPU 1 does not exist (DOMU_VCPUS[0] is 1)"),
    ("declare -A DOMU_VCPU_HARD_AFFINITY\nDOMU_VCPU_HARD_AFFINITY[0,0]=all\n",
     "config:10: DOMU_VCPU_HARD_AFFINITY[0,0]: expected pCPUs like '0-3' or '1,4-7', got 'all'"),
    ("DOMU_VCPU_HARD_AFFINITY[0]=0-3\n", "config:9: DOMU_VCPU_HARD_AFFINITY[0]: write "
     "DOMU_VCPU_HARD_AFFINITY[domU,vCPU]=pCPUs, with `declare -A DOMU_VCPU_HARD_AFFINITY`"),
])
def test_bad_vcpu_hard_affinity_is_rejected(seed_inputs: Path, lines: str, message: str) -> None:
    assert error_of(seed_inputs, lines) == message


# ---- cpupools, static heap ----------------------------------------------------------------


@pytest.mark.parametrize(("lines", "message"), [
    ("NUM_CPUPOOLS=1\n", "config:9: CPUPOOL[0] is required (NUM_CPUPOOLS is 1)"),
    ('NUM_CPUPOOLS=1\nCPUPOOL[0]="cpu@1 fifo"\n', "config:10: CPUPOOL[0]: unknown scheduler "
     "'fifo' (known: null, credit, credit2, rtds, arinc653)"),
    ('NUM_CPUPOOLS=1\nCPUPOOL[0]="cpu@1 null extra"\n', "config:10: CPUPOOL[0]: expected "
     "'cpu@a,cpu@b [scheduler]', got 'cpu@1 null extra'"),
    ('NUM_CPUPOOLS=2\nCPUPOOL[0]="cpu@1"\nCPUPOOL[1]="cpu@0,cpu@1"\n',
     "config:11: CPUPOOL[1]: cpu@1 is already in CPUPOOL[0]"),
    ('NUM_CPUPOOLS=1\nCPUPOOL[0]="cpu@1"\nDOMU_CPUPOOL[0]=1\n',
     "config:11: DOMU_CPUPOOL[0]: expected a cpupool index from 0 to 0, got '1'"),
    ('XEN_STATIC_HEAP="0x70000000 0x1000000 0x70800000 0x1000000"\n',
     "config:9: XEN_STATIC_HEAP: region 0x70800000-0x71800000 overlaps XEN_STATIC_HEAP's "
     "0x70000000-0x71000000"),
])
def test_bad_cpupools_or_static_heap_are_rejected(seed_inputs: Path, lines: str,
                                                  message: str) -> None:
    assert error_of(seed_inputs, lines) == message


def test_cpupool_cpu_missing_from_the_device_tree_is_named(seed_inputs: Path) -> None:
    assert cli_error(seed_inputs, 'NUM_CPUPOOLS=1\nCPUPOOL[0]="cpu@1,cpu@7 null"\n') == (
        "ibtasks: error: config:10: CPUPOOL[0]: cpu@7 is not a node in /cpus of DEVICE_TREE "
        "(mpsoc-cpus.dtb) (there: cpu@0, cpu@1)\n")


def test_passthrough_path_missing_from_the_device_tree_is_named(seed_inputs: Path) -> None:
    assert cli_error(seed_inputs, 'DOMU_PASSTHROUGH_PATHS[1]="/ethernet@ff0e0000 /gpu"\n') == (
        "ibtasks: error: config:9: DOMU_PASSTHROUGH_PATHS[1]: /gpu is not a node of DEVICE_TREE "
        "(mpsoc-cpus.dtb)\n")


def test_static_heap_that_does_not_fit_the_root_cells_is_rejected(seed_inputs: Path) -> None:
    dts = "/dts-v1/;\n/ { #address-cells = <1>; #size-cells = <1>; chosen { }; };\n"
    subprocess.run(["dtc", "-q", "-o", str(seed_inputs / "mpsoc-cpus.dtb"), "-"], input=dts,
                   text=True, check=True)
    assert cli_error(seed_inputs, 'XEN_STATIC_HEAP="0x100000000 0x1000000"\n') == (
        "ibtasks: error: config:9: XEN_STATIC_HEAP: 0x100000000 does not fit the device tree's "
        "1 cells\n")


def test_emptying_the_affinity_array_forgets_every_entry(seed_inputs: Path) -> None:
    text = BASE + DOMUS + DOM0 + (
        "declare -A DOMU_VCPU_HARD_AFFINITY\nDOMU_VCPU_HARD_AFFINITY[0,0]=0-3\n"
        "DOMU_VCPU_HARD_AFFINITY=()\n")
    config = build_config(raw_from_bash(text, "config", {}),
                          Options(root_dir=seed_inputs, load_cmd="tftpb"))
    assert config.domus[0].props.vcpu_hard_affinity == ()


def test_vcpu_hard_affinity_in_yaml_is_rejected_not_ignored(seed_inputs: Path) -> None:
    text = ("MEMORY_START: 0x40000000\nMEMORY_END: 0x80000000\nDEVICE_TREE: mpsoc.dtb\n"
            "XEN: xen\nDOM0_KERNEL: Image-dom0\nDOMUS:\n  - KERNEL: zynqmp-dom1/Image-domU\n"
            "    VCPU_HARD_AFFINITY: 0-3\n")
    with pytest.raises(UserError) as caught:
        build_config(read_yaml_config(text, "config.yaml"),
                     Options(root_dir=seed_inputs, load_cmd="tftpb"))
    assert str(caught.value) == (
        "config.yaml:8: DOMU_VCPU_HARD_AFFINITY[0]: give it per vCPU in a bash config: "
        "DOMU_VCPU_HARD_AFFINITY[domU,vCPU]=pCPUs")
