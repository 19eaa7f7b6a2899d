"""uboot-script-gen then disk-image compose as ImageBuilder's pair: the disk carries the script
the user generated (regenerated with its recorded flags when inputs changed), a script ibtasks
did not write as it is, and disk-image's own script only when there is none.

Each test reads the script back out of the disk's FAT with mtools (`-i disk.img@@OFFSET`) and
dumpimage, and the xl configs out of dom0's ext4 partition with debugfs.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.chaintools import (
    disk_image,
    fat_file,
    fat_listing,
    rootfs_file,
    script_gen,
    script_text,
    user_script,
)
from tests.small_configs import DISK, write_config


def build_disk(inputs: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    result = disk_image(inputs, "-o", "disk.img", *flags)
    assert result.returncode == 0, result.stderr
    return result


def disk_script(inputs: Path, tmp: Path, name: str = "boot.scr") -> str:
    return script_text(fat_file(inputs / "disk.img", name), tmp)


def test_the_disk_carries_the_load_command_uboot_script_gen_was_given(
        seed_inputs: Path, tmp_path: Path) -> None:
    write_config(seed_inputs, DISK)
    script_gen(seed_inputs, "-t", "load mmc 1:1")
    result = build_disk(seed_inputs, "-t", "sd")
    text = disk_script(seed_inputs, tmp_path)
    loads = [line for line in text.splitlines() if " 0x" in line and "load" in line]
    assert loads and all(line.startswith("load mmc 1:1 ") for line in loads)
    assert "root=/dev/mmcblk1p2" in text  # dom0's root= from uboot-script-gen's -t
    # disk-image's -t only for what it deduces itself, as the original's disk_image
    xl = rootfs_file(seed_inputs / "disk.img", 2, "/etc/xen/domU1.cfg", tmp_path)
    assert 'disk=["/dev/mmcblk0p3,,xvda"]' in xl and "# mount /dev/mmcblk0p1 /boot" in xl
    assert "ibtasks: note: boot.scr: made with uboot-script-gen's flags (-t 'load mmc 1:1')" \
        in result.stderr
    assert fat_file(seed_inputs / "disk.img", "boot.scr") == \
        (seed_inputs / "boot.scr").read_bytes()


def test_changed_inputs_regenerate_the_script_with_the_recorded_flags(
        seed_inputs: Path, tmp_path: Path) -> None:
    config = write_config(seed_inputs, DISK)
    script_gen(seed_inputs, "-t", "load scsi 2:1", "--preedited-dtb")
    config.write_text(config.read_text().replace("bootscrub=0", "bootscrub=1"))
    build_disk(seed_inputs, "-t", "virtio")
    text = disk_script(seed_inputs, tmp_path)
    assert "load scsi 2:1 0x" in text and "load virtio" not in text
    assert "fdt set" not in text  # --preedited-dtb kept: the edited DTB is loaded
    dtb = tmp_path / "boot.dtb"
    dtb.write_bytes(fat_file(seed_inputs / "disk.img", "boot.dtb"))
    bootargs = subprocess.run(["fdtget", str(dtb), "/chosen", "xen,xen-bootargs"], check=True,
                              capture_output=True, text=True).stdout
    assert "bootscrub=1" in bootargs and "root=" not in bootargs
    # A second disk-image recognises the script it regenerated as uboot-script-gen's.
    build_disk(seed_inputs, "-t", "virtio")
    assert "load scsi 2:1 0x" in disk_script(seed_inputs, tmp_path)


def test_recorded_prepend_path_puts_every_boot_file_under_it(seed_inputs: Path,
                                                             tmp_path: Path) -> None:
    write_config(seed_inputs, DISK)
    script_gen(seed_inputs, "-t", "load mmc 0:1", "-p", "/images")
    build_disk(seed_inputs, "-t", "sd")
    listing = fat_listing(seed_inputs / "disk.img")
    for name in ("xen", "Image-dom0", "mpsoc.dtb", "boot.scr", "boot.source",
                 "zynqmp-dom1/Image-domU"):
        assert f"::/images/{name}" in listing
    assert "load mmc 0:1 0xE00000 /images/xen" in disk_script(seed_inputs, tmp_path,
                                                              "images/boot.scr")
    # dom0's xl config names the domU kernel where the boot partition holds it.
    xl = rootfs_file(seed_inputs / "disk.img", 2, "/etc/xen/domU1.cfg", tmp_path)
    assert 'kernel="/boot/images/zynqmp-dom2/Image-domU"' in xl
    assert "::/images/zynqmp-dom2/Image-domU" in listing


def test_a_script_ibtasks_did_not_write_is_copied_as_it_is(seed_inputs: Path) -> None:
    write_config(seed_inputs, DISK)
    mine = user_script(seed_inputs / "boot.scr", "echo my board's own script\n")
    result = build_disk(seed_inputs, "-t", "sd")
    assert fat_file(seed_inputs / "disk.img", "boot.scr") == mine
    assert (seed_inputs / "boot.scr").read_bytes() == mine
    assert "ibtasks: note: boot.scr: not written by ibtasks (or changed since); copied as it " \
        "is, unchecked" in result.stderr
    assert not (seed_inputs / "boot.source").exists()  # nothing generated beside it


def test_a_script_replaced_after_uboot_script_gen_is_copied_as_it_is(seed_inputs: Path) -> None:
    write_config(seed_inputs, DISK)
    script_gen(seed_inputs, "-t", "load mmc 1:1")
    mine = user_script(seed_inputs / "boot.scr", "echo edited by hand\n")
    build_disk(seed_inputs, "-t", "sd")
    assert fat_file(seed_inputs / "disk.img", "boot.scr") == mine


def test_a_corrupt_record_is_treated_as_absent(seed_inputs: Path) -> None:
    write_config(seed_inputs, DISK)
    script_gen(seed_inputs, "-t", "load mmc 1:1")
    record = seed_inputs / ".ibtasks" / "generated" / "boot.source.json"
    record.write_text('{"version": 1, "by": ')
    ours = (seed_inputs / "boot.scr").read_bytes()
    result = build_disk(seed_inputs, "-t", "sd")
    assert fat_file(seed_inputs / "disk.img", "boot.scr") == ours
    # A warning, not a note: the script may be ours and stale, and --strict must stop there.
    assert result.stderr.splitlines()[0] == (
        f"ibtasks: warning: {record.relative_to(seed_inputs)}: unreadable record of what "
        "uboot-script-gen wrote; boot.scr is copied as it is, unchecked: run uboot-script-gen "
        "again to bring it up to date")
    strict = disk_image(seed_inputs, "-o", "disk.img", "-t", "sd", "--strict")
    assert strict.returncode == 1
    assert strict.stderr.startswith("ibtasks: error: ") and "unreadable record" in strict.stderr


def test_without_a_script_disk_image_generates_one_with_its_own_load_command(
        seed_inputs: Path, tmp_path: Path) -> None:
    write_config(seed_inputs, DISK)
    build_disk(seed_inputs, "-t", "scsi")
    assert "load scsi 0:1 0xE00000 xen" in disk_script(seed_inputs, tmp_path)
    build_disk(seed_inputs, "-t", "sd")  # its own script follows its own -t
    text = disk_script(seed_inputs, tmp_path)
    assert "load mmc 0:1 0xE00000 xen" in text and "root=/dev/mmcblk0p2" in text
    record = json.loads((seed_inputs / ".ibtasks" / "generated" / "boot.source.json")
                        .read_text())
    assert record["by"] == "disk-image" and record["flags"]["load_cmd"] == "sd"


def test_preedited_dtb_against_a_script_made_without_it_is_a_one_line_error(
        seed_inputs: Path) -> None:
    write_config(seed_inputs, DISK)
    script_gen(seed_inputs, "-t", "load mmc 1:1")
    result = disk_image(seed_inputs, "-t", "sd", "-o", "disk.img", "--preedited-dtb")
    assert result.returncode == 1
    assert result.stderr == (
        "ibtasks: error: --preedited-dtb: boot.scr was generated by uboot-script-gen without "
        "--preedited-dtb; pass it to uboot-script-gen too, or leave it out here\n")
    assert not (seed_inputs / "disk.img").exists()


def test_a_script_generated_under_another_name_is_a_one_line_error(seed_inputs: Path) -> None:
    write_config(seed_inputs, DISK)
    script_gen(seed_inputs, "-t", "load mmc 1:1", "-o", "sdcard")
    result = disk_image(seed_inputs, "-t", "sd", "-o", "disk.img")
    assert result.returncode == 1
    assert result.stderr == (
        "ibtasks: error: boot.scr: not in ., but uboot-script-gen wrote sdcard.scr here "
        "(-t 'load mmc 1:1' -o sdcard); disk-image puts UBOOT_SCRIPT on the disk: run "
        "uboot-script-gen without -o, or name that script in UBOOT_SOURCE/UBOOT_SCRIPT\n")
    assert not (seed_inputs / "disk.img").exists() and not (seed_inputs / "boot.scr").exists()


def test_an_output_name_in_the_config_chains_with_dash_o(seed_inputs: Path,
                                                         tmp_path: Path) -> None:
    write_config(seed_inputs, DISK.replace('UBOOT_SOURCE="boot.source"\nUBOOT_SCRIPT="boot.scr"',
                                           'UBOOT_SOURCE="sdcard.source"'))
    script_gen(seed_inputs, "-t", "load mmc 1:1", "-o", "sdcard")
    build_disk(seed_inputs, "-t", "sd")
    assert "load mmc 1:1 0xE00000 xen" in disk_script(seed_inputs, tmp_path, "sdcard.scr")
