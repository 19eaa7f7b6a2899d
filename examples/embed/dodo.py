"""Embedding ibtasks in your own doit pipeline, through its public API (`import ibtasks`).

    doit -f examples/embed/dodo.py          # make inputs, then boot.source/boot.scr/boot.dtb
    doit -f examples/embed/dodo.py list     # our tasks (ib_*) beside yours

Your pipeline makes the binaries; `task_boot_files` is created after `inputs` has run
(`create_after`), validates a config kept here as a mapping (`ibtasks.load_config` reads a
file instead) and yields ibtasks' tasks. A rebuilt kernel then redoes only what depends on it.
`make_inputs` is this folder's module: doit puts the dodo's folder on `sys.path`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from doit import create_after
from make_inputs import make_inputs

import ibtasks

HERE = Path(__file__).resolve().parent
BUILD = Path(os.environ.get("IBTASKS_EMBED_BUILD", HERE / "build"))

SETTINGS = {
    "MEMORY_START": "0x40000000",
    "MEMORY_END": "0x80000000",
    "DEVICE_TREE": "board.dtb",
    "XEN": "xen",
    "DOM0_KERNEL": "Image",
    "DOM0_RAMDISK": "initrd.cpio",
    "NUM_DOMUS": 1,
    "DOMU_KERNEL[0]": "Image-domU",
    "DOMU_RAMDISK[0]": "initrd.cpio",
    "DOMU_CMD[0]": "console=ttyAMA0 quiet",
}


def example_config() -> ibtasks.Config:
    """The config, validated once the inputs exist (a missing one is an `ibtasks.UserError`)."""
    return ibtasks.config_from_mapping(
        SETTINGS, ibtasks.Options(root_dir=BUILD, load_cmd="tftpb"), source="embed/dodo.py")


# Our state file (the work dir the tasks use), json backend, and the digest-caching checker.
DOIT_CONFIG = {**ibtasks.doit_config(BUILD / ".ibtasks"), "reporter": "console", "verbosity": 1}


def task_inputs() -> dict[str, Any]:
    """Stand-ins for the binaries your own pipeline builds."""
    names = ["xen", "Image", "Image-domU", "initrd.cpio", "board.dtb"]
    return {
        "actions": [(make_inputs, [BUILD])],
        "targets": [str(BUILD / n) for n in names],
        "file_dep": [str(HERE / "make_inputs.py")],
        "clean": True,
    }


@create_after(executed="inputs", creates=list(ibtasks.BOOT_TASKS))
def task_boot_files() -> Iterator[dict[str, Any]]:
    """ibtasks' graph for the config: ib_check:*, ib_layout, ib_dtb, ib_boot_source, ib_boot_scr."""
    yield from ibtasks.boot_tasks(example_config())
