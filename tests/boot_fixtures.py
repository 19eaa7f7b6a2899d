"""Helpers for the QEMU boot tests: real arm64 binaries, initramfs images and the board's DTB.

They reuse the qemu-virt example's modules and its download cache (`IBTASKS_CACHE`), so the
tests and the example fetch Debian's packages once between them.
"""

from __future__ import annotations

import gzip
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ibtasks.fsutil import write_atomic
from ibtasks.qemu.runner import (
    DEFAULT_FAILURE_PATTERNS,
    BootResult,
    BootSpec,
    Machine,
    boot,
    tftp_args,
    tftp_commands,
)

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "qemu-virt"
if str(EXAMPLE) not in sys.path:
    sys.path.insert(0, str(EXAMPLE))

import board  # noqa: E402
import debian  # noqa: E402
import initramfs  # noqa: E402
import system  # noqa: E402

ROOTFS_FAILURE = initramfs.ROOTFS_FAILURE  # what a disk-booted init prints when its rootfs fails

MACHINE = Machine()
DOMAIN_NAMES = ("dom0", "domu0", "domu1", "domu2")


@dataclass(frozen=True)
class BootParts:
    """Built once per session: Xen, the kernel, the DTB and one initramfs per domain."""

    directory: Path

    def path(self, name: str) -> Path:
        return self.directory / name


def prepare_boot_parts(out: Path) -> BootParts:
    """Fetch (or reuse) the binaries and build the parts every boot scenario shares in `out`."""
    found = debian.fetch_binaries(debian.cache_root(), say=print)
    debian.copy_into(found.xen, out / "xen")
    debian.copy_into(found.kernel, out / "Image")
    board.build_dtb(MACHINE, out / "virt.dtb")
    busybox = found.busybox.read_bytes()
    for name in DOMAIN_NAMES:
        image = initramfs.build_initramfs(busybox, system.marker_for(name))
        write_atomic(out / f"{name}.cpio.gz", image)
    return BootParts(out)


def gzip_file(source: Path, target: Path) -> None:
    """A gzip'd copy with no name or time in its header (level 1: the kernel is 33 MB)."""
    with source.open("rb") as raw, gzip.GzipFile(target, "wb", compresslevel=1, mtime=0) as gz:
        while chunk := raw.read(1 << 20):
            gz.write(chunk)


def domain(
    name: str,
    kernel: str = "Image",
    *,
    mem_mb: int | None = None,
    vcpus: int | None = None,
    cmd: str | None = None,
    noboot: bool = False,
) -> system.Domain:
    """The domain `name` with its own initramfs and marker."""
    return system.Domain(
        marker=system.marker_for(name),
        kernel=kernel,
        ramdisk=f"{name}.cpio.gz",
        mem_mb=mem_mb,
        vcpus=vcpus,
        cmd=cmd,
        noboot=noboot,
    )


def build_system(
    parts: BootParts,
    workdir: Path,
    domus: Sequence[system.Domain],
    *,
    extra_files: Sequence[Path] = (),
    fdtedit: str | None = None,
) -> Path:
    """A TFTP directory with the binaries, a config and our boot.scr; the directory."""
    workdir.mkdir(parents=True, exist_ok=True)
    for name in ("xen", "Image", "virt.dtb", *(f"{n}.cpio.gz" for n in DOMAIN_NAMES)):
        debian.copy_into(parts.path(name), workdir / name)
    for extra in extra_files:
        debian.copy_into(extra, workdir / extra.name)
    dom0 = domain("dom0")
    config = workdir / "config"
    config.write_text(system.render_config(MACHINE, "xen", "virt.dtb", dom0, domus, fdtedit))
    output = system.generate_boot_script(config, workdir, preedited_dtb=fdtedit is not None)
    print(output.strip())
    return workdir


def prepare_rootfs_dom0(parts: BootParts, name: str = "dom0-rootfs.cpio.gz") -> Path:
    """A dom0 initramfs that mounts its `root=` partition (`initramfs.build_rootfs_initramfs`)."""
    cache = debian.cache_root()
    found = debian.fetch_binaries(cache, say=print)
    modules = debian.fetch_modules(cache, say=print)
    image = initramfs.build_rootfs_initramfs(
        found.busybox.read_bytes(),
        system.marker_for("dom0"),
        [(module, modules.path(module).read_bytes()) for module in modules.order],
    )
    write_atomic(parts.path(name), image)
    return parts.path(name)


def boot_system(
    workdir: Path,
    markers: Sequence[str],
    absent_markers: Sequence[str] = (),
    settle_seconds: float = 0.0,
    idle_seconds: float = 60.0,
    *,
    commands: Sequence[str] | None = None,
    media_args: Sequence[str] | None = None,
    failure_patterns: Sequence[str] = DEFAULT_FAILURE_PATTERNS,
    log_path: Path | None = None,
    machine: Machine = MACHINE,
) -> BootResult:
    """Boot under QEMU (by default the TFTP directory `workdir`); print which marker arrived when.

    `commands` and `media_args` boot something else, such as a disk (`disk_commands`); `machine`
    another board (its DTB must be dumped with the same options, `board.build_dtb`).
    """
    spec = BootSpec(
        commands=tuple(tftp_commands() if commands is None else commands),
        markers=tuple(markers),
        absent_markers=tuple(absent_markers),
        failure_patterns=tuple(failure_patterns),
        log_path=log_path or workdir / "console.log",
        media_args=tuple(tftp_args(workdir) if media_args is None else media_args),
        machine=machine,
        timeout_seconds=240.0,
        idle_seconds=idle_seconds,
        settle_seconds=settle_seconds,
    )
    result = boot(spec)
    print(result.summary())
    report = os.environ.get("IBTASKS_BOOT_REPORT")
    if report:
        # CI keeps one file with every scenario's marker times (pytest -s shows them too).
        test = os.environ.get("PYTEST_CURRENT_TEST", str(workdir)).split(" ")[0]
        with open(report, "a", encoding="utf-8") as out:
            out.write(f"{test}\n{result.summary()}\n")
    return result


def reported_values(line: str) -> dict[str, str]:
    """The `key=value` fields an /init marker line reports; `cmdline` takes the rest."""
    head, _, cmdline = line.partition(" cmdline=")
    fields = dict(word.split("=", 1) for word in head.split() if "=" in word)
    fields["cmdline"] = cmdline
    return fields


def prepare_shell_dom0(parts: BootParts, name: str = "dom0-shell.cpio.gz") -> Path:
    """A dom0 initramfs whose /init prints dom0's usual marker, then runs busybox's shell on
    the console: what an interactive test types there reaches a program of the booted system."""
    found = debian.fetch_binaries(debian.cache_root(), say=print)
    usual = initramfs.INIT_TEMPLATE.format(marker=system.marker_for("dom0"))
    init = usual.replace("while true; do sleep 3600; done\n",
                         "exec /bin/sh </dev/console >/dev/console 2>&1\n")
    image = initramfs.build_cpio(found.busybox.read_bytes(), init)
    write_atomic(parts.path(name), gzip.compress(image, mtime=0))
    return parts.path(name)
