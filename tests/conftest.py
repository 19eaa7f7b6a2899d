"""Shared fixtures: the seed goldens' synthetic inputs and a runner for our CLI.

The inputs come from tests/inputs.py (fixed bytes, so sizes and addresses never drift), the
original script's outputs for them from tests/goldens/seed/; the CLI runs as a real subprocess, as
users run it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.inputs import write_inputs

REPO = Path(__file__).resolve().parent.parent
GOLDENS = REPO / "tests" / "goldens" / "seed"


@pytest.fixture(scope="session")
def seed_inputs_master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One copy of the synthetic inputs, made once per test session."""
    out = tmp_path_factory.mktemp("seed-inputs")
    write_inputs(out)
    # The host DTBs' RAM is 0x40000000-0xc0000000, but the seed README's configs (a ZynqMP,
    # RAM from 0) load from 0xE00000: ibtasks checks loads against /memory, so the synthetic
    # board gets RAM 0x0-0xc0000000, rewritten in place (same size: sizes and addresses of
    # everything after the DTB stay as the goldens have them).
    for dtb in ("mpsoc.dtb", "mpsoc-reserved.dtb", "mpsoc-cpus.dtb"):
        subprocess.run(["fdtput", "-t", "x", str(out / dtb), "/memory@40000000", "reg",
                        "0", "0", "0", "0xc0000000"], check=True)
    return out


@pytest.fixture
def seed_inputs(seed_inputs_master: Path, tmp_path: Path) -> Path:
    """A private copy of the synthetic inputs that a test may change."""
    work = tmp_path / "inputs"
    subprocess.run(["cp", "-a", str(seed_inputs_master), str(work)], check=True)
    return work


def run_ibtasks(*args: str, cwd: Path, env: dict[str, str] | None = None
                ) -> subprocess.CompletedProcess[str]:
    """Run `python -m ibtasks ARGS` in `cwd` and capture its output."""
    # An exported LOAD_CMD stands in for -t (as in the original): keep the caller's out.
    full_env = {k: v for k, v in os.environ.items() if k != "LOAD_CMD"} | (env or {})
    return subprocess.run([sys.executable, "-m", "ibtasks", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """What the passing boot tests printed (their per-domain marker times), after the run, so
    that CI logs carry them; the other tests' output stays quiet (no `-rP` for all)."""
    reports = [r for r in terminalreporter.stats.get("passed", [])
               if r.when == "call" and "boot" in r.keywords and r.capstdout]
    if not reports:
        return
    terminalreporter.section("boot tests: marker times")
    for report in reports:
        terminalreporter.write_line(report.nodeid)
        terminalreporter.write(report.capstdout)
