"""`--json`: one JSON document on stdout (outputs, layout, partitions, tasks), each value checked
against a real tool (sha256sum, dumpimage, sfdisk -J) or doit's own record; with doit's JSON
reporter after `--`, stdout holds JSON only."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from tests.conftest import GOLDENS, run_ibtasks

SCRIPT = ("uboot-script-gen", "-c", "config", "-d", ".", "-t", "tftp")
DISK = ("disk-image", "-c", "config", "-d", ".", "-t", "scsi", "-o", "disk.img")


def json_of(inputs: Path, *args: str) -> dict[str, Any]:
    result = run_ibtasks(*args, "--json", cwd=inputs)
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = json.loads(result.stdout)  # the whole of stdout, nothing else
    return document


def prepare(inputs: Path, case: str = "readme-tftp") -> Path:
    shutil.copy(GOLDENS / case / "config", inputs / "config")
    return inputs


def sha256sum(path: Path) -> str:
    out = subprocess.run(["sha256sum", str(path)], capture_output=True, text=True, check=True)
    return out.stdout.split()[0]


def test_every_output_is_listed_with_the_size_and_digest_sha256sum_gives(
        seed_inputs: Path) -> None:
    result = json_of(prepare(seed_inputs), *SCRIPT)
    assert result["format"] == "ibtasks-result-1"
    assert result["command"] == "uboot-script-gen"
    assert [o["path"] for o in result["outputs"]] == ["boot.dtb", "boot.source", "boot.scr"]
    for output in result["outputs"]:
        path = seed_inputs / output["path"]
        assert output["size"] == path.stat().st_size
        assert output["sha256"] == sha256sum(path)


def test_the_layout_is_where_the_script_loads_each_file(seed_inputs: Path) -> None:
    layout = json_of(prepare(seed_inputs), *SCRIPT)["layout"]
    source = (seed_inputs / "boot.source").read_text()
    loads = {m.group(2): int(m.group(1), 16)
             for m in re.finditer(r"^tftpb (0x[0-9A-Fa-f]+) (\S+)$", source, re.M)}
    modules = layout["modules"]
    assert [m["key"] for m in modules][:3] == ["XEN", "DOM0_KERNEL", "DOM0_RAMDISK"]
    for module in modules:
        assert loads[module["file"]] == module["address"]
        assert module["end"] == module["address"] + module["size"]
        assert module["size"] >= (seed_inputs / module["file"]).stat().st_size
    listing = subprocess.run(["dumpimage", "-l", str(seed_inputs / "boot.scr")],
                             capture_output=True, text=True, check=True).stdout
    load = re.search(r"Load Address:\s*([0-9a-fA-F]+)", listing)
    assert load is not None and int(load.group(1), 16) == layout["script"]["address"]


def test_tasks_say_what_ran_and_what_was_up_to_date(seed_inputs: Path) -> None:
    first = json_of(prepare(seed_inputs), *SCRIPT)["tasks"]
    ran = {t["name"] for t in first["ran"]}
    assert {"ib_layout", "ib_dtb", "ib_boot_source", "ib_boot_scr"} <= ran
    assert first["up_to_date"] == [] and first["failed"] == []
    assert {r for t in first["ran"] for r in t["reasons"]} == {"first run (no record)"}
    again = json_of(seed_inputs, *SCRIPT)["tasks"]
    assert again["ran"] == [] and set(again["up_to_date"]) == ran
    kernel = seed_inputs / "Image-dom0"
    kernel.write_bytes(kernel.read_bytes() + bytes(4 * 1024 * 1024))
    changed = json_of(seed_inputs, *SCRIPT)["tasks"]
    reasons = {t["name"]: t["reasons"] for t in changed["ran"]}
    assert reasons["ib_check:DOM0_KERNEL"] == ["Image-dom0 changed"]
    assert "ib_layout" in reasons and "ib_check:XEN" in changed["up_to_date"]


def test_disk_image_partitions_match_sfdisk(seed_inputs: Path) -> None:
    result = json_of(prepare(seed_inputs, "noboot-rootfs-gzip-scsi"), *DISK)
    table = json.loads(subprocess.run(["sfdisk", "-J", str(seed_inputs / "disk.img")],
                                      capture_output=True, text=True, check=True).stdout)
    table = table["partitiontable"]
    disk = result["disk"]
    assert disk["label"] == table["label"] == "gpt"
    assert [(p["start"], p["sectors"], p["type"], p["name"]) for p in disk["partitions"]] == [
        (p["start"], p["size"], p["type"], p["name"]) for p in table["partitions"]]
    for part in disk["partitions"]:
        assert part["start_bytes"] == part["start"] * 512
        assert part["size_bytes"] == part["sectors"] * 512
    image = next(o for o in result["outputs"] if o["path"] == "disk.img")
    assert image["sha256"] == sha256sum(seed_inputs / "disk.img")
    assert {"ib_partition:boot", "ib_disk"} <= {t["name"] for t in result["tasks"]["ran"]}


def test_dos_disk_partitions_carry_sfdisks_type_bytes(seed_inputs: Path) -> None:
    result = json_of(prepare(seed_inputs, "noboot-rootfs-gzip-scsi"), *DISK, "--table", "dos")
    table = json.loads(subprocess.run(["sfdisk", "-J", str(seed_inputs / "disk.img")],
                                      capture_output=True, text=True, check=True).stdout)
    parts = table["partitiontable"]["partitions"]
    assert result["disk"]["label"] == "dos"
    assert [(p["start"], p["sectors"], p["type"]) for p in result["disk"]["partitions"]] == [
        (p["start"], p["size"], p["type"]) for p in parts]


def test_doits_json_reporter_leaves_stdout_to_json_alone(seed_inputs: Path) -> None:
    prepare(seed_inputs)
    for args in (SCRIPT, (*SCRIPT, "--memory-map")):
        result = run_ibtasks(*args, "--", "run", "--reporter", "json", cwd=seed_inputs)
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert {t["name"] for t in report["tasks"]} >= {"ib_layout", "ib_boot_scr"}
        assert "Generated uboot script boot.scr" in result.stderr


def test_json_with_a_doit_command_is_one_line_error(seed_inputs: Path) -> None:
    result = run_ibtasks(*SCRIPT, "--json", "--", "list", cwd=prepare(seed_inputs))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == ("ibtasks: error: --json: reports a build and takes no doit "
                             "command after -- (got 'list'); for doit's own JSON use -- run "
                             "--reporter json without --json\n")


def test_a_failed_build_prints_no_json(seed_inputs: Path) -> None:
    config = prepare(seed_inputs) / "config"
    config.write_text(config.read_text().replace('MEMORY_END="0x80000000"',
                                                 'MEMORY_END="0x1000000"'))
    result = run_ibtasks(*SCRIPT, "--json", cwd=seed_inputs)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("ibtasks: error: ")
