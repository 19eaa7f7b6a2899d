"""What one doit run did, task by task: which ran (and why, from tasks.why), which were up to
date, which failed, how long each took. `--json` prints it; the disk progress display
(cli.progress) is told of each step as it starts and ends.

Our reporter (tasks.runner) feeds a `RunLog`: doit creates its reporter itself, so the log rides
on a reporter class made for that one run (`reporter_for`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["ran", "up to date", "failed"]


@dataclass
class TaskRecord:
    """One task of a run: its doit name, what became of it, why it ran (doit's reasons in our
    words), its targets (paths as doit has them, relative to the output directory) and its
    time in seconds (None when it did not run)."""

    name: str
    status: Status
    reasons: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)
    seconds: float | None = None


class RunListener:
    """Told of each step as a run goes: subclass it (cli.progress); every method does nothing
    here. `task` is doit's Task (its `name`, `targets`, `file_dep`)."""

    def step_started(self, task: Any, record: TaskRecord) -> None:
        """A task is about to run."""

    def step_finished(self, task: Any, record: TaskRecord) -> None:
        """A task ran (record.status 'ran') or failed ('failed')."""

    def step_up_to_date(self, task: Any, record: TaskRecord) -> None:
        """A task was up to date."""


class RunLog:
    """The records of one run, in the order doit reached the tasks (group tasks without
    actions left out), and an optional `listener` told of each as it happens."""

    def __init__(self, listener: RunListener | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.records: list[TaskRecord] = []
        self.listener = listener or RunListener()
        self._clock = clock
        self._started: dict[str, float] = {}

    def started(self, task: Any, reasons: list[str]) -> None:
        record = TaskRecord(task.name, "ran", list(reasons), [str(t) for t in task.targets])
        self.records.append(record)
        self._started[task.name] = self._clock()
        self.listener.step_started(task, record)

    def finished(self, task: Any, failed: bool) -> None:
        record = self._record(task)
        if record is None:  # failed before it started (a missing file_dep)
            record = TaskRecord(task.name, "failed", targets=[str(t) for t in task.targets])
            self.records.append(record)
        if task.name in self._started:
            record.seconds = round(self._clock() - self._started.pop(task.name), 3)
        if failed:
            record.status = "failed"
        self.listener.step_finished(task, record)

    def up_to_date(self, task: Any) -> None:
        record = TaskRecord(task.name, "up to date", targets=[str(t) for t in task.targets])
        self.records.append(record)
        self.listener.step_up_to_date(task, record)

    def _record(self, task: Any) -> TaskRecord | None:
        return next((r for r in reversed(self.records) if r.name == task.name), None)

    def names(self, status: Status) -> list[str]:
        """The tasks that ended with `status`, in order."""
        return [r.name for r in self.records if r.status == status]
