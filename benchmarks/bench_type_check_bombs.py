"""Peak memory and time of the type check on compression bombs, through our CLI.

    python benchmarks/bench_type_check_bombs.py [--gib N]

Each bomb is a dom0 ramdisk: a small cpio followed by zeros, N GiB (default 4) once inflated,
written as a zstd frame of RLE blocks, a legacy lz4 stream (the kernel's format) of repeated
8 MiB blocks, and, for comparison, a multi-member gzip file. `ibtasks uboot-script-gen` runs on
a config naming it as DOM0_RAMDISK; the line for each shows the file size, the run's wall time
and the CLI process's peak RSS (from wait4, measured from a small intermediate process so the
benchmark's own memory does not count). The aim: under 50 MB and 1 s each. A plain cpio run
gives the floor. Needs `lz4` and `dtc`.
"""

from __future__ import annotations

import argparse
import gzip
import json
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "examples" / "embed"))
from make_inputs import make_inputs  # noqa: E402

MiB = 1024 * 1024
CONFIG = """MEMORY_START=0x40000000
MEMORY_END=0x80000000
DEVICE_TREE=board.dtb
XEN=xen
DOM0_KERNEL=Image
DOM0_RAMDISK=initrd.img
"""

# Runs in a fresh interpreter: spawns the CLI and reports its own rusage, so the peak RSS is
# the CLI's (a child exec'd straight from this big benchmark would inherit its high-water mark).
MEASURE = r"""
import json, os, sys, time
start = time.perf_counter()
pid = os.posix_spawn(sys.executable, [sys.executable, "-m", "ibtasks", *sys.argv[1:]],
                     os.environ, file_actions=[(os.POSIX_SPAWN_OPEN, 1, "/dev/null",
                                                os.O_WRONLY, 0)])
_, status, usage = os.wait4(pid, 0)
print(json.dumps({"seconds": time.perf_counter() - start, "rss": usage.ru_maxrss * 1024,
                  "status": os.waitstatus_to_exitcode(status)}))
"""


def zstd_bomb(head: bytes, inflated: int) -> bytes:
    """A zstd frame (RFC 8878): `head` as a raw block, then RLE blocks of 128 KiB of zeros."""
    block = 128 * 1024
    out = bytearray(struct.pack("<I", 0xFD2FB528) + bytes([0x00, 0x50]))  # 1 MiB window
    out += struct.pack("<I", len(head) << 3)[:3] + head  # Raw_Block
    count = (inflated - len(head)) // block
    for n in range(count):
        last = int(n == count - 1)
        out += struct.pack("<I", (block << 3) | (1 << 1) | last)[:3] + b"\0"  # RLE_Block
    return bytes(out)


def lz4_legacy_bomb(head: bytes, inflated: int) -> bytes:
    """A legacy lz4 stream: 8 MiB blocks made by `lz4 -l`, the first starting with `head`."""
    def blocks(data: bytes) -> bytes:
        done = subprocess.run(["lz4", "-l", "-q", "-c"], input=data, capture_output=True,
                              check=True).stdout
        return done[4:]  # without the magic

    block = 8 * MiB
    first = blocks(head + bytes(block - len(head)))
    zeros = blocks(bytes(block))
    return struct.pack("<I", 0x184C2102) + first + zeros * (inflated // block - 1)


def gzip_bomb(head: bytes, inflated: int) -> bytes:
    """Multi-member gzip: 64 MiB members of zeros, the first starting with `head`."""
    member = 64 * MiB
    first = gzip.compress(head + bytes(member - len(head)), compresslevel=9, mtime=0)
    zeros = gzip.compress(bytes(member), compresslevel=9, mtime=0)
    return first + zeros * (inflated // member - 1)


def run(work: Path) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", MEASURE, "uboot-script-gen", "-c", "config",
                           "-d", ".", "-t", "tftp"], cwd=work, capture_output=True, text=True,
                          check=True)
    result: dict[str, float] = json.loads(done.stdout)
    if result["status"] != 0:
        print(done.stderr.strip(), file=sys.stderr)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=int, default=4, help="inflated size of each bomb, GiB")
    inflated = parser.parse_args().gib * 1024 * MiB
    bombs: dict[str, Callable[[bytes, int], bytes] | None] = {
        "plain cpio": None, "zstd": zstd_bomb, "lz4 (legacy)": lz4_legacy_bomb,
        "gzip (multi-member)": gzip_bomb}
    print(f"{'DOM0_RAMDISK':<20} {'file':>12} {'inflated':>10} {'exit':>4} {'time':>8} "
          f"{'peak RSS':>9}")
    with tempfile.TemporaryDirectory(prefix="ibtasks-bombs-") as tmp:
        for name, make in bombs.items():
            work = Path(tmp) / name.split()[0]
            make_inputs(work)
            (work / "config").write_text(CONFIG)
            cpio = (work / "initrd.cpio").read_bytes()
            data = cpio if make is None else make(cpio, inflated)
            (work / "initrd.img").write_bytes(data)
            result = run(work)
            size = "-" if make is None else f"{inflated / 1024 / MiB:.0f} GiB"
            print(f"{name:<20} {len(data):>12,} {size:>10} {result['status']:>4} "
                  f"{result['seconds']:>7.2f}s {result['rss'] / MiB:>6.1f} MB", flush=True)


if __name__ == "__main__":
    main()
