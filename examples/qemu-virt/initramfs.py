"""Tiny busybox initramfs images whose /init reports that a domain reached userspace.

Each domain gets its own image so the console shows which one booted: /init prints a marker
(`DOM0-ALIVE`, `DOMU0-ALIVE`, ...) with the kernel command line, CPU count and MemTotal, so a
test can check that the configured values arrived. Written as a newc cpio in Python so that
`/dev/console` exists without root and two builds are byte-identical.
"""

from __future__ import annotations

import gzip
import io

# Reported on one line that a test can parse:
#   DOMU0-ALIVE cpus=1 memtotal_kb=251224 cmdline=console=ttyAMA0 ...
INIT_TEMPLATE = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mkdir -p /proc /sys /tmp
mount -t proc proc /proc
mount -t sysfs sysfs /sys
cpus=$(grep -c ^processor /proc/cpuinfo)
mem=$(awk '/^MemTotal:/ {{print $2}}' /proc/meminfo)
echo "{marker} cpus=$cpus memtotal_kb=$mem cmdline=$(cat /proc/cmdline)"
while true; do sleep 3600; done
"""

_S_IFDIR = 0o040000
_S_IFREG = 0o100000
_S_IFCHR = 0o020000


def _newc_entry(
    ino: int, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)
) -> bytes:
    """One newc header + name + data, each padded to 4 bytes (see `man 5 cpio`)."""
    encoded = name.encode() + b"\0"
    fields = (
        ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0,
    )
    header = b"070701" + b"".join(f"{value:08X}".encode() for value in fields)
    out = header + encoded
    out += b"\0" * (-len(out) % 4)
    out += data + b"\0" * (-len(data) % 4)
    return out


def build_cpio(busybox: bytes, init_script: str) -> bytes:
    """A newc archive holding /bin/busybox, /init and the device nodes the kernel needs."""
    entries = [
        ("dev", _S_IFDIR | 0o755, b"", (0, 0)),
        ("dev/console", _S_IFCHR | 0o600, b"", (5, 1)),
        ("dev/null", _S_IFCHR | 0o666, b"", (1, 3)),
        ("bin", _S_IFDIR | 0o755, b"", (0, 0)),
        ("bin/busybox", _S_IFREG | 0o755, busybox, (0, 0)),
        ("init", _S_IFREG | 0o755, init_script.encode(), (0, 0)),
        ("proc", _S_IFDIR | 0o755, b"", (0, 0)),
        ("sys", _S_IFDIR | 0o755, b"", (0, 0)),
    ]
    out = b"".join(
        _newc_entry(ino, name, mode, data, rdev)
        for ino, (name, mode, data, rdev) in enumerate(entries, start=1)
    )
    out += _newc_entry(0, "TRAILER!!!", 0)
    return out + b"\0" * (-len(out) % 512)


def build_initramfs(busybox: bytes, marker: str) -> bytes:
    """A gzip'd newc initramfs whose /init prints `marker` and what the domain sees."""
    raw = build_cpio(busybox, INIT_TEMPLATE.format(marker=marker))
    buffer = io.BytesIO()
    # mtime=0 and no file name in the gzip header: the same inputs give the same bytes.
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=6, mtime=0, filename="") as gz:
        gz.write(raw)
    return buffer.getvalue()
