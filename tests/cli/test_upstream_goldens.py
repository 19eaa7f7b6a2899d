"""Parity with upstream ImageBuilder (2022) for configs using the domain and Xen keys.

The expected files in tests/goldens/upstream/ were made by running upstream's script (see the
README there). After each script's `fdt` commands are applied to the input DTB with `fdtput`, the
trees must mean the same; see the README for the differences normalised here.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, run_ibtasks
from tests.fdtscript import apply_with_fdtput, chosen_meaning, dts_of

GOLDENS = REPO / "tests" / "goldens" / "upstream"
# Cases are the folders with an `args` file (passthrough-xl/ belongs to the xl config tests).
# The fit-* cases are tests/formats/test_fit_goldens.py's, the script-* ones
# tests/cli/test_upstream_goldens_script.py's.
CASES = sorted(p.name for p in GOLDENS.iterdir()
               if (p / "args").is_file() and not p.name.startswith(("fit-", "script-")))


def loads(script: str) -> dict[int, str]:
    """Load address -> file of every load command in a boot script."""
    found = {}
    for line in script.splitlines():
        words = line.split()
        if len(words) >= 3 and words[-2].startswith("0x") and not line.startswith(("fdt", "booti")):
            found[int(words[-2], 16)] = words[-1]
    return found


def colour_ranges(mask: int) -> str:
    """Upstream's `colors` bitmask as the range text current Xen reads (`0xf0` -> `4-7`)."""
    bits = [b for b in range(64) if mask >> b & 1]
    return f"{bits[0]}-{bits[-1]}" if bits[-1] - bits[0] + 1 == len(bits) else ",".join(
        str(b) for b in bits)


def meaning(dtb: Path, script: str) -> dict[str, dict[str, object]]:
    """/chosen's meaning with module addresses replaced by the files loaded there."""
    by_address = loads(script)
    found = chosen_meaning(dtb)
    for node in found.values():
        reg = node.get("reg")
        if isinstance(reg, list) and len(reg) == 2:
            node["reg"] = [by_address[reg[0]], reg[1]]
        if "vpl011" in node:
            node["vpl011"] = True
        colors = node.pop("colors", None)
        if isinstance(colors, list):
            node["llc-colors"] = colour_ranges(colors[0])
        args = node.get("xen,xen-bootargs")
        if isinstance(args, str):
            words = args.split()
            if any(re.match(r"(xen|dom0)_colors=", w) for w in words):
                words.append("llc-coloring=on")
            words = [re.sub(r"^(xen|dom0)_colors=", r"\1-llc-colors=", w) for w in words]
            node["xen,xen-bootargs"] = sorted(words)
    return found


def build(case: str, inputs: Path) -> tuple[Path, subprocess.CompletedProcess[str]]:
    shutil.copy(GOLDENS / case / "config", inputs / "config")
    args = shlex.split((GOLDENS / case / "args").read_text())
    result = run_ibtasks("uboot-script-gen", "-c", "config", "-d", ".", *args, cwd=inputs)
    return GOLDENS / case / "expected", result


def device_tree_of(case: str) -> str:
    text = (GOLDENS / case / "config").read_text()
    found = re.search(r"^DEVICE_TREE=(\S+)$", text, re.M)
    assert found
    return found.group(1)


def test_there_are_upstream_golden_cases() -> None:
    assert CASES == ["dom0-enhanced-colors", "no-dom0-static-mem-cpupool"]


@pytest.mark.parametrize("case", CASES)
def test_last_stdout_lines_match_upstream(case: str, seed_inputs: Path) -> None:
    expected, result = build(case, seed_inputs)
    assert result.returncode == int((expected / "exit-code").read_text()) == 0, result.stderr
    assert result.stdout.splitlines()[-2:] == (expected / "stdout").read_text().splitlines()[-2:]


@pytest.mark.parametrize("case", CASES)
def test_device_tree_after_the_scripts_means_what_upstreams_does(
        case: str, seed_inputs: Path, tmp_path: Path) -> None:
    expected, result = build(case, seed_inputs)
    assert result.returncode == 0, result.stderr
    dtb = seed_inputs / device_tree_of(case)
    ours_script = (seed_inputs / "boot.source").read_text()
    theirs_script = (expected / "boot.source").read_text()
    ours, theirs = tmp_path / "ours.dtb", tmp_path / "theirs.dtb"
    for copy, script in ((ours, ours_script), (theirs, theirs_script)):
        shutil.copy(dtb, copy)
        apply_with_fdtput(copy, script)
    assert meaning(ours, ours_script) == meaning(theirs, theirs_script)
    # Outside /chosen (CPU phandles, xen,passthrough) the trees must be identical.
    for copy in (ours, theirs):
        subprocess.run(["fdtput", "-r", str(copy), "/chosen"], check=True)
    assert dts_of(ours) == dts_of(theirs)


@pytest.mark.parametrize("case", CASES)
def test_edited_dtb_is_what_u_boot_makes_of_our_script_for_upstream_cases(
        case: str, seed_inputs: Path, tmp_path: Path) -> None:
    _, result = build(case, seed_inputs)
    assert result.returncode == 0, result.stderr
    by_fdtput = tmp_path / "by-fdtput.dtb"
    shutil.copy(seed_inputs / device_tree_of(case), by_fdtput)
    apply_with_fdtput(by_fdtput, (seed_inputs / "boot.source").read_text())
    assert dts_of(seed_inputs / "boot.dtb") == dts_of(by_fdtput)
