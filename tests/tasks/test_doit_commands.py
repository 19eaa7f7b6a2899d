"""doit's own commands after `--` run on the same graph as the build and exit as doit does (0),
each doing its work: checked through doit's JSON record of what the next build runs."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from tests.chaintools import ran
from tests.conftest import GOLDENS, run_ibtasks

SCRIPT = ("uboot-script-gen", "-c", "config", "-d", ".", "-t", "tftp")
OUTPUTS = ("boot.source", "boot.scr", "boot.dtb")


def prepare(inputs: Path) -> Path:
    shutil.copy(GOLDENS / "readme-tftp" / "config", inputs / "config")
    first = run_ibtasks(*SCRIPT, cwd=inputs)
    assert first.returncode == 0, first.stderr
    return inputs


def doit(inputs: Path, *command: str) -> subprocess.CompletedProcess[str]:
    result = run_ibtasks(*SCRIPT, "--", *command, cwd=inputs)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result


def build(inputs: Path) -> set[str]:
    return ran(run_ibtasks(*SCRIPT, "--", "run", "--reporter", "json", cwd=inputs))


def test_forget_makes_the_next_build_run_the_task_again(seed_inputs: Path) -> None:
    prepare(seed_inputs)
    assert doit(seed_inputs, "forget", "ib_dtb").stdout == "forgetting ib_dtb\n"
    assert build(seed_inputs) == {"ib_dtb"}
    assert build(seed_inputs) == set()


def test_ignore_keeps_a_task_from_running_until_it_is_forgotten(seed_inputs: Path) -> None:
    config = prepare(seed_inputs) / "config"
    assert doit(seed_inputs, "ignore", "ib_dtb").stdout == "ignoring ib_dtb\n"
    config.write_text(config.read_text().replace('XEN_CMD="', 'XEN_CMD="loglvl=all '))
    assert build(seed_inputs) == {"ib_boot_source", "ib_boot_scr"}
    doit(seed_inputs, "forget", "ib_dtb")
    assert build(seed_inputs) == {"ib_dtb"}


def test_clean_removes_the_outputs_and_nothing_else(seed_inputs: Path) -> None:
    prepare(seed_inputs)
    inputs_before = {p.name for p in seed_inputs.iterdir()} - set(OUTPUTS)
    doit(seed_inputs, "clean")
    assert [name for name in OUTPUTS if (seed_inputs / name).exists()] == []
    assert {p.name for p in seed_inputs.iterdir()} - {".ibtasks"} == inputs_before - {".ibtasks"}
    assert len(build(seed_inputs)) > 3  # everything again


def test_reset_dep_records_the_current_files_without_running_anything(seed_inputs: Path) -> None:
    prepare(seed_inputs)
    doit(seed_inputs, "reset-dep")
    assert build(seed_inputs) == set()



def test_dumpdb_prints_the_json_state_of_every_task(seed_inputs: Path) -> None:
    prepare(seed_inputs)
    state = json.loads(doit(seed_inputs, "dumpdb").stdout)
    assert {"ib_layout", "ib_dtb", "ib_boot_source", "ib_boot_scr"} <= set(state)
    assert ".ibtasks/layout.json" in state["ib_boot_scr"]  # a file_dep with its saved state
