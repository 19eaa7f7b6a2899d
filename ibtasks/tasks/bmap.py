"""doit task of the block map beside the disk image, for `bmaptool copy` onto a card:

    ib_bmap     disk.img -> disk.img.bmap   (after ib_disk; rerun whenever disk.img was)

It depends on disk.img's record (`disk.img.parts.json`, rewritten by every ib_disk run) rather
than on disk.img itself, so doit never hashes hundreds of MiB that ib_disk has just written.
Nor does the block map: its own record in the work folder (`bmap.json`) names the version of
disk.img it was made from (the disk record's generation); when ib_disk's record says which byte
spans it wrote since that version, ranges outside them keep their checksums and only the rest
is read (see `formats.disk_changes`), so a kernel that grows rehashes the boot partition only.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ibtasks.config.model import Config
from ibtasks.errors import UserError
from ibtasks.formats.bmap import (
    BLOCK_SIZE,
    BlockMap,
    map_image,
    parse_bmap,
    render_bmap,
    reusable_checksums,
)
from ibtasks.formats.disk_changes import Span
from ibtasks.formats.disk_image import read_disk_record
from ibtasks.fsutil import write_atomic
from ibtasks.tasks.boot import keyed
from ibtasks.tasks.step import TaskDict, run_step

RECORD_VERSION = 1


@dataclass(frozen=True)
class BmapInput:
    """ib_bmap: the disk image mapped, the block map's record in the work folder and the
    block size in bytes."""

    image: Path
    record: Path
    block_size: int = BLOCK_SIZE


def bmap_path(image: str | Path) -> Path:
    """Where the block map of `image` goes: beside it, `<image>.bmap` (bmaptool's own name)."""
    return Path(f"{image}.bmap")


def _unchanged_since(part: BmapInput, out: str, disk: dict[str, Any] | None
                     ) -> tuple[BlockMap, list[Span]] | None:
    """(the block map at `out`, the byte spans of disk.img written since it was made) when its
    record and `disk`, disk.img's record, make that known, else None (everything is hashed)."""
    try:
        record = json.loads(part.record.read_text())
        data = Path(out).read_bytes()
        if (disk is None or not isinstance(record, dict)
                or record.get("version") != RECORD_VERSION
                or record.get("bmap") != hashlib.sha256(data).hexdigest()):
            return None
        previous = parse_bmap(data)
    except (OSError, ValueError, UserError):
        return None
    if previous.block_size != part.block_size:
        return None
    if disk.get("generation") == record.get("generation"):
        return previous, []
    changed = disk.get("changed")
    if disk.get("previous") != record.get("generation") or not isinstance(changed, list):
        return None
    return previous, [(int(offset), int(length)) for offset, length in changed]


def write_bmap(part: BmapInput, out: str) -> None:
    """The block map of `part.image` (see ibtasks.formats.bmap), written atomically to `out`,
    then its record (the disk's generation it maps, the map's SHA-256) to `part.record`."""
    disk = read_disk_record(part.image)
    known = _unchanged_since(part, out, disk)
    reuse = reusable_checksums(*known) if known is not None else None
    part.record.unlink(missing_ok=True)
    text = render_bmap(map_image(part.image, part.block_size, reuse))
    write_atomic(out, text)
    if disk is not None:
        body = {"version": RECORD_VERSION, "generation": disk.get("generation"),
                "bmap": hashlib.sha256(text).hexdigest()}
        write_atomic(part.record, json.dumps(body).encode() + b"\n")


def bmap_task(config: Config, image: str, record: Path) -> TaskDict:
    """ib_bmap for the disk image at `image` (the path ib_disk writes, with its record);
    `record` is the block map's own record, in the work folder."""
    part = BmapInput(Path(image), record)
    target = str(bmap_path(image))
    return {
        "basename": "ib_bmap",
        "doc": "the block map of the disk image, for bmaptool copy",
        "actions": [(run_step, [write_bmap, part, target])],
        "file_dep": [image + ".parts.json"],
        "targets": [target, str(record)],
        "uptodate": keyed(part, config),
        "clean": True,
    }
