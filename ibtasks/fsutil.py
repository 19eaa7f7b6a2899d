"""Atomic writes: an output either has its complete new content or does not exist.

Outputs are written to a temporary file in the same directory and renamed over the target, so
an interrupted build never leaves a half-written file that a later build takes as finished.
Every temporary carries TEMP_MARK in its name, so that the next build can tell a temporary that a
killed build left from a user's file and remove it (see ibtasks.ownership).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from ibtasks.errors import UserError

TEMP_MARK = ".ibtasks-"
# `.<name>.ibtasks-XXXXXXXX.tmp` (write_atomic) and `.<name>.ibtasks-XXXXXXXX/` (a rootfs tree):
# tempfile's random part is 8 characters of [a-z0-9_].
TEMP_PATTERN = re.compile(r"\..+\.ibtasks-[a-z0-9_]{8}(\.tmp)?")


def write_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `path` through a temporary file and a rename."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}{TEMP_MARK}",
                                   suffix=".tmp")
    except OSError as exc:
        raise UserError(f"cannot write {target}: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise UserError(f"cannot write {target}: {exc.strerror}") from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
