"""Rootfs partitions: ext4 images made from cpio or tar archives as an ordinary user, reproducibly.

The fallback path (see formats.rootfs, which picks it) and the sizing both paths share.
e2fsprogs 1.47.0 (Debian 12) cannot read archives with `mkfs.ext4 -d`, so ONE `fakeroot` run
extracts the archive with libarchive (formats.archive) and runs `mkfs.ext4 -d` on the tree: owners
and device nodes exist only inside that run. libarchive reads every format and compression we
accept and already writes hard links, devices and setuid bits right; mke2fs lays out the inodes.
(A `debugfs -w` script per file measured as fast, but would re-implement both.) Measured here as
an unprivileged user: 54 MB / 1,501 entries in 1.0-1.3 s; 20,000 small files in about 9 s, most
of it fakeroot's per-syscall round trips. Then `debugfs -w` sets every inode's ctime and atime
(mke2fs copies them from the host) to the epoch, and the root directory to the archive's `./`
entry, so two builds give identical bytes.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import stat
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ibtasks.errors import UserError
from ibtasks.fsutil import make_temp_dir_beside, remove_tree, temp_prefix
from ibtasks.lifetime import die_with_parent_now, faked_session
from ibtasks.tools import (
    DEBUGFS,
    DUMPE2FS,
    MKFS_EXT4,
    fakeroot_pair,
    find_tool,
    mke2fs_version,
    run_tool,
)

BLOCK = 4096
MIB = 1 << 20
INODE_RATIO = 16384  # mke2fs.conf's default bytes per inode, used for the slack's inodes
FIRST_INO = 11  # inodes 1-10 are reserved, 11 is lost+found
MAX_EXTENT = 32768  # blocks in one initialised extent
EXTENTS_PER_BLOCK = (BLOCK - 12) // 12
ERROR_PREFIX = "ibtasks-error: "


@dataclass(frozen=True)
class RootfsSpec:
    """One rootfs partition: the user's archive and how its filesystem is stamped."""

    archive: Path
    key: str
    label: str
    slack_mib: int
    epoch: int
    uuid: str
    hash_seed: str
    extra_files: Mapping[str, bytes]


def check_rootfs_spec(spec: RootfsSpec) -> None:
    """What both rootfs builders check before any work: the archive can be opened and the
    slack (MiB) is not negative. Raises UserError naming `spec.key`."""
    try:
        with open(spec.archive, "rb"):
            pass
    except OSError as exc:
        raise UserError(f"{spec.archive}: cannot read: {exc.strerror}", spec.key) from exc
    if spec.slack_mib < 0:
        raise UserError(f"slack must be 0 MiB or more, got {spec.slack_mib}", spec.key)


@dataclass(frozen=True)
class TreeUsage:
    """Blocks and inodes an extracted tree takes in ext4 with 4 KiB blocks."""

    blocks: int
    inodes: int


def _tool_env(epoch: int) -> dict[str, str]:
    env = dict(os.environ)
    env["E2FSPROGS_FAKE_TIME"] = str(epoch)
    env["SOURCE_DATE_EPOCH"] = str(epoch)
    env["LC_ALL"] = "C.UTF-8"
    return env


def dir_blocks(names: list[str]) -> int:
    """Blocks of a linear ext4 directory: 8-byte entry headers, names padded to 4 bytes.

    Each block ends with a 12-byte checksum entry and may leave up to one maximal entry
    (8 + 255 bytes) unused, because entries never straddle blocks.
    """
    entries = sum(8 + (len(n.encode("utf-8", "surrogateescape")) + 3) // 4 * 4 for n in names)
    used = 12 + 12 + entries
    return max(1, math.ceil(used / (BLOCK - 12 - 264)))


def file_blocks(size: int) -> int:
    """Data blocks plus extent-tree blocks once the inode's four extents do not suffice."""
    data = math.ceil(size / BLOCK)
    # An extent covers up to 32768 blocks; a file may also be split where block groups keep
    # backup superblocks, so allow twice as many extents as the length alone needs.
    extents = 2 * math.ceil(data / MAX_EXTENT)
    index = 0 if extents <= 4 else math.ceil(extents / EXTENTS_PER_BLOCK) + 1
    return data + index


def measure_tree(root: Path) -> TreeUsage:
    """What `mkfs.ext4 -d root` will allocate for the tree (regular files counted as non-sparse)."""
    blocks = 0
    inodes = 0
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        names = dirnames + filenames
        blocks += dir_blocks(names)
        inodes += 1
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            st = os.lstat(os.path.join(dirpath, name))
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            inodes += 1
            if stat.S_ISREG(st.st_mode):
                blocks += file_blocks(st.st_size)
            elif stat.S_ISLNK(st.st_mode) and st.st_size >= 60:  # longer targets leave the inode
                blocks += 1
    return TreeUsage(blocks, inodes)


def _free_blocks(image: Path, epoch: int) -> tuple[int, int]:
    """Free and reserved blocks of a filesystem image, from `dumpe2fs -h`."""
    out = run_tool([find_tool(DUMPE2FS), "-h", str(image)], f"dumpe2fs failed on {image}",
                   env=_tool_env(epoch)).stdout
    fields = dict(re.findall(r"^([A-Za-z ]+):\s+(\d+)$", out, re.MULTILINE))
    return int(fields["Free blocks"]), int(fields["Reserved block count"])


def _mkfs_argv(spec: RootfsSpec, inodes: int, image: Path, source: Path | None) -> list[str]:
    argv = [find_tool(MKFS_EXT4), "-q", "-F", "-b", str(BLOCK), "-t", "ext4"]
    argv += ["-T", "default", "-I", "256", "-N", str(inodes), "-L", spec.label, "-U", spec.uuid]
    argv += ["-E", f"hash_seed={spec.hash_seed},root_owner=0:0"]
    # The same features whatever the host's mke2fs.conf says: e2fsprogs 1.47.1+ adds
    # orphan_file (Linux 5.15+ mounts it read-write) and metadata_csum_seed, which older
    # kernels and U-Boot's ext4 code may refuse, and which 1.47.0's builds never had.
    argv += ["-O", "^metadata_csum_seed" + (",^orphan_file" if mke2fs_version() >= (1, 47)
                                            else "")]
    if source is not None:
        argv += ["-d", str(source)]
    return [*argv, str(image)]


def make_filesystem(spec: RootfsSpec, inodes: int, image: Path, size: int,
                    source: Path | None) -> None:
    """Make the filesystem in a fresh sparse file `image` of `size` bytes with `inodes` inodes,
    filled from `source` (a directory or, with e2fsprogs 1.47.1+, an archive) when given.

    Every time mke2fs stamps is SOURCE_DATE_EPOCH (`spec.epoch`; 1.47.1+ also clamps the
    archive's times to it); raises UserError with mkfs.ext4's last line on failure."""
    with open(image, "wb") as out:
        out.truncate(size)
    run_tool(_mkfs_argv(spec, inodes, image, source), f"mkfs.ext4 failed on {spec.archive}",
             spec.key, env=_tool_env(spec.epoch))


def plan_filesystem(spec: RootfsSpec, usage: TreeUsage, probe: Path) -> tuple[int, int]:
    """Size in bytes (whole MiB) and inode count so the tree fits with `slack_mib` left free.

    mke2fs's own overhead (journal, inode tables, group descriptors, reserved blocks) is read
    from an empty filesystem of the candidate size rather than modelled.
    """
    slack = spec.slack_mib * MIB
    inodes = FIRST_INO + usage.inodes + slack // INODE_RATIO
    need = usage.blocks + slack // BLOCK
    size = math.ceil(need * BLOCK / MIB) * MIB
    for _ in range(16):
        make_filesystem(spec, inodes, probe, size, None)
        free, reserved = _free_blocks(probe, spec.epoch)
        short = need - (free - reserved)
        if short <= 0:
            return size, inodes
        size += math.ceil(short * BLOCK * 20 / 19 / MIB) * MIB  # the 5% reserve grows as well
    raise UserError(f"cannot size the filesystem for {spec.archive}", spec.key)


def _add_extra_files(tree: Path, extra: Mapping[str, bytes], spec: RootfsSpec) -> None:
    """Add files (mode 0644, root:root) and any missing parents (0755) to the extracted tree."""
    from ibtasks.formats.archive import normalize_member

    for name, data in sorted(extra.items()):
        rel = normalize_member(name)
        if not rel:
            raise UserError(f"extra file {name} is outside the root", spec.key)
        parent = tree
        for part in rel.split("/")[:-1]:
            parent = parent / part
            if not os.path.lexists(parent):
                parent.mkdir(mode=0o755)
                os.chown(parent, 0, 0)
            elif parent.is_symlink() or not parent.is_dir():
                raise UserError(
                    f"{spec.archive}: cannot add {name}: {parent.relative_to(tree)} is not a "
                    "directory in the archive",
                    spec.key,
                )
        target = tree / rel
        if target.is_dir() and not target.is_symlink():
            raise UserError(f"{spec.archive}: cannot add {name}: it is a directory", spec.key)
        target.unlink(missing_ok=True)
        target.write_bytes(data)
        os.chown(target, 0, 0)
        os.chmod(target, 0o644)


def _set_times(tree: Path, mtimes: Mapping[str, int], epoch: int) -> None:
    """Give every path its archive time clamped to the epoch (the epoch when not in the archive).

    Sorted order makes the result independent of the host's readdir order when hard links
    carry different times.
    """
    paths: list[str] = []
    for dirpath, dirnames, filenames in os.walk(tree):
        dirnames.sort()
        rel = os.path.relpath(dirpath, tree)
        base = "" if rel == "." else rel
        paths.extend(os.path.join(base, n) for n in sorted(dirnames + filenames))
    for rel in reversed(paths):
        when = mtimes.get(rel, epoch)
        os.utime(tree / rel, (when, when), follow_symlinks=False)


def _stage(job_file: str) -> None:
    """The part that runs under fakeroot: extract, add files, fix times, size, mkfs -d."""
    from ibtasks.formats.archive import extract_archive

    job = json.loads(Path(job_file).read_text())
    spec = RootfsSpec(
        archive=Path(job["archive"]),
        key=job["key"],
        label=job["label"],
        slack_mib=job["slack_mib"],
        epoch=job["epoch"],
        uuid=job["uuid"],
        hash_seed=job["hash_seed"],
        extra_files={k: base64.b64decode(v) for k, v in job["extra_files"].items()},
    )
    tree, image = Path(job["tree"]), Path(job["image"])
    os.umask(0o022)
    tree.mkdir(mode=0o755)
    done = extract_archive(spec.archive, spec.key, tree, spec.epoch)
    _add_extra_files(tree, spec.extra_files, spec)
    _set_times(tree, done.mtimes, spec.epoch)
    size, inodes = plan_filesystem(spec, measure_tree(tree), image)
    make_filesystem(spec, inodes, image, size, tree)
    root = done.root
    print(json.dumps({"size": size, "root": None if root is None else root.__dict__}))


def _used_inodes(image: Path, epoch: int) -> list[int]:
    """Inodes in use beyond the reserved ones, from the per-group free lists of `dumpe2fs`."""
    out = run_tool([find_tool(DUMPE2FS), str(image)], f"dumpe2fs failed on {image}",
                   env=_tool_env(epoch)).stdout
    per_group = int(re.search(r"^Inodes per group:\s+(\d+)$", out, re.MULTILINE).group(1))  # type: ignore[union-attr]
    used: list[int] = []
    for group, free_list in enumerate(re.findall(r"^\s+Free inodes: ?(.*)$", out, re.MULTILINE)):
        free: set[int] = set()
        for item in filter(None, (x.strip() for x in free_list.split(","))):
            lo, _, hi = item.partition("-")
            free.update(range(int(lo), int(hi or lo) + 1))
        first = group * per_group + 1
        used.extend(i for i in range(first, first + per_group) if i not in free)
    return [i for i in used if i == 2 or i >= FIRST_INO]


def _fix_inodes(spec: RootfsSpec, image: Path, root: Mapping[str, int] | None) -> None:
    """Set ctimes and atimes to the epoch and the root directory to the archive's `./` entry.

    mke2fs copies both from the host, where ctime is the extraction time and reading the tree
    updated atime; mtime already is the archive's, clamped.
    """
    lines: list[str] = []
    for ino in _used_inodes(image, spec.epoch):
        lines += [f"sif <{ino}> ctime @{spec.epoch}", f"sif <{ino}> atime @{spec.epoch}"]
    if root is not None:
        lines += [
            f"sif <2> mode 0{root['mode']:o}",
            f"sif <2> uid {root['uid']}",
            f"sif <2> gid {root['gid']}",
            f"sif <2> mtime @{root['mtime']}",
        ]
    with tempfile.NamedTemporaryFile("w", dir=image.parent, prefix=temp_prefix(image),
                                     suffix=".debugfs") as script:
        script.write("\n".join(lines) + "\n")
        script.flush()
        argv = [find_tool(DEBUGFS), "-w", "-f", script.name, str(image)]
        done = run_tool(argv, f"debugfs failed on {image}", spec.key,
                        env=_tool_env(spec.epoch), check=False)
    errors = [x for x in done.stderr.splitlines() if x.strip() and not x.startswith("debugfs ")]
    if done.returncode != 0 or errors:
        raise UserError(f"debugfs failed on {image}: {(errors or [done.stderr])[0]}", spec.key)


def build_rootfs_image(spec: RootfsSpec, image: Path) -> int:
    """Build the ext4 image of `spec.archive` at `image`, atomically; returns its size in bytes.

    The extracted tree lives in `.<image name>.ibtmp-<random>/` beside the image (removed
    afterwards; a build that was killed leaves it, and the next build removes it, see
    tasks.ownership); fakeroot, faked and the tools end with this process (ibtasks.lifetime).
    """
    fakeroot, faked = fakeroot_pair()
    check_rootfs_spec(spec)
    image = Path(image)
    try:
        work = make_temp_dir_beside(image)
    except OSError as exc:
        raise UserError(f"cannot write {image}: {exc.strerror}", spec.key) from exc
    try:
        job = {
            "archive": str(spec.archive),
            "key": spec.key,
            "label": spec.label,
            "slack_mib": spec.slack_mib,
            "epoch": spec.epoch,
            "uuid": spec.uuid,
            "hash_seed": spec.hash_seed,
            "extra_files": {k: base64.b64encode(v).decode() for k, v in spec.extra_files.items()},
            "tree": str(work / "tree"),
            "image": str(work / "image"),
        }
        (work / "job.json").write_text(json.dumps(job))
        env = _tool_env(spec.epoch)
        package_root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        with faked_session(faked) as faked_command:
            argv = [fakeroot, "--faked", faked_command, "--", sys.executable, "-m",
                    "ibtasks.formats.ext4", str(work / "job.json")]
            done = run_tool(argv, f"the rootfs stage failed on {spec.archive}", spec.key,
                            env=env, check=False)
        if done.returncode != 0:
            raise _stage_error(done.stderr, image, spec)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        _fix_inodes(spec, work / "image", result["root"])
        os.replace(work / "image", image)
        return int(result["size"])
    except OSError as exc:
        raise UserError(f"cannot write {image}: {exc.strerror}", spec.key) from exc
    finally:
        remove_tree(work)


def _stage_error(stderr: str, image: Path, spec: RootfsSpec) -> UserError:
    """The one-line error the fakeroot stage reported, or its last line if it crashed."""
    for line in stderr.splitlines():
        if line.startswith(ERROR_PREFIX):
            message = line[len(ERROR_PREFIX) :]
            if "No space left on device" in message or "no space left" in message:
                return UserError(f"cannot write {image}: no space left on device", spec.key)
            return UserError(message)
    lines = [x for x in stderr.splitlines() if x.strip()]
    raise RuntimeError(f"rootfs stage failed for {spec.archive}: {lines[-1] if lines else stderr}")


def _main(argv: list[str]) -> int:
    die_with_parent_now()  # our parent is fakeroot's shell, itself tied to the build
    try:
        _stage(argv[0])
    except UserError as exc:
        print(ERROR_PREFIX + str(exc), file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{ERROR_PREFIX}cannot write the filesystem tree: {exc.strerror}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
