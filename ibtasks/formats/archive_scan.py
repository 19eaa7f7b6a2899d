"""One pass over a rootfs archive's headers: what `mke2fs -d archive` will make of it.

e2fsprogs 1.47.1+ reads tar and cpio archives itself (`mke2fs -d rootfs.tar.gz`, through
libarchive, every compression libarchive reads), keeping owners, modes, device nodes, symlinks,
tar hard links and the `security.capability` xattr, as an ordinary user. It must be given a
filesystem size before it starts, so we read the headers once first (libarchive skips the data)
and count the blocks and inodes the tree takes, as `ext4.measure_tree` does for a directory.

The scan also finds what mke2fs would get wrong, so the caller can hand it a rewritten tar
(`archive_rewrite`) instead of the archive itself:
- a cpio archive with hard links: cpio (newc) stores a linked file's data on its last name only,
  and libarchive reports the earlier names as empty files, which mke2fs makes separate inodes;
- a member that comes before its parent directory's entry, or whose parent has none (mke2fs
  stops: cannot find directory);
- files the caller adds (dom0's xl configs), appended to the rewritten tar.
Members that would escape the root, go through a symlink or replace the root are refused here,
as on the extraction path (`archive.extract_archive`).
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ibtasks.errors import UserError
from ibtasks.formats.archive import UNSUPPORTED, normalize_member, open_archive
from ibtasks.formats.ext4 import TreeUsage, dir_blocks, file_blocks

S_IFMT, S_IFDIR, S_IFREG, S_IFLNK = 0o170000, 0o040000, 0o100000, 0o120000


@dataclass
class ArchiveScan:
    """What the headers say: the tree's usage, the archive format (`tar` or `cpio`), why it must
    be rewritten before mke2fs reads it (empty when it can be read as it is), and the paths of
    its directories and symlinks ('' is the root)."""

    usage: TreeUsage
    format: str
    rewrite_reasons: list[str] = field(default_factory=list)
    directories: set[str] = field(default_factory=set)
    symlinks: set[str] = field(default_factory=set)


def libarchive_call(name: str, restype: object, *argtypes: object) -> Any:
    """A libarchive function libarchive-c does not wrap (nlink, ino, dev, clone...)."""
    from libarchive import ffi

    function = getattr(ffi.libarchive, name)
    function.restype = restype
    function.argtypes = list(argtypes)
    return function


def symlink_prefix(path: str, symlinks: set[str]) -> str | None:
    """The first parent of `path` that an earlier member made a symlink, if any."""
    prefix = ""
    for part in path.split("/")[:-1]:
        prefix = f"{prefix}/{part}" if prefix else part
        if prefix in symlinks:
            return prefix
    return None


def archive_error(exc: Exception, archive: Path, where: str, member: str) -> UserError:
    """libarchive's failure as our one-line error naming the archive and the member."""
    msg = getattr(exc, "msg", None) or str(exc)
    if isinstance(msg, bytes):
        msg = msg.decode("utf-8", "replace")
    text = str(msg).strip().rstrip(".")
    if "Unrecognized archive format" in text:
        return UserError(f"{archive}: {UNSUPPORTED}", where)
    at = f" at member {member}" if member else ""
    return UserError(f"{archive}: corrupt or truncated archive{at}: {text}", where)


def checked_member(archive: Path, where: str, member: str, mode: int,
                   symlinks: set[str]) -> str:
    """The member's path relative to the root; UserError when it escapes the root, goes through
    a symlink or replaces the root with something that is not a directory."""
    path = normalize_member(member)
    if path is None:
        raise UserError(f"{archive}: member {member} escapes the root", where)
    through = symlink_prefix(path, symlinks) if path else None
    if through is not None:
        raise UserError(f"{archive}: member {member} goes through the symlink {through}", where)
    if path == "" and mode & S_IFMT != S_IFDIR:
        raise UserError(f"{archive}: member {member} replaces the root", where)
    return path


def scan_archive(archive: Path, where: str, extra_files: dict[str, int]) -> ArchiveScan:
    """Read every header of `archive` (named by the key `where` in errors); `extra_files` maps
    paths the caller adds to their sizes in bytes. Raises UserError on a corrupt, unsupported or
    escaping archive."""
    from libarchive import ffi
    from libarchive.exception import ArchiveError

    nlink = libarchive_call("archive_entry_nlink", ctypes.c_uint, ctypes.c_void_p)
    entries: dict[str, tuple[int, int, int, str | None]] = {}  # path: mode, size, nlink, link
    symlinks: set[str] = set()
    member = ""
    fmt = "tar"
    cpio_links = out_of_order = link_differs = False
    directories = {""}
    owners: dict[str, tuple[int, int, int, int]] = {}  # path: mode, uid, gid, mtime
    try:
        with open_archive(archive, where) as reader:
            for entry in reader:  # type: ignore[attr-defined]
                # A failure reading the next header is in this member's data: keep its name.
                entry_p = entry._entry_p
                member = os.fsdecode(ffi.entry_pathname(entry_p) or b"")
                mode = entry.mode
                path = checked_member(archive, where, member, mode, symlinks)
                link = None
                if entry.islnk:
                    target = os.fsdecode(ffi.entry_hardlink(entry_p) or b"")
                    link = normalize_member(target)
                    if not link or symlink_prefix(link, symlinks) is not None:
                        raise UserError(f"{archive}: member {member} is a hard link to {target}, "
                                        "outside the root", where)
                stamp = (mode & 0o7777, entry.uid, entry.gid, int(entry.mtime or 0))
                if link is not None:
                    # mke2fs applies a link's own header to the inode; tar extraction keeps the
                    # file's (GNU tar writes both alike, other writers may not).
                    link_differs |= owners.get(link, stamp) != stamp
                else:
                    owners[path] = stamp
                if mode & S_IFMT == S_IFLNK:
                    symlinks.add(path)
                else:
                    symlinks.discard(path)
                links = nlink(entry_p)
                if b"cpio" in (reader.format_name or b"").lower():  # type: ignore[attr-defined]
                    fmt = "cpio"
                    cpio_links |= mode & S_IFMT == S_IFREG and links > 1
                size = entry.size or 0
                if mode & S_IFMT == S_IFLNK:
                    size = len(ffi.entry_symlink(entry_p) or b"")
                entries[path] = (mode, size, links, link)
                out_of_order |= bool(path) and path.rpartition("/")[0] not in directories
                if mode & S_IFMT == S_IFDIR:
                    directories.add(path)
    except ArchiveError as exc:
        raise archive_error(exc, archive, where, member) from exc
    scan = ArchiveScan(TreeUsage(0, 0), fmt, symlinks=symlinks)
    if cpio_links:
        scan.rewrite_reasons.append("cpio hard links")
    for path, size in extra_files.items():
        entries[path] = (S_IFREG | 0o644, size, 1, None)
    if link_differs:
        scan.rewrite_reasons.append("hard links whose header differs from their file's")
    if out_of_order:
        scan.rewrite_reasons.append("members before their directory")
    if extra_files:
        scan.rewrite_reasons.append("added files")
    scan.usage = _usage(entries, scan)
    return scan


def _add_directory(children: dict[str, list[str]], path: str) -> None:
    """Make `path` and any missing ancestor a directory of the tree."""
    if path in children:
        return
    children[path] = []
    parent, _, name = path.rpartition("/")
    _add_directory(children, parent)
    children[parent].append(name)


def _usage(entries: dict[str, tuple[int, int, int, str | None]], scan: ArchiveScan) -> TreeUsage:
    """Blocks and inodes of the tree the entries make, missing parents included."""
    children: dict[str, list[str]] = {"": []}
    for path, (mode, _, _, _) in entries.items():
        if mode & S_IFMT == S_IFDIR:
            children.setdefault(path, [])
    for path in entries:
        if path:
            parent, _, name = path.rpartition("/")
            _add_directory(children, parent)
            children[parent].append(name)
    scan.directories = set(children)
    blocks = sum(dir_blocks(names) for names in children.values())
    inodes = len(children)
    for path, (mode, size, _, link) in entries.items():
        kind = mode & S_IFMT
        if kind == S_IFDIR or path == "":
            continue
        if link is not None and link in entries:
            continue  # a tar hard link: one more name of an inode counted already
        inodes += 1
        if kind == S_IFREG:
            blocks += file_blocks(size)
        elif kind == S_IFLNK and size >= 60:  # longer targets leave the inode
            blocks += 1
    return TreeUsage(blocks, inodes)
