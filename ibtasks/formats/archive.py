"""Rootfs archives: cpio (newc) or tar, plain or compressed (see filetype), extracted safely.

libarchive (through libarchive-c) reads every one of these, and its disk writer already handles
hard links, device nodes, fifos and setuid bits; we add what it cannot know: which key the archive
came from, member paths normalised and refused when they escape the root, and file times clamped
to SOURCE_DATE_EPOCH. Run under fakeroot so that owners and device nodes survive extraction.
"""

from __future__ import annotations

import errno
import os
import posixpath
from collections.abc import Iterator
from contextlib import contextmanager
from ctypes import byref, c_longlong, c_size_t, c_void_p
from dataclasses import dataclass
from pathlib import Path

from ibtasks.errors import UserError
from ibtasks.formats.filetype import COMPRESSIONS, detect_compression

UNSUPPORTED = ("not a cpio or tar archive (" + ", ".join(COMPRESSIONS[:-1])
               + f" and {COMPRESSIONS[-1]} compression are supported)")


@dataclass(frozen=True)
class RootEntry:
    """The archive's own entry for its root directory (`./`), applied to the filesystem root."""

    mode: int
    uid: int
    gid: int
    mtime: int


@dataclass(frozen=True)
class Extraction:
    """What extraction recorded: clamped times per member path ('' is the root), the root entry."""

    mtimes: dict[str, int]
    root: RootEntry | None


def normalize_member(name: str) -> str | None:
    """A member path relative to the root ('' for the root itself), or None when it escapes.

    A leading `/` is dropped as tar and cpio do; `..` is resolved by text, and a path that climbs
    above the root is refused.
    """
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return None
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts)


def _symlink_prefix(path: str, symlinks: set[str]) -> str | None:
    """The first parent of `path` that an earlier member made a symlink, if any."""
    prefix = ""
    for part in path.split("/")[:-1]:
        prefix = posixpath.join(prefix, part) if prefix else part
        if prefix in symlinks:
            return prefix
    return None


@contextmanager
def open_archive(archive: Path, where: str, source: str | None = None) -> Iterator[object]:
    """A libarchive reader (libarchive-c's ArchiveRead) of a tar or cpio archive, with the
    filter the project's one detector names. `source` is the path opened (default: `archive`
    made absolute; give it when the working directory will change first), `archive` the name
    in messages. Raises UserError naming `where` when it cannot be read."""
    try:
        from libarchive import ffi
        from libarchive.read import ArchiveRead
    except (ImportError, OSError) as exc:
        raise UserError(f"cannot read {archive}: the Python package libarchive-c (with the shared "
                        f"library libarchive13) is not installed: {exc}", where) from exc
    source = source if source is not None else os.path.abspath(archive)
    try:
        with open(source, "rb") as handle:
            head = handle.read(8)
    except OSError as exc:
        raise UserError(f"{archive}: cannot read: {exc.strerror}", where) from exc
    archive_p = ffi.read_new()
    try:
        ffi.get_read_filter_function(detect_compression(head) or "none")(archive_p)
        ffi.get_read_format_function("tar")(archive_p)
        ffi.get_read_format_function("cpio")(archive_p)
        ffi.read_open_filename_w(archive_p, source, 65536)
        yield ArchiveRead(archive_p)
    finally:
        ffi.read_free(archive_p)


def _archive_message(exc: Exception) -> str:
    """libarchive's own words for a failure, without libarchive-c's pointer dump."""
    msg = getattr(exc, "msg", None) or str(exc)
    if isinstance(msg, bytes):
        msg = msg.decode("utf-8", "replace")
    return str(msg).strip().rstrip(".")


def extract_archive(archive: Path, where: str, dest: Path, epoch: int) -> Extraction:
    """Extract `archive` into the existing directory `dest`, refusing members that escape it.

    `where` names the config key in messages. Must run under fakeroot (or as root) to keep owners
    and device nodes. Times are recorded, clamped to `epoch`, for the caller to apply at the end.
    """
    try:
        from libarchive import extract, ffi
        from libarchive.exception import ArchiveError
    except (ImportError, OSError) as exc:
        raise UserError(
            f"cannot read {archive}: the Python package libarchive-c (with the shared library "
            f"libarchive13) is not installed: {exc}",
            where,
        ) from exc

    flags = (
        extract.EXTRACT_OWNER
        | extract.EXTRACT_PERM
        | extract.EXTRACT_UNLINK
        | extract.EXTRACT_SPARSE
        | extract.PREVENT_ESCAPE  # a second guard behind our own checks
    )
    mtimes: dict[str, int] = {}
    symlinks: set[str] = set()
    root: RootEntry | None = None
    member = ""
    buff, size, offset = c_void_p(), c_size_t(), c_longlong()
    source = os.path.abspath(archive)
    old_cwd = os.getcwd()
    os.chdir(dest)
    try:
        with (
            open_archive(archive, where, source) as reader,
            extract.new_archive_write_disk(flags) as write_p,
        ):
            entries = iter(reader)  # type: ignore[call-overload]
            reader_p = reader._pointer  # type: ignore[attr-defined]
            while True:
                member = ""
                try:
                    entry = next(entries)
                except StopIteration:
                    break
                # Raw bytes, so names that are not UTF-8 survive (as surrogate escapes).
                member = os.fsdecode(ffi.entry_pathname(entry._entry_p) or b"")
                path = normalize_member(member)
                if path is None:
                    raise UserError(f"{archive}: member {member} escapes the root", where)
                through = _symlink_prefix(path, symlinks) if path else None
                if through is not None:
                    raise UserError(
                        f"{archive}: member {member} goes through the symlink {through}", where
                    )
                if entry.islnk:
                    link = os.fsdecode(ffi.entry_hardlink(entry._entry_p) or b"")
                    target = normalize_member(link)
                    if not target or _symlink_prefix(target, symlinks) is not None:
                        raise UserError(
                            f"{archive}: member {member} is a hard link to {link}, "
                            "outside the root",
                            where,
                        )
                    ffi.entry_copy_link(entry._entry_p, os.fsencode(target))
                mtime = min(int(entry.mtime or 0), epoch)
                if path == "":
                    if not entry.isdir:
                        raise UserError(f"{archive}: member {member} replaces the root", where)
                    root = RootEntry(entry.mode, entry.uid, entry.gid, mtime)
                    mtimes[""] = mtime
                    continue
                ffi.entry_copy_pathname(entry._entry_p, os.fsencode(path))
                if entry.issym:
                    symlinks.add(path)
                else:
                    symlinks.discard(path)
                mtimes[path] = mtime
                ffi.write_header(write_p, entry._entry_p)
                while (
                    ffi.read_data_block(reader_p, byref(buff), byref(size), byref(offset))
                    != ffi.ARCHIVE_EOF
                ):
                    ffi.write_data_block(write_p, buff, size, offset)
                ffi.write_finish_entry(write_p)
    except ArchiveError as exc:
        if exc.errno == errno.ENOSPC:
            raise UserError(
                f"{dest}: no space left on device while extracting {archive}", where
            ) from exc
        if "Unrecognized archive format" in _archive_message(exc):
            raise UserError(f"{archive}: {UNSUPPORTED}", where) from exc
        at = f" at member {member}" if member else ""
        raise UserError(
            f"{archive}: corrupt or truncated archive{at}: {_archive_message(exc)}", where
        ) from exc
    finally:
        os.chdir(old_cwd)
    return Extraction(mtimes, root)
