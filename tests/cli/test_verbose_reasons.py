"""`-v` names each task that ran and why (a file or a setting changed, no record yet) and each
that was up to date; a failing task of a user's own dodo.py is reported with its name."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import GOLDENS, REPO, run_ibtasks
from tests.small_configs import DISK, write_config

SCRIPT = ("uboot-script-gen", "-c", "config", "-d", ".", "-t", "tftp", "-v")


def verbose_lines(inputs: Path) -> dict[str, str]:
    """Task name -> what -v said about it ('up to date' or the reasons it ran)."""
    result = run_ibtasks(*SCRIPT, cwd=inputs)
    assert result.returncode == 0, result.stderr
    said: dict[str, str] = {}
    for line in result.stderr.splitlines():
        if line.startswith("ibtasks: up to date "):
            said[line.removeprefix("ibtasks: up to date ")] = "up to date"
        elif line.startswith("ibtasks: running "):
            name, why = line.removeprefix("ibtasks: running ").split(": ", 1)
            said[name] = why
    return said


def recorded_tasks(inputs: Path) -> set[str]:
    """The tasks doit recorded: its own dep file, as `-- dumpdb` prints it."""
    dump = run_ibtasks(*SCRIPT[:-1], "--", "dumpdb", cwd=inputs)
    return set(json.loads(dump.stdout)) - {"ib_check"}  # the group task has no action


def prepare(inputs: Path) -> Path:
    shutil.copy(GOLDENS / "readme-tftp" / "config", inputs / "config")
    return inputs


def test_first_build_says_each_task_runs_for_lack_of_a_record(seed_inputs: Path) -> None:
    said = verbose_lines(prepare(seed_inputs))
    assert set(said) == recorded_tasks(seed_inputs)
    assert set(said.values()) == {"first run (no record)"}


def test_a_second_build_lists_every_task_as_up_to_date(seed_inputs: Path) -> None:
    verbose_lines(prepare(seed_inputs))
    said = verbose_lines(seed_inputs)  # -v bypasses the no-op replay: doit checks each task
    assert set(said) == recorded_tasks(seed_inputs)
    assert set(said.values()) == {"up to date"}


def test_a_changed_kernel_names_the_file_and_what_followed(seed_inputs: Path) -> None:
    verbose_lines(prepare(seed_inputs))
    kernel = seed_inputs / "Image-dom0"
    kernel.write_bytes(kernel.read_bytes() + bytes(4 * 1024 * 1024))
    said = verbose_lines(seed_inputs)
    assert said["ib_check:DOM0_KERNEL"] == "Image-dom0 changed"
    assert said["ib_layout"] == ".ibtasks/check/DOM0_KERNEL.json changed"
    assert said["ib_check:XEN"] == "up to date"
    assert said["ib_boot_scr"].endswith("changed")


def test_a_changed_setting_is_named_by_its_field(seed_inputs: Path) -> None:
    config = prepare(seed_inputs) / "config"
    verbose_lines(seed_inputs)
    config.write_text(config.read_text().replace('XEN_CMD="', 'XEN_CMD="loglvl=all '))
    said = verbose_lines(seed_inputs)
    assert said["ib_dtb"] == "settings changed: xen_cmd"
    assert said["ib_boot_source"] == "settings changed: xen_cmd"
    assert said["ib_boot_scr"] == "boot.source changed"
    assert said["ib_layout"] == "up to date"


def test_a_deleted_output_is_named_as_a_missing_target(seed_inputs: Path) -> None:
    verbose_lines(prepare(seed_inputs))
    (seed_inputs / "boot.dtb").unlink()
    assert verbose_lines(seed_inputs)["ib_dtb"] == "missing target boot.dtb"


def embedding_dodo(folder: Path, user_action: str) -> subprocess.CompletedProcess[str]:
    (folder / "dodo.py").write_text(textwrap.dedent(f"""\
        from pathlib import Path
        import ibtasks

        DOIT_CONFIG = ibtasks.doit_config(Path("state"))

        def task_mine():
            return {{"actions": [{user_action}], "verbosity": 0}}
        """))
    return subprocess.run([sys.executable, "-m", "doit", "-f", "dodo.py"], cwd=folder,
                          capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def test_a_users_failing_command_is_reported_with_its_task_name(tmp_path: Path) -> None:
    result = embedding_dodo(tmp_path, '"exit 3"')
    assert result.returncode == 1
    assert result.stderr == ("ibtasks: task mine failed: Command failed: 'exit 3' "
                             "returned 3\n")


def test_a_users_failing_command_is_followed_by_what_it_printed(tmp_path: Path) -> None:
    result = embedding_dodo(tmp_path, '"echo made half of it; ls /no-such-dir-here"')
    assert result.returncode == 1
    first, *rest = result.stderr.splitlines()
    assert first.startswith("ibtasks: task mine failed: Command failed: ")
    assert rest[0] == "made half of it"
    assert "/no-such-dir-here" in rest[1] and len(rest) == 2


def test_a_users_task_without_dependencies_says_doit_runs_it_every_time(
        tmp_path: Path) -> None:
    (tmp_path / "dodo.py").write_text(textwrap.dedent("""\
        from pathlib import Path
        import ibtasks

        DOIT_CONFIG = ibtasks.doit_config(Path("state"), verbose=True)

        def task_mine():
            return {"actions": ["true"], "verbosity": 0}

        def task_copy():
            return {"actions": ["cp in out"], "file_dep": ["in"], "targets": ["out"]}
        """))
    (tmp_path / "in").write_text("1")
    run = [sys.executable, "-m", "doit", "-f", "dodo.py"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    first = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True, env=env)
    assert first.returncode == 0, first.stderr
    assert "ibtasks: running mine: no file_dep or uptodate: doit runs it every time\n" in (
        first.stderr)
    assert "ibtasks: running copy: in changed or not recorded yet\n" in first.stderr


def test_a_users_python_action_that_returns_false_names_the_task(tmp_path: Path) -> None:
    result = embedding_dodo(tmp_path, "(lambda: False)")
    assert result.returncode == 1
    assert result.stderr.startswith("ibtasks: task mine failed: Python Task failed:")
    assert "Traceback" not in result.stderr


def test_parallel_builds_give_the_reasons_of_before_each_task_ran(
        seed_inputs_master: Path, tmp_path: Path) -> None:
    # doit's process runner tells the parent a task started when its child has begun it: the
    # reasons must still be those of the check before, never the task's own fresh writes.
    inputs = tmp_path / "inputs"
    shutil.copytree(seed_inputs_master, inputs)
    write_config(inputs, DISK)
    disk = ("disk-image", "-c", "config", "-d", ".", "-t", "sd", "-o", "disk.img", "-j", "3")
    assert run_ibtasks(*disk, cwd=inputs).returncode == 0
    kernel = inputs / "Image-dom0"
    for _ in range(4):
        kernel.write_bytes(kernel.read_bytes() + os.urandom(2 * 1024 * 1024))
        done = run_ibtasks(*disk, "-v", cwd=inputs)
        assert done.returncode == 0, done.stderr
        said = dict(line.removeprefix("ibtasks: running ").split(": ", 1)
                    for line in done.stderr.splitlines() if line.startswith("ibtasks: running "))
        assert said["ib_check:DOM0_KERNEL"] == "Image-dom0 changed"
        assert said["ib_layout"] == ".ibtasks/check/DOM0_KERNEL.json changed"
        assert "missing target" not in said["ib_partition:boot"], said
        assert not [why for why in said.values() if "not what its last run wrote" in why], said
