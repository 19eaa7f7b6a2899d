"""The validated config: root= deduction, load commands, domU defaults, unknown keys, YAML, -o.

Expected values come from the seed's semantics (what the original 2021 script does with each key)
and the seed goldens in tests/goldens/seed/, which were made by running the original script.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from ibtasks.config.build import build_config
from ibtasks.config.load_command import resolve_load_cmd
from ibtasks.config.loader import raw_from_bash
from ibtasks.config.model import Config, Options
from ibtasks.errors import UserError
from tests.conftest import GOLDENS, run_ibtasks

GOOD = """\
MEMORY_START=0x40000000
MEMORY_END=0x50000000
DEVICE_TREE=mpsoc.dtb
XEN=xen
DOM0_KERNEL=Image-dom0
"""
DEFAULT_DOM0_CMD = "console=hvc0 earlycon=xen earlyprintk=xen clk_ignore_unused"


def config_of(inputs: Path, text: str, load_cmd: str | None = "tftp",
              output_name: str | None = None) -> Config:
    raw = raw_from_bash(text, "config", {})
    options = Options(root_dir=inputs, load_cmd=resolve_load_cmd(load_cmd) if load_cmd else None,
                      output_name=output_name)
    return build_config(raw, options)


def cli(inputs: Path, config: str, *args: str, name: str = "config"
        ) -> subprocess.CompletedProcess[str]:
    (inputs / name).write_text(config)
    return run_ibtasks("uboot-script-gen", "-c", name, "-d", ".", *args, cwd=inputs)


def fdtget(dtb: Path, *args: str) -> str:
    return subprocess.run(["fdtget", str(dtb), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


# ---- root= deduction (seed section 2.5) --------------------------------------------------------

ROOTFS = GOOD + "DOM0_ROOTFS=rootfs-dom0.cpio.gz\n"


@pytest.mark.parametrize(("load_cmd", "root"), [
    ("sd", "root=/dev/mmcblk0p2"),  # seed: -t sd => /dev/mmcblk0p2
    ("scsi", "root=/dev/sda2"),  # seed: -t scsi => /dev/sda2
    ("load mmc 1:2", "root=/dev/mmcblk1p3"),  # golden bash-syntax-custom-load
    ("virtio", "root=/dev/vda2"),
    ("load scsi 1:3", "root=/dev/sdb4"),  # chr(97 + 1), partition 3 + 1
])
def test_dom0_root_is_the_partition_after_the_load_partition(
        seed_inputs: Path, load_cmd: str, root: str) -> None:
    assert config_of(seed_inputs, ROOTFS, load_cmd).dom0_cmd == f"{DEFAULT_DOM0_CMD} {root}"


def test_dom0_without_rootfs_boots_from_the_ramdisk(seed_inputs: Path) -> None:
    assert config_of(seed_inputs, GOOD, "sd").dom0_cmd == f"{DEFAULT_DOM0_CMD} root=/dev/ram0"


def test_root_already_in_dom0_cmd_is_kept(seed_inputs: Path) -> None:
    config = config_of(seed_inputs, ROOTFS + "DOM0_CMD='console=hvc0 root=/dev/nfs'\n", "tftp")
    assert config.dom0_cmd == "console=hvc0 root=/dev/nfs"


def test_usb_load_command_cannot_deduce_dom0_root(seed_inputs: Path) -> None:
    with pytest.raises(UserError, match="cannot deduce dom0's root= from load command "
                                        "'fatload usb 0:1'"):
        config_of(seed_inputs, ROOTFS, "usb")


# ---- load commands ------------------------------------------------------------------------------

@pytest.mark.parametrize(("alias", "command"), [
    ("tftp", "tftpb"),  # the seed goldens
    ("sd", "load mmc 0:1"),
    ("scsi", "load scsi 0:1"),
    ("usb", "fatload usb 0:1"),  # upstream 4fb66bd
    ("virtio", "load virtio 0:1"),  # upstream 2023-02
    ("ext4load mmc 0:2", "ext4load mmc 0:2"),  # anything else verbatim
])
def test_load_command_alias_reaches_the_script_and_the_last_stdout_line(
        seed_inputs: Path, alias: str, command: str) -> None:
    result = cli(seed_inputs, GOOD, "-t", alias)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == (
        f"{command} 0x40200000 boot.scr; source 0x40200000")
    source = (seed_inputs / "boot.source").read_text().splitlines()
    assert source[0] == f"{command} 0x40400000 xen"


def test_load_command_flag_wins_over_load_cmd_key(seed_inputs: Path) -> None:
    result = cli(seed_inputs, GOOD + "LOAD_CMD='load mmc 0:1'\n", "-t", "scsi")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "load scsi 0:1 0x40200000 boot.scr; source 0x40200000"


def test_load_cmd_key_alone_is_enough(seed_inputs: Path) -> None:
    result = cli(seed_inputs, GOOD + "LOAD_CMD='load mmc 0:1'\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "load mmc 0:1 0x40200000 boot.scr; source 0x40200000"


# ---- domUs --------------------------------------------------------------------------------------

def test_domu_entries_beyond_num_domus_are_ignored(seed_inputs: Path) -> None:
    # DOMU_KERNEL[1] names a file that does not exist: reading it would be an error.
    config = config_of(seed_inputs, GOOD + "NUM_DOMUS=1\nDOMU_KERNEL[0]=zynqmp-dom1/Image-domU\n"
                       "DOMU_KERNEL[1]=not-there\nDOMU_MEM[1]=zzz\n")
    assert [d.index for d in config.domus] == [0]
    assert [b.key for b in config.binaries()] == ["XEN", "DOM0_KERNEL", "DOMU_KERNEL[0]",
                                                  "DEVICE_TREE"]


def test_domu_defaults_are_512_mib_one_vcpu_and_console_ttyama0(seed_inputs: Path) -> None:
    config = config_of(seed_inputs, GOOD + "NUM_DOMUS=1\nDOMU_KERNEL[0]=zynqmp-dom1/Image-domU\n")
    (domu,) = config.domus
    assert (domu.mem_mib, domu.vcpus, domu.cmd) == (512, 1, "console=ttyAMA0")


def test_domu_defaults_reach_the_edited_dtb(seed_inputs: Path) -> None:
    result = cli(seed_inputs, GOOD + "NUM_DOMUS=1\nDOMU_KERNEL[0]=zynqmp-dom1/Image-domU\n",
                 "-t", "tftp")
    assert result.returncode == 0, result.stderr
    dtb = seed_inputs / "boot.dtb"
    # memory is in KiB as two cells: 512 MiB = 524288 KiB (the seed golden readme-tftp).
    assert fdtget(dtb, "/chosen/domU0", "memory") == "0 524288"
    assert fdtget(dtb, "/chosen/domU0", "cpus") == "1"
    # Layout: slot 0x40200000, xen 0x40400000, dom0 0x40800000 (5,000,000 B) -> 0x40E00000.
    assert fdtget(dtb, "/chosen/domU0/module@40E00000", "bootargs") == "console=ttyAMA0"


def test_domu_cmd_becomes_the_domu_kernel_bootargs(seed_inputs: Path) -> None:
    config = config_of(seed_inputs, GOOD + "NUM_DOMUS=1\nDOMU_KERNEL[0]=zynqmp-dom1/Image-domU\n"
                       "DOMU_CMD[0]='console=ttyAMA0 root=/dev/ram0 quiet'\n"
                       "DOMU_MEM[0]=1024\nDOMU_VCPUS[0]=2\n")
    (domu,) = config.domus
    assert (domu.mem_mib, domu.vcpus, domu.cmd) == (1024, 2, "console=ttyAMA0 root=/dev/ram0 quiet")


# ---- unknown keys -------------------------------------------------------------------------------

def test_misspelt_domu_key_is_a_warning_with_a_suggestion(seed_inputs: Path) -> None:
    text = GOOD.replace("DOM0_KERNEL=Image-dom0\n",
                        "DOMU_KERNAL[0]=zynqmp-dom1/Image-domU\nDOM0_KERNEL=Image-dom0\n")
    result = cli(seed_inputs, text, "-t", "tftp")
    assert result.returncode == 0
    assert result.stderr == ("ibtasks: warning: config:5: DOMU_KERNAL[0]: unknown key, ignored; "
                             "did you mean DOMU_KERNEL?\n")


def test_misspelt_key_in_yaml_is_a_warning_with_a_suggestion(seed_inputs: Path) -> None:
    text = ("MEMORY_START: 0x40000000\nMEMORY_END: 0x50000000\nDEVICE_TREE: mpsoc.dtb\n"
            "XEN: xen\nDOM0_KERNEL: Image-dom0\nDOMUS:\n  - KERNEL: zynqmp-dom1/Image-domU\n"
            "    MEMM: 256\nXEN_CDM: console=dtuart\n")
    result = cli(seed_inputs, text, "-t", "tftp", name="config.yaml")
    assert result.returncode == 0, result.stderr
    assert result.stderr == (
        "ibtasks: warning: config.yaml:8: DOMU_MEMM[0]: unknown key, ignored; did you mean MEM?\n"
        "ibtasks: warning: config.yaml:9: XEN_CDM: unknown key, ignored; did you mean XEN_CMD?\n")


def test_plain_shell_variable_used_in_an_expansion_is_not_a_warning(seed_inputs: Path) -> None:
    raw = raw_from_bash("DOMDIR=zynqmp-dom1\n" + GOOD + "DOMU_RAMDISK[0]=$DOMDIR/rd\n",
                        "config", {})
    assert raw.warnings == ()


# ---- YAML and -o --------------------------------------------------------------------------------

README_TFTP_YAML = """\
# The seed golden readme-tftp, as YAML.
MEMORY_START: 0x0
MEMORY_END: 0x80000000
DEVICE_TREE: mpsoc.dtb
XEN: xen
XEN_CMD: console=dtuart dtuart=serial0 dom0_mem=1G dom0_max_vcpus=1 bootscrub=0
  vwfi=native sched=null
DOM0_KERNEL: Image-dom0
DOM0_CMD: console=hvc0 earlycon=xen earlyprintk=xen clk_ignore_unused
DOM0_RAMDISK: dom0-ramdisk.cpio
DOMUS:
  - KERNEL: zynqmp-dom1/Image-domU
    RAMDISK: zynqmp-dom1/domU-ramdisk.cpio
    PASSTHROUGH_DTB: zynqmp-dom1/passthrough-example-part.dtb
  - DOMU_KERNEL: zynqmp-dom2/Image-domU
    DOMU_RAMDISK: zynqmp-dom2/domU-ramdisk.cpio
    MEM: 512
    VCPUS: 1
UBOOT_SOURCE: boot.source
UBOOT_SCRIPT: boot.scr
"""


def test_yaml_config_gives_the_same_bytes_as_the_golden_bash_config(seed_inputs: Path) -> None:
    shutil.copy(GOLDENS / "readme-tftp" / "config", seed_inputs / "config")
    (seed_inputs / "config.yaml").write_text(README_TFTP_YAML)
    outs = []
    for name in ("config", "config.yaml"):
        result = run_ibtasks("uboot-script-gen", "-c", name, "-d", ".", "-t", "tftp",
                             "--output-dir", f"out-{name}", cwd=seed_inputs)
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        outs.append(seed_inputs / f"out-{name}")
        assert result.stdout == (GOLDENS / "readme-tftp" / "expected" /
                                 "stdout").read_text()
    for output in ("boot.source", "boot.scr", "boot.dtb"):
        assert (outs[0] / output).read_bytes() == (outs[1] / output).read_bytes(), output


def test_output_name_flag_names_the_source_script_and_dtb(seed_inputs: Path) -> None:
    case = GOLDENS / "readme-sd-output-name"
    shutil.copy(case / "config", seed_inputs / "config")
    result = run_ibtasks("uboot-script-gen", "-c", "config", "-d", ".", "-t", "sd",
                         "-o", "bootscript", cwd=seed_inputs)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (case / "expected" / "stdout").read_text()
    assert sorted(p.name for p in seed_inputs.glob("boot*")) == [
        "bootscript.dtb", "bootscript.scr", "bootscript.source"]
    listing = subprocess.run(["dumpimage", "-l", str(seed_inputs / "bootscript.scr")],
                             check=True, capture_output=True, text=True).stdout
    assert "Load Address: 00c00000" in listing
