"""How far our processes have read a file, found as `pv -d` finds it: among a process and its
descendants (the parent pid in /proc/PID/stat), the descriptors open on the file (/proc/PID/fd/N
links to its path) and their offsets (`pos:` in /proc/PID/fdinfo/N). disk-image's progress
(cli.progress) follows the rootfs archive this way while doit's worker processes, mke2fs or the
fakeroot extraction read it, without changing what they do. Linux only: without /proc, or for a
process we may not look into, nothing is found, never an error.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ibtasks.plan.memory_map import human_size

PROC = Path("/proc")
# The span of recent samples a read's rate is measured over (seconds).
RATE_WINDOW = 3.0


def _parent_pids(proc: Path) -> dict[int, int]:
    """Each process's parent: pid -> ppid from /proc/PID/stat (empty without /proc)."""
    try:
        names = os.listdir(proc)
    except OSError:
        return {}
    parents = {}
    for name in names:
        if not name.isdigit():
            continue
        try:
            stat = (proc / name / "stat").read_bytes()
        except OSError:  # the process ended since the listing
            continue
        # `pid (comm) state ppid ...`: comm may hold spaces and parentheses.
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 1 and fields[1].isdigit():
            parents[int(name)] = int(fields[1])
    return parents


def descendants(root: int, proc: Path = PROC) -> list[int]:
    """`root` and every process whose chain of parents leads to it (pids, root first); just
    `[root]` when /proc cannot be read. A process that ends meanwhile is left out or kept
    (whichever the scan saw); the callers read each pid's files knowing it may be gone."""
    children: dict[int, list[int]] = {}
    for pid, parent in _parent_pids(proc).items():
        children.setdefault(parent, []).append(pid)
    found = [root]
    for pid in found:  # grows as it goes: breadth first
        found.extend(children.get(pid, ()))
    return found


def _position(fdinfo: Path) -> int | None:
    """The offset in /proc/PID/fdinfo/N (`pos:\t1234`), None when it cannot be read."""
    try:
        for line in fdinfo.read_text().splitlines():
            if line.startswith("pos:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def read_offsets(path: Path, root: int | None = None,
                 proc: Path = PROC) -> dict[tuple[int, int], int]:
    """Where each descriptor open on the file `path` stands, among process `root` (default:
    this process) and its descendants: (pid, descriptor number) -> offset in bytes from the
    start of the file. `path` is compared by its real path (symlinks resolved) with the
    descriptor's link, as `pv -d` does. Empty when no process of ours has it open, without
    /proc, or when the processes cannot be looked into (another user's, without privilege)."""
    target = os.path.realpath(path)
    offsets = {}
    for pid in descendants(os.getpid() if root is None else root, proc):
        folder = proc / str(pid)
        try:
            descriptors = os.listdir(folder / "fd")
        except OSError:  # gone, or not ours to look into
            continue
        for fd in descriptors:
            try:
                if os.readlink(folder / "fd" / fd) != target:
                    continue
            except OSError:  # closed meanwhile
                continue
            position = _position(folder / "fdinfo" / fd)
            if position is not None:
                offsets[(pid, int(fd))] = position
    return offsets


@dataclass(frozen=True)
class ReadSample:
    """One look at a read: `position` and `size` of the file in bytes (for a compressed
    archive both are of the compressed file, so the fraction is right), the rate in bytes per
    second over the last RATE_WINDOW seconds (None on the first look), and which pass over the
    file this is (1 for the first: a rootfs archive is read once to size the filesystem,
    then again by mke2fs)."""

    position: int
    size: int
    rate: float | None
    pass_number: int

    def describe(self) -> str:
        """`120 MiB / 406 MiB 29% 85 MiB/s`, with `(pass 2)` from the second pass on."""
        percent = self.position * 100 // self.size if self.size else 100
        text = f"{human_size(self.position)} / {human_size(self.size)} {percent}%"
        if self.rate is not None:
            text += f" {human_size(int(self.rate))}/s"
        return text + (f" (pass {self.pass_number})" if self.pass_number > 1 else "")


class ReadWatch:
    """Follows the reads of the file `path` by process `root` (default: this process) and its
    descendants. Each `sample()` looks once; the watch keeps to the descriptor it followed
    while that one stays open and counts a new pass when it changes or moves back."""

    def __init__(self, path: Path, root: int | None = None, proc: Path = PROC,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path)
        self.root = os.getpid() if root is None else root
        self.proc = proc
        self._clock = clock
        self._reader: tuple[int, int] | None = None
        self._passes = 0
        self._recent: deque[tuple[float, int]] = deque()

    def sample(self) -> ReadSample | None:
        """Where the read stands now, or None when no process of ours has the file open (yet,
        any more, or we cannot see it)."""
        offsets = read_offsets(self.path, self.root, self.proc)
        if not offsets:
            return None
        try:
            size = os.stat(self.path).st_size
        except OSError:
            return None
        reader = self._reader
        if reader is None or reader not in offsets:
            # Another reader: the one furthest behind is the one that started last.
            reader = self._reader = min(offsets, key=lambda key: offsets[key])
            self._new_pass()
        position = offsets[reader]
        if self._recent and position < self._recent[-1][1]:
            self._new_pass()  # the same descriptor went back to the start
        now = self._clock()
        self._recent.append((now, position))
        while len(self._recent) > 2 and now - self._recent[1][0] >= RATE_WINDOW:
            self._recent.popleft()
        rate = None
        first_time, first_position = self._recent[0]
        if now > first_time:
            rate = (position - first_position) / (now - first_time)
        return ReadSample(min(position, size), size, rate, self._passes)

    def _new_pass(self) -> None:
        self._passes += 1
        self._recent.clear()
