"""Every path in the script is the one the board asks for: relative to -d however the config
spells it (`./`, `//`, `..` that comes back, absolute under -d), lexically as upstream's
`realpath --no-symlinks` and prefix strip; a file outside -d keeps its absolute path and gets a
warning. disk-image stores the same path in the boot partition (read back with mtools).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from ibtasks.config.board_paths import board_path
from tests.conftest import run_ibtasks

CONFIG = """\
MEMORY_START=0x40000000
MEMORY_END=0x80000000
DEVICE_TREE={dtb}
XEN={xen}
DOM0_KERNEL={dom0}
"""


def build(inputs: Path, xen: str = "xen", dom0: str = "Image-dom0", dtb: str = "mpsoc.dtb",
          root: str = ".", cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    (inputs / "config").write_text(CONFIG.format(xen=xen, dom0=dom0, dtb=dtb))
    return run_ibtasks("uboot-script-gen", "-c", str(inputs / "config"), "-d", root,
                       "-t", "tftp", cwd=cwd or inputs)


def loads(inputs: Path) -> list[str]:
    return [line.split()[-1] for line in (inputs / "boot.source").read_text().splitlines()
            if line.startswith("tftpb ")]


def test_dot_slash_double_slash_and_dotdot_that_comes_back_load_as_plain_paths(
        seed_inputs: Path) -> None:
    result = build(seed_inputs, xen="./xen", dom0="zynqmp-dom1/../Image-dom0",
                   dtb=".//mpsoc.dtb")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert loads(seed_inputs) == ["xen", "Image-dom0", "mpsoc.dtb"]


def test_absolute_paths_under_the_root_are_written_relative_to_it(seed_inputs: Path) -> None:
    root = str(seed_inputs)
    result = build(seed_inputs, xen=f"{root}/xen", dom0=f"/{root}/./Image-dom0",
                   dtb=f"{root}/zynqmp-dom1/../mpsoc.dtb")
    assert result.returncode == 0, result.stderr
    assert loads(seed_inputs) == ["xen", "Image-dom0", "mpsoc.dtb"]


def test_dotdot_through_the_roots_own_name_comes_back_inside(seed_inputs: Path) -> None:
    sub = seed_inputs.parent / "sibling"
    sub.mkdir()
    # -d ../inputs from a sibling directory: the root is reached by name, not as `.`.
    result = build(seed_inputs, xen=f"../{seed_inputs.name}/xen", root=f"../{seed_inputs.name}",
                   cwd=sub)
    assert result.returncode == 0, result.stderr
    assert loads(seed_inputs)[0] == "xen"


def test_file_outside_the_root_is_loaded_by_its_absolute_path_with_a_warning(
        seed_inputs: Path) -> None:
    outside = seed_inputs.parent / "elsewhere"
    outside.mkdir()
    shutil.copy(seed_inputs / "xen", outside / "xen")
    result = build(seed_inputs, xen="../elsewhere/./xen")
    assert result.returncode == 0, result.stderr
    assert loads(seed_inputs)[0] == f"{outside}/xen"
    assert result.stderr == (
        f"ibtasks: warning: {seed_inputs}/config:4: XEN: {outside}/xen is outside -d (.): the "
        "script loads it by this absolute path, which the board must be able to reach\n")


def test_board_path_is_lexical_as_realpath_no_symlinks(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (tmp_path / "real").mkdir()
    root.symlink_to(tmp_path / "real")  # a symlinked -d is kept as written, not resolved
    assert board_path(root, "a/./b/../c") == ("a/c", True)
    assert board_path(root, f"{root}/x") == ("x", True)
    assert board_path(root, f"{tmp_path}/real/x") == (f"{tmp_path}/real/x", False)
    assert board_path(root, "../root/x") == ("x", True)
    assert board_path(root, "//etc/x") == ("/etc/x", False)
    expected = subprocess.run(["realpath", "--no-symlinks", "-m", "//etc/../etc/x"],
                              check=True, capture_output=True, text=True).stdout.strip()
    assert board_path(root, "//etc/../etc/x")[0] == expected


def fat_files(disk: Path) -> list[str]:
    """Every file path in the first partition of `disk`, as mtools lists it."""
    table = json.loads(subprocess.run(["sfdisk", "--json", str(disk)], check=True,
                                      capture_output=True, text=True).stdout)
    start = table["partitiontable"]["partitions"][0]["start"] * 512
    listing = subprocess.run(["mdir", "-i", f"{disk}@@{start}", "-/", "-b", "::"], check=True,
                             capture_output=True, text=True).stdout
    return sorted(line[len("::/"):] for line in listing.splitlines() if not line.endswith("/"))


SBIN_PATH = {"PATH": os.environ.get("PATH", "") + ":/usr/sbin:/sbin"}


def test_disk_image_stores_boot_files_at_the_paths_the_script_loads(seed_inputs: Path) -> None:
    (seed_inputs / "config").write_text(CONFIG.format(
        xen=f"{seed_inputs}/xen", dom0="./zynqmp-dom1/../Image-dom0", dtb="mpsoc.dtb"))
    result = run_ibtasks("disk-image", "-c", "config", "-d", ".", "-t", "sd", "-o", "disk.img",
                         cwd=seed_inputs, env=SBIN_PATH)
    assert result.returncode == 0, result.stderr
    assert loads_of(seed_inputs) == ["xen", "Image-dom0", "mpsoc.dtb"]
    assert fat_files(seed_inputs / "disk.img") == [
        "Image-dom0", "boot.dtb", "boot.scr", "boot.source", "mpsoc.dtb", "xen"]


def loads_of(inputs: Path) -> list[str]:
    return [line.split()[-1] for line in (inputs / "boot.source").read_text().splitlines()
            if line.startswith("load ")]


def test_disk_image_refuses_a_boot_file_outside_the_root_naming_the_key(
        seed_inputs: Path) -> None:
    outside = seed_inputs.parent / "elsewhere"
    outside.mkdir()
    shutil.copy(seed_inputs / "Image-dom0", outside / "Image-dom0")
    (seed_inputs / "config").write_text(CONFIG.format(
        xen="xen", dom0="../elsewhere/Image-dom0", dtb="mpsoc.dtb"))
    result = run_ibtasks("disk-image", "-c", "config", "-d", ".", "-t", "sd", "-o", "disk.img",
                         cwd=seed_inputs, env=SBIN_PATH)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"ibtasks: error: config:5: DOM0_KERNEL: {outside}/Image-dom0 is outside -d (.); the "
        "boot partition holds each file at its path under -d, so put it there")
    assert not (seed_inputs / "disk.img").exists()
    assert not (seed_inputs / "boot.scr").exists()
