"""Our uboot-script-gen against the original bash script, same machine, same inputs, one run.

    python benchmarks/bench_uboot_script_gen.py [--repeat N]

Prints the median times and the ratios the core issue aims at: cold <= 0.5x and no-op <= 0.3x
the bash script, and a no-op with a 200 MB kernel as fast as with a 2 MB one (no re-hashing).

The original script is not part of this repository. The benchmark looks for it at
$IMAGEBUILDER_SEED (default /tmp/oracle/seed/scripts/uboot-script-gen). To get it:
    git clone https://github.com/vmayoral/imagebuilder /tmp/oracle/seed
    git -C /tmp/oracle/seed checkout 79cd8f3
It needs `mkimage` (u-boot-tools) and `file`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "examples" / "embed"))
from make_inputs import arm64_image, make_inputs  # noqa: E402

SEED = Path(os.environ.get("IMAGEBUILDER_SEED", "/tmp/oracle/seed/scripts/uboot-script-gen"))

CONFIG = """MEMORY_START=0x40000000
MEMORY_END=0x80000000
DEVICE_TREE=board.dtb
XEN=xen
DOM0_KERNEL=Image
DOM0_RAMDISK=initrd.cpio
NUM_DOMUS=2
DOMU_KERNEL[0]=Image-domU
DOMU_RAMDISK[0]=initrd.cpio
DOMU_KERNEL[1]=Image-domU
DOMU_RAMDISK[1]=initrd.cpio
UBOOT_SOURCE=boot.source
UBOOT_SCRIPT=boot.scr
"""


def timed(argv: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def fresh_inputs(base: Path, name: str, kernel_size: int = 0) -> Path:
    work = base / name
    make_inputs(work)
    if kernel_size:
        (work / "Image").write_bytes(arm64_image(kernel_size))
    (work / "config").write_text(CONFIG)
    return work


def ours(cwd: Path) -> list[str]:
    return [sys.executable, "-m", "ibtasks", "uboot-script-gen", "-c", "config", "-d", ".",
            "-t", "tftp"]


def median_of(repeat: int, make: callable, argv_of: callable) -> float:  # type: ignore[valid-type]
    times = []
    for n in range(repeat):
        cwd = make(n)
        times.append(timed(argv_of(cwd), cwd))
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if not SEED.is_file():
        print(f"original script not found at {SEED}: set IMAGEBUILDER_SEED or clone it as this "
              "file's docstring says", file=sys.stderr)
        return 2
    base = Path(tempfile.mkdtemp(prefix="ibtasks-bench-"))
    try:
        bash = median_of(args.repeat, lambda n: fresh_inputs(base, f"bash{n}"),
                         lambda cwd: ["bash", str(SEED), "-c", "config", "-d", ".", "-t", "tftp"])
        cold = median_of(args.repeat, lambda n: fresh_inputs(base, f"cold{n}"), ours)
        noop_dir = fresh_inputs(base, "noop")
        timed(ours(noop_dir), noop_dir)
        noop = median_of(args.repeat, lambda n: noop_dir, ours)

        noops = {}
        for size in (2 * 1024 * 1024, 200 * 1024 * 1024):
            work = fresh_inputs(base, f"kernel{size}", kernel_size=size)
            timed(ours(work), work)
            os.utime(work / "Image")  # touched, unchanged: hashed once, then never again
            timed(ours(work), work)
            noops[size] = median_of(args.repeat, lambda n, w=work: w, ours)
    finally:
        shutil.rmtree(base, ignore_errors=True)

    print(f"original bash script:        {bash * 1000:8.1f} ms")
    print(f"ibtasks cold build:          {cold * 1000:8.1f} ms   ratio {cold / bash:5.2f}x "
          "(aim <= 0.5x)")
    print(f"ibtasks no-op rebuild:       {noop * 1000:8.1f} ms   ratio {noop / bash:5.2f}x "
          "(aim <= 0.3x)")
    small, large = noops[2 * 1024 * 1024], noops[200 * 1024 * 1024]
    print(f"no-op, 2 MB kernel:          {small * 1000:8.1f} ms")
    print(f"no-op, 200 MB kernel:        {large * 1000:8.1f} ms   ratio {large / small:5.2f}x "
          "(aim ~1.0x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
