"""A boot partition that came from the shared cache gets the update manifest a local build
leaves (read from the image's own clusters), so the next change of a boot file's content is
an update in place: the FAT image keeps its inode, and the files in it are the new ones."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.oci_registry import LocalRegistry
from tests.tasks.test_shared_cache import (  # noqa: F401
    WARNING,
    build_disk,
    ext4_builds,
    inputs,
    mkfs_log,
    runner,
)

RAMDISK = "zynqmp-dom1/domU-ramdisk.cpio"


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[LocalRegistry]:
    storage = tmp_path / "registry"
    storage.mkdir()
    server = LocalRegistry(storage).start()
    yield server
    server.stop()


def mtype(image: Path, name: str) -> bytes:
    """A file of the FAT image as mtools reads it."""
    return subprocess.run(["mtype", "-i", str(image), f"::{name}"], check=True,
                          capture_output=True).stdout


def flip_last_byte(path: Path) -> bytes:
    """The same size, other bytes (the layout stays, only the content changes)."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    return bytes(data)


@pytest.fixture
def runner_b(inputs: Path, tmp_path: Path, registry: LocalRegistry,  # noqa: F811
             mkfs_log: Path) -> Path:  # noqa: F811
    """Runner B after a build that took every partition (the boot one too) from the cache
    runner A filled."""
    build_disk(runner(inputs, tmp_path, "runner-a"), mkfs_log, "--cache", registry.url())
    ext4_builds(mkfs_log)
    b = runner(inputs, tmp_path, "runner-b")
    done = build_disk(b, mkfs_log, "--cache", registry.url())
    assert ext4_builds(mkfs_log) == [] and WARNING not in done.stderr
    return b


def test_the_boot_image_from_the_cache_gets_a_readable_manifest(runner_b: Path) -> None:
    image = runner_b / ".ibtasks" / "boot.vfat"
    manifest = json.loads(Path(f"{image}.manifest.json").read_text())
    assert manifest["version"] == 1
    assert manifest["image"]["ino"] == image.stat().st_ino
    records = {record["path"]: record for record in manifest["files"]}
    assert records[RAMDISK]["size"] == (runner_b / RAMDISK).stat().st_size
    # Each file's runs hold exactly its bytes, as mtools reads them.
    with open(image, "rb") as raw:
        for path in (RAMDISK, "xen", "boot.scr"):
            record = records[path]
            data = b""
            for offset, length in record["runs"]:
                raw.seek(offset)
                data += raw.read(length)
            assert data[:record["size"]] == mtype(image, path)


def test_the_next_content_change_after_a_hit_updates_the_fat_image_in_place(
        runner_b: Path, mkfs_log: Path, registry: LocalRegistry) -> None:  # noqa: F811
    image = runner_b / ".ibtasks" / "boot.vfat"
    inode = image.stat().st_ino
    new = flip_last_byte(runner_b / RAMDISK)
    build_disk(runner_b, mkfs_log, "--cache", registry.url())
    assert image.stat().st_ino == inode  # updated in place, not built again and renamed
    assert mtype(image, RAMDISK) == new
    fsck = subprocess.run(["fsck.fat", "-n", str(image)], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


def test_after_an_in_place_update_the_disk_is_what_a_build_without_cache_writes(
        runner_b: Path, inputs: Path, tmp_path: Path, mkfs_log: Path,  # noqa: F811
        registry: LocalRegistry) -> None:
    flip_last_byte(runner_b / RAMDISK)
    build_disk(runner_b, mkfs_log, "--cache", registry.url())
    fresh = runner(inputs, tmp_path, "runner-c")
    flip_last_byte(fresh / RAMDISK)
    build_disk(fresh, mkfs_log)
    assert (runner_b / "disk.img").read_bytes() == (fresh / "disk.img").read_bytes()
