"""The shared cache: a fresh runner with a warm cache against a cold build, and the bytes a
second identical build uploads, against a real registry (Debian's docker-registry).

    python benchmarks/bench_shared_cache.py

Inputs: dom0's rootfs of 16,000 small files (4 KiB of random bytes each) plus a domU with its
own 2,000-file rootfs. Each run is a fresh folder holding only the inputs (a new CI runner: no
doit state, no partition images), timed as the whole `ibtasks disk-image` command. Bytes sent
to the registry are counted by a TCP relay in front of it (request lines, headers and bodies).
"""

from __future__ import annotations

import io
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
from make_inputs import make_inputs  # noqa: E402

from tests.oci_registry import LocalRegistry, Relay  # noqa: E402

CONFIG = """MEMORY_START=0x40000000
MEMORY_END=0x80000000
DEVICE_TREE=board.dtb
XEN=xen
DOM0_KERNEL=Image
DOM0_RAMDISK=initrd.cpio
DOM0_ROOTFS=rootfs.tar.gz
NUM_DOMUS=1
DOMU_KERNEL[0]=Image-domU
DOMU_ROOTFS[0]=rootfs-domU.tar.gz
"""


def make_rootfs(path: Path, files: int) -> None:
    """`files` files of 4 KiB of random bytes in 100 directories."""
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for n in range(files):
            data = os.urandom(4096)
            info = tarfile.TarInfo(f"usr/share/d{n % 100:02d}/f{n:05d}")
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))


def build(inputs: Path, folder: Path, cache: str | None) -> float:
    """Copy the inputs into a fresh `folder`, build disk.img there; the command's wall time."""
    shutil.copytree(inputs, folder)
    argv = [sys.executable, "-m", "ibtasks", "disk-image", "-c", "config", "-d", ".", "-t",
            "sd", "-o", "disk.img", *(["--cache", cache] if cache else [])]
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=folder, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0 or "warning: cache" in done.stderr:
        raise SystemExit(f"build in {folder} failed:\n{done.stderr}")
    return wall


def main() -> int:
    base = Path(tempfile.mkdtemp(prefix="ibtasks-bench-cache-"))
    storage = base / "registry"
    storage.mkdir()
    registry = LocalRegistry(storage).start()
    try:
        inputs = base / "inputs"
        make_inputs(inputs)
        make_rootfs(inputs / "rootfs.tar.gz", 16_000)
        make_rootfs(inputs / "rootfs-domU.tar.gz", 2_000)
        (inputs / "config").write_text(CONFIG)

        cold = build(inputs, base / "cold", None)
        first_relay = Relay(registry.port)
        populate = build(inputs, base / "runner-a", registry.url(first_relay.host))
        first_relay.close()
        second_relay = Relay(registry.port)
        warm = build(inputs, base / "runner-b", registry.url(second_relay.host))
        second_relay.close()
        same = (base / "runner-b" / "disk.img").read_bytes() == \
            (base / "cold" / "disk.img").read_bytes()
        image = (base / "cold" / "disk.img").stat().st_size
    finally:
        registry.stop()
        shutil.rmtree(base, ignore_errors=True)

    print(f"cold build, no cache:              {cold:7.2f} s   (disk.img {image >> 20} MiB)")
    print(f"cold build, populating the cache:  {populate:7.2f} s   "
          f"{first_relay.sent:>12,} bytes sent to the registry")
    print(f"fresh runner, warm cache:          {warm:7.2f} s   "
          f"{second_relay.sent:>12,} bytes sent to the registry")
    print(f"cold / warm:                       {cold / warm:7.1f}x")
    print(f"warm disk.img identical to cold:   {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
