"""`disk-image` writes `disk.img.bmap` beside the image: `bmaptool copy` with it reproduces
disk.img byte for byte, it lists only disk.img's data, and it is rewritten exactly when disk.img
is."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from ibtasks.formats.bmap import data_ranges, parse_bmap
from tests.cli.test_disk_image import disk_image, disk_inputs, make_rootfs  # noqa: F401
from tests.unprivileged import run_as_user, unprivileged_python


def flash(inputs: Path, out: Path) -> None:
    """bmaptool copy, as the README's flash command does, onto a file instead of a card."""
    result = subprocess.run(["bmaptool", "copy", str(inputs / "disk.img"), "--bmap",
                             str(inputs / "disk.img.bmap"), str(out)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_bmaptool_copy_with_the_bmap_reproduces_disk_img(disk_inputs: Path,  # noqa: F811
                                                         tmp_path: Path) -> None:
    assert "ib_bmap" in disk_image(disk_inputs)
    flash(disk_inputs, tmp_path / "card.img")
    subprocess.run(["cmp", str(disk_inputs / "disk.img"), str(tmp_path / "card.img")],
                   check=True)


def test_the_bmap_lists_exactly_the_data_ranges_of_the_sparse_disk(
        disk_inputs: Path) -> None:  # noqa: F811
    disk_image(disk_inputs)
    disk = disk_inputs / "disk.img"
    block_map = parse_bmap((disk_inputs / "disk.img.bmap").read_bytes())
    assert block_map.image_size == disk.stat().st_size
    fd = os.open(disk, os.O_RDONLY)
    try:
        data = list(data_ranges(fd, disk.stat().st_size, block_map.block_size))
    finally:
        os.close(fd)
    assert [(first, last) for first, last, _ in block_map.ranges] == data
    # Sparse: far fewer mapped blocks than the disk has, but the GPT at each end is mapped.
    assert block_map.mapped_blocks_count * 2 < block_map.blocks_count
    assert block_map.ranges[0][0] == 0
    assert block_map.ranges[-1][1] == block_map.blocks_count - 1


def test_the_bmap_is_rewritten_when_disk_img_changes_and_only_then(
        disk_inputs: Path, tmp_path: Path) -> None:  # noqa: F811
    disk_image(disk_inputs)
    assert disk_image(disk_inputs) == set()
    make_rootfs(disk_inputs / "rootfs-domU.tar.gz", b"changed again\n")
    assert {"ib_disk", "ib_bmap"} <= disk_image(disk_inputs)
    flash(disk_inputs, tmp_path / "card.img")
    assert (tmp_path / "card.img").read_bytes() == (disk_inputs / "disk.img").read_bytes()


def test_a_failed_disk_build_leaves_no_bmap(disk_inputs: Path) -> None:  # noqa: F811
    disk_image(disk_inputs)
    assert (disk_inputs / "disk.img.bmap").exists()
    (disk_inputs / "rootfs-domU.tar.gz").write_bytes(b"this is not an archive\n")
    result = run_as_user([unprivileged_python(), "-m", "ibtasks", "disk-image", "-c", "config",
                          "-d", ".", "-t", "scsi", "-o", "disk.img"], cwd=disk_inputs)
    assert result.returncode == 1 and "DOMU_ROOTFS[2]" in result.stderr
    assert not (disk_inputs / "disk.img").exists()
    assert not (disk_inputs / "disk.img.bmap").exists()
