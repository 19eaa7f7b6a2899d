"""GPT writer and reader, checked against sfdisk and sgdisk on tiny sparse disk files."""

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from ibtasks.errors import UserError
from ibtasks.formats.gpt import (
    BASIC_DATA,
    LINUX_FILESYSTEM,
    SECTOR,
    GptPartition,
    GptTable,
    build_gpt,
    derive_guid,
    parse_gpt,
    read_gpt,
)

DISK_GUID = uuid.UUID("11111111-2222-3333-4444-555555555555")
BOOT_GUID = uuid.UUID("aaaaaaaa-2222-3333-4444-555555555555")
ROOT_GUID = uuid.UUID("bbbbbbbb-2222-3333-4444-555555555555")

# 20 MiB boot at 2048, 10 MiB rootfs after it, 1 MiB left at the end for the backup table.
TABLE = GptTable(
    total_sectors=(1 + 20 + 10 + 1) * 2048,
    disk_guid=DISK_GUID,
    partitions=(
        GptPartition("Linux1", BASIC_DATA, BOOT_GUID, 2048, 2048 + 20 * 2048 - 1),
        GptPartition("Linux2", LINUX_FILESYSTEM, ROOT_GUID, 43008, 43008 + 10 * 2048 - 1),
    ),
)


def write_disk(path: Path, table: GptTable) -> None:
    primary, backup = build_gpt(table)
    with open(path, "wb") as disk:
        disk.truncate(table.total_sectors * SECTOR)
        disk.write(primary)
        disk.seek(table.total_sectors * SECTOR - len(backup))
        disk.write(backup)


def test_sfdisk_reads_the_table_as_built(tmp_path: Path) -> None:
    disk = tmp_path / "disk.img"
    write_disk(disk, TABLE)
    out = subprocess.run(["sfdisk", "--json", str(disk)], check=True, capture_output=True)
    table = json.loads(out.stdout)["partitiontable"]
    assert table["label"] == "gpt"
    assert table["id"] == "11111111-2222-3333-4444-555555555555"
    assert (table["firstlba"], table["lastlba"], table["sectorsize"]) == (34, 65502, 512)
    assert [
        (p["start"], p["size"], p["type"], p["uuid"], p["name"]) for p in table["partitions"]
    ] == [
        (2048, 40960, "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7", str(BOOT_GUID).upper(), "Linux1"),
        (43008, 20480, "0FC63DAF-8483-4772-8E79-3D69D8477DE4", str(ROOT_GUID).upper(), "Linux2"),
    ]


def test_sgdisk_verifies_the_table_without_problems(tmp_path: Path) -> None:
    disk = tmp_path / "disk.img"
    write_disk(disk, TABLE)
    out = subprocess.run(["sgdisk", "-v", str(disk)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "No problems found" in out.stdout
    assert "Warning" not in out.stdout + out.stderr


def test_table_is_byte_identical_to_sfdisk_given_the_same_guids(tmp_path: Path) -> None:
    ours, theirs = tmp_path / "ours.img", tmp_path / "sfdisk.img"
    write_disk(ours, TABLE)
    theirs.write_bytes(b"")
    with open(theirs, "r+b") as disk:
        disk.truncate(TABLE.total_sectors * SECTOR)
    script = (
        "label: gpt\nlabel-id: 11111111-2222-3333-4444-555555555555\nfirst-lba: 34\n"
        f"start=2048, size=40960, type={BASIC_DATA}, uuid={BOOT_GUID}, name=Linux1\n"
        f"start=43008, size=20480, type={LINUX_FILESYSTEM}, uuid={ROOT_GUID}, name=Linux2\n"
    )
    subprocess.run(["sfdisk", "-q", str(theirs)], input=script, text=True, check=True)
    assert ours.read_bytes() == theirs.read_bytes()


def test_parse_of_build_gives_the_table_back(tmp_path: Path) -> None:
    primary, backup = build_gpt(TABLE)
    assert parse_gpt(primary, TABLE.total_sectors, backup) == TABLE
    disk = tmp_path / "disk.img"
    write_disk(disk, TABLE)
    assert read_gpt(str(disk)) == TABLE


def test_corrupted_entry_array_is_reported() -> None:
    primary, _ = build_gpt(TABLE)
    damaged = bytearray(primary)
    damaged[2 * SECTOR + 60] ^= 1
    with pytest.raises(UserError, match="GPT: partition entry array CRC mismatch"):
        parse_gpt(bytes(damaged), TABLE.total_sectors)


def test_overlapping_partitions_are_rejected() -> None:
    first = TABLE.partitions[0]
    clash = GptPartition("Linux2", LINUX_FILESYSTEM, ROOT_GUID, first.last_lba, first.last_lba + 8)
    with pytest.raises(UserError, match=r"partition 2 \(Linux2\): sectors 43007-43015 overlap"):
        build_gpt(GptTable(TABLE.total_sectors, DISK_GUID, (first, clash)))


def test_partition_past_the_last_usable_sector_is_rejected() -> None:
    late = GptPartition("Linux1", LINUX_FILESYSTEM, ROOT_GUID, 2048, TABLE.total_sectors - 33)
    with pytest.raises(UserError, match="past the last usable sector 65502"):
        build_gpt(GptTable(TABLE.total_sectors, DISK_GUID, (late,)))


def test_derived_guids_are_stable_and_distinct() -> None:
    assert derive_guid("config", "disk") == derive_guid("config", "disk")
    assert derive_guid("config", "disk") != derive_guid("config", "boot")
    # Fixed forever: a changed namespace would silently change every image.
    assert str(derive_guid("a", "b")) == "45899f2d-9c1e-5013-a20f-06cda0d01609"
