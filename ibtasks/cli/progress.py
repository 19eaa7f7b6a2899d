"""disk-image's progress: each disk step (each partition with the archive it reads, the disk
assembly, the block map) as it runs, and a summary at the end (the partitions as the image's
table has them, sizes, what was rebuilt, the time).

On a terminal the steps are live (rich): a spinner, how far the rootfs archive has been read
(cli.read_progress: bytes, percent, rate), the time so far and the bytes the step has written
(its target or the `.<target>.ibtmp-*` temporary beside it, polled on each refresh). Otherwise,
as in CI logs, one plain line when a step starts and one when it ends, and for a long step a
line at most every PLAIN_INTERVAL seconds: how far its archive has been read, or else how long
it has run and what it has written (mke2fs filling the image after an extraction, say).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ibtasks.cli.read_progress import ReadWatch
from ibtasks.fsutil import temp_prefix
from ibtasks.plan.memory_map import human_size
from ibtasks.tasks.run_log import RunListener, RunLog, TaskRecord

DISK_STEPS = ("ib_partition", "ib_disk", "ib_bmap")
# Without a terminal: the least time between two lines on a running step (seconds).
PLAIN_INTERVAL = 10.0
# On a terminal: how often the live rows are redrawn (per second).
LIVE_REFRESH = 4.0


def is_disk_step(name: str) -> bool:
    """Whether doit task `name` is one of the disk's long steps (`ib_partition:dom0`, ...)."""
    return name.split(":", 1)[0] in DISK_STEPS


def bytes_written(target: Path) -> int:
    """What a step has written to `target` so far: the largest of the target, its temporaries
    (fsutil.temp_prefix) and the files directly inside a temporary folder (the rootfs builders
    make the image in one, beside the tree they extract), 0 when there is none yet (bytes)."""
    sizes = [0]
    folder = target.parent
    try:
        names = os.listdir(folder if str(folder) else ".")
    except OSError:
        return 0
    prefix = temp_prefix(target)
    for name in names:
        if name == target.name or name.startswith(prefix):
            path = folder / name
            try:
                if name != target.name and path.is_dir():
                    with os.scandir(path) as inside:
                        sizes += [entry.stat().st_blocks * 512 for entry in inside
                                  if entry.is_file(follow_symlinks=False)]
                else:
                    sizes.append(os.stat(path).st_blocks * 512)
            except OSError:
                pass
    return max(sizes)


def _archives(task: Any) -> list[Path]:
    """The rootfs archives a step reads (paths as doit has them), sorted."""
    rootfs = task.name.startswith("ib_partition:") and task.name != "ib_partition:boot"
    return sorted(Path(d) for d in task.file_dep if rootfs
                  and any(s in Path(d).name for s in (".tar", ".cpio", ".tgz")))


def _describe_start(task: Any, anchor: Path) -> str:
    """`ib_partition:dom0: reading rootfs.tar.gz (12.50 MiB) into .ibtasks/dom0.ext4`."""
    targets = ", ".join(str(t) for t in _outputs(task.targets))
    read = ", ".join(f"{a} ({human_size(_size(anchor / a))})" for a in _archives(task))
    return f"{task.name}: " + (f"reading {read} into {targets}" if read else f"writing {targets}")


def _outputs(targets: list[Any]) -> list[str]:
    """A step's images, without the small records beside them (`.json`, `.built`)."""
    return [str(t) for t in targets if not str(t).endswith((".json", ".built"))]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


@dataclass
class _RunningStep:
    """Plain mode: a step that runs, its archives' read watches and targets, when it started
    and when its last line was written (time.monotonic seconds)."""

    reads: list[tuple[Path, ReadWatch]]
    targets: list[Path]
    started: float
    last_line: float


class DiskProgress(RunListener):
    """A RunListener for disk-image writing to `stream`: live on a terminal, else one line
    per step start and end. `anchor` is the folder doit runs in (task paths are relative to
    it). Call `close` after the run, then `summary`."""

    def __init__(self, stream: TextIO, anchor: Path, live: bool | None = None) -> None:
        self.stream = stream
        self.anchor = anchor
        self.live = stream.isatty() if live is None else live
        self.started = time.monotonic()
        self._progress: Any = None
        self._ids: dict[str, Any] = {}
        # Plain mode: each running step; a thread writes the lines of long ones (started
        # with the first step, stopped by `close`).
        self._running: dict[str, _RunningStep] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def _targets(self, task: Any) -> list[Path]:
        return [self.anchor / t for t in _outputs(task.targets)]

    def step_started(self, task: Any, record: TaskRecord) -> None:
        if not is_disk_step(task.name):
            return
        text = _describe_start(task, self.anchor)
        watches = [(a, ReadWatch(self.anchor / a)) for a in _archives(task)]
        if not self.live:
            with self._lock:
                self._write(f"ibtasks: {text}\n")
                now = time.monotonic()
                self._running[task.name] = _RunningStep(watches, self._targets(task), now, now)
                if self._ticker is None:
                    self._ticker = threading.Thread(target=self._tick, daemon=True)
                    self._ticker.start()
            return
        if self._progress is None:
            self._progress = _live_progress(self.stream)
            self._progress.start()
        # The row: the task's name, then what it does now (its archive read, else the bytes
        # written, else what it is about to do), short enough for an 80-column terminal.
        self._ids[task.name] = self._progress.add_task(
            f"{task.name}:", total=None, reads=watches, targets=self._targets(task),
            start=text.removeprefix(f"{task.name}: "))

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def _tick(self) -> None:
        """Plain mode's thread: every so often, a line for each running step whose last line
        is PLAIN_INTERVAL seconds old or more: its archive read, else its time and bytes
        written so far."""
        while not self._stop.wait(min(1.0, PLAIN_INTERVAL / 4)):
            with self._lock:
                for name, step in self._running.items():
                    samples = [(a, w.sample()) for a, w in step.reads]
                    now = time.monotonic()
                    if now - step.last_line < PLAIN_INTERVAL:
                        continue  # sampled all the same: the rate needs the history
                    text = ", ".join(f"{a} {s.describe()}" for a, s in samples if s)
                    if text:
                        self._write(f"ibtasks: {name}: read {text}\n")
                    else:
                        written = sum(bytes_written(t) for t in step.targets)
                        self._write(f"ibtasks: {name}: running for {now - step.started:.0f} s, "
                                    f"wrote {human_size(written)}\n")
                    step.last_line = now

    def step_finished(self, task: Any, record: TaskRecord) -> None:
        if not is_disk_step(task.name):
            return
        written = sum(_size(t) for t in self._targets(task))
        done = "failed" if record.status == "failed" else "done"
        line = (f"{task.name}: {done}, {human_size(written)} in "
                f"{record.seconds or 0:.1f} s")
        if self.live and task.name in self._ids:
            self._progress.update(self._ids.pop(task.name), total=1, completed=1, reads=[],
                                  targets=[], start=line.removeprefix(f"{task.name}: "))
            return
        with self._lock:
            self._running.pop(task.name, None)
            self._write(f"ibtasks: {line}\n")

    def close(self) -> None:
        """Stop the live display, or plain mode's thread of read lines."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def summary(self, run_log: RunLog, disk: dict[str, Any] | None, image: Path,
                timed: bool = True) -> None:
        """The closing lines: the image, its size and table; each partition's number, name,
        start and size; the tasks rebuilt; the time since this object was made (unless not
        `timed`: the no-op fast path replays the summary without it)."""
        lines = []
        if disk is not None:
            size = _size(image)
            count = len(disk["partitions"])
            lines.append(f"{image}: {human_size(size)} ({size} bytes), {disk['label']}, "
                         f"{count} partition{'' if count == 1 else 's'}")
            for part in disk["partitions"]:
                name = f" {part['name']}" if part["name"] else ""
                lines.append(f"  partition {part['number']}{name} (type {part['type']}): at "
                             f"{part['start_bytes']:#x}, {human_size(part['size_bytes'])}")
        rebuilt = run_log.names("ran")
        lines.append(f"rebuilt: {', '.join(rebuilt)}" if rebuilt else "rebuilt: nothing, "
                     "every task was up to date")
        if timed:
            lines.append(f"done in {time.monotonic() - self.started:.1f} s")
        self.stream.write("".join(f"ibtasks: {line}\n" for line in lines))
        self.stream.flush()


def _live_progress(stream: TextIO) -> Any:
    """rich's Progress on `stream`: spinner, the step's name, what it does now (how far its
    archive is read, else the bytes written so far, else what it is about to do) and the
    elapsed time; one line a step, cut with an ellipsis rather than wrapped, and no rich markup
    or emoji codes in names (`ib_partition:boot:` holds one)."""
    from rich.console import Console
    from rich.progress import Progress, ProgressColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Task as RichTask
    from rich.table import Column
    from rich.text import Text

    console = Console(file=stream, emoji=False, highlight=False)
    # Spinner, name (20), time (7) and the spaces between: what the row leaves for the rest.
    room = max(20, console.width - 32)

    class NowColumn(ProgressColumn):  # type: ignore[misc]
        """What the step does now (polled at each refresh), cut to the room the terminal
        leaves, so that the other columns keep their width."""

        def render(self, task: RichTask) -> Text:
            samples = [(a, w.sample()) for a, w in task.fields.get("reads", [])]
            # The archive's name last: on a narrow terminal it is cut before the numbers.
            text = ", ".join(f"read {s.describe()} of {a.name}" for a, s in samples if s)
            if not text:
                written = sum(bytes_written(t) for t in task.fields.get("targets", []))
                text = f"wrote {human_size(written)}" if written else task.fields.get("start", "")
            return Text(text if len(text) <= room else text[:room - 1] + "…", no_wrap=True)

    # The name and the time keep their width (`ib_partition:domU10:` is 20 characters);
    # what the step does now takes the rest and is cut first.
    name = TextColumn("{task.description}", markup=False,
                      table_column=Column(no_wrap=True, min_width=20))
    now = NowColumn(table_column=Column(no_wrap=True, overflow="ellipsis", ratio=1))
    elapsed = TimeElapsedColumn(table_column=Column(no_wrap=True, min_width=7))
    return Progress(SpinnerColumn(), name, now, elapsed,
                    console=console,
                    transient=False, refresh_per_second=LIVE_REFRESH)
