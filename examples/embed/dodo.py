"""Embedding ibtasks in your own doit pipeline.

    doit -f examples/embed/dodo.py          # make inputs, then boot.source/boot.scr/boot.dtb
    doit -f examples/embed/dodo.py list     # our tasks (ib_*) beside yours

Your pipeline makes the binaries; `task_boot_files` is created after `inputs` has run
(`create_after`), loads a config (a Python object here; `load_config` reads a file) and yields
ibtasks' tasks. A rebuilt kernel then redoes only what depends on it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from doit import create_after

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1])]

from make_inputs import make_inputs  # noqa: E402

from ibtasks.config.build import build_config  # noqa: E402
from ibtasks.config.model import Options  # noqa: E402
from ibtasks.config.reader import RawConfig, RawValue  # noqa: E402
from ibtasks.tasks.boot import BOOT_TASKS, boot_tasks  # noqa: E402
from ibtasks.tasks.runner import doit_config  # noqa: E402

BUILD = Path(os.environ.get("IBTASKS_EMBED_BUILD", HERE / "build"))

SETTINGS = {
    ("MEMORY_START", None): "0x40000000",
    ("MEMORY_END", None): "0x80000000",
    ("DEVICE_TREE", None): "board.dtb",
    ("XEN", None): "xen",
    ("DOM0_KERNEL", None): "Image",
    ("DOM0_RAMDISK", None): "initrd.cpio",
    ("NUM_DOMUS", None): "1",
    ("DOMU_KERNEL", 0): "Image-domU",
    ("DOMU_RAMDISK", 0): "initrd.cpio",
    ("DOMU_CMD", 0): "console=ttyAMA0 quiet",
}


def example_config() -> Any:
    raw = RawConfig("examples/embed/dodo.py",
                    {key: RawValue(value, "examples/embed/dodo.py") for key, value in
                     SETTINGS.items()})
    return build_config(raw, Options(root_dir=BUILD, load_cmd="tftpb"))


# Our state file (the work dir the tasks use), json backend, and the digest-caching checker.
DOIT_CONFIG = {**doit_config(BUILD / ".ibtasks"), "reporter": "console", "verbosity": 1}


def task_inputs() -> dict[str, Any]:
    """Stand-ins for the binaries your own pipeline builds."""
    names = ["xen", "Image", "Image-domU", "initrd.cpio", "board.dtb"]
    return {
        "actions": [(make_inputs, [BUILD])],
        "targets": [str(BUILD / n) for n in names],
        "file_dep": [str(HERE / "make_inputs.py")],
        "clean": True,
    }


@create_after(executed="inputs", creates=list(BOOT_TASKS))
def task_boot_files() -> Iterator[dict[str, Any]]:
    """ibtasks' graph for the config: ib_check:*, ib_layout, ib_dtb, ib_boot_source, ib_boot_scr."""
    yield from boot_tasks(example_config())
