"""The shared cache end to end, against a real registry (Debian's docker-registry on
127.0.0.1, tests/oci_registry.py): runner A populates it, runner B (another folder, no doit
state) takes every partition from it and writes the same disk.img byte for byte.

Which ext4 builds ran is read from a logging wrapper of mkfs.ext4 put first on PATH (it runs
the real program); what the registry holds from its own tags/list and manifests.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run_ibtasks
from tests.oci_registry import LocalRegistry, Relay

CONFIG = """MEMORY_START=0x40000000
MEMORY_END=0x50000000
DEVICE_TREE=mpsoc.dtb
XEN=xen
DOM0_KERNEL=Image-dom0
DOM0_ROOTFS=rootfs-dom0.tar.gz
NUM_DOMUS=2
DOMU_KERNEL[0]=zynqmp-dom1/Image-domU
DOMU_RAMDISK[0]=zynqmp-dom1/domU-ramdisk.cpio
DOMU_KERNEL[1]=zynqmp-dom1/Image-domU
DOMU_ROOTFS[1]=rootfs-domU.tar.gz
"""
WARNING = "ibtasks: warning: cache: "
LABELS = {"vos_2": "dom0.ext4", "vos_3": "domU1.ext4"}  # the rootfs partitions, numbered 2, 3


def make_rootfs(path: Path, motd: bytes, filler: int = 1 << 20) -> None:
    """A small rootfs archive: /etc/motd and `filler` bytes that do not compress."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in (("etc/motd", motd), ("srv/filler", os.urandom(filler))):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))


@pytest.fixture
def inputs(seed_inputs: Path) -> Path:
    (seed_inputs / "config").write_text(CONFIG)
    make_rootfs(seed_inputs / "rootfs-dom0.tar.gz", b"dom0\n")
    make_rootfs(seed_inputs / "rootfs-domU.tar.gz", b"domU\n")
    return seed_inputs


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[LocalRegistry]:
    storage = tmp_path / "registry"
    storage.mkdir()
    server = LocalRegistry(storage).start()
    yield server
    server.stop()


@pytest.fixture
def mkfs_log(tmp_path: Path) -> Path:
    """A folder with a mkfs.ext4 that logs its arguments to `mkfs.log` and runs the real one."""
    wrappers = tmp_path / "wrappers"
    wrappers.mkdir()
    log = tmp_path / "mkfs.log"
    script = wrappers / "mkfs.ext4"
    script.write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec /usr/sbin/mkfs.ext4 "$@"\n')
    script.chmod(0o755)
    return log


def runner(inputs: Path, tmp_path: Path, name: str) -> Path:
    """A fresh runner's checkout: the inputs alone, in a folder of its own."""
    folder = tmp_path / name
    shutil.copytree(inputs, folder)
    return folder


def build_disk(folder: Path, mkfs_log: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": f"{mkfs_log.parent / 'wrappers'}:{os.environ['PATH']}"}
    done = run_ibtasks("disk-image", "-c", "config", "-d", ".", "-t", "scsi", "-o", "disk.img",
                       *flags, cwd=folder, env=env)
    assert done.returncode == 0, done.stderr
    return done


def ext4_builds(mkfs_log: Path) -> list[str]:
    """The partition images mkfs.ext4 made since the last call, by their label (`-L vos_2`:
    dom0's, the second partition) (a build may run it more than once: sizing, then the tree)."""
    lines = mkfs_log.read_text().splitlines() if mkfs_log.exists() else []
    mkfs_log.unlink(missing_ok=True)
    labels = {line.split(" -L ")[1].split()[0] for line in lines}
    return sorted(LABELS[label] for label in labels)


def test_a_second_runner_gets_every_partition_from_the_cache_and_writes_the_same_disk(
        inputs: Path, tmp_path: Path, registry: LocalRegistry, mkfs_log: Path) -> None:
    a = runner(inputs, tmp_path, "runner-a")
    build_disk(a, mkfs_log, "--cache", registry.url())
    assert ext4_builds(mkfs_log) == ["dom0.ext4", "domU1.ext4"]
    tags = registry.tags()
    assert len(tags) == 3  # boot, dom0, domU1: one entry each
    b = runner(inputs, tmp_path, "runner-b")
    done = build_disk(b, mkfs_log, "--cache", registry.url())
    assert ext4_builds(mkfs_log) == []
    assert WARNING not in done.stderr
    assert (b / "disk.img").read_bytes() == (a / "disk.img").read_bytes()
    assert registry.tags() == tags
    # Each entry: the key document as config, the partition image as its titled layer.
    titles = sorted(registry.manifest(t)["layers"][0]["annotations"]  # type: ignore[index]
                    ["org.opencontainers.image.title"] for t in tags)
    assert titles == ["boot.vfat", "dom0.ext4", "domU1.ext4"]


def test_a_changed_archive_misses_only_its_own_partition(
        inputs: Path, tmp_path: Path, registry: LocalRegistry, mkfs_log: Path) -> None:
    build_disk(runner(inputs, tmp_path, "runner-a"), mkfs_log, "--cache", registry.url())
    ext4_builds(mkfs_log)
    tags = registry.tags()
    c = runner(inputs, tmp_path, "runner-c")
    make_rootfs(c / "rootfs-domU.tar.gz", b"domU changed\n")
    build_disk(c, mkfs_log, "--cache", registry.url())
    assert ext4_builds(mkfs_log) == ["domU1.ext4"]
    assert len(registry.tags()) == len(tags) + 1
    assert set(tags) < set(registry.tags())
    done = subprocess.run(["debugfs", "-R", "cat /etc/motd", str(c / ".ibtasks" / "domU1.ext4")],
                          capture_output=True, text=True, check=True)
    assert done.stdout == "domU changed\n"


def test_a_registry_that_dies_mid_upload_leaves_no_entry_and_the_next_build_succeeds(
        inputs: Path, tmp_path: Path, registry: LocalRegistry, mkfs_log: Path) -> None:
    # The relay kills the registry once 300 kB went its way: inside the first partition's
    # blob (each image holds a 1 MiB incompressible file).
    relay = Relay(registry.port, cut_after=300_000, on_cut=registry.stop)
    a = runner(inputs, tmp_path, "runner-a")
    done = build_disk(a, mkfs_log, "--cache", registry.url(relay.host))
    relay.close()
    assert relay.cut.is_set()
    assert WARNING in done.stderr and "not uploaded" in done.stderr
    registry.start()
    assert registry.tags() == []
    b = runner(inputs, tmp_path, "runner-b")
    build_disk(b, mkfs_log, "--cache", registry.url())
    assert len(registry.tags()) == 3
    assert (b / "disk.img").read_bytes() == (a / "disk.img").read_bytes()


def test_a_blob_corrupted_in_storage_is_detected_and_the_partition_rebuilt(
        inputs: Path, tmp_path: Path, registry: LocalRegistry, mkfs_log: Path) -> None:
    a = runner(inputs, tmp_path, "runner-a")
    build_disk(a, mkfs_log, "--cache", registry.url())
    ext4_builds(mkfs_log)
    for tag in registry.tags():
        layer = registry.manifest(tag)["layers"][0]  # type: ignore[index]
        if layer["annotations"]["org.opencontainers.image.title"] == "dom0.ext4":
            blob = registry.blob_file(layer["digest"])
    with open(blob, "r+b") as data:
        data.seek(1024 + 0x78)  # the ext4 superblock's volume name
        data.write(b"tampered")
    b = runner(inputs, tmp_path, "runner-b")
    done = build_disk(b, mkfs_log, "--cache", registry.url())
    assert ext4_builds(mkfs_log) == ["dom0.ext4"]
    lines = [line for line in done.stderr.splitlines() if line.startswith(WARNING)]
    assert len(lines) == 1 and "ib_partition:dom0" in lines[0] and "corrupt" in lines[0]
    assert (b / "disk.img").read_bytes() == (a / "disk.img").read_bytes()


def test_read_only_mode_takes_hits_and_uploads_nothing(
        inputs: Path, tmp_path: Path, registry: LocalRegistry, mkfs_log: Path) -> None:
    build_disk(runner(inputs, tmp_path, "pr-1"), mkfs_log, "--cache", registry.url(),
               "--cache-read-only")
    assert ext4_builds(mkfs_log) == ["dom0.ext4", "domU1.ext4"]
    assert registry.tags() == []
    a = runner(inputs, tmp_path, "runner-a")
    build_disk(a, mkfs_log, "--cache", registry.url())
    ext4_builds(mkfs_log)
    tags = registry.tags()
    pr = runner(inputs, tmp_path, "pr-2")
    make_rootfs(pr / "rootfs-domU.tar.gz", b"domU from a pull request\n")
    done = run_ibtasks("disk-image", "-c", "config", "-d", ".", "-t", "scsi", "-o", "disk.img",
                       cwd=pr, env={"IBTASKS_CACHE": registry.url(),
                                    "IBTASKS_CACHE_READ_ONLY": "1",
                                    "PATH": f"{mkfs_log.parent / 'wrappers'}:"
                                            f"{os.environ['PATH']}"})
    assert done.returncode == 0, done.stderr
    assert ext4_builds(mkfs_log) == ["domU1.ext4"]  # dom0 and boot were hits
    assert registry.tags() == tags


def test_a_second_identical_build_uploads_no_byte(
        inputs: Path, tmp_path: Path, registry: LocalRegistry, mkfs_log: Path) -> None:
    first = Relay(registry.port)
    build_disk(runner(inputs, tmp_path, "runner-a"), mkfs_log, "--cache",
               registry.url(first.host))
    second = Relay(registry.port)
    build_disk(runner(inputs, tmp_path, "runner-b"), mkfs_log, "--cache",
               registry.url(second.host))
    first.close()
    second.close()
    assert first.sent > 2 << 20  # two partitions with 1 MiB of random bytes each
    assert second.sent < 16 << 10  # requests' lines and headers: GETs and no body


@pytest.mark.parametrize("cache", ["oci://127.0.0.1:{closed}/ci/cache",
                                   "oci://127.0.0.1:{port}/ci/cache"])
def test_a_cache_that_fails_is_one_warning_per_task_and_the_build_succeeds(
        inputs: Path, tmp_path: Path, mkfs_log: Path, cache: str) -> None:
    from tests.oci_registry import free_port

    # Nothing listens on the first; the second answers every request with a reset.
    closed = free_port()
    relay = Relay(closed)
    a = runner(inputs, tmp_path, "runner-a")
    done = build_disk(a, mkfs_log, "--cache", cache.format(closed=closed, port=relay.port))
    relay.close()
    lines = [line for line in done.stderr.splitlines() if line.startswith(WARNING)]
    assert sorted(line.split(": ")[3] for line in lines) == [
        "ib_partition:boot", "ib_partition:dom0", "ib_partition:domU1"]
    assert ext4_builds(mkfs_log) == ["dom0.ext4", "domU1.ext4"]
    assert (a / "disk.img").stat().st_size > 0


def test_a_fit_comes_from_the_cache_on_a_fresh_runner(
        inputs: Path, tmp_path: Path, registry: LocalRegistry) -> None:
    outputs = []
    for name in ("runner-a", "runner-b"):
        folder = runner(inputs, tmp_path, name)
        done = run_ibtasks("uboot-script-gen", "-c", "config", "-d", ".", "-t", "sd", "-f",
                           "--cache", registry.url(), "-v", cwd=folder)
        assert done.returncode == 0, done.stderr
        assert WARNING not in done.stderr
        outputs.append((folder / "boot.fit").read_bytes())
    assert outputs[0] == outputs[1]
    # One entry: runner B's key was runner A's, so B found it (a miss would not upload a
    # second copy under the same tag, and another key would be a second tag).
    [tag] = registry.tags()
    manifest = registry.manifest(tag)
    assert manifest["artifactType"] == "application/vnd.ibtasks.cache.v1"
    listed = subprocess.run(["dumpimage", "-l", str(tmp_path / "runner-b" / "boot.fit")],
                            capture_output=True, text=True, check=True)
    assert "host_kernel" in listed.stdout


def test_without_a_cache_no_task_opens_a_connection(inputs: Path, tmp_path: Path,
                                                   mkfs_log: Path) -> None:
    # IBTASKS_CACHE unset and no --cache: a proxy that refuses everything is never asked.
    a = runner(inputs, tmp_path, "runner-a")
    env = {k: v for k, v in os.environ.items() if not k.startswith("IBTASKS_CACHE")}
    done = subprocess.run([sys.executable, "-m", "ibtasks", "disk-image", "-c", "config", "-d",
                           ".", "-t", "scsi", "-o", "disk.img"], cwd=a, capture_output=True,
                          text=True, env=env | {"HTTP_PROXY": "http://127.0.0.1:9",
                                                "HTTPS_PROXY": "http://127.0.0.1:9"})
    assert done.returncode == 0, done.stderr
    assert "cache" not in done.stderr
