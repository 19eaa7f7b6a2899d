"""`--watch`: build, then wait for the config or an input file to change (inotify, through
watchfiles), and build again; each rebuild names the tasks it reran (`ibtasks: running ...`).

The folders holding the inputs are watched, not the files, so an editor's or a compiler's
write-and-rename is seen too; only events on the config's own inputs count, never on outputs.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

import watchfiles

from ibtasks.errors import UserError

DEBOUNCE_MS = 300  # a kernel build writes Image in several steps: one rebuild for all of them


def watched_inputs(args: argparse.Namespace) -> set[str]:
    """The absolute paths of every file a build of `args`' config reads (plan.outputs.inputs),
    read quietly: the build has printed the config's warnings already."""
    from ibtasks.config.build import build_config
    from ibtasks.config.load_command import resolve_load_cmd
    from ibtasks.config.loader import read_config_file
    from ibtasks.config.model import Options
    from ibtasks.plan.outputs import inputs

    config_file = Path(args.config)
    found = {os.path.abspath(config_file)}
    load_cmd = getattr(args, "load_cmd", None) or getattr(args, "media", None)
    try:
        raw = read_config_file(config_file, warn=lambda message: None)
        config = build_config(raw, Options(root_dir=Path(args.root), load_cmd=resolve_load_cmd(
            load_cmd) if load_cmd else None))
    except UserError:  # a config that does not build: wait for it (or its files) to change
        return found
    return found | {os.path.abspath(named.path) for named in inputs(config, config_file)}


def watch_and_rebuild(args: argparse.Namespace, build: Callable[[], int],
                      stop: Callable[[], bool] = lambda: False) -> int:
    """Run `build` now and after every change of an input of `args`' config, until
    interrupted (Ctrl-C: KeyboardInterrupt goes up) or `stop()` says so; the last status."""
    code = build()
    while not stop():
        files = watched_inputs(args)
        changed = wait_for_change(files, len(files))
        names = ", ".join(sorted(os.path.relpath(path) for path in changed))
        sys.stderr.write(f"ibtasks: changed: {names}\n")
        code = build()
    return code


def _stamp(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


def wait_for_change(files: set[str], count: int) -> set[str]:
    """Block until one of `files` (absolute paths) is written, created, renamed onto or
    removed; the paths that changed (after DEBOUNCE_MS of quiet). `ibtasks: watching` is
    printed once the watch is live; a file that changed before that is found by its stat."""
    before = {path: _stamp(path) for path in files}
    folders = sorted({os.path.dirname(path) for path in files
                      if os.path.isdir(os.path.dirname(path))})
    announced = False
    for batch in watchfiles.watch(*folders, debounce=DEBOUNCE_MS, recursive=False,
                                  watch_filter=lambda _change, path: path in files,
                                  rust_timeout=200, yield_on_timeout=True,
                                  raise_interrupt=True):
        changed = {path for _change, path in batch}
        if not announced:
            announced = True
            changed |= {path for path, stamp in before.items() if _stamp(path) != stamp}
            if not changed:
                sys.stderr.write(f"ibtasks: watching {count} input files; Ctrl-C stops\n")
                sys.stderr.flush()
        if changed:
            return changed
    return set()
