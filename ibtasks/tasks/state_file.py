"""State files that heal: one that cannot be read is set aside with one warning, never a traceback.

A build killed while writing, a full disk or an editor can leave a state file (doit's dep file,
the digest cache, the record of our outputs, layout.json, a check record, a no-op stamp)
truncated or garbled. Every later build would then stop with a traceback until the user deleted
`.ibtasks`. Instead the file is renamed to `<name>.corrupt` (kept for a bug report), one
`ibtasks: warning:` line says so, and the build starts that part of its state afresh.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

from ibtasks.errors import UserError

CORRUPT_SUFFIX = ".corrupt"


def set_aside(path: str | os.PathLike[str], why: str) -> None:
    """Rename the unreadable state file `path` to `path.corrupt` and warn in one line.

    Raises UserError when it cannot be renamed (an unwritable state folder).
    """
    name = os.fspath(path)
    try:
        os.replace(name, name + CORRUPT_SUFFIX)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise UserError(f"{name}: cannot be read ({why}) nor set aside: {exc.strerror}") from exc
    sys.stderr.write(f"ibtasks: warning: {os.path.normpath(name)}: unreadable ({why}); "
                     f"set aside as {os.path.basename(name)}{CORRUPT_SUFFIX}, starting afresh\n")


def read_state(path: str | os.PathLike[str], valid: Callable[[Any], bool]) -> Any | None:
    """The JSON value of the state file `path`, or None when it does not exist.

    A file that is not JSON, or whose value `valid` rejects, is set aside (see `set_aside`) and
    None returned. Raises UserError when the file exists but cannot be opened.
    """
    try:
        with open(path, "rb") as f:
            text = f.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UserError(f"{os.fspath(path)}: cannot read: {exc.strerror}") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        why = str(exc.args[0]) if exc.args else "not JSON"
    else:
        if valid(data):
            return data
        why = "not the expected content"
    set_aside(path, why)
    return None


def is_object(data: Any) -> bool:
    """A JSON object (what every state file of ours holds at the top)."""
    return isinstance(data, dict)


def check_state_file(path: str | os.PathLike[str],
                     valid: Callable[[Any], bool] = is_object) -> None:
    """Set `path` aside if it exists and cannot be read (see `read_state`)."""
    read_state(path, valid)
