"""Task names of one board among several: a name puts every task of a generator under it.

doit wants task names unique in a dodo.py and its dep file. `boot_tasks(config, name="board-a")`
yields `board-a:ib_layout`, `board-a:ib_check:XEN` (a subtask of `board-a:ib_check`), ...; the
work files (checks, layout.json, partition images) go to `.ibtasks/board-a/`, so boards sharing
an output directory do not share them. No name keeps today's names (`ib_layout`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from ibtasks.errors import UserError
from ibtasks.tasks.step import TaskDict

# A name is one path component and one word of doit's command line: no ':' (doit's subtask
# separator), '/', '*' or blanks.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


def check_task_namespace(name: str) -> str:
    """`name` if it can prefix task names and name a work folder; else raise `UserError`."""
    if not NAME_PATTERN.fullmatch(name):
        raise UserError(f"task name '{name}': expected letters, digits and '_.+-' (a board "
                        "name such as 'board-a'), starting with a letter or digit")
    return name


def namespaced_name(name: str | None, task: str) -> str:
    """The full name of our task `task` (`ib_layout`, `ib_check:XEN`) under `name`."""
    return task if not name else f"{name}:{task}"


def namespaced(name: str | None, tasks: Iterable[TaskDict]) -> Iterator[TaskDict]:
    """`tasks` with each basename under `name` (unchanged when `name` is None or empty), and
    each `task_dep` or `setup` that names one of our tasks (`ib_*`) renamed the same way."""
    if not name:
        yield from tasks
        return
    check_task_namespace(name)
    for task in tasks:
        renamed = {**task, "basename": namespaced_name(name, task["basename"])}
        for field in ("task_dep", "setup"):
            if field in task:
                renamed[field] = [namespaced_name(name, t) if t.startswith("ib_") else t
                                  for t in task[field]]
        yield renamed
