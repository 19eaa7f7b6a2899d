"""In-place updates of the FAT boot image: same bytes as a fresh build, only the changed file's
clusters and size field written, full builds whenever the layout could move, and crash safety.
Checked with fsck.fat -n, mtools (mtype, mshowfat) and byte comparison with fresh builds."""

import json
import os
import re
import struct
import subprocess
from pathlib import Path

import pytest

from ibtasks.formats import fat_update as fatupdate
from ibtasks.formats.disk_changes import read_changes
from ibtasks.formats.fat import BootFile
from ibtasks.formats.fat_update import FatWrite, manifest_path, write_fat_image

EPOCH = 1700000000
CLUSTER = 2048  # pyfatfs's cluster for an 18 MiB FAT16 image (checked with minfo below)
PARAMS = {"volume_id": 0x1234ABCD, "label": "BOOT", "epoch": EPOCH}


def mtools_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MTOOLS")}
    env["TZ"] = "UTC"
    return env


def make_sources(root: Path, xen: bytes = b"X" * 10000) -> list[BootFile]:
    """xen of 5 clusters (10,000 bytes), a file in a subdirectory, an empty file."""
    contents = {"xen": xen, "dom1/Image": b"1234" * 1000, "empty": b"", "boot.scr": b"S"}
    files = []
    for name, data in contents.items():
        source = root / "src" / name
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_bytes(data)
        files.append(BootFile(name, source))
    return files


def fresh(root: Path, files: list[BootFile], **params: object) -> bytes:
    """The bytes of a build from scratch of the same sources."""
    out = root / "fresh" / "boot.vfat"
    result = write_fat_image(out, files, **{**PARAMS, **params})  # type: ignore[arg-type]
    assert not result.in_place
    return out.read_bytes()


def rewrite(path: Path, data: bytes) -> None:
    """New content, and an mtime surely different from the manifest's (coarse clocks)."""
    old = path.stat().st_mtime_ns
    path.write_bytes(data)
    os.utime(path, ns=(old + 10**9, old + 10**9))


def update(image: Path, files: list[BootFile], **params: object) -> FatWrite:
    return write_fat_image(image, files, **{**PARAMS, **params})  # type: ignore[arg-type]


def test_changed_file_of_the_same_cluster_count_is_updated_in_place_to_a_fresh_builds_bytes(
    tmp_path: Path,
) -> None:
    files = make_sources(tmp_path)
    image = tmp_path / "out" / "boot.vfat"
    assert update(image, files).reason == "no previous image or manifest"
    inode = image.stat().st_ino
    rewrite(tmp_path / "src" / "xen", b"Y" * 9000)  # 9,000 bytes: still 5 clusters
    rewrite(tmp_path / "src" / "boot.scr", b"script")
    result = update(image, files)
    assert result.in_place and result.reason == ""
    assert image.stat().st_ino == inode
    assert image.read_bytes() == fresh(tmp_path, files)
    fsck = subprocess.run(["fsck.fat", "-n", str(image)], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    for name, data in (("xen", b"Y" * 9000), ("boot.scr", b"script")):
        got = subprocess.run(["mtype", "-i", str(image), f"::/{name}"], check=True,
                             capture_output=True, env=mtools_env()).stdout
        assert got == data


def test_only_the_changed_files_clusters_and_size_field_are_written(tmp_path: Path) -> None:
    files = make_sources(tmp_path)
    image = tmp_path / "boot.vfat"
    update(image, files)
    before = image.read_bytes()
    rewrite(tmp_path / "src" / "xen", b"Y" * 9000)
    result = update(image, files)
    after = image.read_bytes()

    # mshowfat names xen's clusters; the data region starts after the root directory.
    chain = subprocess.run(["mshowfat", "-i", str(image), "::/xen"], check=True,
                           capture_output=True, text=True, env=mtools_env()).stdout
    first, last = map(int, re.search(r"<(\d+)-(\d+)>", chain).groups())  # type: ignore[union-attr]
    sector, per_cluster, reserved, fats, root_entries = struct.unpack_from("<HBHBH", before, 11)
    fat_sectors = struct.unpack_from("<H", before, 22)[0]
    assert sector * per_cluster == CLUSTER
    data_start = (reserved + fats * fat_sectors) * sector + root_entries * 32
    clusters = (data_start + (first - 2) * CLUSTER, (last - first + 1) * CLUSTER)
    assert last - first + 1 == 5
    size_fields = [r for r in result.ranges if r != clusters]
    assert clusters in result.ranges and len(size_fields) == 1 and size_fields[0][1] == 4
    at = size_fields[0][0]
    assert struct.unpack_from("<I", after, at)[0] == 9000
    assert struct.unpack_from("<I", before, at)[0] == 10000
    # Every byte outside those ranges is as it was.
    mask = bytearray(before)
    for offset, length in result.ranges:
        mask[offset : offset + length] = after[offset : offset + length]
    assert bytes(mask) == after
    changes = read_changes(image)
    assert changes["ranges"] == [list(r) for r in result.ranges]
    assert changes["generation"] == result.generation


def test_image_stays_sparse_and_holes_in_the_new_file_read_as_zeros(tmp_path: Path) -> None:
    files = make_sources(tmp_path, xen=os.urandom(10000))
    image = tmp_path / "boot.vfat"
    update(image, files)
    xen = tmp_path / "src" / "xen"
    rewrite(xen, b"")
    with open(xen, "r+b") as f:  # a sparse file of 10,000 bytes: a hole, then 16 bytes
        f.truncate(10000)
        f.seek(9984)
        f.write(b"T" * 16)
    assert update(image, files).in_place
    assert image.read_bytes() == fresh(tmp_path, files)
    assert image.stat().st_blocks * 512 < image.stat().st_size // 8


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("grow", "xen now needs 6 clusters, had 5"),
        ("shrink", "xen now needs 4 clusters, had 5"),
        ("fill-empty", "empty now needs 1 clusters, had 0"),
        ("add", "the list of files changed"),
        ("remove", "the list of files changed"),
        ("epoch", "size, label, volume id, epoch or start sector changed"),
        ("label", "size, label, volume id, epoch or start sector changed"),
        ("volume", "size, label, volume id, epoch or start sector changed"),
        ("corrupt-manifest", "unreadable manifest"),
        ("missing-manifest", "no previous image or manifest"),
        ("image-touched", "the image changed since its manifest was written"),
    ],
)
def test_anything_but_a_same_cluster_count_change_is_a_full_build(
    tmp_path: Path, change: str, reason: str
) -> None:
    files = make_sources(tmp_path)
    image = tmp_path / "boot.vfat"
    update(image, files)
    params: dict[str, object] = {}
    src = tmp_path / "src"
    if change == "grow":
        rewrite(src / "xen", b"G" * 10241)
    elif change == "shrink":
        rewrite(src / "xen", b"G" * 8192)
    elif change == "fill-empty":
        rewrite(src / "empty", b"E")
    elif change == "add":
        (src / "new").write_bytes(b"new")
        files.append(BootFile("new", src / "new"))
    elif change == "remove":
        files.pop(1)
    elif change == "epoch":
        params["epoch"] = EPOCH + 86400
    elif change == "label":
        params["label"] = "BOOT2"
    elif change == "volume":
        params["volume_id"] = 7
    elif change == "corrupt-manifest":
        manifest_path(image).write_text('{"version": 1, "files": ')
    elif change == "missing-manifest":
        manifest_path(image).unlink()
    elif change == "image-touched":
        with open(image, "r+b") as f:
            f.seek(3 * 1024 * 1024)
            f.write(b"stray")
        os.utime(image, ns=(1, 1))
    result = update(image, files, **params)
    assert not result.in_place
    assert result.reason == reason
    assert image.read_bytes() == fresh(tmp_path, files, **params)
    changes = read_changes(image)
    assert changes["previous"] is None and changes["ranges"] is None  # disk copies it all
    assert json.loads(manifest_path(image).read_text())["generation"] == result.generation


def test_interrupted_update_is_followed_by_a_correct_full_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = make_sources(tmp_path)
    image = tmp_path / "boot.vfat"
    update(image, files)
    rewrite(tmp_path / "src" / "xen", b"Y" * 9000)
    rewrite(tmp_path / "src" / "dom1" / "Image", b"4321" * 1000)
    real_copy = fatupdate.copy_sparse
    calls = []

    def copy_then_crash(*args: object, **kwargs: object) -> int:
        # Fault injection: the first file's bytes land, then the run dies.
        if calls:
            raise KeyboardInterrupt
        calls.append(args)
        return real_copy(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(fatupdate, "copy_sparse", copy_then_crash)
    with pytest.raises(KeyboardInterrupt):
        update(image, files)
    monkeypatch.undo()
    assert calls  # the image really was half written
    assert not manifest_path(image).exists()
    assert read_changes(image) is None
    result = update(image, files)
    assert not result.in_place and result.reason == "no previous image or manifest"
    assert image.read_bytes() == fresh(tmp_path, files)


def test_unchanged_sources_rewrite_nothing(tmp_path: Path) -> None:
    files = make_sources(tmp_path)
    image = tmp_path / "boot.vfat"
    update(image, files)
    before = image.read_bytes()
    result = update(image, files)
    assert result.in_place and result.ranges == ()
    assert image.read_bytes() == before
