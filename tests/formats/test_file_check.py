"""What is this file: each accepted and rejected kind, and the size a binary needs once loaded.

Inputs are the seed goldens' synthetic files, files made by the real tools (gzip, xz, cpio,
mkimage), and an ELF header written by tests/kernelfiles.py. Where we accept a file, `file(1)`
-- what the seed asked -- must say what the seed looked for (section 2.4 of
imagebuilder-upstream.md).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ibtasks.errors import UserError
from ibtasks.formats.file_check import FileInfo, Role, check_file
from tests.kernelfiles import elf

MiB = 1024 * 1024


def file_says(path: Path) -> str:
    """`file -bLz`: the seed's check, looking inside compressed files."""
    return subprocess.run(["file", "-bLz", str(path)], check=True, capture_output=True,
                          text=True).stdout


def compress(tool: str, path: Path) -> Path:
    suffix = {"gzip": ".gz", "xz": ".xz", "bzip2": ".bz2"}[tool]
    out = path.with_name(path.name + suffix)
    with open(out, "wb") as f:
        subprocess.run([tool, "-c", "-n" if tool == "gzip" else "-z", str(path)], check=True,
                       stdout=f)
    return out


def make_cpio(directory: Path, fmt: str) -> Path:
    (directory / "tree").mkdir()
    (directory / "tree" / "init").write_text("#!/bin/sh\necho hi\n")
    out = directory / f"ramdisk-{fmt}.cpio"
    with open(out, "wb") as f:
        subprocess.run(["cpio", "-o", "-H", fmt, "--quiet"], input=b"init\n",
                       cwd=directory / "tree", check=True, stdout=f)
    return out


# ---- accepted -----------------------------------------------------------------------------------

def test_arm64_image_is_an_executable_sized_by_its_file(seed_inputs: Path) -> None:
    xen = seed_inputs / "xen"
    assert "executable" in file_says(xen)
    assert check_file(xen, Role.EXECUTABLE, "XEN") == FileInfo("arm64 Image", 3_000_000, 3_000_000,
                                                                         "arm64")


def test_arm64_image_with_bss_needs_its_header_image_size(seed_inputs: Path) -> None:
    # tests/inputs.py: a 1,500,000-byte file whose header's image_size is 9 MiB.
    kernel = seed_inputs / "zynqmp-dom4" / "Image-bss"
    assert check_file(kernel, Role.DOMAIN_KERNEL, "DOMU_KERNEL[0]") == FileInfo(
        "arm64 Image", 1_500_000, 9 * MiB, "arm64")


def test_elf_is_an_executable(tmp_path: Path) -> None:
    xen_syms = tmp_path / "xen-syms"
    xen_syms.write_bytes(elf(183))
    assert "ELF 64-bit LSB executable, ARM aarch64" in file_says(xen_syms)
    assert check_file(xen_syms, Role.EXECUTABLE, "XEN") == FileInfo("ELF", 4096, 4096, "arm64")


def test_unrecognised_binary_data_is_accepted_as_the_seed_did(tmp_path: Path) -> None:
    blob = tmp_path / "firmware.bin"
    blob.write_bytes(bytes([0xA5, 0x5A, 0x01, 0xFE]) * 1024)  # file(1): "data"
    assert file_says(blob).strip() == "data"
    assert check_file(blob, Role.EXECUTABLE, "XEN") == FileInfo("data", 4096, 4096)


def test_gzipped_image_uses_its_file_size_not_its_header(seed_inputs: Path) -> None:
    gz = compress("gzip", seed_inputs / "zynqmp-dom4" / "Image-bss")
    size = gz.stat().st_size
    assert size < 9 * MiB
    assert check_file(gz, Role.DOMAIN_KERNEL, "DOMU_KERNEL[0]") == FileInfo(
        "gzip(arm64 Image)", size, size, "arm64")


def test_gzipped_image_from_make_inputs_is_an_executable(seed_inputs: Path) -> None:
    gz = seed_inputs / "zynqmp-dom3" / "Image-domU.gz"
    # 3145991 bytes: the size the seed golden noboot-rootfs-gzip-scsi puts in its reg.
    assert check_file(gz, Role.DOMAIN_KERNEL, "DOMU_KERNEL[3]") == FileInfo(
        "gzip(arm64 Image)", 3145991, 3145991, "arm64")


@pytest.mark.parametrize("fmt", ["newc", "bin", "odc"])
def test_cpio_made_by_cpio_is_a_ramdisk(tmp_path: Path, fmt: str) -> None:
    ramdisk = make_cpio(tmp_path, fmt)
    assert "cpio archive" in file_says(ramdisk)
    size = ramdisk.stat().st_size
    assert check_file(ramdisk, Role.RAMDISK, "DOM0_RAMDISK") == FileInfo("cpio", size, size)


def test_gzipped_cpio_is_a_ramdisk(seed_inputs: Path) -> None:
    gz = seed_inputs / "zynqmp-dom3" / "domU-ramdisk.cpio.gz"
    assert "cpio archive" in file_says(gz)
    # 535 bytes: the golden noboot-rootfs-gzip-scsi's reg size for this ramdisk.
    assert check_file(gz, Role.RAMDISK, "DOMU_RAMDISK[3]") == FileInfo("gzip(cpio)", 535, 535)


@pytest.mark.parametrize("tool", ["xz", "bzip2"])
def test_xz_and_bzip2_cpio_are_ramdisks(seed_inputs: Path, tool: str) -> None:
    packed = compress(tool, seed_inputs / "dom0-ramdisk.cpio")
    assert "cpio archive" in file_says(packed)
    size = packed.stat().st_size
    assert check_file(packed, Role.RAMDISK, "DOM0_RAMDISK") == FileInfo(f"{tool}(cpio)", size,
                                                                        size)


def test_dtb_is_a_device_tree(seed_inputs: Path) -> None:
    dtb = seed_inputs / "mpsoc.dtb"
    assert "Device Tree Blob" in file_says(dtb)
    assert check_file(dtb, Role.DTB, "DEVICE_TREE") == FileInfo("DTB", 458, 458)


# ---- rejected -----------------------------------------------------------------------------------

def rejected(path: Path, role: Role, key: str) -> str:
    with pytest.raises(UserError) as info:
        check_file(path, role, key)
    assert info.value.where is None  # the task adds the config line
    return info.value.message


def test_text_is_not_an_executable(seed_inputs: Path) -> None:
    assert rejected(seed_inputs / "extra-cmds.txt", Role.EXECUTABLE, "XEN") == (
        "XEN: extra-cmds.txt should be an executable (arm64 Image, zImage or ELF), but it is text")


def test_uimage_is_rejected_with_how_to_unwrap_it(seed_inputs: Path) -> None:
    subprocess.run(["mkimage", "-A", "arm64", "-T", "kernel", "-C", "none", "-a", "0", "-e", "0",
                    "-d", "Image-dom0", "uImage"], cwd=seed_inputs, check=True,
                   capture_output=True)
    assert rejected(seed_inputs / "uImage", Role.DOMAIN_KERNEL, "DOM0_KERNEL") == (
        "DOM0_KERNEL: uImage is a U-Boot legacy image (uImage); give the raw file it wraps "
        "(dumpimage -p 0 -o FILE extracts it)")


def test_uimage_ramdisk_is_rejected_too(seed_inputs: Path) -> None:
    subprocess.run(["mkimage", "-A", "arm64", "-T", "ramdisk", "-C", "none", "-d",
                    "dom0-ramdisk.cpio", "uInitrd"], cwd=seed_inputs, check=True,
                   capture_output=True)
    assert rejected(seed_inputs / "uInitrd", Role.RAMDISK, "DOM0_RAMDISK").startswith(
        "DOM0_RAMDISK: uInitrd is a U-Boot legacy image (uImage); give the raw file")


def test_empty_file_is_rejected(tmp_path: Path) -> None:
    empty = tmp_path / "Image"
    empty.write_bytes(b"")
    assert rejected(empty, Role.DOMAIN_KERNEL, "DOM0_KERNEL") == "DOM0_KERNEL: Image is empty"


def test_tarball_is_not_a_ramdisk(seed_inputs: Path) -> None:
    assert rejected(seed_inputs / "rootfs-domU.tar.gz", Role.RAMDISK, "DOM0_RAMDISK") == (
        "DOM0_RAMDISK: rootfs-domU.tar.gz should be a cpio archive, but it is gzip-compressed data")


def test_kernel_is_not_a_device_tree(seed_inputs: Path) -> None:
    assert rejected(seed_inputs / "Image-dom0", Role.DTB, "DEVICE_TREE") == (
        "DEVICE_TREE: Image-dom0 should be a flattened device tree (DTB), but it is arm64 Image")


def test_gzipped_device_tree_is_rejected(seed_inputs: Path) -> None:
    gz = compress("gzip", seed_inputs / "mpsoc.dtb")
    assert rejected(gz, Role.DTB, "DEVICE_TREE") == (
        "DEVICE_TREE: mpsoc.dtb.gz is gzip-compressed; give the plain DTB (U-Boot's fdt "
        "commands need it uncompressed)")


def test_truncated_gzip_is_reported_as_corrupt(seed_inputs: Path) -> None:
    gz = compress("gzip", seed_inputs / "dom0-ramdisk.cpio")
    gz.write_bytes(gz.read_bytes()[:20])
    assert rejected(gz, Role.RAMDISK, "DOM0_RAMDISK") == (
        "DOM0_RAMDISK: dom0-ramdisk.cpio.gz is gzip-compressed but its data is corrupt or "
        "truncated (truncated gzip input)")
