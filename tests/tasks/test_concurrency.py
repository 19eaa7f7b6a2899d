"""One build per directory at a time (ibtasks.tasks.build_lock).

Rule: builds of one directory run one after the other under an flock of `.ibtasks/lock`; a build
that has to wait says so in one line, and gives up with one line after IBTASKS_LOCK_TIMEOUT
seconds; the no-op fast path never replays while a build holds the lock. Checked by starting
disk-image and uboot-script-gen runs together and comparing their outputs with a sequential
build's bytes; disk.img is read with sfdisk and its boot partition with fsck.fat.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.integrity_inputs import ibtasks_argv, make_xen_inputs, one_error_line, run

ROUNDS = 8
OUTPUTS = ("boot.source", "boot.scr", "boot.dtb", "disk.img")
DISK = ("disk-image", "-c", "config", "-d", ".", "-t", "sd", "-o", "disk.img")
SCRIPT = ("uboot-script-gen", "-c", "config", "-d", ".", "-t", "sd")


@contextmanager
def holding_lock(directory: Path) -> Iterator[None]:
    """Hold the build lock of `directory` as a build would (our pid in the file)."""
    (directory / ".ibtasks").mkdir(exist_ok=True)
    fd = os.open(directory / ".ibtasks" / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)


def boot_partition_is_clean(disk: Path, scratch: Path) -> None:
    table = json.loads(subprocess.run(["sfdisk", "--json", str(disk)], check=True,
                                      capture_output=True).stdout)
    boot = table["partitiontable"]["partitions"][0]
    with open(disk, "rb") as src, open(scratch, "wb") as dst:
        src.seek(boot["start"] * 512)
        dst.write(src.read(boot["size"] * 512))
    subprocess.run(["fsck.fat", "-n", str(scratch)], check=True, capture_output=True)


def test_concurrent_builds_of_one_directory_all_succeed_with_sequential_bytes(
        tmp_path: Path) -> None:
    reference = make_xen_inputs(tmp_path / "sequential")
    assert run(reference, *DISK).returncode == 0
    expected = {name: (reference / name).read_bytes() for name in OUTPUTS}
    shared = tmp_path / "shared"
    shutil.copytree(reference, shared)
    waited = 0
    for _ in range(ROUNDS):
        for name in OUTPUTS:
            (shared / name).unlink(missing_ok=True)
        shutil.rmtree(shared / ".ibtasks", ignore_errors=True)
        procs = [subprocess.Popen(ibtasks_argv(*argv), cwd=shared, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
                 for argv in (DISK, SCRIPT, DISK, SCRIPT, SCRIPT, SCRIPT)]
        for proc in procs:
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            for line in err.splitlines():
                assert re.fullmatch(r"ibtasks: waiting: (another build \(pid \d+\)|"
                                    r"another process) holds the lock of \.", line), err
                waited += 1
        for name in OUTPUTS:
            assert (shared / name).read_bytes() == expected[name], name
        boot_partition_is_clean(shared / "disk.img", tmp_path / "boot.vfat")
    assert waited > 0  # the runs did overlap


def test_a_second_build_waits_with_one_line_and_then_succeeds(tmp_path: Path) -> None:
    inputs = make_xen_inputs(tmp_path / "in")
    with holding_lock(inputs):
        proc = subprocess.Popen(ibtasks_argv(*SCRIPT), cwd=inputs, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        time.sleep(1.0)
        assert proc.poll() is None  # still waiting
        assert not (inputs / "boot.scr").exists()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert err == f"ibtasks: waiting: another build (pid {os.getpid()}) holds the lock of .\n"
    assert out.startswith("Generated uboot script boot.scr")


def test_a_build_that_cannot_get_the_lock_fails_after_the_timeout_and_removes_nothing(
        tmp_path: Path) -> None:
    inputs = make_xen_inputs(tmp_path / "in")
    assert run(inputs, *SCRIPT).returncode == 0
    before = {name: (inputs / name).read_bytes() for name in OUTPUTS[:3]}
    (inputs / "xen").write_bytes((inputs / "xen").read_bytes() + b"\0")  # not a no-op
    with holding_lock(inputs):
        start = time.monotonic()
        result = run(inputs, *SCRIPT, env={"IBTASKS_LOCK_TIMEOUT": "0.5"})
        elapsed = time.monotonic() - start
    assert result.stderr.startswith(
        f"ibtasks: waiting: another build (pid {os.getpid()}) holds the lock of .\n")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[1:] == [
        f"ibtasks: error: .: another build (pid {os.getpid()}) still holds .ibtasks/lock after "
        "0.5 s; set IBTASKS_LOCK_TIMEOUT to wait longer"]
    assert 0.5 <= elapsed < 10
    assert {name: (inputs / name).read_bytes() for name in OUTPUTS[:3]} == before


def test_a_bad_lock_timeout_is_one_line(tmp_path: Path) -> None:
    inputs = make_xen_inputs(tmp_path / "in")
    result = run(inputs, *SCRIPT, env={"IBTASKS_LOCK_TIMEOUT": "soon"})
    assert one_error_line(result) == (
        "ibtasks: error: IBTASKS_LOCK_TIMEOUT: expected seconds (0 or more), got 'soon'")


def test_the_no_op_fast_path_does_not_replay_while_a_build_holds_the_lock(
        tmp_path: Path) -> None:
    inputs = make_xen_inputs(tmp_path / "in")
    first = run(inputs, *SCRIPT)
    assert first.returncode == 0
    assert run(inputs, *SCRIPT).stdout == first.stdout  # replayed
    with holding_lock(inputs):
        held = run(inputs, *SCRIPT, env={"IBTASKS_LOCK_TIMEOUT": "0"})
    assert held.returncode == 1 and held.stdout == ""
    assert "still holds .ibtasks/lock" in held.stderr
    assert run(inputs, *SCRIPT).stdout == first.stdout


def test_a_build_writes_its_state_before_it_releases_the_lock(tmp_path: Path) -> None:
    # Whatever a build writes after its lock is released races the next build, which may take
    # its temporaries for a killed build's. Here the digest cache is removed as soon as the
    # command returns (its lock released): a late write at exit would bring it back.
    inputs = make_xen_inputs(tmp_path / "in")
    code = ("import os, sys; from ibtasks.cli.main import main; rc = main(sys.argv[1:]); "
            "os.remove('.ibtasks/digests.json'); sys.exit(rc)")
    for argv in (DISK, SCRIPT):
        result = subprocess.run([sys.executable, "-c", code, *argv], cwd=inputs,
                                capture_output=True, text=True)
        assert (result.returncode, result.stderr) == (0, ""), result.stderr
        assert not (inputs / ".ibtasks" / "digests.json").exists()
        (inputs / "xen").write_bytes((inputs / "xen").read_bytes() + b"\0")  # a new digest
