"""Build the examples: `doit` here runs each example's own dodo.py.

    doit                 # embed (synthetic inputs) and qemu-virt (Debian binaries, boots QEMU)
    doit embed           # just the embedding example
"""

from __future__ import annotations

import sys
from typing import Any

DOIT_CONFIG = {"default_tasks": ["embed", "qemu_virt"], "backend": "json",
               "dep_file": ".doit-examples.json", "verbosity": 2}


def task_embed() -> dict[str, Any]:
    """examples/embed: ibtasks' tasks inside another project's doit pipeline."""
    return {"actions": [[sys.executable, "-m", "doit", "-f", "examples/embed/dodo.py"]],
            "uptodate": [False]}


def task_boards() -> dict[str, Any]:
    """examples/boards: two boards and a user's TFTP task in one pipeline."""
    return {"actions": [[sys.executable, "-m", "doit", "-f", "examples/boards/dodo.py"]],
            "uptodate": [False]}


def task_qemu_virt() -> dict[str, Any]:
    """examples/qemu-virt: a real Xen dom0less system booted under QEMU."""
    return {"actions": [[sys.executable, "-m", "doit", "-f", "examples/qemu-virt/dodo.py"]],
            "uptodate": [False]}
