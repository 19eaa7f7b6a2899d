"""Watching QEMU's serial console: the text so far (also saved to a log), reading with
timeouts, typing at U-Boot's prompt, and failing fast on known failure text."""

from __future__ import annotations

import os
import selectors
import time
from collections.abc import Sequence
from pathlib import Path

from ibtasks.tools import Process

UBOOT_PROMPT = "=> "
AUTOBOOT_PROMPT = "Hit any key to stop autoboot"


class Console:
    """The console text so far, with the search position of each pattern kept apart."""

    def __init__(self, log: Path) -> None:
        self.text = ""
        self._log = log.open("w", encoding="utf-8", errors="replace")

    def add(self, data: bytes) -> None:
        """Append QEMU's output (UTF-8, CRs dropped) to the text and the log."""
        chunk = data.decode("utf-8", errors="replace").replace("\r", "")
        self.text += chunk
        self._log.write(chunk)
        self._log.flush()

    def close(self) -> None:
        """Close the log file."""
        self._log.close()

    def line_at(self, index: int) -> str:
        """The whole console line holding the character at `index`, stripped."""
        start = self.text.rfind("\n", 0, index) + 1
        end = self.text.find("\n", index)
        return self.text[start : end if end >= 0 else len(self.text)].strip()


class ConsoleFailure(Exception):
    """Ends a boot early; its message is the one-line reason."""


class Session:
    """One running QEMU: read with timeouts, type commands, find text after a position."""

    def __init__(self, proc: Process[bytes], console: Console, *, timeout_seconds: float,
                 idle_seconds: float, failure_patterns: Sequence[str]) -> None:
        self.timeout_seconds = timeout_seconds
        self.idle_seconds = idle_seconds
        self.failure_patterns = tuple(failure_patterns)
        self.proc = proc
        self.console = console
        self.start = time.monotonic()
        self.last_output = self.start
        self.selector = selectors.DefaultSelector()
        if proc.stdout is None or proc.stdin is None:
            raise RuntimeError("QEMU must be started with stdin and stdout as pipes")
        self.stdin = proc.stdin
        self.fd = proc.stdout.fileno()
        os.set_blocking(self.fd, False)
        self.selector.register(self.fd, selectors.EVENT_READ)
        self.failure_from = 0
        self.prompt_failure_from: int | None = None

    def elapsed(self) -> float:
        """Seconds since QEMU started."""
        return time.monotonic() - self.start

    def pump(self, wait: float) -> None:
        """Read what QEMU printed within `wait` seconds; raise on failure text or timeouts."""
        now = time.monotonic()
        if now - self.start > self.timeout_seconds:
            limit = self.timeout_seconds
            raise ConsoleFailure(f"no success within the overall timeout of {limit:g} s")
        if now - self.last_output > self.idle_seconds:
            raise ConsoleFailure(f"console silent for {self.idle_seconds:g} s")
        self._read(wait)
        self._check_failures()

    def _read(self, wait: float) -> None:
        for _key, _events in self.selector.select(timeout=wait):
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                continue
            if not data:
                code = self.proc.wait()
                raise ConsoleFailure(f"QEMU exited with status {code}")
            self.console.add(data)
            self.last_output = time.monotonic()

    def _whole_line(self, index: int) -> str:
        """The console line at `index`, after waiting up to 2 s for its end to arrive."""
        deadline = time.monotonic() + 2.0
        while self.console.text.find("\n", index) < 0 and time.monotonic() < deadline:
            try:
                self._read(0.1)
            except ConsoleFailure:
                break
        return self.console.line_at(index)

    def _check_failures(self) -> None:
        text = self.console.text
        longest = max((len(p) for p in self.failure_patterns), default=0)
        for pattern in self.failure_patterns:
            index = text.find(pattern, self.failure_from)
            if index >= 0:
                raise ConsoleFailure(f"console: {self._whole_line(index)}")
        if self.prompt_failure_from is not None:
            index = text.find("\n" + UBOOT_PROMPT, self.prompt_failure_from)
            if index >= 0:
                raise ConsoleFailure("back at the U-Boot prompt after the last command")
            window = len(text) - len("\n" + UBOOT_PROMPT)
            self.prompt_failure_from = max(self.prompt_failure_from, window)
        self.failure_from = max(0, len(text) - longest)

    def wait_for(self, needle: str, after: int) -> int:
        """Pump until `needle` appears at or after `after`; the index just past it."""
        while True:
            index = self.console.text.find(needle, after)
            if index >= 0:
                return index + len(needle)
            self.pump(0.5)

    def type(self, line: str) -> None:
        """Type `line` and Enter at the console."""
        self.stdin.write(line.encode() + b"\n")
        self.stdin.flush()


