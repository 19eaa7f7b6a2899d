"""Update a FAT boot image in place when only file contents changed, else build it afresh.

A manifest next to the image (`<image>.manifest.json`) records the build's parameters, the
image's (size, mtime, inode), and for every file its source's (size, mtime_ns), its clusters
and the offset of its directory entry. When the paths, parameters and image size are the same
and every file needs the same number of clusters as before, a fresh build would allocate every
cluster exactly where it is (pyfatfs allocates in file order, first free cluster first, and
the directories' sizes depend only on the names), so rewriting the changed files' clusters
(the tail of the last cluster zeroed) and their entries' size field gives the fresh build's
bytes. Anything else (a file that needs more or fewer clusters, new or removed files, another
epoch, label or volume id, a missing or unreadable manifest) is a full build.

Crash safety: the manifest and the changes record are deleted before the first byte is written
and written again only after the last, so an interrupted update is followed by a full build.
The ranges rewritten go to `<image>.changes.json` (see `disk_changes.write_changes`), from which
`disk.assemble_disk` copies only those ranges into disk.img.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ibtasks.errors import UserError
from ibtasks.formats.disk_changes import changes_path, new_generation, read_changes, write_changes
from ibtasks.formats.fat import (
    FAT16_MAX,
    BootFile,
    boot_partition_size,
    build_fat_image,
    check_boot_files,
    check_label,
    fat_file_extents,
)
from ibtasks.formats.sparse_copy import clear_range, copy_sparse
from ibtasks.fsutil import write_atomic

MANIFEST_VERSION = 1
SIZE_FIELD = 28  # offset of DIR_FileSize in a 32-byte directory entry (fatgen103)


@dataclass(frozen=True)
class FatWrite:
    """What `write_fat_image` did: an update in place (and the ranges it wrote) or a build."""

    path: Path
    in_place: bool
    reason: str  # why a full build was needed; "" after an update in place
    ranges: tuple[tuple[int, int], ...]  # (offset, length) written in place; () after a build
    generation: str


def manifest_path(image: str | os.PathLike[str]) -> Path:
    return Path(f"{os.fspath(image)}.manifest.json")


def write_fat_image(
    output: str | os.PathLike[str],
    files: Sequence[BootFile],
    *,
    volume_id: int,
    label: str,
    epoch: int,
    partition_start_lba: int = 2048,
) -> FatWrite:
    """Make `output` the FAT image of `files`, as `fat.build_fat_image` would, writing only
    the changed files' clusters when the previous image allows it."""
    target = Path(output)
    unique, params, sources = _describe(files, volume_id, label, epoch, partition_start_lba)
    plan = _plan_update(target, params, sources)
    if isinstance(plan, str):
        return _build(target, unique, sources, params, plan)
    manifest, changed = plan
    return _update(target, manifest, sources, changed)


Source = tuple[str, str, int, int]  # path in the image, source file, its size and mtime_ns


def _describe(files: Sequence[BootFile], volume_id: int, label: str, epoch: int,
              partition_start_lba: int
              ) -> tuple[tuple[BootFile, ...], dict[str, Any], list[Source]]:
    """The files (checked), the image's parameters and each source's stat, for a manifest."""
    unique = check_boot_files(files)
    stats = []
    for item in unique:
        try:
            stats.append(os.stat(item.source))
        except OSError as exc:
            raise UserError(
                f"boot file {item.path}: cannot read {item.source}: {exc.strerror}"
            ) from exc
    size = boot_partition_size(sum(st.st_size for st in stats))
    params = {
        "volume_id": volume_id,
        "label": check_label(label),
        "epoch": epoch,
        "partition_start_lba": partition_start_lba,
        "size": size,
        "fat_bits": 16 if size <= FAT16_MAX else 32,
    }
    sources = [(item.path, str(item.source), st.st_size, st.st_mtime_ns)
               for item, st in zip(unique, stats, strict=True)]
    return unique, params, sources


def adopt_fat_image(
    output: str | os.PathLike[str],
    files: Sequence[BootFile],
    *,
    volume_id: int,
    label: str,
    epoch: int,
    partition_start_lba: int = 2048,
) -> bool:
    """Write the update manifest of `output`, an image `write_fat_image` made of these `files`
    and parameters on another machine (a shared cache's hit: same inputs, same bytes), and a
    changes record saying all of it is new; the next change of a file's content is then an
    update in place, as after a local build. Each file's clusters and directory entry are
    read from the image itself (pyfatfs, and the directory reader below); True when done.
    When the image does not hold the files at their sizes (False), the manifest is left
    unreadable: the next change is a full build. Raises UserError when a source file cannot
    be read."""
    target = Path(output)
    _, params, sources = _describe(files, volume_id, label, epoch, partition_start_lba)
    _forget(target)
    generation = new_generation()
    write_changes(target, generation, None, None)
    cluster_bytes, placed = fat_file_extents(target, [path for path, *_ in sources])
    with open(target, "rb") as handle:
        entries = directory_entry_offsets(handle)
    records = []
    for path, source, size, mtime_ns in sources:
        first, runs, stored = placed.get(path, (0, (), -1))
        if stored != size or (size and first not in entries):
            write_atomic(manifest_path(target), b"{}\n")
            return False
        records.append({"path": path, "source": source, "size": size, "mtime_ns": mtime_ns,
                        "runs": [list(run) for run in runs],
                        "entry": entries[first] if size else None})
    _write_manifest(target, params, cluster_bytes, records, generation)
    return True


def _plan_update(
    target: Path, params: dict[str, Any], sources: Sequence[tuple[str, str, int, int]]
) -> tuple[dict[str, Any], list[int]] | str:
    """The manifest and the indexes of the changed files, or why an update cannot be done."""
    try:
        manifest = json.loads(manifest_path(target).read_text())
        if not isinstance(manifest, dict) or manifest.get("version") != MANIFEST_VERSION:
            return "manifest of another version"
        if manifest["image"] != _stamp(os.stat(target)):
            return "the image changed since its manifest was written"
        if manifest["params"] != params:
            return "size, label, volume id, epoch or start sector changed"
        old = manifest["files"]
        if [(f["path"], f["source"]) for f in old] != [s[:2] for s in sources]:
            return "the list of files changed"
        cluster_bytes = manifest["cluster_bytes"]
        changed = []
        for index, (path, _, size, mtime_ns) in enumerate(sources):
            had = sum(length for _, length in old[index]["runs"]) // cluster_bytes
            if -(-size // cluster_bytes) != had:
                return f"{path} now needs {-(-size // cluster_bytes)} clusters, had {had}"
            if (size, mtime_ns) != (old[index]["size"], old[index]["mtime_ns"]):
                changed.append(index)
    except FileNotFoundError:
        return "no previous image or manifest"
    except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError):
        return "unreadable manifest"
    return manifest, changed


def _stamp(st: os.stat_result) -> dict[str, int]:
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino}


def _forget(target: Path) -> None:
    """Make the image untrusted (for updates and for disk.img's range copies) before writing."""
    manifest_path(target).unlink(missing_ok=True)
    changes_path(target).unlink(missing_ok=True)


def _build(
    target: Path,
    files: Sequence[BootFile],
    sources: Sequence[tuple[str, str, int, int]],
    params: dict[str, Any],
    reason: str,
) -> FatWrite:
    try:
        _forget(target)
    except OSError as exc:
        raise UserError(f"cannot write {target}: {exc.strerror}") from exc
    image = build_fat_image(target, files, volume_id=params["volume_id"], label=params["label"],
                            epoch=params["epoch"],
                            partition_start_lba=params["partition_start_lba"])
    with open(target, "rb") as handle:
        entries = directory_entry_offsets(handle)
    extents = {extent.path: extent for extent in image.extents}
    records = []
    for path, source, size, mtime_ns in sources:
        extent = extents.get(path)
        records.append({
            "path": path, "source": source, "size": size, "mtime_ns": mtime_ns,
            "runs": [list(run) for run in extent.runs] if extent else [],
            "entry": entries[extent.first_cluster] if extent else None,
        })
    generation = new_generation()
    write_changes(target, generation, None, None)
    _write_manifest(target, params, image.cluster_bytes, records, generation)
    return FatWrite(target, False, reason, (), generation)


def _update(
    target: Path,
    manifest: dict[str, Any],
    sources: Sequence[tuple[str, str, int, int]],
    changed: Sequence[int],
) -> FatWrite:
    records = manifest["files"]
    old_generation = read_changes(target)
    previous = old_generation["generation"] if old_generation else None
    ranges: list[tuple[int, int]] = []
    try:
        _forget(target)
        out = os.open(target, os.O_WRONLY)
        try:
            for index in changed:
                path, source, size, mtime_ns = sources[index]
                record = records[index]
                ranges += _rewrite_file(out, source, size, record["runs"], path)
                if record["entry"] is not None:
                    os.pwrite(out, struct.pack("<I", size), record["entry"] + SIZE_FIELD)
                    ranges.append((record["entry"] + SIZE_FIELD, 4))
                record["size"], record["mtime_ns"] = size, mtime_ns
        finally:
            os.close(out)
    except OSError as exc:
        raise UserError(f"cannot update {target}: {exc.filename or target}: {exc.strerror}"
                        ) from exc
    merged = _merge(ranges)
    generation = new_generation()
    write_changes(target, generation, previous, merged)
    _write_manifest(target, manifest["params"], manifest["cluster_bytes"], records, generation)
    return FatWrite(target, True, "", tuple(merged), generation)


def _rewrite_file(
    out: int, source: str, size: int, runs: Sequence[Sequence[int]], path: str
) -> list[tuple[int, int]]:
    """Copy `source` over its clusters (holes punched, the last cluster's tail zeroed)."""
    src = os.open(source, os.O_RDONLY)
    try:
        if os.fstat(src).st_size != size:
            raise UserError(f"boot file {path}: {source} changed while it was copied; run again")
        done = 0
        written = []
        for address, length in runs:
            part = min(size - done, length)
            if part:
                copy_sparse(src, out, part, done, address, punch_holes=True)
            if part < length:
                clear_range(out, address + part, length - part)
            done += part
            written.append((address, length))
        return written
    finally:
        os.close(src)


def _merge(ranges: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[list[int]] = []
    for start, length in sorted(ranges):
        if merged and start <= merged[-1][0] + merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], start + length - merged[-1][0])
        else:
            merged.append([start, length])
    return [(start, length) for start, length in merged]


def _write_manifest(target: Path, params: dict[str, Any], cluster_bytes: int,
                    records: list[dict[str, Any]], generation: str) -> None:
    body = {
        "version": MANIFEST_VERSION,
        "params": params,
        "cluster_bytes": cluster_bytes,
        "image": _stamp(os.stat(target)),
        "generation": generation,
        "files": records,
    }
    write_atomic(manifest_path(target), json.dumps(body).encode() + b"\n")


def directory_entry_offsets(image: BinaryIO) -> dict[int, int]:
    """First cluster -> byte offset of its short directory entry, for every non-empty file.

    A small reader of FAT16/32 directories (fatgen103): the root region or chain, then every
    subdirectory's cluster chain; long-name, deleted, volume-label and dot entries skipped.
    """
    image.seek(0)
    boot = image.read(512)
    sector, per_cluster, reserved, fats, root_entries = struct.unpack_from("<HBHBH", boot, 11)
    fat_sectors = struct.unpack_from("<H", boot, 22)[0]
    fat32 = fat_sectors == 0
    if fat32:
        fat_sectors = struct.unpack_from("<I", boot, 36)[0]
    root_start = (reserved + fats * fat_sectors) * sector
    root_bytes = root_entries * 32
    data_start = root_start + -(-root_bytes // sector) * sector
    cluster_bytes = sector * per_cluster
    image.seek(reserved * sector)
    fat = image.read(fat_sectors * sector)
    width, end = (4, 0x0FFFFFF8) if fat32 else (2, 0xFFF8)
    limit = len(fat) // width

    def chain(cluster: int) -> list[tuple[int, int]]:
        regions: list[tuple[int, int]] = []
        while 2 <= cluster < end and len(regions) < limit:
            regions.append((data_start + (cluster - 2) * cluster_bytes, cluster_bytes))
            value = int.from_bytes(fat[cluster * width:(cluster + 1) * width], "little")
            cluster = value & 0x0FFFFFFF if fat32 else value
        return regions

    found: dict[int, int] = {}
    pending = [chain(struct.unpack_from("<I", boot, 44)[0]) if fat32
               else [(root_start, root_bytes)]]
    seen_dirs: set[int] = set()
    while pending:
        for offset, length in pending.pop():
            image.seek(offset)
            block = image.read(length)
            for at in range(0, len(block) - 31, 32):
                entry = block[at:at + 32]
                if entry[0] == 0:
                    break
                attributes = entry[11]
                if entry[0] == 0xE5 or attributes & 0x0F == 0x0F or attributes & 0x08:
                    continue
                if entry[:2] in (b".\x20", b"..") and entry[0:1] == b".":
                    continue
                first = struct.unpack_from("<H", entry, 26)[0]
                if fat32:
                    first |= struct.unpack_from("<H", entry, 20)[0] << 16
                if attributes & 0x10:
                    if first >= 2 and first not in seen_dirs:
                        seen_dirs.add(first)
                        pending.append(chain(first))
                elif first >= 2:
                    found[first] = offset + at
    return found
