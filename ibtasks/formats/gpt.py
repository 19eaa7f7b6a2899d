"""GUID partition tables as bytes: build and parse, 512-byte sectors (UEFI spec 2.10, section 5.3).

Written in Python rather than driving sfdisk so the table is a pure function of the layout
(byte-identical to `sfdisk` given the same GUIDs and `first-lba: 34`) and costs no subprocess.
The disk image is assembled by `formats.disk_image`; this module only makes and reads the table.

Partition types: the original (`disk_image`, seed) typed every partition 8300 "Linux
filesystem" and named it `Linux<j>`. We keep the names and 8300 for ext4 partitions, but a FAT
boot partition is typed "Microsoft basic data" (what sgdisk calls 0700, as genimage and
systemd-repart do for vfat): U-Boot's `load` ignores the type, and with basic data a PC that
mounts the SD card shows the boot partition, so boot files can be edited there.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from dataclasses import dataclass
from typing import Any

from ibtasks.errors import UserError, hex_and_dec

SECTOR = 512
ENTRY_COUNT = 128
ENTRY_SIZE = 128
ENTRY_SECTORS = ENTRY_COUNT * ENTRY_SIZE // SECTOR  # 32
FIRST_USABLE_LBA = 2 + ENTRY_SECTORS  # 34: MBR, header, entries
BACKUP_SECTORS = ENTRY_SECTORS + 1  # backup entries and header at the end of the disk
HEADER_SIZE = 92
REVISION = 0x00010000

LINUX_FILESYSTEM = uuid.UUID("0FC63DAF-8483-4772-8E79-3D69D8477DE4")
BASIC_DATA = uuid.UUID("EBD0A0A2-B9E5-4433-87C0-68B6B72699C7")

# Namespace for GUIDs derived from a config (uuid5); fixed forever so images stay reproducible.
GUID_NAMESPACE = uuid.UUID("6d1b0c1e-5a0f-4c55-9d3e-2f6b3a1c8e47")

_HEADER = struct.Struct("<8sIIIIQQQQ16sQIII")
_ENTRY = struct.Struct("<16s16sQQQ72s")


@dataclass(frozen=True)
class GptPartition:
    """One partition entry; LBAs are inclusive, as in the on-disk format."""

    name: str
    type_guid: uuid.UUID
    unique_guid: uuid.UUID
    first_lba: int
    last_lba: int
    attributes: int = 0

    @property
    def sectors(self) -> int:
        return self.last_lba - self.first_lba + 1


@dataclass(frozen=True)
class GptTable:
    """A whole table: the disk's size in sectors, its GUID and its partitions in slot order."""

    total_sectors: int
    disk_guid: uuid.UUID
    partitions: tuple[GptPartition, ...]

    @property
    def last_usable_lba(self) -> int:
        return self.total_sectors - BACKUP_SECTORS - 1


def derive_guid(*parts: str) -> uuid.UUID:
    """A GUID that is a pure function of `parts` (for example the config path and a role)."""
    return uuid.uuid5(GUID_NAMESPACE, "\0".join(parts))


def _encode_name(name: str, where: str) -> bytes:
    encoded = name.encode("utf-16-le")
    if len(encoded) > 72:
        raise UserError(f"partition name {name!r} is longer than 36 UTF-16 code units", where)
    return encoded.ljust(72, b"\0")


def _check(table: GptTable) -> None:
    if len(table.partitions) > ENTRY_COUNT:
        raise UserError(f"{len(table.partitions)} partitions; a GPT holds at most {ENTRY_COUNT}")
    if table.total_sectors < FIRST_USABLE_LBA + BACKUP_SECTORS + 1:
        raise UserError(f"disk of {table.total_sectors} sectors is too small for a GPT")
    previous_end = FIRST_USABLE_LBA - 1
    # In disk order: entries need not be (disk-image puts entry 1, boot, last on the disk).
    for number, part in sorted(enumerate(table.partitions, start=1),
                               key=lambda item: item[1].first_lba):
        where = f"partition {number} ({part.name})"
        if part.first_lba <= previous_end or part.last_lba < part.first_lba:
            raise UserError(
                f"sectors {part.first_lba}-{part.last_lba} overlap the previous partition "
                f"or the table (first free sector {previous_end + 1})",
                where,
            )
        if part.last_lba > table.last_usable_lba:
            raise UserError(
                f"ends at sector {part.last_lba}, past the last usable sector "
                f"{table.last_usable_lba} of a "
                f"{hex_and_dec(table.total_sectors * SECTOR)}-byte disk",
                where,
            )
        previous_end = part.last_lba


def _entries(table: GptTable) -> bytes:
    out = bytearray(ENTRY_COUNT * ENTRY_SIZE)
    for slot, part in enumerate(table.partitions):
        name = _encode_name(part.name, f"partition {slot + 1}")
        _ENTRY.pack_into(
            out,
            slot * ENTRY_SIZE,
            part.type_guid.bytes_le,
            part.unique_guid.bytes_le,
            part.first_lba,
            part.last_lba,
            part.attributes,
            name,
        )
    return bytes(out)


def _header(
    table: GptTable, my_lba: int, alternate_lba: int, entries_lba: int, entries_crc: int
) -> bytes:
    def pack(crc: int) -> bytes:
        return _HEADER.pack(
            b"EFI PART",
            REVISION,
            HEADER_SIZE,
            crc,
            0,
            my_lba,
            alternate_lba,
            FIRST_USABLE_LBA,
            table.last_usable_lba,
            table.disk_guid.bytes_le,
            entries_lba,
            ENTRY_COUNT,
            ENTRY_SIZE,
            entries_crc,
        )

    crc = zlib.crc32(pack(0))
    return pack(crc).ljust(SECTOR, b"\0")


def _protective_mbr(total_sectors: int) -> bytes:
    mbr = bytearray(SECTOR)
    size = min(total_sectors - 1, 0xFFFFFFFF)
    # status, CHS first (0/0/2), type 0xEE, CHS last (saturated), first LBA 1, size
    mbr[446:462] = struct.pack("<B3sB3sII", 0, b"\x00\x02\x00", 0xEE, b"\xff\xff\xff", 1, size)
    mbr[510:512] = b"\x55\xaa"
    return bytes(mbr)


def build_gpt(table: GptTable) -> tuple[bytes, bytes]:
    """The bytes of a table: (sectors 0-33 for the start of the disk, 33 sectors for its end).

    The second part goes at byte `(total_sectors - 33) * 512`: backup entries, then the backup
    header in the last sector.
    """
    _check(table)
    entries = _entries(table)
    crc = zlib.crc32(entries)
    last = table.total_sectors - 1
    primary = _protective_mbr(table.total_sectors) + _header(table, 1, last, 2, crc) + entries
    backup = entries + _header(table, last, 1, last - ENTRY_SECTORS, crc)
    return primary, backup


def _parse_header(sector: bytes, where: str) -> tuple[Any, ...]:
    fields = _HEADER.unpack_from(sector)
    signature, _rev, size, crc = fields[:4]
    if signature != b"EFI PART" or size < HEADER_SIZE or size > SECTOR:
        raise UserError("no GPT header", where)
    check = bytearray(sector[:size])
    check[16:20] = b"\0\0\0\0"
    if zlib.crc32(check) != crc:
        raise UserError("GPT header CRC mismatch", where)
    return fields


def parse_gpt(primary: bytes, total_sectors: int, backup: bytes | None = None) -> GptTable:
    """Read a table from the first 34 sectors of a disk (and check the backup when given).

    `total_sectors` is the disk's size; the header must agree with it.
    """
    if len(primary) < FIRST_USABLE_LBA * SECTOR:
        raise UserError("shorter than 34 sectors", "GPT")
    if primary[510:512] != b"\x55\xaa" or primary[450] != 0xEE:
        raise UserError("no protective MBR", "GPT")
    fields = _parse_header(primary[SECTOR : 2 * SECTOR], "GPT primary header")
    my_lba, alternate, first_usable, last_usable, disk_guid = fields[5:10]
    entries_lba, count, entry_size, entries_crc = fields[10:]
    if my_lba != 1 or alternate != total_sectors - 1 or first_usable != FIRST_USABLE_LBA:
        raise UserError(
            f"header says LBA {my_lba}, backup {alternate}, first usable {first_usable}; "
            f"expected 1, {total_sectors - 1}, {FIRST_USABLE_LBA}",
            "GPT primary header",
        )
    if entries_lba != 2 or count != ENTRY_COUNT or entry_size != ENTRY_SIZE:
        raise UserError(
            f"unsupported entry array: LBA {entries_lba}, {count} x {entry_size}", "GPT"
        )
    entries = primary[2 * SECTOR : FIRST_USABLE_LBA * SECTOR]
    if zlib.crc32(entries) != entries_crc:
        raise UserError("partition entry array CRC mismatch", "GPT")
    partitions = []
    for slot in range(count):
        type_le, unique_le, first, last, attributes, name = _ENTRY.unpack_from(
            entries, slot * ENTRY_SIZE
        )
        if type_le == bytes(16):
            continue
        partitions.append(
            GptPartition(
                name=name.decode("utf-16-le").split("\0", 1)[0],
                type_guid=uuid.UUID(bytes_le=type_le),
                unique_guid=uuid.UUID(bytes_le=unique_le),
                first_lba=first,
                last_lba=last,
                attributes=attributes,
            )
        )
    table = GptTable(total_sectors, uuid.UUID(bytes_le=disk_guid), tuple(partitions))
    if last_usable != table.last_usable_lba:
        raise UserError(f"last usable LBA {last_usable}, expected {table.last_usable_lba}", "GPT")
    if backup is not None and backup != build_gpt(table)[1]:
        raise UserError("backup table differs from the primary", "GPT")
    return table


def read_gpt(path: str) -> GptTable:
    """Read and check both copies of the table of a disk image file."""
    with open(path, "rb") as disk:
        size = disk.seek(0, 2)
        if size % SECTOR:
            raise UserError(f"size {hex_and_dec(size)} is not a multiple of {SECTOR}", path)
        disk.seek(0)
        primary = disk.read(FIRST_USABLE_LBA * SECTOR)
        disk.seek(size - BACKUP_SECTORS * SECTOR)
        backup = disk.read(BACKUP_SECTORS * SECTOR)
    return parse_gpt(primary, size // SECTOR, backup)
