"""Boot Xen + Linux from a disk.img with a DOS partition table (`--table dos`), over virtio.

U-Boot reads the DOS table (`part list` says so), loads boot.scr from the bootable FAT
partition 1 and an aux file next to it; dom0 mounts its rootfs from primary partition 2
(/dev/vda2, the root= ibtasks deduced) and lists the NOBOOT domU's xl config there.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from ibtasks.qemu.runner import DEFAULT_FAILURE_PATTERNS, describe_failure, virtio_disk_args
from tests.boot_fixtures import (
    MACHINE,
    ROOTFS_FAILURE,
    BootParts,
    boot_system,
    domain,
    prepare_boot_parts,
    prepare_rootfs_dom0,
    system,
)
from tests.qemu.test_boot_disk import (
    DOM0,
    DOM0_RAMDISK,
    DOMU0,
    DOMU1,
    DOMU2,
    ROOTFS_MARKER,
    ROOTFS_OK,
    XL_CFGS,
    check_dom0_saw_its_rootfs,
    write_rootfs,
)
from tests.unprivileged import run_as_user, unprivileged_python, user_tmp_dir

pytestmark = pytest.mark.boot

AUX_TEXT = b"AUX-FILE-FROM-THE-BOOT-PARTITION\n"


@pytest.fixture(scope="module")
def boot_parts(tmp_path_factory: pytest.TempPathFactory) -> BootParts:
    parts = prepare_boot_parts(tmp_path_factory.mktemp("boot-parts"))
    prepare_rootfs_dom0(parts, DOM0_RAMDISK)
    return parts


@pytest.fixture
def user_dir() -> Iterator[Path]:
    with user_tmp_dir("ibtasks-boot-dos-") as path:
        yield path


def test_xen_boots_from_a_dos_disk_and_dom0_mounts_its_primary_rootfs_partition(
        boot_parts: BootParts, user_dir: Path, tmp_path: Path) -> None:
    for name in ("xen", "Image", "virt.dtb", DOM0_RAMDISK, "domu0.cpio.gz", "domu1.cpio.gz",
                 "domu2.cpio.gz"):
        shutil.copyfile(boot_parts.path(name), user_dir / name)
    (user_dir / "aux").mkdir()
    (user_dir / "aux" / "note.txt").write_bytes(AUX_TEXT)
    marker = "rootfs of the DOS disk"
    write_rootfs(user_dir / "dom0-rootfs.tar.gz", marker)
    dom0 = system.Domain(marker=DOM0, kernel="Image", ramdisk=DOM0_RAMDISK)
    domus = [domain("domu0"), domain("domu1"), domain("domu2", noboot=True)]
    config = system.render_config(MACHINE, "xen", "virt.dtb", dom0, domus,
                                  dom0_rootfs="dom0-rootfs.tar.gz")
    config += "NUM_BOOT_AUX_FILE=1\nBOOT_AUX_FILE[0]=aux/note.txt\nDOMU_DRIVER_DOMAIN[2]=y\n"
    (user_dir / "config").write_text(config)
    for path in user_dir.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    built = run_as_user([unprivileged_python(), "-m", "ibtasks", "disk-image", "-c", "config",
                         "-d", ".", "-t", "virtio", "-o", "disk.img", "--table", "dos"],
                        cwd=user_dir, env={"SOURCE_DATE_EPOCH": "1700000000"})
    assert built.returncode == 0, built.stderr
    disk = user_dir / "disk.img"
    if os.geteuid() == 0:
        assert disk.stat().st_uid != 0
    result = boot_system(
        user_dir,
        [ROOTFS_OK, ROOTFS_MARKER, XL_CFGS, DOM0, DOMU0, DOMU1],
        absent_markers=[DOMU2],
        settle_seconds=5.0,
        commands=("virtio scan", "part list virtio 0", "load virtio 0:1 0x48000000 aux/note.txt",
                  "md.b 0x48000000 0x21", "load virtio 0:1 0x40000000 boot.scr",
                  "source 0x40000000"),
        media_args=virtio_disk_args(disk, "mmio"),
        failure_patterns=(*DEFAULT_FAILURE_PATTERNS, ROOTFS_FAILURE),
        log_path=tmp_path / "console.log",
    )
    assert result.ok, describe_failure(result)
    log = result.log_path.read_text(errors="replace")
    assert "Partition Type: DOS" in log
    # U-Boot's part list: partition 1 is the boot partition, type 0e (FAT16 LBA), boot flag
    # set, laid out after the rootfs partition (README "A stable layout"), which starts at 2048.
    boot = re.search(r"^\s+1\s+(\d+)\s+\d+\s+\S+\s+0e Boot\s*$", log, re.M)
    rootfs = re.search(r"^\s+2\s+(\d+)\s+(\d+)\s+\S+\s+83\s*$", log, re.M)
    assert boot and rootfs, log
    assert int(rootfs[1]) == 2048 and int(boot[1]) >= int(rootfs[1]) + int(rootfs[2]), log
    # md.b's ASCII column shows the aux file U-Boot loaded from the boot partition.
    assert f"{len(AUX_TEXT)} bytes read" in log
    assert "AUX-FILE-FROM-TH" in log and "E-BOOT-PARTITION" in log
    check_dom0_saw_its_rootfs(result.marker_lines, "/dev/vda2", marker)
    assert result.marker_lines[DOMU0].startswith("(XEN) DOM")
    assert result.marker_lines[DOMU1].startswith("(XEN) DOM")
