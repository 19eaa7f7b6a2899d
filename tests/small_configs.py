"""Configs for the seed inputs (`seed_inputs` fixture), written by the tests that use them.

`BASE` boots Xen, dom0 and one domU; `DISK` adds dom0's root filesystem and a domU that dom0
starts from its own partition, so disk-image writes xl configs and deduces root=.
"""

from __future__ import annotations

from pathlib import Path

BASE = """\
MEMORY_START="0x0"
MEMORY_END="0x80000000"
DEVICE_TREE="mpsoc.dtb"
XEN="xen"
XEN_CMD="console=dtuart dtuart=serial0 dom0_mem=1G bootscrub=0"
DOM0_KERNEL="Image-dom0"
DOM0_RAMDISK="dom0-ramdisk.cpio"
NUM_DOMUS=1
DOMU_KERNEL[0]="zynqmp-dom1/Image-domU"
DOMU_RAMDISK[0]="zynqmp-dom1/domU-ramdisk.cpio"
UBOOT_SOURCE="boot.source"
UBOOT_SCRIPT="boot.scr"
"""

DISK = BASE.replace("NUM_DOMUS=1", "NUM_DOMUS=2") + """\
DOM0_ROOTFS="rootfs-dom0.cpio.gz"
DOMU_KERNEL[1]="zynqmp-dom2/Image-domU"
DOMU_ROOTFS[1]="rootfs-domU.tar.gz"
"""


def write_config(root: Path, text: str = BASE, name: str = "config") -> Path:
    path = root / name
    path.write_text(text)
    return path
