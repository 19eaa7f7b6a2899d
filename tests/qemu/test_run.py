"""`ibtasks run` end to end: Xen CI's default scenario (examples/xen-ci/default, with two domUs)
built and booted under QEMU with U-Boot by one command, over TFTP and from disk.img, as a CI
check (--expect/--fail) and interactively through a pseudo-terminal."""

from __future__ import annotations

import shlex
import shutil
import sys
import time
from pathlib import Path

import pexpect
import pytest

from tests.boot_fixtures import BootParts, prepare_boot_parts
from tests.conftest import REPO, run_ibtasks

pytestmark = pytest.mark.boot

MARKERS = ("GICv2 initialization:", "DOM0-ALIVE", "DOMU0-ALIVE", "DOMU1-ALIVE")
EXPECT = [word for marker in MARKERS for word in ("--expect", marker)]


@pytest.fixture(scope="module")
def boot_parts(tmp_path_factory: pytest.TempPathFactory) -> BootParts:
    return prepare_boot_parts(tmp_path_factory.mktemp("boot-parts"))


@pytest.fixture
def scenario(boot_parts: BootParts, tmp_path: Path) -> Path:
    """Xen CI's default config with NUM_DOMUS=2, its binaries, and `ibtasks qemu-dtb`'s DTB
    for Xen CI's board (QEMU's default GICv2)."""
    work = tmp_path / "default"
    work.mkdir()
    config = (REPO / "examples" / "xen-ci" / "default" / "config").read_text()
    (work / "config").write_text(config.replace("NUM_DOMUS=1", "NUM_DOMUS=2"))
    for name in ("xen", "Image", "dom0.cpio.gz", "domu0.cpio.gz", "domu1.cpio.gz"):
        shutil.copy(boot_parts.path(name), work / name)
    done = run_ibtasks("qemu-dtb", "-o", "virt.dtb", "--gic-version", "2", cwd=work)
    assert done.returncode == 0, done.stderr
    return work


def marker_times(stdout: str) -> dict[str, float]:
    """The arrival time `run` printed for each marker."""
    times = {}
    for marker in MARKERS:
        line = next(line for line in stdout.splitlines() if line.strip().startswith(marker))
        times[marker] = float(line.strip()[len(marker):].split()[0])
    return times


def test_run_over_tftp_sees_the_markers_of_xen_dom0_and_each_domu(scenario: Path) -> None:
    done = run_ibtasks("run", "-c", "config", "-d", ".", *EXPECT, "--timeout", "240",
                       cwd=scenario)
    print(done.stdout)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Generated uboot script boot.scr" in done.stdout  # built first
    assert all(0 < t < 240 for t in marker_times(done.stdout).values())
    log = (scenario / ".ibtasks" / "console.log").read_text()
    assert "DOMU1-ALIVE" in log and "tftpb 0x40000000 boot.scr" in log


@pytest.mark.parametrize("media", ["virtio", "scsi"])
def test_run_from_the_built_disk_image_boots_every_domain(scenario: Path, media: str) -> None:
    done = run_ibtasks("run", "-c", "config", "-d", ".", "--from", media, *EXPECT,
                       "--timeout", "240", cwd=scenario)
    print(done.stdout)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (scenario / "disk.img").is_file() and (scenario / "disk.img.bmap").is_file()
    log = (scenario / ".ibtasks" / "console.log").read_text()
    assert f"load {media} 0:1 0x40000000 boot.scr" in log
    assert "DOMU1-ALIVE" in log


def test_a_failure_text_ends_the_run_with_status_1_and_the_console_tail(scenario: Path) -> None:
    # Xen's banner comes before any domain's marker, whatever the load: the failure text
    # always arrives first.
    done = run_ibtasks("run", "-c", "config", "-d", ".", "--expect", "DOM0-ALIVE",
                       "--fail", "Xen version", "--timeout", "240", cwd=scenario)
    assert done.returncode == 1
    assert "FAILED: console: " in done.stdout and "Xen version" in done.stdout
    assert done.stderr.count("boot failed: console: ") == 1
    tail = done.stderr.split("last console lines")[1]
    assert "Xen version" in tail and "(XEN)" in tail
    assert "DOM0-ALIVE" not in tail
    assert "Xen version" in (scenario / ".ibtasks" / "console.log").read_text()


def test_a_marker_that_never_arrives_fails_at_the_timeout(scenario: Path) -> None:
    start = time.monotonic()
    done = run_ibtasks("run", "-c", "config", "-d", ".", "--expect", "NEVER-PRINTED",
                       "--timeout", "15", cwd=scenario)
    assert done.returncode == 1
    assert "no success within the overall timeout of 15 s" in done.stderr
    assert "markers seen: none" in done.stderr
    assert time.monotonic() - start < 60


def test_an_interactive_run_hands_the_console_to_the_terminal(scenario: Path) -> None:
    child = pexpect.spawn(sys.executable, ["-m", "ibtasks", "run", "-c", "config", "-d", "."],
                          cwd=scenario, timeout=240, encoding="utf-8", codec_errors="replace")
    try:
        child.expect_exact("Ctrl-A X quits QEMU")
        child.expect_exact("DOM0-ALIVE")
        # Keys typed on the terminal reach QEMU: Ctrl-A H prints its multiplexer's key list.
        child.sendcontrol("a")
        child.send("h")
        child.expect_exact("C-a x    exit emulator")
        child.sendcontrol("a")
        child.send("x")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    log = (scenario / ".ibtasks" / "console.log").read_text(errors="replace")
    assert "DOM0-ALIVE" in log and "QEMU: Terminated" in log


def readme_smoke_tests() -> dict[str, list[list[str]]]:
    """examples/xen-ci/README.md's one-command smoke tests: scenario -> its two commands."""
    text = (REPO / "examples" / "xen-ci" / "README.md").read_text()
    block = text.split("<!-- smoke-tests -->\n```\n", 1)[1].split("```", 1)[0]
    found = {}
    for line in block.splitlines():
        name, _, commands = line.partition(":")
        found[name] = [shlex.split(part) for part in commands.split("&&")]
    return found


@pytest.mark.parametrize("name", ["gicv3", "static-heap"])
def test_a_xen_ci_smoke_test_is_its_config_plus_the_readmes_run_line(
        name: str, boot_parts: BootParts, tmp_path: Path) -> None:
    work = tmp_path / name
    work.mkdir()
    shutil.copy(REPO / "examples" / "xen-ci" / name / "config", work / "config")
    for file in ("xen", "Image", "dom0.cpio.gz", "domu0.cpio.gz", "domu1.cpio.gz"):
        shutil.copy(boot_parts.path(file), work / file)
    for words in readme_smoke_tests()[name]:
        assert words[0] == "ibtasks"
        done = run_ibtasks(*words[1:], cwd=work)
        print(done.stdout)
        assert done.returncode == 0, done.stdout + done.stderr
    assert "booted after" in done.stdout
