"""What a build writes (`outputs`), and the rule that no output may be the same file as an input
or as another output, checked before anything runs.

A name clash (`FDTEDIT=mpsoc.dtb`, `UBOOT_SCRIPT=xen`, `disk-image -o config`) would make a
build overwrite the file it reads: the device tree, a kernel or the config itself. The original
did exactly that. Paths are compared resolved (symlinks followed) and, when both exist, with
`os.path.samefile`, so a hard link or a symlink to an input counts as that input.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ibtasks.errors import UserError
from ibtasks.plan.boot_script import xen_uimage_name

if TYPE_CHECKING:
    from ibtasks.config.model import Config


@dataclass(frozen=True)
class NamedFile:
    """A file a build reads or writes, and the key or flag that names it (`FDTEDIT`, `-o`)."""

    label: str
    path: Path


def boot_outputs(config: Config, output_name: str | None) -> list[NamedFile]:
    """The files the boot graph of `config` writes (`outputs`), each with the key or flag
    that names it: `-o` when uboot-script-gen's `-o NAME` gave the name."""

    out = config.output_dir
    by_o = output_name is not None
    found = [NamedFile("-o" if by_o else "UBOOT_SOURCE", out / config.uboot_source)]
    if config.fit is not None:
        found.append(NamedFile("FIT", out / config.fit.name))
    else:
        found.append(NamedFile("-o" if by_o else "UBOOT_SCRIPT", out / config.uboot_script))
    if not config.boot.calc:
        fdtedit_by_o = by_o and config.fdtedit == f"{output_name}.dtb"
        found.append(NamedFile("-o" if fdtedit_by_o else "FDTEDIT", out / config.fdtedit))
    if config.boot.boot_cmd == "bootm":
        found.append(NamedFile("BOOT_CMD=bootm", out / xen_uimage_name(config)))
    return found


def inputs(config: Config, config_file: Path) -> list[NamedFile]:
    """Every file a build of `config` reads: the config file (`-c`), each binary, rootfs
    archive, boot aux file, APPEND_EXTRA_CMDS and the FIT's signing key and U-Boot DTB."""
    found = [NamedFile("-c", config_file)]
    binaries = [*config.binaries(), *config.rootfs_archives(), *config.boot_aux_files]
    if config.boot.append_extra_cmds is not None:
        binaries.append(config.boot.append_extra_cmds)
    found += [NamedFile(b.key, config.root_dir / b.path) for b in binaries]
    if config.fit is not None:
        found += [NamedFile("FIT_ENC_KEY_DIR", p) for p in config.fit.key_files()]
        if config.fit.u_boot_dtb is not None:
            found.append(NamedFile("FIT_ENC_UB_DTB", config.fit.u_boot_dtb))
    return found


def same_file(a: Path, b: Path) -> bool:
    """Whether `a` and `b` name one file: equal resolved paths, or (both existing) one inode."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet) or cannot be reached
        return False


def check_output_clashes(outputs: Sequence[NamedFile], read: Sequence[NamedFile]) -> None:
    """Raise `UserError` naming both keys when an output is the same file as an input, or as
    another output; call it before anything runs."""
    for output in outputs:
        for source in read:
            if same_file(output.path, source.path):
                raise UserError(f"{output.label}: the output {output.path} is the same file as "
                                f"{source.label} ({source.path}), which the build reads; "
                                "choose another output name")
    for i, output in enumerate(outputs):
        for other in outputs[i + 1:]:
            if same_file(output.path, other.path):
                raise UserError(f"{output.label}: the output {output.path} is the same file as "
                                f"the output of {other.label} ({other.path}); choose another "
                                "output name")


def disk_outputs(config: Config, image: Path, work: Path, work_label: str) -> list[NamedFile]:
    """disk-image's own outputs: the image (`-o`), its partition record and its block map, and
    the partition images and the block map's record it keeps in the work folder (`-w`), named
    as tasks.disk names them."""
    found = [NamedFile("-o", image), NamedFile("-o", Path(f"{image}.parts.json")),
             NamedFile("-o", Path(f"{image}.bmap"))]
    names = ["bmap.json", f"boot.{'vfat' if config.boot_fs == 'fat' else 'ext4'}"]
    if config.dom0_rootfs is not None:
        names.append("dom0.ext4")
    names += [f"domU{d.index}.ext4" for d in config.domus if d.rootfs is not None]
    return found + [NamedFile(work_label, work / name) for name in names]


def outputs(config: Config) -> list[Path]:
    """The user-visible outputs of the boot graph (no edited DTB with -s; bootm's uImage)."""
    names = [config.uboot_source, config.fit.name if config.fit else config.uboot_script]
    if not config.boot.calc:
        names.insert(0, config.fdtedit)
    if config.boot.boot_cmd == "bootm":
        names.append(xen_uimage_name(config))
    return [config.output_dir / name for name in names]
