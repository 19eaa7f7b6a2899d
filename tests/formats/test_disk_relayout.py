"""disk.img updated in place when its layout changes: the boot partition, entry 1 but placed
last, grows or shrinks; rootfs partitions whose image and place are unchanged are not copied
again, and the result is byte-identical to a disk assembled from scratch (checked with sfdisk
and compared whole).
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

from ibtasks.formats.disk_image import PartitionImage, assemble_disk
from tests.formats.test_disk import DISK_GUID, make_boot, make_ext4, partitions

MIB = 1 << 20


def boot_last(root: Path, kernel: bytes) -> list[PartitionImage]:
    """The boot partition of `kernel`, placed last, and dom0's rootfs (made once)."""
    rootfs = root / "work" / "dom0.ext4"
    boot = make_boot(root, kernel)
    parts = partitions(boot, rootfs if rootfs.exists() else make_ext4(rootfs))
    return [replace(parts[0], last=True), parts[1]]


def fresh(root: Path, parts: list[PartitionImage]) -> bytes:
    """The same partitions assembled into a new disk, for comparison."""
    out = root / "fresh.img"
    out.unlink(missing_ok=True)
    Path(f"{out}.parts.json").unlink(missing_ok=True)
    assemble_disk(out, DISK_GUID, parts)
    return out.read_bytes()


def starts(disk: Path) -> list[int]:
    table = subprocess.run(["sfdisk", "--json", str(disk)], check=True, capture_output=True)
    return [p["start"] for p in json.loads(table.stdout)["partitiontable"]["partitions"]]


def test_a_grown_boot_partition_rewrites_only_itself_and_the_tables(tmp_path: Path) -> None:
    disk = tmp_path / "disk.img"
    assemble_disk(disk, DISK_GUID, boot_last(tmp_path, b"K" * 3000))
    first = starts(disk)
    assert first[1] == 2048 and first[0] > first[1]
    parts = boot_last(tmp_path, b"K" * (30 * MIB))  # the boot image grows past its old size
    result = assemble_disk(disk, DISK_GUID, parts)
    assert result.written == (1,)
    assert starts(disk)[1] == 2048
    assert disk.read_bytes() == fresh(tmp_path, parts)


def test_a_shrunk_boot_partition_leaves_no_stale_bytes(tmp_path: Path) -> None:
    disk = tmp_path / "disk.img"
    assemble_disk(disk, DISK_GUID, boot_last(tmp_path, b"K" * (30 * MIB)))
    parts = boot_last(tmp_path, b"K" * 3000)
    result = assemble_disk(disk, DISK_GUID, parts)
    assert result.written == (1,)
    assert disk.read_bytes() == fresh(tmp_path, parts)


def test_a_rootfs_that_grows_moves_the_boot_partition_and_both_are_written(
    tmp_path: Path,
) -> None:
    disk = tmp_path / "disk.img"
    assemble_disk(disk, DISK_GUID, boot_last(tmp_path, b"K" * 3000))
    parts = boot_last(tmp_path, b"K" * 3000)
    parts[1] = replace(parts[1], image=make_ext4(tmp_path / "work" / "dom0.ext4", mib=9,
                                                 marker=b"grown"))
    result = assemble_disk(disk, DISK_GUID, parts)
    assert result.written == (1, 2)
    assert disk.read_bytes() == fresh(tmp_path, parts)


def test_an_unchanged_layout_still_updates_in_place(tmp_path: Path) -> None:
    disk = tmp_path / "disk.img"
    assemble_disk(disk, DISK_GUID, boot_last(tmp_path, b"K" * 3000))
    inode = disk.stat().st_ino
    parts = boot_last(tmp_path, b"L" * 3000)  # same size: same table
    result = assemble_disk(disk, DISK_GUID, parts)
    assert result.written == (1,) and disk.stat().st_ino == inode
    assert disk.read_bytes() == fresh(tmp_path, parts)
