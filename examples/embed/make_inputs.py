"""Tiny stand-ins for Xen, kernels, ramdisks and a DTB, so the embed example runs anywhere.

Each kernel is a real arm64 Image header (magic `ARM\\x64`, image_size) padded to a size; the
ramdisk is a newc cpio with one file; the DTB is compiled by dtc. Nothing here boots: see
examples/qemu-virt for real binaries.
"""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

DTS = """/dts-v1/;
/ {
    #address-cells = <2>; #size-cells = <2>;
    chosen { };
    memory@40000000 { device_type = "memory"; reg = <0x0 0x40000000 0x0 0x40000000>; };
};
"""


def arm64_image(size: int, image_size: int = 0) -> bytes:
    header = struct.pack("<II QQQ QQQ 4s I", 0x91005A4D, 0x14000000, 0, image_size or size, 0xA,
                         0, 0, 0, b"ARM\x64", 0)
    return header + bytes(size - len(header))


def newc_cpio(name: str, data: bytes) -> bytes:
    def entry(path: str, mode: int, body: bytes, ino: int) -> bytes:
        fields = [ino, mode, 0, 0, 1, 0, len(body), 0, 0, 0, 0, len(path) + 1, 0]
        head = b"070701" + b"".join(b"%08X" % f for f in fields) + path.encode() + b"\0"
        head += bytes(-len(head) % 4)
        return head + body + bytes(-len(body) % 4)

    return entry(name, 0o100755, data, 1) + entry("TRAILER!!!", 0, b"", 0)


def make_inputs(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "xen").write_bytes(arm64_image(1_000_000))
    (out / "Image").write_bytes(arm64_image(3_000_000, image_size=5 * 1024 * 1024))
    (out / "Image-domU").write_bytes(arm64_image(2_000_000))
    (out / "initrd.cpio").write_bytes(newc_cpio("init", b"#!/bin/sh\necho hello\n"))
    subprocess.run(["dtc", "-q", "-I", "dts", "-O", "dtb", "-o", str(out / "board.dtb"), "-"],
                   input=DTS.encode(), check=True)
