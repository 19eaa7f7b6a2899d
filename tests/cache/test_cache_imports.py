"""A build without `--cache` never loads the registry client or its HTTP library: no network
code on the developer's loop, and no cost on every build."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.small_configs import DISK, write_config


def imported_modules(cwd: Path, *argv: str) -> set[str]:
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "ibtasks", *argv],
                            cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return {line.split("|")[-1].strip() for line in result.stderr.splitlines()
            if line.startswith("import time:")}


@pytest.mark.parametrize("command", ["uboot-script-gen", "disk-image"])
def test_a_build_without_a_cache_loads_no_http_client(seed_inputs: Path, command: str) -> None:
    write_config(seed_inputs, DISK)
    extra = ["-o", "disk.img"] if command == "disk-image" else []
    modules = imported_modules(seed_inputs, command, "-c", "config", "-d", ".", "-t", "sd",
                               *extra)
    assert "ibtasks.tasks.cached_step" in modules  # the cache's wrapper is there...
    assert not {"requests", "urllib3", "ibtasks.cache.registry"} & modules  # ...its client not
