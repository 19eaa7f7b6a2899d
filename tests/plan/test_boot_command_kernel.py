"""BOOT_CMD must be able to start the host kernel (ibtasks.plan.boot_command): booti an arm64
Image, bootz an ARM zImage, bootefi a PE/COFF image; bootm wraps any kernel in a uImage.

Kernels are the tiny synthetic ones of tests/kernelfiles.py, of the seed Xen's size so the
layout stays the seed's; accepted builds are checked with dumpimage.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from ibtasks.formats.filetype import EM_AARCH64
from tests.chaintools import script_text
from tests.conftest import run_ibtasks
from tests.kernelfiles import elf, with_efi_stub, zimage

BASE = """\
MEMORY_START=0x40000000
MEMORY_END=0x50000000
DEVICE_TREE=mpsoc.dtb
DOM0_KERNEL=Image-dom0
"""


def build(inputs: Path, extra: str) -> subprocess.CompletedProcess[str]:
    (inputs / "config").write_text(BASE + extra)
    return run_ibtasks("uboot-script-gen", "-c", "config", "-d", ".", "-t", "tftp", cwd=inputs)


def as_zimage(path: Path) -> None:
    path.write_bytes(zimage(path.stat().st_size))


def last_line(inputs: Path, tmp_path: Path) -> str:
    """The boot command, read back from boot.scr with dumpimage (the script U-Boot sources)."""
    return script_text((inputs / "boot.scr").read_bytes(), tmp_path).rstrip("\n").splitlines()[-1]


def test_bootz_for_an_arm64_image_is_refused_suggesting_booti(seed_inputs: Path) -> None:
    result = build(seed_inputs, "XEN=xen\nBOOT_CMD=bootz\n")
    assert (result.returncode, result.stderr) == (1, (
        "ibtasks: error: config:5: BOOT_CMD=bootz cannot start XEN: xen is an arm64 Image, and "
        "bootz takes only an arm zImage; use BOOT_CMD=booti\n"))
    assert not (seed_inputs / "boot.scr").exists()


def test_booti_for_a_zimage_is_refused_suggesting_bootz(seed_inputs: Path) -> None:
    as_zimage(seed_inputs / "xen")
    result = build(seed_inputs, "XEN=xen\n")
    assert (result.returncode, result.stderr) == (1, (
        "ibtasks: error: config:5: BOOT_CMD=booti cannot start XEN: xen is an arm zImage, and "
        "booti takes only an arm64 Image; use BOOT_CMD=bootz\n"))


def test_booti_for_an_elf_kernel_is_refused(seed_inputs: Path) -> None:
    (seed_inputs / "xen-syms").write_bytes(elf(EM_AARCH64))
    result = build(seed_inputs, "XEN=xen-syms\n")
    assert (result.returncode, result.stderr) == (1, (
        "ibtasks: error: config:5: BOOT_CMD=booti cannot start XEN: xen-syms is an ELF, and "
        "booti takes only an arm64 Image\n"))


def test_bare_metal_linux_zimage_with_the_default_booti_names_linux(seed_inputs: Path) -> None:
    as_zimage(seed_inputs / "Image-dom0")
    (seed_inputs / "config").write_text("MEMORY_START=0x40000000\nMEMORY_END=0x50000000\n"
                                        "DEVICE_TREE=mpsoc.dtb\nLINUX=Image-dom0\n")
    result = run_ibtasks("uboot-script-gen", "-c", "config", "-d", ".", "-t", "tftp",
                         cwd=seed_inputs)
    assert (result.returncode, result.stderr) == (1, (
        "ibtasks: error: config:4: BOOT_CMD=booti cannot start LINUX: Image-dom0 is an arm "
        "zImage, and booti takes only an arm64 Image; use BOOT_CMD=bootz\n"))


def test_bootefi_for_an_image_without_the_efi_stub_is_refused(seed_inputs: Path) -> None:
    result = build(seed_inputs, "XEN=xen\nBOOT_CMD=bootefi\n")
    assert (result.returncode, result.stderr) == (1, (
        'ibtasks: error: config:5: BOOT_CMD=bootefi cannot start XEN: xen is an arm64 Image '
        'without the PE/COFF header ("MZ") of an EFI application; build it with its EFI stub '
        "(Xen: CONFIG_ARM_EFI, Linux: CONFIG_EFI) or use BOOT_CMD=booti\n"))


def test_matching_boot_commands_build_their_scripts(seed_inputs: Path, tmp_path: Path) -> None:
    with_efi_stub(seed_inputs / "xen")
    assert build(seed_inputs, "XEN=xen\nBOOT_CMD=bootefi\n").returncode == 0
    assert last_line(seed_inputs, tmp_path) == "bootefi 0x40400000 0x40E00000"
    as_zimage(seed_inputs / "xen")
    assert build(seed_inputs, "XEN=xen\nBOOT_CMD=bootz\n").returncode == 0
    assert last_line(seed_inputs, tmp_path) == "bootz 0x40400000 - 0x40E00000"


def test_bootm_starts_a_zimage_wrapped_as_an_arm_uimage(seed_inputs: Path) -> None:
    as_zimage(seed_inputs / "xen")
    result = build(seed_inputs, "XEN=xen\nBOOT_CMD=bootm\n")
    assert result.returncode == 0, result.stderr
    listing = subprocess.run(["dumpimage", "-l", "xen.ub"], cwd=seed_inputs,
                             capture_output=True, text=True, check=True).stdout
    assert "ARM Linux Kernel Image" in listing
