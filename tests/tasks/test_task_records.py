"""doit's record of our tasks never vouches for stale bytes.

(a) a target another run rewrote (another -o name under the same task names, another dep file
with disk-image -w, another disk image from the same partitions) is rebuilt; (b) a new ibtasks
version reruns every task; (c) a tree copied elsewhere (new mtimes, another path) reruns
nothing and changes no byte. What ran is doit's own JSON report; bytes are read with fdtget,
dumpimage and mtools.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from tests.chaintools import disk_image, fat_file, ran, run_cli, script_gen, script_text
from tests.small_configs import BASE, DISK, write_config

BOOT_TASKS = {"ib_check:XEN", "ib_check:DOM0_KERNEL", "ib_check:DOM0_RAMDISK",
              "ib_check:DOMU_KERNEL[0]", "ib_check:DOMU_RAMDISK[0]", "ib_check:DEVICE_TREE",
              "ib_layout", "ib_dtb", "ib_boot_source", "ib_boot_scr"}
DISK_TASKS = {"ib_partition:boot", "ib_partition:dom0", "ib_partition:domU1", "ib_disk"}


def xen_bootargs(dtb: Path) -> str:
    return subprocess.run(["fdtget", str(dtb), "/chosen", "xen,xen-bootargs"], check=True,
                          capture_output=True, text=True).stdout.strip()


def digests(root: Path, names: list[str]) -> list[str]:
    return [hashlib.sha256((root / n).read_bytes()).hexdigest() for n in names]


def edit(config: Path, old: str, new: str) -> None:
    text = config.read_text()
    assert old in text
    config.write_text(text.replace(old, new))


# ---- (a) every target is what its task's record says ------------------------------------------

def test_two_output_names_from_one_config_each_follow_the_current_config(
        seed_inputs: Path, tmp_path: Path) -> None:
    config = write_config(seed_inputs)
    script_gen(seed_inputs, "-t", "tftp", "-o", "a")
    script_gen(seed_inputs, "-t", "tftp", "-o", "b")
    edit(config, "bootscrub=0", "bootscrub=1")
    script_gen(seed_inputs, "-t", "tftp", "-o", "b")
    again = script_gen(seed_inputs, "-t", "tftp", "-o", "a")
    assert {"ib_dtb", "ib_boot_source", "ib_boot_scr"} <= again
    assert "bootscrub=1" in xen_bootargs(seed_inputs / "a.dtb")
    assert "bootscrub=1" in (seed_inputs / "a.source").read_text()
    assert "bootscrub=1" in script_text((seed_inputs / "a.scr").read_bytes(), tmp_path)
    assert script_gen(seed_inputs, "-t", "tftp", "-o", "a") == set()


def test_disk_image_with_its_own_work_dir_never_keeps_a_dtb_uboot_script_gen_rewrote(
        seed_inputs: Path, tmp_path: Path) -> None:
    config = write_config(seed_inputs, DISK)
    first = disk_image(seed_inputs, "-t", "sd", "-o", "disk.img", "-w", "work")
    assert first.returncode == 0, first.stderr
    edit(config, "bootscrub=0", "bootscrub=1")
    script_gen(seed_inputs, "-t", "sd")  # its own dep file, in .ibtasks
    edit(config, "bootscrub=1", "bootscrub=0")
    again = ran(disk_image(seed_inputs, "-t", "sd", "-o", "disk.img", "-w", "work"))
    assert "ib_dtb" in again
    assert "bootscrub=0" in xen_bootargs(seed_inputs / "boot.dtb")
    dtb = tmp_path / "disk-boot.dtb"
    dtb.write_bytes(fat_file(seed_inputs / "disk.img", "boot.dtb"))
    assert "bootscrub=0" in xen_bootargs(dtb)


def test_one_disk_image_built_from_two_work_dirs_never_keeps_the_other_ones_bytes(
        seed_inputs: Path) -> None:
    write_config(seed_inputs, DISK)
    kernel = seed_inputs / "zynqmp-dom1" / "Image-domU"
    original = kernel.read_bytes()
    assert disk_image(seed_inputs, "-t", "sd", "-o", "disk.img", "-w", "w1").returncode == 0
    changed = bytearray(original)
    changed[-1] ^= 0xFF
    kernel.write_bytes(bytes(changed))
    assert disk_image(seed_inputs, "-t", "sd", "-o", "disk.img", "-w", "w2").returncode == 0
    assert fat_file(seed_inputs / "disk.img", "zynqmp-dom1/Image-domU") == bytes(changed)
    kernel.write_bytes(original)  # w1's partitions are built from these bytes
    again = ran(disk_image(seed_inputs, "-t", "sd", "-o", "disk.img", "-w", "w1"))
    assert "ib_disk" in again
    assert fat_file(seed_inputs / "disk.img", "zynqmp-dom1/Image-domU") == original


# ---- (b) a new version reruns everything -------------------------------------------------------

def test_a_new_ibtasks_version_reruns_every_boot_task(seed_inputs: Path) -> None:
    write_config(seed_inputs)
    assert script_gen(seed_inputs, "-t", "tftp") == BOOT_TASKS
    assert script_gen(seed_inputs, "-t", "tftp") == set()
    assert script_gen(seed_inputs, "-t", "tftp", version="99.0") == BOOT_TASKS
    assert script_gen(seed_inputs, "-t", "tftp", version="99.0") == set()


def test_a_new_ibtasks_version_reruns_every_disk_task(seed_inputs: Path) -> None:
    write_config(seed_inputs, DISK)
    assert ran(disk_image(seed_inputs, "-t", "sd", "-o", "disk.img")) >= DISK_TASKS
    assert ran(disk_image(seed_inputs, "-t", "sd", "-o", "disk.img")) == set()
    upgraded = ran(disk_image(seed_inputs, "-t", "sd", "-o", "disk.img", version="99.0"))
    assert upgraded >= DISK_TASKS | {"ib_dtb", "ib_boot_scr", "ib_layout"}


def test_the_no_op_fast_path_never_replays_another_versions_run(seed_inputs: Path) -> None:
    write_config(seed_inputs)
    plain = ("uboot-script-gen", "-c", "config", "-d", ".", "-t", "tftp")
    assert run_cli(seed_inputs, *plain).returncode == 0
    stamps = set((seed_inputs / ".ibtasks").glob("last-run-*.json"))
    upgraded = run_cli(seed_inputs, *plain, version="99.0")
    assert upgraded.returncode == 0
    assert len(set((seed_inputs / ".ibtasks").glob("last-run-*.json")) - stamps) == 1


# ---- (c) a copied tree reruns nothing ----------------------------------------------------------

def copy_tree(source: Path, target: Path) -> None:
    """As a CI cache restore: every file new, with a new mtime."""
    shutil.copytree(source, target, symlinks=True)
    for path in target.rglob("*"):
        os.utime(path, (2_000_000_000, 2_000_000_000), follow_symlinks=False)


def test_a_copied_tree_built_from_outside_reruns_nothing_and_changes_no_byte(
        seed_inputs: Path, tmp_path: Path) -> None:
    write_config(seed_inputs)
    outputs = ["boot.source", "boot.scr", "boot.dtb"]
    parent = seed_inputs.parent
    first = ran(run_cli(parent, "uboot-script-gen", "-c", "inputs/config", "-d", "inputs", "-t",
                        "tftp", "--", "run", "--reporter", "json"))
    assert first == BOOT_TASKS
    before = digests(seed_inputs, outputs)
    copy_tree(seed_inputs, parent / "restored")
    again = ran(run_cli(parent, "uboot-script-gen", "-c", "restored/config", "-d", "restored",
                        "-t", "tftp", "--", "run", "--reporter", "json"))
    assert again == set()
    assert digests(parent / "restored", outputs) == before


def test_an_absolute_directory_instead_of_a_relative_one_reruns_nothing(
        seed_inputs: Path) -> None:
    write_config(seed_inputs)
    assert script_gen(seed_inputs, "-t", "tftp") == BOOT_TASKS
    absolute = ran(run_cli(seed_inputs.parent, "uboot-script-gen", "-c",
                           str(seed_inputs / "config"), "-d", str(seed_inputs), "-t", "tftp",
                           "--", "run", "--reporter", "json"))
    assert absolute == set()


def test_a_copied_disk_tree_rebuilds_no_boot_file_and_gives_the_same_disk(
        seed_inputs: Path) -> None:
    write_config(seed_inputs, DISK)
    parent = seed_inputs.parent
    args = ("disk-image", "-t", "sd", "-o", "disk.img", "--", "run", "--reporter", "json")
    first = run_cli(parent, args[0], "-c", "inputs/config", "-d", "inputs", *args[1:3],
                    "-o", "inputs/disk.img", *args[5:])
    assert ran(first) >= DISK_TASKS | BOOT_TASKS
    copy_tree(seed_inputs, parent / "restored")
    again = ran(run_cli(parent, args[0], "-c", "restored/config", "-d", "restored", *args[1:3],
                        "-o", "restored/disk.img", *args[5:]))
    assert again & BOOT_TASKS == set()  # partition and disk images are checked by inode
    assert digests(parent / "restored", ["disk.img", "boot.scr", "boot.dtb"]) == \
        digests(seed_inputs, ["disk.img", "boot.scr", "boot.dtb"])


def test_a_moved_config_file_reruns_nothing(seed_inputs: Path) -> None:
    write_config(seed_inputs, BASE + 'APPEND_EXTRA_CMDS="extra-cmds.txt"\n')
    assert "ib_boot_source" in script_gen(seed_inputs, "-t", "tftp")
    (seed_inputs / "configs").mkdir()
    shutil.copy(seed_inputs / "config", seed_inputs / "configs" / "board")
    moved = ran(run_cli(seed_inputs, "uboot-script-gen", "-c", "configs/board", "-d", ".",
                        "-t", "tftp", "--", "run", "--reporter", "json"))
    assert moved == set()
