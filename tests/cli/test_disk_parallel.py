"""Independent partitions build in parallel (`-j N`, default the CPU count; doit's process
runner): the disk is byte-identical to a serial build, doit's record is complete (a no-op runs
nothing), and a failing partition is still one line that leaves no disk.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.chaintools import disk_image, ran, run_cli
from tests.small_configs import DISK, write_config

IMAGES = ("disk.img", ".ibtasks/boot.vfat", ".ibtasks/dom0.ext4", ".ibtasks/domU1.ext4")


def copy_inputs(master: Path, where: Path) -> Path:
    shutil.copytree(master, where)
    write_config(where, DISK)
    return where


def test_parallel_and_serial_builds_are_byte_identical(seed_inputs_master: Path,
                                                        tmp_path: Path) -> None:
    built = []
    for jobs in ("1", "4"):
        inputs = copy_inputs(seed_inputs_master, tmp_path / f"j{jobs}")
        done = run_cli(inputs, "disk-image", "-c", "config", "-d", ".", "-t", "sd", "-o",
                       "disk.img", "-j", jobs)
        assert done.returncode == 0, done.stderr
        built.append([(inputs / name).read_bytes() for name in IMAGES])
    assert built[0] == built[1]


def test_a_parallel_build_records_every_task(seed_inputs_master: Path, tmp_path: Path) -> None:
    inputs = copy_inputs(seed_inputs_master, tmp_path / "in")
    first = ran(disk_image(inputs, "-t", "sd", "-o", "disk.img", "-j", "3"))
    assert {"ib_partition:boot", "ib_partition:dom0", "ib_partition:domU1", "ib_disk"} <= first
    assert ran(disk_image(inputs, "-t", "sd", "-o", "disk.img", "-j", "3")) == set()
    assert ran(disk_image(inputs, "-t", "sd", "-o", "disk.img", "-j", "1")) == set()


def test_a_failing_partition_in_a_parallel_build_is_one_line_and_leaves_no_disk(
    seed_inputs_master: Path, tmp_path: Path
) -> None:
    inputs = copy_inputs(seed_inputs_master, tmp_path / "in")
    (inputs / "rootfs-domU.tar.gz").write_bytes(b"not an archive\n")
    done = run_cli(inputs, "disk-image", "-c", "config", "-d", ".", "-t", "sd", "-o",
                   "disk.img", "-j", "4")
    assert done.returncode == 1
    assert done.stderr == (
        "ibtasks: error: DOMU_ROOTFS[1]: rootfs-domU.tar.gz: not a cpio or tar archive (gzip, "
        "xz, lzma, bzip2, zstd and lz4 compression are supported)\n")
    assert not (inputs / "disk.img").exists()


def test_zero_jobs_is_a_one_line_error(seed_inputs_master: Path, tmp_path: Path) -> None:
    inputs = copy_inputs(seed_inputs_master, tmp_path / "in")
    done = run_cli(inputs, "disk-image", "-c", "config", "-d", ".", "-t", "sd", "-o",
                   "disk.img", "-j", "0")
    assert (done.returncode, done.stderr) == (1, "ibtasks: error: -j 0: give 1 or more jobs\n")


def test_a_parallel_build_hands_every_task_back_to_the_parent(seed_inputs_master: Path,
                                                               tmp_path: Path) -> None:
    """doit's process runner pickles each task's attributes back to the parent: one that
    cannot be pickled (a dependency manager kept by `-v`'s reasons) hangs the build. With a
    timeout here, a regression fails instead of hanging the suite."""
    import subprocess
    import sys

    inputs = copy_inputs(seed_inputs_master, tmp_path / "in")
    for extra in ((), ("-v",), ("--", "run", "--reporter", "json")):
        shutil.rmtree(inputs / ".ibtasks", ignore_errors=True)
        done = subprocess.run([sys.executable, "-m", "ibtasks", "disk-image", "-c", "config",
                               "-d", ".", "-t", "sd", "-o", "disk.img", "-j", "3", *extra],
                              cwd=inputs, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert "pickle" not in done.stderr
