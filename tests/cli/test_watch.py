"""`--watch`: after the first build, a change of the config or of an input file rebuilds what
depends on it and names exactly the tasks that reran; a change of an output or of an unrelated
file rebuilds nothing."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import GOLDENS

WATCHING = "ibtasks: watching "


class Watcher:
    """`ibtasks ... --watch` running in the background, its stderr read line by line."""

    def __init__(self, cwd: Path, *args: str, flag: tuple[str, ...] = ("--watch",)) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "ibtasks", *args, *flag],
                                     cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)  # the watcher ended

    def until_watching(self, timeout: float = 120) -> list[str]:
        """The lines printed up to the next `watching` line; fails with what the watcher said
        when it ends or stays silent for `timeout` seconds."""
        seen: list[str] = []
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                pytest.fail(f"no `watching` line within {timeout} s; the watcher said: {seen}")
            if line is None:
                pytest.fail(f"the watcher ended ({self.proc.wait()}); it said: {seen}")
            if line.startswith(WATCHING):
                return seen
            seen.append(line)

    def kill(self) -> None:
        """End the watcher whatever state it is in (a failed test must not leave it running)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def rerun(self, timeout: float = 120) -> tuple[str, set[str]]:
        """After a change: the `changed:` line and the tasks the rebuild ran."""
        lines = self.until_watching(timeout)
        changed = next(line for line in lines if line.startswith("ibtasks: changed: "))
        ran = {m[1] for line in lines if (m := re.fullmatch(r"ibtasks: running (\S+?): .*", line))}
        return changed, ran

    def quiet_for(self, seconds: float) -> bool:
        try:
            self.lines.get(timeout=seconds)
        except queue.Empty:
            return True
        return False

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=30)


@pytest.fixture
def watcher(seed_inputs: Path) -> Iterator[Watcher]:
    (seed_inputs / "config").write_text((GOLDENS / "readme-tftp" / "config").read_text())
    watch = Watcher(seed_inputs, "uboot-script-gen", "-c", "config", "-d", ".", "-t", "tftp")
    try:
        first = watch.until_watching()
        assert "ibtasks: running ib_boot_scr: first run (no record)" in first
        yield watch
        assert watch.stop() == 130
    finally:
        watch.kill()


def test_a_changed_kernel_reruns_exactly_its_check_and_what_follows(
        watcher: Watcher, seed_inputs: Path) -> None:
    kernel = seed_inputs / "zynqmp-dom2" / "Image-domU"
    kernel.write_bytes(kernel.read_bytes() + b"\0" * 4096)
    changed, ran = watcher.rerun()
    assert changed == "ibtasks: changed: zynqmp-dom2/Image-domU"
    assert ran == {"ib_check:DOMU_KERNEL[1]", "ib_layout", "ib_dtb", "ib_boot_source",
                   "ib_boot_scr"}


def test_a_kernel_replaced_by_a_rename_is_seen_and_a_same_size_one_stops_at_its_check(
        watcher: Watcher, seed_inputs: Path) -> None:
    kernel = seed_inputs / "zynqmp-dom1" / "Image-domU"
    data = bytearray(kernel.read_bytes())
    data[-1] ^= 0xFF
    fresh = seed_inputs / "zynqmp-dom1" / ".Image-domU.new"
    fresh.write_bytes(bytes(data))
    os.rename(fresh, kernel)  # as a build system installs its output
    changed, ran = watcher.rerun()
    assert changed == "ibtasks: changed: zynqmp-dom1/Image-domU"
    assert ran == {"ib_check:DOMU_KERNEL[0]"}


def test_a_config_change_reruns_the_tasks_that_read_it(watcher: Watcher,
                                                       seed_inputs: Path) -> None:
    config = seed_inputs / "config"
    config.write_text(config.read_text().replace("clk_ignore_unused", "clk_ignore_unused quiet"))
    changed, ran = watcher.rerun()
    assert changed == "ibtasks: changed: config"
    assert ran == {"ib_dtb", "ib_boot_source", "ib_boot_scr"}


def test_outputs_and_unrelated_files_rebuild_nothing(watcher: Watcher, seed_inputs: Path) -> None:
    (seed_inputs / "notes.txt").write_text("not an input\n")
    (seed_inputs / "boot.source").touch()
    assert watcher.quiet_for(3)
