"""A rootfs archive rewritten as one plain pax tar that `mke2fs -d` reads right, without
extracting anything.

libarchive reads the archive (any format and compression we accept) and writes a tar stream
entry by entry, data copied block by block; see `archive_scan` for when this is needed:
- cpio hard links become tar hard links: the name that carries the data is written as the file
  and the names before it (which cpio leaves empty) as links to it, so the file is one inode;
- directories that come after their members, or have no entry, are written before the first
  member that needs them (mode 0755, root-owned, at the epoch; a later entry of the archive
  sets its own mode, owner and time, as mke2fs applies a directory entry to the existing one);
- a tar hard link gets its file's mode, owner and time (mke2fs would apply the link's header,
  which some writers fill differently, to the shared inode);
- files the caller adds are appended as root-owned 0644 files at the epoch; a name the archive
  already has is replaced (its other hard-linked names keep the old content).
Member paths are written normalised (see `archive.normalize_member`).
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable, Mapping
from pathlib import Path

from ibtasks.errors import UserError
from ibtasks.formats.archive import normalize_member, open_archive
from ibtasks.formats.archive_scan import (
    S_IFDIR,
    S_IFMT,
    S_IFREG,
    ArchiveScan,
    archive_error,
    checked_member,
    libarchive_call,
    symlink_prefix,
)

COPY_BUFFER = 1 << 20  # bytes per read of a member's data


class _TarWriter:
    """A pax tar being written to `out` through libarchive."""

    def __init__(self, out: Path) -> None:
        from libarchive import ffi

        self.ffi = ffi
        self.archive_p = ffi.write_new()
        ffi.write_set_format_pax(self.archive_p)
        ffi.write_open_filename_w(self.archive_p, str(out))
        self.set_hardlink = libarchive_call("archive_entry_copy_hardlink", None,
                                            ctypes.c_void_p, ctypes.c_char_p)

    def close(self) -> None:
        self.ffi.write_close(self.archive_p)
        self.ffi.write_free(self.archive_p)

    def header(self, entry_p: object) -> None:
        self.ffi.write_header(self.archive_p, entry_p)

    def data(self, buffer: object, size: int) -> None:
        self.ffi.write_data(self.archive_p, buffer, size)

    def finish(self) -> None:
        self.ffi.write_finish_entry(self.archive_p)

    def new_entry(self, path: str, mode: int, size: int, epoch: int) -> object:
        """A fresh root-owned entry (free it with `ffi.entry_free`)."""
        ffi = self.ffi
        entry_p = ffi.entry_new()
        ffi.entry_copy_pathname(entry_p, os.fsencode(path or "."))
        ffi.entry_set_mode(entry_p, mode)
        ffi.entry_set_uid(entry_p, 0)
        ffi.entry_set_gid(entry_p, 0)
        ffi.entry_set_mtime(entry_p, epoch, 0)
        ffi.entry_set_size(entry_p, size)
        return entry_p

    def link(self, entry_p: object, path: str, target: str) -> None:
        """Write `entry_p` as a hard link at `path` to the earlier member `target`."""
        self.ffi.entry_copy_pathname(entry_p, os.fsencode(path))
        self.ffi.entry_set_size(entry_p, 0)
        self.set_hardlink(entry_p, os.fsencode(target))
        self.header(entry_p)
        self.finish()


def write_rewritten_tar(archive: Path, where: str, scan: ArchiveScan,
                        extra_files: Mapping[str, bytes], epoch: int, out: Path) -> None:
    """Write `archive` (scanned as `scan`) and `extra_files` (path in the filesystem: bytes) as
    one plain pax tar at `out`. Raises UserError on a corrupt archive or an added file that
    would go through a symlink of the archive or replace a directory."""
    from libarchive import ffi
    from libarchive.exception import ArchiveError

    nlink = libarchive_call("archive_entry_nlink", ctypes.c_uint, ctypes.c_void_p)
    ino = libarchive_call("archive_entry_ino64", ctypes.c_int64, ctypes.c_void_p)
    dev = libarchive_call("archive_entry_dev", ctypes.c_uint64, ctypes.c_void_p)
    clone = libarchive_call("archive_entry_clone", ctypes.c_void_p, ctypes.c_void_p)
    writer = _TarWriter(out)
    written_dirs = {""}
    symlinks: set[str] = set()
    # cpio hard-link groups by (dev, ino): the name written as the file, names waiting for it.
    emitted: dict[tuple[int, int], str] = {}
    pending: dict[tuple[int, int], list[tuple[str, int]]] = {}
    buffer = ctypes.create_string_buffer(COPY_BUFFER)
    owners: dict[str, tuple[int, int, int, int]] = {}  # path: mode, uid, gid, mtime as written

    def ensure_parents(path: str) -> None:
        chain = []
        parent = path.rpartition("/")[0] if path else ""
        while parent not in written_dirs:
            chain.append(parent)
            parent = parent.rpartition("/")[0]
        for directory in reversed(chain):
            entry_p = writer.new_entry(directory, S_IFDIR | 0o755, 0, epoch)
            writer.header(entry_p)
            writer.finish()
            ffi.entry_free(entry_p)
            written_dirs.add(directory)

    member = ""
    try:
        with open_archive(archive, where) as reader:
            reader_p = reader._pointer  # type: ignore[attr-defined]
            for entry in reader:  # type: ignore[attr-defined]
                entry_p = entry._entry_p
                member = os.fsdecode(ffi.entry_pathname(entry_p) or b"")
                mode = entry.mode
                path = checked_member(archive, where, member, mode, symlinks)
                kind = mode & S_IFMT
                symlinks.discard(path)
                if entry.issym:
                    symlinks.add(path)
                ensure_parents(path)
                if kind == S_IFDIR:
                    written_dirs.add(path)
                ffi.entry_copy_pathname(entry_p, os.fsencode(path or "."))
                if entry.islnk and scan.format == "tar":
                    target = normalize_member(os.fsdecode(ffi.entry_hardlink(entry_p) or b""))
                    if target in owners:  # the file's own mode, owner and time, as tar keeps
                        perm, uid, gid, mtime = owners[target]
                        ffi.entry_set_perm(entry_p, perm)
                        ffi.entry_set_uid(entry_p, uid)
                        ffi.entry_set_gid(entry_p, gid)
                        ffi.entry_set_mtime(entry_p, mtime, 0)
                    writer.link(entry_p, path, target or "")
                    continue
                owners[path] = (mode & 0o7777, entry.uid, entry.gid, int(entry.mtime or 0))
                size = entry.size or 0
                if scan.format == "cpio" and kind == S_IFREG and nlink(entry_p) > 1:
                    key = (dev(entry_p), ino(entry_p))
                    if key in emitted:
                        writer.link(entry_p, path, emitted[key])
                        continue
                    if size == 0:
                        pending.setdefault(key, []).append((path, clone(entry_p)))
                        continue
                    writer.set_hardlink(entry_p, None)
                    emitted[key] = path
                writer.header(entry_p)
                while size > 0:
                    got = ffi.read_data(reader_p, buffer, COPY_BUFFER)
                    if got <= 0:
                        break
                    writer.data(buffer, got)
                    size -= got
                writer.finish()
                if kind == S_IFREG and scan.format == "cpio" and nlink(entry_p) > 1:
                    for name, waiting in pending.pop((dev(entry_p), ino(entry_p)), []):
                        writer.link(waiting, name, path)
                        ffi.entry_free(waiting)
                member = ""
        for group in pending.values():  # linked files that are empty: the first name is the file
            first = group[0][0]
            for number, (name, waiting) in enumerate(group):
                if number == 0:
                    writer.set_hardlink(waiting, None)
                    writer.header(waiting)
                    writer.finish()
                else:
                    writer.link(waiting, name, first)
                ffi.entry_free(waiting)
        _append_extra_files(writer, archive, where, scan, extra_files, epoch, ensure_parents)
    except ArchiveError as exc:
        raise archive_error(exc, archive, where, member) from exc
    finally:
        writer.close()


def _append_extra_files(writer: _TarWriter, archive: Path, where: str, scan: ArchiveScan,
                        extra_files: Mapping[str, bytes], epoch: int,
                        ensure_parents: Callable[[str], None]) -> None:
    for name, data in sorted(extra_files.items()):
        path = normalize_member(name)
        if not path:
            raise UserError(f"extra file {name} is outside the root", where)
        through = symlink_prefix(path + "/x", scan.symlinks)
        if through is not None and through != path:
            raise UserError(f"{archive}: cannot add {name}: {through} is not a directory in the "
                            "archive", where)
        if path in scan.directories:
            raise UserError(f"{archive}: cannot add {name}: it is a directory", where)
        ensure_parents(path)
        entry_p = writer.new_entry(path, S_IFREG | 0o644, len(data), epoch)
        writer.header(entry_p)
        writer.data(data, len(data))
        writer.finish()
        writer.ffi.entry_free(entry_p)
