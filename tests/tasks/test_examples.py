"""The embedding example works as documented: its own pipeline, then ibtasks' tasks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def run_embed(build: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "doit", "-f", "examples/embed/dodo.py", *args],
                          cwd=REPO, env={**os.environ, "IBTASKS_EMBED_BUILD": str(build)},
                          capture_output=True, text=True)


def test_embed_example_builds_boot_files_after_its_own_inputs(tmp_path: Path) -> None:
    first = run_embed(tmp_path)
    assert first.returncode == 0, first.stderr
    ran = [line.split()[1] for line in first.stdout.splitlines() if line.startswith(".  ")]
    assert ran[0] == "inputs"
    assert ran[-5:] == ["ib_check:DEVICE_TREE", "ib_layout", "ib_dtb", "ib_boot_source",
                        "ib_boot_scr"]
    listing = subprocess.run(["dumpimage", "-l", str(tmp_path / "boot.scr")], check=True,
                             capture_output=True, text=True).stdout
    assert "Load Address: 40200000" in listing
    second = run_embed(tmp_path)
    assert second.returncode == 0
    assert not [line for line in second.stdout.splitlines() if line.startswith(".  ")]


def test_embed_example_lists_our_tasks_beside_its_own(tmp_path: Path) -> None:
    assert run_embed(tmp_path).returncode == 0
    listing = run_embed(tmp_path, "list").stdout.split()
    for name in ("inputs", "ib_check", "ib_layout", "ib_dtb", "ib_boot_source", "ib_boot_scr"):
        assert name in listing
