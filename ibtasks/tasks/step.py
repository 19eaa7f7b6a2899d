"""What every task action shares: the task dict type, and the wrapper that turns a user error
into doit's `TaskFailed` (printed as one `ibtasks: error:` line by our reporter)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from doit.exceptions import TaskFailed

from ibtasks.errors import UserError

TaskDict = dict[str, Any]


class OurUserError(TaskFailed):  # type: ignore[misc]
    """doit's `TaskFailed` for a `UserError` of ours: the reporter prints it as one
    `ibtasks: error:` line, while other failures name their task."""


def run_step(func: Callable[..., None], *args: Any) -> TaskFailed | None:
    """Run one action `func(*args)`; a `UserError` becomes doit's `TaskFailed` with our
    one-line message (anything else is a bug and keeps its traceback)."""
    try:
        func(*args)
    except UserError as exc:
        return OurUserError(str(exc))
    return None
