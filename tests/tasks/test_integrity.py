"""A build never deletes or overwrites a file that ibtasks did not write (ibtasks.tasks.ownership).

Rule: a failed run removes only outputs whose identity or digest ibtasks recorded; a file that a
user or another tool put where an output goes is set aside and comes back unchanged when the
build fails, and is replaced only by a successful build. Plain path mistakes (`-o` naming a
directory, or a path under a regular file) are one line in both subcommands. Inputs are made by
tests/integrity_inputs.py; U-Boot images are checked with dumpimage, DTBs with fdtget.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.integrity_inputs import (
    make_linux_only_inputs,
    make_xen_inputs,
    one_error_line,
    rootfs_archive,
    run,
    script_kind,
)

SCRIPT = "AArch64 Linux Script (uncompressed)"


def leftovers(directory: Path) -> list[str]:
    """Set-aside copies or temporaries left in `directory`."""
    return sorted(p.name for p in directory.iterdir()
                  if (".ibtasks-" in p.name or ".ibtmp-" in p.name) and p.name != ".ibtasks-lock")


def build_boot_files(directory: Path, config: str = "config") -> None:
    result = run(directory, "uboot-script-gen", "-c", config, "-d", ".", "-t", "sd")
    assert result.returncode == 0, result.stderr


def break_xen(directory: Path) -> None:
    """Make the build fail in a task (XEN's check), after outputs were set aside."""
    (directory / "xen").write_bytes(b"070701" + b"0" * 200)  # a cpio, not an executable


def test_failed_linux_only_disk_image_keeps_the_boards_own_boot_scr(tmp_path: Path) -> None:
    inputs = make_linux_only_inputs(tmp_path / "sd")
    before = (inputs / "boot.scr").read_bytes()
    result = run(inputs, "disk-image", "-c", "config", "-d", ".", "-t", "sd", "-w", ".",
                 "-o", "sd_card.img", "-s", "500")
    # The fork's BOOTBIN key is not ours: its warning (with the key that does the job) comes
    # before the error.
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "ibtasks: warning: config:4: BOOTBIN: not an ImageBuilder key and not used by any "
        "expansion, ignored; to copy BOOT.BIN into the boot partition write NUM_BOOT_AUX_FILE=1 "
        "and BOOT_AUX_FILE[0]=BOOT.BIN",
        "ibtasks: error: config: XEN is required but not set"]
    assert (inputs / "boot.scr").read_bytes() == before
    assert script_kind(inputs / "boot.scr") == SCRIPT
    assert not (inputs / "sd_card.img").exists()


def test_users_dtb_named_as_fdtedit_survives_a_failed_build(tmp_path: Path) -> None:
    inputs = make_xen_inputs(tmp_path / "in")
    with open(inputs / "config", "a") as config:
        config.write("FDTEDIT=mine.dtb\n")
    shutil.copy(inputs / "board.dtb", inputs / "mine.dtb")
    subprocess.run(["fdtput", "-t", "s", str(inputs / "mine.dtb"), "/", "model", "user's own"],
                   check=True)
    before = (inputs / "mine.dtb").read_bytes()
    break_xen(inputs)
    result = run(inputs, "uboot-script-gen", "-c", "config", "-d", ".", "-t", "sd")
    assert one_error_line(result).startswith("ibtasks: error: config:4: XEN: ")
    assert (inputs / "mine.dtb").read_bytes() == before
    model = subprocess.run(["fdtget", str(inputs / "mine.dtb"), "/", "model"], check=True,
                           capture_output=True, text=True).stdout
    assert model == "user's own\n"
    assert leftovers(inputs) == []


def test_foreign_boot_source_survives_a_failed_build(tmp_path: Path) -> None:
    inputs = make_xen_inputs(tmp_path / "in")
    (inputs / "boot.source").write_text("echo my own script\n")
    break_xen(inputs)
    one_error_line(run(inputs, "uboot-script-gen", "-c", "config", "-d", ".", "-t", "sd"))
    assert (inputs / "boot.source").read_text() == "echo my own script\n"
    assert not (inputs / "boot.scr").exists() and not (inputs / "boot.dtb").exists()
    assert leftovers(inputs) == []


def test_foreign_disk_img_survives_a_failed_disk_image(tmp_path: Path) -> None:
    inputs = make_xen_inputs(tmp_path / "in")
    (inputs / "disk.img").write_bytes(b"another tool's image" * 1000)
    (inputs / "rootfs.cpio.gz").write_bytes(b"\x1f\x8b\x08\x00 not really gzip")
    result = run(inputs, "disk-image", "-c", "config", "-d", ".", "-t", "sd", "-o", "disk.img")
    one_error_line(result)
    assert (inputs / "disk.img").read_bytes() == b"another tool's image" * 1000
    assert not (inputs / "boot.scr").exists()  # our own outputs of the failed run are gone
    assert leftovers(inputs) == []


def test_users_files_named_like_partition_images_in_the_work_folder_survive_a_failure(
        tmp_path: Path) -> None:
    inputs = make_xen_inputs(tmp_path / "in")
    mine = {"boot.vfat": b"my FAT" * 100, "dom0.ext4": b"my ext4" * 100}
    for name, data in mine.items():
        (inputs / name).write_bytes(data)
    (inputs / "rootfs.cpio.gz").write_bytes(b"\x1f\x8b\x08\x00 not really gzip")
    result = run(inputs, "disk-image", "-c", "config", "-d", ".", "-t", "sd", "-w", ".",
                 "-o", "disk.img")
    assert "rootfs.cpio.gz" in one_error_line(result)
    for name, data in mine.items():
        assert (inputs / name).read_bytes() == data, name
    assert leftovers(inputs) == []
    # A build that succeeds replaces them, as it replaces any foreign file at an output path.
    (inputs / "rootfs.cpio.gz").write_bytes(rootfs_archive())
    done = run(inputs, "disk-image", "-c", "config", "-d", ".", "-t", "sd", "-w", ".",
               "-o", "disk.img")
    assert done.returncode == 0, done.stderr
    assert (inputs / "dom0.ext4").read_bytes()[1024 + 56:1024 + 58] == b"\x53\xef"  # ext4 magic
    assert leftovers(inputs) == []
    # doit's state stays in the state folder, not among the user's files.
    assert [n for n in ("doit-deps.json", "digests.json") if (inputs / n).exists()] == []


def test_foreign_boot_scr_is_replaced_by_a_successful_build(tmp_path: Path) -> None:
    inputs = make_xen_inputs(tmp_path / "in")
    build_boot_files(inputs)
    ours = (inputs / "boot.scr").read_bytes()
    # Another tool writes its own boot.scr over ours; doit's state still says ib_boot_scr is
    # up to date, yet the next build must put ours back.
    (inputs / "boot.scr").unlink()
    make_linux_only_inputs(tmp_path / "stock")
    shutil.copy(tmp_path / "stock" / "boot.scr", inputs / "boot.scr")
    build_boot_files(inputs)
    assert (inputs / "boot.scr").read_bytes() == ours
    listing = subprocess.run(["dumpimage", "-l", str(inputs / "boot.scr")], check=True,
                             capture_output=True, text=True).stdout
    assert f"Data Size:    {len(ours) - 64} Bytes" in listing
    assert leftovers(inputs) == []


def test_previous_output_whose_digest_matches_is_removed_by_a_failed_build(
        tmp_path: Path) -> None:
    inputs = make_xen_inputs(tmp_path / "in")
    build_boot_files(inputs)
    # Copied away and back: a new inode and new times, but the bytes ibtasks wrote.
    for name in ("boot.scr", "boot.source", "boot.dtb"):
        shutil.copy(inputs / name, tmp_path / name)
        (inputs / name).unlink()
        shutil.copy(tmp_path / name, inputs / name)
    with open(inputs / "config", "a") as config:
        config.write("XEN_CMD=\"console=dtuart\"\nMEMORY_END=0x40100000\n")
    result = run(inputs, "uboot-script-gen", "-c", "config", "-d", ".", "-t", "sd")
    assert "not enough memory" in one_error_line(result)
    assert [n for n in ("boot.scr", "boot.source", "boot.dtb") if (inputs / n).exists()] == []


def test_output_changed_by_the_user_after_a_build_is_kept_when_the_config_fails(
        tmp_path: Path) -> None:
    inputs = make_xen_inputs(tmp_path / "in")
    build_boot_files(inputs)
    (inputs / "boot.source").write_text("echo edited by hand\n")
    (inputs / "config").write_text("MEMORY_START=0x40000000\n")
    one_error_line(run(inputs, "uboot-script-gen", "-c", "config", "-d", ".", "-t", "sd"))
    assert (inputs / "boot.source").read_text() == "echo edited by hand\n"
    assert not (inputs / "boot.scr").exists()  # still ours: removed


def test_output_naming_a_directory_is_one_line_in_both_subcommands(tmp_path: Path) -> None:
    inputs = make_xen_inputs(tmp_path / "in")
    (inputs / "out.scr").mkdir()
    line = one_error_line(run(inputs, "uboot-script-gen", "-c", "config", "-d", ".", "-t", "sd",
                              "-o", "out"))
    assert line == "ibtasks: error: out.scr: is a directory; an output must be a file path"
    assert (inputs / "out.scr").is_dir() and not (inputs / "out.source").exists()
    (inputs / "images").mkdir()
    line = one_error_line(run(inputs, "disk-image", "-c", "config", "-d", ".", "-t", "sd",
                              "-o", "images"))
    assert line == "ibtasks: error: images: is a directory; an output must be a file path"
    assert list((inputs / "images").iterdir()) == []


def test_output_under_a_regular_file_is_one_line_in_both_subcommands(tmp_path: Path) -> None:
    inputs = make_xen_inputs(tmp_path / "in")
    (inputs / "notes.txt").write_text("mine\n")
    line = one_error_line(run(inputs, "uboot-script-gen", "-c", "config", "-d", ".", "-t", "sd",
                              "-o", "notes.txt/boot"))
    assert line == "ibtasks: error: notes.txt/boot.dtb: notes.txt is not a directory"
    line = one_error_line(run(inputs, "disk-image", "-c", "config", "-d", ".", "-t", "sd",
                              "-o", "notes.txt/disk.img"))
    assert line == "ibtasks: error: -o notes.txt/disk.img: notes.txt: is not a directory"
    assert (inputs / "notes.txt").read_text() == "mine\n"
