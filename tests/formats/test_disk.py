"""disk.img assembly: layout read back by sfdisk/sgdisk, partitions checked by fsck.fat and
e2fsck, sparse output, and in-place updates that rewrite only the changed partition."""

import json
import os
import resource
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from ibtasks.errors import UserError
from ibtasks.formats.disk_image import DiskResult, PartitionImage, assemble_disk
from ibtasks.formats.fat import BootFile, build_fat_image
from ibtasks.formats.fat_update import FatWrite, write_fat_image
from ibtasks.formats.gpt import BASIC_DATA, LINUX_FILESYSTEM, derive_guid
from tests.unprivileged import run_as_user, unprivileged_python, user_tmp_dir

MIB = 1024 * 1024
EPOCH = 1700000000
DISK_GUID = derive_guid("test-config", "disk")


def make_boot(root: Path, kernel: bytes = b"K" * 3000) -> Path:
    src = root / "src"
    src.mkdir(parents=True, exist_ok=True)
    (src / "xen").write_bytes(b"X" * 5000)
    (src / "Image").write_bytes(kernel)
    files = [BootFile("xen", src / "xen"), BootFile("dom1/Image", src / "Image")]
    out = root / "work" / "boot.vfat"
    build_fat_image(out, files, volume_id=0xB007, label="BOOT", epoch=EPOCH)
    return out


def make_ext4(path: Path, mib: int = 6, marker: bytes = b"rootfs") -> Path:
    """A tiny reproducible ext4 image (fixed UUID, hash seed and time) with one file."""
    tree = path.parent / (path.name + ".tree")
    tree.mkdir(parents=True, exist_ok=True)
    (tree / "marker").write_bytes(marker)
    os.utime(tree / "marker", (EPOCH, EPOCH))
    os.utime(tree, (EPOCH, EPOCH))
    env = dict(os.environ, E2FSPROGS_FAKE_TIME=str(EPOCH))
    uid = "0a0b0c0d-0000-4000-8000-000000000001"
    subprocess.run(
        ["mkfs.ext4", "-q", "-F", "-b", "4096", "-t", "ext4", "-U", uid,
         "-E", f"hash_seed={uid}", "-d", str(tree), str(path), f"{mib}M"],
        check=True, env=env,
    )
    # mkfs copies each file's ctime from the tree, and ctime cannot be set: fix it afterwards,
    # or two builds a second apart differ.
    commands = "".join(f"set_inode_field {inode} ctime {EPOCH}\n" for inode in ("/", "/marker"))
    subprocess.run(["debugfs", "-w", "-f", "-", str(path)], input=commands, text=True,
                   check=True, capture_output=True, env=env)
    return path


def partitions(boot: Path, rootfs: Path, rootfs_size: int | None = None) -> list[PartitionImage]:
    return [
        PartitionImage("Linux1", BASIC_DATA, derive_guid("test-config", "boot"), boot),
        PartitionImage(
            "Linux2", LINUX_FILESYSTEM, derive_guid("test-config", "dom0"), rootfs, rootfs_size
        ),
    ]


def build(root: Path) -> tuple[DiskResult, list[PartitionImage]]:
    parts = partitions(make_boot(root), make_ext4(root / "work" / "dom0.ext4"))
    return assemble_disk(root / "disk.img", DISK_GUID, parts), parts


def extract(disk: Path, start_sector: int, sectors: int, out: Path) -> Path:
    subprocess.run(
        ["dd", f"if={disk}", f"of={out}", "bs=512", f"skip={start_sector}", f"count={sectors}",
         "status=none"],
        check=True,
    )
    return out


def test_sfdisk_reads_the_expected_layout(tmp_path: Path) -> None:
    result, _ = build(tmp_path)
    out = subprocess.run(["sfdisk", "--json", str(tmp_path / "disk.img")], check=True,
                         capture_output=True)
    table = json.loads(out.stdout)["partitiontable"]
    # boot: 5000 + 3000 bytes + 16 MiB -> 18 MiB; rootfs 6 MiB; disk ends 1 MiB after it.
    assert table["id"] == str(DISK_GUID).upper()
    assert [(p["start"], p["size"], p["type"], p["name"]) for p in table["partitions"]] == [
        (2048, 18 * 2048, str(BASIC_DATA).upper(), "Linux1"),
        (2048 + 18 * 2048, 6 * 2048, str(LINUX_FILESYSTEM).upper(), "Linux2"),
    ]
    assert (tmp_path / "disk.img").stat().st_size == (1 + 18 + 6 + 1) * MIB == result.size
    verify = subprocess.run(["sgdisk", "-v", str(tmp_path / "disk.img")], capture_output=True,
                            text=True)
    assert verify.returncode == 0 and "No problems found" in verify.stdout, verify.stdout


def test_partitions_pass_fsck_and_hold_their_files(tmp_path: Path) -> None:
    build(tmp_path)
    disk = tmp_path / "disk.img"
    boot = extract(disk, 2048, 18 * 2048, tmp_path / "p1")
    assert subprocess.run(["fsck.fat", "-n", str(boot)], capture_output=True).returncode == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("MTOOLS")}
    kernel = subprocess.run(["mtype", "-i", f"{disk}@@{2048 * 512}", "::/dom1/Image"],
                            check=True, capture_output=True, env=env).stdout
    assert kernel == b"K" * 3000
    root = extract(disk, 2048 + 18 * 2048, 6 * 2048, tmp_path / "p2")
    check = subprocess.run(["e2fsck", "-fn", str(root)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    dump = subprocess.run(["debugfs", "-R", "cat /marker", str(root)], check=True,
                          capture_output=True).stdout
    assert dump == b"rootfs"


def test_disk_is_sparse(tmp_path: Path) -> None:
    result, _ = build(tmp_path)
    st = (tmp_path / "disk.img").stat()
    assert st.st_blocks * 512 < st.st_size // 4
    assert result.written == (1, 2)
    assert result.bytes_copied < st.st_size // 4


def test_two_builds_in_different_directories_give_identical_bytes(tmp_path: Path) -> None:
    build(tmp_path / "a")
    build(tmp_path / "b")
    assert (tmp_path / "a" / "disk.img").read_bytes() == (tmp_path / "b" / "disk.img").read_bytes()


def test_changed_boot_image_rewrites_only_the_boot_partition_in_place(tmp_path: Path) -> None:
    _, parts = build(tmp_path)
    disk = tmp_path / "disk.img"
    before = disk.stat()
    rootfs_bytes = disk.read_bytes()[19 * MIB : 25 * MIB]
    make_boot(tmp_path, kernel=b"N" * 4000)  # a new kernel: same partition size
    result = assemble_disk(disk, DISK_GUID, parts)
    after = disk.stat()
    assert result.written == (1,)
    assert after.st_ino == before.st_ino  # updated in place, not copied
    assert after.st_blocks * 512 < after.st_size // 4
    assert disk.read_bytes()[19 * MIB : 25 * MIB] == rootfs_bytes
    env = {k: v for k, v in os.environ.items() if not k.startswith("MTOOLS")}
    kernel = subprocess.run(["mtype", "-i", f"{disk}@@{2048 * 512}", "::/dom1/Image"],
                            check=True, capture_output=True, env=env).stdout
    assert kernel == b"N" * 4000
    record = json.loads((tmp_path / "disk.img.parts.json").read_text())
    assert record["parts"][0]["ino"] == parts[0].image.stat().st_ino
    assert record["disk"]["mtime_ns"] == after.st_mtime_ns


def test_unchanged_images_leave_the_disk_untouched(tmp_path: Path) -> None:
    _, parts = build(tmp_path)
    disk = tmp_path / "disk.img"
    before = disk.stat().st_mtime_ns
    assert assemble_disk(disk, DISK_GUID, parts).written == ()
    assert disk.stat().st_mtime_ns == before


def test_smaller_new_image_leaves_no_stale_bytes_behind(tmp_path: Path) -> None:
    boot = make_boot(tmp_path)
    big = tmp_path / "work" / "dom0.ext4"
    big.write_bytes(b"\xaa" * (3 * MIB))
    disk = tmp_path / "disk.img"
    assemble_disk(disk, DISK_GUID, partitions(boot, big, rootfs_size=4 * MIB))
    tmp = big.with_name("new")
    tmp.write_bytes(b"\xbb" * MIB)
    os.replace(tmp, big)
    result = assemble_disk(disk, DISK_GUID, partitions(boot, big, rootfs_size=4 * MIB))
    assert result.written == (2,)
    region = disk.read_bytes()[19 * MIB : 23 * MIB]
    assert region == b"\xbb" * MIB + bytes(3 * MIB)


def test_holes_in_a_new_image_become_zeros_where_the_old_image_had_data(tmp_path: Path) -> None:
    boot = make_boot(tmp_path)
    image = tmp_path / "work" / "dom0.ext4"
    image.write_bytes(b"\xaa" * (3 * MIB))
    disk = tmp_path / "disk.img"
    assemble_disk(disk, DISK_GUID, partitions(boot, image))
    tmp = image.with_name("new")
    with open(tmp, "wb") as f:  # data, a 1 MiB hole, data
        f.write(b"\xbb" * MIB)
        f.seek(2 * MIB)
        f.write(b"\xcc" * MIB)
    os.replace(tmp, image)
    assert assemble_disk(disk, DISK_GUID, partitions(boot, image)).written == (2,)
    assert disk.read_bytes()[19 * MIB : 22 * MIB] == b"\xbb" * MIB + bytes(MIB) + b"\xcc" * MIB


def test_changed_layout_rewrites_only_the_partitions_that_changed_or_moved(
        tmp_path: Path) -> None:
    _, parts = build(tmp_path)
    make_ext4(parts[1].image, mib=8)
    result = assemble_disk(tmp_path / "disk.img", DISK_GUID, parts)
    assert result.written == (2,)  # the boot partition kept its image and its place
    assert (tmp_path / "disk.img").stat().st_size == (1 + 18 + 8 + 1) * MIB
    assemble_disk(tmp_path / "fresh.img", DISK_GUID, parts)
    assert (tmp_path / "disk.img").read_bytes() == (tmp_path / "fresh.img").read_bytes()


def test_image_larger_than_its_partition_is_rejected(tmp_path: Path) -> None:
    boot = make_boot(tmp_path)
    rootfs = make_ext4(tmp_path / "work" / "dom0.ext4", mib=6)
    with pytest.raises(UserError, match=r"partition 2 \(Linux2\): size 0x400000 \(4194304\)"):
        assemble_disk(tmp_path / "disk.img", DISK_GUID, partitions(boot, rootfs, 4 * MIB))
    assert not (tmp_path / "disk.img").exists()


def _assemble_with_file_size_limit(root: Path, limit: int) -> subprocess.CompletedProcess[str]:
    """Run assemble_disk in a child limited to writing `limit` bytes per file (RLIMIT_FSIZE)."""
    code = (
        "import sys, pathlib\n"
        "from ibtasks.formats.disk_image import PartitionImage, assemble_disk\n"
        "from ibtasks.errors import UserError\n"
        "from ibtasks.formats.gpt import BASIC_DATA, LINUX_FILESYSTEM, derive_guid\n"
        "root = pathlib.Path(sys.argv[1])\n"
        "parts = [PartitionImage('Linux1', BASIC_DATA, derive_guid('test-config', 'boot'),"
        " root / 'work' / 'boot.vfat'),"
        " PartitionImage('Linux2', LINUX_FILESYSTEM, derive_guid('test-config', 'dom0'),"
        " root / 'work' / 'dom0.ext4')]\n"
        "try:\n"
        "    assemble_disk(root / 'disk.img', derive_guid('test-config', 'disk'), parts)\n"
        "except UserError as exc:\n"
        "    sys.exit(str(exc))\n"
    )

    def limit_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    src = Path(__file__).resolve().parents[2]
    return subprocess.run(
        [sys.executable, "-c", code, str(root)], capture_output=True, text=True,
        preexec_fn=limit_size, env=dict(os.environ, PYTHONPATH=str(src)),
    )


def test_failed_first_build_leaves_no_disk_image(tmp_path: Path) -> None:
    make_boot(tmp_path)
    make_ext4(tmp_path / "work" / "dom0.ext4")
    run = _assemble_with_file_size_limit(tmp_path, 19 * MIB + 1024)
    assert run.returncode == 1
    assert run.stderr.startswith(f"cannot write {tmp_path / 'disk.img'}: ")
    assert "File too large" in run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src", "work"]


def test_failed_update_leaves_no_disk_image_and_the_next_run_rewrites_everything(
    tmp_path: Path,
) -> None:
    _, parts = build(tmp_path)
    make_ext4(parts[1].image, marker=b"new rootfs")  # same size: an in-place update
    run = _assemble_with_file_size_limit(tmp_path, 19 * MIB + 1024)  # rootfs: 19 MiB
    assert run.returncode == 1 and "File too large" in run.stderr
    assert not (tmp_path / "disk.img").exists()
    assert not (tmp_path / "disk.img.parts.json").exists()
    assert not [p for p in tmp_path.iterdir() if ".ibtmp-" in p.name or p.suffix == ".partial"]
    result = assemble_disk(tmp_path / "disk.img", DISK_GUID, parts)
    assert result.written == (1, 2)


def test_missing_partition_image_is_reported(tmp_path: Path) -> None:
    boot = make_boot(tmp_path)
    with pytest.raises(UserError, match=r"partition 2 \(Linux2\): .*nope: No such file"):
        assemble_disk(tmp_path / "disk.img", uuid.uuid4(), partitions(boot, tmp_path / "nope"))


UNPRIVILEGED_BUILD = """
import os, subprocess, sys
from pathlib import Path
from ibtasks.formats.disk_image import PartitionImage, assemble_disk
from ibtasks.formats.fat import BootFile, build_fat_image
from ibtasks.formats.gpt import BASIC_DATA, LINUX_FILESYSTEM, derive_guid

root = Path(sys.argv[1])
(root / "src").mkdir()
(root / "src" / "Image").write_bytes(b"kernel" * 1000)
boot = root / "boot.vfat"
build_fat_image(boot, [BootFile("dom1/Image", root / "src" / "Image")],
                volume_id=1, label="BOOT", epoch=1700000000)
rootfs = root / "dom0.ext4"
subprocess.run(["mkfs.ext4", "-q", "-F", "-b", "4096", "-d", str(root / "src"), str(rootfs),
                "4M"], check=True)
parts = [PartitionImage("Linux1", BASIC_DATA, derive_guid("u", "1"), boot),
         PartitionImage("Linux2", LINUX_FILESYSTEM, derive_guid("u", "2"), rootfs)]
first = assemble_disk(root / "disk.img", derive_guid("u", "disk"), parts)
build_fat_image(boot, [BootFile("dom1/Image", root / "src" / "Image"),
                       BootFile("xen", root / "src" / "Image")],
                volume_id=1, label="BOOT", epoch=1700000000)
second = assemble_disk(root / "disk.img", derive_guid("u", "disk"), parts)
print(first.written, second.written)
"""


def test_an_unprivileged_user_builds_and_updates_the_disk() -> None:
    with user_tmp_dir() as work:
        check_unprivileged_disk_build(work)


def check_unprivileged_disk_build(work: Path) -> None:
    run = run_as_user([unprivileged_python(), "-c", UNPRIVILEGED_BUILD, work], cwd=work)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1] == "(1, 2) (1,)"
    disk = work / "disk.img"
    if os.geteuid() == 0:
        assert disk.stat().st_uid != 0  # really built by the test user
    table = json.loads(subprocess.run(["sfdisk", "--json", str(disk)], check=True,
                                      capture_output=True).stdout)["partitiontable"]
    assert [(p["start"], p["size"]) for p in table["partitions"]] == [
        (2048, 18 * 2048), (2048 + 18 * 2048, 4 * 2048)
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MTOOLS")}
    listing = subprocess.run(["mdir", "-b", "-/", "-i", f"{disk}@@{2048 * 512}", "::"],
                             check=True, capture_output=True, text=True, env=env).stdout
    assert sorted(listing.split()) == ["::/dom1/", "::/dom1/Image", "::/xen"]


# ---- partition images updated in place (fat_update) ------------------------------------------

def make_boot_in_place(root: Path, kernel: bytes) -> FatWrite:
    """The boot image through fat_update: updated in place when the kernel keeps its clusters."""
    src = root / "src"
    src.mkdir(parents=True, exist_ok=True)
    xen, image = src / "xen", src / "Image"
    if not xen.exists():
        xen.write_bytes(b"X" * 5000)
    old = image.stat().st_mtime_ns if image.exists() else 0
    image.write_bytes(kernel)
    os.utime(image, ns=(old + 10**9, old + 10**9))  # surely a new mtime, even on coarse clocks
    files = [BootFile("xen", xen), BootFile("dom1/Image", image)]
    return write_fat_image(root / "work" / "boot.vfat", files, volume_id=0xB007, label="BOOT",
                           epoch=EPOCH)


def in_place_setup(root: Path) -> tuple[Path, list[PartitionImage]]:
    assert not make_boot_in_place(root, b"K" * 3000).in_place
    parts = partitions(root / "work" / "boot.vfat", make_ext4(root / "work" / "dom0.ext4"))
    assemble_disk(root / "disk.img", DISK_GUID, parts)
    return root / "disk.img", parts


def test_boot_image_updated_in_place_goes_to_the_disk_as_its_changed_ranges_only(
    tmp_path: Path,
) -> None:
    disk, parts = in_place_setup(tmp_path)
    inode = disk.stat().st_ino
    update = make_boot_in_place(tmp_path, b"N" * 4000)  # 2 clusters of 2 KiB, as before
    assert update.in_place
    result = assemble_disk(disk, DISK_GUID, parts)
    assert result.written == (1,) and result.ranged == (1,)
    assert 4000 <= result.bytes_copied <= sum(length for _, length in update.ranges) < 8192
    assert disk.stat().st_ino == inode
    # The same disk as one assembled from scratch from the same images.
    assert disk.read_bytes() == assemble_disk(tmp_path / "fresh.img", DISK_GUID, parts).path \
        .read_bytes()
    kernel = subprocess.run(["mtype", "-i", f"{disk}@@{2048 * 512}", "::/dom1/Image"],
                            check=True, capture_output=True,
                            env={k: v for k, v in os.environ.items()
                                 if not k.startswith("MTOOLS")}).stdout
    assert kernel == b"N" * 4000
    assert disk.stat().st_blocks * 512 < disk.stat().st_size // 4
    assert assemble_disk(disk, DISK_GUID, parts).written == ()


def test_change_list_computed_against_another_generation_is_not_applied(tmp_path: Path) -> None:
    disk, parts = in_place_setup(tmp_path)
    assert make_boot_in_place(tmp_path, b"N" * 4000).in_place
    assert make_boot_in_place(tmp_path, b"M" * 3500).in_place  # disk.img holds neither
    result = assemble_disk(disk, DISK_GUID, parts)
    assert result.written == (1,) and result.ranged == ()
    assert disk.read_bytes() == assemble_disk(tmp_path / "fresh.img", DISK_GUID, parts).path \
        .read_bytes()


def test_boot_image_rebuilt_in_full_is_copied_in_full(tmp_path: Path) -> None:
    disk, parts = in_place_setup(tmp_path)
    assert not make_boot_in_place(tmp_path, b"L" * 5000).in_place  # 3 clusters now
    result = assemble_disk(disk, DISK_GUID, parts)
    assert result.written == (1,) and result.ranged == ()
    assert disk.read_bytes() == assemble_disk(tmp_path / "fresh.img", DISK_GUID, parts).path \
        .read_bytes()
