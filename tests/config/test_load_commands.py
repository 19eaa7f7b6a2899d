"""Load commands (-t, LOAD_CMD, XEN_LOAD, DOM0_LOAD, DOMU_LOAD[n]) are checked against U-Boot's
file-loading commands: an unknown one is a warning naming the key and the closest command, a
control character is an error. The script is still written as asked.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ibtasks.config.load_command import load_command_word
from tests.conftest import run_ibtasks

BASE = """\
MEMORY_START=0x40000000
MEMORY_END=0x80000000
DEVICE_TREE=mpsoc.dtb
XEN=xen
DOM0_KERNEL=Image-dom0
NUM_DOMUS=1
DOMU_KERNEL[0]=zynqmp-dom1/Image-domU
"""


def build(inputs: Path, config: str, load: str | None = "tftp"
          ) -> subprocess.CompletedProcess[str]:
    (inputs / "config").write_text(config)
    return run_ibtasks("uboot-script-gen", "-c", "config", "-d", ".",
                       *(["-t", load] if load else []), cwd=inputs)


def test_misspelt_domu_load_command_warns_with_the_closest_command(seed_inputs: Path) -> None:
    result = build(seed_inputs, BASE + 'DOMU_LOAD[0]="ex4load mmc 0:4"\n', "ext4load mmc 0:2")
    assert result.returncode == 0, result.stderr
    assert result.stderr == (
        "ibtasks: warning: config:8: DOMU_LOAD[0]: 'ex4load' is not a U-Boot command that "
        "loads a file; did you mean ext4load?\n")
    lines = (seed_inputs / "boot.source").read_text().splitlines()
    assert "ex4load mmc 0:4 0x40E00000 zynqmp-dom1/Image-domU" in lines  # written as asked


def test_misspelt_command_line_load_command_warns_naming_t(seed_inputs: Path) -> None:
    result = build(seed_inputs, BASE, "fatlaod usb 0:1")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ("ibtasks: warning: -t: 'fatlaod' is not a U-Boot command that "
                             "loads a file; did you mean fatload?\n")


def test_misspelt_config_load_cmd_and_xen_load_each_warn(seed_inputs: Path) -> None:
    config = BASE + 'LOAD_CMD="tftpbot"\nXEN_LOAD="lod mmc 0:1"\n'
    result = build(seed_inputs, config, load=None)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "ibtasks: warning: config:8: LOAD_CMD: 'tftpbot' is not a U-Boot command that loads a "
        "file; did you mean tftpboot?",
        "ibtasks: warning: config:9: XEN_LOAD: 'lod' is not a U-Boot command that loads a "
        "file; did you mean load?",
    ]


def test_command_without_a_close_match_lists_the_known_ones(seed_inputs: Path) -> None:
    result = build(seed_inputs, BASE, "mmc read 0x0")
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("ibtasks: warning: -t: 'mmc' is not a U-Boot command that "
                                    "loads a file (known: load, fatload, ext2load, ext4load,")


@pytest.mark.parametrize("load", ["tftp", "sd", "scsi", "usb", "virtio", "tftpboot",
                                  "ext4load mmc 0:2", "usb start; fatload usb 0:1", "dhcp",
                                  "sqfsload mmc 0:1", "ubifsload"])
def test_u_boots_own_load_commands_give_no_warning(seed_inputs: Path, load: str) -> None:
    result = build(seed_inputs, BASE, load)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_load_command_with_a_newline_is_refused(seed_inputs: Path) -> None:
    result = build(seed_inputs, BASE, "tftpb\nreset")
    assert result.returncode == 1
    assert result.stderr == ("ibtasks: error: -t: the load command has a control character "
                             "('\\n')\n")
    assert not (seed_inputs / "boot.source").exists()


def test_load_command_word_is_the_last_commands_first_word() -> None:
    assert load_command_word("usb start; fatload usb 0:1") == "fatload"
    assert load_command_word("mmc rescan && load mmc 0:1") == "load"
    assert load_command_word("tftpb") == "tftpb"
