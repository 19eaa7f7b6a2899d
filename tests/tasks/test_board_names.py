"""Several boards in one dodo.py and one dep file: a name puts every task of our generators
under it; doit's own JSON record says which tasks ran after each change."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import ibtasks
from ibtasks.tasks.namespace import namespaced
from tests.conftest import REPO


def run_boards(build: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "doit", "-f", "examples/boards/dodo.py", *args],
                          cwd=REPO, env={**os.environ, "IBTASKS_BOARDS_BUILD": str(build)},
                          capture_output=True, text=True)


def ran(build: Path) -> set[str]:
    """The tasks whose actions ran in a build, from doit's JSON reporter."""
    result = run_boards(build, "run", "--reporter", "json")
    assert result.returncode == 0, result.stderr + result.stdout
    report = json.loads(result.stdout)
    return {t["name"] for t in report["tasks"] if t["result"] == "success"
            and t["name"] not in ("inputs", "tftp_root") and not t["name"].endswith(":ib_check")}


def load_address(scr: Path) -> str:
    listing = subprocess.run(["dumpimage", "-l", str(scr)], check=True, capture_output=True,
                             text=True).stdout
    return next(line.split()[-1] for line in listing.splitlines() if "Load Address" in line)


def test_two_boards_build_in_one_dodo_with_one_dep_file(tmp_path: Path) -> None:
    first = run_boards(tmp_path)
    assert first.returncode == 0, first.stderr
    state = json.loads((tmp_path / ".ibtasks" / "doit-deps.json").read_text())
    for board in ("board-a", "board-b"):
        assert {f"{board}:ib_layout", f"{board}:ib_dtb", f"{board}:ib_boot_scr",
                f"{board}:ib_check:XEN"} <= set(state)
        assert (tmp_path / board / ".ibtasks" / board / "layout.json").is_file()
    assert load_address(tmp_path / "board-a" / "boot.scr") == "40200000"
    assert load_address(tmp_path / "board-b" / "boot.scr") == "48200000"


def test_a_new_kernel_for_one_board_reruns_only_that_boards_tasks(tmp_path: Path) -> None:
    assert run_boards(tmp_path).returncode == 0
    kernel = tmp_path / "board-a" / "Image"
    kernel.write_bytes(kernel.read_bytes() + bytes(3 * 1024 * 1024))  # past its 2 MiB slot
    assert ran(tmp_path) == {"board-a:ib_check:DOM0_KERNEL", "board-a:ib_layout",
                             "board-a:ib_dtb", "board-a:ib_boot_source", "board-a:ib_boot_scr",
                             "tftp_root:board-a"}
    assert ran(tmp_path) == set()


def test_a_users_task_after_our_boot_scr_gets_the_scripts_address_by_getargs(
        tmp_path: Path) -> None:
    assert run_boards(tmp_path).returncode == 0
    for board in ("board-a", "board-b"):
        tftp = tmp_path / "tftp" / board
        address = int(load_address(tftp / "boot.scr"), 16)
        assert (tftp / "uboot.txt").read_text() == (
            f"tftpb {address:#x} {board}/boot.scr; source {address:#x}\n")
        assert (tftp / "boot.dtb").read_bytes() == (tmp_path / board / "boot.dtb").read_bytes()


def test_doit_lists_and_selects_one_boards_tasks_by_pattern(tmp_path: Path) -> None:
    assert run_boards(tmp_path, "inputs").returncode == 0
    one = run_boards(tmp_path, "board-b:*")
    assert one.returncode == 0, one.stderr
    assert (tmp_path / "board-b" / "boot.scr").is_file()
    assert not (tmp_path / "board-a" / "boot.scr").exists()
    listing = run_boards(tmp_path, "list", "--all").stdout.split()
    assert {"board-a:ib_layout", "board-b:ib_dtb", "tftp_root"} <= set(listing)


def test_no_name_keeps_todays_task_names() -> None:
    tasks = [{"basename": "ib_check", "name": "XEN"}, {"basename": "ib_layout"}]
    assert list(namespaced(None, tasks)) == tasks
    assert [t["basename"] for t in namespaced("b1", tasks)] == ["b1:ib_check", "b1:ib_layout"]
    assert ibtasks.boot_task_names(name="b1")[:2] == ("b1:ib_check", "b1:ib_layout")
    assert ibtasks.boot_task_names()[:2] == ("ib_check", "ib_layout")


@pytest.mark.parametrize("name", ["board:a", "a b", "../up", "", "*", "-x"])
def test_a_name_that_cannot_be_a_task_name_is_a_user_error(name: str) -> None:
    with pytest.raises(ibtasks.UserError, match="task name"):
        list(namespaced(name or " ", [{"basename": "ib_layout"}]))
