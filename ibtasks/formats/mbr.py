"""DOS (MBR) partition tables as bytes: build and parse one 512-byte sector.

Written in Python for the reason `gpt` is: the table is a pure function of the layout, and the
bytes equal what `sfdisk` writes for the same script (checked in tests/formats/test_mbr.py),
including its CHS fields (geometry 255 heads x 63 sectors, saturated at cylinder 1023).

Only the four primary slots are written. Upstream's DOS mode put every rootfs partition in a
`logical` partition without an extended one (parted refuses that, see the reference notes);
we keep partitions primary and refuse a fifth (`check_dos_partition_count`): GPT has no limit.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from ibtasks.errors import UserError

SECTOR = 512
MAX_PRIMARY = 4
HEADS = 255
SECTORS_PER_TRACK = 63

# Partition type bytes (as `sfdisk --list-types` names them).
FAT16_LBA = 0x0E  # "W95 FAT16 (LBA)"
FAT32_LBA = 0x0C  # "W95 FAT32 (LBA)": what upstream's `parted mkpart primary fat32` writes
LINUX = 0x83
_BOOTABLE = 0x80

_ENTRY = struct.Struct("<B3sB3sII")
_TABLE_OFFSET = 446
_DISK_ID_OFFSET = 440


@dataclass(frozen=True)
class MbrPartition:
    """One primary partition: its type byte, first sector and size in sectors."""

    type: int
    first_lba: int
    sectors: int
    bootable: bool = False

    @property
    def last_lba(self) -> int:
        return self.first_lba + self.sectors - 1


@dataclass(frozen=True)
class MbrTable:
    """A DOS table: the 32-bit disk identifier (`label-id`) and up to four primary partitions."""

    disk_id: int
    partitions: tuple[MbrPartition, ...]


def derive_disk_id(disk_guid: uuid.UUID) -> int:
    """The 32-bit disk identifier of a DOS disk whose GPT would have had `disk_guid`."""
    return int.from_bytes(disk_guid.bytes[:4], "big")


def check_dos_partition_count(count: int, where: str) -> None:
    """Refuse more partitions than the four primary slots; name the choice that caused it."""
    if count > MAX_PRIMARY:
        raise UserError(
            f"{count} partitions (boot and {count - 1} rootfs) do not fit a DOS table's "
            f"{MAX_PRIMARY} primary partitions; use a GPT (--table gpt)",
            where,
        )


def _chs(lba: int) -> bytes:
    """libfdisk's CHS bytes for `lba`: past cylinder 1023 all fields saturate."""
    per_cylinder = HEADS * SECTORS_PER_TRACK
    if lba // per_cylinder > 1023:
        lba = per_cylinder * 1024 - 1
    cylinder, rest = divmod(lba, per_cylinder)
    head, sector = divmod(rest, SECTORS_PER_TRACK)
    return bytes([head, (sector + 1) | ((cylinder >> 2) & 0xC0), cylinder & 0xFF])


def build_mbr(table: MbrTable) -> bytes:
    """The first sector of the disk: no boot code, the disk identifier, the table, 55 AA."""
    if len(table.partitions) > MAX_PRIMARY:
        raise UserError(f"{len(table.partitions)} partitions; a DOS table holds {MAX_PRIMARY}")
    sector = bytearray(SECTOR)
    sector[_DISK_ID_OFFSET:_DISK_ID_OFFSET + 4] = table.disk_id.to_bytes(4, "little")
    previous_end = 0
    for slot, part in sorted(enumerate(table.partitions), key=lambda item: item[1].first_lba):
        if part.first_lba <= previous_end or part.sectors < 1:  # in disk order, as gpt's
            raise UserError(f"sectors {part.first_lba}+{part.sectors} overlap the previous "
                            "partition or the table", f"partition {slot + 1}")
        previous_end = part.last_lba
    for slot, part in enumerate(table.partitions):
        where = f"partition {slot + 1}"
        if part.last_lba > 0xFFFFFFFF or not 0 < part.type <= 0xFF:
            raise UserError("past 2 TiB or without a type: needs a GPT", where)
        _ENTRY.pack_into(sector, _TABLE_OFFSET + 16 * slot, _BOOTABLE if part.bootable else 0,
                         _chs(part.first_lba), part.type, _chs(part.last_lba), part.first_lba,
                         part.sectors)
    sector[510:512] = b"\x55\xaa"
    return bytes(sector)


def parse_mbr(sector: bytes, where: str = "MBR") -> MbrTable:
    """Read a DOS table from the first sector; a GPT's protective MBR is refused."""
    if len(sector) < SECTOR or sector[510:512] != b"\x55\xaa":
        raise UserError("no DOS partition table (no 55 AA signature)", where)
    partitions = []
    for slot in range(MAX_PRIMARY):
        status, _, kind, _, first, count = _ENTRY.unpack_from(sector, _TABLE_OFFSET + 16 * slot)
        if kind == 0xEE:
            raise UserError("a GPT's protective MBR, not a DOS table", where)
        if kind == 0:
            continue
        partitions.append(MbrPartition(kind, first, count, status == _BOOTABLE))
    disk_id = int.from_bytes(sector[_DISK_ID_OFFSET:_DISK_ID_OFFSET + 4], "little")
    return MbrTable(disk_id, tuple(partitions))


def read_mbr(path: str) -> MbrTable:
    """The DOS table of a disk image file."""
    with open(path, "rb") as disk:
        return parse_mbr(disk.read(SECTOR), path)


def fat_partition_type(boot_sector: bytes) -> int:
    """The type byte for a FAT filesystem: FAT32 has no 16-bit FAT size (BPB_FATSz16 = 0)."""
    return FAT32_LBA if boot_sector[22:24] == b"\0\0" else FAT16_LBA


def mbr_partitions(spans: Sequence[tuple[int, int]], types: Sequence[int],
                   bootable: int | None) -> tuple[MbrPartition, ...]:
    """Entries for (first sector, sectors) spans; `bootable` is a 0-based index or None."""
    return tuple(MbrPartition(kind, first, count, index == bootable)
                 for index, ((first, count), kind) in enumerate(zip(spans, types, strict=True)))
