"""The no-op fast path: skip loading doit when nothing the last successful run saw has changed.

A no-op through doit costs the import of doit and of our modules (~70 ms); kernel developers
rebuild many times an hour. After each successful run we record the (mtime, size) of every file
the graph read or wrote, the environment variables the config used and what we printed; the next
run with the same command line compares those with a few `stat` calls, using the standard
library only, and replays the output. Any difference falls through to the full doit run.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path


def stamp_path(work: Path, argv: Sequence[str], cwd: str) -> Path:
    """One stamp per command line and working directory."""
    # zlib, not hashlib: importing hashlib (OpenSSL) costs ~3 ms, a tenth of this path.
    text = json.dumps([list(argv), cwd]).encode()
    key = f"{zlib.crc32(text):08x}{zlib.adler32(text):08x}"
    return work / f"last-run-{key}.json"


def _file_state(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_mtime_ns, st.st_size]


def write_stamp(path: Path, files: Iterable[str], environ: dict[str, str | None],
                stdout: str) -> None:
    """Record the state that made this run a success (written atomically)."""
    from ibtasks.fsutil import write_atomic

    record = {
        "files": {f: _file_state(f) for f in sorted(set(files))},
        "environ": environ,
        "stdout": stdout,
    }
    write_atomic(path, json.dumps(record).encode())


def replay_if_unchanged(path: Path) -> str | None:
    """The recorded stdout if every recorded file and variable is as it was, else None."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    for name, value in record["environ"].items():
        if os.environ.get(name) != value:
            return None
    for file, state in record["files"].items():
        if state is None or _file_state(file) != state:
            return None
    return str(record["stdout"])
