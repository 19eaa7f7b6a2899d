"""The dom0less system the example boots: its domains, and the ImageBuilder config for it.

Each domain gets its own initramfs whose /init prints the domain's marker, so the boot check
keys on markers, never on Xen's domain ids (they do not follow config order).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ibtasks.errors import UserError
from ibtasks.qemu.runner import Machine

REPO = Path(__file__).resolve().parents[2]

# No `sched=null`: with 2 physical CPUs it cannot run dom0 plus two domUs at once.
XEN_CMD = "console=dtuart dtuart=serial0 dom0_mem=512M dom0_max_vcpus=1 bootscrub=0"
DOM0_CMD = "console=hvc0 earlycon=xen earlyprintk=xen rdinit=/init"


@dataclass(frozen=True)
class Domain:
    """One domain: its files (relative to the boot directory), settings, and its marker."""

    marker: str
    kernel: str
    ramdisk: str
    mem_mb: int | None = None
    vcpus: int | None = None
    cmd: str | None = None
    noboot: bool = False


def marker_for(name: str) -> str:
    """`dom0` -> `DOM0-ALIVE`, `domu1` -> `DOMU1-ALIVE`: what that domain's /init prints."""
    return f"{name.upper()}-ALIVE"


def _line(key: str, value: str | int) -> str:
    if isinstance(value, int):
        return f"{key}={value}"
    if '"' in value or "$" in value or "\\" in value or "`" in value:
        raise UserError(f"{key}: the example does not quote {value!r}")
    return f'{key}="{value}"'


def render_config(
    machine: Machine,
    xen: str,
    dtb: str,
    dom0: Domain,
    domus: Sequence[Domain],
    fdtedit: str | None = None,
    *,
    dom0_rootfs: str | None = None,
) -> str:
    """The ImageBuilder config (bash syntax) for this system on `machine`.

    `dom0_rootfs` (an archive) is for `disk-image`: dom0's own partition, and its `root=`.
    """
    lines = [
        "# Written by examples/qemu-virt; paths are relative to this directory.",
        _line("MEMORY_START", f"{machine.memory_start:#x}"),
        _line("MEMORY_END", f"{machine.memory_end:#x}"),
        _line("DEVICE_TREE", dtb),
        _line("XEN", xen),
        _line("XEN_CMD", XEN_CMD),
        _line("DOM0_KERNEL", dom0.kernel),
        _line("DOM0_CMD", dom0.cmd or DOM0_CMD),
        _line("DOM0_RAMDISK", dom0.ramdisk),
    ]
    if dom0_rootfs is not None:
        lines.append(_line("DOM0_ROOTFS", dom0_rootfs))
    lines.append(_line("NUM_DOMUS", len(domus)))
    for index, domu in enumerate(domus):
        lines.append(_line(f"DOMU_KERNEL[{index}]", domu.kernel))
        lines.append(_line(f"DOMU_RAMDISK[{index}]", domu.ramdisk))
        if domu.mem_mb is not None:
            lines.append(_line(f"DOMU_MEM[{index}]", domu.mem_mb))
        if domu.vcpus is not None:
            lines.append(_line(f"DOMU_VCPUS[{index}]", domu.vcpus))
        if domu.cmd is not None:
            lines.append(_line(f"DOMU_CMD[{index}]", domu.cmd))
        if domu.noboot:
            lines.append(_line(f"DOMU_NOBOOT[{index}]", 1))
    if fdtedit is not None:
        lines.append(_line("FDTEDIT", fdtedit))
    lines += [_line("UBOOT_SOURCE", "boot.source"), _line("UBOOT_SCRIPT", "boot.scr")]
    return "\n".join(lines) + "\n"


def generate_boot_script(config: Path, directory: Path, preedited_dtb: bool = False) -> str:
    """Run our `uboot-script-gen` (the drop-in for ImageBuilder's) on `config`; its stdout."""
    argv = [sys.executable, "-m", "ibtasks", "uboot-script-gen",
            "-c", str(config), "-d", str(directory), "-t", "tftp"]
    if preedited_dtb:
        argv.append("--preedited-dtb")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    # A fixed time stamp in boot.scr: the same config gives the same bytes.
    env.setdefault("SOURCE_DATE_EPOCH", "0")
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise UserError(f"uboot-script-gen failed (status {done.returncode}): "
                        f"{done.stderr.strip() or done.stdout.strip()}")
    return done.stdout
