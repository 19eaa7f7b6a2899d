"""`ibtasks run --watch`: a kernel replaced while the system runs is rebuilt into the boot
files and booted again, interactively (QEMU stopped and started again, the terminal handed
back in between) and as a check (--expect, one boot per change); and keys typed at an
interactive run reach a program of the booted system."""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pexpect
import pytest

from tests.boot_fixtures import BootParts, prepare_boot_parts, prepare_shell_dom0
from tests.conftest import REPO, run_ibtasks

pytestmark = pytest.mark.boot


@pytest.fixture(scope="module")
def boot_parts(tmp_path_factory: pytest.TempPathFactory) -> BootParts:
    parts = prepare_boot_parts(tmp_path_factory.mktemp("boot-parts"))
    prepare_shell_dom0(parts)
    return parts


@pytest.fixture
def scenario(boot_parts: BootParts, tmp_path: Path) -> Path:
    """Xen CI's default config (dom0 and one domU), its binaries and QEMU's GICv2 DTB."""
    work = tmp_path / "default"
    work.mkdir()
    shutil.copy(REPO / "examples" / "xen-ci" / "default" / "config", work / "config")
    for name in ("xen", "Image", "dom0.cpio.gz", "domu0.cpio.gz"):
        shutil.copy(boot_parts.path(name), work / name)
    done = run_ibtasks("qemu-dtb", "-o", "virt.dtb", "--gic-version", "2", cwd=work)
    assert done.returncode == 0, done.stderr
    return work


def replace_kernel(work: Path) -> None:
    """Install a changed Image as a build system does: written beside it, renamed onto it
    (4 KiB of zeros appended: the same kernel, other bytes)."""
    fresh = work / ".Image.new"
    fresh.write_bytes((work / "Image").read_bytes() + b"\0" * 4096)
    os.rename(fresh, work / "Image")


def spawn_run(work: Path, *args: str) -> pexpect.spawn:
    env = {k: v for k, v in os.environ.items() if k != "LOAD_CMD"}
    return pexpect.spawn(sys.executable, ["-m", "ibtasks", "run", "-c", "config", "-d", ".",
                                          *args], cwd=work, env=env, timeout=240,
                         encoding="utf-8", codec_errors="replace")


def test_an_interactive_watch_reboots_after_the_kernel_is_replaced(scenario: Path) -> None:
    child = spawn_run(scenario, "--watch")
    child.logfile_read = sys.stdout  # the session, in the test's output
    try:
        child.expect_exact("ibtasks: watching ")
        child.expect_exact("Ctrl-A X quits QEMU")
        child.expect_exact("DOM0-ALIVE")
        replace_kernel(scenario)
        child.expect_exact("ibtasks: changed: Image")
        child.expect_exact("ibtasks: running ib_check:DOM0_KERNEL")
        child.expect_exact("Hit any key to stop autoboot")  # a new QEMU
        child.expect_exact("Ctrl-A X quits QEMU")  # the console shared again
        child.expect_exact("DOM0-ALIVE")
        child.sendcontrol("a")
        child.send("x")
        child.expect_exact("ibtasks: QEMU ended; watching for the next change")
        # The terminal is back in its own mode: Ctrl-C is a signal again, not a byte for QEMU.
        child.sendintr()
        child.expect_exact("ibtasks: interrupted")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 130
    log = (scenario / ".ibtasks" / "console.log").read_text(errors="replace")
    assert log.count("Hit any key to stop autoboot") == 1  # the log is the last boot's
    assert "DOM0-ALIVE" in log


def test_keys_typed_at_an_interactive_run_reach_dom0s_shell(scenario: Path,
                                                          boot_parts: BootParts) -> None:
    shutil.copy(boot_parts.path("dom0-shell.cpio.gz"), scenario / "dom0.cpio.gz")
    child = spawn_run(scenario)
    try:
        child.expect_exact("DOM0-ALIVE")
        child.expect_exact("job control turned off")  # busybox's shell reads the console
        # Xen hands serial input to dom0 first; the shell computes what the echo cannot show.
        child.send("echo $((6 * 7))-FROM-DOM0\r")
        child.expect_exact("42-FROM-DOM0")
        child.sendcontrol("a")
        child.send("x")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0


class LineReader:
    """A process's merged output, line by line, with the time each line arrived."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: queue.Queue[tuple[float, str]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put((time.monotonic(), line.rstrip("\n")))

    def until(self, start: str, timeout: float = 240) -> tuple[float, list[str]]:
        """When the next line starting with `start` (after stripping) arrived, and the lines
        up to it."""
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            arrived, line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            seen.append(line)
            if line.strip().startswith(start):
                return arrived, seen


def test_a_watched_check_run_boots_again_after_the_kernel_changes(scenario: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "LOAD_CMD"}
    proc = subprocess.Popen([sys.executable, "-m", "ibtasks", "run", "-c", "config", "-d", ".",
                             "--expect", "DOM0-ALIVE", "--expect", "DOMU0-ALIVE",
                             "--timeout", "240", "--watch"],
                            cwd=scenario, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    reader = LineReader(proc)
    try:
        reader.until("booted after")
        reader.until("ibtasks: watching ")
        changed_at = time.monotonic()
        replace_kernel(scenario)
        arrived, seen = reader.until("booted after")
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
    assert "ibtasks: changed: Image" in seen
    assert "ibtasks: running ib_check:DOM0_KERNEL: Image changed" in seen
    times = {line.split()[0]: float(line.split()[1]) for line in seen
             if line.strip().startswith(("DOM0-ALIVE", "DOMU0-ALIVE"))}
    assert set(times) == {"DOM0-ALIVE", "DOMU0-ALIVE"}
    # QEMU started `elapsed` seconds before the verdict; dom0's marker came `times[...]` after.
    elapsed = float(seen[-1].split("after ")[1].split(" s")[0])
    dom0_at = arrived - elapsed + times["DOM0-ALIVE"]
    print(f"from the kernel's rename to the dom0 marker: {dom0_at - changed_at:.1f} s "
          f"(verdict after {arrived - changed_at:.1f} s)")
    assert code == 130
