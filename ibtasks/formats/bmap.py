"""The block map of a disk image (`disk.img.bmap`): the XML that bmap-tools' `bmaptool copy`
reads to write only the blocks that hold data onto an SD card.

Format version 2.0, as bmap-tools 3.6 (`bmaptools/BmapCreate.py`) writes it: the image size in
bytes, the block size (4096), the number of blocks, the number of mapped blocks, the checksum
type (`sha256`), the checksum of the bmap file itself (computed with its own value written as
64 ASCII zeros) and the mapped ranges `<Range chksum="...">first-last</Range>` (block numbers,
inclusive; one number for a range of one block), each with the SHA-256 of its bytes. A block is
mapped when any of its bytes is data to the file system (`SEEK_DATA`/`SEEK_HOLE`), as bmaptool's
own `Filemap` decides; blocks inside holes are left out and read as zeros on the card only if it
was erased, which is what the flash command's `bmaptool copy` expects of a sparse image.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from ibtasks.errors import UserError
from ibtasks.formats.disk_changes import Span, touches

BMAP_VERSION = "2.0"
BLOCK_SIZE = 4096  # bytes, bmaptool's default and the page size of the boards it writes to
CHECKSUM_TYPE = "sha256"
_CHECKSUM_ZEROS = "0" * 64
_READ_CHUNK = 1 << 20


@dataclass(frozen=True)
class BlockMap:
    """A block map: image size and block size in bytes, and each mapped range as
    (first block, last block, SHA-256 of its bytes in hex)."""

    image_size: int
    block_size: int
    ranges: tuple[tuple[int, int, str], ...]

    @property
    def blocks_count(self) -> int:
        """Blocks in the image, the last one possibly partial."""
        return -(-self.image_size // self.block_size)

    @property
    def mapped_blocks_count(self) -> int:
        """Blocks inside the mapped ranges."""
        return sum(last - first + 1 for first, last, _ in self.ranges)


def data_ranges(fd: int, size: int, block_size: int = BLOCK_SIZE) -> Iterator[tuple[int, int]]:
    """The blocks of the open file `fd` (`size` bytes) that hold data, as inclusive
    (first, last) block numbers, adjacent ranges joined. Uses SEEK_DATA/SEEK_HOLE; a file
    system without them reports the whole file as data."""
    position = 0
    pending: tuple[int, int] | None = None
    while position < size:
        try:
            data = os.lseek(fd, position, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only a hole up to the end
                break
            raise
        hole = min(os.lseek(fd, data, os.SEEK_HOLE), size)
        first, last = data // block_size, (hole - 1) // block_size
        if pending is not None and first <= pending[1] + 1:
            pending = (pending[0], max(pending[1], last))
        else:
            if pending is not None:
                yield pending
            pending = (first, last)
        position = hole
    if pending is not None:
        yield pending


def _range_checksum(fd: int, first: int, last: int, block_size: int) -> str:
    digest = hashlib.sha256()
    position, end = first * block_size, (last + 1) * block_size
    while position < end:
        chunk = os.pread(fd, min(_READ_CHUNK, end - position), position)
        if not chunk:
            break  # the last block is partial: the file ends inside it
        digest.update(chunk)
        position += len(chunk)
    return digest.hexdigest()


def map_image(path: str | os.PathLike[str], block_size: int = BLOCK_SIZE,
              known: Mapping[tuple[int, int], str] | None = None) -> BlockMap:
    """The block map of the image file at `path`: its data ranges with their checksums.

    `known` gives the checksums of ranges (first, last block) whose bytes the caller knows
    unchanged since they were hashed: a data range found again with the same bounds takes its
    checksum from there instead of being read (see `reusable_checksums`).
    Raises UserError naming the file when it cannot be read."""
    known = known or {}
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise UserError(f"cannot read {os.fspath(path)} for its block map: {exc.strerror}") from exc
    try:
        size = os.fstat(fd).st_size
        ranges = tuple((first, last, known.get((first, last))
                        or _range_checksum(fd, first, last, block_size))
                       for first, last in data_ranges(fd, size, block_size))
    finally:
        os.close(fd)
    return BlockMap(size, block_size, ranges)


def reusable_checksums(previous: BlockMap, changed: Sequence[Span]) -> dict[tuple[int, int], str]:
    """The checksums of `previous` (the block map of an earlier version of the image) for the
    ranges none of whose bytes lie in `changed`, the (offset, length) byte spans written since
    that version, keyed by (first, last) block."""
    size = previous.block_size
    return {(first, last): checksum for first, last, checksum in previous.ranges
            if not touches(first * size, (last - first + 1) * size, changed)}


def _human(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}" if unit != "bytes" else f"{size} bytes"
        value /= 1024
    return f"{size} bytes"  # unreachable: TiB ends the loop


def render_bmap(block_map: BlockMap) -> bytes:
    """The bmap file of `block_map`, as bmaptool writes version 2.0 (its comments shortened),
    with its own SHA-256 in `<BmapFileChecksum>`."""
    mapped = block_map.mapped_blocks_count
    percent = mapped * 100.0 / block_map.blocks_count if block_map.blocks_count else 0.0
    lines = [
        '<?xml version="1.0" ?>',
        # No double hyphen inside an XML comment: the flash command is in the README.
        "<!-- The block map of a disk image written by ibtasks: the blocks that hold data,",
        "     for bmaptool copy. -->",
        f'<bmap version="{BMAP_VERSION}">',
        f"    <!-- Image size in bytes: {_human(block_map.image_size)} -->",
        f"    <ImageSize> {block_map.image_size} </ImageSize>",
        f"    <BlockSize> {block_map.block_size} </BlockSize>",
        f"    <BlocksCount> {block_map.blocks_count} </BlocksCount>",
        f"    <!-- Count of mapped blocks: {_human(mapped * block_map.block_size)}"
        f" or {percent:.1f}% -->",
        f"    <MappedBlocksCount> {mapped} </MappedBlocksCount>",
        f"    <ChecksumType> {CHECKSUM_TYPE} </ChecksumType>",
        f"    <BmapFileChecksum> {_CHECKSUM_ZEROS} </BmapFileChecksum>",
        "    <BlockMap>",
    ]
    for first, last, checksum in block_map.ranges:
        blocks = f"{first}-{last}" if first != last else f"{first}"
        lines.append(f'        <Range chksum="{checksum}"> {blocks} </Range>')
    lines += ["    </BlockMap>", "</bmap>", ""]
    text = "\n".join(lines)
    own = hashlib.sha256(text.encode()).hexdigest()
    return text.replace(_CHECKSUM_ZEROS, own, 1).encode()


def _number(root: ElementTree.Element, tag: str) -> int:
    element = root.find(tag)
    if element is None or element.text is None or not element.text.strip().isdigit():
        raise UserError(f"bmap: <{tag}> missing or not a number")
    return int(element.text.strip())


def parse_bmap(data: bytes) -> BlockMap:
    """Read a version 2.x bmap file back, checking its own checksum and its counts.

    Raises UserError saying what does not hold."""
    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError as exc:
        raise UserError(f"bmap: not XML: {exc}") from exc
    if root.tag != "bmap" or not root.get("version", "").startswith("2."):
        raise UserError(f"bmap: expected <bmap version=\"2.x\">, got <{root.tag}>")
    stored = (root.findtext("BmapFileChecksum") or "").strip()
    zeroed = data.replace(stored.encode(), _CHECKSUM_ZEROS.encode(), 1)
    if not stored or hashlib.sha256(zeroed).hexdigest() != stored:
        raise UserError("bmap: BmapFileChecksum does not match the file")
    ranges = []
    for element in root.iterfind("BlockMap/Range"):
        match = re.fullmatch(r"\s*(\d+)(?:-(\d+))?\s*", element.text or "")
        if match is None:
            raise UserError(f"bmap: bad range {element.text!r}")
        first = int(match[1])
        last = int(match[2]) if match[2] is not None else first
        ranges.append((first, last, element.get("chksum", "")))
    block_map = BlockMap(_number(root, "ImageSize"), _number(root, "BlockSize"), tuple(ranges))
    if _number(root, "MappedBlocksCount") != block_map.mapped_blocks_count:
        raise UserError("bmap: MappedBlocksCount does not match the ranges")
    if _number(root, "BlocksCount") != block_map.blocks_count:
        raise UserError("bmap: BlocksCount does not match ImageSize")
    return block_map
