"""Hostile config files: how long `ibtasks uboot-script-gen` takes to refuse each, and its memory.

    python benchmarks/bench_hostile_configs.py

Each case runs our CLI as a child process (`python -m ibtasks`, as users run it) in a fresh
directory; the child's wall time and peak RSS come from `os.wait4`, so they are the child's
own. The aim is under 1 s and 50 MB each, ending with one `ibtasks: error:` line. For scale,
the last two rows are a valid config just under the 1 MiB limit, and a small valid config.
A child that runs over 60 s is killed and reported as such.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

SMALL = (
    "MEMORY_START=0x40000000\nMEMORY_END=0x50000000\nDEVICE_TREE=board.dtb\nXEN=xen\n"
    "DOM0_KERNEL=Image\n"
)


def fifo(d: Path) -> str:
    os.mkfifo(d / "config")
    return "config"


def dev_zero(d: Path) -> str:
    return "/dev/zero"


def alias_bomb(d: Path) -> str:
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 10)]
    (d / "config.yaml").write_text("\n".join(lines) + "\n? *l9\n: 1\n")  # 9^10 nodes as a key
    return "config.yaml"


def deep_yaml(d: Path) -> str:
    (d / "config.yaml").write_text("XEN: " + "[" * 3000 + "]" * 3000 + "\n")
    return "config.yaml"


def deep_default(d: Path) -> str:
    (d / "config").write_text("A=" + "${A:-" * 1000 + "x" + "}" * 1000 + "\n")
    return "config"


def doubling(d: Path) -> str:
    (d / "config").write_text("A=x\n" + "A=$A$A\n" * 34)
    return "config"


def huge(d: Path) -> str:
    with open(d / "config", "wb") as f:
        f.truncate(4 * 1024 * 1024 * 1024)  # sparse, 4 GiB
    return "config"


def one_mib_of_assignments(d: Path) -> str:
    line = 'XEN_CMD="console=dtuart dtuart=serial0 dom0_mem=1G bootscrub=0 vwfi=native"\n'
    body = line * ((1024 * 1024 - len(SMALL)) // len(line))
    (d / "config").write_text(SMALL + body)
    return "config"


def small_valid(d: Path) -> str:
    (d / "config").write_text(SMALL)
    return "config"


CASES: list[tuple[str, Callable[[Path], str]]] = [
    ("FIFO as config", fifo),
    ("/dev/zero as config", dev_zero),
    ("YAML alias bomb (9^10 nodes)", alias_bomb),
    ("YAML lists 3,000 deep", deep_yaml),
    ("${A:-...} 1,000 deep", deep_default),
    ("A=$A$A x34 (16 GiB)", doubling),
    ("4 GiB config (sparse)", huge),
    ("valid, just under 1 MiB", one_mib_of_assignments),
    ("valid, 5 lines (to -s)", small_valid),
]


def run_case(make: Callable[[Path], str]) -> tuple[float, int, str]:
    """Wall seconds, peak RSS in KiB, and the last stderr line of one child run."""
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        config = make(d)
        err = d / "stderr.txt"
        with open(err, "wb") as stderr:
            start = time.monotonic()
            child = subprocess.Popen(
                [sys.executable, "-m", "ibtasks", "uboot-script-gen", "-c", config, "-d", ".",
                 "-t", "tftp", "-s"], cwd=d, stdout=subprocess.DEVNULL, stderr=stderr)
            deadline = start + 60
            while True:
                pid, status, usage = os.wait4(child.pid, os.WNOHANG)
                if pid:
                    break
                if time.monotonic() > deadline:
                    child.send_signal(signal.SIGKILL)
                    pid, status, usage = os.wait4(child.pid, 0)
                    break
                time.sleep(0.005)
            wall = time.monotonic() - start
            child.returncode = os.waitstatus_to_exitcode(status)  # reaped: tell Popen
        lines = err.read_text(errors="replace").splitlines()
        last = lines[-1] if lines else f"(exit {child.returncode}, no stderr)"
        if wall > 60:
            last = "KILLED after 60 s"
        return wall, usage.ru_maxrss, last  # ru_maxrss: KiB on Linux


def main() -> None:
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'case':32} {'wall s':>7} {'peak RSS MB':>12}  stderr (last line)")
    for name, make in CASES:
        wall, rss_kib, last = run_case(make)
        print(f"{name:32} {wall:7.2f} {rss_kib / 1024:12.1f}  {last[:110]}")
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"(this benchmark's own peak RSS: {own / 1024:.1f} MB, not included above)")


if __name__ == "__main__":
    main()
