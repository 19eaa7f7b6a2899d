"""Finding how far our processes have read a file (cli/read_progress.py), against real
processes: a reader's offset is what it read, a process outside our tree is ignored, a gone
process or a missing /proc is no error."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from ibtasks.cli.read_progress import ReadWatch, descendants, read_offsets
from tests.unprivileged import run_as_user, unprivileged_python

# A reader that opens FILE, reads COUNT bytes with one read(2), says so, then waits for stdin.
READER = ("import os, sys\n"
          "fd = os.open(sys.argv[1], os.O_RDONLY)\n"
          "got = len(os.read(fd, int(sys.argv[2])))\n"
          "print(got, flush=True)\n"
          "for line in sys.stdin:\n"
          "    got += len(os.read(fd, int(line)))\n"
          "    print(got, flush=True)\n")


def write_file(path: Path, size: int) -> Path:
    path.write_bytes(os.urandom(size))
    return path


def start_reader(path: Path, count: int, *prefix: str) -> subprocess.Popen[str]:
    reader = subprocess.Popen([*prefix, sys.executable, "-c", READER, str(path), str(count)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert reader.stdout is not None
    assert int(reader.stdout.readline()) == count
    return reader


def stop(process: subprocess.Popen[str]) -> None:
    assert process.stdin is not None
    process.stdin.close()
    process.wait(timeout=10)


def test_a_childs_offset_is_the_bytes_it_has_read(tmp_path: Path) -> None:
    data = write_file(tmp_path / "rootfs.tar", 1_000_000)
    reader = start_reader(data, 12345)
    try:
        assert read_offsets(data) == {(reader.pid, 3): 12345}
        assert reader.stdin is not None and reader.stdout is not None
        reader.stdin.write("100000\n")
        reader.stdin.flush()
        assert int(reader.stdout.readline()) == 112345
        assert read_offsets(data) == {(reader.pid, 3): 112345}
    finally:
        stop(reader)
    assert read_offsets(data) == {}


def test_a_grandchild_under_a_shell_is_found_through_a_symlink(tmp_path: Path) -> None:
    data = write_file(tmp_path / "rootfs.tar.gz", 300_000)
    (tmp_path / "link.tar.gz").symlink_to(data)
    reader = start_reader(tmp_path / "link.tar.gz", 4096, "sh", "-c", '"$@"; :', "sh")
    try:
        (pid, _), = read_offsets(tmp_path / "rootfs.tar.gz")
        assert pid != reader.pid and pid in descendants(reader.pid)
        assert list(read_offsets(tmp_path / "link.tar.gz").values()) == [4096]
    finally:
        stop(reader)


def test_a_real_tool_stopped_by_a_full_pipe_stands_inside_the_file(tmp_path: Path) -> None:
    data = write_file(tmp_path / "rootfs.cpio", 4 * 1024 * 1024)
    pipeline = subprocess.Popen(["sh", "-c", f"cat {data} | sleep 30"])
    try:
        deadline = time.monotonic() + 10
        while not (offsets := read_offsets(data)) and time.monotonic() < deadline:
            time.sleep(0.05)
        (position,) = offsets.values()
        assert 0 < position < data.stat().st_size  # the pipe holds 64 KiB, cat no more
    finally:
        pipeline.kill()
        pipeline.wait()


def test_a_process_outside_the_tree_is_ignored(tmp_path: Path) -> None:
    data = write_file(tmp_path / "rootfs.tar", 100_000)
    reader = start_reader(data, 777)
    sibling = subprocess.Popen(["sleep", "30"])
    try:
        assert read_offsets(data, root=sibling.pid) == {}
        assert read_offsets(data, root=os.getpid()) == {(reader.pid, 3): 777}
        assert reader.pid not in descendants(sibling.pid)
    finally:
        sibling.kill()
        sibling.wait()
        stop(reader)


def test_a_reader_left_to_init_is_not_ours(tmp_path: Path) -> None:
    data = write_file(tmp_path / "rootfs.tar", 100_000)
    # The shell starts the reader in the background and exits: the reader's parent is then
    # init (or a subreaper above us), not us.
    ready = tmp_path / "ready"
    script = (f"import os, time; fd = os.open({str(data)!r}, os.O_RDONLY); os.read(fd, 99); "
              f"open({str(ready)!r}, 'w').close(); time.sleep(30)")
    subprocess.run(["sh", "-c", f'"{sys.executable}" -c "{script}" >/dev/null 2>&1 &'],
                   check=True)
    deadline = time.monotonic() + 10
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    everyone = read_offsets(data, root=1)
    try:
        assert list(everyone.values()) == [99]  # it is there, from the top of the tree
        assert read_offsets(data) == {}
    finally:
        for pid, _ in everyone:
            os.kill(pid, 9)


def test_a_gone_process_and_a_missing_proc_are_no_error(tmp_path: Path) -> None:
    data = write_file(tmp_path / "rootfs.tar", 10_000)
    gone = subprocess.Popen(["true"])
    gone.wait()
    assert read_offsets(data, root=gone.pid) == {}
    assert descendants(gone.pid) == [gone.pid]
    assert read_offsets(data, proc=tmp_path / "no-proc") == {}
    assert ReadWatch(data, proc=tmp_path / "no-proc").sample() is None


def test_processes_ending_during_the_scan_are_no_error(tmp_path: Path) -> None:
    data = write_file(tmp_path / "rootfs.tar", 10_000)
    churn = subprocess.Popen(["sh", "-c", "for i in $(seq 300); do /bin/true; done"])
    reader = start_reader(data, 5)
    try:
        while churn.poll() is None:
            assert read_offsets(data) == {(reader.pid, 3): 5}
    finally:
        stop(reader)
        churn.wait()


def test_another_users_processes_cannot_be_looked_into_and_that_is_no_error(
        tmp_path: Path) -> None:
    data = write_file(tmp_path / "rootfs.tar", 100_000)
    data.chmod(0o644)
    tmp_path.chmod(0o755)
    reader = start_reader(data, 2024)  # ours: root's, when the tests run as root
    probe = ("import sys; from pathlib import Path; "
             "from ibtasks.cli.read_progress import read_offsets; "
             "print(read_offsets(Path(sys.argv[1]), root=1))")
    try:
        result = run_as_user([unprivileged_python(), "-c", probe, str(data)], cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        expected = "{}" if os.geteuid() == 0 else str({(reader.pid, 3): 2024})
        assert result.stdout.strip() == expected
    finally:
        stop(reader)


def test_a_watch_gives_position_size_rate_and_counts_a_second_pass(tmp_path: Path) -> None:
    data = write_file(tmp_path / "rootfs.tar.gz", 1_000_000)
    times = iter([0.0, 2.0, 3.0])
    watch = ReadWatch(data, clock=lambda: next(times))
    reader = start_reader(data, 100_000)
    assert reader.stdin is not None and reader.stdout is not None
    try:
        first = watch.sample()
        assert first is not None and (first.position, first.size, first.rate,
                                      first.pass_number) == (100_000, 1_000_000, None, 1)
        reader.stdin.write("200000\n")
        reader.stdin.flush()
        assert int(reader.stdout.readline()) == 300_000
        second = watch.sample()
        assert second is not None and second.rate == 100_000.0  # 200000 bytes in 2 s
        assert second.describe() == "292.96 KiB / 976.56 KiB 30% 97.65 KiB/s"
    finally:
        stop(reader)
    again = start_reader(data, 10)  # a new reader: the second pass
    try:
        third = watch.sample()
        assert third is not None and third.pass_number == 2 and third.rate is None
        assert third.describe() == "10 bytes / 976.56 KiB 0% (pass 2)"
    finally:
        stop(again)
