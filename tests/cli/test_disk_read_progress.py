"""disk-image shows how far a rootfs archive has been read (cli/progress.py with
cli/read_progress.py), on both rootfs paths (mke2fs reading the archive, the fakeroot
extraction): plain lines in a log, the live rows on a terminal. The intervals are shortened in
the process the test runs (module constants), so a read of a few tenths of a second shows."""

from __future__ import annotations

import io
import os
import random
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from ibtasks.plan.memory_map import human_size
from tests.conftest import GOLDENS
from tests.terminal import run_on_terminal

ARCHIVE = "rootfs-domU.tar.gz"
DISK = ["disk-image", "-c", "config", "-d", ".", "-t", "scsi", "-o", "disk.img"]
# `python -c` running the CLI with disk-image's progress intervals shortened.
RUN = ("import sys, ibtasks.cli.progress as progress\n"
       "progress.PLAIN_INTERVAL = 0.05\n"
       "progress.LIVE_REFRESH = 50\n"
       "from ibtasks.cli.entry import main\n"
       "sys.argv = ['ibtasks', *sys.argv[1:]]\n"
       "sys.exit(main())\n")
PATHS = ["archive", "extract"]


@pytest.fixture(scope="module")
def large_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A gzip'd tar of 2000 files of 20000 random bytes (about 38 MiB: gzip cannot shrink
    them), in 20 folders: long enough to read that the progress shows it."""
    path = tmp_path_factory.mktemp("large-rootfs") / ARCHIVE
    noise = random.Random(13)
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for folder in range(20):
            entry = tarfile.TarInfo(f"usr/share/d{folder}")
            entry.type, entry.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(entry)
            for number in range(100):
                data = noise.randbytes(20000)
                entry = tarfile.TarInfo(f"usr/share/d{folder}/f{number}")
                entry.size, entry.mode = len(data), 0o644
                tar.addfile(entry, io.BytesIO(data))
    return path


def prepare(inputs: Path, rootfs: Path) -> Path:
    shutil.copy(GOLDENS / "noboot-rootfs-gzip-scsi" / "config", inputs / "config")
    shutil.copy(rootfs, inputs / ARCHIVE)
    return inputs


def environment(path: str, **extra: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "LOAD_CMD"} | {
        "IBTASKS_EXT4_PATH": path, **extra}


def read_fields(text: str, live: bool = False) -> list[tuple[int, str, int]]:
    """Each `read rootfs-domU.tar.gz 1.50 MiB / 38.32 MiB 3%` in `text` (on a terminal's rows,
    `live`: `read 1.50 MiB / 38.32 MiB 3% ... of rootfs-domU.tar.gz`): the position turned
    back to bytes (human_size cuts it to a hundredth of its unit), the size as written, the
    percent."""
    units = {"bytes": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
    name = "" if live else f"{re.escape(ARCHIVE)} "
    pattern = rf"read {name}([\d.]+) (\w+) / ([\d.]+ \w+) (\d+)%"
    return [(int(float(m.group(1)) * units[m.group(2)]), m.group(3), int(m.group(4)))
            for m in re.finditer(pattern, text)]


def check_reads(text: str, archive: Path, live: bool = False) -> list[int]:
    """The positions the reads in `text` show, each checked against the archive's size."""
    size = archive.stat().st_size
    reads = read_fields(text, live)
    for position, shown, percent in reads:
        assert shown == human_size(size) and 0 <= position <= size
        assert abs(percent - position * 100 // size) <= 1
    return [position for position, _, _ in reads]


# The mke2fs path with doit's worker processes and in doit's own process (-j 1: the reader
# is the process that shows the progress), the extraction under fakeroot.
@pytest.mark.parametrize(("path", "jobs"), [("archive", []), ("archive", ["-j", "1"]),
                                            ("extract", [])])
def test_a_long_archive_read_is_logged_as_it_goes_before_the_partition_ends(
        seed_inputs: Path, large_rootfs: Path, path: str, jobs: list[str]) -> None:
    prepare(seed_inputs, large_rootfs)
    result = subprocess.run([sys.executable, "-c", RUN, *DISK, *jobs], cwd=seed_inputs,
                            env=environment(path), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    size = large_rootfs.stat().st_size
    start = lines.index(f"ibtasks: ib_partition:domU2: reading {ARCHIVE} ({human_size(size)}) "
                        "into .ibtasks/domU2.ext4")
    end = next(n for n, line in enumerate(lines)
               if line.startswith("ibtasks: ib_partition:domU2: done, "))
    reads = [n for n, line in enumerate(lines) if line.startswith(
        f"ibtasks: ib_partition:domU2: read {ARCHIVE} ")]
    assert reads and all(start < n < end for n in reads), result.stdout
    for line in (lines[n] for n in reads):
        assert re.fullmatch(rf"ibtasks: ib_partition:domU2: read {re.escape(ARCHIVE)} [\d.]+ "
                            rf"\w+ / {re.escape(human_size(size))} \d+%( [\d.]+ \w+/s)?"
                            r"( \(pass \d\))?", line), line
    assert len(check_reads(result.stdout, large_rootfs)) == len(reads)
    # The small archive of dom0 is read too quickly to need a line of its own.
    assert not any("ib_partition:dom0: read " in line for line in lines)
    # A long step's other lines say how long it has run and what it has written: on the
    # extraction path, mke2fs filling the image once the archive is read.
    running = [line for line in lines[start:end]
               if line.startswith("ibtasks: ib_partition:domU2: running for ")]
    for line in running:
        assert re.fullmatch(r"ibtasks: ib_partition:domU2: running for \d+ s, wrote "
                            r"[\d.]+ \w+", line), line
    if path == "extract":
        assert running and lines.index(running[-1]) > reads[0], result.stdout


# Both rootfs paths on a wide terminal, and the usual 80 columns, where each row must still
# show the sizes and the percent on its one line (the archive's name is cut first).
@pytest.mark.parametrize(("path", "columns"), [(p, "250") for p in PATHS] + [("archive", "80")])
def test_on_a_terminal_the_rows_show_the_archive_read(
        seed_inputs: Path, large_rootfs: Path, path: str, columns: str) -> None:
    prepare(seed_inputs, large_rootfs)
    text = run_on_terminal([sys.executable, "-c", RUN, *DISK], seed_inputs,
                           environment(path, TERM="xterm", COLUMNS=columns))
    positions = check_reads(text, large_rootfs, live=True)
    assert any(0 < position < large_rootfs.stat().st_size for position in positions), text
    if columns == "250":
        assert f"of {ARCHIVE}" in text
    assert f"ibtasks: ib_partition:domU2: read {ARCHIVE}" not in text  # no plain lines
    # Names are shown as they are: rich would draw `:boot:` as an emoji.
    assert "ib_partition:boot:" in text and "\N{ATHLETIC SHOE}" not in text
    assert "\N{WOMANS BOOTS}" not in text
    assert re.search(r"ib_partition:domU2:\s+done, \S+ MiB in \d+\.\d s", text)
