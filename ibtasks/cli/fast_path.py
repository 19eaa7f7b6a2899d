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

import ibtasks

# uboot-script-gen's options that take a value (see cli.build_parser), and disk-image's.
VALUE_FLAGS = frozenset({"-c", "-d", "-t", "-o", "-p", "-k", "-u", "--output-dir", "--cache",
                         "--memory-map-svg"})
DISK_VALUE_FLAGS = frozenset({"-c", "-d", "-t", "-o", "-s", "--boot-fs", "--table",
                              "--boot-size", "-j", "--cache"})


def stamp_for(argv: Sequence[str], cwd: str) -> str | None:
    """The stamp file of a `uboot-script-gen` or `disk-image` command line, or None if it gets
    none (also disk-image with `-w`, whose folder has a lock of its own).

    Read from argv with os.path only (argparse and pathlib cost ~9 ms, a third of a no-op):
    writer and reader call this same function, so a command line it cannot place (`-d.`, doit
    arguments after `--`) simply never takes the fast path.
    """
    if not argv or argv[0] not in ("uboot-script-gen", "disk-image") or "--" in argv:
        return None
    flags = VALUE_FLAGS if argv[0] == "uboot-script-gen" else DISK_VALUE_FLAGS
    if argv[0] == "disk-image" and "-w" in argv:
        return None
    root = out = None
    i = 1
    while i < len(argv):
        if argv[i] in flags and i + 1 < len(argv):
            if argv[i] == "-d":
                root = argv[i + 1]
            elif argv[i] == "--output-dir":
                out = argv[i + 1]
            i += 2
            continue
        i += 1
    directory = out or root
    if directory is None:
        return None
    # zlib, not hashlib: importing hashlib (OpenSSL) costs ~3 ms, a tenth of this path.
    # The version too: an upgraded ibtasks never replays an older one's run.
    text = json.dumps([list(argv), cwd, ibtasks.__version__]).encode()
    key = f"{zlib.crc32(text):08x}{zlib.adler32(text):08x}"
    return os.path.join(directory, ".ibtasks", f"last-run-{key}.json")


def _file_state(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_mtime_ns, st.st_size]


def write_stamp(path: str, files: Iterable[str], environ: dict[str, str | None],
                stdout: str) -> None:
    """Record the state that made this run a success (written atomically)."""
    from ibtasks.fsutil import write_atomic

    record = {
        "files": {f: _file_state(f) for f in sorted(set(files))},
        "environ": environ,
        "stdout": stdout,
    }
    write_atomic(path, json.dumps(record).encode())


def lock_for(stamp: str) -> str:
    """The build lock of the state folder a stamp lives in (see ibtasks.tasks.build_lock)."""
    return os.path.join(os.path.dirname(stamp), "lock")


def replay_if_unchanged(path: str) -> str | None:
    """The recorded stdout if every recorded file and variable is as it was, else None.

    Checked holding the build lock shared, and never while a build holds it: a build in progress
    may be rewriting the files the stamp describes. An unreadable stamp gives None (the full
    path sets it aside).
    """
    from ibtasks.tasks.build_lock import try_shared_lock

    fd = try_shared_lock(lock_for(path))
    if fd is None:
        return None
    try:
        return _replay(path)
    finally:
        os.close(fd)


def _replay(path: str) -> str | None:
    try:
        with open(path) as f:
            record = json.load(f)
        for name, value in record["environ"].items():
            if os.environ.get(name) != value:
                return None
        for file, state in record["files"].items():
            if state is None or _file_state(file) != state:
                return None
        return str(record["stdout"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def remove_stamp(path: str) -> None:
    """Forget the last run (before a build: a failed build must not be replayed)."""
    try:
        os.unlink(path)
    except OSError:
        pass  # none yet, or no readable work dir: the build itself reports what is wrong
