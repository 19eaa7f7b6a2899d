"""The no-op fast path of `disk-image` (see cli.fast_path): after a successful run that warned
of nothing, record the state of every file its graph read or wrote, so the next identical command
line replays before doit is imported.

The files are each task's `file_dep` and `targets` (boot files, archives, partition images and
their records, disk.img and its record), the config file, doit's and our state files, and the
mke2fs program (an upgraded e2fsprogs builds differently); the variables are those the config
expanded, SOURCE_DATE_EPOCH, LOAD_CMD and IBTASKS_EXT4_PATH.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ibtasks.cli.fast_path import write_stamp
from ibtasks.errors import UserError
from ibtasks.formats.rootfs import PATH_VARIABLE
from ibtasks.tools import MKE2FS, find_tool


def _state_files(state: Path) -> Iterable[Path]:
    yield from (state / name for name in ("doit-deps.json", "digests.json", "layout.json",
                                          "outputs.json"))
    for folder in ("check", "generated"):
        if (state / folder).is_dir():
            yield from (state / folder).iterdir()


def record_disk_run(stamp: str, config_file: str, environ_used: Iterable[str],
                    tasks: Iterable[Mapping[str, Any]], anchor: Path, state: Path,
                    stdout: str = "") -> None:
    """Write the stamp of a successful disk-image run whose tasks ran in `anchor` (their paths
    are relative to it) with doit's state in `state`; `stdout` is what a replay prints."""
    files = {config_file, *(str(p) for p in _state_files(state))}
    for task in tasks:
        for name in [*task.get("file_dep", ()), *task.get("targets", ())]:
            files.add(str(anchor / name))
    try:
        files.add(find_tool(MKE2FS))
    except UserError:
        pass  # no rootfs partition needs it
    names = [*environ_used, "SOURCE_DATE_EPOCH", "LOAD_CMD", PATH_VARIABLE]
    write_stamp(stamp, [f for f in files if os.path.exists(f)],
                {n: os.environ.get(n) for n in names}, stdout)
