"""Two boards in one doit pipeline, with one dep file, and a task of yours after our boot.scr.

    doit -f examples/boards/dodo.py                 # both boards, then the TFTP root
    doit -f examples/boards/dodo.py list --all      # board-a:ib_layout, board-b:ib_dtb, ...
    doit -f examples/boards/dodo.py 'board-b:*'     # one board's tasks

Each board has its own binaries and config; `ibtasks.boot_tasks(config, name=BOARD)` puts every
task under the board's name (`board-a:ib_boot_scr`) and its work files in
`<board>/.ibtasks/<board>/`, so a new kernel for board-a reruns board-a's tasks only.
`task_tftp_root` is yours: it copies each board's boot.scr and edited DTB to a TFTP root
(`file_dep` on our targets) and writes the U-Boot line that loads the script, with the script's
address from `<board>:ib_layout` (`getargs`).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from doit import create_after

import ibtasks

HERE = Path(__file__).resolve().parent
BUILD = Path(os.environ.get("IBTASKS_BOARDS_BUILD", HERE / "build"))
# The stand-in binaries of examples/embed (real arm64 Image headers, a cpio, a DTB from dtc).
sys.path.insert(0, str(HERE.parent / "embed"))
from make_inputs import make_inputs  # noqa: E402

BOARDS = {"board-a": "0x40000000", "board-b": "0x48000000"}
INPUTS = ["xen", "Image", "Image-domU", "initrd.cpio", "board.dtb"]

DOIT_CONFIG = {**ibtasks.doit_config(BUILD / ".ibtasks"), "reporter": "console", "verbosity": 1}


def board_config(board: str) -> ibtasks.Config:
    """One board's config: its own folder of binaries, its own memory start."""
    settings = {
        "MEMORY_START": BOARDS[board], "MEMORY_END": "0x80000000",
        "DEVICE_TREE": "board.dtb", "XEN": "xen", "DOM0_KERNEL": "Image",
        "DOM0_RAMDISK": "initrd.cpio", "NUM_DOMUS": 1, "DOMU_KERNEL[0]": "Image-domU",
    }
    return ibtasks.config_from_mapping(
        settings, ibtasks.Options(root_dir=BUILD / board, load_cmd="tftpb"),
        source=f"boards/dodo.py ({board})")


def task_inputs() -> Iterator[dict[str, Any]]:
    """Stand-ins for the binaries your pipeline builds, one set per board."""
    for board in BOARDS:
        yield {
            "name": board,
            "actions": [(make_inputs, [BUILD / board])],
            "targets": [str(BUILD / board / n) for n in INPUTS],
            "uptodate": [True],
            "clean": True,
        }


@create_after(executed="inputs", creates=[
    n for board in BOARDS for n in ibtasks.boot_task_names(name=board)])
def task_boards() -> Iterator[dict[str, Any]]:
    """ibtasks' graph of each board, under the board's name."""
    for board in BOARDS:
        yield from ibtasks.boot_tasks(board_config(board), name=board)


def copy_to_tftp(board: str, files: list[str], script: int) -> None:
    """Copy a board's boot files to BUILD/tftp/<board>/ and write the line that loads them."""
    folder = BUILD / "tftp" / board
    folder.mkdir(parents=True, exist_ok=True)
    for name in files:
        shutil.copyfile(BUILD / board / name, folder / name)
    (folder / "uboot.txt").write_text(
        f"tftpb {script:#x} {board}/boot.scr; source {script:#x}\n")


def task_tftp_root() -> Iterator[dict[str, Any]]:
    """Yours: each board's boot.scr and boot.dtb in a TFTP root, after ibtasks wrote them
    (`task_dep` by name: our tasks are created later, after the inputs)."""
    files = ["boot.scr", "boot.dtb"]
    for board in BOARDS:
        yield {
            "name": board,
            "actions": [(copy_to_tftp, [board, files])],
            "getargs": {"script": (f"{board}:ib_layout", "UBOOT_SCRIPT")},
            "task_dep": [f"{board}:ib_boot_scr", f"{board}:ib_dtb"],
            "file_dep": [str(BUILD / board / n) for n in files],
            "targets": [str(BUILD / "tftp" / board / n) for n in [*files, "uboot.txt"]],
            "clean": True,
        }
