"""Temporaries are created exclusively under unpredictable names beside their target.

The rule: no output is ever written through a fixed temporary name (such as `disk.img.partial`,
`.boot.vfat.tmp` or `.boot.fit.unsigned`), where a symlink planted beforehand would redirect
the whole image to a file outside the build. Each test plants symlinks at the old names,
pointing to a file outside, builds, and checks the outside file is byte for byte unchanged and
that the outputs are real files that the real tools read.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from ibtasks.formats.disk_image import PartitionImage, assemble_disk
from ibtasks.formats.fat import BootFile, build_fat_image
from ibtasks.formats.gpt import BASIC_DATA, derive_guid
from ibtasks.fsutil import TEMP_MARK, write_atomic
from tests.conftest import run_ibtasks
from tests.small_configs import DISK, write_config

MIB = 1024 * 1024
OUTSIDE = b"a file outside the build that must not change\n"


def plant(links: list[Path], outside: Path) -> None:
    outside.write_bytes(OUTSIDE)
    for link in links:
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(outside)


def no_temporaries_left(directory: Path) -> bool:
    return not [p for p in directory.rglob("*") if TEMP_MARK in p.name]


def boot_image(root: Path, name: str = "boot.vfat") -> Path:
    (root / "src").mkdir(exist_ok=True)
    kernel = root / "src" / "Image"
    kernel.write_bytes(b"K" * 5000)
    image = root / "work" / name
    build_fat_image(image, [BootFile("Image", kernel)], volume_id=0x1234, label="BOOT",
                    epoch=315532800)
    return image


def test_a_symlink_at_the_old_fat_temporary_name_is_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    plant([tmp_path / "work" / ".boot.vfat.tmp"], outside)
    image = boot_image(tmp_path)
    assert outside.read_bytes() == OUTSIDE
    assert not image.is_symlink()
    subprocess.run(["fsck.fat", "-n", str(image)], check=True, capture_output=True)
    assert (tmp_path / "work" / ".boot.vfat.tmp").is_symlink()  # left alone, never written
    assert no_temporaries_left(tmp_path)


def test_a_symlink_at_the_old_partial_disk_name_is_not_followed_on_build_or_update(
        tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    plant([tmp_path / "disk.img.partial"], outside)
    image = boot_image(tmp_path)
    parts = [PartitionImage("Linux1", BASIC_DATA, derive_guid("t", "p1"), image)]
    first = assemble_disk(tmp_path / "disk.img", derive_guid("t", "disk"), parts)
    assert first.written == (1,)
    boot_image(tmp_path)  # rebuilt: a new image, so disk.img is updated in place
    second = assemble_disk(tmp_path / "disk.img", derive_guid("t", "disk"), parts)
    assert second.written == (1,)
    assert outside.read_bytes() == OUTSIDE
    table = subprocess.run(["sfdisk", "--json", str(tmp_path / "disk.img")], check=True,
                           capture_output=True, text=True).stdout
    assert '"name": "Linux1"' in table
    assert no_temporaries_left(tmp_path)


def test_a_symlink_at_every_guessable_atomic_write_name_is_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    target = tmp_path / "out" / "layout.json"
    plant([target.with_name(f".{target.name}.tmp"), target.with_name(".layout.json.ibtmp-")],
          outside)
    write_atomic(target, b"{}\n")
    assert target.read_bytes() == b"{}\n" and not target.is_symlink()
    assert outside.read_bytes() == OUTSIDE


def test_disk_image_with_symlinks_at_the_old_names_leaves_the_outside_file_alone(
        seed_inputs: Path, tmp_path: Path) -> None:
    """End to end, with an ext4 boot partition too (its boot files pass through a tar)."""
    write_config(seed_inputs, DISK)
    outside = tmp_path / "outside"
    work = seed_inputs / ".ibtasks"
    plant([seed_inputs / "disk.img.partial", work / ".boot.vfat.tmp",
           work / "boot.ext4.tar", work / ".boot.ext4.tmp"], outside)
    for boot_fs in ("fat", "ext4"):
        result = run_ibtasks("disk-image", "-c", "config", "-d", ".", "-t", "scsi", "-o",
                             "disk.img", "--boot-fs", boot_fs, cwd=seed_inputs)
        assert result.returncode == 0, result.stderr
        assert outside.read_bytes() == OUTSIDE
    subprocess.run(["sfdisk", "--json", str(seed_inputs / "disk.img")], check=True,
                   capture_output=True)
    assert no_temporaries_left(seed_inputs)


def test_a_signed_fit_is_never_written_through_a_symlink_at_its_old_unsigned_name(
        seed_inputs: Path, tmp_path: Path) -> None:
    keys = seed_inputs / "keys"
    keys.mkdir()
    subprocess.run(["openssl", "req", "-batch", "-newkey", "rsa:2048", "-nodes", "-x509",
                    "-subj", "/CN=dev", "-keyout", str(keys / "dev.key"),
                    "-out", str(keys / "dev.crt")], check=True, capture_output=True)
    write_config(seed_inputs)
    outside = tmp_path / "outside"
    plant([seed_inputs / ".boot.fit.unsigned"], outside)
    result = run_ibtasks("uboot-script-gen", "-c", "config", "-d", ".", "-t", "tftp", "-f",
                         "-k", "keys/dev", cwd=seed_inputs)
    assert result.returncode == 0, result.stderr
    assert outside.read_bytes() == OUTSIDE
    listing = subprocess.run(["dumpimage", "-l", str(seed_inputs / "boot.fit")], check=True,
                             capture_output=True, text=True).stdout
    assert "Sign algo:    sha1,rsa2048:dev" in listing
    assert no_temporaries_left(seed_inputs)
