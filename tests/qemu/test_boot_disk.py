"""Boot real Xen + Linux (Debian arm64) from the disk.img that `ibtasks disk-image` writes.

An ordinary user builds the disk (dom0 with a rootfs partition, two dom0less domUs and a
DOMU_NOBOOT one); U-Boot loads boot.scr from partition 1 over virtio-blk (`-t virtio`) or an AHCI
SATA disk (`-t scsi`); dom0's initramfs loads the block and ext4 modules, mounts the partition
named by the `root=` ibtasks deduced, and prints a file from it and the xl configs it finds.
Run with `-s` to see when each marker arrived.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ibtasks.qemu.runner import (
    DEFAULT_FAILURE_PATTERNS,
    BootResult,
    ahci_disk_args,
    describe_failure,
    disk_commands,
    virtio_disk_args,
)
from tests.boot_fixtures import (
    MACHINE,
    ROOTFS_FAILURE,
    BootParts,
    boot_system,
    debian,
    domain,
    prepare_boot_parts,
    prepare_rootfs_dom0,
    system,
)
from tests.unprivileged import run_as_user, unprivileged_python, user_tmp_dir

pytestmark = pytest.mark.boot

DOM0 = "DOM0-ALIVE"
DOMU0 = "DOMU0-ALIVE"
DOMU1 = "DOMU1-ALIVE"
DOMU2 = "DOMU2-ALIVE"
ROOTFS_OK = "DOM0-ROOTFS-OK"
ROOTFS_MARKER = "DOM0-ROOTFS-MARKER"
XL_CFGS = "DOM0-XL-CFGS"
DOM0_RAMDISK = "dom0-rootfs.cpio.gz"


@pytest.fixture(scope="module")
def boot_parts(tmp_path_factory: pytest.TempPathFactory) -> BootParts:
    """Xen, the kernel, the DTB, the domU initramfs images and dom0's rootfs-mounting one."""
    parts = prepare_boot_parts(tmp_path_factory.mktemp("boot-parts"))
    prepare_rootfs_dom0(parts, DOM0_RAMDISK)
    return parts


@pytest.fixture
def user_dir() -> Iterator[Path]:
    with user_tmp_dir("ibtasks-boot-disk-") as path:
        yield path


def write_rootfs(path: Path, marker: str) -> None:
    """Dom0's root filesystem: /etc/ibtasks-marker, and /etc/xen for the xl configs."""
    with tarfile.open(path, "w:gz") as tar:
        for name in ("etc", "etc/xen"):
            entry = tarfile.TarInfo(name)
            entry.type, entry.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(entry)
        data = marker.encode() + b"\n"
        entry = tarfile.TarInfo("etc/ibtasks-marker")
        entry.size, entry.mode = len(data), 0o644
        tar.addfile(entry, io.BytesIO(data))


def build_disk(parts: BootParts, directory: Path, load: str, marker: str) -> Path:
    """disk.img for dom0 + domU0, domU1 (dom0less) + domU2 (NOBOOT), built as the test user."""
    files = ("xen", "Image", "virt.dtb", DOM0_RAMDISK, "domu0.cpio.gz", "domu1.cpio.gz",
             "domu2.cpio.gz")
    for name in files:
        # Copies, not hard links: the build must not depend on reading root's cache.
        shutil.copyfile(parts.path(name), directory / name)
    write_rootfs(directory / "dom0-rootfs.tar.gz", marker)
    dom0 = system.Domain(marker=DOM0, kernel="Image", ramdisk=DOM0_RAMDISK)
    domus = [domain("domu0"), domain("domu1"), domain("domu2", noboot=True)]
    config = system.render_config(MACHINE, "xen", "virt.dtb", dom0, domus,
                                  dom0_rootfs="dom0-rootfs.tar.gz")
    (directory / "config").write_text(config)
    for path in directory.iterdir():
        path.chmod(0o644)
    built = run_as_user(
        [unprivileged_python(), "-m", "ibtasks", "disk-image", "-c", "config", "-d", ".",
         "-t", load, "-o", "disk.img"],
        cwd=directory,
        env={"SOURCE_DATE_EPOCH": "1700000000"},
    )
    assert built.returncode == 0, built.stderr
    print(built.stdout.strip())
    disk = directory / "disk.img"
    if os.geteuid() == 0:
        assert disk.stat().st_uid != 0  # really built by the unprivileged user
    return disk


def boot_disk(
    directory: Path, interface: str, media_args: tuple[str, ...], log_path: Path
) -> BootResult:
    """Boot the disk: U-Boot scans it, loads boot.scr from partition 1 and runs it.

    The console log goes to `log_path` (pytest's tmp_path), which outlives the disk's directory.
    """
    scan, load, source = disk_commands(interface)
    # `dm tree` shows which transport U-Boot found the disk on (virtio-mmio or PCI).
    return boot_system(
        directory,
        [ROOTFS_OK, ROOTFS_MARKER, XL_CFGS, DOM0, DOMU0, DOMU1],
        absent_markers=[DOMU2],
        settle_seconds=5.0,
        commands=(scan, "dm tree", load, source),
        media_args=media_args,
        failure_patterns=(*DEFAULT_FAILURE_PATTERNS, ROOTFS_FAILURE),
        log_path=log_path,
    )


def uboot_disk_ancestry(log: str) -> list[tuple[str, str]]:
    """(driver, name) of the first block device in U-Boot's `dm tree`, then of each parent."""
    tree = log[log.index("dm tree") : log.index("load ")]
    rows: list[tuple[int, str, str]] = []
    for line in tree.splitlines():
        found = re.match(r"\s*\S+\s+\d+\s+\[[ +]*\]\s+(\S+)\s+(.*)$", line)
        if found:
            driver, branch = found.groups()
            name = branch.lstrip(" |`-")
            rows.append((len(branch) - len(name), driver, name))
    index = next(i for i, (_, driver, _) in enumerate(rows) if driver.endswith("blk"))
    depth, driver, name = rows[index]
    chain = [(driver, name)]
    for row_depth, driver, name in reversed(rows[:index]):
        if row_depth < depth:
            chain.append((driver, name))
            depth = row_depth
    return chain


def check_dom0_saw_its_rootfs(result_lines: dict[str, str], root: str, marker: str) -> str:
    """Dom0 mounted `root` and read the marker and the NOBOOT domU's xl config; its sysfs path."""
    ok = result_lines[ROOTFS_OK]
    assert ok.startswith(f"{ROOTFS_OK} root={root} device=/sys/devices/"), ok
    assert result_lines[ROOTFS_MARKER] == f"{ROOTFS_MARKER} {marker}"
    # Only the NOBOOT domU gets an xl config; dom0less domUs are started by Xen.
    assert result_lines[XL_CFGS] == f"{XL_CFGS} domU2.cfg"
    assert f"root={root}" in result_lines[DOM0]
    return ok.split("device=", 1)[1]


@pytest.mark.parametrize(
    ("transport", "uboot_parent", "linux_parent"),
    [("mmio", "virtio-mmio", ".virtio_mmio/virtio"), ("pci", "virtio-pci", ".pcie/pci0000:00/")],
)
def test_xen_boots_from_a_virtio_disk_and_dom0_mounts_its_rootfs_partition(
    boot_parts: BootParts,
    user_dir: Path,
    tmp_path: Path,
    transport: str,
    uboot_parent: str,
    linux_parent: str,
) -> None:
    marker = f"rootfs of the virtio-{transport} disk"
    disk = build_disk(boot_parts, user_dir, "virtio", marker)
    assert "load virtio 0:1" in (user_dir / "boot.source").read_text()
    result = boot_disk(user_dir, "virtio", virtio_disk_args(disk, transport),
                       tmp_path / "console.log")
    assert result.ok, describe_failure(result)
    device = check_dom0_saw_its_rootfs(result.marker_lines, "/dev/vda2", marker)
    # One disk, one transport: U-Boot and Linux both find it on the transport QEMU gave it.
    assert linux_parent in device and "/block/vda/vda2" in device, device
    chain = uboot_disk_ancestry(result.log_path.read_text())
    print(f"U-Boot: {chain}\nLinux: {device}")
    assert chain[0][0] == "virtio-blk", chain
    assert chain[1][0].startswith(uboot_parent), chain
    if transport == "mmio":
        # The same slot of QEMU's 32 virtio-mmio ones: virtio_mmio@a003e00 is a003e00.virtio_mmio.
        address = chain[1][1].split("@")[1]
        assert f"/{address}.virtio_mmio/" in device, (chain, device)
    assert result.marker_lines[DOMU0].startswith("(XEN) DOM")
    assert result.marker_lines[DOMU1].startswith("(XEN) DOM")


def test_xen_boots_from_an_ahci_disk_and_dom0_mounts_its_rootfs_partition(
    boot_parts: BootParts, user_dir: Path, tmp_path: Path
) -> None:
    marker = "rootfs of the SATA disk"
    disk = build_disk(boot_parts, user_dir, "scsi", marker)
    assert "load scsi 0:1" in (user_dir / "boot.source").read_text()
    result = boot_disk(user_dir, "scsi", ahci_disk_args(disk), tmp_path / "console.log")
    assert result.ok, describe_failure(result)
    device = check_dom0_saw_its_rootfs(result.marker_lines, "/dev/sda2", marker)
    assert "/ata" in device, device
    chain = uboot_disk_ancestry(result.log_path.read_text())
    print(f"U-Boot: {chain}\nLinux: {device}")
    assert [driver for driver, _ in chain[:3]] == ["scsi_blk", "ahci_scsi", "ahci_pci"], chain


def test_rootfs_modules_are_cached_in_dependency_order() -> None:
    modules = debian.fetch_modules(debian.cache_root(), say=print)
    order = list(modules.order)
    # modinfo: ahci needs libahci and libata; libata needs scsi_mod; ext4 needs jbd2, mbcache,
    # crc16 and (softdep) crc32c, which crc32c_generic provides.
    for before, after in (("libata", "libahci"), ("libahci", "ahci"), ("scsi_mod", "libata"),
                          ("scsi_mod", "sd_mod"), ("jbd2", "ext4"), ("mbcache", "ext4"),
                          ("crc16", "ext4"), ("crc32c_generic", "ext4")):
        assert order.index(before) < order.index(after), order
    for name in order:
        assert modules.path(name).read_bytes()[:4] == b"\x7fELF"
