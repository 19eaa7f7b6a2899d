"""An interactive boot: QEMU's serial console handed to the user's terminal (pexpect), after
U-Boot's autoboot is stopped and the boot commands are typed. Ctrl-A X quits QEMU (its `mon:`
serial multiplexer; Ctrl-A C is the monitor). The whole console is saved to the spec's log."""

from __future__ import annotations

import sys
from typing import BinaryIO

import pexpect

from ibtasks.errors import UserError
from ibtasks.qemu.console import AUTOBOOT_PROMPT, UBOOT_PROMPT
from ibtasks.qemu.runner import BootSpec, qemu_argv

ESCAPE_HINT = "ibtasks: the console is yours; Ctrl-A X quits QEMU, Ctrl-A H lists the keys\n"


class _Tee:
    """pexpect's `logfile_read`: the console to the log, and to the terminal until `interact`
    takes over echoing it."""

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


def boot_interactive(spec: BootSpec) -> int:
    """Boot `spec` with the console on this terminal; QEMU's exit status.

    Raises UserError when U-Boot's firmware is missing or U-Boot does not reach its prompt
    within the spec's timeout (the last console lines are in the log)."""
    if not spec.firmware.is_file():
        raise UserError(f"U-Boot firmware {spec.firmware} not found: install u-boot-qemu")
    spec.log_path.parent.mkdir(parents=True, exist_ok=True)
    argv = interactive_argv(spec)
    with open(spec.log_path, "wb") as log:
        tee = _Tee(log, sys.stdout.buffer)
        child = pexpect.spawn(argv[0], argv[1:], timeout=spec.timeout_seconds, echo=False)
        child.logfile_read = tee
        try:
            child.expect_exact(AUTOBOOT_PROMPT)
            child.send(b"\r")
            child.expect_exact(UBOOT_PROMPT)
            for command in spec.commands[:-1]:
                child.sendline(command)
                child.expect_exact(UBOOT_PROMPT)
            child.sendline(spec.commands[-1])
        except (pexpect.TIMEOUT, pexpect.EOF) as exc:
            child.close(force=True)
            what = "QEMU exited" if isinstance(exc, pexpect.EOF) else \
                f"no U-Boot prompt within {spec.timeout_seconds:g} s"
            raise UserError(f"{what} before the boot commands were typed "
                            f"(console: {spec.log_path})") from None
        tee.terminal = None  # interact() echoes from here on; the log still gets everything
        sys.stderr.write(ESCAPE_HINT)
        sys.stderr.flush()
        child.interact(escape_character=None)
        child.close()
    return child.exitstatus if child.exitstatus is not None else 1
