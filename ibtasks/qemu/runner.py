"""Boot a system under QEMU with U-Boot as firmware and watch its serial console.

Only a boot proves a boot script works. This driver starts QEMU, stops U-Boot's autoboot, types
the commands of a `BootSpec`, and watches the console for success markers (with their arrival
times) and known failure patterns; it always saves the whole log and always kills QEMU.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ibtasks.errors import UserError
from ibtasks.qemu.console import (
    AUTOBOOT_PROMPT,
    UBOOT_PROMPT,
    Console,
    ConsoleFailure,
    Session,
)
from ibtasks.qemu.machine import (
    UBOOT_QEMU_ARM64,
    Machine,
    ahci_disk_args,
    disk_commands,
    dump_dtb,
    tftp_args,
    tftp_commands,
    virtio_disk_args,
)
from ibtasks.tools import start_interactive

# The names boot tests and examples import from here; the machine's own live in qemu.machine.
__all__ = [
    "AUTOBOOT_PROMPT", "DEFAULT_FAILURE_PATTERNS", "UBOOT_PROMPT", "UBOOT_QEMU_ARM64",
    "BootResult", "BootSpec", "Machine", "ahci_disk_args", "boot", "describe_failure",
    "disk_commands", "dump_dtb", "missing_markers", "qemu_argv", "tftp_args", "tftp_commands",
    "virtio_disk_args",
]

# Console text that means the boot has failed and waiting longer is pointless.
DEFAULT_FAILURE_PATTERNS: tuple[str, ...] = (
    "Kernel panic",
    "Panic on CPU",
    "Bad Linux ARM64 Image magic",
    "Wrong Image Format",
    "Unknown command",
    "FDT_ERR_",
    "Sorry, I could not convert",
    "Synchronous Abort",
    "resetting ...",
)


@dataclass(frozen=True)
class BootSpec:
    """One boot: machine, firmware, boot media, what to type, and what to expect.

    `media_args` are the QEMU arguments of the boot media (see `tftp_args`, `virtio_disk_args`,
    `ahci_disk_args`); `commands` are typed at U-Boot's prompt in order, each waiting for the
    prompt to come back except the last, which must boot. Every marker in `markers` must
    appear; any of `absent_markers` appearing fails the boot, and after the last marker the
    console is still watched for `settle_seconds` so that a late one is caught.
    """

    commands: tuple[str, ...]
    markers: tuple[str, ...]
    log_path: Path
    media_args: tuple[str, ...] = ()
    machine: Machine = field(default_factory=Machine)
    firmware: Path = UBOOT_QEMU_ARM64
    absent_markers: tuple[str, ...] = ()
    failure_patterns: tuple[str, ...] = DEFAULT_FAILURE_PATTERNS
    timeout_seconds: float = 300.0
    idle_seconds: float = 60.0
    settle_seconds: float = 0.0
    extra_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class BootResult:
    """What a boot showed: marker arrival times (seconds after QEMU started) and why it failed."""

    ok: bool
    reason: str
    marker_times: dict[str, float]
    marker_lines: dict[str, str]
    elapsed: float
    log_path: Path

    def tail(self, lines: int = 40) -> str:
        """The last console lines, for a failure message."""
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def summary(self) -> str:
        """Per marker, when it arrived; then the verdict."""
        rows = [
            f"  {marker:<14} {self.marker_times[marker]:7.1f} s  {self.marker_lines[marker]}"
            for marker in sorted(self.marker_times, key=self.marker_times.__getitem__)
        ]
        verdict = "booted" if self.ok else f"FAILED: {self.reason}"
        rows.append(f"  {verdict} after {self.elapsed:.1f} s (log: {self.log_path})")
        return "\n".join(rows)


def qemu_argv(spec: BootSpec) -> list[str]:
    """The whole QEMU command line of a boot."""
    return [
        *spec.machine.base_args(),
        "-accel", spec.machine.accel,
        "-display", "none",
        "-monitor", "none",
        "-serial", "stdio",
        "-no-reboot",
        "-bios", str(spec.firmware),
        *spec.media_args,
        *spec.extra_args,
    ]


def _run_session(spec: BootSpec, session: Session, result_times: dict[str, float],
                 lines: dict[str, str]) -> None:
    console = session.console
    position = session.wait_for(AUTOBOOT_PROMPT, 0)
    session.type("")
    position = session.wait_for(UBOOT_PROMPT, position)
    for number, command in enumerate(spec.commands):
        mark = len(console.text)
        session.type(command)
        if number < len(spec.commands) - 1:
            # The echoed command comes back first, then its output, then the prompt again.
            position = session.wait_for(UBOOT_PROMPT, session.wait_for(command, mark))
        else:
            session.prompt_failure_from = mark
    found_from = {marker: 0 for marker in (*spec.markers, *spec.absent_markers)}
    first_seen: dict[str, float] = {}
    settle_until: float | None = None
    while True:
        for marker in spec.markers:
            if marker in result_times:
                continue
            index = console.text.find(marker, found_from[marker])
            if index < 0:
                found_from[marker] = max(0, len(console.text) - len(marker))
                continue
            if marker not in first_seen:
                first_seen[marker] = round(session.elapsed(), 1)
            # The values the domain reports follow the marker: keep the line once it is whole.
            if console.text.find("\n", index) >= 0:
                result_times[marker] = first_seen[marker]
                lines[marker] = console.line_at(index)
        for marker in spec.absent_markers:
            index = console.text.find(marker, found_from[marker])
            if index >= 0:
                raise ConsoleFailure(f"unexpected marker {marker}: {console.line_at(index)}")
            found_from[marker] = max(0, len(console.text) - len(marker))
        if len(result_times) == len(spec.markers):
            if settle_until is None:
                settle_until = time.monotonic() + spec.settle_seconds
            if time.monotonic() >= settle_until:
                return
        session.pump(0.2)


def boot(spec: BootSpec) -> BootResult:
    """Boot `spec` under QEMU and report which markers arrived when; QEMU is always killed."""
    if not spec.firmware.is_file():
        raise UserError(f"U-Boot firmware {spec.firmware} not found: install u-boot-qemu")
    spec.log_path.parent.mkdir(parents=True, exist_ok=True)
    console = Console(spec.log_path)
    times: dict[str, float] = {}
    lines: dict[str, str] = {}
    try:
        proc = start_interactive(qemu_argv(spec))
    except UserError:
        console.close()
        raise
    session = Session(proc, console, timeout_seconds=spec.timeout_seconds,
                      idle_seconds=spec.idle_seconds, failure_patterns=spec.failure_patterns)
    reason = ""
    try:
        _run_session(spec, session, times, lines)
    except ConsoleFailure as failure:
        reason = str(failure)
    finally:
        elapsed = round(session.elapsed(), 1)
        proc.kill()
        proc.wait()
        session.selector.close()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        console.close()
    return BootResult(
        ok=not reason,
        reason=reason,
        marker_times=times,
        marker_lines=lines,
        elapsed=elapsed,
        log_path=spec.log_path,
    )


def describe_failure(result: BootResult, tail_lines: int = 40) -> str:
    """A failed boot as a message: the reason, the markers seen, and the console's last lines."""
    seen = ", ".join(f"{m} at {t:.1f} s" for m, t in result.marker_times.items()) or "none"
    return (
        f"boot failed: {result.reason}\nmarkers seen: {seen}\n"
        f"last console lines ({result.log_path}):\n{result.tail(tail_lines)}"
    )


def missing_markers(spec: BootSpec, result: BootResult) -> Sequence[str]:
    """Markers of `spec` that never arrived."""
    return [marker for marker in spec.markers if marker not in result.marker_times]
