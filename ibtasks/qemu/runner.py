"""Boot a system under QEMU with U-Boot as firmware and watch its serial console.

Only a boot proves a boot script works. This driver starts QEMU, stops U-Boot's autoboot, types
the commands of a `BootSpec`, and watches the console for success markers (with their arrival
times) and known failure patterns; it always saves the whole log and always kills QEMU.
"""

from __future__ import annotations

import os
import selectors
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ibtasks.errors import UserError

UBOOT_QEMU_ARM64 = Path("/usr/lib/u-boot/qemu_arm64/u-boot.bin")
"""U-Boot for QEMU's arm64 `virt` machine, from Debian's u-boot-qemu package."""

UBOOT_PROMPT = "=> "
AUTOBOOT_PROMPT = "Hit any key to stop autoboot"

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
class Machine:
    """The emulated board; the DTB dump and the boot must use the same values."""

    machine: str = "virt,virtualization=on,gic-version=3"
    cpu: str = "cortex-a57"
    smp: int = 2
    memory_mb: int = 2048
    qemu: str = "qemu-system-aarch64"
    accel: str = "tcg,thread=multi"

    @property
    def memory_start(self) -> int:
        """Where RAM starts on QEMU's arm64 `virt` machine."""
        return 0x40000000

    @property
    def memory_end(self) -> int:
        return self.memory_start + self.memory_mb * 1024 * 1024

    def base_args(self, machine_extra: str = "") -> list[str]:
        return [
            self.qemu,
            "-machine", self.machine + machine_extra,
            "-cpu", self.cpu,
            "-smp", str(self.smp),
            "-m", str(self.memory_mb),
        ]


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


def tftp_args(directory: Path) -> tuple[str, ...]:
    """A virtio network card on QEMU's user network, whose TFTP server serves `directory`."""
    return (
        "-netdev", f"user,id=net0,tftp={directory}",
        # romfile= : no iPXE option ROM; U-Boot drives the card itself.
        "-device", "virtio-net-pci,netdev=net0,romfile=",
    )


def tftp_commands(script: str = "boot.scr", address: int = 0x40000000) -> tuple[str, ...]:
    """U-Boot commands that fetch a boot script over TFTP from QEMU's user network and run it."""
    return (
        "setenv autoload no",
        "dhcp",
        "setenv serverip 10.0.2.2",
        f"tftpb {address:#x} {script}",
        f"source {address:#x}",
    )


def virtio_disk_args(image: Path, transport: str = "mmio") -> tuple[str, ...]:
    """A raw disk image as a virtio block device (`mmio` or `pci`); U-Boot calls it `virtio 0`."""
    device = "virtio-blk-device" if transport == "mmio" else "virtio-blk-pci"
    return (
        "-drive", f"if=none,file={image},format=raw,id=d0",
        "-device", f"{device},drive=d0",
    )


def ahci_disk_args(image: Path) -> tuple[str, ...]:
    """A raw disk image on an AHCI (SATA) controller; U-Boot calls it `scsi 0`."""
    return (
        "-device", "ahci,id=ahci0",
        "-drive", f"if=none,file={image},format=raw,id=d0",
        "-device", "ide-hd,drive=d0,bus=ahci0.0",
    )


def disk_commands(
    interface: str, partition: str = "0:1", script: str = "boot.scr", address: int = 0x40000000
) -> tuple[str, ...]:
    """U-Boot commands that load a boot script from a disk partition (`virtio` or `scsi`)."""
    return (
        f"{interface} scan",
        f"load {interface} {partition} {address:#x} {script}",
        f"source {address:#x}",
    )


def dump_dtb(machine: Machine, out: Path) -> None:
    """Write the DTB QEMU gives this machine (the one U-Boot passes on) to `out`."""
    argv = [*machine.base_args(f",dumpdtb={out}"), "-display", "none"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except FileNotFoundError as exc:
        raise UserError(f"{machine.qemu} not found: install qemu-system-arm") from exc
    if done.returncode != 0 or not out.is_file():
        raise UserError(f"{machine.qemu} could not dump its DTB to {out}: {done.stderr.strip()}")


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


class _Console:
    """The console text so far, with the search position of each pattern kept apart."""

    def __init__(self, log: Path) -> None:
        self.text = ""
        self._log = log.open("w", encoding="utf-8", errors="replace")

    def add(self, data: bytes) -> None:
        chunk = data.decode("utf-8", errors="replace").replace("\r", "")
        self.text += chunk
        self._log.write(chunk)
        self._log.flush()

    def close(self) -> None:
        self._log.close()

    def line_at(self, index: int) -> str:
        start = self.text.rfind("\n", 0, index) + 1
        end = self.text.find("\n", index)
        return self.text[start : end if end >= 0 else len(self.text)].strip()


class _Failure(Exception):
    """Ends a boot early; its message is the one-line reason."""


class _Session:
    """One running QEMU: read with timeouts, type commands, find text after a position."""

    def __init__(self, spec: BootSpec, proc: subprocess.Popen[bytes], console: _Console) -> None:
        self.spec = spec
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
        return time.monotonic() - self.start

    def pump(self, wait: float) -> None:
        """Read what QEMU printed within `wait` seconds; raise on failure text or timeouts."""
        now = time.monotonic()
        if now - self.start > self.spec.timeout_seconds:
            limit = self.spec.timeout_seconds
            raise _Failure(f"no success within the overall timeout of {limit:g} s")
        if now - self.last_output > self.spec.idle_seconds:
            raise _Failure(f"console silent for {self.spec.idle_seconds:g} s")
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
                raise _Failure(f"QEMU exited with status {code}")
            self.console.add(data)
            self.last_output = time.monotonic()

    def _whole_line(self, index: int) -> str:
        """The console line at `index`, after waiting up to 2 s for its end to arrive."""
        deadline = time.monotonic() + 2.0
        while self.console.text.find("\n", index) < 0 and time.monotonic() < deadline:
            try:
                self._read(0.1)
            except _Failure:
                break
        return self.console.line_at(index)

    def _check_failures(self) -> None:
        text = self.console.text
        longest = max((len(p) for p in self.spec.failure_patterns), default=0)
        for pattern in self.spec.failure_patterns:
            index = text.find(pattern, self.failure_from)
            if index >= 0:
                raise _Failure(f"console: {self._whole_line(index)}")
        if self.prompt_failure_from is not None:
            index = text.find("\n" + UBOOT_PROMPT, self.prompt_failure_from)
            if index >= 0:
                raise _Failure("back at the U-Boot prompt after the last command")
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
        self.stdin.write(line.encode() + b"\n")
        self.stdin.flush()


def _run_session(session: _Session, result_times: dict[str, float], lines: dict[str, str]) -> None:
    spec = session.spec
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
                raise _Failure(f"unexpected marker {marker}: {console.line_at(index)}")
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
    console = _Console(spec.log_path)
    times: dict[str, float] = {}
    lines: dict[str, str] = {}
    try:
        proc = subprocess.Popen(
            qemu_argv(spec),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
    except FileNotFoundError as exc:
        console.close()
        raise UserError(f"{spec.machine.qemu} not found: install qemu-system-arm") from exc
    session = _Session(spec, proc, console)
    reason = ""
    try:
        _run_session(session, times, lines)
    except _Failure as failure:
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
