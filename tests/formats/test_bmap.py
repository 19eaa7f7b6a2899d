"""The block map (`disk.img.bmap`): checked against bmap-tools itself. `bmaptool copy` must
accept ours and reproduce the image byte for byte; our ranges and checksums must be those
`bmaptool create` finds; a sparse image lists only its data blocks."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from ibtasks.errors import UserError
from ibtasks.formats.bmap import BLOCK_SIZE, map_image, parse_bmap, render_bmap

MIB = 1024 * 1024


def sparse_file(path: Path, size: int, pieces: dict[int, bytes]) -> Path:
    """A sparse file of `size` bytes holding each piece at its offset, holes elsewhere."""
    with open(path, "wb") as out:
        out.truncate(size)
        for offset, data in pieces.items():
            out.seek(offset)
            out.write(data)
    return path


def write_bmap(image: Path) -> Path:
    bmap = Path(f"{image}.bmap")
    bmap.write_bytes(render_bmap(map_image(image)))
    return bmap


def bmaptool_copy(image: Path, bmap: Path, out: Path) -> None:
    result = subprocess.run(["bmaptool", "copy", str(image), "--bmap", str(bmap), str(out)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "block map format version 2.0" in result.stderr


def bmaptool_ranges(image: Path) -> list[str]:
    """The <Range> lines bmaptool create writes for `image`."""
    text = subprocess.run(["bmaptool", "create", str(image)], check=True, capture_output=True,
                          text=True).stdout
    return [line.strip() for line in text.splitlines() if "<Range" in line]


def our_ranges(bmap: Path) -> list[str]:
    return [line.strip() for line in bmap.read_text().splitlines() if "<Range" in line]


def test_a_sparse_image_lists_only_the_blocks_that_hold_data(tmp_path: Path) -> None:
    # 5 bytes inside block 1; 100 KiB from byte 3,000,000 (block 732, offset 1,728) to block 756.
    image = sparse_file(tmp_path / "disk.img", 10 * MIB,
                        {5000: b"hello", 3_000_000: os.urandom(100_000)})
    block_map = map_image(image)
    assert [(first, last) for first, last, _ in block_map.ranges] == [(1, 1), (732, 756)]
    assert block_map.blocks_count == 10 * MIB // BLOCK_SIZE
    assert block_map.mapped_blocks_count == 26
    bmap = write_bmap(image)
    assert our_ranges(bmap) == bmaptool_ranges(image)
    out = tmp_path / "out.img"
    bmaptool_copy(image, bmap, out)
    assert out.read_bytes() == image.read_bytes()


def test_an_image_whose_size_ends_inside_a_block_is_copied_to_its_last_byte(
        tmp_path: Path) -> None:
    size = 3 * MIB + 1234  # the last block holds 1,234 bytes
    image = sparse_file(tmp_path / "odd.img", size, {0: b"\xeb\x3c\x90", size - 10: b"T" * 10})
    bmap = write_bmap(image)
    block_map = parse_bmap(bmap.read_bytes())
    assert block_map.image_size == size
    assert [(f, lst) for f, lst, _ in block_map.ranges] == [(0, 0), (768, 768)]
    assert our_ranges(bmap) == bmaptool_ranges(image)
    out = tmp_path / "out.img"
    bmaptool_copy(image, bmap, out)
    assert out.read_bytes() == image.read_bytes()


def test_a_dense_image_is_one_range_and_an_empty_one_none(tmp_path: Path) -> None:
    dense = tmp_path / "dense.img"
    dense.write_bytes(os.urandom(2 * MIB))
    assert [(f, lst) for f, lst, _ in map_image(dense).ranges] == [(0, 511)]
    empty = sparse_file(tmp_path / "empty.img", 2 * MIB, {})
    bmap = write_bmap(empty)
    assert parse_bmap(bmap.read_bytes()).ranges == ()
    out = tmp_path / "out.img"
    bmaptool_copy(empty, bmap, out)
    assert out.read_bytes() == bytes(2 * MIB)


def test_adjacent_data_extents_are_one_range(tmp_path: Path) -> None:
    # Two writes that meet inside block 2 (one extent to the file system, or two): one range.
    image = sparse_file(tmp_path / "disk.img", MIB, {4096: b"a" * 6000, 10096: b"b" * 4000})
    assert [(f, lst) for f, lst, _ in map_image(image).ranges] == [(1, 3)]
    assert our_ranges(write_bmap(image)) == bmaptool_ranges(image)


def test_a_bmap_is_read_back_as_written(tmp_path: Path) -> None:
    image = sparse_file(tmp_path / "disk.img", 4 * MIB, {MIB: os.urandom(3 * BLOCK_SIZE)})
    block_map = map_image(image)
    assert parse_bmap(render_bmap(block_map)) == block_map


def test_a_bmap_edited_after_writing_fails_its_own_checksum(tmp_path: Path) -> None:
    image = sparse_file(tmp_path / "disk.img", 4 * MIB, {MIB: b"data"})
    text = render_bmap(map_image(image)).replace(b"4.0 MiB", b"4.5 MiB")  # a comment only
    with pytest.raises(UserError, match="BmapFileChecksum does not match"):
        parse_bmap(text)
    edited = tmp_path / "edited.bmap"
    edited.write_bytes(text)
    result = subprocess.run(["bmaptool", "copy", str(image), "--bmap", str(edited),
                             str(tmp_path / "out.img")], capture_output=True, text=True)
    assert result.returncode != 0 and "checksum" in result.stderr
