"""What every task action shares: the task dict type, and the wrapper that turns a user error
into doit's `TaskFailed` (printed as one `ibtasks: error:` line by our reporter)."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from typing import Any

from doit.exceptions import TaskFailed

from ibtasks.errors import UserError
from ibtasks.lifetime import die_with_parent_now

TaskDict = dict[str, Any]


class OurUserError(TaskFailed):  # type: ignore[misc]
    """doit's `TaskFailed` for a `UserError` of ours: the reporter prints it as one
    `ibtasks: error:` line, while other failures name their task."""


def run_step(func: Callable[..., None], *args: Any) -> TaskFailed | None:
    """Run one action `func(*args)`; a `UserError` becomes doit's `TaskFailed` with our
    one-line message (anything else is a bug and keeps its traceback)."""
    if multiprocessing.parent_process() is not None:
        # A worker of doit's process runner (disk-image -j): it dies with the build, as every
        # tool we start does, so a killed build leaves nothing running or holding its lock.
        die_with_parent_now()
    try:
        func(*args)
    except UserError as exc:
        return OurUserError(str(exc))
    return None
