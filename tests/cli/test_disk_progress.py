"""disk-image's progress (cli/progress.py): one plain line per disk step when stdout is not a
terminal, live (rich) on a terminal, and a summary whose partitions are those sfdisk reads."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from ibtasks.plan.memory_map import human_size
from tests.conftest import GOLDENS, run_ibtasks
from tests.terminal import run_on_terminal

DISK = ("disk-image", "-c", "config", "-d", ".", "-t", "scsi", "-o", "disk.img")


def prepare(inputs: Path) -> Path:
    shutil.copy(GOLDENS / "noboot-rootfs-gzip-scsi" / "config", inputs / "config")
    return inputs


def steps(stdout: str) -> dict[str, str]:
    """Step name -> its 'done' line's rest (`done, 155 MiB in 0.2 s`)."""
    return {m.group(1): m.group(2) for m in
            re.finditer(r"^ibtasks: (ib_\S+): (done, .*)$", stdout, re.M)}


def test_each_disk_step_is_one_line_with_the_size_it_wrote(seed_inputs: Path) -> None:
    result = run_ibtasks(*DISK, cwd=prepare(seed_inputs))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert ("ibtasks: ib_partition:domU2: reading rootfs-domU.tar.gz "
            f"({human_size((seed_inputs / 'rootfs-domU.tar.gz').stat().st_size)}) into "
            ".ibtasks/domU2.ext4") in lines
    assert "ibtasks: ib_partition:boot: writing .ibtasks/boot.vfat" in lines
    done = steps(result.stdout)
    assert set(done) == {"ib_partition:boot", "ib_partition:dom0", "ib_partition:domU2",
                         "ib_disk", "ib_bmap"}
    for name, image in (("ib_partition:dom0", ".ibtasks/dom0.ext4"), ("ib_disk", "disk.img")):
        size = (seed_inputs / image).stat().st_size
        assert re.fullmatch(rf"done, {re.escape(human_size(size))} in \d+\.\d s", done[name])


def test_the_summary_lists_the_partitions_sfdisk_reads(seed_inputs: Path) -> None:
    result = run_ibtasks(*DISK, cwd=prepare(seed_inputs))
    assert result.returncode == 0, result.stderr
    table = json.loads(subprocess.run(["sfdisk", "-J", str(seed_inputs / "disk.img")],
                                      capture_output=True, text=True, check=True).stdout)
    size = (seed_inputs / "disk.img").stat().st_size
    assert (f"ibtasks: disk.img: {human_size(size)} ({size} bytes), gpt, 3 partitions"
            in result.stdout.splitlines())
    for n, part in enumerate(table["partitiontable"]["partitions"], 1):
        assert (f"ibtasks:   partition {n} {part['name']} (type {part['type']}): at "
                f"{part['start'] * 512:#x}, {human_size(part['size'] * 512)}"
                in result.stdout.splitlines())
    assert re.search(r"^ibtasks: done in \d+\.\d s$", result.stdout, re.M)


def test_a_changed_rootfs_rebuilds_only_its_partition_and_the_summary_says_so(
        seed_inputs: Path) -> None:
    assert run_ibtasks(*DISK, cwd=prepare(seed_inputs)).returncode == 0
    again = run_ibtasks(*DISK, cwd=seed_inputs)
    assert steps(again.stdout) == {}
    assert "ibtasks: rebuilt: nothing, every task was up to date" in again.stdout
    rootfs = seed_inputs / "rootfs-domU.tar.gz"
    shutil.copy(seed_inputs / "rootfs-dom0.cpio.gz", rootfs)  # another archive, same name
    changed = run_ibtasks(*DISK, cwd=seed_inputs)
    assert set(steps(changed.stdout)) == {"ib_partition:domU2", "ib_disk", "ib_bmap"}
    assert "ibtasks: rebuilt: ib_partition:domU2, ib_disk, ib_bmap" in changed.stdout


def test_with_json_the_progress_goes_to_stderr(seed_inputs: Path) -> None:
    result = run_ibtasks(*DISK, "--json", cwd=prepare(seed_inputs))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["command"] == "disk-image"
    assert "ib_partition:dom0" in steps(result.stderr)


def test_on_a_terminal_the_steps_are_live_and_the_summary_follows(seed_inputs: Path) -> None:
    prepare(seed_inputs)
    env = {k: v for k, v in os.environ.items() if k != "LOAD_CMD"} | {"TERM": "xterm",
                                                                       "COLUMNS": "200"}
    text = run_on_terminal([sys.executable, "-m", "ibtasks", *DISK], seed_inputs, env)
    assert "\x1b[" in text  # rich redraws the lines in place
    assert "ibtasks: " + "ib_partition:dom0: reading" not in text  # no plain start lines
    assert re.search(r"ib_partition:dom0:\s+done, 155 MiB in \d+\.\d s", text)
    assert "ibtasks: disk.img: " in text and "ibtasks: done in " in text


def test_bytes_written_counts_the_image_a_builder_makes_in_its_temporary_folder(
        tmp_path: Path) -> None:
    # The rootfs builders make `image` inside `.dom0.ext4.ibtmp-*/`, beside the tree they
    # extract; the tree's files are not the image, and sub-folders are not walked.
    from ibtasks.cli.progress import bytes_written
    from ibtasks.fsutil import make_temp_dir_beside

    target = tmp_path / "dom0.ext4"
    assert bytes_written(target) == 0
    work = make_temp_dir_beside(target)
    (work / "tree").mkdir()
    (work / "tree" / "big").write_bytes(os.urandom(3 * 1024 * 1024))
    (work / "image").write_bytes(os.urandom(1024 * 1024))
    assert bytes_written(target) == os.stat(work / "image").st_blocks * 512 >= 1024 * 1024
    target.write_bytes(os.urandom(2 * 1024 * 1024))  # the finished image, beside it
    assert bytes_written(target) == os.stat(target).st_blocks * 512
