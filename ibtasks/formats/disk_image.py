"""disk.img from a GPT and partition image files, updated in place and kept sparse.

Only partitions whose image file changed are rewritten: a record next to the disk
(`disk.img.parts.json`) holds the table's digest, the disk's identity and each image's
(size, mtime, inode) as copied. An image is replaced by rename (`write_atomic` or
`build_fat_image`), so a new image always has a new stamp. Copies skip holes (SEEK_DATA /
SEEK_HOLE) and use `os.copy_file_range`, so disk.img stays as sparse as its images.

A partition builder that updates its image in place (`fat_update`) says which byte ranges it
rewrote in `<image>.changes.json`, with the generation it wrote and the one the ranges were
computed against; when disk.img's record holds that earlier generation for the partition, only
those ranges are copied, otherwise the whole partition, so a stale list is never applied.

A run never leaves a disk.img that a later run takes as complete: before the first byte is
written the record is deleted and disk.img is renamed to a temporary beside it (created
exclusively under an unpredictable name, `.disk.img.ibtmp-*`, see `fsutil.make_temp_beside`);
it gets its name back, and a new record, only when every partition is written. Without a valid
record the next run writes the whole disk again.

Layout: first partition at sector 2048 (partitions marked `last`, the boot partition, after the
others, so its size never moves them), each partition 1 MiB aligned and its image's size
rounded up to 1 MiB (unless a size is given), the disk ends 1 MiB after the last partition
(room for the 33-sector backup table, and a whole number of MiB, as boards and QEMU like);
with `power_of_two` (disk-image -a) the disk's size in MiB is rounded up to a power of two.
A DOS table (`ibtasks.formats.mbr`) uses the same layout, with only the first sector as its table.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ibtasks.errors import UserError, hex_and_dec
from ibtasks.formats.disk_changes import (
    Span,
    changed_ranges,
    file_stamp,
    new_generation,
    outside,
    part_stamp,
)
from ibtasks.formats.gpt import SECTOR, GptPartition, GptTable, build_gpt
from ibtasks.formats.mbr import LINUX, MbrTable, build_mbr, derive_disk_id, mbr_partitions
from ibtasks.formats.sparse_copy import clear_range, copy_sparse
from ibtasks.fsutil import make_temp_beside, write_atomic

MIB = 1024 * 1024
FIRST_LBA = 2048
ALIGN_SECTORS = MIB // SECTOR
RECORD_VERSION = 4



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
    mbr_type: int = LINUX  # its type byte in a DOS table
    bootable: bool = False  # its DOS boot flag
    last: bool = False  # placed after the others on the disk (its table entry keeps its number)


@dataclass(frozen=True)
class DiskResult:
    """What `assemble_disk` did: the layout, and which partitions (1-based) it wrote."""

    path: Path
    table: GptTable
    written: tuple[int, ...]
    bytes_copied: int
    ranged: tuple[int, ...] = ()  # of `written`: those updated by their changed ranges only

    @property
    def size(self) -> int:
        return self.table.total_sectors * SECTOR


def _round_up(value: int, step: int) -> int:
    return -(-value // step) * step


def plan_disk(
    disk_guid: uuid.UUID, partitions: Sequence[PartitionImage], power_of_two: bool = False
) -> GptTable:
    """The GPT for `partitions` in order, sized from their image files; on the disk those
    marked `last` come after the others."""
    entries: dict[int, GptPartition] = {}
    lba = FIRST_LBA
    placed = sorted(enumerate(partitions, start=1), key=lambda item: item[1].last)
    for number, part in placed:
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
        entries[number] = GptPartition(part.name, part.type_guid, part.unique_guid, lba,
                                       lba + sectors - 1)
        lba = _round_up(lba + sectors, ALIGN_SECTORS)
    total = lba + ALIGN_SECTORS
    if power_of_two:
        total = power_of_two_mib(total * SECTOR) // SECTOR
    return GptTable(total, disk_guid, tuple(entries[n] for n in sorted(entries)))


def power_of_two_mib(size: int) -> int:
    """`size` rounded up to a whole number of MiB that is a power of two (upstream's -a)."""
    mib = max(1, _round_up(size, MIB) // MIB)
    return (1 << (mib - 1).bit_length()) * MIB


def build_table(
    table: GptTable, partitions: Sequence[PartitionImage], table_format: str
) -> tuple[bytes, bytes]:
    """(bytes for the start of the disk, bytes for its end) of a GPT or a DOS table."""
    if table_format == "gpt":
        return build_gpt(table)
    bootable = next((i for i, p in enumerate(partitions) if p.bootable), None)
    entries = mbr_partitions([(e.first_lba, e.sectors) for e in table.partitions],
                             [p.mbr_type for p in partitions], bootable)
    return build_mbr(MbrTable(derive_disk_id(table.disk_guid), entries)), b""


def _load_record(record: Path, output: Path) -> dict[str, Any] | None:
    """The last complete run's record (table digest, images' stamps and places) if disk.img is
    still the disk that run wrote, else None."""
    try:
        data = json.loads(record.read_text())
        if (
            data.get("version") == RECORD_VERSION
            and data.get("disk") == file_stamp(os.stat(output))
            and isinstance(data.get("parts"), list)
            and isinstance(data.get("places"), list)
        ):
            return data  # type: ignore[no-any-return]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    return None


def read_disk_record(image: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The record the last complete `assemble_disk` left beside `image` (`<image>.parts.json`),
    if `image` is still the disk it wrote, else None. Its `generation` names this version of
    the disk; `previous` the one before and `changed` the (offset, length) byte spans written
    since (None: anything may have changed; see `disk_changes`)."""
    target = Path(image)
    return _load_record(target.with_name(target.name + ".parts.json"), target)


def assemble_disk(
    output: str | os.PathLike[str],
    disk_guid: uuid.UUID,
    partitions: Sequence[PartitionImage],
    table_format: str = "gpt",
    power_of_two: bool = False,
) -> DiskResult:
    """Make `output` hold the table (`gpt` or `dos`) and every partition image, writing only
    what changed: a partition whose image and place on the disk are as last written is not
    copied again, also when the table changed (a boot partition that grew)."""
    target = Path(output)
    table = plan_disk(disk_guid, partitions, power_of_two)
    primary, backup = build_table(table, partitions, table_format)
    # The size too: a DOS table does not hold it, and -a changes it.
    digest = hashlib.sha256(primary + backup + b"%d" % table.total_sectors).hexdigest()
    record = target.with_name(target.name + ".parts.json")
    prev = _load_record(record, target)
    same = prev is not None and prev.get("table") == digest
    old: list[Any] | None = prev["parts"] if prev is not None else None
    places = [[entry.first_lba, entry.sectors] for entry in table.partitions]
    if same and old == [part_stamp(part.image)[0] for part in partitions]:
        return DiskResult(target, table, (), 0)  # up to date: do not even touch it
    total = table.total_sectors * SECTOR
    written: list[int] = []
    ranged: list[int] = []
    copied = 0
    partial: Path | None = None
    try:
        record.unlink(missing_ok=True)
        # The temporary is ours (O_EXCL, unpredictable name): a symlink planted at any name
        # we could have guessed is never followed.
        fd, partial = make_temp_beside(target)
        if prev is not None:
            os.close(fd)
            os.replace(target, partial)  # the disk keeps its blocks: updated in place
            fd = os.open(partial, os.O_RDWR | os.O_NOFOLLOW)
        try:
            stamps = [part_stamp(part.image) for part in partitions]
            kept = [n for n, (stamp, _) in enumerate(stamps)
                    if old is not None and n < len(old) and old[n] == stamp
                    and n < len(prev["places"]) and prev["places"][n] == places[n]]  # type: ignore[index]
            changed: list[Span] | None = None if prev is None else []
            if not same:  # a new layout: only unchanged partitions in their old place stay
                os.ftruncate(fd, total)
                if prev is not None:
                    changed = outside([(places[n][0] * SECTOR, places[n][1] * SECTOR)
                                       for n in kept], total)
                    for offset, length in changed:
                        clear_range(fd, offset, length)
                os.pwrite(fd, primary, 0)
            for number, (part, entry) in enumerate(
                zip(partitions, table.partitions, strict=True), start=1
            ):
                stamp, changes = stamps[number - 1]
                if number - 1 in kept:
                    continue
                before = old[number - 1] if same and old is not None else None
                start = entry.first_lba * SECTOR
                written.append(number)
                ranges = changed_ranges(changes, before, stamp)
                if ranges is not None:
                    copied += _write_ranges(part.image, fd, start, stamp["size"], ranges)
                    ranged.append(number)
                    if same and changed is not None:
                        changed += [(start + at, length) for at, length in ranges]
                    continue
                if same and changed is not None:
                    changed.append((start, entry.sectors * SECTOR))
                # Updating in place: punch holes where the new image has none of its own
                # data, overwrite the rest (cheaper than freeing all blocks, then allocating).
                copied += _write_image(part.image, fd, start, stamp["size"], same)
                if same and entry.sectors * SECTOR > stamp["size"]:
                    clear_range(fd, start + stamp["size"], entry.sectors * SECTOR - stamp["size"])
            if not same:
                os.pwrite(fd, backup, total - len(backup))
            os.fchmod(fd, 0o644)
        finally:
            os.close(fd)
        os.replace(partial, target)
        partial = None
        body = {
            "version": RECORD_VERSION,
            "table": digest,
            "disk": file_stamp(os.stat(target)),
            "parts": [stamp for stamp, _ in stamps],
            "places": places,
            "generation": new_generation(),
            "previous": prev.get("generation") if prev is not None else None,
            "changed": [list(span) for span in changed] if changed is not None else None,
        }
        write_atomic(record, json.dumps(body, indent=1).encode() + b"\n")
    except OSError as exc:
        if partial is not None:
            partial.unlink(missing_ok=True)
        name = exc.filename or partial or target
        raise UserError(f"cannot write {target}: {name}: {exc.strerror}") from exc
    except BaseException:
        if partial is not None:
            partial.unlink(missing_ok=True)
        raise
    return DiskResult(target, table, tuple(written), copied, tuple(ranged))


def _write_image(image: Path, fd: int, offset: int, size: int, punch: bool) -> int:
    src = os.open(image, os.O_RDONLY)
    try:
        if os.fstat(src).st_size != size:
            raise UserError(f"{image} changed while disk.img was written; run again")
        return copy_sparse(src, fd, size, 0, offset, punch_holes=punch)
    finally:
        os.close(src)


def _write_ranges(
    image: Path, fd: int, offset: int, size: int, ranges: Sequence[tuple[int, int]]
) -> int:
    src = os.open(image, os.O_RDONLY)
    try:
        if os.fstat(src).st_size != size:
            raise UserError(f"{image} changed while disk.img was written; run again")
        return sum(
            copy_sparse(src, fd, length, at, offset + at, punch_holes=True)
            for at, length in ranges
        )
    finally:
        os.close(src)
