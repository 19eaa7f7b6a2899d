"""Atomic writes: an output either has its complete new content or does not exist.

Outputs are written to a temporary file in the same directory and renamed over the target, so
an interrupted build never leaves a half-written file that a later build takes as finished.
Every temporary is created exclusively (O_EXCL) under an unpredictable name that starts with
`.<target name>.ibtmp-` (TEMP_MARK), beside its target: a symlink planted at a guessable name
is never followed, and the next build can tell a temporary that a killed build left from a
user's file by that pattern and remove it (see ibtasks.tasks.ownership).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from ibtasks.errors import UserError

TEMP_MARK = ".ibtmp-"  # temporaries are named `.<target name>.ibtmp-<random>[suffix]`
# tempfile's random part is 8 characters of [a-z0-9_]; suffixes are one short extension.
TEMP_PATTERN = re.compile(r"\..+\.ibtmp-[a-z0-9_]{8}(\.[a-z0-9]{1,10})?")


def temp_prefix(target: str | os.PathLike[str]) -> str:
    """The name prefix of `target`'s temporaries: `.<target name>.ibtmp-`."""
    return f".{Path(target).name}{TEMP_MARK}"


def make_temp_beside(target: str | os.PathLike[str], suffix: str = "") -> tuple[int, Path]:
    """Create an empty temporary file beside `target` (same filesystem, so it can be renamed
    over it): exclusively (O_EXCL, mode 0600), under an unpredictable name. Returns the open
    descriptor and the path; the caller closes and removes or renames it.

    Raises OSError when the directory cannot be written.
    """
    where = Path(target).parent
    where.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=where, prefix=temp_prefix(target), suffix=suffix)
    return fd, Path(name)


def make_temp_dir_beside(target: str | os.PathLike[str]) -> Path:
    """A new private directory (mode 0700) beside `target`, named like its temporaries."""
    where = Path(target).parent
    where.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=where, prefix=temp_prefix(target)))


@contextmanager
def replacing(path: str | os.PathLike[str], suffix: str = "") -> Iterator[tuple[BinaryIO, Path]]:
    """Write a new version of `path` atomically: yields an open file of a new temporary beside it
    (see `make_temp_beside`) and the temporary's path; when the block ends normally the file is
    closed, made 0644 and renamed over `path`; when it raises, the temporary is removed.

    Raises UserError naming `path` when the temporary cannot be made, written or renamed.
    """
    target = Path(path)
    try:
        fd, tmp = make_temp_beside(target, suffix)
    except OSError as exc:
        raise UserError(f"cannot write {target}: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "wb") as out:
            yield out, tmp
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(f"cannot write {target}: {exc.strerror}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `path` through a temporary file and a rename (`replacing`)."""
    with replacing(path) as (out, _):
        out.write(data)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB chunks (hex). Raises OSError."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def write_if_changed(path: str | os.PathLike[str], data: bytes) -> bool:
    """Write `data` atomically unless the file already holds exactly it.

    Keeping an unchanged file's mtime is what keeps downstream doit tasks up to date.
    Returns True when the file was written.
    """
    try:
        if Path(path).read_bytes() == data:
            return False
    except OSError:
        pass
    write_atomic(path, data)
    return True


def remove_tree(path: str | os.PathLike[str]) -> None:
    """Remove a directory tree, also one holding read-only directories (an extracted rootfs)."""
    shutil.rmtree(path, onerror=_make_removable)


def _make_removable(func: object, path: str, exc: object) -> None:
    """rmtree helper: directories extracted read-only get their owner's write bit back."""
    if not os.path.lexists(path):
        return
    os.chmod(os.path.dirname(path), 0o700)
    if os.path.isdir(path) and not os.path.islink(path):
        os.chmod(path, 0o700)
        shutil.rmtree(path, onerror=_make_removable)
    else:
        os.unlink(path)


def is_temporary_name(name: str) -> bool:
    """Whether `name` is one of our temporaries (see TEMP_PATTERN), not a user's file."""
    return TEMP_PATTERN.fullmatch(name) is not None
