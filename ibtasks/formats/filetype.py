"""What a file is by its content: its compression, what it holds, and a kernel's architecture.

The one detector of the project: the input checks (`file_check`, which judges a file against
the role it plays), the rootfs archive reader
(`archive`, which hands the same filter name to libarchive) and the architecture written into
wrapped images (`<XEN>.ub`, FIT) all ask it, so they cannot disagree. Compressed data is inflated
by libarchive (which `archive` extracts with), bounded: at most `HEAD_BYTES` come out, so a small
file that inflates to gigabytes costs no more memory or time than any other.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ibtasks.errors import UserError

HEAD_BYTES = 64 * 1024
"""Bytes read (after inflating) to tell a file's type: far more than any header we look at."""

COMPRESSIONS = ("gzip", "xz", "lzma", "bzip2", "zstd", "lz4")
"""Every compression we detect, by libarchive's filter names (what messages say too)."""

# Magic numbers at the start of a compressed stream (RFC 1952 gzip, the xz file format, bzip2's
# "BZh" and block size digit, RFC 8878 zstd frames, lz4 frames and the legacy lz4 format that
# the kernel's build writes (`lz4 -l`), and the .lzma header file(1) knows: properties 0x5D,
# then the low bytes of a dictionary size).
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x1f\x8b", "gzip"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\x04\x22\x4d\x18", "lz4"),  # lz4 frame
    (b"\x02\x21\x4c\x18", "lz4"),  # legacy lz4, magic 0x184C2102
    (b"\x5d\x00\x00", "lzma"),
)
# The .lzma magic is weak (three bytes a raw binary may start with): a file is lzma only when
# libarchive's stricter check of the header agrees; otherwise it is taken as uncompressed.
_WEAK_MAGIC = frozenset({"lzma"})

ARCH_ARM = "arm"
ARCH_ARM64 = "arm64"
"""Architectures by FIT's names (U-Boot boot/image.c); uimage.py maps them to IH_ARCH."""

# Linux Documentation/arch/arm64/booting.rst and arch/arm/booting.rst:
ARM64_MAGIC = b"ARM\x64"  # at offset 0x38 of an arm64 Image
ZIMAGE_MAGIC = 0x016F2818  # at offset 0x24 of an arm32 zImage
ELF_MAGIC = b"\x7fELF"
EM_ARM = 40
EM_AARCH64 = 183
# e_machine values users may meet by mistake (the ELF gABI's list), for the error message.
_ELF_MACHINES = {3: "x86", 8: "MIPS", 20: "PowerPC", 21: "PowerPC64", 22: "s390",
                 50: "IA-64", 62: "x86-64", 243: "RISC-V", 258: "LoongArch"}


@dataclass(frozen=True)
class Head:
    """The start of a file: `raw` as stored, `data` inflated when `compression` is set.

    Both hold at most HEAD_BYTES. `compression` is a name from COMPRESSIONS or None.
    """

    raw: bytes
    data: bytes
    compression: str | None


def detect_compression(raw: bytes) -> str | None:
    """The compression whose magic number `raw` (a file's first bytes) starts with, or None.

    For `.lzma` files this is a first guess: `read_head` confirms it with libarchive.
    """
    if raw[:3] == b"BZh" and raw[3:4].isdigit() and raw[3:4] != b"0":
        return "bzip2"
    for magic, name in _MAGIC:
        if raw.startswith(magic):
            return name
    return None


def read_head(path: Path) -> Head:
    """The first HEAD_BYTES of `path` as stored and, if compressed, as inflated.

    Raises UserError (message `NAME is zstd-compressed but ...`, no key: the caller adds it)
    when the compressed data cannot be read, and OSError when the file cannot.
    """
    with open(path, "rb") as f:
        raw = f.read(HEAD_BYTES)
    return _head(raw, path.name, lambda lib, name: lib.file_reader(str(path), "raw", name))


def head_of_bytes(data: bytes, name: str) -> Head:
    """As `read_head`, for a file already in memory (`name` is used in messages)."""
    return _head(data[:HEAD_BYTES], name, lambda lib, filt: lib.memory_reader(data, "raw", filt))


Opener = Callable[[Any, str], AbstractContextManager[Any]]


def _head(raw: bytes, name: str, opener: Opener) -> Head:
    compression = detect_compression(raw)
    if compression is None:
        return Head(raw, raw, None)
    data = _inflate(opener, compression, name)
    if data is None:  # a weak magic that libarchive does not take for its format
        return Head(raw, raw, None)
    return Head(raw, data, compression)


def _inflate(opener: Opener, compression: str, name: str) -> bytes | None:
    """At most HEAD_BYTES of the inflated data; None when libarchive does not see `compression`."""
    try:
        import libarchive
        from libarchive.exception import ArchiveError
    except (ImportError, OSError) as exc:
        raise UserError(f"{name} is {compression}-compressed but libarchive, which reads it, "
                        f"cannot be loaded (install libarchive13 and libarchive-c): {exc}") from exc
    try:
        with opener(libarchive, compression) as reader:
            if [_text(f) for f in reader.filter_names] != [compression]:
                if compression in _WEAK_MAGIC:
                    return None
                raise UserError(f"{name} is {compression}-compressed but its header is corrupt")
            return _first_bytes(reader)
    except ArchiveError as exc:
        reason = _archive_message(exc)
        if reason.startswith("Unrecognized archive format"):
            # libarchive's raw reader finds no byte after the filter: nothing inside.
            raise UserError(f"{name} is {compression}-compressed but holds no data") from exc
        raise UserError(f"{name} is {compression}-compressed but its data is corrupt or "
                        f"truncated ({reason})") from exc


def _first_bytes(reader: Iterable[Any]) -> bytes:
    out = bytearray()
    for entry in reader:  # the raw format has one entry: the whole inflated stream
        blocks: Iterator[bytes] = entry.get_blocks(HEAD_BYTES)
        for block in blocks:
            out += block
            if len(out) >= HEAD_BYTES:
                break
        break
    return bytes(out[:HEAD_BYTES])


def _text(value: bytes | str) -> str:
    """A libarchive name as text (libarchive-c hands out bytes)."""
    return value.decode() if isinstance(value, bytes) else value


def _archive_message(exc: Exception) -> str:
    msg = getattr(exc, "msg", None) or str(exc)
    return _text(msg).strip().rstrip(".")


def elf_machine(data: bytes) -> int | None:
    """An ELF file's e_machine (read in its own byte order), None when `data` is not ELF."""
    if not data.startswith(ELF_MAGIC) or len(data) < 20:
        return None
    order = ">" if data[5] == 2 else "<"  # EI_DATA: 2 = ELFDATA2MSB
    return int(struct.unpack_from(f"{order}H", data, 18)[0])


def kernel_arch(data: bytes, name: str) -> str | None:
    """ARCH_ARM or ARCH_ARM64 for a kernel's first bytes (inflated), None when they do not say.

    An arm64 Image (magic "ARM\\x64" at 0x38) is arm64, an arm32 zImage (0x016F2818 at 0x24)
    is arm, an ELF is what its e_machine says (EM_ARM 40, EM_AARCH64 183). An ELF for another
    machine raises UserError naming `name`: Xen on Arm boots neither it nor it as a guest.
    Raw data (a `data` kernel, as the original's `file` check allowed) gives None.
    """
    machine = elf_machine(data)
    if machine is not None:
        if machine == EM_AARCH64:
            return ARCH_ARM64
        if machine == EM_ARM:
            return ARCH_ARM
        what = _ELF_MACHINES.get(machine, "another machine")
        raise UserError(f"{name} is an ELF for {what} (e_machine {machine}); Xen on Arm boots "
                        f"arm (EM_ARM {EM_ARM}) and arm64 (EM_AARCH64 {EM_AARCH64}) binaries")
    if data[0x38:0x3C] == ARM64_MAGIC:
        return ARCH_ARM64
    if len(data) >= 0x28 and struct.unpack_from("<I", data, 0x24)[0] == ZIMAGE_MAGIC:
        return ARCH_ARM
    return None


def choose_arch(own: str | None, others: Iterable[str | None]) -> str:
    """The architecture to mark a wrapped kernel with (uImage, FIT), from what the files say.

    Its own when its content tells (`kernel_arch`). Otherwise the config's other kernels decide:
    arm64 when any is arm64 (an arm64 guest needs an arm64 Xen), arm when they are all arm (an
    arm Xen runs only arm guests), and arm64 when none tells: the original's only choice.
    """
    if own is not None:
        return own
    known = {arch for arch in others if arch is not None}
    if known == {ARCH_ARM}:
        return ARCH_ARM
    return ARCH_ARM64
