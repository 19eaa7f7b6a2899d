"""Atomic writes: an output either has its complete new content or does not exist.

Outputs are written to a temporary file in the same directory and renamed over the target, so
an interrupted build never leaves a half-written file that a later build takes as finished.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ibtasks.errors import UserError


def write_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `path` through a temporary file and a rename."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
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
