"""ibtasks never imports PyFilesystem2 (`fs`) or `pkg_resources`.

Rule: the FAT code uses pyfatfs's low-level `PyFat` only; its PyFilesystem2 layer imports `fs`,
which imports `pkg_resources`, gone in setuptools 82, so importing it would tie ibtasks to an
old setuptools. Checked in fresh interpreters (the test's own may have imported anything):
after importing every ibtasks module and building a FAT boot partition (checked with
fsck.fat), and for a whole `disk-image` build through the CLI (`-X importtime` lists every
module the run imported).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FORBIDDEN = ("fs", "pkg_resources")

BUILD_FAT = """\
import importlib, pkgutil, sys
from pathlib import Path
import ibtasks
for info in pkgutil.walk_packages(ibtasks.__path__, "ibtasks."):
    if info.name != "ibtasks.__main__":  # it runs the command line
        importlib.import_module(info.name)
from ibtasks.formats.fat import BootFile, build_fat_image
work = Path(sys.argv[1])
files = []
for name, size in (("boot.scr", 700), ("xen", 300_000), ("dtbs/Board Name.dtb", 4096)):
    source = work / name.replace("/", "_")
    source.write_bytes(bytes(i % 251 for i in range(size)))
    files.append(BootFile(name, source))
build_fat_image(work / "boot.vfat", files, volume_id=0x1234ABCD, label="BOOT",
                epoch=1700000000)
print(sorted(name for name in sys.modules if name.split(".")[0] in ("fs", "pkg_resources")))
assert "fs" not in sys.modules and "pkg_resources" not in sys.modules
"""


def imported_top_names(importtime: str) -> set[str]:
    """The top-level package of every module in `python -X importtime` output."""
    names = re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", importtime, re.MULTILINE)
    return {name.split(".")[0] for name in names}


def test_importing_every_module_and_building_a_fat_image_leaves_out_fs(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-c", BUILD_FAT, str(tmp_path)], capture_output=True,
                         text=True, cwd=REPO)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "[]\n"
    fsck = subprocess.run(["fsck.fat", "-n", str(tmp_path / "boot.vfat")], capture_output=True,
                          text=True, env={**os.environ, "PATH": os.environ["PATH"] + ":/usr/sbin"})
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


def test_a_disk_image_build_imports_neither_fs_nor_pkg_resources(seed_inputs: Path) -> None:
    (seed_inputs / "config").write_text(
        "MEMORY_START=0x40000000\nMEMORY_END=0x50000000\nDEVICE_TREE=mpsoc.dtb\nXEN=xen\n"
        "DOM0_KERNEL=Image-dom0\nNUM_DOMUS=1\nDOMU_KERNEL[0]=zynqmp-dom1/Image-domU\n")
    run = subprocess.run([sys.executable, "-X", "importtime", "-m", "ibtasks", "disk-image",
                          "-c", "config", "-d", ".", "-t", "sd", "-o", "disk.img"],
                         cwd=seed_inputs, capture_output=True, text=True,
                         env={**os.environ, "SOURCE_DATE_EPOCH": "1700000000"})
    assert run.returncode == 0, run.stderr[-2000:]
    assert (seed_inputs / "disk.img").stat().st_size > 0
    imported = imported_top_names(run.stderr)
    assert {"ibtasks", "pyfatfs", "doit"} <= imported  # the parser reads this output
    assert imported.isdisjoint(FORBIDDEN)


def test_the_import_list_names_a_package_that_was_imported(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-X", "importtime", "-c", "import email.mime.text"],
                         capture_output=True, text=True)
    assert "email" in imported_top_names(run.stderr)
