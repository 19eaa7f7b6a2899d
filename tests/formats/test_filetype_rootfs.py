"""`ibtasks disk-image` reads rootfs archives in every compression the detector knows, by content:
zstd and lz4 (frame and the kernel's legacy format) as well as lzma, for cpio and tar alike.

Run as an ordinary user, as in tests/cli/test_disk_image.py; the archives are made by cpio and
Python's tarfile and compressed by the real tools; the partitions are read back with sfdisk,
e2fsck -fn and debugfs.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import GOLDENS
from tests.kernelfiles import compress
from tests.unprivileged import run_as_user, unprivileged_python, user_tmp_dir

SECTOR = 512


def tar_of(motd: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name in ("etc", "bin"):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name, data, mode in (("etc/motd", motd, 0o644), ("bin/su", b"su", 0o4755)):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def cpio_of(motd: bytes, work: Path) -> bytes:
    tree = work / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "bin").mkdir()
    (tree / "etc" / "motd").write_bytes(motd)
    (tree / "bin" / "su").write_bytes(b"su")
    (tree / "bin" / "su").chmod(0o4755)
    done = subprocess.run(["cpio", "-o", "-H", "newc", "-R", "0:0", "--quiet"],
                          input=b"etc\netc/motd\nbin\nbin/su\n", cwd=tree, capture_output=True,
                          check=True)
    shutil.rmtree(tree)
    return done.stdout


@pytest.fixture
def disk_inputs(seed_inputs_master: Path) -> Iterator[Path]:
    with user_tmp_dir() as tmp:
        work = tmp / "inputs"
        shutil.copytree(seed_inputs_master, work)
        config = (GOLDENS / "noboot-rootfs-gzip-scsi" / "config").read_text()
        (work / "config").write_text(config)
        yield work


def debugfs(image: Path, request: str) -> str:
    return subprocess.run(["debugfs", "-R", request, str(image)], check=True,
                          capture_output=True, text=True).stdout


@pytest.mark.parametrize(("dom0", "domu"), [
    (("cpio", "zstd"), ("tar", "lz4")),
    (("cpio", "lz4"), ("tar", "zstd")),
    (("cpio", "lz4-legacy"), ("tar", "lzma")),
])
def test_disk_image_reads_zstd_lz4_and_lzma_rootfs_archives(
        disk_inputs: Path, tmp_path: Path, dom0: tuple[str, str], domu: tuple[str, str]) -> None:
    # The config's names say .cpio.gz and .tar.gz: the content decides, not the name.
    for (fmt, tool), name, motd in ((dom0, "rootfs-dom0.cpio.gz", b"dom0\n"),
                                    (domu, "rootfs-domU.tar.gz", b"domU2\n")):
        plain = cpio_of(motd, disk_inputs) if fmt == "cpio" else tar_of(motd)
        (disk_inputs / name).write_bytes(compress(tool, plain))
    subprocess.run(["chmod", "-R", "a+rwX", str(disk_inputs)], check=True)
    result = run_as_user([unprivileged_python(), "-m", "ibtasks", "disk-image", "-c", "config",
                          "-d", ".", "-t", "scsi", "-o", "disk.img"], cwd=disk_inputs)
    assert result.returncode == 0, result.stderr
    disk = disk_inputs / "disk.img"
    table = subprocess.run(["sfdisk", "--json", str(disk)], check=True,
                           capture_output=True).stdout
    parts = json.loads(table)["partitiontable"]["partitions"]
    for part, motd in ((parts[1], "dom0\n"), (parts[2], "domU2\n")):
        image = tmp_path / f"part{part['start']}.ext4"
        with open(disk, "rb") as src:
            src.seek(part["start"] * SECTOR)
            image.write_bytes(src.read(part["size"] * SECTOR))
        subprocess.run(["e2fsck", "-fn", str(image)], check=True, capture_output=True)
        assert debugfs(image, "cat /etc/motd") == motd
        assert "Mode:  04755" in debugfs(image, "stat /bin/su")
