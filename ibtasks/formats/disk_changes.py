"""Change records: which byte ranges of an image file changed since an earlier generation of
it, so that whoever copies or hashes the image can redo only those ranges.

A writer that updates an image in place gives each version a generation token (a fresh UUID)
and records, beside or inside its own record, the generation before and the byte ranges it
rewrote (offset, length in bytes); None means anything may have changed. A record is stamped
with the image's (size, mtime, inode, device) as written, so it is ignored once anyone else
changes the file. Used by the boot partition's in-place FAT update (`<image>.changes.json`,
read by the disk assembly) and by the disk assembly itself (in `disk.img.parts.json`, read by
the block map).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ibtasks.fsutil import write_atomic

CHANGES_VERSION = 1

Span = tuple[int, int]  # (offset, length) in bytes


def file_stamp(st: os.stat_result) -> dict[str, int]:
    """The identity of a file as written: size (bytes), mtime (ns), inode and device."""
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino, "dev": st.st_dev}


def changes_path(image: str | os.PathLike[str]) -> Path:
    """Where a partition builder records the ranges it rewrote in `image`."""
    return Path(f"{os.fspath(image)}.changes.json")


def new_generation() -> str:
    """A fresh generation token: unique, so no stale list can match it by accident."""
    return uuid.uuid4().hex


def write_changes(
    image: Path, generation: str, previous: str | None, ranges: Sequence[tuple[int, int]] | None
) -> None:
    """Say that `image` is now `generation`, and differs from `previous` only in `ranges`.

    `ranges` None (or `previous` None) means everything may have changed. Written after the
    image, stamped with its (size, mtime, inode), so it is ignored once the image changes again.
    """
    body = {
        "version": CHANGES_VERSION,
        "generation": generation,
        "previous": previous if ranges is not None else None,
        "image": file_stamp(os.stat(image)),
        "ranges": [[int(o), int(n)] for o, n in ranges] if ranges is not None else None,
    }
    write_atomic(changes_path(image), json.dumps(body).encode() + b"\n")


def read_changes(image: str | os.PathLike[str], st: os.stat_result | None = None) -> Any:
    """The changes record of `image` if it describes the image as it is now, else None."""
    try:
        data = json.loads(changes_path(image).read_text())
        current = st if st is not None else os.stat(image)
        if (
            isinstance(data, dict)
            and data.get("version") == CHANGES_VERSION
            and isinstance(data.get("generation"), str)
            and data.get("image") == file_stamp(current)
        ):
            return data
    except (OSError, ValueError):
        pass
    return None


def part_stamp(image: Path) -> tuple[dict[str, Any], Any]:
    """(`image`'s file stamp with its generation (None without a valid changes record), the
    changes record or None)."""
    st = os.stat(image)
    changes = read_changes(image, st)
    stamp: dict[str, Any] = dict(file_stamp(st))
    stamp["generation"] = changes["generation"] if changes else None
    return stamp, changes


def changed_ranges(
    changes: Any, old: dict[str, Any] | None, stamp: dict[str, Any]
) -> list[tuple[int, int]] | None:
    """The (offset, length) byte ranges of an image to copy, given its changes record, the
    `old` stamp of the copy already made and its `stamp` now: None (copy it whole) unless the
    copy holds exactly the generation the ranges were computed against."""
    if not changes or old is None or changes.get("previous") is None:
        return None
    if old.get("generation") != changes["previous"] or old.get("size") != stamp["size"]:
        return None
    ranges = changes.get("ranges")
    if not isinstance(ranges, list):
        return None
    out = []
    for item in ranges:
        if (
            not isinstance(item, list)
            or len(item) != 2
            or not all(isinstance(v, int) and v >= 0 for v in item)
            or item[0] + item[1] > stamp["size"]
        ):
            return None
        out.append((item[0], item[1]))
    return out


def outside(kept: Sequence[Span], size: int) -> list[Span]:
    """The spans of [0, `size`) bytes not covered by `kept`, in order."""
    out: list[Span] = []
    at = 0
    for offset, length in sorted(kept):
        if offset > at:
            out.append((at, min(offset, size) - at))
        at = max(at, offset + length)
    if size > at:
        out.append((at, size - at))
    return [span for span in out if span[1] > 0]


def touches(offset: int, length: int, changed: Sequence[Span]) -> bool:
    """Whether the `length` bytes at `offset` overlap any span of `changed`."""
    return any(start < offset + length and offset < start + size for start, size in changed)
