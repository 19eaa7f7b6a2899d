"""disk-image at real sizes against its floor and genimage, in one run.

    python benchmarks/bench_rootfs_floor.py [--files 16000] [--megabytes 400] [--many 100000]
                                            [--keep DIR]

Two deterministic rootfs archives (tar.gz, made from a seeded generator, so every run measures
the same bytes): FILES files of about MEGABYTES MB in all (binaries-like data that gzip shrinks
about 2x, in a Debian-like tree), and MANY small files. For each, with a dom0 kernel of 30 MB
and a domU, it prints:

- ours: the whole `ibtasks disk-image` command (Python start-up and doit included), wall time
  and the peak RSS of the largest process it ran;
- the floor: `gzip -dc ARCHIVE > /dev/null` plus `mke2fs -d ARCHIVE` of the same archive into
  an image of our size, each timed alone (one pass to learn the size, one to build: no tool
  can do less without being told the size);
- genimage (when installed; Debian: `apt-get install genimage`): the archive extracted under
  fakeroot and genimage's ext4 + hdimage for the same layout, under the same fakeroot;
- the no-op: the same command again, and its ratio to the full build;
- the kernel-grows rebuild: dom0's kernel grows by 3 MB; the rebuild's time against one copy of
  the boot partition image, against the same rebuild done with standard tools (`mkfs.fat` and
  `mcopy` of the boot files into a new image, `dd conv=notrunc` of it into a copy of the disk:
  no boot script, no checks, no block map), and against our start-up alone (Python with doit
  and our modules imported); and whether every rootfs partition kept its offset and bytes.

Our package is byte-compiled first (`compileall`), as an installed one is: with
PYTHONDONTWRITEBYTECODE set, an editable install would compile its modules on every run.

Aims (issue: disks at real sizes): full build <= 1.2x the floor and <= 0.3x genimage; no-op
<= 0.02x; kernel-grows rebuild <= 2x the boot partition copy, rootfs untouched; peak RSS under
300 MB for the MANY-file archive. Ratios are printed, never asserted (timings vary by machine).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import resource
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "examples" / "embed"))
from make_inputs import arm64_image, make_inputs  # noqa: E402

CONFIG = """MEMORY_START=0x40000000
MEMORY_END=0x80000000
DEVICE_TREE=board.dtb
XEN=xen
DOM0_KERNEL=Image
DOM0_RAMDISK=initrd.cpio
DOM0_ROOTFS=rootfs.tar.gz
NUM_DOMUS=1
DOMU_KERNEL[0]=Image-domU
DOMU_RAMDISK[0]=initrd.cpio
"""
DIRS = ("usr/bin", "usr/sbin", "usr/lib/aarch64-linux-gnu", "usr/share/doc", "usr/share/locale",
        "etc", "var/lib/dpkg/info", "usr/lib/python3/dist-packages", "usr/share/man/man1")
GENIMAGE = """image dom0.ext4 {{
    ext4 {{ use-mke2fs = true
             extraargs = "-N {inodes}" }}
    size = {rootfs_mib}M
    mountpoint = "/"
}}
image boot.vfat {{
    vfat {{ files = {{ "xen", "Image", "Image-domU", "board.dtb", "initrd.cpio", "boot.scr" }} }}
    size = {boot_mib}M
}}
image disk.img {{
    hdimage {{ partition-table-type = "gpt" }}
    partition boot {{ image = "boot.vfat" }}
    partition dom0 {{ image = "dom0.ext4" }}
}}
"""
SECTOR = 512


def file_data(rng: random.Random, size: int) -> bytes:
    """About half random, half repeated words: gzip shrinks it about 2x, as real binaries."""
    half = size // 2
    words = b"".join(rng.choice((b"libc.so.6 ", b"GLIBC_2.17 ", b"\x00\x00\x00\x00", b"main "))
                     for _ in range(64))
    return rng.randbytes(half) + (words * (1 + (size - half) // len(words)))[: size - half]


def make_archive(path: Path, files: int, megabytes: int, seed: int) -> None:
    """A deterministic tar.gz of `files` files of `megabytes` MB in all, in Debian-like dirs.

    (e2fsprogs inserts into a directory in linear time: 100k files as 11k a directory took
    48 s here, floor and ours alike; 1000 a directory, 10 s.)"""
    if path.exists():
        return
    rng = random.Random(seed)
    # Sizes: most files small, a few large (a long tail), scaled to the total.
    weights = [rng.paretovariate(1.2) for _ in range(files)]
    scale = megabytes * 1_000_000 / sum(weights)
    plain = path.with_suffix("")  # rootfs.tar
    with tarfile.open(plain, "w", format=tarfile.GNU_FORMAT) as tar:
        names = [f"{DIRS[n % len(DIRS)]}/g{n // 9000:03d}/f{n:06d}" for n in range(files)]
        for directory in sorted({d for name in names for d in _parents(name)[:-1]}):
            info = tarfile.TarInfo(directory)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 1_700_000_000
            tar.addfile(info)
        for n, weight in enumerate(weights):
            info = tarfile.TarInfo(names[n])  # at most 1000 files a directory, as real trees
            data = file_data(rng, int(weight * scale))
            info.size, info.mode, info.mtime = len(data), 0o755 if n % 3 else 0o644, 1_690_000_000
            tar.addfile(info, io.BytesIO(data))
    subprocess.run(["gzip", "-n", "-f", str(plain)], check=True)
    plain.with_suffix(".tar.gz").rename(path)


def _parents(name: str) -> list[str]:
    parts = name.split("/")
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def timed(argv: list[str], cwd: Path, **kw: object) -> tuple[float, int]:
    """Wall time and the peak RSS (KiB) of the largest process of one command run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, check=True, **kw)  # type: ignore[call-overload]
    wall = time.perf_counter() - start
    return wall, max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)


def ours(cwd: Path) -> tuple[float, int]:
    return timed([sys.executable, "-m", "ibtasks", "disk-image", "-c", "config", "-d", ".", "-t",
                  "sd", "-o", "disk.img"], cwd, capture_output=True)


def inode_count(image: Path) -> str:
    out = subprocess.run(["dumpe2fs", "-h", str(image)], check=True, capture_output=True,
                         text=True).stdout
    return next(line.split(":")[1].strip() for line in out.splitlines()
                if line.startswith("Inode count:"))


def floor(cwd: Path, image_size: int, inodes: str) -> float:
    gunzip, _ = timed(["sh", "-c", "gzip -dc rootfs.tar.gz > /dev/null"], cwd)
    image = cwd / "floor.ext4"
    with open(image, "wb") as out:
        out.truncate(image_size)
    mke2fs, _ = timed(["mke2fs", "-q", "-F", "-t", "ext4", "-N", inodes, "-d", "rootfs.tar.gz",
                       str(image)],
                      cwd, env={**os.environ, "SOURCE_DATE_EPOCH": "1700000000"})
    image.unlink()
    return gunzip + mke2fs


def genimage(cwd: Path, rootfs_mib: int, boot_mib: int, inodes: str) -> float | None:
    if shutil.which("genimage") is None:
        return None
    work = cwd / "genimage"
    shutil.rmtree(work, ignore_errors=True)
    for name in ("root", "input", "tmp", "out"):
        (work / name).mkdir(parents=True)
    (work / "genimage.cfg").write_text(GENIMAGE.format(rootfs_mib=rootfs_mib, boot_mib=boot_mib,
                                                       inodes=inodes))
    script = (f"tar -xzf {shlex.quote(str(cwd / 'rootfs.tar.gz'))} -C root && genimage "
              "--config genimage.cfg --rootpath root --tmppath tmp --inputpath .. "
              "--outputpath out")
    try:
        wall, _ = timed(["fakeroot", "sh", "-c", script], work, capture_output=True, text=True)
    except subprocess.CalledProcessError as exc:
        errors = [x for x in exc.stderr.splitlines() if "ERROR" in x or "rror" in x]
        print(f"genimage failed: {(errors or exc.stderr.strip().splitlines())[-3:]}")
        return None
    shutil.rmtree(work, ignore_errors=True)
    return wall


def startup(cwd: Path) -> float:
    """One Python start with doit and the modules a disk-image run loads, imported."""
    wall, _ = timed([sys.executable, "-c", "import doit, ibtasks.cli.disk_image, "
                     "ibtasks.tasks.disk, ibtasks.tasks.boot, ibtasks.formats.fat"], cwd)
    return wall


def tools_rebuild(work: Path, disk: Path, boot: Path, start: int) -> float:
    """The kernel-grows rebuild with standard tools: a new FAT image of the same size holding
    the boot partition's files (taken from ours, not timed), written into a copy of the disk
    at the boot partition's place (`start`, in sectors)."""
    files = work / "boot-files"
    shutil.rmtree(files, ignore_errors=True)
    files.mkdir()
    subprocess.run(["mcopy", "-s", "-n", "-i", str(boot), "::/*", str(files)], check=True)
    copy = work / "disk-tools.img"
    subprocess.run(["cp", "--sparse=always", str(disk), str(copy)], check=True)
    os.sync()  # the copy's writeback is not the rebuild's
    names = " ".join(shlex.quote(str(p)) for p in sorted(files.iterdir()))
    script = (f"rm -f b.vfat && truncate -s {boot.stat().st_size} b.vfat && "
              f"mkfs.fat b.vfat >/dev/null && mcopy -s -i b.vfat {names} ::/ && "
              f"dd if=b.vfat of={copy.name} bs={SECTOR} seek={start} conv=notrunc,sparse "
              "status=none")
    wall, _ = timed(["sh", "-c", script], work)
    copy.unlink()
    (work / "b.vfat").unlink()
    shutil.rmtree(files)
    return wall


def partitions(disk: Path) -> list[tuple[str, int, int]]:
    out = subprocess.run(["sfdisk", "--json", str(disk)], check=True, capture_output=True).stdout
    return [(p["name"], p["start"], p["size"]) for p in json.loads(out)["partitiontable"]
            ["partitions"]]


def digest(disk: Path, start: int, size: int) -> str:
    sha = hashlib.sha256()
    with open(disk, "rb") as f:
        f.seek(start * SECTOR)
        left = size * SECTOR
        while left:
            chunk = f.read(min(left, 1 << 24))
            sha.update(chunk)
            left -= len(chunk)
    return sha.hexdigest()


def measure(name: str, archive: Path, base: Path) -> None:
    work = base / name
    shutil.rmtree(work, ignore_errors=True)
    make_inputs(work)
    (work / "Image").write_bytes(arm64_image(30 * 1024 * 1024))
    os.link(archive, work / "rootfs.tar.gz")
    (work / "config").write_text(CONFIG)
    full, rss = ours(work)
    noop, _ = ours(work)
    disk = work / "disk.img"
    parts = partitions(disk)
    before = {p[0]: (p[1], digest(disk, p[1], p[2])) for p in parts}
    rootfs_bytes = (work / ".ibtasks" / "dom0.ext4").stat().st_size
    boot = work / ".ibtasks" / "boot.vfat"
    inodes = inode_count(work / ".ibtasks" / "dom0.ext4")
    low = floor(work, rootfs_bytes, inodes)
    gen = genimage(work, rootfs_bytes >> 20, max(boot.stat().st_size >> 20, 64), inodes)
    with open(work / "Image", "ab") as kernel:
        kernel.write(bytes(3_000_000))
    # The builds before (ours, the floor, genimage) leave hundreds of MiB to write back; each
    # rebuild measurement starts with none pending, as a developer's next build would.
    os.sync()
    grown, _ = ours(work)
    after = {p[0]: (p[1], digest(disk, p[1], p[2])) for p in partitions(disk)}
    os.sync()
    start = time.perf_counter()
    shutil.copyfile(boot, work / "boot-copy.vfat")
    copy = time.perf_counter() - start
    boot_start = next(p[1] for p in partitions(disk) if p[0] == "Linux1")
    os.sync()
    tools = tools_rebuild(work, disk, boot, boot_start)
    begin = startup(work)
    kept = all(after[n] == before[n] for n in before if n != "Linux1")
    print(f"== {name}: {archive.stat().st_size / 1e6:.0f} MB archive, rootfs partition "
          f"{rootfs_bytes >> 20} MiB")
    print(f"ours (whole command):   {full:7.2f} s   peak RSS {rss / 1024:6.0f} MB "
          f"(aim < 300 MB for the many-file archive)")
    print(f"floor (gunzip + mke2fs -d archive): {low:7.2f} s   ours / floor = {full / low:5.2f}x "
          "(aim <= 1.2x)")
    if gen is None:
        print("genimage: not installed (Debian: apt-get install genimage)")
    else:
        print(f"genimage under fakeroot: {gen:7.2f} s   ours / genimage = {full / gen:5.2f}x "
              "(aim <= 0.3x)")
    print(f"no-op:                  {noop:7.3f} s   no-op / full = {noop / full:6.3f}x "
          "(aim <= 0.02x)")
    print(f"kernel grows by 3 MB:   {grown:7.2f} s   / one copy of the boot partition "
          f"({copy:.3f} s) = {grown / copy:5.1f}x (aim <= 2x); rootfs partitions kept their "
          f"offsets and bytes: {kept}")
    print(f"  the same with standard tools (mkfs.fat + mcopy + dd): {tools:.3f} s   ours / "
          f"tools = {grown / tools:4.1f}x; our start-up alone (Python, doit, modules): "
          f"{begin:.3f} s = {begin / copy:4.1f}x the copy")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=16000)
    parser.add_argument("--megabytes", type=int, default=400)
    parser.add_argument("--many", type=int, default=100000)
    parser.add_argument("--keep", type=Path, help="keep the archives here between runs")
    args = parser.parse_args()
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(HERE.parent / "ibtasks")],
                   check=True)
    base = Path(tempfile.mkdtemp(prefix="ibtasks-bench-floor-"))
    store = args.keep or base
    store.mkdir(parents=True, exist_ok=True)
    try:
        big = store / f"rootfs-{args.files}-{args.megabytes}MB.tar.gz"
        many = store / f"rootfs-{args.many}-files.tar.gz"
        make_archive(big, args.files, args.megabytes, seed=16)
        make_archive(many, args.many, args.many // 500, seed=100)
        measure(f"files-{args.files}", big, base)
        measure(f"files-{args.many}", many, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
