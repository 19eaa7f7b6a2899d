"""The one file-type detector: every compression distributions ship is read for its type by
content, in memory and bounded, and the binary checks and the rootfs reader agree.

Compressed files are made by the real tools (zstd, lz4, xz, lzma, bzip2, gzip) or written from
the format's specification (tests/kernelfiles.py); each accepted one is also read back by its
own tool (`zstd -dc`, `lz4 -dc`, ...) piped into `cpio -t`, so what we call a cpio is one.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from ibtasks.errors import UserError
from ibtasks.formats.file_check import FileInfo, Role, check_file
from ibtasks.formats.filetype import COMPRESSIONS, HEAD_BYTES, detect_compression, read_head
from tests.kernelfiles import (
    MiB,
    arm64_image,
    compress,
    gzip_bomb,
    lz4_legacy_bomb,
    newc_cpio,
    write,
    zstd_bomb,
    zstd_raw_frame,
)

INITRAMFS = newc_cpio({"init": b"#!/bin/sh\necho initramfs\n", "conf/initramfs.conf":
                       b"MODULES=most\n", "scripts/functions": b"m" * 400_000})
TOOLS = ("gzip", "xz", "lzma", "bzip2", "zstd", "lz4", "lz4-legacy")
DECOMPRESS = {"gzip": ["gzip", "-dc"], "xz": ["xz", "-dc"], "lzma": ["lzma", "-dc"],
              "bzip2": ["bzip2", "-dc"], "zstd": ["zstd", "-dc"], "lz4": ["lz4", "-dc"],
              "lz4-legacy": ["lz4", "-dc"]}


def cpio_lists(path: Path, tool: str) -> list[str]:
    """What `cpio -t` lists of `path` inflated by the compression's own tool."""
    data = subprocess.run([*DECOMPRESS[tool], str(path)], capture_output=True,
                          check=True).stdout
    return subprocess.run(["cpio", "-t", "--quiet"], input=data, capture_output=True,
                          check=True).stdout.decode().split()


def rejected(path: Path, role: Role, key: str) -> str:
    with pytest.raises(UserError) as info:
        check_file(path, role, key)
    return info.value.message


# ---- every compression is read for its type ---------------------------------------------------

@pytest.mark.parametrize("tool", TOOLS)
def test_initramfs_compressed_by_each_distribution_format_is_a_ramdisk(tmp_path: Path,
                                                                       tool: str) -> None:
    initrd = write(tmp_path / "initrd.img", compress(tool, INITRAMFS))
    assert cpio_lists(initrd, tool) == ["init", "conf/initramfs.conf", "scripts/functions"]
    name = "lz4" if tool == "lz4-legacy" else tool
    size = initrd.stat().st_size
    assert check_file(initrd, Role.RAMDISK, "DOM0_RAMDISK") == FileInfo(f"{name}(cpio)", size,
                                                                        size)


def test_legacy_lz4_is_the_format_the_kernel_writes(tmp_path: Path) -> None:
    data = compress("lz4-legacy", INITRAMFS)
    assert data[:4] == bytes.fromhex("02214c18")  # magic 0x184C2102, little-endian
    assert detect_compression(data) == "lz4"
    assert read_head(write(tmp_path / "initrd.img", data)).data == INITRAMFS[:HEAD_BYTES]


def test_zstd_frame_of_stored_blocks_written_by_hand_is_a_ramdisk(tmp_path: Path) -> None:
    initrd = write(tmp_path / "initrd.img", zstd_raw_frame(INITRAMFS))
    assert cpio_lists(initrd, "zstd") == ["init", "conf/initramfs.conf", "scripts/functions"]
    size = initrd.stat().st_size
    assert size == len(INITRAMFS) + 6 + 3 * (len(INITRAMFS) // (128 * 1024) + 1)
    assert check_file(initrd, Role.RAMDISK, "DOM0_RAMDISK") == FileInfo("zstd(cpio)", size, size)


def test_multi_member_gzip_is_read_across_its_members(tmp_path: Path) -> None:
    # The cpio magic "070701" is split between the first two members.
    data = b"".join(gzip.compress(part, mtime=0)
                    for part in (INITRAMFS[:3], INITRAMFS[3:10], INITRAMFS[10:]))
    initrd = write(tmp_path / "initrd.img", data)
    assert cpio_lists(initrd, "gzip") == ["init", "conf/initramfs.conf", "scripts/functions"]
    assert check_file(initrd, Role.RAMDISK, "DOM0_RAMDISK").kind == "gzip(cpio)"


@pytest.mark.parametrize("tool", ["zstd", "lz4", "lz4-legacy", "lzma"])
def test_compressed_kernel_that_holds_an_image_is_seen_through(tmp_path: Path, tool: str) -> None:
    kernel = write(tmp_path / "Image.z", compress(tool, arm64_image(300_000, 2 * MiB)))
    info = check_file(kernel, Role.EXECUTABLE, "XEN")
    name = "lz4" if tool == "lz4-legacy" else tool
    # As gzip: the file size, since the header's image_size is the unpacked kernel's.
    assert (info.kind, info.effective_size, info.arch) == (f"{name}(arm64 Image)",
                                                           kernel.stat().st_size, "arm64")


def test_raw_binary_starting_like_lzma_is_plain_data(tmp_path: Path) -> None:
    # 5D 00 00 is all of .lzma's magic; libarchive's stricter check decides it is not one.
    blob = write(tmp_path / "firmware.bin", b"\x5d\x00\x00" + bytes([0xA5]) * 4093)
    assert detect_compression(blob.read_bytes()) == "lzma"
    assert read_head(blob).compression is None
    assert check_file(blob, Role.BITSTREAM, "BITSTREAM") == FileInfo("data", 4096, 4096)


# ---- errors name the compression --------------------------------------------------------------

@pytest.mark.parametrize("tool", ["zstd", "lz4", "xz", "gzip"])
def test_truncated_compressed_ramdisk_is_reported_with_its_compression(tmp_path: Path,
                                                                       tool: str) -> None:
    data = compress(tool, INITRAMFS)
    initrd = write(tmp_path / "initrd.img", data[: len(data) // 50])
    message = rejected(initrd, Role.RAMDISK, "DOM0_RAMDISK")
    assert message.startswith(f"DOM0_RAMDISK: initrd.img is {tool}-compressed but its data is "
                              "corrupt or truncated (")


def test_zstd_frame_with_a_reserved_block_type_is_corrupt(tmp_path: Path) -> None:
    frame = bytearray(zstd_raw_frame(b"070701" + bytes(100)))
    frame[6] |= 0b110  # Block_Type 3: reserved
    initrd = write(tmp_path / "initrd.img", bytes(frame))
    assert rejected(initrd, Role.RAMDISK, "DOM0_RAMDISK").startswith(
        "DOM0_RAMDISK: initrd.img is zstd-compressed but its data is corrupt or truncated (")


@pytest.mark.parametrize(("name", "data"), [
    ("gzip", b"\x1f\x8b\x09\x00" + bytes(60)),  # compression method 9: not deflate (RFC 1952)
    ("lz4", b"\x04\x22\x4d\x18\x00" + bytes(60)),  # frame descriptor version 0, not 01
])
def test_compressed_file_whose_header_is_broken_names_its_compression(tmp_path: Path, name: str,
                                                                      data: bytes) -> None:
    initrd = write(tmp_path / "initrd.img", data)
    assert rejected(initrd, Role.RAMDISK, "DOM0_RAMDISK") == (
        f"DOM0_RAMDISK: initrd.img is {name}-compressed but its header is corrupt")


@pytest.mark.parametrize("tool", ["zstd", "lz4", "bzip2"])
def test_compressed_file_that_holds_nothing_says_so(tmp_path: Path, tool: str) -> None:
    initrd = write(tmp_path / "initrd.img", compress(tool, b""))
    assert rejected(initrd, Role.RAMDISK, "DOM0_RAMDISK") == (
        f"DOM0_RAMDISK: initrd.img is {tool}-compressed but holds no data")


def test_zstd_file_of_text_is_named_zstd_not_data(tmp_path: Path) -> None:
    initrd = write(tmp_path / "initrd.img", compress("zstd", b"not an initramfs\n" * 100))
    assert rejected(initrd, Role.RAMDISK, "DOM0_RAMDISK") == (
        "DOM0_RAMDISK: initrd.img should be a cpio archive, but it is zstd-compressed text")


# ---- kernels Xen loads: gzip only -------------------------------------------------------------

@pytest.mark.parametrize("key", ["DOM0_KERNEL", "DOMU_KERNEL[2]"])
@pytest.mark.parametrize("tool", ["zstd", "lz4", "xz", "bzip2"])
def test_kernel_xen_loads_compressed_with_other_than_gzip_is_refused(tmp_path: Path, key: str,
                                                                     tool: str) -> None:
    vmlinuz = write(tmp_path / "vmlinuz", compress(tool, arm64_image(200_000)))
    name = "lz4" if tool == "lz4-legacy" else tool
    assert rejected(vmlinuz, Role.DOMAIN_KERNEL, key) == (
        f"{key}: vmlinuz is {name}-compressed but Xen unpacks only gzip kernels; give it "
        "uncompressed or gzip-compressed")


@pytest.mark.parametrize("key", ["DOM0_KERNEL", "DOMU_KERNEL[0]"])
def test_gzip_kernel_xen_loads_is_still_accepted(tmp_path: Path, key: str) -> None:
    vmlinuz = write(tmp_path / "vmlinuz", compress("gzip", arm64_image(200_000)))
    assert check_file(vmlinuz, Role.DOMAIN_KERNEL, key).kind == "gzip(arm64 Image)"


# ---- one detector for the checks and the rootfs reader ----------------------------------------

def test_rootfs_reader_names_every_compression_the_checks_know() -> None:
    from ibtasks.formats.archive import UNSUPPORTED

    assert UNSUPPORTED == ("not a cpio or tar archive (gzip, xz, lzma, bzip2, zstd and lz4 "
                           "compression are supported)")
    assert set(COMPRESSIONS) == {"gzip", "xz", "lzma", "bzip2", "zstd", "lz4"}


@pytest.mark.parametrize("tool", TOOLS)
def test_libarchive_reads_each_compression_with_the_filter_the_detector_names(
        tmp_path: Path, tool: str) -> None:
    import libarchive

    data = compress(tool, INITRAMFS)
    name = detect_compression(data)
    assert name is not None
    with libarchive.memory_reader(data, "cpio", name) as reader:
        assert [f.decode() for f in reader.filter_names] == [name]
        assert [entry.pathname for entry in reader] == ["init", "conf/initramfs.conf",
                                                        "scripts/functions"]


# ---- bounded: a bomb costs no more than any file ----------------------------------------------

MEASURE = r"""
import json, sys, time
from pathlib import Path
from ibtasks.errors import UserError
from ibtasks.formats.file_check import Role, check_file
start = time.process_time()
try:
    said = check_file(Path(sys.argv[1]), Role.RAMDISK, "DOM0_RAMDISK").kind
except UserError as exc:
    said = exc.message
cpu = time.process_time() - start
# VmHWM is this process's own peak (ru_maxrss keeps the parent's peak across exec).
status = Path("/proc/self/status").read_text()
rss = int(next(l for l in status.splitlines() if l.startswith("VmHWM:")).split()[1]) * 1024
print(json.dumps({"said": said, "cpu": cpu, "rss": rss}))
"""


@pytest.mark.parametrize(("name", "bomb", "inflated"), [
    ("zstd", zstd_bomb, 16 * 1024 * MiB),
    ("lz4", lz4_legacy_bomb, 4 * 1024 * MiB),
    ("gzip", gzip_bomb, 4 * 1024 * MiB),
])
def test_small_file_that_inflates_to_gigabytes_is_checked_in_bounded_memory_and_time(
        tmp_path: Path, name: str, bomb: Callable[[int], bytes], inflated: int) -> None:
    path = write(tmp_path / "initrd.img", bomb(inflated))
    assert path.stat().st_size < inflated // 200
    done = subprocess.run([sys.executable, "-c", MEASURE, str(path)], capture_output=True,
                          text=True, check=True)
    measured = json.loads(done.stdout)
    # Zeros are not a cpio: the check read them, and no more than it needed.
    assert measured["said"] == ("DOM0_RAMDISK: initrd.img should be a cpio archive, but it is "
                                f"{name}-compressed data")
    assert measured["rss"] < 50 * MiB
    assert measured["cpu"] < 1.0  # inflating it all takes seconds of CPU for each of them


# ---- through the CLI: a distribution's zstd initramfs for dom0 ---------------------------------

ZSTD_INITRD_CONFIG = """\
MEMORY_START="0x40000000"
MEMORY_END="0xC0000000"
DEVICE_TREE="virt.dtb"
XEN="xen"
XEN_CMD="console=dtuart dom0_mem=1024M"
DOM0_KERNEL="vmlinuz"
DOM0_RAMDISK="initrd.img"
DOM0_CMD="console=hvc0 root=/dev/vda2 rootwait"
NUM_DOMUS=1
DOMU_KERNEL[0]="Image-domU"
DOMU_MEM[0]=256
"""


def fdtget(dtb: Path, node: str, prop: str, kind: str = "s") -> str:
    return subprocess.run(["fdtget", "-t", kind, str(dtb), node, prop], check=True,
                          capture_output=True, text=True).stdout.strip()


@pytest.mark.parametrize("make", ["raw-blocks", "zstd", "lz4-legacy", "lz4"])
def test_dom0_boots_the_distribution_initramfs_whatever_its_compression(
        tmp_path: Path, make: str) -> None:
    from tests.conftest import run_ibtasks

    write(tmp_path / "xen", arm64_image(3_000_000))  # 0x40400000 .. 0x406DC6C0
    write(tmp_path / "vmlinuz", arm64_image(5_000_000, 6 * MiB))  # 0x40800000, bss to 0x40E00000
    write(tmp_path / "Image-domU", arm64_image(4 * MiB))
    dts = tmp_path / "virt.dts"
    dts.write_text("/dts-v1/;\n/ { #address-cells = <2>; #size-cells = <2>; chosen { };\n"
                   "memory@40000000 { device_type = \"memory\"; reg = <0 0x40000000 0 0x80000000>;"
                   " }; };\n")
    subprocess.run(["dtc", "-q", "-I", "dts", "-O", "dtb", "-o", str(tmp_path / "virt.dtb"),
                    str(dts)], check=True)
    data = zstd_raw_frame(INITRAMFS) if make == "raw-blocks" else compress(make, INITRAMFS)
    initrd = write(tmp_path / "initrd.img", data)
    (tmp_path / "config").write_text(ZSTD_INITRD_CONFIG)
    result = run_ibtasks("uboot-script-gen", "-c", "config", "-d", ".", "-t", "virtio",
                         cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    size = initrd.stat().st_size
    domu = 0x40E00000 + -(-size // (2 * MiB)) * 2 * MiB
    lines = (tmp_path / "boot.source").read_text().splitlines()
    assert lines[:4] == ["load virtio 0:1 0x40400000 xen", "load virtio 0:1 0x40800000 vmlinuz",
                         "load virtio 0:1 0x40E00000 initrd.img",
                         f"load virtio 0:1 {domu:#X} Image-domU".replace("0X", "0x")]
    dtb = tmp_path / "boot.dtb"
    node = "/chosen/dom0-ramdisk@40E00000"
    assert fdtget(dtb, node, "reg", "x") == f"0 40e00000 0 {size:x}"
    assert fdtget(dtb, node, "compatible").split()[0] == "xen,linux-initrd"
    assert fdtget(dtb, "/chosen", "xen,dom0-bootargs") == "console=hvc0 root=/dev/vda2 rootwait"
