"""A stable layout: boot files that grow or are renamed change only the boot partition; rootfs
partitions keep their offsets and bytes (read back with sfdisk); BOOT_PARTITION_SIZE and
--boot-size fix the boot partition's size. Built as the test user (tests/unprivileged.py).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.test_disk_image import CONFIG, make_rootfs, partitions
from tests.unprivileged import run_as_user, unprivileged_python, user_tmp_dir

SECTOR = 512
MIB = 1 << 20


@pytest.fixture
def inputs(seed_inputs_master: Path) -> Iterator[Path]:
    with user_tmp_dir() as tmp:
        work = tmp / "inputs"
        shutil.copytree(seed_inputs_master, work)
        (work / "config").write_text(CONFIG)
        make_rootfs(work / "rootfs-dom0.cpio.gz", b"dom0\n")
        make_rootfs(work / "rootfs-domU.tar.gz", b"domU2\n")
        subprocess.run(["chmod", "-R", "a+rwX", str(tmp)], check=True)
        yield work


def build(inputs: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return run_as_user([unprivileged_python(), "-m", "ibtasks", "disk-image", "-c", "config",
                        "-d", ".", "-t", "scsi", "-o", "disk.img", *flags], cwd=inputs)


def layout(inputs: Path) -> list[tuple[int, int, str]]:
    """(start sector, sectors, sha256 of the bytes) of each partition, in table order."""
    disk = inputs / "disk.img"
    out = []
    with open(disk, "rb") as image:
        for part in partitions(disk):
            start, size = int(part["start"]), int(part["size"])  # type: ignore[call-overload]
            image.seek(start * SECTOR)
            out.append((start, size, hashlib.sha256(image.read(size * SECTOR)).hexdigest()))
    return out


def grow(path: Path, by: int) -> None:
    with open(path, "ab") as f:
        f.write(bytes(range(256)) * (by // 256))


@pytest.mark.parametrize("by", [3_000_000, 25 * MIB])
def test_a_grown_kernel_changes_only_the_boot_partition(inputs: Path, by: int) -> None:
    assert build(inputs).returncode == 0
    before = layout(inputs)
    grow(inputs / "Image-dom0", by)
    done = build(inputs)
    assert done.returncode == 0, done.stderr
    after = layout(inputs)
    assert after[1:] == before[1:]  # dom0's and domU2's partitions: same offsets, same bytes
    assert after[0][2] != before[0][2]
    assert after[1][0] == 2048


def test_a_renamed_kernel_changes_only_the_boot_partition(inputs: Path) -> None:
    assert build(inputs).returncode == 0
    before = layout(inputs)
    shutil.copytree(inputs / "zynqmp-dom2", inputs / "zynqmp-dom2-v2")
    config = inputs / "config"
    config.write_text(config.read_text().replace("zynqmp-dom2/", "zynqmp-dom2-v2/"))
    done = build(inputs)
    assert done.returncode == 0, done.stderr
    after = layout(inputs)
    assert after[1:] == before[1:]
    assert after[0][2] != before[0][2]


def test_a_grown_ramdisk_and_dtb_change_only_the_boot_partition(inputs: Path) -> None:
    assert build(inputs).returncode == 0
    before = layout(inputs)
    grow(inputs / "dom0-ramdisk.cpio", 2 * MIB)
    grow(inputs / "zynqmp-dom2" / "domU-ramdisk.cpio", MIB)
    done = build(inputs)
    assert done.returncode == 0, done.stderr
    assert layout(inputs)[1:] == before[1:]


def test_boot_partition_size_key_fixes_the_boot_partition_and_the_disk_size(
    inputs: Path,
) -> None:
    config = inputs / "config"
    config.write_text(config.read_text() + "BOOT_PARTITION_SIZE=100\n")
    assert build(inputs).returncode == 0
    first = layout(inputs)
    size = (inputs / "disk.img").stat().st_size
    assert first[0][1] == 100 * MIB // SECTOR
    grow(inputs / "Image-dom0", 5 * MIB)
    assert build(inputs).returncode == 0
    second = layout(inputs)
    assert [p[:2] for p in second] == [p[:2] for p in first]
    assert second[1:] == first[1:]
    assert (inputs / "disk.img").stat().st_size == size


def test_boot_size_flag_wins_over_the_key(inputs: Path) -> None:
    config = inputs / "config"
    config.write_text(config.read_text() + "BOOT_PARTITION_SIZE=100\n")
    assert build(inputs, "--boot-size", "64").returncode == 0
    assert layout(inputs)[0][1] == 64 * MIB // SECTOR


def test_boot_files_that_no_longer_fit_the_fixed_size_are_a_one_line_error(
    inputs: Path,
) -> None:
    config = inputs / "config"
    config.write_text(config.read_text() + "BOOT_PARTITION_SIZE=40\n")
    assert build(inputs).returncode == 0  # 36 MiB: the boot files and 16 MiB
    grow(inputs / "Image-dom0", 8 * MIB)
    done = build(inputs)
    assert done.returncode != 0
    assert done.stderr.startswith("ibtasks: error: BOOT_PARTITION_SIZE (--boot-size): the boot "
                                  "partition's image is ")
    assert done.stderr.endswith("more than the 40 MiB given\n")
    assert len(done.stderr.splitlines()) == 1
    assert not (inputs / "disk.img").exists()


@pytest.mark.parametrize("value, message", [
    ("0", "BOOT_PARTITION_SIZE: must be at least 1 MiB"),
    ("64M", "BOOT_PARTITION_SIZE: expected a whole number of MiB"),
])
def test_bad_boot_partition_sizes_name_the_key(inputs: Path, value: str, message: str) -> None:
    config = inputs / "config"
    config.write_text(config.read_text() + f"BOOT_PARTITION_SIZE={value}\n")
    done = build(inputs)
    assert done.returncode != 0
    assert message in done.stderr and len(done.stderr.splitlines()) == 1, done.stderr
