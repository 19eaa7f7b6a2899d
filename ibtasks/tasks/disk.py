"""doit tasks for the disk image: one per partition, then disk.img, on top of the boot graph.

    ib_partition:boot     boot files -> FAT (or ext4) image   (rebuilt when a boot file changes)
    ib_partition:dom0     DOM0_ROOTFS + xl configs -> ext4    (rebuilt when its archive changes)
    ib_partition:domU<i>  DOMU_ROOTFS[i] -> ext4
    ib_disk               GPT (or DOS table) + partitions -> disk.img, updated in place, only
                          changed partitions

No root: FAT via pyfatfs, ext4 via fakeroot + mkfs.ext4 -d, the GPT in Python.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ibtasks.config.model import Config
from ibtasks.config.reader import Binary
from ibtasks.formats.disk_image import PartitionImage, assemble_disk, changes_path, read_changes
from ibtasks.formats.ext4 import RootfsSpec, build_rootfs_image
from ibtasks.formats.fat import BootFile, derive_volume_id
from ibtasks.formats.fat_update import manifest_path, write_fat_image
from ibtasks.formats.gpt import BASIC_DATA, LINUX_FILESYSTEM, derive_guid
from ibtasks.formats.mbr import LINUX, fat_partition_type
from ibtasks.fsutil import make_temp_beside, write_atomic
from ibtasks.plan.disk_contents import boot_files, xl_configs
from ibtasks.plan.outputs import outputs
from ibtasks.tasks.boot import TaskDict, run_step
from ibtasks.tasks.uptodate import task_uptodate

BOOT_SLACK_MIB = 16  # the original's boot partition: its files plus 16 MiB


@dataclass(frozen=True)
class DiskOptions:
    """disk-image's own command-line choices."""

    image: Path  # -o
    work: Path  # -w: partition images and doit's state
    slack_mib: int = 128  # -s: free space in each rootfs partition
    power_of_two: bool = False  # -a: disk size in MiB rounded up to a power of two


def disk_identity(config: Config, image: Path) -> str:
    """What the GUIDs, UUIDs and FAT serial derive from: stable across directories and times."""
    names = [b.path for b in config.binaries() + config.rootfs_archives()]
    return "\0".join([image.name, config.uboot_script, *names])


# ---- actions ------------------------------------------------------------------------------------

def built_marker(image: str) -> str:
    """A small file that changes whenever `image` is rebuilt.

    ib_disk depends on these instead of the images, so doit never hashes hundreds of MiB of
    partition images that it has just written itself. It names the image's generation too: an
    image updated in place keeps its inode and may keep its mtime (coarse clock).
    """
    return image + ".built"


def _mark_built(image: str) -> None:
    st = os.stat(image)
    changes = read_changes(image, st)
    record = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino,
              "generation": changes["generation"] if changes else None}
    write_atomic(built_marker(image), json.dumps(record).encode())

def write_boot_partition(files: list[tuple[str, str]], boot_fs: str, identity: str, epoch: int,
                         out: str) -> None:
    # FAT: updated in place when only file contents changed (see fatupdate), else rebuilt.
    if boot_fs == "fat":
        write_fat_image(out, [BootFile(path, Path(src)) for path, src in files],
                        volume_id=derive_volume_id(identity, "boot"), label="BOOT", epoch=epoch)
    else:
        _write_ext4_boot_partition(files, identity, epoch, out)
    _mark_built(out)


def _write_ext4_boot_partition(files: list[tuple[str, str]], identity: str, epoch: int,
                               out: str) -> None:
    # ext4 as the original: the boot files become a tar that the rootfs builder reads.
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for path, src in files:
            info = tar.gettarinfo(src, arcname=path)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = epoch
            info.mode = 0o644
            with open(src, "rb") as f:
                tar.addfile(info, f)
    fd, archive = make_temp_beside(out, suffix=".tar")
    try:
        with os.fdopen(fd, "wb") as tar_file:
            tar_file.write(buffer.getvalue())
        build_rootfs_image(_ext4_spec(archive, "boot partition", "vos_1", BOOT_SLACK_MIB, epoch,
                                      identity, {}), Path(out))
    finally:
        archive.unlink(missing_ok=True)


def _ext4_spec(archive: Path, key: str, label: str, slack: int, epoch: int, identity: str,
               extra: dict[str, bytes]) -> RootfsSpec:
    return RootfsSpec(archive=archive, key=key, label=label, slack_mib=slack, epoch=epoch,
                      uuid=str(derive_guid(identity, "ext4", key)),
                      hash_seed=str(derive_guid(identity, "hash", key)), extra_files=extra)


def write_rootfs_partition(archive: str, key: str, label: str, slack: int, epoch: int,
                           identity: str, extra: dict[str, bytes], out: str) -> None:
    build_rootfs_image(_ext4_spec(Path(archive), key, label, slack, epoch, identity, extra),
                       Path(out))
    _mark_built(out)


def write_disk(image: str, identity: str, parts: list[tuple[str, str, str]],
               table_format: str = "gpt", power_of_two: bool = False) -> None:
    partitions = [PartitionImage(name, BASIC_DATA if kind == "fat" else LINUX_FILESYSTEM,
                                 derive_guid(identity, "partition", name), Path(path),
                                 mbr_type=_mbr_type(kind, path), bootable=number == 0)
                  for number, (name, kind, path) in enumerate(parts)]
    assemble_disk(image, derive_guid(identity, "disk"), partitions, table_format, power_of_two)


def _mbr_type(kind: str, path: str) -> int:
    # A DOS type byte must name the FAT type the image really holds (FAT16 or FAT32).
    if kind != "fat":
        return LINUX
    with open(path, "rb") as image:
        return fat_partition_type(image.read(512))


# ---- tasks --------------------------------------------------------------------------------------

def disk_tasks(config: Config, options: DiskOptions, epoch: int,
               generated: Sequence[Path] | None = None, prefix: str = "") -> Iterator[TaskDict]:
    """The partition and disk tasks; run them together with `taskgen.boot_tasks`.

    `generated` and `prefix` as for `boot_files`."""
    identity = disk_identity(config, options.image)
    work = options.work
    files = [(path, str(src)) for path, src in boot_files(config, generated, prefix)]
    boot_image = str(work / f"boot.{'vfat' if config.boot_fs == 'fat' else 'ext4'}")
    yield {
        "basename": "ib_partition",
        "name": "boot",
        "doc": "the boot partition: every file the boot script loads",
        "actions": [(run_step, [write_boot_partition, files, config.boot_fs, identity, epoch,
                                boot_image])],
        "file_dep": [src for _, src in files],
        "targets": [boot_image, built_marker(boot_image)] + (
            [str(manifest_path(boot_image)), str(changes_path(boot_image))]
            if config.boot_fs == "fat" else []),
        "uptodate": task_uptodate({"files": [p for p, _ in files], "fs": config.boot_fs,
                                   "epoch": epoch, "identity": identity}, by_content=False),
        "clean": True,
    }
    parts = [("Linux1", config.boot_fs, boot_image)]
    rootfs: list[tuple[str, Binary, dict[str, bytes]]] = []
    if config.dom0_rootfs:
        rootfs.append(("dom0", config.dom0_rootfs, xl_configs(config, prefix)))
    rootfs += [(f"domU{d.index}", d.rootfs, {}) for d in config.domus if d.rootfs]
    for number, (name, archive, extra) in enumerate(rootfs, start=2):
        image = str(work / f"{name}.ext4")
        label = f"vos_{number}"
        source = str(config.root_dir / archive.path)
        yield {
            "basename": "ib_partition",
            "name": name,
            "doc": f"{archive.key} as an ext4 partition",
            "actions": [(run_step, [write_rootfs_partition, source, archive.key, label,
                                    options.slack_mib, epoch, identity, extra, image])],
            "file_dep": [source],
            "targets": [image, built_marker(image)],
            "uptodate": task_uptodate({
                "label": label, "slack": options.slack_mib, "epoch": epoch,
                "identity": identity,
                "extra": {path: hashlib.sha256(data).hexdigest()
                          for path, data in extra.items()},
            }, by_content=False),
            "clean": True,
        }
        parts.append((f"Linux{number}", "ext4", image))
    image_path = str(options.image)
    yield {
        "basename": "ib_disk",
        "doc": "the disk image: partition table and partitions, updated in place",
        "actions": [(run_step, [write_disk, image_path, identity, parts, config.partition_table,
                                options.power_of_two])],
        "file_dep": [built_marker(p[2]) for p in parts],
        "targets": [image_path, image_path + ".parts.json"],
        "uptodate": task_uptodate({"parts": [p[:2] for p in parts], "identity": identity,
                                   "table": config.partition_table,
                                   "power_of_two": options.power_of_two}, by_content=False),
        "clean": True,
    }


def disk_outputs(options: DiskOptions) -> list[Path]:
    return [options.image, Path(f"{options.image}.parts.json")]


def all_tasks(config: Config, options: DiskOptions, epoch: int, boot: Config | None = None,
              copied: Sequence[Path] = ()) -> Iterator[dict[str, Any]]:
    """The boot graph of `boot` (default `config`: the boot files are generated with the
    disk's own flags) and the disk tasks of `config`; with `boot` None the script is the
    user's, `copied` as it is (see `chain.plan_boot_script`)."""
    from ibtasks.tasks.boot import boot_tasks

    if boot is None and copied:
        yield from disk_tasks(config, options, epoch, list(copied))
        return
    boot = boot if boot is not None else config
    yield from boot_tasks(boot, epoch)
    yield from disk_tasks(config, options, epoch, outputs(boot), boot.boot.prepend_path)
