"""What doit records for each of our tasks, so that its record never vouches for stale bytes.

doit decides a task is up to date from its own record: the file_deps' digests, the
`config_changed` payload, and that the targets exist. A target that another run rewrote (the
same task name for another output set, `-o a` then `-o b`; another dep file, `disk-image -w`
elsewhere; another disk image from the same partitions) still exists, so doit would keep it.
Every task therefore carries two checks, made by `task_uptodate`:

- its payload includes the ibtasks version, so an upgrade reruns every task whose output the
  new version could write differently;
- `TargetsAsWritten`: the targets are still what this record's last successful run left. Small
  outputs (scripts, DTBs, JSON, FIT, uImage) are compared by (size, mtime) and, when those
  changed, by content, so a copied tree (new mtimes, another path) reruns nothing; partition
  images and disk images, too large to hash after every build, by (size, mtime, inode).

No paths go into the record: payloads hold names relative to the -d or output directory.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from doit.tools import config_changed

import ibtasks
from ibtasks.fsutil import file_sha256
from ibtasks.tasks.why import ExplainRun

TARGETS_KEY = "_ibtasks_targets"


def task_uptodate(payload: dict[str, Any], *, by_content: bool = True) -> list[Any]:
    """The `uptodate` list of one task: its settings `payload` (JSON-serialisable, without
    absolute paths) with the ibtasks version, and the check of its targets (`by_content`
    False: by size, mtime and inode only, for images of hundreds of MiB)."""
    full = {**payload, "ibtasks": ibtasks.__version__}
    return [config_changed(full), TargetsAsWritten(by_content), ExplainRun(full)]


class TargetsAsWritten:
    """A doit `uptodate` check: the task's targets are the files its last successful run left.

    After each successful run it saves, per target in order, [size, mtime_ns, inode, sha256]
    (the digest None without `by_content`); a later run is up to date only if every target
    still has them all, or, by content, the same size and digest. Targets are taken in order,
    not by path, so a moved tree keeps the record valid.
    """

    def __init__(self, by_content: bool = True) -> None:
        self.by_content = by_content

    def configure_task(self, task: Any) -> None:
        """doit calls this once per task: save the targets' identity after each success.
        (`tasks.why.ExplainRun`, the list's third entry, keeps the payload for -v's reasons.)"""
        task.value_savers.append(lambda: {TARGETS_KEY: self.identify(task.targets)})

    def identify(self, targets: Sequence[str]) -> list[list[Any] | None]:
        """[size, mtime_ns, inode, digest] of each target, None for a missing one."""
        found: list[list[Any] | None] = []
        for target in targets:
            try:
                st = os.stat(target)
                digest = file_sha256(target) if self.by_content else None
            except OSError:
                found.append(None)
                continue
            found.append([st.st_size, st.st_mtime_ns, st.st_ino, digest])
        return found

    def __call__(self, task: Any, values: dict[str, Any]) -> bool:
        saved = values.get(TARGETS_KEY)
        if not isinstance(saved, list) or len(saved) != len(task.targets):
            return False
        return all(self._matches(target, entry) for target, entry in zip(task.targets, saved,
                                                                         strict=True))

    def _matches(self, target: str, entry: Any) -> bool:
        if not isinstance(entry, list) or len(entry) != 4:
            return False
        try:
            st = os.stat(target)
            if st.st_size != entry[0]:
                return False
            if [st.st_mtime_ns, st.st_ino] == entry[1:3]:
                return True
            return bool(self.by_content and file_sha256(target) == entry[3])
        except OSError:
            return False
