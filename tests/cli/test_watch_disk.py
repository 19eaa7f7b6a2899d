"""`disk-image --watch`: a changed rootfs archive rebuilds exactly its own partition and what
holds it (the disk image and its block map), and the image flashed with the new bmap is the
new disk.img; the other partition is not rebuilt, and an archive rewritten with the same bytes
rebuilds nothing."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.test_disk_image import disk_inputs, make_rootfs  # noqa: F401
from tests.cli.test_watch import Watcher

DISK_WATCH = ("disk-image", "-c", "config", "-d", ".", "-t", "scsi", "-o", "disk.img")


@pytest.fixture
def disk_watcher(disk_inputs: Path) -> Iterator[Watcher]:  # noqa: F811
    watch = Watcher(disk_inputs, *DISK_WATCH)
    try:
        first = watch.until_watching(timeout=180)
        assert "ibtasks: running ib_disk: first run (no record)" in first
        assert "ibtasks: running ib_bmap: first run (no record)" in first
        yield watch
        assert watch.stop() == 130
    finally:
        watch.kill()


def flashed(inputs: Path, out: Path) -> bytes:
    """disk.img as `bmaptool copy` writes it with disk.img.bmap onto a file."""
    subprocess.run(["bmaptool", "copy", str(inputs / "disk.img"), "--bmap",
                    str(inputs / "disk.img.bmap"), str(out)], check=True, capture_output=True)
    return out.read_bytes()


def test_a_changed_domu_archive_reruns_its_partition_the_disk_and_the_bmap(
        disk_watcher: Watcher, disk_inputs: Path, tmp_path: Path) -> None:  # noqa: F811
    bmap_before = (disk_inputs / "disk.img.bmap").read_bytes()
    make_rootfs(disk_inputs / "rootfs-domU.tar.gz", b"domU2, rebuilt\n")
    changed, ran = disk_watcher.rerun(timeout=180)
    assert changed == "ibtasks: changed: rootfs-domU.tar.gz"
    assert ran == {"ib_partition:domU2", "ib_disk", "ib_bmap"}
    assert (disk_inputs / "disk.img.bmap").read_bytes() != bmap_before
    assert flashed(disk_inputs, tmp_path / "card.img") == (disk_inputs / "disk.img").read_bytes()


def test_a_changed_dom0_archive_reruns_only_dom0s_partition_the_disk_and_the_bmap(
        disk_watcher: Watcher, disk_inputs: Path, tmp_path: Path) -> None:  # noqa: F811
    domu_partition = disk_inputs / ".ibtasks" / "domU2.ext4"
    inode = domu_partition.stat().st_ino
    make_rootfs(disk_inputs / "rootfs-dom0.cpio.gz", b"dom0, rebuilt\n")
    changed, ran = disk_watcher.rerun(timeout=180)
    assert changed == "ibtasks: changed: rootfs-dom0.cpio.gz"
    assert ran == {"ib_partition:dom0", "ib_disk", "ib_bmap"}
    assert domu_partition.stat().st_ino == inode
    assert flashed(disk_inputs, tmp_path / "card.img") == (disk_inputs / "disk.img").read_bytes()


def test_an_archive_rewritten_with_the_same_bytes_rebuilds_nothing(
        disk_watcher: Watcher, disk_inputs: Path) -> None:  # noqa: F811
    archive = disk_inputs / "rootfs-domU.tar.gz"
    disk = disk_inputs / "disk.img"
    before = disk.stat()
    fresh = archive.with_name(".rootfs-domU.new")
    fresh.write_bytes(archive.read_bytes())
    os.rename(fresh, archive)
    changed, ran = disk_watcher.rerun(timeout=180)
    assert changed == "ibtasks: changed: rootfs-domU.tar.gz"
    assert ran == set()
    after = disk.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
