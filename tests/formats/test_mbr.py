"""DOS partition tables: our sector against sfdisk's for the same script, and the reader.

sfdisk scripts the same table on a plain file; its first sector must equal ours byte for byte,
CHS fields included (one partition ends past cylinder 1023, where libfdisk saturates them).
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from ibtasks.errors import UserError
from ibtasks.formats.disk_image import power_of_two_mib
from ibtasks.formats.gpt import GptTable, build_gpt
from ibtasks.formats.mbr import (
    FAT16_LBA,
    FAT32_LBA,
    LINUX,
    MbrPartition,
    MbrTable,
    build_mbr,
    check_dos_partition_count,
    fat_partition_type,
    parse_mbr,
    read_mbr,
)

TABLE = MbrTable(0x12345678, (
    MbrPartition(FAT16_LBA, 2048, 65536, bootable=True),
    MbrPartition(LINUX, 67584, 4194304),
    MbrPartition(LINUX, 4261888, 1048576),  # cylinders 265-330
))
BIG = MbrTable(0xCAFEF00D, (MbrPartition(FAT32_LBA, 2048, 2048, bootable=True),
                            MbrPartition(LINUX, 16777216, 2048)))  # cylinder 1044: saturated


def sfdisk_sector(image: Path, table: MbrTable) -> bytes:
    lines = ["label: dos", f"label-id: {table.disk_id:#010x}", "unit: sectors"]
    for part in table.partitions:
        lines.append(f"start={part.first_lba}, size={part.sectors}, type={part.type:x}"
                     + (", bootable" if part.bootable else ""))
    subprocess.run(["truncate", "-s", "9G", str(image)], check=True)
    subprocess.run(["sfdisk", "-q", str(image)], input="\n".join(lines) + "\n", text=True,
                   check=True)
    with open(image, "rb") as disk:
        return disk.read(512)


@pytest.mark.parametrize("table", [TABLE, BIG], ids=["small", "past-cylinder-1023"])
def test_our_dos_sector_equals_sfdisks_for_the_same_table(table: MbrTable,
                                                         tmp_path: Path) -> None:
    assert build_mbr(table) == sfdisk_sector(tmp_path / "disk.img", table)


def test_a_dos_table_reads_back_as_written() -> None:
    assert parse_mbr(build_mbr(TABLE)) == TABLE
    assert parse_mbr(build_mbr(BIG)) == BIG


def test_sfdisk_reads_our_table_with_types_and_the_boot_flag(tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    subprocess.run(["truncate", "-s", "3G", str(image)], check=True)
    with open(image, "r+b") as disk:
        disk.write(build_mbr(TABLE))
    table = json.loads(subprocess.run(["sfdisk", "--json", str(image)], check=True,
                                      capture_output=True, text=True).stdout)["partitiontable"]
    assert table["label"] == "dos" and table["id"] == "0x12345678"
    assert [(p["start"], p["size"], p["type"], p.get("bootable", False))
            for p in table["partitions"]] == [(2048, 65536, "e", True),
                                              (67584, 4194304, "83", False),
                                              (4261888, 1048576, "83", False)]
    assert read_mbr(str(image)) == TABLE


def test_a_gpt_protective_mbr_is_not_taken_for_a_dos_table() -> None:
    primary, _ = build_gpt(GptTable(8192, uuid.UUID(int=1), ()))
    with pytest.raises(UserError, match="protective MBR"):
        parse_mbr(primary[:512])


def test_a_sector_without_the_signature_is_no_table() -> None:
    with pytest.raises(UserError, match="no DOS partition table"):
        parse_mbr(bytes(512))


def test_a_fifth_partition_is_refused_naming_the_choice() -> None:
    check_dos_partition_count(4, "PARTITION_TABLE=dos")
    with pytest.raises(UserError) as info:
        check_dos_partition_count(5, "config:7: PARTITION_TABLE=dos")
    assert str(info.value) == (
        "config:7: PARTITION_TABLE=dos: 5 partitions (boot and 4 rootfs) do not fit a DOS "
        "table's 4 primary partitions; use a GPT (--table gpt)")


def test_overlapping_partitions_are_refused() -> None:
    with pytest.raises(UserError, match="partition 2: sectors 2048"):
        build_mbr(MbrTable(1, (MbrPartition(LINUX, 2048, 4096), MbrPartition(LINUX, 2048, 1))))


@pytest.mark.parametrize(("fat", "expected"), [("16", FAT16_LBA), ("32", FAT32_LBA)])
def test_the_type_byte_follows_the_fat_type_mkfs_wrote(fat: str, expected: int,
                                                       tmp_path: Path) -> None:
    image = tmp_path / "fat.img"
    subprocess.run(["truncate", "-s", "40M", str(image)], check=True)
    subprocess.run(["mkfs.vfat", "-F", fat, str(image)], check=True, capture_output=True)
    assert fat_partition_type(image.read_bytes()[:512]) == expected


@pytest.mark.parametrize(("size_mib", "rounded_mib"),
                         [(1, 1), (2, 2), (3, 4), (17, 32), (528, 1024), (1024, 1024)])
def test_power_of_two_rounds_the_size_in_mib_up(size_mib: int, rounded_mib: int) -> None:
    # upstream's align_size_power_of_two on the size in MiB, e.g. 528 -> 1024.
    assert power_of_two_mib(size_mib << 20) == rounded_mib << 20
    assert power_of_two_mib((size_mib << 20) - 511) == rounded_mib << 20
