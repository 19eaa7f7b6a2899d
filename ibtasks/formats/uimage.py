"""U-Boot legacy images (include/image.h): boot.scr and kernel images (xen.ub), built and parsed.

Byte for byte what `mkimage -A arm|arm64 -T script|kernel -C none -a ADDR -e ADDR -d SRC` writes
at the same timestamp: a 64-byte big-endian header, then the payload (for a script, a table of
image lengths ended by 0 precedes the script text).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

MAGIC = 0x27051956
HEADER = struct.Struct(">IIIIIIIBBBB32s")
OS_LINUX = 5
ARCH_ARM = 2  # IH_ARCH_ARM: an arm32 U-Boot's bootm boots only these
ARCH_ARM64 = 22  # IH_ARCH_ARM64
IH_ARCH = {"arm": ARCH_ARM, "arm64": ARCH_ARM64}
"""image.h's IH_ARCH_* numbers by the architecture names `filetype` and FIT use."""
TYPE_KERNEL = 2
TYPE_SCRIPT = 6
COMP_NONE = 0


@dataclass(frozen=True)
class ScriptImage:
    """The fields of a script image that we set."""

    script: bytes
    load: int
    timestamp: int
    name: bytes = b""


def build_script_image(image: ScriptImage) -> bytes:
    """A legacy script image: a legacy image whose payload is a length table, then the script.

    Always marked arm64, as the original's `mkimage -A arm64 -T script`: U-Boot's `source`
    checks a script image's magic, CRCs and type but not its architecture (image_source_script,
    U-Boot), so an arm32 U-Boot runs it too (see tests/formats/test_arch.py).
    """
    data = struct.pack(">II", len(image.script), 0) + image.script
    return build_legacy_image(LegacyImage(data, image.load, image.load, image.timestamp,
                                          TYPE_SCRIPT, image.name))


def parse_script_image(blob: bytes) -> ScriptImage:
    """Read back a script image built by us or mkimage; ValueError if it is not one."""
    image = parse_legacy_image(blob)
    if image.kind != TYPE_SCRIPT:
        raise ValueError(f"image type {image.kind} is not a script")
    (length,) = struct.unpack_from(">I", image.data)
    return ScriptImage(image.data[8:8 + length], image.load, image.timestamp, image.name)


@dataclass(frozen=True)
class LegacyImage:
    """A single-file legacy image: `kind` is an image.h type (TYPE_KERNEL), `data` its payload."""

    data: bytes
    load: int
    entry: int
    timestamp: int
    kind: int = TYPE_KERNEL
    name: bytes = b""
    arch: str = "arm64"  # "arm" or "arm64" (IH_ARCH): bootm refuses another arch than U-Boot's


def build_legacy_image(image: LegacyImage) -> bytes:
    """The header and payload `mkimage -A ARCH -T kernel -C none` writes (32-bit addresses)."""
    load, entry = image.load & 0xFFFFFFFF, image.entry & 0xFFFFFFFF

    def header(header_crc: int) -> bytes:
        return HEADER.pack(MAGIC, header_crc, image.timestamp & 0xFFFFFFFF, len(image.data),
                           load, entry, zlib.crc32(image.data), OS_LINUX, IH_ARCH[image.arch],
                           image.kind, COMP_NONE, image.name.ljust(32, b"\0")[:32])

    return header(zlib.crc32(header(0))) + image.data


def parse_legacy_image(blob: bytes) -> LegacyImage:
    """Read back a single-file legacy image; ValueError if it is not one or is corrupt."""
    if len(blob) < HEADER.size:
        raise ValueError("shorter than a uImage header")
    (magic, hcrc, timestamp, size, load, entry, dcrc, _os, arch, kind, _comp,
     name) = HEADER.unpack_from(blob)
    if magic != MAGIC:
        raise ValueError(f"bad magic {magic:#x}")
    if zlib.crc32(blob[:4] + b"\0\0\0\0" + blob[8:HEADER.size]) != hcrc:
        raise ValueError("header CRC mismatch")
    data = blob[HEADER.size:HEADER.size + size]
    if len(data) != size or zlib.crc32(data) != dcrc:
        raise ValueError("data CRC mismatch")
    names = {number: name for name, number in IH_ARCH.items()}
    if arch not in names:
        raise ValueError(f"architecture {arch} is neither arm ({ARCH_ARM}) nor arm64 "
                         f"({ARCH_ARM64})")
    return LegacyImage(data, load, entry, timestamp, kind, name.rstrip(b"\0"), names[arch])
