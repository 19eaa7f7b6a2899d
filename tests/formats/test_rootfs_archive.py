"""Rootfs images straight from the archive (`mke2fs -d archive`, e2fsprogs 1.47.1+) next to the
fakeroot extraction: hard links in cpio and tar stay one inode, a directory listed after its
members, capabilities, and byte-identical rebuilds. Built as the test user, read back with
debugfs and e2fsck -fn (helpers from test_rootfs).
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.formats.test_rootfs import BUILDER, build, debugfs, e2fsck, inode, workdir
from tests.unprivileged import unprivileged_python, user_tmp_dir

# security.capability for cap_net_raw+ep: VFS_CAP_REVISION_2 | effective, permitted bit 13.
CAP_NET_RAW = struct.pack("<5I", 0x02000001, 1 << 13, 0, 0, 0)


@pytest.fixture(params=["archive", "extract"])
def builder(request: pytest.FixtureRequest) -> Iterator[str]:
    BUILDER["path"] = request.param
    yield request.param
    BUILDER["path"] = "archive"


@pytest.fixture(scope="module")
def user_python() -> Path:
    return unprivileged_python()


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    with user_tmp_dir("ibtasks-rootfs-archive-") as path:
        yield path


def cpio_of(tmp_path: Path, script: str, name: str, find: str = "find .") -> Path:
    """A newc cpio, made by the real cpio from a tree `script` builds in `src`."""
    src = tmp_path / f"{name}-src"
    src.mkdir()
    subprocess.run(["sh", "-ec", script], cwd=src, check=True)
    listing = subprocess.run(["sh", "-c", f"{find} | LC_ALL=C sort"], cwd=src, check=True,
                             capture_output=True).stdout
    if "-depth" in find:  # members before their directory, as `find -depth` lists them
        listing = b"\n".join(reversed(listing.split(b"\n")[:-1])) + b"\n"
    data = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet", "-R", "0:0"], cwd=src,
                          input=listing, check=True, capture_output=True).stdout
    archive = tmp_path / name
    archive.write_bytes(data)
    archive.chmod(0o644)
    return archive


LINKS = """
printf 'three names\\n' > a && ln a b && ln a c
printf 'two names\\n' > x && ln x y
: > empty && ln empty empty2
mkdir d && ln a d/a4
printf 'alone\\n' > single
"""


def test_cpio_hard_links_are_one_inode_with_the_data(
    builder: str, user_python: Path, tmp_path: Path
) -> None:
    archive = cpio_of(tmp_path, LINKS, "links.cpio")
    work = workdir(tmp_path)
    done = build(user_python, work, archive)
    assert done.returncode == 0, done.stderr
    image = work / "rootfs.img"
    fsck = e2fsck(image)
    assert fsck.returncode == 0, fsck.stdout
    groups = [("/a", "/b", "/c", "/d/a4"), ("/x", "/y"), ("/empty", "/empty2")]
    for names, text in zip(groups, ("three names\n", "two names\n", ""), strict=True):
        found = [inode(image, name) for name in names]
        assert {f["inode"] for f in found} == {found[0]["inode"]}, names
        assert found[0]["links"] == str(len(names)), names
        for name in names:
            assert debugfs(image, f"cat {name}") == text, name
    assert inode(image, "/single")["links"] == "1"


def test_cpio_hard_links_stay_one_inode_when_compressed(
    builder: str, user_python: Path, tmp_path: Path
) -> None:
    plain = cpio_of(tmp_path, LINKS, "links.cpio")
    archive = tmp_path / "links.cpio.zst"
    archive.write_bytes(subprocess.run(["zstd", "-q", "-c", str(plain)], check=True,
                                       capture_output=True).stdout)
    archive.chmod(0o644)
    work = workdir(tmp_path)
    assert build(user_python, work, archive).returncode == 0
    image = work / "rootfs.img"
    assert e2fsck(image).returncode == 0
    assert inode(image, "/a")["inode"] == inode(image, "/d/a4")["inode"]
    assert inode(image, "/a")["links"] == "4"


def test_tar_hard_link_to_a_file_in_a_later_directory_is_one_inode(
    builder: str, user_python: Path, tmp_path: Path
) -> None:
    archive = tmp_path / "links.tar"
    with tarfile.open(archive, "w", format=tarfile.GNU_FORMAT) as tar:
        for name in ("usr", "usr/bin"):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        info = tarfile.TarInfo("usr/bin/perl5.36")
        info.size, info.mode = 5, 0o755
        tar.addfile(info, io.BytesIO(b"perl\n"))
        link = tarfile.TarInfo("usr/bin/perl")
        # Python's tarfile gives the link header mode 0644 unless told: the file's mode wins.
        link.type, link.linkname = tarfile.LNKTYPE, "usr/bin/perl5.36"
        tar.addfile(link)
    archive.chmod(0o644)
    work = workdir(tmp_path)
    assert build(user_python, work, archive).returncode == 0
    image = work / "rootfs.img"
    assert e2fsck(image).returncode == 0
    perl, real = inode(image, "/usr/bin/perl"), inode(image, "/usr/bin/perl5.36")
    assert (perl["inode"], perl["links"], perl["mode"]) == (real["inode"], "2", "0755")


def test_members_listed_before_their_directory_keep_the_directorys_owner_and_mode(
    builder: str, user_python: Path, tmp_path: Path
) -> None:
    script = ("mkdir -p srv/www && printf 'hi\\n' > srv/www/index.html && chmod 0750 srv/www"
              " && chmod 0711 srv")
    archive = cpio_of(tmp_path, script, "depth.cpio", find="find . -depth")
    work = workdir(tmp_path)
    done = build(user_python, work, archive)
    assert done.returncode == 0, done.stderr
    image = work / "rootfs.img"
    assert e2fsck(image).returncode == 0
    assert debugfs(image, "cat /srv/www/index.html") == "hi\n"
    assert (inode(image, "/srv/www")["mode"], inode(image, "/srv")["mode"]) == ("0750", "0711")


def test_tar_without_directory_entries_gets_its_directories(
    builder: str, user_python: Path, tmp_path: Path
) -> None:
    archive = tmp_path / "flat.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("etc/init.d/rcS")
        info.size, info.mode = 3, 0o755
        tar.addfile(info, io.BytesIO(b"#!\n"))
    archive.chmod(0o644)
    work = workdir(tmp_path)
    assert build(user_python, work, archive).returncode == 0
    image = work / "rootfs.img"
    assert e2fsck(image).returncode == 0
    for directory in ("/etc", "/etc/init.d"):
        found = inode(image, directory)
        assert (found["type"], found["mode"], found["uid"]) == ("directory", "0755", "0")
    assert debugfs(image, "cat /etc/init.d/rcS") == "#!\n"


def capability_tar(path: Path) -> Path:
    """A pax tar whose /bin/ping carries security.capability (as `tar --xattrs` stores it)."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("bin")
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
        ping = tarfile.TarInfo("bin/ping")
        ping.size, ping.mode = 5, 0o755
        ping.pax_headers = {
            "SCHILY.xattr.security.capability": CAP_NET_RAW.decode("utf-8", "surrogateescape"),
        }
        tar.addfile(ping, io.BytesIO(b"ping\n"))
    path.chmod(0o644)
    return path


def capability_of(image: Path, path: str) -> bytes:
    out = subprocess.run(["debugfs", "-R", f"ea_get -V {path} security.capability", str(image)],
                         capture_output=True, check=True).stdout
    return out.removesuffix(b"\n")  # debugfs ends the value with a newline


@pytest.mark.parametrize("compress", ["", "gzip", "xz"])
def test_capability_xattr_of_the_archive_is_kept(
    compress: str, user_python: Path, tmp_path: Path
) -> None:
    """mke2fs -d archive keeps security.capability (the extraction path under fakeroot cannot)."""
    BUILDER["path"] = "archive"
    archive = capability_tar(tmp_path / "caps.tar")
    if compress:
        packed = subprocess.run([compress, "-c", str(archive)], check=True,
                                capture_output=True).stdout
        archive = tmp_path / f"caps.tar.{compress}"
        archive.write_bytes(packed)
        archive.chmod(0o644)
    work = workdir(tmp_path)
    done = build(user_python, work, archive, extra={"etc/xen/domU0.cfg": "x\n"} if compress ==
                 "xz" else None)  # with an added file the archive is rewritten: kept too
    assert done.returncode == 0, done.stderr
    image = work / "rootfs.img"
    assert e2fsck(image).returncode == 0
    assert capability_of(image, "/bin/ping") == CAP_NET_RAW


@pytest.mark.parametrize("name", ["tar.gz", "cpio.zst", "tar.xz+extra"])
def test_two_archive_builds_in_two_directories_are_byte_identical(
    name: str, user_python: Path, tmp_path: Path
) -> None:
    BUILDER["path"] = "archive"
    base, _, extra = name.partition("+")
    kind, _, compress = base.partition(".")
    plain = (cpio_of(tmp_path, LINKS, "r.cpio") if kind == "cpio"
             else capability_tar(tmp_path / "r.tar"))
    tool = {"gz": "gzip", "zst": "zstd", "xz": "xz"}[compress]
    archive = tmp_path / f"r.{base}"
    archive.write_bytes(subprocess.run([tool, "-c", "-q", str(plain)], check=True,
                                       capture_output=True).stdout)
    archive.chmod(0o644)
    images = []
    for number, where in enumerate(("one", "two")):
        work = workdir(tmp_path, where)
        if number:
            os.utime(archive)  # a new mtime on the archive file changes nothing inside
        done = build(user_python, work, archive, extra={"etc/x": "y\n"} if extra else None)
        assert done.returncode == 0, done.stderr
        images.append((work / "rootfs.img").read_bytes())
    assert images[0] == images[1]
