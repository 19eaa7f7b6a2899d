"""Tiny synthetic kernels and compressed files for the file-type and architecture tests.

Headers follow Linux Documentation/arch/arm64/booting.rst (Image), arch/arm/booting.rst (zImage)
and the ELF gABI; compressed files are made by the real tools (zstd, lz4, xz, lzma, bzip2,
gzip) or, where a test needs exact bytes, written here from the format's specification.
"""

from __future__ import annotations

import gzip
import struct
import subprocess
from pathlib import Path

MiB = 1024 * 1024


def arm64_image(size: int, image_size: int = 0, tag: str = "arm64-image.") -> bytes:
    """An arm64 Image: 64-byte header, `image_size` (bss included) at 16, magic at 0x38."""
    head = struct.pack("<IIQQQQQQII", 0x14000010, 0, 0, image_size, 0, 0, 0, 0, 0x644D5241, 0)
    return head + (tag.encode() * (size // len(tag) + 1))[: size - len(head)]


def zimage(size: int, tag: str = "zimage.") -> bytes:
    """An arm32 zImage: 8 NOPs and a branch, magic 0x016F2818 at 0x24, start/end at 0x28/0x2c."""
    head = struct.pack("<9I", *([0xE1A00000] * 8 + [0xEA000003]))
    head += struct.pack("<III", 0x016F2818, 0, size)
    return head + (tag.encode() * (size // len(tag) + 1))[: size - len(head)]


def with_efi_stub(path: Path) -> Path:
    """Give the kernel at `path` the PE/COFF DOS header ("MZ" at 0) that an EFI stub starts
    with, as `bootefi` needs; the size and the Image magic at 0x38 stay."""
    data = bytearray(path.read_bytes())
    data[:2] = b"MZ"
    path.write_bytes(bytes(data))
    return path


def elf(machine: int, bits: int = 64, big_endian: bool = False, size: int = 4096) -> bytes:
    """An ELF executable header (e_type ET_EXEC) for `machine`, padded with zeros to `size`."""
    order = ">" if big_endian else "<"
    ident = b"\x7fELF" + bytes([2 if bits == 64 else 1, 2 if big_endian else 1, 1]) + bytes(9)
    if bits == 64:
        rest = struct.pack(f"{order}HHIQQQIHHHHHH", 2, machine, 1, 0x1000, 0, 0, 0, 64, 0, 0,
                           0, 0, 0)
    else:
        rest = struct.pack(f"{order}HHIIIIIHHHHHH", 2, machine, 1, 0x1000, 0, 0, 0, 52, 0, 0,
                           0, 0, 0)
    head = ident + rest
    return head + bytes(size - len(head))


def newc_cpio(files: dict[str, bytes]) -> bytes:
    """A newc cpio archive (what initramfs images are) of regular files, with its trailer."""
    out = bytearray()
    for ino, (name, data) in enumerate([*files.items(), ("TRAILER!!!", b"")], start=1):
        mode = 0o100644 if data or name != "TRAILER!!!" else 0
        fields = [ino if mode else 0, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0,
                  len(name) + 1, 0]
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        out += header + name.encode() + b"\0"
        out += bytes(-len(out) % 4) + data + bytes(-len(data) % 4)
    return bytes(out)


def compress(tool: str, data: bytes) -> bytes:
    """`data` compressed by a real tool: gzip, xz, lzma, bzip2, zstd, lz4 or lz4-legacy."""
    argv = {"gzip": ["gzip", "-n", "-c"], "xz": ["xz", "-c"], "lzma": ["lzma", "-c"],
            "bzip2": ["bzip2", "-c"], "zstd": ["zstd", "-q", "-c"],
            "lz4": ["lz4", "-q", "-c"], "lz4-legacy": ["lz4", "-l", "-q", "-c"]}[tool]
    return subprocess.run(argv, input=data, capture_output=True, check=True).stdout


def zstd_raw_frame(data: bytes) -> bytes:
    """A zstd frame of raw (stored) blocks, written from RFC 8878: no content size, a 1 MiB
    window, blocks of at most 128 KiB."""
    out = bytearray(struct.pack("<I", 0xFD2FB528)) + bytes([0x00, 0x50])
    chunk = 128 * 1024
    for pos in range(0, max(len(data), 1), chunk):
        piece = data[pos:pos + chunk]
        last = pos + chunk >= len(data)
        out += struct.pack("<I", (len(piece) << 3) | int(last))[:3] + piece  # Raw_Block
    return bytes(out)


def zstd_bomb(inflated: int) -> bytes:
    """A zstd frame of RLE blocks (4 bytes each for 128 KiB of zeros) inflating to `inflated`
    bytes, a multiple of 128 KiB: 4 GiB take 128 KiB."""
    block = 128 * 1024
    count = inflated // block
    header = bytes([0x00, 0x50])  # no content size, 1 MiB window: nothing announces the size
    rle = struct.pack("<I", (block << 3) | (1 << 1))[:3] + b"\0"  # RLE_Block, not last
    last = struct.pack("<I", (block << 3) | (1 << 1) | 1)[:3] + b"\0"
    return struct.pack("<I", 0xFD2FB528) + header + rle * (count - 1) + last


def lz4_legacy_bomb(inflated: int) -> bytes:
    """A legacy lz4 stream (magic 0x184C2102, the kernel's format) of 8 MiB blocks of zeros,
    each compressed once by the lz4 tool and repeated: `inflated` is a multiple of 8 MiB."""
    block = 8 * MiB
    one = compress("lz4-legacy", bytes(block))
    (size,) = struct.unpack_from("<I", one, 4)
    frame = one[4:8 + size]  # the block's size field and its data
    return one[:4] + frame * (inflated // block)


def gzip_bomb(inflated: int) -> bytes:
    """A multi-member gzip file: 64 MiB of zeros compressed once, repeated to `inflated`."""
    member = gzip.compress(bytes(64 * MiB), compresslevel=9, mtime=0)
    return member * (inflated // (64 * MiB))


def write(path: Path, data: bytes) -> Path:
    """Write `data` to `path` (making its directory) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
