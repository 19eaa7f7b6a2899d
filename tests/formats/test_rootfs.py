"""Rootfs ext4 images built by an ordinary user from tar and cpio archives, checked with
e2fsck -fn and debugfs.

The archives are made with the real tools (tar, cpio) inside fakeroot from a small tree with
what a root filesystem needs: setuid/setgid files, a file owned by 1000:1000, device nodes, a
symlink, a hard link pair, empty directories (one sticky) and a fifo. Images are always built
as the test user (tests/unprivileged.py), since root would hide a missing rootless step.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unprivileged import run_as_user, unprivileged_python, user_tmp_dir

EPOCH = 1700000000  # 2023-11-14 22:13:20 UTC
PAST = 1600000000  # 2020-09-13 12:26:40 UTC: kept as is
FUTURE = 1900000000  # 2030-03-17: clamped to EPOCH
UUID = "0b7b1c6e-4c2f-4a57-9a0e-3d4f5a6b7c8d"
SEED = "1f2e3d4c-5b6a-4978-8695-a4b3c2d1e0f9"
MIB = 1 << 20

# Run inside fakeroot: the tree, then one archive of each format from it.
MAKE_TREE = rf"""
set -e
umask 022
mkdir -p src/bin src/dev src/etc src/home/user src/mnt src/tmp src/run
printf 'su binary\n' > src/bin/su && chmod 4755 src/bin/su
printf 'wall\n' > src/bin/wall && chown 0:5 src/bin/wall && chmod 2755 src/bin/wall
printf 'private\n' > src/home/user/notes && chmod 600 src/home/user/notes
chown 1000:1000 src/home/user src/home/user/notes
mknod -m 600 src/dev/console c 5 1
mknod -m 660 src/dev/sda b 8 0 && chown 0:6 src/dev/sda
ln -s busybox src/bin/sh
printf 'box\n' > src/bin/busybox && chmod 755 src/bin/busybox
printf 'rootfs-host\n' > src/etc/hostname && ln src/etc/hostname src/etc/hostname.link
mkfifo -m 600 src/run/initctl
chmod 1777 src/tmp
touch -d @{FUTURE} src/etc/hostname
touch -d @{PAST} src/bin/su src/home/user src/mnt
touch -h -d @{PAST} src/bin/sh
tar --numeric-owner --format=gnu -C src -cf rootfs.tar .
(cd src && find . | LC_ALL=C sort | cpio -o -H newc --quiet > ../rootfs.cpio)
"""

COMPRESSORS = {"": None, "gz": ["gzip", "-n"], "xz": ["xz"], "bz2": ["bzip2"],
               "zst": ["zstd", "-q"]}

BUILD = r"""
import json, sys
from pathlib import Path
from ibtasks.errors import UserError
from ibtasks.formats.ext4 import RootfsSpec
from ibtasks.formats.rootfs import build_rootfs_image
a = json.loads(sys.argv[1])
spec = RootfsSpec(archive=Path(a["archive"]), key=a["key"], label=a["label"],
                  slack_mib=a["slack_mib"], epoch=a["epoch"], uuid=a["uuid"],
                  hash_seed=a["seed"], extra_files={k: v.encode() for k, v in a["extra"].items()})
try:
    print(build_rootfs_image(spec, Path(a["image"])))
except UserError as exc:
    print(exc, file=sys.stderr)
    sys.exit(2)
"""


# Both ways of building a rootfs partition (ibtasks.formats.rootfs): every test runs on each,
# the path forced with IBTASKS_EXT4_PATH so a missing e2fsprogs 1.47.1+ fails the archive runs.
BUILDER = {"path": "archive"}


@pytest.fixture(params=["archive", "extract"], autouse=True)
def rootfs_builder(request: pytest.FixtureRequest) -> Iterator[str]:
    BUILDER["path"] = request.param
    yield request.param
    BUILDER["path"] = "archive"


@pytest.fixture(scope="session")
def user_python() -> Path:
    return unprivileged_python()


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """Each test's directory, in /tmp where the test user can reach it (see user_tmp_dir)."""
    with user_tmp_dir("ibtasks-rootfs-") as path:
        yield path


@pytest.fixture(scope="session")
def archives() -> Iterator[dict[str, Path]]:
    """Every format: `tar`, `tar.gz`, ... `cpio.zst`, named without a telling suffix."""
    with user_tmp_dir("ibtasks-archives-") as root:
        yield make_archives(root)


def make_archives(root: Path) -> dict[str, Path]:
    subprocess.run(["fakeroot", "sh", "-c", MAKE_TREE], cwd=root, check=True)
    out: dict[str, Path] = {}
    for base in ("tar", "cpio"):
        plain = (root / f"rootfs.{base}").read_bytes()
        for suffix, compress in COMPRESSORS.items():
            name = f"{base}.{suffix}" if suffix else base
            data = plain
            if compress:
                data = subprocess.run(compress, input=plain, capture_output=True, check=True).stdout
            path = root / f"archive-{name.replace('.', '-')}"
            path.write_bytes(data)
            path.chmod(0o644)
            out[name] = path
    return out


def build(
    python: Path,
    work: Path,
    archive: Path | str,
    image: str = "rootfs.img",
    *,
    key: str = "DOM0_ROOTFS",
    slack_mib: int = 1,
    extra: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Build an image as the test user in `work` (the archive path as given, relative to `work`)."""
    import json

    args = {
        "archive": str(archive),
        "key": key,
        "label": "vos_2",
        "slack_mib": slack_mib,
        "epoch": EPOCH,
        "uuid": UUID,
        "seed": SEED,
        "extra": extra or {},
        "image": image,
    }
    return run_as_user([python, "-c", BUILD, json.dumps(args)], cwd=work,
                       env={"IBTASKS_EXT4_PATH": BUILDER["path"]})


def workdir(tmp_path: Path, name: str = "work") -> Path:
    path = tmp_path / name
    path.mkdir()
    path.chmod(0o777)
    return path


def debugfs(image: Path, request: str) -> str:
    done = subprocess.run(
        ["debugfs", "-R", request, str(image)], capture_output=True, text=True, check=True
    )
    return done.stdout


def inode(image: Path, path: str) -> dict[str, str]:
    """The fields of `debugfs -R "stat PATH"` that the tests compare."""
    text = debugfs(image, f"stat {path}")
    fields = {
        "inode": r"Inode: (\d+)",
        "type": r"Type: (.+?)\s+Mode:",
        "mode": r"Mode:\s+(\d+)",
        "uid": r"User:\s+(\d+)",
        "gid": r"Group:\s+(\d+)",
        "links": r"Links: (\d+)",
        "size": r"Size: (\d+)",
        "mtime": r"mtime: (0x[0-9a-f]+)",
        "ctime": r"ctime: (0x[0-9a-f]+)",
        "device": r"Device major/minor number: (\S+)",
        "link": r'Fast link dest: "(.*)"',
    }
    found = {}
    for name, pattern in fields.items():
        match = re.search(pattern, text)
        if match:
            found[name] = match.group(1)
    return found


def e2fsck(image: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["e2fsck", "-fn", str(image)], capture_output=True, text=True)


def leftovers(work: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in work.iterdir() if p.name not in keep)


def check_root_filesystem(image: Path) -> None:
    """Everything MAKE_TREE put in, as debugfs reads it back."""
    fsck = e2fsck(image)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    su = inode(image, "/bin/su")
    assert (su["type"], su["mode"], su["uid"], su["gid"]) == ("regular", "04755", "0", "0")
    assert su["mtime"] == hex(PAST)
    wall = inode(image, "/bin/wall")
    assert (wall["mode"], wall["uid"], wall["gid"]) == ("02755", "0", "5")
    notes = inode(image, "/home/user/notes")
    assert (notes["mode"], notes["uid"], notes["gid"]) == ("0600", "1000", "1000")
    home = inode(image, "/home/user")
    assert (home["type"], home["uid"], home["gid"], home["mtime"]) == (
        "directory", "1000", "1000", hex(PAST),
    )
    console = inode(image, "/dev/console")
    assert (console["type"], console["mode"], console["device"]) == (
        "character special", "0600", "05:01",
    )
    sda = inode(image, "/dev/sda")
    assert (sda["type"], sda["mode"], sda["gid"], sda["device"]) == (
        "block special", "0660", "6", "08:00",
    )
    sh = inode(image, "/bin/sh")
    assert (sh["type"], sh["link"], sh["mtime"]) == ("symlink", "busybox", hex(PAST))
    host, link = inode(image, "/etc/hostname"), inode(image, "/etc/hostname.link")
    assert host["inode"] == link["inode"] and host["links"] == "2"
    assert host["mtime"] == hex(EPOCH)  # clamped from 2030
    assert debugfs(image, "cat /etc/hostname.link") == "rootfs-host\n"
    fifo = inode(image, "/run/initctl")
    assert (fifo["type"], fifo["mode"]) == ("FIFO", "0600")
    tmp = inode(image, "/tmp")
    assert (tmp["type"], tmp["mode"]) == ("directory", "01777")
    mnt = debugfs(image, "ls -p /mnt").split()
    assert [entry.split("/")[5] for entry in mnt] == [".", ".."]  # empty
    assert inode(image, "/mnt")["mtime"] == hex(PAST)
    for path in ("/", "/bin/su", "/dev/console", "/etc", "/lost+found"):
        # mke2fs -d archive takes ctime from the archive, which (GNU tar, cpio) has none: 0.
        made = BUILDER["path"] == "extract" or path == "/lost+found"
        assert int(inode(image, path)["ctime"], 16) == (EPOCH if made else 0), path
    root = inode(image, "/")
    assert (root["mode"], root["uid"], root["gid"]) == ("0755", "0", "0")


@pytest.mark.parametrize(
    "fmt",
    ["tar", "tar.gz", "tar.xz", "tar.bz2", "tar.zst",
     "cpio", "cpio.gz", "cpio.xz", "cpio.bz2", "cpio.zst"],
)
def test_archive_becomes_an_ext4_with_owners_modes_devices_and_links(
    fmt: str, archives: dict[str, Path], user_python: Path, tmp_path: Path
) -> None:
    work = workdir(tmp_path)
    done = build(user_python, work, archives[fmt])
    assert done.returncode == 0, done.stderr
    image = work / "rootfs.img"
    if os.geteuid() == 0:
        assert image.stat().st_uid != 0  # really built by the test user
    assert int(done.stdout) == image.stat().st_size
    assert image.stat().st_size % MIB == 0
    assert leftovers(work, {"rootfs.img"}) == []
    check_root_filesystem(image)
    header = subprocess.run(["dumpe2fs", "-h", str(image)], capture_output=True, text=True).stdout
    assert re.search(r"^Filesystem volume name:\s+vos_2$", header, re.MULTILINE)
    assert re.search(rf"^Filesystem UUID:\s+{UUID}$", header, re.MULTILINE)
    assert re.search(rf"^Directory Hash Seed:\s+{SEED}$", header, re.MULTILINE)
    assert re.search(r"^Block size:\s+4096$", header, re.MULTILINE)


def test_extra_files_are_added_as_root_owned_0644(
    archives: dict[str, Path], user_python: Path, tmp_path: Path
) -> None:
    work = workdir(tmp_path)
    extra = {"etc/xen/domU1.cfg": 'name="domU1"\n', "etc/hostname": "replaced\n"}
    done = build(user_python, work, archives["tar.gz"], extra=extra)
    assert done.returncode == 0, done.stderr
    image = work / "rootfs.img"
    assert e2fsck(image).returncode == 0
    cfg = inode(image, "/etc/xen/domU1.cfg")
    assert (cfg["mode"], cfg["uid"], cfg["gid"], cfg["mtime"]) == ("0644", "0", "0", hex(EPOCH))
    assert debugfs(image, "cat /etc/xen/domU1.cfg") == 'name="domU1"\n'
    xen = inode(image, "/etc/xen")
    assert (xen["type"], xen["mode"], xen["uid"]) == ("directory", "0755", "0")
    # Replacing one name of a hard link pair leaves the other name's content alone.
    assert debugfs(image, "cat /etc/hostname") == "replaced\n"
    assert debugfs(image, "cat /etc/hostname.link") == "rootfs-host\n"


def test_two_builds_at_different_times_in_different_directories_are_identical(
    archives: dict[str, Path], user_python: Path, tmp_path: Path
) -> None:
    first, second = workdir(tmp_path, "one"), workdir(tmp_path, "two")
    extra = {"etc/xen/domU1.cfg": "x\n"}
    assert build(user_python, first, archives["cpio.xz"], extra=extra).returncode == 0
    # ctime and atime come from the host clock, which must have moved on before the rebuild.
    subprocess.run(["sleep", "1.1"], check=True)
    assert build(user_python, second, archives["cpio.xz"], extra=extra).returncode == 0
    assert (first / "rootfs.img").read_bytes() == (second / "rootfs.img").read_bytes()


def zeros_archive(root: Path) -> Path:
    """A 100 MB file of zeros in a .tar.gz of about 100 KB."""
    source = root / "zeros-src"
    source.mkdir()
    with open(source / "zeros", "wb") as out:
        out.truncate(100_000_000)
    archive = root / "zeros.tar.gz"
    subprocess.run(["tar", "-C", str(source), "-czf", str(archive), "."], check=True)
    archive.chmod(0o644)
    return archive


def free_user_blocks(image: Path) -> int:
    header = subprocess.run(["dumpe2fs", "-h", str(image)], capture_output=True, text=True).stdout
    fields = dict(re.findall(r"^([A-Za-z ]+):\s+(\d+)$", header, re.MULTILINE))
    return int(fields["Free blocks"]) - int(fields["Reserved block count"])


def test_highly_compressed_archive_gets_room_for_its_content_plus_slack(
    user_python: Path, tmp_path: Path
) -> None:
    work = workdir(tmp_path)
    archive = zeros_archive(tmp_path)
    assert archive.stat().st_size < 1_000_000  # the original's 2 x archive size would not fit
    done = build(user_python, work, archive, slack_mib=3)
    assert done.returncode == 0, done.stderr
    image = work / "rootfs.img"
    assert e2fsck(image).returncode == 0
    assert inode(image, "/zeros")["size"] == "100000000"
    assert image.stat().st_size >= 100_000_000 + 3 * MIB
    assert free_user_blocks(image) * 4096 >= 3 * MIB


def test_many_small_files_fit_with_the_slack_left_free(user_python: Path, tmp_path: Path) -> None:
    """3000 files of 0-299 bytes in 30 directories: inode- and directory-bound, not data-bound."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for i in range(3000):
            info = tarfile.TarInfo(f"d{i % 30:02d}/file-with-a-long-name-{i:06d}")
            info.size = i % 300
            tar.addfile(info, io.BytesIO(b"x" * info.size))
    archive = tmp_path / "many.tgz"
    archive.write_bytes(buffer.getvalue())
    archive.chmod(0o644)
    work = workdir(tmp_path)
    for slack in (0, 2):
        done = build(user_python, work, archive, f"slack{slack}.img", slack_mib=slack)
        assert done.returncode == 0, done.stderr
        image = work / f"slack{slack}.img"
        fsck = e2fsck(image)
        assert fsck.returncode == 0, fsck.stdout
        # 3000 files, 30 directories, and inodes 1-11 (reserved; root is 2, lost+found 11)
        assert re.search(r": 3041/\d+ files", fsck.stdout)
        assert free_user_blocks(image) * 4096 >= slack * MIB


def make_tar(path: Path, members: list[tarfile.TarInfo]) -> Path:
    with tarfile.open(path, "w") as tar:
        for member in members:
            tar.addfile(member, io.BytesIO(b"x" * member.size))
    path.chmod(0o644)
    return path


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = 1 if kind == tarfile.REGTYPE else 0
    return info


def failing_inputs(work: Path) -> dict[str, str]:
    """Archive name -> the exact message for DOMU_ROOTFS[1]."""
    with zipfile.ZipFile(work / "rootfs.zip", "w") as z:
        z.writestr("etc/passwd", "root:x:0:0::/root:/bin/sh\n")
    subprocess.run(["sh", "-c", "echo hello | gzip -n > text.gz"], cwd=work, check=True)
    (work / "empty").write_bytes(b"")
    make_tar(work / "dotdot.tar", [member("../evil")])
    make_tar(work / "absolute.tar", [member("/etc/../../evil")])
    make_tar(work / "symlink.tar", [member("etc", tarfile.SYMTYPE, "/etc"), member("etc/passwd")])
    make_tar(work / "hardlink.tar", [member("shadow", tarfile.LNKTYPE, "../../etc/shadow")])
    blob = os.urandom(300_000)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("blob")
        info.size = len(blob)
        tar.addfile(info, io.BytesIO(blob))
    (work / "truncated.tgz").write_bytes(buffer.getvalue()[:150_000])
    for path in work.iterdir():
        path.chmod(0o644)
    unsupported = ("not a cpio or tar archive (gzip, xz, lzma, bzip2, zstd and lz4 compression "
                   "are supported)")
    return {
        "rootfs.zip": f"DOMU_ROOTFS[1]: rootfs.zip: {unsupported}",
        "text.gz": f"DOMU_ROOTFS[1]: text.gz: {unsupported}",
        "empty": f"DOMU_ROOTFS[1]: empty: {unsupported}",
        "dotdot.tar": "DOMU_ROOTFS[1]: dotdot.tar: member ../evil escapes the root",
        "absolute.tar": "DOMU_ROOTFS[1]: absolute.tar: member /etc/../../evil escapes the root",
        "symlink.tar": "DOMU_ROOTFS[1]: symlink.tar: member etc/passwd goes through the "
        "symlink etc",
        "hardlink.tar": "DOMU_ROOTFS[1]: hardlink.tar: member shadow is a hard link to "
        "../../etc/shadow, outside the root",
        # mke2fs -d archive needs the size first: the headers are read, the data skipped.
        "truncated.tgz": "DOMU_ROOTFS[1]: truncated.tgz: corrupt or truncated archive at member "
        + ("blob: truncated gzip input" if BUILDER["path"] == "extract" else
           "blob: Truncated input file (needed 300032 bytes, only 0 available)"),
        "missing.tar": "DOMU_ROOTFS[1]: missing.tar: cannot read: No such file or directory",
    }


def test_bad_archives_are_one_line_errors_that_leave_no_image(
    user_python: Path, tmp_path: Path
) -> None:
    inputs = workdir(tmp_path, "inputs")
    expected = failing_inputs(inputs)
    out = workdir(tmp_path, "out")
    for name, message in expected.items():
        done = build(user_python, inputs, name, str(out / "rootfs.img"), key="DOMU_ROOTFS[1]")
        assert (done.returncode, done.stderr) == (2, message + "\n"), name
        assert list(out.iterdir()) == [], name
    assert leftovers(inputs, set(expected)) == []


def test_unwritable_output_directory_is_a_one_line_error(
    archives: dict[str, Path], user_python: Path, tmp_path: Path
) -> None:
    work = workdir(tmp_path)
    locked = work / "locked"
    locked.mkdir(mode=0o555)
    locked.chmod(0o555)
    done = build(user_python, work, archives["tar"], "locked/rootfs.img")
    assert (done.returncode, done.stderr) == (
        2, "DOM0_ROOTFS: cannot write locked/rootfs.img: Permission denied\n",
    )
    assert list(locked.iterdir()) == []


@pytest.fixture
def small_filesystem(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A 2 MiB tmpfs the test user can write (mounting needs root, as CI and sessions are)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0777", "tmpfs", str(mount)],
        capture_output=True, text=True,
    )
    assert done.returncode == 0, f"mounting a tmpfs needs root: {done.stderr}"
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_disk_full_is_a_one_line_error_and_keeps_the_previous_image(
    archives: dict[str, Path], user_python: Path, small_filesystem: Path, tmp_path: Path
) -> None:
    previous = small_filesystem / "rootfs.img"
    previous.write_bytes(b"previous build")
    previous.chmod(0o666)
    big = tmp_path / "big.tgz"
    blob = os.urandom(3 * MIB)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("blob")
        info.size = len(blob)
        tar.addfile(info, io.BytesIO(blob))
    big.write_bytes(buffer.getvalue())
    big.chmod(0o644)
    done = build(user_python, small_filesystem, big, "rootfs.img", slack_mib=0)
    assert (done.returncode, done.stderr) == (
        2, "DOM0_ROOTFS: cannot write rootfs.img: no space left on device\n",
    )
    assert sorted(p.name for p in small_filesystem.iterdir()) == ["rootfs.img"]
    assert previous.read_bytes() == b"previous build"


def test_names_that_are_not_utf8_keep_their_bytes(user_python: Path, tmp_path: Path) -> None:
    archive = tmp_path / "latin1.tar"
    with tarfile.open(archive, "w", format=tarfile.GNU_FORMAT, encoding="latin-1") as tar:
        info = tarfile.TarInfo("caf\xe9")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"cafe"))
        tar.addfile(member("d/na\xefve", tarfile.LNKTYPE, "caf\xe9"))
    archive.chmod(0o644)
    work = workdir(tmp_path)
    done = build(user_python, work, archive)
    assert done.returncode == 0, done.stderr
    image = work / "rootfs.img"
    assert e2fsck(image).returncode == 0
    listing = subprocess.run(["debugfs", "-R", "ls -p /d", str(image)], capture_output=True,
                             check=True).stdout
    assert b"/na\xefve/" in listing
    names = subprocess.run(["debugfs", "-R", "ls -p /", str(image)], capture_output=True,
                           check=True).stdout
    assert b"/caf\xe9/" in names


def test_archive_root_entry_sets_the_root_directory(user_python: Path, tmp_path: Path) -> None:
    root = tarfile.TarInfo("./")
    root.type, root.mode, root.uid, root.gid, root.mtime = tarfile.DIRTYPE, 0o750, 0, 42, PAST
    archive = make_tar(tmp_path / "root.tar", [root, member("./etc/motd")])
    work = workdir(tmp_path)
    assert build(user_python, work, archive).returncode == 0
    image = work / "rootfs.img"
    assert e2fsck(image).returncode == 0
    top = inode(image, "/")
    assert (top["mode"], top["uid"], top["gid"], top["mtime"]) == ("0750", "0", "42", hex(PAST))


def test_extra_file_under_an_archive_symlink_is_refused(user_python: Path, tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "etclink.tar", [member("etc", tarfile.SYMTYPE, "/host/etc")])
    work = workdir(tmp_path)
    done = build(user_python, work, archive, key="DOM0_ROOTFS", extra={"etc/xen/domU0.cfg": "x"})
    assert (done.returncode, done.stderr) == (
        2,
        f"DOM0_ROOTFS: {archive}: cannot add etc/xen/domU0.cfg: etc is not a directory in the "
        "archive\n",
    )
    assert leftovers(work, set()) == []


def test_empty_tar_gives_an_empty_filesystem(user_python: Path, tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "nothing.tar", [])
    work = workdir(tmp_path)
    done = build(user_python, work, archive)
    assert done.returncode == 0, done.stderr
    image = work / "rootfs.img"
    assert e2fsck(image).returncode == 0
    entries = [line.split("/")[1:6] for line in debugfs(image, "ls -p /").split()]
    assert entries == [
        ["2", "040755", "0", "0", "."], ["2", "040755", "0", "0", ".."],
        ["11", "040700", "0", "0", "lost+found"],
    ]
