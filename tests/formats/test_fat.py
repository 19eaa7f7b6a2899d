"""FAT boot partition images, checked with fsck.fat, mtools (no MTOOLS_SKIP_CHECK) and minfo."""

import os
import subprocess
import time
from pathlib import Path

import pytest

from ibtasks.errors import UserError
from ibtasks.formats.fat import BootFile, boot_partition_size, build_fat_image, derive_volume_id

MIB = 1024 * 1024
EPOCH = 1700000000  # 2023-11-14 22:13:20 UTC


def mtools_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MTOOLS")}
    env["TZ"] = "UTC"
    return env


def boot_files(root: Path) -> list[BootFile]:
    """Sizes around cluster edges: 0, 1, 2048 (one 2 KiB cluster), 2049, 5 MB."""
    contents = {
        "xen": bytes(range(256)) * 20000 + b"x",  # 5,120,001 bytes
        "Image": b"K" * 2048,
        "virt.dtb": b"D" * 2049,
        "boot.scr": b"S",
        "empty": b"",
        "dom1/Image": b"1234" * 1000,
        "dom1/initrd/rootfs-with-a-long-name.cpio.gz": b"ramdisk",
    }
    files = []
    for name, data in contents.items():
        source = root / "src" / name
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_bytes(data)
        files.append(BootFile(name, source))
    return files


def build(tmp: Path, name: str = "boot.vfat") -> tuple[Path, list[BootFile]]:
    files = boot_files(tmp)
    out = tmp / "out" / name
    build_fat_image(out, files, volume_id=0x1234ABCD, label="BOOT", epoch=EPOCH)
    return out, files


def test_image_passes_fsck_fat_without_changes(tmp_path: Path) -> None:
    image, _ = build(tmp_path)
    fsck = subprocess.run(["fsck.fat", "-n", str(image)], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    # fsck counts the 7 files, the 2 directories and the volume label entry.
    assert ": 10 files, " in fsck.stdout


def test_mtools_lists_and_extracts_every_file_byte_exact(tmp_path: Path) -> None:
    image, files = build(tmp_path)
    listing = subprocess.run(
        ["mdir", "-i", str(image), "-/", "-b", "::"],
        capture_output=True, text=True, env=mtools_env(), check=True,
    ).stdout.split()
    assert sorted(listing) == sorted(
        ["::/xen", "::/Image", "::/virt.dtb", "::/boot.scr", "::/empty", "::/dom1/",
         "::/dom1/Image", "::/dom1/initrd/", "::/dom1/initrd/rootfs-with-a-long-name.cpio.gz"]
    )
    for item in files:
        copy = tmp_path / "copy"
        subprocess.run(
            ["mcopy", "-n", "-i", str(image), f"::/{item.path}", str(copy)],
            check=True, env=mtools_env(), capture_output=True,
        )
        assert copy.read_bytes() == item.source.read_bytes(), item.path
        copy.unlink()


def test_size_is_the_files_plus_16_mib_rounded_up_to_2_mib(tmp_path: Path) -> None:
    image, files = build(tmp_path)
    total = sum(f.source.stat().st_size for f in files)
    assert total == 5120001 + 2048 + 2049 + 1 + 0 + 4000 + 7 == 5128106
    # 5,128,106 + 16 MiB = 21,905,322 -> 11 x 2 MiB = 23,068,672 = 22 MiB
    assert boot_partition_size(total) == 22 * MIB == image.stat().st_size
    assert boot_partition_size(2 * MIB) == 18 * MIB
    assert boot_partition_size(2 * MIB + 1) == 20 * MIB


def test_boot_sector_has_geometry_hidden_sectors_label_and_serial(tmp_path: Path) -> None:
    image, _ = build(tmp_path)
    info = subprocess.run(
        ["minfo", "-i", str(image), "::"], capture_output=True, text=True, env=mtools_env(),
        check=True,
    ).stdout
    for line in ("sectors per track: 63", "heads: 255", "hidden sectors: 2048",
                 "serial number: 1234ABCD", 'disk label="BOOT       "', 'disk type="FAT16   "',
                 f"small size: {22 * MIB // 512} sectors"):
        assert line in info


def test_every_timestamp_is_the_epoch(tmp_path: Path) -> None:
    image, _ = build(tmp_path)
    listing = subprocess.run(
        ["mdir", "-i", str(image), "-/", "::"], capture_output=True, text=True,
        env=mtools_env(), check=True,
    ).stdout
    stamped = [line for line in listing.splitlines() if "<DIR>" in line or line[:1].isalpha()]
    dated = [line for line in stamped if "20" in line or "19" in line]
    assert dated
    for line in dated:
        if line.startswith("..") and "1980-00-00" in line:
            continue  # '..' pointing at the root directory carries no time (FAT spec)
        assert "2023-11-14  22:13" in line, line


def test_two_builds_in_different_directories_at_different_times_are_identical(
    tmp_path: Path,
) -> None:
    first, _ = build(tmp_path / "a")
    time.sleep(2.1)  # FAT times have 2-second resolution
    second, _ = build(tmp_path / "b", name="other.vfat")
    assert first.read_bytes() == second.read_bytes()


def test_large_partition_is_fat32_with_a_correct_free_count(tmp_path: Path) -> None:
    big = tmp_path / "big.img"
    with open(big, "wb") as f:  # sparse: 500 MiB of holes and one byte
        f.truncate(500 * MIB)
        f.seek(300 * MIB)
        f.write(b"!")
    image = tmp_path / "boot.vfat"
    result = build_fat_image(
        image, [BootFile("big.img", big)], volume_id=1, label="BOOT", epoch=EPOCH
    )
    assert (result.fat_bits, result.size) == (32, 516 * MIB)
    fsck = subprocess.run(["fsck.fat", "-n", str(image)], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout
    assert "Free cluster summary" not in fsck.stdout
    copy = tmp_path / "copy"
    subprocess.run(["mcopy", "-i", str(image), "::/big.img", str(copy)], check=True,
                   env=mtools_env())
    with open(copy, "rb") as f:
        f.seek(300 * MIB - 1)
        assert f.read(3) == b"\0!\0"
    # The image is sparse: the file's holes are not written.
    assert image.stat().st_blocks * 512 < 10 * MIB


def test_names_that_differ_only_in_case_are_rejected(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"a")
    (tmp_path / "b").write_bytes(b"b")
    files = [BootFile("Image", tmp_path / "a"), BootFile("IMAGE", tmp_path / "b")]
    with pytest.raises(UserError, match="boot file 'IMAGE' would overwrite 'Image'"):
        build_fat_image(tmp_path / "x", files, volume_id=1, label="BOOT", epoch=EPOCH)
    assert not (tmp_path / "x").exists()


def test_the_same_file_named_twice_is_stored_once(tmp_path: Path) -> None:
    (tmp_path / "Image").write_bytes(b"kernel")
    files = [BootFile("Image", tmp_path / "Image"), BootFile("./Image", tmp_path / "Image")]
    result = build_fat_image(tmp_path / "x", files, volume_id=1, label="BOOT", epoch=EPOCH)
    assert [f.path for f in result.files] == ["Image"]


def test_path_escaping_the_partition_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"a")
    with pytest.raises(UserError, match=r"must be relative, without '\.\.'"):
        build_fat_image(tmp_path / "x", [BootFile("../a", tmp_path / "a")], volume_id=1,
                        label="BOOT", epoch=EPOCH)


def test_missing_source_file_names_the_boot_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"boot file xen: cannot read .*: No such file"):
        build_fat_image(tmp_path / "x", [BootFile("xen", tmp_path / "nope")], volume_id=1,
                        label="BOOT", epoch=EPOCH)
    assert list(tmp_path.iterdir()) == []


def test_volume_id_is_derived_from_its_inputs() -> None:
    assert derive_volume_id("config", "boot") == derive_volume_id("config", "boot")
    assert derive_volume_id("config", "boot") != derive_volume_id("other", "boot")
    assert 0 <= derive_volume_id("x") <= 0xFFFFFFFF


# FAT matches names ignoring case, as a vfat mount does: directories spelled in different cases
# are one directory (spelled as first given), and a file and a directory cannot share a name.


def test_directories_that_differ_only_in_case_are_one_directory(tmp_path: Path) -> None:
    for name in "abc":
        (tmp_path / name).write_bytes(name.encode() * 3000)
    files = [BootFile("Sub/a", tmp_path / "a"), BootFile("sub/b", tmp_path / "b"),
             BootFile("SUB/Deeper/c", tmp_path / "c")]
    image = tmp_path / "boot.vfat"
    build_fat_image(image, files, volume_id=1, label="BOOT", epoch=EPOCH)
    listing = subprocess.run(["mdir", "-i", str(image), "-/", "-b", "::"], capture_output=True,
                             text=True, check=True, env=mtools_env()).stdout.split()
    assert sorted(listing) == ["::/Sub/", "::/Sub/Deeper/", "::/Sub/Deeper/c", "::/Sub/a",
                               "::/Sub/b"]
    for name, path in (("a", "Sub/a"), ("b", "sub/b"), ("c", "sub/deeper/c")):
        data = subprocess.run(["mtype", "-i", str(image), f"::/{path}"], capture_output=True,
                              check=True, env=mtools_env()).stdout
        assert data == name.encode() * 3000
    fsck = subprocess.run(["fsck.fat", "-n", str(image)], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout


def test_a_file_where_a_directory_is_needed_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"f")
    files = [BootFile("dtbs", tmp_path / "f"), BootFile("DTBS/board.dtb", tmp_path / "f")]
    with pytest.raises(UserError) as caught:
        build_fat_image(tmp_path / "x", files, volume_id=1, label="BOOT", epoch=EPOCH)
    assert str(caught.value) == "boot file 'DTBS/board.dtb' clashes with another name on FAT"
    assert list(tmp_path.iterdir()) == [tmp_path / "f"]


def test_a_file_named_as_an_existing_directory_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"f")
    files = [BootFile("dtbs/board.dtb", tmp_path / "f"), BootFile("Dtbs", tmp_path / "f")]
    with pytest.raises(UserError) as caught:
        build_fat_image(tmp_path / "x", files, volume_id=1, label="BOOT", epoch=EPOCH)
    assert str(caught.value) == "boot file 'Dtbs' clashes with another name on FAT"
    assert list(tmp_path.iterdir()) == [tmp_path / "f"]
