"""ib_bmap after a change of one partition: the checksums of ranges disk.img's record says were
not written since the last block map are kept, the rest are read again, and the result is
always the block map `bmaptool create` makes of the disk as it is (checked with bmap-tools
itself: its ranges, and `bmaptool copy` verifying every checksum). Whatever breaks the chain
(the disk or the block map edited by someone else, a record missing, two disk writes between
block maps) makes the block map read everything again."""

from __future__ import annotations

import json
import random
import subprocess
import uuid
from hashlib import sha256
from pathlib import Path

from ibtasks.formats.disk_image import PartitionImage, assemble_disk, read_disk_record
from ibtasks.tasks.bmap import BmapInput, write_bmap

MIB = 1024 * 1024
LINUX = uuid.UUID("0FC63DAF-8483-4772-8E79-3D69D8477DE4")
BASIC_DATA = uuid.UUID("EBD0A0A2-B9E5-4433-87C0-68B6B72699C7")
ROOTFS_DATA = 24 * MIB  # bytes of data in the rootfs partition's image


def rootfs_image(path: Path) -> Path:
    """A sparse 40 MiB stand-in of an ext4 image: 24 MiB of data in three pieces, holes between."""
    rng = random.Random(7)
    with open(path, "wb") as out:
        out.truncate(40 * MIB)
        for offset in (0, 12 * MIB, 30 * MIB):
            out.seek(offset)
            out.write(rng.randbytes(8 * MIB))
    return path


def boot_image(path: Path, seed: int, size: int = 6 * MIB) -> Path:
    path.write_bytes(random.Random(seed).randbytes(size))
    return path


def assemble(folder: Path) -> Path:
    disk = folder / "disk.img"
    assemble_disk(disk, uuid.UUID(int=1), [
        PartitionImage("boot", BASIC_DATA, uuid.UUID(int=2), folder / "boot.vfat", last=True),
        PartitionImage("rootfs", LINUX, uuid.UUID(int=3), folder / "rootfs.ext4"),
    ])
    return disk


def block_map(folder: Path) -> tuple[Path, int]:
    """Write disk.img.bmap as ib_bmap does; (its path, bytes this process read meanwhile)."""
    bmap = folder / "disk.img.bmap"
    before = read_bytes()
    write_bmap(BmapInput(folder / "disk.img", folder / "bmap.json"), str(bmap))
    return bmap, read_bytes() - before


def read_bytes() -> int:
    """Bytes this process has read through read(2)/pread(2) so far (Linux's rchar)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def assert_is_bmaptools_map(folder: Path, bmap: Path) -> None:
    """Our ranges are bmaptool create's, and bmaptool copy checks every checksum of ours."""
    disk = folder / "disk.img"
    created = subprocess.run(["bmaptool", "create", str(disk)], check=True, capture_output=True,
                             text=True).stdout
    ranges = [line.strip() for line in created.splitlines() if "<Range" in line]
    assert [line.strip() for line in bmap.read_text().splitlines() if "<Range" in line] == ranges
    copy = folder / "copy.img"
    done = subprocess.run(["bmaptool", "copy", str(disk), "--bmap", str(bmap), str(copy)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert copy.read_bytes() == disk.read_bytes()
    copy.unlink()


def built(folder: Path) -> Path:
    rootfs_image(folder / "rootfs.ext4")
    boot_image(folder / "boot.vfat", seed=1)
    assemble(folder)
    bmap, _ = block_map(folder)
    assert_is_bmaptools_map(folder, bmap)
    return bmap


def test_a_changed_boot_partition_rehashes_its_own_ranges_only(tmp_path: Path) -> None:
    built(tmp_path)
    boot_image(tmp_path / "boot.vfat", seed=2)
    assemble(tmp_path)
    record = read_disk_record(tmp_path / "disk.img")
    assert record is not None and record["changed"] is not None
    bmap, read = block_map(tmp_path)
    assert read < ROOTFS_DATA // 2  # the boot partition's 6 MiB, not the rootfs's 24 MiB
    assert_is_bmaptools_map(tmp_path, bmap)


def test_a_boot_partition_that_grows_keeps_the_rootfs_checksums(tmp_path: Path) -> None:
    built(tmp_path)
    boot_image(tmp_path / "boot.vfat", seed=3, size=9 * MIB)  # a new table: the boot grew
    assemble(tmp_path)
    bmap, read = block_map(tmp_path)
    assert read < ROOTFS_DATA // 2
    assert_is_bmaptools_map(tmp_path, bmap)


def test_a_changed_rootfs_is_read_again(tmp_path: Path) -> None:
    built(tmp_path)
    with open(tmp_path / "rootfs.ext4", "r+b") as image:
        image.seek(12 * MIB + 5)
        image.write(b"changed")
    assemble(tmp_path)
    bmap, read = block_map(tmp_path)
    assert read >= 8 * MIB  # at least the rewritten piece
    assert_is_bmaptools_map(tmp_path, bmap)


def test_a_disk_edited_by_someone_else_is_hashed_whole(tmp_path: Path) -> None:
    built(tmp_path)
    with open(tmp_path / "disk.img", "r+b") as disk:  # inside the rootfs partition's data
        disk.seek(MIB + 5)
        disk.write(b"edited by hand")
    assert read_disk_record(tmp_path / "disk.img") is None
    bmap, read = block_map(tmp_path)
    assert read >= ROOTFS_DATA
    assert_is_bmaptools_map(tmp_path, bmap)


def test_a_block_map_edited_by_someone_else_is_not_trusted(tmp_path: Path) -> None:
    bmap = built(tmp_path)
    # A checksum of a rootfs range swapped for another, the file's own checksum made right.
    text = bmap.read_text()
    sums = [line.split('"')[1] for line in text.splitlines() if "<Range" in line]
    forged = text.replace(sums[0], "0" * 64, 1)
    own = forged.split("<BmapFileChecksum>")[1].split("</BmapFileChecksum>")[0].strip()
    zeroed = forged.replace(own, "0" * 64, 1)
    bmap.write_text(zeroed.replace("0" * 64, sha256(zeroed.encode()).hexdigest(), 1))
    boot_image(tmp_path / "boot.vfat", seed=4)
    assemble(tmp_path)
    again, read = block_map(tmp_path)
    assert read >= ROOTFS_DATA
    assert_is_bmaptools_map(tmp_path, again)


def test_two_disk_writes_between_block_maps_break_the_chain(tmp_path: Path) -> None:
    built(tmp_path)
    for seed in (5, 6):
        boot_image(tmp_path / "boot.vfat", seed=seed)
        assemble(tmp_path)
    bmap, read = block_map(tmp_path)
    assert read >= ROOTFS_DATA
    assert_is_bmaptools_map(tmp_path, bmap)


def test_without_its_record_the_block_map_is_made_whole(tmp_path: Path) -> None:
    built(tmp_path)
    (tmp_path / "bmap.json").unlink()
    boot_image(tmp_path / "boot.vfat", seed=7)
    assemble(tmp_path)
    bmap, read = block_map(tmp_path)
    assert read >= ROOTFS_DATA
    assert_is_bmaptools_map(tmp_path, bmap)
    record = json.loads((tmp_path / "bmap.json").read_text())
    assert record["generation"] == read_disk_record(tmp_path / "disk.img")["generation"]


def test_a_block_map_made_again_of_the_same_disk_reads_none_of_it(tmp_path: Path) -> None:
    built(tmp_path)
    assemble(tmp_path)  # nothing changed: disk.img and its record are left as they are
    bmap, read = block_map(tmp_path)
    assert read < MIB
    assert_is_bmaptools_map(tmp_path, bmap)
