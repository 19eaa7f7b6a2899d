"""doit task of the block map beside the disk image, for `bmaptool copy` onto a card:

    ib_bmap     disk.img -> disk.img.bmap   (after ib_disk; rerun whenever disk.img was)

It depends on disk.img's record (`disk.img.parts.json`, rewritten by every ib_disk run) rather
than on disk.img itself, so doit never hashes hundreds of MiB that ib_disk has just written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ibtasks.config.model import Config
from ibtasks.formats.bmap import BLOCK_SIZE, map_image, render_bmap
from ibtasks.fsutil import write_atomic
from ibtasks.tasks.boot import keyed
from ibtasks.tasks.step import TaskDict, run_step


@dataclass(frozen=True)
class BmapInput:
    """ib_bmap: the disk image mapped and the block size in bytes."""

    image: Path
    block_size: int = BLOCK_SIZE


def bmap_path(image: str | Path) -> Path:
    """Where the block map of `image` goes: beside it, `<image>.bmap` (bmaptool's own name)."""
    return Path(f"{image}.bmap")


def write_bmap(part: BmapInput, out: str) -> None:
    """The block map of `part.image` (see ibtasks.formats.bmap), written atomically to `out`."""
    write_atomic(out, render_bmap(map_image(part.image, part.block_size)))


def bmap_task(config: Config, image: str) -> TaskDict:
    """ib_bmap for the disk image at `image` (the path ib_disk writes, with its record)."""
    part = BmapInput(Path(image))
    target = str(bmap_path(image))
    return {
        "basename": "ib_bmap",
        "doc": "the block map of the disk image, for bmaptool copy",
        "actions": [(run_step, [write_bmap, part, target])],
        "file_dep": [image + ".parts.json"],
        "targets": [target],
        "uptodate": keyed(part, config),
        "clean": True,
    }
