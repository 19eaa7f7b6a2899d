"""disk.img from a GPT and partition image files, updated in place and kept sparse.

Only partitions whose image file changed are rewritten: a record next to the disk
(`disk.img.parts.json`) holds the table's digest, the disk's identity and each image's
(size, mtime, inode) as copied. An image is replaced by rename (`write_atomic` or
`build_fat_image`), so a new image always has a new stamp. Copies skip holes (SEEK_DATA /
SEEK_HOLE) and use `os.copy_file_range`, so disk.img stays as sparse as its images.

A run never leaves a disk.img that a later run takes as complete: before the first byte is
written the record is deleted and disk.img is renamed to `disk.img.partial`; it gets its name
back, and a new record, only when every partition is written. Without a valid record the next
run writes the whole disk again.

Layout: first partition at sector 2048, each partition 1 MiB aligned and its image's size
rounded up to 1 MiB (unless a size is given), the disk ends 1 MiB after the last partition
(room for the 33-sector backup table, and a whole number of MiB, as boards and QEMU like).
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ibtasks.errors import UserError, hex_and_dec
from ibtasks.fsutil import write_atomic
from ibtasks.gpt import SECTOR, GptPartition, GptTable, build_gpt

MIB = 1024 * 1024
FIRST_LBA = 2048
ALIGN_SECTORS = MIB // SECTOR
RECORD_VERSION = 1

_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02


@dataclass(frozen=True)
class PartitionImage:
    """One partition: its GPT entry and the image file that fills it.

    `size` is the partition's size in bytes (a multiple of 1 MiB, at least the image's
    size); None means the image's size rounded up to 1 MiB.
    """

    name: str
    type_guid: uuid.UUID
    unique_guid: uuid.UUID
    image: Path
    size: int | None = None


@dataclass(frozen=True)
class DiskResult:
    """What `assemble_disk` did: the layout, and which partitions (1-based) it wrote."""

    path: Path
    table: GptTable
    written: tuple[int, ...]
    bytes_copied: int

    @property
    def size(self) -> int:
        return self.table.total_sectors * SECTOR


def _round_up(value: int, step: int) -> int:
    return -(-value // step) * step


def plan_disk(disk_guid: uuid.UUID, partitions: Sequence[PartitionImage]) -> GptTable:
    """The GPT for `partitions` in order, sized from their image files."""
    entries = []
    lba = FIRST_LBA
    for number, part in enumerate(partitions, start=1):
        try:
            image_size = os.stat(part.image).st_size
        except OSError as exc:
            raise UserError(
                f"partition {number} ({part.name}): {part.image}: {exc.strerror}"
            ) from exc
        size = part.size if part.size is not None else _round_up(max(image_size, 1), MIB)
        if size % MIB or size < image_size:
            raise UserError(
                f"partition {number} ({part.name}): size {hex_and_dec(size)} must be a multiple "
                f"of 1 MiB and hold its image {part.image} of {hex_and_dec(image_size)} bytes"
            )
        sectors = size // SECTOR
        entries.append(
            GptPartition(part.name, part.type_guid, part.unique_guid, lba, lba + sectors - 1)
        )
        lba = _round_up(lba + sectors, ALIGN_SECTORS)
    total = lba + ALIGN_SECTORS
    return GptTable(total, disk_guid, tuple(entries))


def _stamp(st: os.stat_result) -> dict[str, int]:
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino, "dev": st.st_dev}


def _load_record(record: Path, output: Path, table_digest: str) -> list[Any] | None:
    """The images' stamps of the last complete run, or None if disk.img is not that run's."""
    try:
        data = json.loads(record.read_text())
        if (
            data.get("version") == RECORD_VERSION
            and data.get("table") == table_digest
            and data.get("disk") == _stamp(os.stat(output))
        ):
            parts = data["parts"]
            return parts if isinstance(parts, list) else None
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def assemble_disk(
    output: str | os.PathLike[str], disk_guid: uuid.UUID, partitions: Sequence[PartitionImage]
) -> DiskResult:
    """Make `output` hold the GPT and every partition image, writing only what changed."""
    target = Path(output)
    table = plan_disk(disk_guid, partitions)
    primary, backup = build_gpt(table)
    digest = hashlib.sha256(primary + backup).hexdigest()
    record = target.with_name(target.name + ".parts.json")
    partial = target.with_name(target.name + ".partial")
    old = _load_record(record, target, digest)
    if old is not None and old == [_stamp(os.stat(part.image)) for part in partitions]:
        return DiskResult(target, table, (), 0)  # up to date: do not even touch it
    written: list[int] = []
    copied = 0
    try:
        record.unlink(missing_ok=True)
        if old is not None:
            os.replace(target, partial)
            fd = os.open(partial, os.O_RDWR)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            if old is None:  # an unchanged layout has the same table bytes already
                os.pwrite(fd, primary, 0)
            stamps = []
            for number, (part, entry) in enumerate(
                zip(partitions, table.partitions, strict=True), start=1
            ):
                stamp = _stamp(os.stat(part.image))
                stamps.append(stamp)
                if old is not None and number <= len(old) and old[number - 1] == stamp:
                    continue
                start = entry.first_lba * SECTOR
                # Updating in place: punch holes where the new image has none of its own
                # data, overwrite the rest (cheaper than freeing all blocks, then allocating).
                copied += _write_image(part.image, fd, start, stamp["size"], old is not None)
                if old is not None and entry.sectors * SECTOR > stamp["size"]:
                    _clear(fd, start + stamp["size"], entry.sectors * SECTOR - stamp["size"])
                written.append(number)
            if old is None:
                os.ftruncate(fd, table.total_sectors * SECTOR)
                os.pwrite(fd, backup, table.total_sectors * SECTOR - len(backup))
        finally:
            os.close(fd)
        os.replace(partial, target)
        body = {
            "version": RECORD_VERSION,
            "table": digest,
            "disk": _stamp(os.stat(target)),
            "parts": stamps,
        }
        write_atomic(record, json.dumps(body, indent=1).encode() + b"\n")
    except OSError as exc:
        partial.unlink(missing_ok=True)
        name = exc.filename or partial
        raise UserError(f"cannot write {target}: {name}: {exc.strerror}") from exc
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return DiskResult(target, table, tuple(written), copied)


def _write_image(image: Path, fd: int, offset: int, size: int, punch: bool) -> int:
    src = os.open(image, os.O_RDONLY)
    try:
        if os.fstat(src).st_size != size:
            raise UserError(f"{image} changed while disk.img was written; run again")
        return copy_sparse(src, fd, size, 0, offset, punch_holes=punch)
    finally:
        os.close(src)


def copy_sparse(
    src: int,
    dst: int,
    length: int,
    src_offset: int = 0,
    dst_offset: int = 0,
    *,
    punch_holes: bool = False,
) -> int:
    """Copy the data (not the holes) of `length` bytes between two files; return bytes copied.

    Under the source's holes the destination is left as it is (it must be zeros there, as in a
    fresh sparse file) or, with `punch_holes`, made a hole too.
    """
    end = src_offset + length
    position = src_offset
    copied = 0
    while position < end:
        try:
            data = min(os.lseek(src, position, os.SEEK_DATA), end)
        except OSError as exc:
            if exc.errno != errno.ENXIO:
                raise
            data = end  # only a hole is left
        if punch_holes and data > position:
            _clear(dst, dst_offset + (position - src_offset), data - position)
        if data >= end:
            break
        hole = min(os.lseek(src, data, os.SEEK_HOLE), end)
        at, to = data, dst_offset + (data - src_offset)
        while at < hole:
            done = os.copy_file_range(src, dst, hole - at, at, to)
            if done == 0:
                raise UserError("a source file shrank while it was being copied")
            at += done
            to += done
        copied += hole - data
        position = hole
    return copied


def _clear(fd: int, offset: int, length: int) -> None:
    """Turn a range of the disk back into a hole (zeros where the filesystem cannot)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fallocate = libc.fallocate
    fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    mode = _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE
    if fallocate(fd, mode, offset, length) == 0:
        return
    if ctypes.get_errno() not in (errno.EOPNOTSUPP, errno.ENOSYS):
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    zeros = bytes(MIB)
    for at in range(offset, offset + length, MIB):
        os.pwrite(fd, zeros[: min(MIB, offset + length - at)], at)
