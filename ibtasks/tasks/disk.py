"""doit tasks for the disk image: one per partition, then disk.img, on top of the boot graph.

    ib_partition:boot     boot files -> FAT (or ext4) image   (rebuilt when a boot file changes)
    ib_partition:dom0     DOM0_ROOTFS + xl configs -> ext4    (rebuilt when its archive changes)
    ib_partition:domU<i>  DOMU_ROOTFS[i] -> ext4
    ib_disk               GPT (or DOS table) + partitions -> disk.img, updated in place, only
                          changed partitions
    ib_bmap               disk.img -> disk.img.bmap (ibtasks.tasks.bmap)

No root: FAT via pyfatfs, ext4 via `mke2fs -d archive` (formats.rootfs; fakeroot and an
extracted tree with older e2fsprogs), the GPT in Python.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ibtasks.cache.location import CacheLocation
from ibtasks.config.model import Config
from ibtasks.config.reader import Binary
from ibtasks.errors import UserError
from ibtasks.formats.disk_changes import changes_path, read_changes
from ibtasks.formats.disk_image import PartitionImage, assemble_disk
from ibtasks.formats.ext4 import RootfsSpec
from ibtasks.formats.fat import BootFile, derive_volume_id
from ibtasks.formats.fat_update import adopt_fat_image, manifest_path, write_fat_image
from ibtasks.formats.gpt import BASIC_DATA, LINUX_FILESYSTEM, derive_guid
from ibtasks.formats.mbr import LINUX, fat_partition_type
from ibtasks.formats.rootfs import build_rootfs_image, rootfs_path
from ibtasks.fsutil import make_temp_beside, write_atomic
from ibtasks.plan.disk_contents import boot_files, xl_configs
from ibtasks.plan.outputs import outputs
from ibtasks.tasks.bmap import bmap_path, bmap_task
from ibtasks.tasks.boot import boot_tasks, keyed
from ibtasks.tasks.cached_step import cached_action
from ibtasks.tasks.step import TaskDict, run_step
from ibtasks.tools import mke2fs_version

BOOT_SLACK_MIB = 16  # the original's boot partition: its files plus 16 MiB
MIB = 1 << 20


@dataclass(frozen=True)
class DiskOptions:
    """disk-image's own command-line choices."""

    image: Path  # -o
    work: Path  # -w: partition images and doit's state
    slack_mib: int = 128  # -s: free space in each rootfs partition
    power_of_two: bool = False  # -a: disk size in MiB rounded up to a power of two
    cache: CacheLocation | None = None  # --cache: partitions shared through a registry


@dataclass(frozen=True)
class BootPartitionInput:
    """ib_partition:boot: each file as (path in the partition, source file), the filesystem
    (`fat` or `ext4`), the identity the volume ID derives from, and the time stamped on every
    file (seconds since 1970)."""

    files: tuple[tuple[str, Path], ...]
    boot_fs: str
    identity: str
    epoch: int


@dataclass(frozen=True)
class RootfsPartitionInput:
    """ib_partition:dom0 / domU<i>: the archive and its key (whose name the filesystem UUID
    derives from), the ext4 label, the free space in MiB, the time stamp, the identity (of this
    partition alone: `rootfs_identity`), the extra files written into it (dom0's xl configs:
    path in the filesystem, bytes), and how it is built (`formats.rootfs.rootfs_path` and the
    mke2fs release), so a new e2fsprogs rebuilds it."""

    archive: Path
    key: str
    label: str
    slack_mib: int
    epoch: int
    identity: str
    extra: tuple[tuple[str, bytes], ...] = ()
    builder: tuple[str, str] = ("", "")


@dataclass(frozen=True)
class DiskTableInput:
    """ib_disk: the identity GUIDs derive from, each partition as (name, filesystem, image),
    the table (`gpt` or `dos`) and -a (size in MiB rounded up to a power of two)."""

    identity: str
    parts: tuple[tuple[str, str, Path], ...]
    table: str = "gpt"
    power_of_two: bool = False
    boot_mib: int | None = None  # BOOT_PARTITION_SIZE / --boot-size: the boot partition, fixed


def disk_identity(config: Config, image: Path) -> str:
    """What the GUIDs, UUIDs and FAT serial derive from: stable across directories and times."""
    names = [b.path for b in config.binaries() + config.rootfs_archives()]
    return "\0".join([image.name, config.uboot_script, *names])


def rootfs_identity(image: Path, archive: Binary) -> str:
    """What a rootfs partition's UUID and hash seed derive from: the disk's name, the key and
    the archive's path only, so renaming a kernel leaves every rootfs partition's bytes alone."""
    return "\0".join([image.name, archive.key, archive.path])


def rootfs_builder() -> tuple[str, str]:
    """How rootfs partitions are built here: (`archive` or `extract`, mke2fs's release)."""
    return rootfs_path(), ".".join(map(str, mke2fs_version()))


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


def landed_partition(image: str, boot: BootPartitionInput | None) -> None:
    """A partition image that came from the cache: the records a build leaves beside it. A FAT
    boot image (`boot`: what it was built from) gets the update manifest read from its own
    clusters and a changes record saying all of it is new, so its next change is an update
    in place (`fat_update.adopt_fat_image`)."""
    if boot is not None:
        adopt_fat_image(image, [BootFile(path, src) for path, src in boot.files],
                        volume_id=derive_volume_id(boot.identity, "boot"), label="BOOT",
                        epoch=boot.epoch)
    _mark_built(image)


def write_boot_partition(part: BootPartitionInput, out: str) -> None:
    """The boot partition image `out`: FAT, updated in place when only file contents changed
    (`fat_update`), else rebuilt; or ext4 as the original (`--boot-fs ext4`)."""
    if part.boot_fs == "fat":
        write_fat_image(out, [BootFile(path, src) for path, src in part.files],
                        volume_id=derive_volume_id(part.identity, "boot"), label="BOOT",
                        epoch=part.epoch)
    else:
        _write_ext4_boot_partition(part.files, part.identity, part.epoch, out)
    _mark_built(out)


def _write_ext4_boot_partition(files: tuple[tuple[str, Path], ...], identity: str, epoch: int,
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


def write_rootfs_partition(part: RootfsPartitionInput, out: str) -> None:
    """One rootfs partition image `out`: ext4 from the archive, no root (formats.rootfs)."""
    build_rootfs_image(_ext4_spec(part.archive, part.key, part.label, part.slack_mib,
                                  part.epoch, part.identity, dict(part.extra)), Path(out))
    _mark_built(out)


def write_disk(table: DiskTableInput, image: str) -> None:
    """disk.img: the partition table and the partitions, updated in place (`assemble_disk`)."""
    identity = table.identity
    boot_size = None
    if table.boot_mib is not None:
        boot_size = table.boot_mib * MIB
        need = os.stat(table.parts[0][2]).st_size
        if need > boot_size:
            raise UserError(f"BOOT_PARTITION_SIZE (--boot-size): the boot partition's image is "
                            f"{-(-need // MIB)} MiB (its files and {BOOT_SLACK_MIB} MiB), more "
                            f"than the {table.boot_mib} MiB given")
    # The boot partition stays number 1 but lies after the rootfs partitions, so a kernel that
    # grows never moves them (see README, "A stable layout").
    partitions = [PartitionImage(name, BASIC_DATA if kind == "fat" else LINUX_FILESYSTEM,
                                 derive_guid(identity, "partition", name), path,
                                 size=boot_size if number == 0 else None,
                                 mbr_type=_mbr_type(kind, path), bootable=number == 0,
                                 last=number == 0)
                  for number, (name, kind, path) in enumerate(table.parts)]
    assemble_disk(image, derive_guid(identity, "disk"), partitions, table.table,
                  table.power_of_two)


def _mbr_type(kind: str, path: Path) -> int:
    # A DOS type byte must name the FAT type the image really holds (FAT16 or FAT32).
    if kind != "fat":
        return LINUX
    with open(path, "rb") as image:
        return fat_partition_type(image.read(512))


# ---- tasks --------------------------------------------------------------------------------------

def disk_tasks(config: Config, options: DiskOptions, epoch: int,
               generated: Sequence[Path] | None = None, prefix: str = "") -> Iterator[TaskDict]:
    """The partition and disk tasks; run them together with `boot.boot_tasks`.

    `generated` and `prefix` as for `disk_contents.boot_files`; `epoch` (seconds since 1970)
    is every file's time. Each task keys on the frozen input its action builds from."""
    identity = disk_identity(config, options.image)
    work = options.work
    boot_image = str(work / f"boot.{'vfat' if config.boot_fs == 'fat' else 'ext4'}")
    boot = BootPartitionInput(tuple(boot_files(config, generated, prefix)), config.boot_fs,
                              identity, epoch)
    yield {
        "basename": "ib_partition",
        "name": "boot",
        "doc": "the boot partition: every file the boot script loads",
        "actions": [cached_action(options.cache, "ib_partition:boot", boot, config.root_dir,
                                  [str(src) for _, src in boot.files], [boot_image],
                                  ("pyfatfs",) if config.boot_fs == "fat" else ("e2fsprogs",),
                                  (landed_partition,
                                   (boot_image, boot if config.boot_fs == "fat" else None)),
                                  write_boot_partition, boot, boot_image)],
        "file_dep": [str(src) for _, src in boot.files],
        "targets": [boot_image, built_marker(boot_image)] + (
            [str(manifest_path(boot_image)), str(changes_path(boot_image))]
            if config.boot_fs == "fat" else []),
        "uptodate": keyed(boot, config, by_content=False),
        "clean": True,
    }
    parts = [("Linux1", config.boot_fs, Path(boot_image))]
    rootfs: list[tuple[str, Binary, dict[str, bytes]]] = []
    if config.dom0_rootfs:
        rootfs.append(("dom0", config.dom0_rootfs, xl_configs(config, prefix)))
    rootfs += [(f"domU{d.index}", d.rootfs, {}) for d in config.domus if d.rootfs]
    builder = rootfs_builder() if rootfs else ("", "")
    for number, (name, archive, extra) in enumerate(rootfs, start=2):
        image = str(work / f"{name}.ext4")
        part = RootfsPartitionInput(config.root_dir / archive.path, archive.key,
                                    f"vos_{number}", options.slack_mib, epoch,
                                    rootfs_identity(options.image, archive),
                                    tuple(sorted(extra.items())), builder)
        yield {
            "basename": "ib_partition",
            "name": name,
            "doc": f"{archive.key} as an ext4 partition",
            "actions": [cached_action(options.cache, f"ib_partition:{name}", part,
                                      config.root_dir, [str(part.archive)], [image],
                                      ("e2fsprogs",), (landed_partition, (image, None)),
                                      write_rootfs_partition, part, image)],
            "file_dep": [str(part.archive)],
            "targets": [image, built_marker(image)],
            "uptodate": keyed(part, config, by_content=False),
            "clean": True,
        }
        parts.append((f"Linux{number}", "ext4", Path(image)))
    image_path = str(options.image)
    table = DiskTableInput(identity, tuple(parts), config.partition_table, options.power_of_two,
                           config.boot_partition_mib)
    yield {
        "basename": "ib_disk",
        "doc": "the disk image: partition table and partitions, updated in place",
        "actions": [(run_step, [write_disk, table, image_path])],
        "file_dep": [built_marker(str(p[2])) for p in parts],
        "targets": [image_path, image_path + ".parts.json"],
        "uptodate": keyed(table, config, by_content=False),
        "clean": True,
    }
    yield bmap_task(config, image_path, work / "bmap.json")


def disk_outputs(options: DiskOptions) -> list[Path]:
    """The user-visible outputs of the disk tasks: the image, its partition record and its
    block map."""
    return [options.image, Path(f"{options.image}.parts.json"), bmap_path(options.image)]


def all_tasks(config: Config, options: DiskOptions, epoch: int, boot: Config | None = None,
              copied: Sequence[Path] = ()) -> Iterator[dict[str, Any]]:
    """The boot graph of `boot` (default `config`: the boot files are generated with the
    disk's own flags) and the disk tasks of `config`; with `boot` None the script is the
    user's, `copied` as it is (see `chain.plan_boot_script`)."""
    if boot is None and copied:
        yield from disk_tasks(config, options, epoch, list(copied))
        return
    boot = boot if boot is not None else config
    yield from boot_tasks(boot, epoch, options.cache)
    yield from disk_tasks(config, options, epoch, outputs(boot), boot.boot.prepend_path)
