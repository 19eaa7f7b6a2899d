"""Warnings come before errors; unused variables are warned about; --strict/STRICT make every
warning an error; LOAD_CMD comes from -t, then the config, then the environment.

Everything runs through the real CLI on the seed goldens' synthetic inputs; the scripts written
are checked with dumpimage (the real U-Boot tool) where they are produced.
"""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

from tests.conftest import run_ibtasks

GOOD = """\
MEMORY_START=0x40000000
MEMORY_END=0x50000000
DEVICE_TREE=mpsoc.dtb
XEN=xen
DOM0_KERNEL=Image-dom0
"""
OUTPUTS = ("boot.source", "boot.scr", "boot.dtb")


def run(inputs: Path, config: str, *args: str, name: str = "config",
        env: dict[str, str] | None = None, load: tuple[str, ...] = ("-t", "tftp")
        ) -> subprocess.CompletedProcess[str]:
    (inputs / name).write_text(config)
    return run_ibtasks("uboot-script-gen", "-c", name, "-d", ".", *load, *args, cwd=inputs,
                       env=env)


def script_of(inputs: Path, name: str = "boot.scr") -> str:
    """The script text inside a boot.scr, as dumpimage extracts it."""
    out = inputs / "extracted.bin"
    subprocess.run(["dumpimage", "-T", "script", "-p", "0", "-o", str(out), str(inputs / name)],
                   check=True, capture_output=True)
    data = out.read_bytes()  # a table of 32-bit lengths ended by 0, then the script
    (length,) = struct.unpack(">I", data[:4])
    assert data[4:8] == bytes(4)
    return data[8 : 8 + length].decode()


# ---- warnings before errors ---------------------------------------------------------------------

def test_misspelt_key_is_shown_before_the_error_it_causes(seed_inputs: Path) -> None:
    result = run(seed_inputs, GOOD + "NUM_DOMUS=1\nDOMU_KERNAL[0]=zynqmp-dom1/Image-domU\n")
    assert result.returncode == 1
    assert result.stderr == (
        "ibtasks: warning: config:7: DOMU_KERNAL[0]: unknown key, ignored; did you mean "
        "DOMU_KERNEL?\n"
        "ibtasks: error: config:6: DOMU_KERNEL[0] is required for a domU that Xen boots "
        "(NUM_DOMUS is 1)\n")


def test_warning_about_an_earlier_line_comes_before_a_syntax_error(seed_inputs: Path) -> None:
    result = run(seed_inputs, "XEN_CDM=console=dtuart\n" + GOOD + "DOM0_CMD=$(cat cmdline)\n")
    assert result.returncode == 1
    assert result.stderr == (
        "ibtasks: warning: config:1: XEN_CDM: unknown key, ignored; did you mean XEN_CMD?\n"
        "ibtasks: error: config:7: command substitution $(...) is not supported: config files "
        "are read, not executed; write the value itself\n")


def test_yaml_warning_comes_before_the_error_it_causes(seed_inputs: Path) -> None:
    text = ("MEMORY_START: 0x40000000\nMEMORY_END: 0x50000000\nDEVICE_TREE: mpsoc.dtb\n"
            "XEN: xen\nDOM0_KERNEL: Image-dom0\nDOMUS:\n  - KERNAL: zynqmp-dom1/Image-domU\n"
            "    MEM: 256\n")
    result = run(seed_inputs, text, name="config.yaml")
    assert result.returncode == 1
    assert result.stderr == (
        "ibtasks: warning: config.yaml:7: DOMU_KERNAL[0]: unknown key, ignored; did you mean "
        "KERNEL?\n"
        "ibtasks: error: config.yaml: DOMU_KERNEL[0] is required for a domU that Xen boots "
        "(NUM_DOMUS is 1)\n")


def test_warnings_are_printed_in_file_order_before_a_later_error(seed_inputs: Path) -> None:
    text = "BOOTBIN=BOOT.BIN\n" + GOOD + "DOM0_RAMDSK=rd.cpio\nMEMORY_END=0x40000000\n"
    result = run(seed_inputs, text)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert [line.split(":")[3] for line in lines[:2]] == ["1", "7"]
    assert lines[2].startswith("ibtasks: error: config:8: MEMORY_END (0x40000000) must be above")


# ---- variables that are neither keys nor used ---------------------------------------------------

def test_unused_variable_with_a_file_name_suggests_boot_aux_file(seed_inputs: Path) -> None:
    result = run(seed_inputs, GOOD + "BOOTBIN=BOOT.BIN\n")
    assert result.returncode == 0
    assert result.stderr == (
        "ibtasks: warning: config:6: BOOTBIN: not an ImageBuilder key and not used by any "
        "expansion, ignored; to copy BOOT.BIN into the boot partition write NUM_BOOT_AUX_FILE=1 "
        "and BOOT_AUX_FILE[0]=BOOT.BIN\n")


def test_unused_lower_case_variable_is_warned_about_once(seed_inputs: Path) -> None:
    result = run(seed_inputs, GOOD + "board=zcu102\nboard=zcu104\n")
    assert result.returncode == 0
    assert result.stderr == ("ibtasks: warning: config:6: board: not an ImageBuilder key and not "
                             "used by any expansion, ignored\n")


def test_unused_array_is_one_warning(seed_inputs: Path) -> None:
    result = run(seed_inputs, GOOD + "FIRMWARE=(pmufw.elf bl31.elf)\n")
    assert result.stderr == ("ibtasks: warning: config:6: FIRMWARE[0]: not an ImageBuilder key "
                             "and not used by any expansion, ignored; to copy pmufw.elf into the "
                             "boot partition write NUM_BOOT_AUX_FILE=1 and "
                             "BOOT_AUX_FILE[0]=pmufw.elf\n")


def test_helper_variables_used_in_expansions_are_not_warned_about(seed_inputs: Path) -> None:
    text = ('dom=zynqmp-dom1\nKDIR="${dom}"\nimg=Image-domU\n' + GOOD
            + "NUM_DOMUS=1\nDOMU_KERNEL[0]=$KDIR/${img}\nDOMU_KERNEL_DIR=x\n"
            + 'DOMU_CMD[0]="console=ttyAMA0 $DOMU_KERNEL_DIR"\n')
    result = run(seed_inputs, text)
    assert (result.returncode, result.stderr) == (0, "")
    assert "tftpb 0x40E00000 zynqmp-dom1/Image-domU" in script_of(seed_inputs)


# ---- --strict and STRICT=y ----------------------------------------------------------------------

def test_strict_flag_turns_a_warning_into_the_error_line(seed_inputs: Path) -> None:
    result = run(seed_inputs, GOOD + "XEN_CDM=console=dtuart\n", "--strict")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == ("ibtasks: error: config:6: XEN_CDM: unknown key, ignored; did you "
                             "mean XEN_CMD?\n")
    assert [n for n in OUTPUTS if (seed_inputs / n).exists()] == []


def test_strict_key_turns_a_warning_into_an_error_and_removes_old_outputs(
        seed_inputs: Path) -> None:
    assert run(seed_inputs, GOOD).returncode == 0
    result = run(seed_inputs, "STRICT=y\n" + GOOD + "BOOTBIN=BOOT.BIN\n")
    assert result.returncode == 1
    assert result.stderr.startswith("ibtasks: error: config:7: BOOTBIN: not an ImageBuilder key")
    assert len(result.stderr.splitlines()) == 1
    assert [n for n in OUTPUTS if (seed_inputs / n).exists()] == []


def test_strict_key_set_to_no_leaves_warnings_as_warnings(seed_inputs: Path) -> None:
    result = run(seed_inputs, "STRICT=no\n" + GOOD + "BOOTBIN=BOOT.BIN\n")
    assert result.returncode == 0
    assert result.stderr.startswith("ibtasks: warning: config:7: BOOTBIN:")


def test_strict_yaml_config_without_warnings_builds(seed_inputs: Path) -> None:
    text = ("STRICT: y\nMEMORY_START: 0x40000000\nMEMORY_END: 0x50000000\n"
            "DEVICE_TREE: mpsoc.dtb\nXEN: xen\nDOM0_KERNEL: Image-dom0\n")
    result = run(seed_inputs, text, "--strict", name="config.yaml")
    assert (result.returncode, result.stderr) == (0, "")
    assert script_of(seed_inputs).endswith("booti 0x40400000 - 0x40E00000\n")


def test_strict_applies_to_warnings_found_while_validating(seed_inputs: Path) -> None:
    result = run(seed_inputs, GOOD + 'XEN_LOAD="fatlod mmc 0:1"\n', "--strict")
    assert result.returncode == 1
    assert result.stderr == (
        "ibtasks: error: config:6: XEN_LOAD: 'fatlod' is not a U-Boot command that loads a "
        "file; did you mean fatload?\n")


def test_strict_flag_works_for_disk_image(seed_inputs: Path) -> None:
    (seed_inputs / "config").write_text(GOOD + "BOOTBIN=BOOT.BIN\n")
    result = run_ibtasks("disk-image", "-c", "config", "-d", ".", "-t", "sd", "-o", "disk.img",
                         "--strict", cwd=seed_inputs)
    assert result.returncode == 1
    assert result.stderr.startswith("ibtasks: error: config:6: BOOTBIN: not an ImageBuilder key")
    assert not (seed_inputs / "disk.img").exists()


# ---- load commands (their messages: tests/config/test_load_commands.py) ---------------------

def test_known_load_commands_are_not_warned_about(seed_inputs: Path) -> None:
    text = (GOOD + 'XEN_LOAD="ext4load mmc 0:2"\nDOM0_LOAD=virtio\nNUM_DOMUS=1\n'
            'DOMU_KERNEL[0]=zynqmp-dom1/Image-domU\nDOMU_LOAD[0]="fatload usb 0:1"\n')
    result = run(seed_inputs, text, load=("-t", "load mmc 1:1"))
    assert (result.returncode, result.stderr) == (0, "")


def test_load_cmd_from_the_environment_works_without_t(seed_inputs: Path) -> None:
    result = run(seed_inputs, GOOD, env={"LOAD_CMD": "load mmc 0:1"}, load=())
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == ("load mmc 0:1 0x40200000 boot.scr; source "
                                              "0x40200000")
    assert "load mmc 0:1 0x40400000 xen" in script_of(seed_inputs)


def test_load_cmd_in_the_config_wins_over_the_environment(seed_inputs: Path) -> None:
    result = run(seed_inputs, GOOD + 'LOAD_CMD="load scsi 0:1"\n',
                 env={"LOAD_CMD": "load mmc 0:1"}, load=())
    assert result.returncode == 0, result.stderr
    assert "load scsi 0:1 0x40400000 xen" in script_of(seed_inputs)


def test_t_wins_over_the_config_and_the_environment(seed_inputs: Path) -> None:
    result = run(seed_inputs, GOOD + 'LOAD_CMD="load scsi 0:1"\n',
                 env={"LOAD_CMD": "load mmc 0:1"}, load=("-t", "virtio"))
    assert result.returncode == 0, result.stderr
    assert "load virtio 0:1 0x40400000 xen" in script_of(seed_inputs)


def test_changing_the_environment_load_cmd_rebuilds_instead_of_replaying(
        seed_inputs: Path) -> None:
    assert run(seed_inputs, GOOD, env={"LOAD_CMD": "load mmc 0:1"}, load=()).returncode == 0
    second = run_ibtasks("uboot-script-gen", "-c", "config", "-d", ".", cwd=seed_inputs,
                         env={"LOAD_CMD": "load mmc 1:1"})
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines()[-1].startswith("load mmc 1:1 ")
    assert "load mmc 1:1 0x40400000 xen" in script_of(seed_inputs)


def test_yaml_config_takes_load_cmd_from_the_environment(seed_inputs: Path) -> None:
    text = ("MEMORY_START: 0x40000000\nMEMORY_END: 0x50000000\nDEVICE_TREE: mpsoc.dtb\n"
            "XEN: xen\nDOM0_KERNEL: Image-dom0\n")
    result = run(seed_inputs, text, name="config.yaml", env={"LOAD_CMD": "fatload usb 0:1"},
                 load=())
    assert result.returncode == 0, result.stderr
    assert "fatload usb 0:1 0x40400000 xen" in script_of(seed_inputs)
