"""`--watch`: build, then wait for the config or an input file to change (inotify, through
watchfiles), and build again; each rebuild names the tasks it reran (`ibtasks: running ...`).

The folders holding the inputs are watched, not the files, so an editor's or a compiler's
write-and-rename is seen too; only events on the config's own inputs count, never on outputs.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import watchfiles

from ibtasks.errors import UserError, error_line

if TYPE_CHECKING:
    from ibtasks.qemu.interactive import InteractiveBoot

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
        report_change(wait_for_change(files, len(files)))
        code = build()
    return code


class ChangeWatch:
    """`wait_for_change` on the inputs of `args`' config in a background thread, so that the
    console can stay on the terminal meanwhile; `cancel()` ends it."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.files = watched_inputs(args)
        self.changed: set[str] = set()
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._wait, daemon=True)
        self._thread.start()

    def _wait(self) -> None:
        try:
            self.changed = wait_for_change(self.files, len(self.files), self._stop)
        finally:
            self._done.set()

    def has_changed(self) -> bool:
        """True once an input changed."""
        return self._done.is_set()

    def wait(self) -> set[str]:
        """Block until an input changes (Ctrl-C still interrupts); the files that changed."""
        while not self._done.wait(0.5):
            pass
        return self.changed

    def cancel(self) -> None:
        """Stop watching."""
        self._stop.set()
        self._thread.join()


def report_change(changed: set[str]) -> None:
    """`ibtasks: changed: <files>`, relative to the current folder."""
    names = ", ".join(sorted(os.path.relpath(path) for path in changed))
    sys.stderr.write(f"ibtasks: changed: {names}\n")
    sys.stderr.flush()


def watch_and_reboot(args: argparse.Namespace, build: Callable[[], int],
                     start: Callable[[], InteractiveBoot]) -> int:
    """`run --watch` with the console on the terminal: build, boot with `start`, and share the
    console until an input changes; then take the terminal back, rebuild (naming the tasks
    that reran), stop QEMU and boot again. After the user quits QEMU, wait for the next
    change. Runs until interrupted (Ctrl-C while no console is shared: KeyboardInterrupt
    goes up); a build or a boot that fails waits for the next change."""
    code = build()
    while True:
        watch = ChangeWatch(args)
        try:
            sys.stderr.write(f"ibtasks: watching {len(watch.files)} input files; a change "
                             "rebuilds and boots again\n")
            session = None
            if code == 0:
                try:
                    session = start()
                except UserError as exc:
                    sys.stderr.write(error_line(str(exc)))
            try:
                if session is not None and not session.share_console(watch.has_changed):
                    sys.stderr.write("\r\nibtasks: QEMU ended; watching for the next change, "
                                     "Ctrl-C stops\n")
                changed = watch.wait()
                sys.stderr.write("\r\n")
                report_change(changed)
                try:
                    code = build()
                except UserError as exc:
                    sys.stderr.write(error_line(str(exc)))
                    code = 1
            finally:
                if session is not None:
                    session.quit()
        finally:
            watch.cancel()


def _stamp(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


def wait_for_change(files: set[str], count: int,
                    stop_event: threading.Event | None = None) -> set[str]:
    """Block until one of `files` (absolute paths) is written, created, renamed onto or
    removed; the paths that changed (after DEBOUNCE_MS of quiet), or none once `stop_event`
    is set. `ibtasks: watching` is printed once the watch is live (not with a `stop_event`:
    the console may be on the terminal); a file that changed before that is found by its
    stat."""
    before = {path: _stamp(path) for path in files}
    folders = sorted({os.path.dirname(path) for path in files
                      if os.path.isdir(os.path.dirname(path))})
    announced = False
    for batch in watchfiles.watch(*folders, debounce=DEBOUNCE_MS, recursive=False,
                                  watch_filter=lambda _change, path: path in files,
                                  rust_timeout=200, yield_on_timeout=True,
                                  raise_interrupt=True, stop_event=stop_event):
        changed = {path for _change, path in batch}
        if not announced:
            announced = True
            changed |= {path for path, stamp in before.items() if _stamp(path) != stamp}
            if not changed and stop_event is None:
                sys.stderr.write(f"ibtasks: watching {count} input files; Ctrl-C stops\n")
                sys.stderr.flush()
        if changed:
            return changed
    return set()
