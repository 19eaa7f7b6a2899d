"""Nothing is written outside the output directory unless the command line says so: output
names from the config (UBOOT_SOURCE, UBOOT_SCRIPT, FDTEDIT, FIT, bootm's <XEN>.ub) must resolve
inside it (a subdirectory is fine), and a failed build never removes a file outside it; -o may
point anywhere, as vendor build systems rely on (`-o ${WORKDIR}/xen_boot`).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import run_ibtasks

BASE = """\
MEMORY_START=0x40000000
MEMORY_END=0x80000000
DEVICE_TREE=mpsoc.dtb
XEN=xen
DOM0_KERNEL=Image-dom0
"""


def build(inputs: Path, config: str, *args: str) -> subprocess.CompletedProcess[str]:
    (inputs / "config").write_text(config)
    return run_ibtasks("uboot-script-gen", "-c", "config", "-d", ".", "-t", "tftp", *args,
                       cwd=inputs)


def test_uboot_source_outside_the_output_dir_is_refused_and_leaves_the_file_there_alone(
        seed_inputs: Path) -> None:
    elsewhere = seed_inputs.parent / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "x").write_text("precious\n")
    result = build(seed_inputs, BASE + "UBOOT_SOURCE=../elsewhere/x\n")
    assert result.returncode == 1
    assert result.stderr == (
        "ibtasks: error: config:6: UBOOT_SOURCE: ../elsewhere/x is outside the output "
        "directory .; name a file inside it, or give the path on the command line (-o)\n")
    assert (elsewhere / "x").read_text() == "precious\n"
    assert sorted(p.name for p in elsewhere.iterdir()) == ["x"]  # no x.dtb, x.scr beside it


@pytest.mark.parametrize(("line", "key", "name"), [
    ("UBOOT_SCRIPT=../boot.scr", "UBOOT_SCRIPT", "../boot.scr"),
    ("FDTEDIT=/tmp/edited.dtb", "FDTEDIT", "/tmp/edited.dtb"),
    ("FIT=sub/../../x.fit", "FIT", "sub/../../x.fit"),
])
def test_each_config_output_name_outside_the_output_dir_is_refused_naming_its_key(
        seed_inputs: Path, line: str, key: str, name: str) -> None:
    result = build(seed_inputs, BASE + line + "\n")
    assert result.returncode == 1
    assert result.stderr == (
        f"ibtasks: error: config:6: {key}: {name} is outside the output directory .; name a "
        "file inside it, or give the path on the command line (-o)\n")
    assert not (seed_inputs / "boot.source").exists()


def test_output_name_naming_the_output_dir_itself_is_refused(seed_inputs: Path) -> None:
    result = build(seed_inputs, BASE + "FDTEDIT=sub/..\n")
    assert result.returncode == 1
    assert result.stderr == ("ibtasks: error: config:6: FDTEDIT: sub/.. names the output "
                             "directory itself, not a file\n")


def test_output_names_in_a_subdirectory_are_written_there_and_loaded_from_there(
        seed_inputs: Path) -> None:
    result = build(seed_inputs, BASE + "UBOOT_SOURCE=./out/xen_boot.source\n",
                   "--preedited-dtb")
    assert result.returncode == 0, result.stderr
    for name in ("xen_boot.source", "xen_boot.scr", "xen_boot.dtb"):
        assert (seed_inputs / "out" / name).is_file()
    lines = (seed_inputs / "out" / "xen_boot.source").read_text().splitlines()
    assert lines[2] == "tftpb 0x40E00000 out/xen_boot.dtb"
    assert result.stdout.splitlines()[-1] == "tftpb 0x40200000 out/xen_boot.scr; source 0x40200000"


def test_dash_o_may_write_outside_the_root_as_the_command_line_asks(seed_inputs: Path) -> None:
    result = build(seed_inputs, BASE, "-o", "../deploy/xen_boot")
    assert result.returncode == 0, result.stderr
    deploy = seed_inputs.parent / "deploy"
    assert sorted(p.name for p in deploy.iterdir()) == [
        "xen_boot.dtb", "xen_boot.scr", "xen_boot.source"]
    assert result.stdout.splitlines()[-1] == (
        "tftpb 0x40200000 ../deploy/xen_boot.scr; source 0x40200000")


def test_bootm_with_xen_outside_the_root_is_refused_rather_than_writing_beside_it(
        seed_inputs: Path) -> None:
    elsewhere = seed_inputs.parent / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "xen").write_bytes((seed_inputs / "xen").read_bytes())
    result = build(seed_inputs, BASE.replace("XEN=xen", "XEN=../elsewhere/xen")
                   + "BOOT_CMD=bootm\n")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"ibtasks: error: config:6: BOOT_CMD: bootm writes XEN as a uImage, <path>.ub, in the "
        f"output directory, but {elsewhere}/xen is outside -d (.); put XEN under -d")
    assert sorted(p.name for p in elsewhere.iterdir()) == ["xen"]


def test_bootm_uimage_of_a_xen_spelt_with_dot_slash_lands_beside_it_in_the_output_dir(
        seed_inputs: Path) -> None:
    result = build(seed_inputs, BASE.replace("XEN=xen", "XEN=./zynqmp-dom1/../xen")
                   + "BOOT_CMD=bootm\n")
    assert result.returncode == 0, result.stderr
    assert (seed_inputs / "xen.ub").is_file()
    lines = (seed_inputs / "boot.source").read_text().splitlines()
    assert lines[0] == "tftpb 0x40400000 xen.ub"
