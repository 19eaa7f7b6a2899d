"""Sparse copies between files: data copied with `os.copy_file_range`, holes skipped (SEEK_DATA /
SEEK_HOLE) or punched, so images stay as sparse as their sources."""

from __future__ import annotations

import ctypes
import errno
import os

from ibtasks.errors import UserError

MIB = 1024 * 1024
_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02


def copy_sparse(
    src: int,
    dst: int,
    length: int,
    src_offset: int = 0,
    dst_offset: int = 0,
    *,
    punch_holes: bool = False,
) -> int:
    """Copy the data (not the holes) of `length` bytes between two files; return bytes copied.

    Under the source's holes the destination is left as it is (it must be zeros there, as in a
    fresh sparse file) or, with `punch_holes`, made a hole too.
    """
    end = src_offset + length
    position = src_offset
    copied = 0
    while position < end:
        try:
            data = min(os.lseek(src, position, os.SEEK_DATA), end)
        except OSError as exc:
            if exc.errno != errno.ENXIO:
                raise
            data = end  # only a hole is left
        if punch_holes and data > position:
            clear_range(dst, dst_offset + (position - src_offset), data - position)
        if data >= end:
            break
        hole = min(os.lseek(src, data, os.SEEK_HOLE), end)
        at, to = data, dst_offset + (data - src_offset)
        while at < hole:
            done = os.copy_file_range(src, dst, hole - at, at, to)
            if done == 0:
                raise UserError("a source file shrank while it was being copied")
            at += done
            to += done
        copied += hole - data
        position = hole
    return copied


def clear_range(fd: int, offset: int, length: int) -> None:
    """Turn a range of the disk back into a hole (zeros where the filesystem cannot)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fallocate = libc.fallocate
    fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    mode = _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE
    if fallocate(fd, mode, offset, length) == 0:
        return
    if ctypes.get_errno() not in (errno.EOPNOTSUPP, errno.ENOSYS):
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    zeros = bytes(MIB)
    for at in range(offset, offset + length, MIB):
        os.pwrite(fd, zeros[: min(MIB, offset + length - at)], at)
