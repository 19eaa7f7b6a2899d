"""`--json`: one JSON document on stdout describing a build: every output (path, size, SHA-256),
the memory layout, the disk image's partitions and which tasks ran or were up to date.

Sizes and addresses are integers in bytes (partitions also in 512-byte sectors); paths are as
the command line named them. The README shows an example; `FORMAT` names this layout of keys.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ibtasks.errors import UserError
from ibtasks.formats.gpt import read_gpt
from ibtasks.formats.mbr import read_mbr
from ibtasks.fsutil import file_sha256
from ibtasks.plan.layout import SLOT, Layout
from ibtasks.tasks.run_log import RunLog

FORMAT = "ibtasks-result-1"
SECTOR = 512


def describe_output(path: Path) -> dict[str, Any]:
    """`{"path", "size", "sha256"}` of a file we wrote (size in bytes)."""
    return {"path": str(path), "size": path.stat().st_size, "sha256": file_sha256(path)}


def describe_layout(layout: Layout) -> dict[str, Any]:
    """The memory plan: RAM range, the boot script's 2 MiB slot and each module's key, file,
    load address, size (as loaded: an arm64 Image's header size counts) and end (exclusive)."""
    return {
        "memory_start": layout.memory_start,
        "memory_end": layout.memory_end,
        "script": {"address": layout.script_slot, "size": SLOT, "end": layout.script_slot + SLOT},
        "modules": [{"key": r.key, "file": r.path, "address": r.address, "size": r.size,
                     "end": r.end} for r in layout.regions],
        "end": layout.end,
        "banks": [{"address": a, "size": s} for a, s in layout.banks],
    }


def describe_partitions(image: Path) -> dict[str, Any]:
    """The partition table of a disk image we wrote, as `sfdisk -J` sees it: `label` (gpt or
    dos) and each partition's number, name (GPT only), type (GPT type GUID in upper case, or
    the DOS type byte in hex, as sfdisk writes them), start and size in sectors and bytes."""
    with open(image, "rb") as f:
        first = f.read(SECTOR)
    if len(first) == SECTOR and first[450] == 0xEE:
        gpt = read_gpt(str(image))
        parts: list[dict[str, Any]] = [
                 {"number": n, "name": p.name, "type": str(p.type_guid).upper(),
                  "start": p.first_lba, "sectors": p.sectors}
                 for n, p in enumerate(gpt.partitions, 1)]
        label = "gpt"
    else:
        dos = read_mbr(str(image))
        parts = [{"number": n, "name": None, "type": f"{p.type:x}", "start": p.first_lba,
                  "sectors": p.sectors} for n, p in enumerate(dos.partitions, 1)]
        label = "dos"
    for part in parts:
        part["start_bytes"] = part["start"] * SECTOR
        part["size_bytes"] = part["sectors"] * SECTOR
    return {"label": label, "sector_size": SECTOR, "partitions": parts}


def describe_tasks(run_log: RunLog) -> dict[str, Any]:
    """Which tasks ran (each with doit's reasons and its time in seconds), were up to date or
    failed, in the order doit reached them."""
    return {
        "ran": [{"name": r.name, "reasons": r.reasons, "seconds": r.seconds}
                for r in run_log.records if r.status == "ran"],
        "up_to_date": run_log.names("up to date"),
        "failed": run_log.names("failed"),
    }


def build_result(command: str, outputs: Sequence[Path], layout: Layout | None,
                 run_log: RunLog, image: Path | None = None) -> dict[str, Any]:
    """The whole document of one successful build (`command` is the subcommand's name); an
    output that does not exist (none with `-s`'s edited DTB) is left out."""
    from ibtasks import __version__

    result: dict[str, Any] = {
        "format": FORMAT,
        "ibtasks": __version__,
        "command": command,
        "outputs": [describe_output(p) for p in outputs if p.is_file()],
        "layout": describe_layout(layout) if layout is not None else None,
    }
    if image is not None:
        result["disk"] = describe_partitions(image)
    result["tasks"] = describe_tasks(run_log)
    return result


def render_result(result: dict[str, Any]) -> str:
    return json.dumps(result, indent=1) + "\n"


def check_json_flags(json_flag: bool, doit_args: Sequence[str]) -> bool:
    """Whether our own text must leave stdout (for stderr): with `--json`, and with doit's
    `--reporter` after `--` (its JSON reporter writes stdout). `--json` with doit arguments
    is a UserError: it reports a build, and two documents cannot share stdout."""
    if json_flag and doit_args:
        raise UserError(f"--json: reports a build and takes no doit command after -- "
                        f"(got '{' '.join(doit_args)}'); for doit's own JSON use "
                        "-- run --reporter json without --json")
    return json_flag or any(a == "--reporter" or a.startswith("--reporter=") or a == "-r"
                            for a in doit_args)
