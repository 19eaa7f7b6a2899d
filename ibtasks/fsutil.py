"""Atomic writes: an output either has its complete new content or does not exist.

Outputs are written to a temporary file in the same directory and renamed over the target, so
an interrupted build never leaves a half-written file that a later build takes as finished.
Every temporary is created exclusively (O_EXCL) under an unpredictable name that starts with
`.<target name>.ibtmp-` (TEMP_MARK), beside its target: a symlink planted at a guessable name
is never followed, and a stale temporary is recognisable by that pattern.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ibtasks.errors import UserError

TEMP_MARK = ".ibtmp-"  # temporaries are named `.<target name>.ibtmp-<random>[suffix]`


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


def write_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `path` through a temporary file and a rename."""
    target = Path(path)
    try:
        fd, tmp = make_temp_beside(target)
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
