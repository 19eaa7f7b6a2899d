"""Incremental and reproducible builds, checked through doit's own record of what ran.

Each build runs the CLI with `-- run --reporter json`, doit's JSON reporter; a task "ran" when
its result is "success" and it has actions (the `ib_check` group task has none).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path

from tests.conftest import GOLDENS, run_ibtasks

CONFIG = GOLDENS / "readme-tftp" / "config"
OUTPUTS = ("boot.source", "boot.scr", "boot.dtb")


def build(inputs: Path, *extra: str) -> set[str]:
    """Build and return the names of the tasks whose actions ran."""
    result = run_ibtasks("uboot-script-gen", "-c", "config", "-d", ".", "-t", "tftp", *extra,
                         "--", "run", "--reporter", "json", cwd=inputs)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout[: result.stdout.rindex("}") + 1])
    return {t["name"] for t in report["tasks"]
            if t["result"] == "success" and t["name"] != "ib_check"}


def prepare(inputs: Path) -> Path:
    shutil.copy(CONFIG, inputs / "config")
    return inputs


ALL_TASKS = {
    "ib_check:XEN", "ib_check:DOM0_KERNEL", "ib_check:DOM0_RAMDISK", "ib_check:DOMU_KERNEL[0]",
    "ib_check:DOMU_RAMDISK[0]", "ib_check:DOMU_PASSTHROUGH_DTB[0]", "ib_check:DOMU_KERNEL[1]",
    "ib_check:DOMU_RAMDISK[1]", "ib_check:DEVICE_TREE", "ib_layout", "ib_dtb", "ib_boot_source",
    "ib_boot_scr",
}


def test_first_build_runs_every_task(seed_inputs: Path) -> None:
    assert build(prepare(seed_inputs)) == ALL_TASKS


def test_second_build_runs_nothing(seed_inputs: Path) -> None:
    build(prepare(seed_inputs))
    assert build(seed_inputs) == set()


def test_touching_a_kernel_without_changing_it_runs_nothing(seed_inputs: Path) -> None:
    build(prepare(seed_inputs))
    kernel = seed_inputs / "zynqmp-dom1" / "Image-domU"
    os.utime(kernel, (1, 1))
    assert build(seed_inputs) == set()
    assert build(seed_inputs) == set()


def test_a_kernel_rebuilt_with_the_same_size_stops_at_its_check(seed_inputs: Path) -> None:
    build(prepare(seed_inputs))
    kernel = seed_inputs / "zynqmp-dom1" / "Image-domU"
    data = bytearray(kernel.read_bytes())
    data[-1] ^= 0xFF
    kernel.write_bytes(bytes(data))
    assert build(seed_inputs) == {"ib_check:DOMU_KERNEL[0]"}


def test_a_domu_kernel_of_another_size_reruns_only_what_depends_on_it(seed_inputs: Path) -> None:
    build(prepare(seed_inputs))
    kernel = seed_inputs / "zynqmp-dom2" / "Image-domU"
    kernel.write_bytes(kernel.read_bytes() + b"\0" * 4096)
    assert build(seed_inputs) == {"ib_check:DOMU_KERNEL[1]", "ib_layout", "ib_dtb",
                                  "ib_boot_source", "ib_boot_scr"}


def test_a_changed_bootarg_reruns_only_the_tasks_that_read_it(seed_inputs: Path) -> None:
    build(prepare(seed_inputs))
    config = seed_inputs / "config"
    config.write_text(config.read_text().replace("sched=null", "sched=credit2"))
    assert build(seed_inputs) == {"ib_dtb", "ib_boot_source", "ib_boot_scr"}


def test_a_new_source_date_epoch_reruns_only_boot_scr(seed_inputs: Path) -> None:
    build(prepare(seed_inputs))
    os.environ["SOURCE_DATE_EPOCH"] = "1234567"
    try:
        assert build(seed_inputs) == {"ib_boot_scr"}
    finally:
        del os.environ["SOURCE_DATE_EPOCH"]
    stamp = struct.unpack(">I", (seed_inputs / "boot.scr").read_bytes()[8:12])[0]
    assert stamp == 1234567


def test_a_deleted_output_is_rebuilt_alone(seed_inputs: Path) -> None:
    build(prepare(seed_inputs))
    (seed_inputs / "boot.scr").unlink()
    assert build(seed_inputs) == {"ib_boot_scr"}


def test_builds_in_two_directories_at_two_times_are_byte_identical(seed_inputs_master: Path,
                                                                   tmp_path: Path) -> None:
    digests = []
    for n, when in enumerate((1_000_000, 2_000_000_000)):
        inputs = tmp_path / f"build{n}"
        shutil.copytree(seed_inputs_master, inputs)
        for path in inputs.rglob("*"):
            os.utime(path, (when, when))
        prepare(inputs)
        build(inputs)
        digests.append([(inputs / name).read_bytes() for name in OUTPUTS])
    assert digests[0] == digests[1]


def plain_build(inputs: Path, env: dict[str, str] | None = None) -> str:
    result = run_ibtasks("uboot-script-gen", "-c", "config", "-d", ".", "-t", "tftp", cwd=inputs,
                         env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_no_op_fast_path_replays_the_output(seed_inputs: Path) -> None:
    prepare(seed_inputs)
    first = plain_build(seed_inputs)
    assert list((seed_inputs / ".ibtasks").glob("last-run-*.json"))
    assert plain_build(seed_inputs) == first


def test_the_fast_path_notices_a_changed_input(seed_inputs: Path) -> None:
    prepare(seed_inputs)
    plain_build(seed_inputs)
    plain_build(seed_inputs)
    kernel = seed_inputs / "zynqmp-dom2" / "Image-domU"
    kernel.write_bytes(kernel.read_bytes() + b"\0" * 4096)
    plain_build(seed_inputs)
    assert "reg <0x0 0x2200000 0x0 0x201001>" in (seed_inputs / "boot.source").read_text()


def test_the_fast_path_notices_a_deleted_output(seed_inputs: Path) -> None:
    prepare(seed_inputs)
    plain_build(seed_inputs)
    (seed_inputs / "boot.dtb").unlink()
    plain_build(seed_inputs)
    assert (seed_inputs / "boot.dtb").is_file()


def test_the_fast_path_notices_an_environment_variable_the_config_uses(seed_inputs: Path) -> None:
    prepare(seed_inputs)
    config = seed_inputs / "config"
    config.write_text(config.read_text().replace('XEN="xen"', 'XEN="$XEN_BINARY"'))
    shutil.copy(seed_inputs / "xen", seed_inputs / "xen-other")
    plain_build(seed_inputs, env={"XEN_BINARY": "xen"})
    plain_build(seed_inputs, env={"XEN_BINARY": "xen-other"})
    assert "tftpb 0xE00000 xen-other" in (seed_inputs / "boot.source").read_text()


def test_the_fast_path_knows_every_option_that_takes_a_value() -> None:
    """stamp.stamp_for scans argv without argparse; it must skip the same option values."""
    from ibtasks.cli.arguments import build_parser
    from ibtasks.cli.fast_path import VALUE_FLAGS

    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command")
    script = commands.choices["uboot-script-gen"]  # type: ignore[index]
    takes_value = {flag for action in script._actions if action.option_strings
                   and action.nargs != 0 for flag in action.option_strings}
    assert takes_value == VALUE_FLAGS


def test_verbose_names_each_task_that_runs_and_only_those(seed_inputs: Path) -> None:
    prepare(seed_inputs)
    first = run_ibtasks("uboot-script-gen", "-c", "config", "-d", ".", "-t", "tftp", "-v",
                        cwd=seed_inputs)
    assert first.returncode == 0, first.stderr
    ran = {line.removeprefix("ibtasks: running ").split(": ")[0]
           for line in first.stderr.splitlines()}
    assert ran == ALL_TASKS
    config = seed_inputs / "config"
    config.write_text(config.read_text().replace("XEN_CMD=\"", "XEN_CMD=\"loglvl=all "))
    again = run_ibtasks("uboot-script-gen", "-c", "config", "-d", ".", "-t", "tftp", "-v",
                        cwd=seed_inputs)
    assert again.returncode == 0, again.stderr
    assert [line for line in again.stderr.splitlines() if "up to date" not in line] == [
        "ibtasks: running ib_dtb: settings changed: xen_cmd",
        "ibtasks: running ib_boot_source: settings changed: xen_cmd",
        "ibtasks: running ib_boot_scr: boot.source changed"]
