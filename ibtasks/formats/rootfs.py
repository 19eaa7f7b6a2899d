"""Rootfs partitions: the ext4 image of a cpio or tar archive, by the fastest path the system has.

- `archive` (e2fsprogs 1.47.1 and later): `mke2fs -d ARCHIVE` reads the archive itself, as an
  ordinary user, with no extraction and no fakeroot. Its headers are read once first to size the
  filesystem (`archive_scan`); archives mke2fs would get wrong (cpio hard links, members before
  their directory) and added files go through one plain tar rewritten by libarchive
  (`archive_rewrite`). Times: mke2fs clamps every time of the archive to SOURCE_DATE_EPOCH and
  stamps its own (root without an entry, lost+found, the superblock) with it; an archive without
  ctime or atime (ustar, GNU tar, cpio) gives 0 there, as the archive says.
- `extract` (older e2fsprogs, such as Debian 12's 1.47.0): the archive is extracted under
  fakeroot and `mkfs.ext4 -d` reads the tree (`ext4.build_rootfs_image`).

The environment variable IBTASKS_EXT4_PATH=extract forces the second path (CI tests both), and
=archive requires the first (an error when mke2fs is too old).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from ibtasks.errors import UserError
from ibtasks.formats import ext4
from ibtasks.formats.archive import normalize_member
from ibtasks.formats.archive_rewrite import write_rewritten_tar
from ibtasks.formats.archive_scan import scan_archive
from ibtasks.formats.ext4 import (
    RootfsSpec,
    check_rootfs_spec,
    make_filesystem,
    plan_filesystem,
)
from ibtasks.fsutil import make_temp_dir_beside, remove_tree
from ibtasks.tools import mke2fs_reads_tarball, mke2fs_version

PATH_VARIABLE = "IBTASKS_EXT4_PATH"
PATHS = ("archive", "extract")
INSTALL_HINT = ("install e2fsprogs 1.47.1 or later (Debian 12: add bookworm-backports, then "
                "apt-get install -t bookworm-backports e2fsprogs)")


def rootfs_path(environ: dict[str, str] | None = None) -> str:
    """`archive` or `extract`: how rootfs partitions are built here (see the module doc).

    Raises UserError for an unknown IBTASKS_EXT4_PATH, or =archive with an mke2fs too old."""
    env = os.environ if environ is None else environ
    forced = env.get(PATH_VARIABLE, "")
    if forced and forced not in PATHS:
        raise UserError(f"{PATH_VARIABLE}={forced}: expected one of {', '.join(PATHS)}")
    if forced == "extract":
        return "extract"
    version = mke2fs_version()
    if mke2fs_reads_tarball(version):
        return "archive"
    if forced == "archive":
        raise UserError(f"{PATH_VARIABLE}=archive: mke2fs {'.'.join(map(str, version))} cannot "
                        f"read archives: {INSTALL_HINT}")
    return "extract"


def fallback_note() -> str | None:
    """The one-line note printed when rootfs partitions take the slower extract path because
    the installed mke2fs cannot read archives, else None (also when forced by the variable)."""
    if os.environ.get(PATH_VARIABLE) or rootfs_path() == "archive":
        return None
    return ("mke2fs cannot read archives (before e2fsprogs 1.47.1): rootfs partitions are "
            f"extracted under fakeroot, which is slower; {INSTALL_HINT}")


def build_rootfs_image(spec: RootfsSpec, image: Path) -> int:
    """Build the ext4 image of `spec.archive` at `image`, atomically, by the path
    `rootfs_path()` picks; returns the image's size in bytes (whole MiB).

    Raises UserError naming `spec.key` for an unreadable, corrupt or escaping archive, a
    negative slack, or an image that cannot be written."""
    if rootfs_path() == "extract":
        return ext4.build_rootfs_image(spec, image)
    return _build_from_archive(spec, Path(image))


def _build_from_archive(spec: RootfsSpec, image: Path) -> int:
    check_rootfs_spec(spec)
    extra: dict[str, bytes] = {}
    for name, data in spec.extra_files.items():
        path = normalize_member(name)
        if not path:
            raise UserError(f"extra file {name} is outside the root", spec.key)
        extra[path] = data
    try:
        work = make_temp_dir_beside(image)
    except OSError as exc:
        raise UserError(f"cannot write {image}: {exc.strerror}", spec.key) from exc
    try:
        scan = scan_archive(spec.archive, spec.key, {k: len(v) for k, v in extra.items()})
        source = spec.archive
        if scan.rewrite_reasons:
            source = work / "rootfs.tar"
            write_rewritten_tar(spec.archive, spec.key, scan, extra, spec.epoch, source)
        size, inodes = plan_filesystem(spec, scan.usage, work / "image")
        try:
            make_filesystem(spec, inodes, work / "image", size, source.absolute())
        except UserError as exc:
            if "No space left on device" in str(exc):
                raise UserError(f"cannot write {image}: no space left on device",
                                spec.key) from exc
            raise
        os.replace(work / "image", image)
        return size
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise UserError(f"cannot write {image}: no space left on device", spec.key) from exc
        raise UserError(f"cannot write {image}: {exc.strerror}", spec.key) from exc
    finally:
        remove_tree(work)
