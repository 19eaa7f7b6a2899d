"""Work that grows with the input: a board DTB of 5k/20k/50k nodes, and a 100k-entry rootfs.

    python benchmarks/bench_large_inputs.py [--nodes 5000,20000,50000] [--entries 100000]

Part 1 runs `ibtasks uboot-script-gen` (the DTB's check, the layout, the /chosen edits with a
cpupool's phandle allocation, the edited DTB) on a generated DTB whose `/bus` holds N device
nodes, and prints wall time, peak RSS and the time per node: that column should stay flat
(it was quadratic: 20k nodes 39 s, 50k nodes 390 s).

Part 2 builds an ext4 image from a rootfs with one directory of 100k empty files: `mkfs.ext4
-d DIR` of the system's e2fsprogs (1.47.0 on Debian 12, what `disk-image` runs under fakeroot)
against e2fsprogs 1.47.2's `mke2fs -d archive.tar` (no extraction, no fakeroot). The 1.47.2
binary is taken from $IBTASKS_MKE2FS; its own libraries are used when they sit beside it
(`<root>/lib/x86_64-linux-gnu` after `dpkg -x`). To get it without touching the system's
e2fsprogs (Debian 12):

    mkdir -p /tmp/bpo/lists/partial /tmp/bpo/cache/archives/partial /tmp/bpo/deb
    echo 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg]' \\
         'http://deb.debian.org/debian bookworm-backports main' > /tmp/bpo/sources.list
    printf '%s\\n' 'Dir::Etc::sourcelist "/tmp/bpo/sources.list";' \\
        'Dir::Etc::sourceparts "-";' 'Dir::State::Lists "/tmp/bpo/lists";' \\
        'Dir::Cache "/tmp/bpo/cache";' > /tmp/bpo/apt.conf
    export APT_CONFIG=/tmp/bpo/apt.conf; apt-get update
    cd /tmp/bpo/deb && apt-get download e2fsprogs/bookworm-backports \\
        libext2fs2/bookworm-backports libcom-err2/bookworm-backports libss2/bookworm-backports
    for f in *.deb; do dpkg -x "$f" /tmp/bpo/root; done
    export IBTASKS_MKE2FS=/tmp/bpo/root/sbin/mke2fs

Without it, part 2 measures 1.47.0 only and says how to get 1.47.2.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "examples" / "embed"))
from make_inputs import arm64_image  # noqa: E402

from ibtasks.formats.dtb.tree import (  # noqa: E402
    cells_value,
    new_node,
    new_tree,
    strings_value,
    write_dtb,
)

CONFIG = """MEMORY_START=0x40000000
MEMORY_END=0x80000000
DEVICE_TREE=big.dtb
XEN=xen
DOM0_KERNEL=Image
NUM_CPUPOOLS=1
CPUPOOL[0]="cpu@0,cpu@1 credit2"
"""


def big_dtb(nodes: int) -> bytes:
    """RAM at 1 GiB, two CPUs without phandles, and `nodes` devices with phandles under /bus."""
    devices = tuple(new_node(f"device@{i:x}", (("compatible", strings_value("vendor,device")),
                                               ("reg", cells_value(i, 0x10)),
                                               ("phandle", cells_value(i + 1))))
                    for i in range(nodes))
    cpus = new_node("cpus", (("#address-cells", cells_value(1)), ("#size-cells", cells_value(0))),
                    tuple(new_node(f"cpu@{i}", (("device_type", strings_value("cpu")),
                                                ("reg", cells_value(i)))) for i in range(2)))
    return write_dtb(new_tree(new_node("", (("#address-cells", cells_value(2)),
                                            ("#size-cells", cells_value(2))), (
        new_node("chosen"), cpus,
        new_node("memory@40000000", (("device_type", strings_value("memory")),
                                     ("reg", cells_value(0, 0x40000000, 0, 0x80000000)))),
        new_node("bus", (("#address-cells", cells_value(1)), ("#size-cells", cells_value(1))),
                 devices)))))


def measured(argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None
             ) -> tuple[float, int]:
    """Run `argv`; (wall seconds, peak RSS in KiB of that process).

    The peak RSS comes from GNU time (`/usr/bin/time -f %M`, package `time`): the rusage of a
    child of this script would start from this script's own size, copied at fork.
    """
    gnu_time = Path("/usr/bin/time")
    with tempfile.NamedTemporaryFile(prefix="rss.") as rss_file:
        wrapped = [str(gnu_time), "-f", "%M", "-o", rss_file.name, *argv] \
            if gnu_time.exists() else argv
        start = time.perf_counter()
        proc = subprocess.Popen(wrapped, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            stderr = proc.stderr.read().decode() if proc.stderr else ""
            raise SystemExit(f"{' '.join(argv)} failed ({code}): {stderr}")
        text = Path(rss_file.name).read_text().strip()
    return elapsed, int(text.splitlines()[-1]) if text else usage.ru_maxrss


def bench_dtb(sizes: list[int], base: Path, repeat: int) -> None:
    print("Part 1: uboot-script-gen on a DTB of N nodes (check, layout, edits, edited DTB); "
          f"best of {repeat} cold runs")
    print(f"{'nodes':>8} {'DTB bytes':>11} {'seconds':>9} {'peak RSS MiB':>13} {'us/node':>9}")
    for nodes in sizes:
        work = base / f"dtb-{nodes}"
        work.mkdir()
        (work / "big.dtb").write_bytes(big_dtb(nodes))
        (work / "xen").write_bytes(arm64_image(3_000_000))
        (work / "Image").write_bytes(arm64_image(5_000_000))
        (work / "config").write_text(CONFIG)
        runs = []
        for _ in range(repeat):
            shutil.rmtree(work / ".ibtasks", ignore_errors=True)
            runs.append(measured([sys.executable, "-m", "ibtasks", "uboot-script-gen",
                                  "-c", "config", "-d", ".", "-t", "tftp"], cwd=work))
        seconds, rss = min(runs)
        size = (work / "big.dtb").stat().st_size
        print(f"{nodes:>8} {size:>11} {seconds:>9.2f} {rss / 1024:>13.1f} "
              f"{seconds / nodes * 1e6:>9.1f}")
        shutil.rmtree(work)


def mke2fs_1_47_2() -> tuple[str, dict[str, str]] | None:
    """$IBTASKS_MKE2FS and an environment whose LD_LIBRARY_PATH finds its own libext2fs."""
    binary = os.environ.get("IBTASKS_MKE2FS")
    if not binary:
        return None
    env = dict(os.environ)
    libs = [str(p.parent) for p in Path(binary).resolve().parent.parent.glob("**/libext2fs.so.2")]
    if libs:
        env["LD_LIBRARY_PATH"] = ":".join([*libs, env.get("LD_LIBRARY_PATH", "")]).rstrip(":")
    return binary, env


def bench_rootfs(entries: int, base: Path) -> None:
    print(f"\nPart 2: ext4 from a rootfs with one directory of {entries} empty files")
    tree = base / "rootfs"
    (tree / "many").mkdir(parents=True)
    for i in range(entries):
        (tree / "many" / f"f{i:06d}").touch()
    archive = base / "rootfs.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(tree, arcname=".")
    image = base / "rootfs.ext4"
    common = ["-q", "-F", "-t", "ext4", "-b", "4096", "-N", str(entries + 1000)]
    mkfs = shutil.which("mkfs.ext4") or "/usr/sbin/mkfs.ext4"
    version = subprocess.run([mkfs, "-V"], capture_output=True, text=True).stderr.split("\n")[0]
    seconds, rss = measured([mkfs, *common, "-d", str(tree), str(image), "512M"])
    print(f"  system {version}: mkfs.ext4 -d DIR          {seconds:6.2f} s, "
          f"peak RSS {rss / 1024:.1f} MiB")
    found = mke2fs_1_47_2()
    if found is None:
        print("  e2fsprogs 1.47.2: not measured; set IBTASKS_MKE2FS to its mke2fs "
              "(see this script's docstring for getting it from bookworm-backports)")
        return
    binary, env = found
    version = subprocess.run([binary, "-V"], capture_output=True, text=True,
                             env=env).stderr.split("\n")[0]
    image.unlink()
    seconds, rss = measured([binary, *common, "-d", str(archive), str(image), "512M"], env=env)
    print(f"  {version}: mke2fs -d archive.tar  {seconds:6.2f} s, peak RSS {rss / 1024:.1f} MiB")
    check = subprocess.run(["/usr/sbin/e2fsck", "-fn", str(image)], capture_output=True,
                           text=True)
    listing = subprocess.run(["/usr/sbin/debugfs", "-R", "ls -p /many", str(image)],
                             capture_output=True, text=True).stdout.splitlines()
    files = sum(1 for line in listing if line.split("/")[5:6] not in ([], [""], ["."], [".."]))
    print(f"  its image: e2fsck -fn exit {check.returncode}, /many holds {files} entries")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", default="5000,20000,50000")
    parser.add_argument("--entries", type=int, default=100_000, help="0: skip part 2")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ibtasks-bench-large.") as tmp:
        bench_dtb([int(n) for n in args.nodes.split(",")], Path(tmp), args.repeat)
        if args.entries:
            bench_rootfs(args.entries, Path(tmp))


if __name__ == "__main__":
    main()
