"""What the disk image holds beyond the boot script: the boot partition's files, at the paths
the script loads them from, and the xl configs dom0 gets for the domUs it starts (with their
passthrough DTBs), numbered as the disk lays out its rootfs partitions.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from ibtasks.config.load_command import number_rootfs_partitions
from ibtasks.config.model import Config
from ibtasks.config.reader import Binary
from ibtasks.errors import UserError
from ibtasks.plan.outputs import outputs
from ibtasks.plan.passthrough import passthrough_files
from ibtasks.plan.xl_configs import XlDomU, render_xl_configs


def boot_files(config: Config, generated: Sequence[Path] | None = None,
               prefix: str = "") -> list[tuple[str, Path]]:
    """(path in the partition, source) of every boot file, at the paths the script loads.

    `generated`: the script, its source and the edited DTB, under config.output_dir (default:
    what a build of `config` writes); `prefix`: uboot-script-gen's -p, under which the script
    loads every file (upstream's disk_image -p copies them there too).
    """
    found: list[Binary] = config.binaries()  # what the script loads, and every domU's files
    for domu in config.domus:
        found += [b for b in (domu.kernel, domu.ramdisk, domu.passthrough_dtb) if b]
    found += config.boot_aux_files
    files = {os.path.normpath(b.path): config.root_dir / b.path for b in found}
    for out in outputs(config) if generated is None else generated:
        files[os.path.relpath(out, config.output_dir)] = out
    under = prefix.strip("/")
    return sorted((f"{under}/{path}" if under else path, src) for path, src in files.items())


def xl_configs(config: Config, prefix: str = "") -> dict[str, bytes]:
    """/etc/xen/domU<i>.cfg for the domUs dom0 starts (Q6), numbered as laid out (Q7); their
    kernel and ramdisk paths are where `boot_files` puts them (under `prefix`, -p)."""
    numbers = number_rootfs_partitions(config.dom0_rootfs is not None,
                                       [d.rootfs is not None for d in config.domus])
    under = prefix.strip("/")

    def on_boot(binary: Binary | None) -> str | None:
        if binary is None:
            return None
        path = os.path.normpath(binary.path)
        return f"{under}/{path}" if under else path

    domus = [XlDomU(d.index, on_boot(d.kernel), on_boot(d.ramdisk), d.mem_mib, d.vcpus,
                    d.cmd_given,
                    d.noboot, numbers.get(d.index), d.driver_domain) for d in config.domus]
    domus = [d for d in domus if d.needs_xl_config]
    settings, dtbs = passthrough_files(config, {d.index for d in domus})
    domus = [replace(d, passthrough=settings.get(d.index)) for d in domus]
    texts = render_xl_configs(domus, config.load_cmd)
    return {path: text.encode() for path, text in texts.items()} | dtbs


def check_disk_config(config: Config) -> None:
    """Before any task runs: the xl configs (and their passthrough DTBs) can be written, and
    every boot file lies under -d, where the boot partition holds it."""
    check_boot_files_inside_root(config)
    if config.dom0_rootfs is not None:
        xl_configs(config)


def check_boot_files_inside_root(config: Config) -> None:
    """disk-image: every file the boot partition holds must lie under -d, since it is stored
    at the path the script loads it from; raise UserError naming the first key that does not.
    """
    found = list(config.binaries())
    for domu in config.domus:
        found += [b for b in (domu.kernel, domu.ramdisk, domu.passthrough_dtb) if b]
    found += config.boot_aux_files
    for binary in found:
        if os.path.isabs(binary.path):
            raise UserError(f"{binary.key}: {binary.path} is outside -d ({config.root_dir}); "
                            "the boot partition holds each file at its path under -d, so put "
                            "it there", binary.where)
