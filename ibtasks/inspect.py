"""What is this file: arm64 Image, ELF, uImage, cpio, DTB, gzip'd any of these; and its sizes.

The seed asked `file(1)`; we read the magic numbers ourselves. Compressed files are checked by
decompressing only their first bytes in memory, never into a temporary file.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import struct
import zlib
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from ibtasks.errors import UserError

HEAD_BYTES = 64 * 1024
UIMAGE_MAGIC = 0x27051956
FDT_MAGIC = 0xD00DFEED
ARM64_MAGIC = b"ARM\x64"  # at offset 56 of an arm64 Image (Linux Documentation/arch/arm64/booting)
ZIMAGE_MAGIC = 0x016F2818  # at offset 36 of an arm32 zImage
SELINUX_MAGIC = 0xF97CFF8C  # little-endian, first word of a FLASK/SELinux policy (file(1))
XILINX_BIT_HEAD = bytes.fromhex("00090ff00ff00ff00ff0000001")  # a Xilinx .bit file's header


class Role(Enum):
    """What a config key expects its file to be."""

    EXECUTABLE = "executable"  # Xen and kernels
    RAMDISK = "ramdisk"
    DTB = "device tree"
    POLICY = "XSM policy"
    BITSTREAM = "bitstream"
    TEXT = "text"


@dataclass(frozen=True)
class FileInfo:
    """A checked input: what it is, its size, and the memory it needs once loaded."""

    kind: str
    size: int
    effective_size: int


def read_head(path: Path) -> tuple[bytes, str | None]:
    """The first bytes of `path`, decompressed if it is gzip, xz or bzip2; and the compression."""
    with open(path, "rb") as f:
        raw = f.read(HEAD_BYTES)
    if raw[:2] == b"\x1f\x8b":
        return _decompress_head(path, gzip.open, "gzip"), "gzip"
    if raw[:6] == b"\xfd7zXZ\x00":
        return _decompress_head(path, lzma.open, "xz"), "xz"
    if raw[:3] == b"BZh":
        return _decompress_head(path, bz2.open, "bzip2"), "bzip2"
    return raw, None


def _decompress_head(path: Path, opener: object, name: str) -> bytes:
    try:
        with opener(path, "rb") as f:  # type: ignore[operator]
            return f.read(HEAD_BYTES)  # type: ignore[no-any-return]
    except (OSError, EOFError, lzma.LZMAError, zlib.error) as exc:
        raise UserError(f"{path.name}: corrupt {name} data ({exc})") from exc


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
    if head[:4] == b"\x7fELF":
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
    Role.RAMDISK: {"cpio"},
    Role.DTB: {"DTB"},
    Role.POLICY: {"SE Linux policy"},  # upstream asks file(1) for "SE Linux policy"
    Role.BITSTREAM: {"Xilinx BIT", "data"},  # upstream: "BIT data"; raw .bin files are data
    Role.TEXT: {"text"},
}


def check_file(path: Path, role: Role, key: str) -> FileInfo:
    """Check that `path` is what `key` needs; raise `UserError` naming the key otherwise."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            raw_head = f.read(HEAD_BYTES)
        head, compression = read_head(path)
    except UserError as exc:
        raise UserError(f"{key}: {exc.message}") from exc
    except OSError as exc:
        raise UserError(f"{key}: cannot read {path}: {exc.strerror}") from exc
    if size == 0:
        raise UserError(f"{key}: {path.name} is empty")
    if compression and role in (Role.POLICY, Role.BITSTREAM, Role.TEXT):
        raise UserError(f"{key}: {path.name} is {compression}-compressed; give the plain file "
                        "(it is used as it is)")
    if role is Role.DTB and compression and not key.startswith("DOMU_"):
        raise UserError(f"{key}: {path.name} is {compression}-compressed; give the plain DTB "
                        "(U-Boot's fdt commands need it uncompressed)")
    kind = classify(head)
    if kind == "uImage":
        raise UserError(f"{key}: {path.name} is a U-Boot legacy image (uImage); give the raw "
                        "file it wraps (dumpimage -p 0 -o FILE extracts it)")
    if kind not in ACCEPTED[role]:
        wanted = {Role.EXECUTABLE: "an executable (arm64 Image, zImage or ELF)",
                  Role.RAMDISK: "a cpio archive", Role.DTB: "a flattened device tree (DTB)",
                  Role.POLICY: "an XSM policy (SE Linux policy data)",
                  Role.BITSTREAM: "an FPGA bitstream (Xilinx BIT or raw data)",
                  Role.TEXT: "a text file of U-Boot commands"}[role]
        inside = f"{compression}-compressed {kind}" if compression else kind
        raise UserError(f"{key}: {path.name} should be {wanted}, but it is {inside}")
    label = f"{compression}({kind})" if compression else kind
    return FileInfo(label, size, effective_size(path, raw_head, size))
