"""No output may be the same file as an input or another output (ibtasks.plan.outputs).

Each case names an output after an input in another way (a key, -o, -w, a hard link, a symlink)
and checks that the run fails with one line naming both, before anything runs: the input keeps
its bytes and no output appears.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from tests.conftest import run_ibtasks

BASE = """\
MEMORY_START=0x40000000
MEMORY_END=0x50000000
DEVICE_TREE=mpsoc.dtb
XEN=xen
DOM0_KERNEL=Image-dom0
"""
SCRIPT_GEN = ("uboot-script-gen", "-c", "config", "-d", ".", "-t", "tftp")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def refused(inputs: Path, extra: str, *args: str) -> str:
    """Run with `extra` config lines; assert exit 1, no boot.scr/boot.source; return stderr."""
    (inputs / "config").write_text(BASE + extra)
    result = run_ibtasks(*(args or SCRIPT_GEN), cwd=inputs)
    assert result.returncode == 1, result.stderr
    assert not (inputs / "boot.scr").exists() and not (inputs / "boot.source").exists()
    return result.stderr


def test_edited_dtb_named_after_the_device_tree_is_refused_and_the_dtb_kept(
        seed_inputs: Path) -> None:
    before = digest(seed_inputs / "mpsoc.dtb")
    assert refused(seed_inputs, "FDTEDIT=mpsoc.dtb\n") == (
        "ibtasks: error: FDTEDIT: the output mpsoc.dtb is the same file as DEVICE_TREE "
        "(mpsoc.dtb), which the build reads; choose another output name\n")
    assert digest(seed_inputs / "mpsoc.dtb") == before


def test_disk_image_named_after_its_config_is_refused_and_the_config_kept(
        seed_inputs: Path) -> None:
    stderr = refused(seed_inputs, "", "disk-image", "-c", "config", "-d", ".", "-t", "sd",
                     "-o", "config")
    assert stderr == ("ibtasks: error: -o: the output config is the same file as -c (config), "
                      "which the build reads; choose another output name\n")
    assert (seed_inputs / "config").read_text() == BASE


def test_script_named_as_a_hard_link_of_xen_is_refused(seed_inputs: Path) -> None:
    os.link(seed_inputs / "xen", seed_inputs / "xen.scr")
    before = digest(seed_inputs / "xen")
    assert refused(seed_inputs, "UBOOT_SCRIPT=xen.scr\n") == (
        "ibtasks: error: UBOOT_SCRIPT: the output xen.scr is the same file as XEN (xen), "
        "which the build reads; choose another output name\n")
    assert digest(seed_inputs / "xen") == before


def test_script_source_that_is_a_symlink_to_the_dom0_kernel_is_refused(
        seed_inputs: Path) -> None:
    (seed_inputs / "boot.source").symlink_to("Image-dom0")
    before = digest(seed_inputs / "Image-dom0")
    (seed_inputs / "config").write_text(BASE)
    result = run_ibtasks(*SCRIPT_GEN, cwd=seed_inputs)
    assert (result.returncode, result.stderr) == (1, (
        "ibtasks: error: UBOOT_SOURCE: the output boot.source is the same file as DOM0_KERNEL "
        "(Image-dom0), which the build reads; choose another output name\n"))
    assert digest(seed_inputs / "Image-dom0") == before
    assert os.readlink(seed_inputs / "boot.source") == "Image-dom0"


def test_dom0_kernel_reached_through_a_symlinked_directory_is_still_the_same_file(
        seed_inputs: Path) -> None:
    (seed_inputs / "kernels").symlink_to(".")
    assert refused(seed_inputs, "FDTEDIT=kernels/Image-dom0\n") == (
        "ibtasks: error: FDTEDIT: the output kernels/Image-dom0 is the same file as "
        "DOM0_KERNEL (Image-dom0), which the build reads; choose another output name\n")


def test_two_outputs_of_one_name_are_refused(seed_inputs: Path) -> None:
    assert refused(seed_inputs, "FDTEDIT=boot.scr\n") == (
        "ibtasks: error: UBOOT_SCRIPT: the output boot.scr is the same file as the output of "
        "FDTEDIT (boot.scr); choose another output name\n")


def test_partition_image_in_the_work_folder_named_like_a_boot_aux_file_is_refused(
        seed_inputs: Path) -> None:
    (seed_inputs / "boot.vfat").write_bytes(b"firmware")
    stderr = refused(seed_inputs, "NUM_BOOT_AUX_FILE=1\nBOOT_AUX_FILE[0]=boot.vfat\n",
                     "disk-image", "-c", "config", "-d", ".", "-t", "sd", "-o", "disk.img",
                     "-w", ".")
    assert stderr == ("ibtasks: error: -w: the output boot.vfat is the same file as "
                      "BOOT_AUX_FILE[0] (boot.vfat), which the build reads; choose another "
                      "output name\n")
    assert (seed_inputs / "boot.vfat").read_bytes() == b"firmware"
    assert not (seed_inputs / "disk.img").exists()


def test_bootm_uimage_named_after_the_dom0_kernel_is_refused(seed_inputs: Path) -> None:
    # BOOT_CMD=bootm writes Xen as <XEN>.ub: here XEN=Image-dom0's neighbour named so.
    (seed_inputs / "Image-dom0").rename(seed_inputs / "xen.ub")
    stderr = refused(seed_inputs, "BOOT_CMD=bootm\nDOM0_KERNEL=xen.ub\n")
    assert stderr == ("ibtasks: error: BOOT_CMD=bootm: the output xen.ub is the same file as "
                      "DOM0_KERNEL (xen.ub), which the build reads; choose another output "
                      "name\n")


def test_distinct_outputs_build_and_the_script_image_is_what_mkimage_lists(
        seed_inputs: Path) -> None:
    import subprocess

    (seed_inputs / "config").write_text(BASE + "FDTEDIT=edited.dtb\n")
    result = run_ibtasks(*SCRIPT_GEN, cwd=seed_inputs)
    assert result.returncode == 0, result.stderr
    listing = subprocess.run(["dumpimage", "-l", "boot.scr"], cwd=seed_inputs,
                             capture_output=True, text=True, check=True).stdout
    assert "Script" in listing
    subprocess.run(["fdtget", "edited.dtb", "/chosen", "xen,xen-bootargs"], cwd=seed_inputs,
                   check=True, capture_output=True)
