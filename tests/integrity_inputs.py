"""Small synthetic inputs for the integrity tests, made by our own code: arm64 kernels, a DTB
(compiled by dtc), a newc cpio rootfs, a BOOT.BIN and a stock boot.scr (made by mkimage).

Sizes are small (KiB) so that a disk image builds in about a second.
"""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

DTS = """/dts-v1/;
/ {
    #address-cells = <2>;
    #size-cells = <2>;
    model = "integrity-test";
    chosen { };
    memory@40000000 { device_type = "memory"; reg = <0x0 0x40000000 0x0 0x40000000>; };
};
"""

XEN_CONFIG = """MEMORY_START=0x40000000
MEMORY_END=0x80000000
DEVICE_TREE=board.dtb
XEN=xen
DOM0_KERNEL=Image
DOM0_ROOTFS=rootfs.cpio.gz
NUM_DOMUS=0
"""

# A config of colcon's "Linux only" SD card: no XEN, a BOOTBIN key, only UBOOT_SCRIPT named.
LINUX_ONLY_CONFIG = """MEMORY_START=0x0
MEMORY_END=0x80000000
DEVICE_TREE=system.dtb
BOOTBIN=BOOT.BIN
UBOOT_SCRIPT=boot.scr
DOM0_KERNEL=Image
DOM0_ROOTFS=rootfs.cpio.gz
NUM_DOMUS=0
"""


def arm64_image(size: int, fill: int) -> bytes:
    """An arm64 Image of `size` bytes: the header's magic and image_size, then `fill` bytes."""
    header = bytearray(64)
    struct.pack_into("<QQ", header, 8, 0, size)  # text_offset, image_size
    header[56:60] = b"ARM\x64"
    return bytes(header) + bytes([fill]) * (size - 64)


def cpio_newc(entries: list[tuple[str, int, bytes]]) -> bytes:
    """A newc cpio archive of (name, mode, data) entries, closed by TRAILER!!!."""
    out = bytearray()
    for ino, (name, mode, data) in enumerate([*entries, ("TRAILER!!!", 0, b"")], start=1):
        encoded = name.encode() + b"\0"
        fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0]
        out += b"070701" + b"".join(b"%08X" % f for f in fields) + encoded
        out += b"\0" * (-len(out) % 4) + data
        out += b"\0" * (-len(out) % 4)
    return bytes(out)


def rootfs_archive(payload: int = 0) -> bytes:
    """A gzip'd cpio rootfs: /etc/motd, /bin/init and `payload` bytes of incompressible data."""
    entries = [("etc", 0o40755, b""), ("etc/motd", 0o100644, b"hello\n"),
               ("bin", 0o40755, b""), ("bin/init", 0o100755, b"#!/bin/sh\n")]
    if payload:
        entries.append(("bin/payload", 0o100644, os.urandom(payload)))
    return gzip.compress(cpio_newc(entries), mtime=0)


def compile_dtb(path: Path) -> None:
    subprocess.run(["dtc", "-I", "dts", "-O", "dtb", "-o", str(path), "-"], input=DTS.encode(),
                   check=True, capture_output=True)


def stock_boot_scr(path: Path) -> None:
    """A board's own boot.scr, as a vendor ships it: mkimage from a tiny boot.cmd."""
    cmd = path.with_name("boot.cmd")
    cmd.write_text("load mmc 1:1 0x200000 Image\nbooti 0x200000 - 0x100000\n")
    subprocess.run(["mkimage", "-q", "-A", "arm64", "-T", "script", "-C", "none", "-d",
                    str(cmd), str(path)], check=True, capture_output=True,
                   env={**os.environ, "SOURCE_DATE_EPOCH": "1000000000"})
    cmd.unlink()


def make_xen_inputs(directory: Path, payload: int = 0) -> Path:
    """Xen, a dom0 kernel, a DTB and a dom0 rootfs under `directory`, with XEN_CONFIG as
    `config`; returns `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "xen").write_bytes(arm64_image(0x30000, 0x58))
    (directory / "Image").write_bytes(arm64_image(0x50000, 0x4B))
    compile_dtb(directory / "board.dtb")
    (directory / "rootfs.cpio.gz").write_bytes(rootfs_archive(payload))
    (directory / "config").write_text(XEN_CONFIG)
    return directory


def make_linux_only_inputs(directory: Path) -> Path:
    """The Linux-only SD card's inputs: Image, system.dtb, BOOT.BIN, a stock boot.scr, a rootfs,
    with LINUX_ONLY_CONFIG as `config`."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "Image").write_bytes(arm64_image(0x50000, 0x4B))
    compile_dtb(directory / "system.dtb")
    (directory / "BOOT.BIN").write_bytes(b"XLNX" + bytes(range(256)) * 64)
    stock_boot_scr(directory / "boot.scr")
    (directory / "rootfs.cpio.gz").write_bytes(rootfs_archive())
    (directory / "config").write_text(LINUX_ONLY_CONFIG)
    return directory


def ibtasks_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "ibtasks", *args]


def run(directory: Path, *args: str, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    """`python -m ibtasks ARGS` in `directory`."""
    return subprocess.run(ibtasks_argv(*args), cwd=directory, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, check=False)


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single `ibtasks: error:` line of a failed run (checked: exit 1, no traceback)."""
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ibtasks: error: "), result.stderr
    return lines[0]


def script_kind(path: Path) -> str:
    """The image type line `dumpimage -l` prints for a U-Boot image."""
    out = subprocess.run(["dumpimage", "-l", str(path)], capture_output=True, text=True,
                         check=True).stdout
    for line in out.splitlines():
        if line.startswith("Image Type:"):
            return line.split(":", 1)[1].strip()
    pytest.fail(f"dumpimage -l {path} printed no image type:\n{out}")
