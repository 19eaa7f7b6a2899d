"""Run a task graph through doit's own API, so `doit list`/`info` see what the CLI runs.

`run_graph` builds a namespace (DOIT_CONFIG + one task function) for `ModuleTaskLoader` and hands
it to `DoitMain`; the reporter prints nothing on success and one line per user error.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from doit.cmd_base import ModuleTaskLoader
from doit.doit_cmd import DoitMain
from doit.exceptions import TaskFailed
from doit.reporter import ConsoleReporter

from ibtasks.errors import UserError, error_line
from ibtasks.tasks.digest_cache import make_checker
from ibtasks.tasks.run_log import RunLog
from ibtasks.tasks.state_backend import BACKEND_NAME, PLUGIN_LOCATION
from ibtasks.tasks.step import OurUserError
from ibtasks.tasks.why import run_reasons

# doit looks backends up by name among its plugins (see ibtasks.tasks.state_backend).
PLUGINS = {"BACKEND": {BACKEND_NAME: PLUGIN_LOCATION}}


class OneLineReporter(ConsoleReporter):  # type: ignore[misc]
    """Quiet on success; a user error is one `ibtasks: error:` line, a bug shows its traceback."""

    desc = "ibtasks: silent, one line per error"
    verbose = False
    run_log: RunLog | None = None  # set on a class made for one run (`reporter_for`)

    def execute_task(self, task: Any) -> None:
        """With -v, name the task about to run and why (tasks.why; a group task without
        actions is not named); tell the run's log."""
        if not task.actions or not (self.verbose or self.run_log is not None):
            return
        explain = getattr(task, "ib_explain", None)
        reasons = (explain.take_reasons() if explain is not None else None) or run_reasons(task)
        if self.verbose:
            sys.stderr.write(f"ibtasks: running {task.title()}: {'; '.join(reasons)}\n")
        if self.run_log is not None:
            self.run_log.started(task, reasons)

    def add_success(self, task: Any) -> None:
        if self.run_log is not None and task.actions:
            self.run_log.finished(task, failed=False)

    def skip_uptodate(self, task: Any) -> None:
        """An up-to-date task prints nothing; with -v one line (not for group tasks)."""
        if self.verbose and task.actions:
            sys.stderr.write(f"ibtasks: up to date {task.title()}\n")
        if self.run_log is not None and task.actions:
            self.run_log.up_to_date(task)

    def add_failure(self, task: Any, fail: Any) -> None:
        """Our user error (`OurUserError`, from run_step) as one `ibtasks: error:` line; a
        task of someone else's failing (an embedding dodo.py's) with its name and doit's
        message; anything else of ours with its traceback."""
        if isinstance(fail, OurUserError):
            sys.stderr.write(error_line(fail.message))
        elif isinstance(fail, TaskFailed) or not any(
                part.startswith("ib_") for part in task.name.split(":")):
            sys.stderr.write(f"ibtasks: task {task.name} failed: {fail.get_msg().strip()}\n")
            # What its actions printed, which doit captured (its own reporter shows it too).
            said = "".join(f"{getattr(a, 'out', None) or ''}{getattr(a, 'err', None) or ''}"
                           for a in task.actions)
            if said.strip():
                sys.stderr.write(said if said.endswith("\n") else said + "\n")
        else:
            sys.stderr.write(f"ibtasks: internal error in {task.name}:\n{fail.get_msg()}\n")

    def complete_run(self) -> None:
        """doit's own errors (a missing file_dep...) as one line each."""
        for message in self.runtime_errors:
            sys.stderr.write(f"ibtasks: error: {message.strip().splitlines()[-1]}\n")


class VerboseReporter(OneLineReporter):
    """OneLineReporter that also names each task it runs (`-v`). A class of its own: doit hands
    a reporter only its own options, never DOIT_CONFIG's."""

    desc = "ibtasks: one line per task run and per error"
    verbose = True


class IbtasksMain(DoitMain):  # type: ignore[misc]
    """doit's command line under our name (help, `tabcompletion`'s completion function)."""

    BIN_NAME = "ibtasks"

    def run(self, all_args: list[str]) -> Any:
        """doit's `run`, with argv[0] our name while it runs: `tabcompletion` reads
        sys.argv[0] itself (`__main__.py` under `python -m ibtasks`)."""
        saved = sys.argv[:1]
        sys.argv[:1] = [self.BIN_NAME]
        try:
            return super().run(all_args)
        finally:
            sys.argv[:1] = saved


def reporter_for(verbose: bool, run_log: RunLog | None) -> type[OneLineReporter]:
    """Our reporter class (`-v` or not); with `run_log`, a class of its own that feeds it."""
    base = VerboseReporter if verbose else OneLineReporter
    if run_log is None:
        return base
    return type(base.__name__, (base,), {"run_log": run_log})


def _backend_registered() -> bool:
    """Whether a plain `doit` run sees our backend (ibtasks installed with its entry points)."""
    from importlib.metadata import entry_points

    return any(e.name == BACKEND_NAME for e in entry_points(group="doit.BACKEND"))


def doit_config(work: Path, verbose: bool = False, *, registered: bool | None = None,
                run_log: RunLog | None = None) -> dict[str, Any]:
    """DOIT_CONFIG for our graph: a portable JSON dep file written atomically (tasks.state_backend)
    and the digest-caching checker.

    An embedding dodo.py can use it too: `DOIT_CONFIG = doit_config(Path('build/.ibtasks'))`;
    where ibtasks runs from a checkout without its entry points, doit's plain `json` backend is
    used. `registered` says the caller registers the backend itself (run_graph); `run_log`
    records what the run did (tasks.run_log).
    """
    work.mkdir(parents=True, exist_ok=True)
    if registered is None:
        registered = _backend_registered()
    return {
        "dep_file": str(work / "doit-deps.json"),
        "backend": BACKEND_NAME if registered else "json",
        "check_file_uptodate": make_checker(str(work / "digests.json")),
        "reporter": reporter_for(verbose, run_log),
        "verbosity": 0,
    }


def dump_state(dep_file: Path) -> int:
    """`-- dumpdb`: doit's own dumpdb reads dbm files only; ours is JSON, printed sorted (as
    doit's dumpdb prints a dbm file: every task's saved values and file states)."""
    import json

    try:
        state = json.loads(dep_file.read_text())
    except FileNotFoundError:
        state = {}
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {dep_file}: {exc}") from exc
    sys.stdout.write(json.dumps(state, indent=1, sort_keys=True) + "\n")
    return 0


def run_graph(tasks: Callable[[], Iterable[dict[str, Any]]], work: Path,
              argv: Sequence[str] = ("run",), verbose: bool = False,
              cwd: Path | None = None, run_log: RunLog | None = None) -> int:
    """Run doit with `argv` (default: build everything) on the tasks; return doit's exit code.

    With `cwd`, doit runs in that directory (the tasks' relative paths are relative to it; see
    `build_dirs.anchored`), so its record does not depend on where the tree lies.
    """
    config = doit_config(work.absolute(), verbose, registered=True, run_log=run_log)
    if list(argv[:1]) == ["dumpdb"]:
        return dump_state(Path(config["dep_file"]))

    graph: list[dict[str, Any]] = []

    def task_ibtasks() -> Iterable[dict[str, Any]]:
        """ibtasks' tasks of this kind, one per input (see `-- list --all`)."""
        yield from graph

    namespace = {"DOIT_CONFIG": config, "task_ibtasks": task_ibtasks}
    try:
        with contextlib.chdir(cwd) if cwd is not None else contextlib.nullcontext():
            graph.extend(tasks())
            # Every task is a default task, so `-- forget` without a name forgets them all,
            # as in a dodo.py without default_tasks (doit 0.37 fails on None here).
            config["default_tasks"] = list(dict.fromkeys(t["basename"] for t in graph))
            code = IbtasksMain(ModuleTaskLoader(namespace), extra_config=PLUGINS).run(list(argv))
    finally:
        # Now, under the caller's build lock: at exit another build could hold it and take
        # this write's temporary for a killed build's.
        config["check_file_uptodate"].cache.save()
    # doit's commands other than run (forget, clean, ignore, ...) return None on success.
    return 0 if code is None else int(code)
