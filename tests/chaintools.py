"""Helpers for the chained-command and task-record tests: run our CLI, read what doit ran, and
read files back out of a disk image's FAT with the real tools (sfdisk, mtools, dumpimage)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import run_ibtasks

SECTOR = 512


def ran(result: subprocess.CompletedProcess[str]) -> set[str]:
    """The tasks whose actions ran, from doit's JSON reporter (`-- run --reporter json`)."""
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout[result.stdout.index("{"): result.stdout.rindex("}") + 1])
    return {t["name"] for t in report["tasks"] if t["result"] == "success"
            and t["name"] not in ("ib_check", "ib_partition")}


def script_gen(inputs: Path, *flags: str, version: str | None = None) -> set[str]:
    """uboot-script-gen -c config -d . FLAGS in `inputs`; the tasks that ran."""
    return ran(run_cli(inputs, "uboot-script-gen", "-c", "config", "-d", ".", *flags,
                       "--", "run", "--reporter", "json", version=version))


def disk_image(inputs: Path, *flags: str, version: str | None = None
               ) -> subprocess.CompletedProcess[str]:
    return run_cli(inputs, "disk-image", "-c", "config", "-d", ".", *flags,
                   "--", "run", "--reporter", "json", version=version)


def run_cli(cwd: Path, *args: str, version: str | None = None
            ) -> subprocess.CompletedProcess[str]:
    """Our CLI as users run it; `version` pretends to be another ibtasks release."""
    if version is None:
        return run_ibtasks(*args, cwd=cwd)
    code = ("import sys, ibtasks; ibtasks.__version__ = sys.argv.pop(1); "
            "from ibtasks.cli.entry import main; sys.exit(main())")
    return subprocess.run([sys.executable, "-c", code, version, *args], cwd=cwd,
                          capture_output=True, text=True)


def boot_partition_offset(disk: Path) -> int:
    table = json.loads(subprocess.run(["sfdisk", "--json", str(disk)], check=True,
                                      capture_output=True, text=True).stdout)
    return int(table["partitiontable"]["partitions"][0]["start"]) * SECTOR


def fat_file(disk: Path, name: str) -> bytes:
    """A file of the disk's boot partition, read with mtools."""
    return subprocess.run(["mtype", "-i", f"{disk}@@{boot_partition_offset(disk)}", f"::{name}"],
                          check=True, capture_output=True).stdout


def fat_listing(disk: Path) -> list[str]:
    return subprocess.run(["mdir", "-b", "-/", "-i", f"{disk}@@{boot_partition_offset(disk)}",
                           "::"], check=True, capture_output=True, text=True).stdout.split()


def script_text(image: bytes, tmp: Path) -> str:
    """The commands of a legacy script image, extracted by dumpimage (its data starts with the
    script's length table: the length, then a zero word)."""
    (tmp / "script.img").write_bytes(image)
    subprocess.run(["dumpimage", "-T", "script", "-p", "0", "-o", str(tmp / "script.txt"),
                    str(tmp / "script.img")], check=True, capture_output=True)
    data = (tmp / "script.txt").read_bytes()
    length = int.from_bytes(data[:4], "big")
    assert data[4:8] == bytes(4) and len(data) >= 8 + length
    return data[8:8 + length].decode()


def rootfs_file(disk: Path, number: int, path: str, tmp: Path) -> str:
    """A file of partition `number` (ext4), read with debugfs."""
    table = json.loads(subprocess.run(["sfdisk", "--json", str(disk)], check=True,
                                      capture_output=True, text=True).stdout)
    part = table["partitiontable"]["partitions"][number - 1]
    image = tmp / f"part{number}.ext4"
    with open(disk, "rb") as src, open(image, "wb") as dst:
        src.seek(int(part["start"]) * SECTOR)
        dst.write(src.read(int(part["size"]) * SECTOR))
    return subprocess.run(["debugfs", "-R", f"cat {path}", str(image)], check=True,
                          capture_output=True, text=True).stdout


def user_script(path: Path, text: str) -> bytes:
    """A boot.scr the user made with mkimage, as a board vendor ships one."""
    source = path.with_suffix(".txt")
    source.write_text(text)
    subprocess.run(["mkimage", "-A", "arm64", "-T", "script", "-C", "none", "-d", str(source),
                    str(path)], check=True, capture_output=True)
    source.unlink()
    return path.read_bytes()
