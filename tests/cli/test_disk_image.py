"""`ibtasks disk-image` end to end, run as an ordinary user (CI and sessions are root).

Checked with the real tools: sfdisk --json for the table, fsck.fat -n and mtools for the boot
partition, e2fsck -fn and debugfs for the rootfs partitions; doit's JSON reporter for which
partition tasks ran after a change.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import GOLDENS
from tests.unprivileged import run_as_user, unprivileged_python, user_tmp_dir

CONFIG = (GOLDENS / "noboot-rootfs-gzip-scsi" / "config").read_text()
SECTOR = 512


def make_rootfs(path: Path, motd: bytes) -> None:
    """A small root filesystem with an owner, a setuid file and a device node."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data, mode, uid in (("etc/motd", motd, 0o644, 0), ("bin/su", b"su", 0o4755, 0),
                                      ("home/user/notes", b"n", 0o600, 1000)):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.uid, info.gid = len(data), mode, uid, uid
            tar.addfile(info, io.BytesIO(data))
        console = tarfile.TarInfo("dev/console")
        console.type, console.mode = tarfile.CHRTYPE, 0o600
        console.devmajor, console.devminor = 5, 1
        tar.addfile(console)


@pytest.fixture
def disk_inputs(seed_inputs_master: Path) -> Iterator[Path]:
    with user_tmp_dir() as tmp:
        work = tmp / "inputs"
        shutil.copytree(seed_inputs_master, work)
        (work / "config").write_text(CONFIG)
        make_rootfs(work / "rootfs-dom0.cpio.gz", b"dom0\n")  # a tar despite the name: by content
        make_rootfs(work / "rootfs-domU.tar.gz", b"domU2\n")
        subprocess.run(["chmod", "-R", "a+rwX", str(tmp)], check=True)
        yield work


def disk_image(inputs: Path, *extra: str) -> set[str]:
    """Build disk.img as the test user; return the tasks that ran."""
    result = run_as_user([unprivileged_python(), "-m", "ibtasks", "disk-image", "-c", "config",
                          "-d", ".", "-t", "scsi", "-o", "disk.img", *extra, "--", "run",
                          "--reporter", "json"], cwd=inputs)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout[: result.stdout.rindex("}") + 1])
    return {t["name"] for t in report["tasks"] if t["result"] == "success"
            and t["name"] not in ("ib_check", "ib_partition")}


def partitions(disk: Path) -> list[dict[str, object]]:
    out = subprocess.run(["sfdisk", "--json", str(disk)], check=True, capture_output=True).stdout
    return json.loads(out)["partitiontable"]["partitions"]  # type: ignore[no-any-return]


def extract(disk: Path, part: dict[str, object], out: Path) -> Path:
    with open(disk, "rb") as src, open(out, "wb") as dst:
        src.seek(int(part["start"]) * SECTOR)  # type: ignore[call-overload]
        dst.write(src.read(int(part["size"]) * SECTOR))  # type: ignore[call-overload]
    return out


def test_disk_image_is_built_by_an_ordinary_user_and_checks_clean(disk_inputs: Path,
                                                                   tmp_path: Path) -> None:
    disk_image(disk_inputs)
    disk = disk_inputs / "disk.img"
    if os.geteuid() == 0:
        assert disk.stat().st_uid != 0  # really built by the unprivileged user
    parts = partitions(disk)
    assert [p["name"] for p in parts] == ["Linux1", "Linux2", "Linux3"]
    # The boot partition is entry 1 but lies after the rootfs partitions (a stable layout).
    assert [p["start"] for p in parts][1] == 2048
    assert int(parts[0]["start"]) > int(parts[2]["start"])  # type: ignore[call-overload]
    assert [p["type"] for p in parts] == ["EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"] + \
        ["0FC63DAF-8483-4772-8E79-3D69D8477DE4"] * 2

    boot = extract(disk, parts[0], tmp_path / "boot.vfat")
    subprocess.run(["fsck.fat", "-n", str(boot)], check=True, capture_output=True)
    listing = subprocess.run(["mdir", "-b", "-/", "-i", str(boot), "::"], check=True,
                             capture_output=True, text=True).stdout.split()
    for name in ("xen", "Image-dom0", "mpsoc.dtb", "boot.source", "boot.scr",
                 "dom0-ramdisk.cpio", "zynqmp-dom2/Image-domU", "zynqmp-dom3/Image-domU.gz",
                 "zynqmp-dom1/Image-domU"):
        assert f"::/{name}" in listing
        copied = subprocess.run(["mtype", "-i", str(boot), f"::/{name}"], check=True,
                                capture_output=True).stdout
        assert copied == (disk_inputs / name).read_bytes()

    dom0 = extract(disk, parts[1], tmp_path / "dom0.ext4")
    domu = extract(disk, parts[2], tmp_path / "domu.ext4")
    for image in (dom0, domu):
        subprocess.run(["e2fsck", "-fn", str(image)], check=True, capture_output=True)

    def debugfs(image: Path, request: str) -> str:
        return subprocess.run(["debugfs", "-R", request, str(image)], check=True,
                              capture_output=True, text=True).stdout

    assert debugfs(domu, "cat /etc/motd") == "domU2\n"
    su = debugfs(dom0, "stat /bin/su")
    assert "Mode:  04755" in su and "User:     0" in su
    assert "User:  1000   Group:  1000" in debugfs(dom0, "stat /home/user/notes")
    assert "Device major/minor number: 05:01" in debugfs(dom0, "stat /dev/console")
    # xl configs for the domUs dom0 starts: NOBOOT domU1, rootfs domU2 on partition 3 (Q7).
    assert debugfs(dom0, "cat /etc/xen/domU1.cfg") == (
        'name="domU1"\nmemory=512\nvcpus=1\n# mount /dev/sda1 /boot\n'
        'kernel="/boot/zynqmp-dom1/Image-domU"\nextra="console=hvc0 root=/dev/ram0"\n')
    assert debugfs(dom0, "cat /etc/xen/domU2.cfg") == (
        'name="domU2"\nmemory=512\nvcpus=1\n# mount /dev/sda1 /boot\n'
        'kernel="/boot/zynqmp-dom1/Image-domU"\nextra="console=hvc0 root=/dev/xvda"\n'
        'disk=["/dev/sda3,,xvda"]\n')
    assert "dom0_cfg" not in debugfs(dom0, "ls /etc/xen")
    # dom0 mounts its rootfs from partition 2 of the scsi disk.
    assert "root=/dev/sda2" in (disk_inputs / "boot.source").read_text()


def test_disk_image_stays_sparse(disk_inputs: Path) -> None:
    disk_image(disk_inputs)
    st = (disk_inputs / "disk.img").stat()
    assert st.st_blocks * 512 < st.st_size / 2


def test_a_domu_kernel_change_rebuilds_the_boot_partition_only(disk_inputs: Path) -> None:
    disk_image(disk_inputs)
    assert disk_image(disk_inputs) == set()
    kernel = disk_inputs / "zynqmp-dom2" / "Image-domU"
    kernel.write_bytes(kernel.read_bytes() + b"\1")
    ran = disk_image(disk_inputs)
    assert {t for t in ran if t.startswith("ib_partition") or t == "ib_disk"} == \
        {"ib_partition:boot", "ib_disk"}


def test_a_rootfs_change_rebuilds_that_partition_only(disk_inputs: Path) -> None:
    disk_image(disk_inputs)
    make_rootfs(disk_inputs / "rootfs-domU.tar.gz", b"changed\n")
    assert disk_image(disk_inputs) == {"ib_partition:domU2", "ib_disk", "ib_bmap"}


def test_two_builds_in_two_directories_give_identical_disks(seed_inputs_master: Path) -> None:
    digests = []
    for _ in range(2):
        with user_tmp_dir() as tmp:
            work = tmp / "inputs"
            shutil.copytree(seed_inputs_master, work)
            (work / "config").write_text(CONFIG)
            make_rootfs(work / "rootfs-dom0.cpio.gz", b"dom0\n")
            make_rootfs(work / "rootfs-domU.tar.gz", b"domU2\n")
            subprocess.run(["chmod", "-R", "a+rwX", str(tmp)], check=True)
            disk_image(work)
            digests.append(hashlib.sha256((work / "disk.img").read_bytes()).hexdigest())
    assert digests[0] == digests[1]


def test_a_corrupt_archive_is_one_line_and_leaves_no_disk(disk_inputs: Path) -> None:
    (disk_inputs / "rootfs-domU.tar.gz").write_bytes(b"this is not an archive\n")
    result = run_as_user([unprivileged_python(), "-m", "ibtasks", "disk-image", "-c", "config",
                          "-d", ".", "-t", "scsi", "-o", "disk.img"], cwd=disk_inputs)
    assert result.returncode != 0
    assert result.stderr.startswith("ibtasks: error: ")
    assert len(result.stderr.splitlines()) == 1
    assert "DOMU_ROOTFS[2]" in result.stderr
    assert not (disk_inputs / "disk.img").exists()


def test_a_same_size_kernel_change_updates_boot_and_disk_in_place_to_a_fresh_builds_bytes(
        disk_inputs: Path) -> None:
    disk_image(disk_inputs)
    boot = disk_inputs / ".ibtasks" / "boot.vfat"
    inodes = boot.stat().st_ino, (disk_inputs / "disk.img").stat().st_ino
    kernel = disk_inputs / "zynqmp-dom2" / "Image-domU"
    data = kernel.read_bytes()
    kernel.write_bytes(data[:-3] + b"new")  # a rebuilt kernel of the same size
    assert disk_image(disk_inputs) >= {"ib_partition:boot", "ib_disk"}
    assert (boot.stat().st_ino, (disk_inputs / "disk.img").stat().st_ino) == inodes
    changes = json.loads((disk_inputs / ".ibtasks" / "boot.vfat.changes.json").read_text())
    assert changes["previous"] is not None and changes["ranges"]  # updated in place
    record = json.loads((disk_inputs / "disk.img.parts.json").read_text())
    assert record["parts"][0]["generation"] == changes["generation"]
    updated = hashlib.sha256((disk_inputs / "disk.img").read_bytes()).hexdigest()
    shutil.rmtree(disk_inputs / ".ibtasks")
    (disk_inputs / "disk.img").unlink()
    (disk_inputs / "disk.img.parts.json").unlink()
    disk_image(disk_inputs)
    assert hashlib.sha256((disk_inputs / "disk.img").read_bytes()).hexdigest() == updated
