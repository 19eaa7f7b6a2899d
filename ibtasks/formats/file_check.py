"""What is this file: arm64 Image, zImage, ELF, uImage, cpio, DTB, or any of these compressed.

The seed asked `file(1)`; we read the magic numbers ourselves, through the project's one detector
(`filetype`), which inflates at most its first 64 KiB of a compressed file, in memory.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from ibtasks.errors import UserError
from ibtasks.formats.filetype import (
    ARM64_MAGIC,
    ELF_MAGIC,
    ZIMAGE_MAGIC,
    Head,
    kernel_arch,
    read_head,
)

UIMAGE_MAGIC = 0x27051956
FDT_MAGIC = 0xD00DFEED
SELINUX_MAGIC = 0xF97CFF8C  # little-endian, first word of a FLASK/SELinux policy (file(1))
XILINX_BIT_HEAD = bytes.fromhex("00090ff00ff00ff00ff0000001")  # a Xilinx .bit file's header


class Role(Enum):
    """What a file must be, by what is done with it (the caller chooses the role).

    DOMAIN_KERNEL is a kernel that Xen itself loads for a domain: Xen unpacks gzip and nothing
    else ("only gzip is supported", kernel_decompress in xen/common/device-tree/kernel.c, Xen
    4.17 to 4.20), and a kernel it cannot probe stops the boot; an EXECUTABLE (Xen, a bare-metal
    Linux) is started by U-Boot instead. A DTB is edited or applied by U-Boot's fdt commands and
    must be plain; a PARTIAL_DTB (a domain's passthrough DTB) is only loaded.
    """

    EXECUTABLE = "executable"
    DOMAIN_KERNEL = "domain kernel"
    RAMDISK = "ramdisk"
    DTB = "device tree"
    PARTIAL_DTB = "partial device tree"
    POLICY = "XSM policy"
    BITSTREAM = "bitstream"
    TEXT = "text"


@dataclass(frozen=True)
class FileInfo:
    """A checked input: what it is, its size, and the memory it needs once loaded."""

    kind: str
    size: int
    effective_size: int
    arch: str | None = None  # executables: "arm" or "arm64" when the content tells (filetype)


def classify(head: bytes) -> str:
    """A short name for what `head` starts with."""
    if len(head) >= 4:
        magic = struct.unpack(">I", head[:4])[0]
        if magic == UIMAGE_MAGIC:
            return "uImage"
        if magic == FDT_MAGIC:
            return "DTB"
    if len(head) >= 4 and struct.unpack("<I", head[:4])[0] == SELINUX_MAGIC:
        return "SE Linux policy"
    if head.startswith(XILINX_BIT_HEAD):
        return "Xilinx BIT"
    if head[:4] == ELF_MAGIC:
        return "ELF"
    if head[56:60] == ARM64_MAGIC:
        return "arm64 Image"
    if len(head) >= 40 and struct.unpack("<I", head[36:40])[0] == ZIMAGE_MAGIC:
        return "arm zImage"
    if head[:6] in (b"070701", b"070702", b"070707") or head[:2] in (b"\xc7\x71", b"\x71\xc7"):
        return "cpio"
    if head and _looks_like_text(head):
        return "text"
    return "data"


def _looks_like_text(head: bytes) -> bool:
    sample = head[:4096]
    return all(b in b"\t\n\r" or 0x20 <= b < 0x7F for b in sample)


def effective_size(path: Path, raw_head: bytes, size: int) -> int:
    """Bytes the image occupies once loaded: the header's image size covers the kernel's bss.

    Only an uncompressed image's header can be trusted for this: a gzip'd kernel is unpacked by
    Xen elsewhere, so in the load area it takes just its file size (upstream 8bf401c, Q12).
    """
    if raw_head[56:60] == ARM64_MAGIC:
        image_size = struct.unpack("<Q", raw_head[16:24])[0]
        return max(size, image_size)
    if len(raw_head) >= 48 and struct.unpack("<I", raw_head[36:40])[0] == ZIMAGE_MAGIC:
        start, end = struct.unpack("<II", raw_head[40:48])
        if end > start:
            return max(size, end - start)
    return size


ACCEPTED = {
    Role.EXECUTABLE: {"ELF", "arm64 Image", "arm zImage", "data"},
    Role.DOMAIN_KERNEL: {"ELF", "arm64 Image", "arm zImage", "data"},
    Role.RAMDISK: {"cpio"},
    Role.DTB: {"DTB"},
    Role.PARTIAL_DTB: {"DTB"},
    Role.POLICY: {"SE Linux policy"},  # upstream asks file(1) for "SE Linux policy"
    Role.BITSTREAM: {"Xilinx BIT", "data"},  # upstream: "BIT data"; raw .bin files are data
    Role.TEXT: {"text"},
}


def check_file(path: Path, role: Role, key: str) -> FileInfo:
    """Check that `path` is what `role` needs; raise `UserError` starting with `key` (the name
    the user gave the file, used in messages only) otherwise.

    Compressed files (gzip, xz, lzma, bzip2, zstd, lz4) are judged by what they hold, reading
    at most 64 KiB of it. An executable's architecture is recorded (`FileInfo.arch`); an ELF for
    a machine other than arm or arm64 is refused, and so is a DOMAIN_KERNEL compressed with
    anything but gzip, since Xen unpacks gzip alone. Sizes are in bytes.
    """
    try:
        size = path.stat().st_size
        head = read_head(path)
    except UserError as exc:
        raise UserError(f"{key}: {exc.message}") from exc
    except OSError as exc:
        raise UserError(f"{key}: cannot read {path}: {exc.strerror}") from exc
    if size == 0:
        raise UserError(f"{key}: {path.name} is empty")
    compression = head.compression
    if compression and role in (Role.POLICY, Role.BITSTREAM, Role.TEXT):
        raise UserError(f"{key}: {path.name} is {compression}-compressed; give the plain file "
                        "(it is used as it is)")
    if role is Role.DTB and compression:
        raise UserError(f"{key}: {path.name} is {compression}-compressed; give the plain DTB "
                        "(U-Boot's fdt commands need it uncompressed)")
    kind = classify(head.data)
    if kind == "uImage":
        raise UserError(f"{key}: {path.name} is a U-Boot legacy image (uImage); give the raw "
                        "file it wraps (dumpimage -p 0 -o FILE extracts it)")
    if kind not in ACCEPTED[role]:
        wanted = {Role.EXECUTABLE: "an executable (arm64 Image, zImage or ELF)",
                  Role.DOMAIN_KERNEL: "an executable (arm64 Image, zImage or ELF)",
                  Role.RAMDISK: "a cpio archive", Role.DTB: "a flattened device tree (DTB)",
                  Role.PARTIAL_DTB: "a flattened device tree (DTB)",
                  Role.POLICY: "an XSM policy (SE Linux policy data)",
                  Role.BITSTREAM: "an FPGA bitstream (Xilinx BIT or raw data)",
                  Role.TEXT: "a text file of U-Boot commands"}[role]
        inside = f"{compression}-compressed {kind}" if compression else kind
        raise UserError(f"{key}: {path.name} should be {wanted}, but it is {inside}")
    arch = None
    if role in (Role.EXECUTABLE, Role.DOMAIN_KERNEL):
        if role is Role.DOMAIN_KERNEL:
            _check_xen_can_unpack(head, path, key)
        try:
            arch = kernel_arch(head.data, path.name)
        except UserError as exc:
            raise UserError(f"{key}: {exc.message}") from exc
    label = f"{compression}({kind})" if compression else kind
    return FileInfo(label, size, effective_size(path, head.raw, size), arch)


def _check_xen_can_unpack(head: Head, path: Path, key: str) -> None:
    if head.compression in (None, "gzip"):
        return
    raise UserError(f"{key}: {path.name} is {head.compression}-compressed but Xen unpacks only "
                    f"gzip kernels; give it uncompressed or gzip-compressed")
