"""The synthetic boot inputs every seed case loads: kernels, ramdisks, device trees, a bitstream.

Every byte is fixed here (no timestamps, no compressor whose output depends on its version), so
file sizes, and with them every load address and size in tests/goldens/seed/, never drift. The
sizes are chosen to hit the 2 MiB alignment edges: 2 MiB + 1 byte, exactly 4 MiB, a kernel whose
header asks for 9 MiB once loaded. Content is recognisable in a hex dump: each kernel repeats a
line naming the file and its offset, each ramdisk's /init echoes its domain.

Usage: `python -m tests.inputs DIR` or `python tests/inputs.py DIR` (needs dtc on PATH).
"""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path

MiB = 1024 * 1024

# ---- arm64 Image (Linux Documentation/arch/arm64/booting.rst) ------------------------------------

ARM64_MAGIC = 0x644D5241  # "ARM\x64" at offset 0x38
ARM64_BRANCH_PAST_HEADER = 0x14000010  # code0: `b #0x40`
ARM64_FLAGS_LE_4K_ANYWHERE = 0x0A  # little-endian, 4K pages, physical placement anywhere


def marked_filler(label: str, start: int, length: int) -> bytes:
    """`length` bytes of 32-byte lines `LABEL@OFFSET`, each naming the file offset it starts at."""
    first = start - start % 32
    lines = (f"{label}@{offset:08x}".ljust(31, ".")[:31] + "\n"
             for offset in range(first, start + length, 32))
    text = "".join(lines).encode()
    return text[start - first: start - first + length]


def arm64_image(label: str, size: int, image_size: int | None = None) -> bytes:
    """An arm64 `Image` of `size` bytes whose header declares `image_size` bytes once loaded
    (bss included; defaults to `size`): the 64-byte header, then marked filler."""
    header = struct.pack("<IIQQQQQQII", ARM64_BRANCH_PAST_HEADER, 0, 0,
                         size if image_size is None else image_size, ARM64_FLAGS_LE_4K_ANYWHERE,
                         0, 0, 0, ARM64_MAGIC, 0)
    return header + marked_filler(label, len(header), size - len(header))


# ---- archives --------------------------------------------------------------------------------

CPIO_TRAILER = "TRAILER!!!"


def pad(data: bytearray, boundary: int) -> None:
    """Append NUL bytes to `data` up to the next multiple of `boundary`."""
    data.extend(bytes(-len(data) % boundary))


def newc_archive(members: list[tuple[str, int, bytes]]) -> bytes:
    """A cpio archive in the "newc" format (what initramfs images are) of (path, mode, data)
    members, closed by its trailer and padded to 512-byte blocks as `cpio -o -H newc` does."""
    out = bytearray()
    for ino, (path, mode, data) in enumerate([*members, (CPIO_TRAILER, 0, b"")], start=1):
        name = path.encode() + b"\0"
        # c_ino c_mode c_uid c_gid c_nlink c_mtime c_filesize c_devmajor c_devminor
        # c_rdevmajor c_rdevminor c_namesize c_check
        fields = (0 if path == CPIO_TRAILER else ino, mode, 0, 0, 1, 0, len(data),
                  0, 0, 0, 0, len(name), 0)
        out += b"070701" + b"".join(b"%08X" % field for field in fields) + name
        pad(out, 4)
        out += data
        pad(out, 4)
    pad(out, 512)
    return bytes(out)


def init_script(domain: str, repeat: int = 1) -> bytes:
    """An /init that says which domain it belongs to; `repeat` copies make a ramdisk larger."""
    return f"#!/bin/sh\necho {domain}\n".encode() * repeat


def gzip_stored(data: bytes) -> bytes:
    """`data` as a gzip file (RFC 1952, mtime 0, OS Unix) of stored deflate blocks (RFC 1951
    3.2.4): the same bytes with every zlib, unlike a compressor's output."""
    out = bytearray(b"\x1f\x8b\x08\x00" + bytes(4) + b"\x00\x03")
    blocks = [data[i:i + 0xFFFF] for i in range(0, len(data), 0xFFFF)] or [b""]
    for number, block in enumerate(blocks, start=1):
        out += bytes([number == len(blocks)])  # BFINAL on the last block, BTYPE 00 (stored)
        out += struct.pack("<HH", len(block), len(block) ^ 0xFFFF) + block
    out += struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF)
    return bytes(out)


def empty_tar() -> bytes:
    """A tar archive with no members: end-of-archive blocks padded to one 10240-byte record."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT):
        pass
    return buffer.getvalue()


# ---- device trees (compiled by dtc) ------------------------------------------------------------

HOST_BOARD = """
    compatible = "linux,dummy-virt";
    #address-cells = <2>;
    #size-cells = <2>;
    chosen { stdout-path = "/pl011@9000000"; };
    aliases { serial0 = "/pl011@9000000"; };
    memory@40000000 { device_type = "memory"; reg = <0x0 0x40000000 0x0 0x80000000>; };
    pl011@9000000 {
        compatible = "arm,pl011", "arm,primecell";
        reg = <0x0 0x9000000 0x0 0x1000>;
    };
"""

RESERVED_MEMORY = """
    reserved-memory {
        #address-cells = <2>;
        #size-cells = <2>;
        ranges;
        region@41000000 { reg = <0x0 0x41000000 0x0 0x300000>; no-map; };
    };
"""

CPU = """
        cpu@{n} {{
            device_type = "cpu";
            compatible = "arm,cortex-a53";
            reg = <{n}>;
            enable-method = "psci";
        }};"""

# Two CPUs (for cpupools) and a device that a domU can be given (for passthrough paths).
CPUS_AND_ETHERNET = """
    cpus {
        #address-cells = <1>;
        #size-cells = <0>;""" + CPU.format(n=0) + CPU.format(n=1) + """
    };
    ethernet@ff0e0000 {
        compatible = "cdns,zynqmp-gem";
        reg = <0x0 0xff0e0000 0x0 0x1000>;
        status = "okay";
    };
"""

# A partial device tree for DOMU_PASSTHROUGH_DTB (Xen docs/misc/arm/passthrough.txt).
PASSTHROUGH = """
    #address-cells = <2>;
    #size-cells = <2>;
    passthrough {
        compatible = "simple-bus";
        ranges;
        #address-cells = <2>;
        #size-cells = <2>;
        ethernet@ff0e0000 {
            compatible = "cdns,zynqmp-gem";
            reg = <0x0 0xff0e0000 0x0 0x1000>;
            xen,path = "/amba/ethernet@ff0e0000";
            xen,reg = <0x0 0xff0e0000 0x0 0x1000 0x0 0xff0e0000>;
        };
    };
"""

# A device-tree overlay in the fragment form, adding one node a test can look for.
OVERLAY = """
    fragment@0 {
        target-path = "/";
        __overlay__ {
            overlay-marker { compatible = "ibtasks,overlay-marker"; };
        };
    };
"""


def compile_dts(root_body: str) -> bytes:
    """The DTB (version 17) dtc makes of a tree whose root node holds `root_body`.

    Raises subprocess.CalledProcessError if dtc rejects the source."""
    source = "/dts-v1/;\n\n/ {" + root_body + "};\n"
    return subprocess.run(["dtc", "-q", "-I", "dts", "-O", "dtb", "-o", "-"],
                          input=source.encode(), capture_output=True, check=True).stdout


# ---- Xilinx bitstream --------------------------------------------------------------------------

def xilinx_bit(body_size: int = MiB) -> bytes:
    """A Xilinx `.bit` file: the header fields `file` recognises as "Xilinx BIT data" (design,
    part, date, time), then the 'e' field holding `body_size` bytes of configuration data."""
    def field(key: bytes, text: str) -> bytes:
        value = text.encode() + b"\0"
        return key + struct.pack(">H", len(value)) + value

    sync = b"\x00\x09" + b"\x0f\xf0" * 4 + b"\x00\x00\x01"
    header = (sync + field(b"a", "design;UserID=0XFFFFFFFF") + field(b"b", "xczu9eg-ffvb1156-2-e")
              + field(b"c", "2021/04/16") + field(b"d", "11:49:44"))
    return header + b"e" + struct.pack(">I", body_size) + marked_filler("bitstream", 0, body_size)


# ---- the files -----------------------------------------------------------------------------

INPUTS: dict[str, Callable[[], bytes]] = {
    "xen": lambda: arm64_image("xen", 3_000_000),
    "Image-dom0": lambda: arm64_image("dom0-kernel", 5_000_000),
    "dom0-ramdisk.cpio": lambda: newc_archive([("init", 0o100755, init_script("DOM0", 60_000))]),
    "rootfs-dom0.cpio.gz": lambda: gzip_stored(
        newc_archive([("etc/hostname", 0o100644, b"dom0\n")])),
    "mpsoc.dtb": lambda: compile_dts(HOST_BOARD),
    "mpsoc-reserved.dtb": lambda: compile_dts(HOST_BOARD + RESERVED_MEMORY),
    "mpsoc-cpus.dtb": lambda: compile_dts(HOST_BOARD + CPUS_AND_ETHERNET),
    "zynqmp-dom1/Image-domU": lambda: arm64_image("domU1-kernel", 4 * MiB),
    "zynqmp-dom1/domU-ramdisk.cpio": lambda: newc_archive(
        [("init", 0o100755, init_script("DOMU1"))]),
    "zynqmp-dom1/passthrough-example-part.dtb": lambda: compile_dts(PASSTHROUGH),
    "zynqmp-dom2/Image-domU": lambda: arm64_image("domU2-kernel", 2 * MiB + 1),
    "zynqmp-dom2/domU-ramdisk.cpio": lambda: newc_archive(
        [("init", 0o100755, init_script("DOMU2", 100_000))]),
    "zynqmp-dom3/Image-domU.gz": lambda: gzip_stored(arm64_image("domU3-kernel", 3 * MiB)),
    "zynqmp-dom3/domU-ramdisk.cpio.gz": lambda: gzip_stored(
        newc_archive([("init", 0o100755, init_script("DOMU3"))])),
    # 1,500,000 bytes on disk, 9 MiB once loaded: the header's image_size counts the bss.
    "zynqmp-dom4/Image-bss": lambda: arm64_image("domU4-kernel-bss", 1_500_000, 9 * MiB),
    "rootfs-domU.tar.gz": lambda: gzip_stored(empty_tar()),
    "overlay.dtbo": lambda: compile_dts(OVERLAY),
    "design.bit": xilinx_bit,
    "extra-cmds.txt": lambda: b"echo extra commands from a file\nsetenv bootdelay 0\n",
}


def write_inputs(directory: Path) -> list[Path]:
    """Write every file of INPUTS under `directory` (created if missing, files overwritten);
    returns their paths. Raises subprocess.CalledProcessError if dtc fails."""
    written = []
    for name, make in INPUTS.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(make())
        written.append(path)
    return written


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} DIR")
    write_inputs(Path(sys.argv[1]))
