"""`-s` without DEVICE_TREE: the script edits and boots with U-Boot's own control DTB
(`${fdtcontroladdr}`), as upstream's "Make DEVICE_TREE optional parameter" (2025-08).

A Yocto recipe (meta-xilinx's u-boot-xen-scr) generates its Versal script this way, with no
binaries present. Scripts are checked by running them through the U-Boot evaluator of
test_calc_script and applying their `fdt` commands with the real fdtput to a DTB made by dtc.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from tests.config.test_config_warnings import script_of
from tests.conftest import run_ibtasks
from tests.fdtscript import apply_with_fdtput, dts_of
from tests.plan.test_calc_script import evaluate

VERSAL = """\
MEMORY_START="0x20000000"
MEMORY_END="0x70000000"
XEN="xen"
DOM0_KERNEL="Image"
DOM0_CMD="console=hvc0 clk_ignore_unused root=/dev/mmcblk0p3 ro rootwait"
DOM0_MEM="1500"
DOM0_LOAD="ext4load mmc 0:3"
NUM_DOMUS=1
DOMU_KERNEL[0]="Image"
DOMU_RAMDISK[0]="root/rootfs.cpio.gz"
DOMU_MEM[0]="800"
DOMU_CMD[0]="console=hvc0 init=/bin/sh root=/dev/ram0"
DOMU_LOAD[0]="ex4load mmc 0:4"
LOAD_CMD="ext4load mmc 0:2"
UBOOT_SOURCE="xen_boot.source"
UBOOT_SCRIPT="xen_boot.scr"
"""

SMALL = """\
MEMORY_START=0x40000000
MEMORY_END=0x80000000
XEN=xen
DOM0_KERNEL=Image-dom0
DOM0_RAMDISK=dom0.cpio
NUM_DOMUS=2
DOMU_KERNEL[0]=domU0/Image
DOMU_RAMDISK[0]=domU0/rd.cpio
DOMU_KERNEL[1]=domU1/Image
DOMU_MEM[1]=256
"""
CONTROL_DTS = """\
/dts-v1/;
/ {
    #address-cells = <2>;
    #size-cells = <2>;
    compatible = "xlnx,versal";
    chosen { stdout-path = "serial0:115200"; };
    memory@0 { device_type = "memory"; reg = <0x0 0x40000000 0x0 0x40000000>; };
};
"""
CONTROL_ADDR = "7fe00000"  # where U-Boot keeps its control DTB, as `fdtcontroladdr` says


def make_inputs(root: Path) -> None:
    """Small files whose sizes hit 2 MiB alignment edges, and a control DTB made by dtc."""
    sizes = {"xen": 0x200000, "Image-dom0": 0x200001, "dom0.cpio": 512,
             "domU0/Image": 0x1FFFFF, "domU0/rd.cpio": 4096, "domU1/Image": 0x300000}
    for name, size in sizes.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(bytes([len(name)]) * size)
    (root / "control.dts").write_text(CONTROL_DTS)
    subprocess.run(["dtc", "-q", "-I", "dts", "-O", "dtb", "-o", str(root / "control.dtb"),
                    str(root / "control.dts")], check=True)


def generate(root: Path, config: str, *args: str) -> subprocess.CompletedProcess[str]:
    (root / "config").write_text(config)
    return run_ibtasks("uboot-script-gen", "-c", "config", "-d", ".", *args, cwd=root)


def loaded_files(script: str) -> list[str]:
    return [line.split()[-1] for line in script.splitlines() if re.match(r"\S*load |tftpb ", line)]


def test_versal_recipe_without_device_tree_edits_u_boots_own_dtb(tmp_path: Path) -> None:
    result = generate(tmp_path, VERSAL, "-s", "-o", "xen_boot")  # no -t, no binaries
    assert result.returncode == 0, result.stderr
    assert result.stderr == (
        "ibtasks: warning: config:13: DOMU_LOAD[0]: 'ex4load' is not a U-Boot command that "
        "loads a file; did you mean ext4load?\n")
    assert result.stdout.splitlines()[-1] == ("ext4load mmc 0:2 0x20200000 xen_boot.scr; "
                                              "source 0x20200000")
    source = (tmp_path / "xen_boot.source").read_text()
    lines = source.splitlines()
    assert loaded_files(source) == ["xen", "Image", "Image", "root/rootfs.cpio.gz"]
    assert [line for line in lines if "load " in line] == [
        "ext4load mmc 0:2 ${memaddr} xen",
        "ext4load mmc 0:3 ${memaddr} Image",
        "ex4load mmc 0:4 ${memaddr} Image",
        "ex4load mmc 0:4 ${memaddr} root/rootfs.cpio.gz",
    ]
    assert lines.index("setenv host_fdt_addr ${fdtcontroladdr}") + 1 == lines.index(
        "fdt addr ${host_fdt_addr}")
    assert lines[-1] == "booti ${xen_addr} - ${host_fdt_addr}"
    listing = subprocess.run(["dumpimage", "-l", str(tmp_path / "xen_boot.scr")], check=True,
                             capture_output=True, text=True).stdout
    assert "Image Type:   AArch64 Linux Script (uncompressed)" in listing
    assert f"Image 0: {len(source)} Bytes" in listing
    assert script_of(tmp_path, "xen_boot.scr") == source
    (tmp_path / "extracted.bin").unlink()
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == [
        "config", "xen_boot.scr", "xen_boot.source"]


def test_script_without_device_tree_means_on_u_boots_dtb_what_the_one_with_it_means(
        tmp_path: Path) -> None:
    make_inputs(tmp_path)
    with_dtb = generate(tmp_path, SMALL + "DEVICE_TREE=control.dtb\n", "-s", "-t", "tftp")
    assert with_dtb.returncode == 0, with_dtb.stderr
    given = evaluate((tmp_path / "boot.source").read_text(), tmp_path)
    without = generate(tmp_path, SMALL, "-s", "-t", "tftp")
    assert (without.returncode, without.stderr) == (0, "")
    own = evaluate(f"setenv fdtcontroladdr {CONTROL_ADDR}\n"
                   + (tmp_path / "boot.source").read_text(), tmp_path)

    loads = [line for line in given if line.startswith("tftpb")]
    dtb_load = loads.pop()
    assert dtb_load.endswith(" control.dtb")
    assert [line for line in own if line.startswith("tftpb")] == loads
    # U-Boot's setexpr writes hex without 0x; the first load uses memaddr as set (with 0x).
    xen_addr, dtb_addr = f"{int(loads[0].split()[1], 16):x}", dtb_load.split()[1]
    assert given[-1] == f"booti {xen_addr} - {dtb_addr}"
    assert own[-1] == f"booti {xen_addr} - {CONTROL_ADDR}"
    assert f"fdt addr {CONTROL_ADDR}" in own

    theirs, ours = tmp_path / "given.dtb", tmp_path / "own.dtb"
    shutil.copy(tmp_path / "control.dtb", theirs)
    shutil.copy(tmp_path / "control.dtb", ours)
    apply_with_fdtput(theirs, "\n".join(given))
    apply_with_fdtput(ours, "\n".join(own))
    assert dts_of(ours) == dts_of(theirs)
    # Xen (exactly 2 MiB) at 0x40400000, so dom0's kernel one slot later: evaluated addresses.
    assert "dom0@40600000 {" in dts_of(ours)


def test_overlays_without_device_tree_are_applied_to_u_boots_dtb(tmp_path: Path) -> None:
    result = generate(tmp_path, SMALL + "NUM_DT_OVERLAY=1\nDT_OVERLAY[0]=pl.dtbo\n", "-s", "-t",
                      "tftp")
    assert result.returncode == 0, result.stderr
    lines = (tmp_path / "boot.source").read_text().splitlines()
    assert loaded_files("\n".join(lines))[-1] == "pl.dtbo"
    start = lines.index("setenv host_fdt_addr ${fdtcontroladdr}")
    assert lines[start + 1 : start + 5] == [
        "fdt addr ${host_fdt_addr}",
        "setexpr fdt_room 0x" + lines[start + 2].split("0x")[1],
        "setexpr fdt_room ${fdt_room} + ${dt_overlay_0_size}",
        "fdt resize ${fdt_room}",
    ]
    assert lines[start + 5] == "fdt apply ${dt_overlay_0_addr}"


def test_bare_metal_linux_without_device_tree_boots_with_u_boots_dtb(tmp_path: Path) -> None:
    config = "MEMORY_START=0x0\nMEMORY_END=0x80000000\nLINUX=Image\nLINUX_RAMDISK=rd.cpio\n"
    result = generate(tmp_path, config, "-s", "-t", "sd")
    assert result.returncode == 0, result.stderr
    source = (tmp_path / "boot.source").read_text()
    assert loaded_files(source) == ["Image", "rd.cpio"]
    assert 'fdt set /chosen bootargs "earlycon console=ttyPS0,115200 root=/dev/ram0"' in source
    assert source.endswith("booti ${linux_addr} - ${host_fdt_addr}\n")


def test_missing_device_tree_without_s_names_device_tree_and_s(tmp_path: Path) -> None:
    make_inputs(tmp_path)
    result = generate(tmp_path, SMALL, "-t", "tftp")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "ibtasks: error: config: DEVICE_TREE is required but not set (only uboot-script-gen -s "
        "can do without: its script edits U-Boot's own DTB, ${fdtcontroladdr})\n")
    assert not any((tmp_path / n).exists() for n in ("boot.source", "boot.scr", "boot.dtb"))


def test_empty_device_tree_without_s_names_its_line(tmp_path: Path) -> None:
    make_inputs(tmp_path)
    result = generate(tmp_path, SMALL + 'DEVICE_TREE=""\n', "-t", "tftp")
    assert result.returncode == 1
    assert result.stderr.startswith("ibtasks: error: config:11: DEVICE_TREE is required but not "
                                    "set (only uboot-script-gen -s can do without")


def test_disk_image_without_device_tree_is_refused(tmp_path: Path) -> None:
    make_inputs(tmp_path)
    (tmp_path / "config").write_text(SMALL)
    result = run_ibtasks("disk-image", "-c", "config", "-d", ".", "-t", "sd", "-o", "disk.img",
                         cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("ibtasks: error: config: DEVICE_TREE is required but not set")
    assert not (tmp_path / "disk.img").exists()


def test_fdtedit_with_s_is_a_warning_that_no_edited_dtb_is_written(tmp_path: Path) -> None:
    result = generate(tmp_path, SMALL + "FDTEDIT=edited.dtb\n", "-s", "-t", "tftp")
    assert result.returncode == 0
    assert result.stderr == ("ibtasks: warning: config:11: FDTEDIT: -s writes no edited DTB "
                             "(U-Boot edits the DTB at boot), ignored\n")
    assert not (tmp_path / "edited.dtb").exists()


def test_fit_with_s_and_no_device_tree_is_refused(tmp_path: Path) -> None:
    result = generate(tmp_path, SMALL, "-s", "-f", "-t", "tftp")
    assert result.returncode == 1
    assert result.stderr.startswith("ibtasks: error: -s cannot be combined with a FIT")
