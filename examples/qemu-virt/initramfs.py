"""Tiny busybox initramfs images whose /init reports that a domain reached userspace.

Each domain gets its own image so the console shows which one booted: /init prints a marker
(`DOM0-ALIVE`, `DOMU0-ALIVE`, ...) with the kernel command line, CPU count and MemTotal, so a
test can check that the configured values arrived. Written as a newc cpio in Python so that
`/dev/console` exists without root and two builds are byte-identical. A dom0 variant also loads
kernel modules, mounts its rootfs partition read-only and reports what it found there.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Sequence

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

# Before the usual report: load the block and ext4 modules (in dependency order), wait for the
# `root=` device of the command line, mount it read-only and say what is on it. A failure prints
# ROOTFS_FAILURE so that a test stops at once instead of waiting for a timeout.
ROOTFS_FAILURE = "ROOTFS-FAILED"
ROOTFS_INIT_TEMPLATE = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mkdir -p /proc /sys /tmp /mnt/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
fail() {{ echo "{failure} $*"; while true; do sleep 3600; done; }}
for module in {modules}; do
    insmod /lib/modules/$module.ko || fail "insmod $module"
done
root=
for word in $(cat /proc/cmdline); do
    case $word in root=*) root=${{word#root=}} ;; esac
done
[ -n "$root" ] || fail "no root= on the command line"
tries=0
while [ ! -b "$root" ]; do
    tries=$((tries + 1))
    [ $tries -le 300 ] || fail "$root did not appear in 30 s: $(cat /proc/partitions)"
    usleep 100000
done
mount -t ext4 -o ro "$root" /mnt/root || fail "mount $root"
echo "{marker}-ROOTFS-OK root=$root device=$(readlink -f /sys/class/block/${{root#/dev/}})"
echo "{marker}-ROOTFS-MARKER $(cat /mnt/root/{marker_file})"
echo "{marker}-XL-CFGS $(cd /mnt/root/etc/xen && echo *.cfg)"
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


def build_cpio(
    busybox: bytes, init_script: str, modules: Sequence[tuple[str, bytes]] = ()
) -> bytes:
    """A newc archive holding /bin/busybox, /init and the device nodes the kernel needs.

    `modules` are (name, bytes) pairs stored as /lib/modules/<name>.ko.
    """
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
    if modules:
        entries.append(("lib", _S_IFDIR | 0o755, b"", (0, 0)))
        entries.append(("lib/modules", _S_IFDIR | 0o755, b"", (0, 0)))
        entries += [(f"lib/modules/{name}.ko", _S_IFREG | 0o644, data, (0, 0))
                    for name, data in modules]
    out = b"".join(
        _newc_entry(ino, name, mode, data, rdev)
        for ino, (name, mode, data, rdev) in enumerate(entries, start=1)
    )
    out += _newc_entry(0, "TRAILER!!!", 0)
    return out + b"\0" * (-len(out) % 512)


def build_initramfs(busybox: bytes, marker: str) -> bytes:
    """A gzip'd newc initramfs whose /init prints `marker` and what the domain sees."""
    return _gzip(build_cpio(busybox, INIT_TEMPLATE.format(marker=marker)))


def build_rootfs_initramfs(
    busybox: bytes,
    marker: str,
    modules: Sequence[tuple[str, bytes]],
    marker_file: str = "etc/ibtasks-marker",
) -> bytes:
    """Like `build_initramfs`, but /init first mounts the `root=` partition read-only.

    It loads `modules` in the given order and prints, before `marker`'s usual line,
    `<marker>-ROOTFS-OK root=<device> device=<sysfs path>`, `<marker>-ROOTFS-MARKER <content
    of marker_file>` and `<marker>-XL-CFGS <names of /etc/xen/*.cfg>`; on failure
    `ROOTFS-FAILED <why>`.
    """
    prefix = ROOTFS_INIT_TEMPLATE.format(
        failure=ROOTFS_FAILURE,
        modules=" ".join(name for name, _ in modules),
        marker=marker.removesuffix("-ALIVE"),
        marker_file=marker_file,
    )
    # The usual report without its set-up lines (the prefix has mounted /proc and /sys).
    usual = INIT_TEMPLATE.format(marker=marker)
    report = usual[usual.index("cpus=") :]
    return _gzip(build_cpio(busybox, prefix + report, modules))


def _gzip(raw: bytes) -> bytes:
    buffer = io.BytesIO()
    # mtime=0 and no file name in the gzip header: the same inputs give the same bytes.
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=6, mtime=0, filename="") as gz:
        gz.write(raw)
    return buffer.getvalue()
