"""An interactive boot: QEMU's serial console handed to the user's terminal (pexpect), after
U-Boot's autoboot is stopped and the boot commands are typed. Ctrl-A X quits QEMU (its `mon:`
serial multiplexer; Ctrl-A C is the monitor). The whole console is saved to the spec's log.

The console is shared by our own copy loop rather than pexpect's `interact`, so that a watch
(`run --watch`) can take the terminal back when an input changes and stop QEMU to boot again.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import termios
import tty
from collections.abc import Callable
from typing import BinaryIO

import pexpect

from ibtasks.errors import UserError
from ibtasks.qemu.console import AUTOBOOT_PROMPT, UBOOT_PROMPT
from ibtasks.qemu.runner import BootSpec, qemu_argv

ESCAPE_HINT = "ibtasks: the console is yours; Ctrl-A X quits QEMU, Ctrl-A H lists the keys\n"
POLL_SECONDS = 0.2  # how often the copy loop asks whether to give the terminal back
QUIT_SECONDS = 10.0  # QEMU's grace after SIGTERM before it is killed


class _Tee:
    """pexpect's `logfile_read`: the console to the log, and to the terminal while it is
    shared."""

    def __init__(self, log: BinaryIO, terminal: BinaryIO | None) -> None:
        self.log, self.terminal = log, terminal

    def write(self, data: bytes) -> None:
        self.log.write(data)
        if self.terminal is not None:
            self.terminal.write(data)

    def flush(self) -> None:
        self.log.flush()
        if self.terminal is not None:
            self.terminal.flush()


def interactive_argv(spec: BootSpec) -> list[str]:
    """`qemu_argv` with the serial port on QEMU's multiplexer (`mon:stdio`), so that its
    Ctrl-A keys work, and no separate monitor."""
    argv = qemu_argv(spec)
    start = argv.index("-monitor")
    del argv[start:start + 2]
    argv[argv.index("-serial") + 1] = "mon:stdio"
    return argv


class InteractiveBoot:
    """One QEMU booted up to the boot script (U-Boot's autoboot stopped, the spec's commands
    typed), its console saved to the spec's log and shown on this terminal.

    Raises UserError when U-Boot's firmware is missing, QEMU exits, or U-Boot does not reach
    its prompt within the spec's timeout (the last console lines are in the log). `quit()`
    always ends QEMU and closes the log."""

    def __init__(self, spec: BootSpec) -> None:
        if not spec.firmware.is_file():
            raise UserError(f"U-Boot firmware {spec.firmware} not found: install u-boot-qemu")
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        argv = interactive_argv(spec)
        self.log = open(spec.log_path, "wb")  # closed by quit()
        self.tee = _Tee(self.log, sys.stdout.buffer)
        self.child = pexpect.spawn(argv[0], argv[1:], timeout=spec.timeout_seconds, echo=False)
        self.child.logfile_read = self.tee
        try:
            self.child.expect_exact(AUTOBOOT_PROMPT)
            self.child.send(b"\r")
            self.child.expect_exact(UBOOT_PROMPT)
            for command in spec.commands[:-1]:
                self.child.sendline(command)
                self.child.expect_exact(UBOOT_PROMPT)
            self.child.sendline(spec.commands[-1])
        except (pexpect.TIMEOUT, pexpect.EOF) as exc:
            self.quit()
            what = "QEMU exited" if isinstance(exc, pexpect.EOF) else \
                f"no U-Boot prompt within {spec.timeout_seconds:g} s"
            raise UserError(f"{what} before the boot commands were typed "
                            f"(console: {spec.log_path})") from None

    def share_console(self, stop: Callable[[], bool] = lambda: False) -> bool:
        """Copy the console to this terminal and the keys typed to QEMU (the terminal in raw
        mode meanwhile, restored after), until QEMU exits (False) or `stop()`, asked every
        POLL_SECONDS, says to give the terminal back (True; QEMU keeps running)."""
        sys.stderr.write(ESCAPE_HINT)
        sys.stderr.flush()
        keyboard = sys.stdin.fileno()
        saved = termios.tcgetattr(keyboard) if os.isatty(keyboard) else None
        if saved is not None:
            tty.setraw(keyboard)
        try:
            return self._copy(keyboard, stop)
        finally:
            if saved is not None:
                termios.tcsetattr(keyboard, termios.TCSAFLUSH, saved)

    def _copy(self, keyboard: int, stop: Callable[[], bool]) -> bool:
        qemu = self.child.child_fd
        sources = [qemu, keyboard]
        while True:
            if stop():
                return True
            ready, _, _ = select.select(sources, [], [], POLL_SECONDS)
            if qemu in ready:
                try:
                    data = os.read(qemu, 65536)
                except OSError:  # EIO: QEMU has exited and closed its terminal
                    data = b""
                if not data:
                    return False
                self.tee.write(data)
                self.tee.flush()
            if keyboard in ready:
                typed = os.read(keyboard, 1024)
                if typed:
                    os.write(qemu, typed)
                else:  # end of input: keep showing the console
                    sources.remove(keyboard)

    def quit(self) -> int:
        """End QEMU if it still runs (SIGTERM: QEMU exits cleanly; killed after
        QUIT_SECONDS) and close the log; QEMU's exit status (1 when it was ended here)."""
        self.tee.terminal = None
        if self.child.isalive():
            self.child.kill(signal.SIGTERM)
            try:
                self.child.expect(pexpect.EOF, timeout=QUIT_SECONDS)
            except pexpect.TIMEOUT:
                pass
        self.child.close(force=True)
        self.log.close()
        return self.child.exitstatus if self.child.exitstatus is not None else 1


def boot_interactive(spec: BootSpec) -> int:
    """Boot `spec` with the console on this terminal until QEMU exits; QEMU's exit status.

    Raises UserError as InteractiveBoot does."""
    session = InteractiveBoot(spec)
    try:
        session.share_console()
    finally:
        code = session.quit()
    return code
