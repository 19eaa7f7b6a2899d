"""The doit commands the first round left out, through our CLI: each exits as doit does and
does its work (forget without a name, list, info, strace, auto;
tabcompletion: tests/cli/test_completion.py)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.chaintools import ran
from tests.cli.test_watch import Watcher
from tests.conftest import GOLDENS, run_ibtasks

SCRIPT = ("uboot-script-gen", "-c", "config", "-d", ".", "-t", "tftp")
ALL = {"ib_check:XEN", "ib_layout", "ib_dtb", "ib_boot_source", "ib_boot_scr"}


def prepare(inputs: Path) -> Path:
    shutil.copy(GOLDENS / "readme-tftp" / "config", inputs / "config")
    assert run_ibtasks(*SCRIPT, cwd=inputs).returncode == 0
    return inputs


def doit(inputs: Path, *command: str) -> subprocess.CompletedProcess[str]:
    result = run_ibtasks(*SCRIPT, "--", *command, cwd=inputs)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result


def build(inputs: Path) -> set[str]:
    return ran(run_ibtasks(*SCRIPT, "--", "run", "--reporter", "json", cwd=inputs))


def test_forget_without_a_name_forgets_every_task(seed_inputs: Path) -> None:
    prepare(seed_inputs)
    forgotten = {line.removeprefix("forgetting ")
                 for line in doit(seed_inputs, "forget").stdout.splitlines()}
    assert ALL <= forgotten
    assert ALL <= build(seed_inputs)


def test_list_names_each_task_with_its_own_description(seed_inputs: Path) -> None:
    listing = doit(prepare(seed_inputs), "list", "--all").stdout
    lines = dict(line.split(None, 1) for line in listing.splitlines())
    assert lines["ib_check:XEN"] == "check XEN is executable and record its size"
    assert lines["ib_layout"] == "plan the load address of every binary"
    assert "one per input" in lines["ib_check"]


def test_info_shows_a_tasks_dependencies_and_status(seed_inputs: Path) -> None:
    info = doit(prepare(seed_inputs), "info", "ib_boot_scr").stdout
    assert "boot.source" in info and ".ibtasks/layout.json" in info
    assert "up-to-date" in info.lower()


def test_strace_runs_the_task_under_doits_strace_and_exits_0(seed_inputs: Path) -> None:
    # doit's strace traces command actions only; ours are Python actions, so it runs the task
    # (forgotten first) and reports no files, as doit does for any Python task.
    doit(prepare(seed_inputs), "forget", "ib_boot_scr")
    (seed_inputs / "boot.scr").unlink()
    traced = doit(seed_inputs, "strace", "ib_boot_scr").stdout.splitlines()
    assert traced[-2:] == [".  ib_boot_scr", ".  strace_report"]
    assert (seed_inputs / "boot.scr").is_file()


def test_auto_rebuilds_when_an_input_changes_and_stops_on_ctrl_c(seed_inputs: Path) -> None:
    shutil.copy(GOLDENS / "readme-tftp" / "config", seed_inputs / "config")
    watch = Watcher(seed_inputs, *SCRIPT, "--", "auto", flag=())
    try:
        first = watch.until_watching()
        assert "ibtasks: running ib_boot_scr: first run (no record)" in first
        kernel = seed_inputs / "Image-dom0"
        kernel.write_bytes(kernel.read_bytes() + bytes(4 * 1024 * 1024))
        changed, reran = watch.rerun()
        assert changed == "ibtasks: changed: Image-dom0"
        assert {"ib_check:DOM0_KERNEL", "ib_layout", "ib_boot_scr"} <= reran
        assert watch.stop() == 130
    finally:
        watch.kill()


def test_auto_with_task_names_is_one_error_line(seed_inputs: Path) -> None:
    prepare(seed_inputs)
    result = run_ibtasks(*SCRIPT, "--", "auto", "ib_dtb", cwd=seed_inputs)
    assert result.returncode == 1
    assert result.stderr == ("ibtasks: error: -- auto: takes no task names here (every task "
                             "is rebuilt as needed); use -- auto alone or --watch\n")
