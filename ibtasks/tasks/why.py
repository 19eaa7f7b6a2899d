"""Why doit runs a task: the reasons `-v` prints (`ibtasks: running ib_dtb: DEVICE_TREE's file
mpsoc.dtb changed`) and that `--json` records, from doit's own up-to-date check.

`ExplainRun` rides in each of our tasks' `uptodate` list (it never decides anything): doit
hands it its dependency manager, and it saves the task's input payload after each success, so
a later run can name the settings that changed, not only that the digest differs. For any task
(a user's own in an embedding dodo.py too) `run_reasons` asks doit's `get_status` with its log.

Our tasks' reasons are taken while doit checks the task, before it is dispatched (`ExplainRun`
is called inside that check): doit's process runner tells the reporter a task started only
when the child running it says so, and by then the child may have rewritten the task's targets,
so reasons asked at that moment would name the task's own fresh writes.
"""

from __future__ import annotations

from typing import Any

from doit.dependency import UptodateCalculator

INPUT_KEY = "_ibtasks_input"


class ExplainRun(UptodateCalculator):  # type: ignore[misc]
    """An `uptodate` entry that keeps doit's dependency manager for `run_reasons` and saves
    the task's input `payload` (JSON) after each successful run; its check is always None
    (doit ignores it)."""

    def __init__(self, payload: dict[str, Any]) -> None:
        super().__init__()
        self.payload = payload
        self.dep_manager: Any = None
        self.tasks_dict: dict[str, Any] = {}
        self.reasons: list[str] | None = None  # as of doit's last check of the task
        self._explaining = False

    def setup(self, dep_manager: Any, tasks_dict: dict[str, Any]) -> None:
        """doit calls this before each check, with its dependency manager and tasks."""
        super().setup(dep_manager, tasks_dict)
        self.dep_manager = dep_manager
        self.tasks_dict = tasks_dict

    def configure_task(self, task: Any) -> None:
        """doit calls this once per task: save the payload after each success."""
        task.value_savers.append(lambda: {INPUT_KEY: self.payload})
        task.ib_explain = self

    def __call__(self, task: Any, values: dict[str, Any]) -> None:
        """doit's check of `task`: record why it would run now (`reasons`; the check asked
        for them calls this again, which then does nothing); decide nothing."""
        if not self._explaining and self.dep_manager is not None:
            self._explaining = True
            try:
                self.reasons = run_reasons(task, self.dep_manager, self.tasks_dict)
            finally:
                self._explaining = False
        return None

    def take_reasons(self) -> list[str] | None:
        """The reasons of doit's last check, once (None when there was none since)."""
        reasons, self.reasons = self.reasons, None
        return reasons

    def __getstate__(self) -> dict[str, Any]:
        # doit's process runner sends each task's attributes back to the parent by pickle:
        # the dependency manager (open state files) and the task list stay behind.
        return {**self.__dict__, "dep_manager": None, "get_val": None, "tasks_dict": {}}


def changed_settings(before: Any, after: Any, prefix: str = "") -> list[str]:
    """The dotted names of the fields that differ between two JSON payloads (a list or a
    value that differs is named as a whole)."""
    if isinstance(before, dict) and isinstance(after, dict):
        names: list[str] = []
        for key in sorted(set(before) | set(after), key=str):
            names += changed_settings(before.get(key), after.get(key), f"{prefix}{key}.")
        return names
    return [] if before == after else [prefix.rstrip(".") or "input"]


def run_reasons(task: Any, dep_manager: Any = None, tasks_dict: dict[str, Any] | None = None
                ) -> list[str]:
    """Why doit is about to run `task` (before its action runs): each changed, added or
    missing file, each changed setting of our tasks, a missing target, or 'first run'.

    `dep_manager` defaults to the one our `ExplainRun` kept; a task without either (a user's
    task) gives the file_deps doit found changed or without a record, or why doit always runs
    it."""
    explain = getattr(task, "ib_explain", None)
    manager = dep_manager or (explain.dep_manager if explain is not None else None)
    if manager is None:  # doit keeps its log to itself: what it left on the task
        changed = [f"{dep} changed or not recorded yet"
                   for dep in sorted(getattr(task, "dep_changed", []) or [])]
        if changed:
            return changed
        if not task.file_dep and not task.uptodate:
            return ["no file_dep or uptodate: doit runs it every time"]
        return ["not up to date for doit"]
    tasks = tasks_dict if tasks_dict is not None else getattr(explain, "tasks_dict", {})
    status = manager.get_status(task, tasks, get_log=True)
    reasons = status.reasons
    values = manager.get_values(task.name)
    reasons_text: list[str] = []
    if not values and not manager._get(task.name, "deps:"):  # doit's record of the task
        return ["first run (no record)"]
    for check, _, _ in reasons.get("uptodate_false") or []:
        kind = type(check).__name__
        if kind == "config_changed":
            saved = values.get(INPUT_KEY) or {}
            changed = (changed_settings(saved.get("input"), explain.payload.get("input"))
                       if explain is not None else [])
            reasons_text.append("settings changed: " + ", ".join(changed) if changed else
                                "settings or ibtasks version changed")
        elif kind == "TargetsAsWritten" and not reasons.get("missing_target"):
            reasons_text.append("a target is not what its last run wrote")
        elif kind != "TargetsAsWritten":
            reasons_text.append(f"uptodate check {check!r} is false")
    for name, label in (("missing_target", "missing target"),
                        ("changed_file_dep", "changed"), ("added_file_dep", "new file_dep"),
                        ("removed_file_dep", "file_dep removed")):
        reasons_text += [f"{label} {path}" if label != "changed" else f"{path} changed"
                         for path in sorted(reasons.get(name) or [])]
    if reasons.get("has_no_dependencies"):
        reasons_text.append("no dependencies: always runs")
    if reasons.get("checker_changed"):
        reasons_text.append("file checker changed")
    return reasons_text or ["doit chose to run it (forced or always_execute)"]
