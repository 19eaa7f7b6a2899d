"""An image ibtasks wraps carries the architecture of the binary it wraps: bootm's `<XEN>.ub`
and every image of a FIT say ARM for an arm32 zImage or EM_ARM ELF, AArch64 for an arm64 Image
or EM_AARCH64 ELF; ELFs for other machines are refused naming the key.

Kernels are headers written by tests/kernelfiles.py (`file(1)` agrees with what they are); the
wrapped images are read back with `dumpimage -l` and compared with `mkimage -A arm`. The boot
test runs Debian's 32-bit `qemu_arm` U-Boot under `qemu-system-arm -M virt`: it sources our
arm64-marked boot.scr and boots the ARM-marked xen.ub with bootm, and refuses an arm64 one.
"""

from __future__ import annotations

import os
import re
import subprocess
import zlib
from pathlib import Path

import pytest

from ibtasks.errors import UserError
from ibtasks.formats.file_check import Role, check_file
from ibtasks.formats.filetype import choose_arch, kernel_arch
from ibtasks.formats.uimage import LegacyImage, build_legacy_image, parse_legacy_image
from ibtasks.qemu.runner import BootSpec, Machine, boot, describe_failure, tftp_args
from tests.conftest import run_ibtasks
from tests.kernelfiles import MiB, arm64_image, compress, elf, write, zimage

EPOCH = 1700000000
UBOOT_QEMU_ARM = Path("/usr/lib/u-boot/qemu_arm/u-boot.bin")

# Exynos-like board with one address and size cell, as an arm32 Chromebook's DTB.
SNOW_DTS = """/dts-v1/;
/ {
\tmodel = "arm32 board";
\tcompatible = "test,arm32-board";
\t#address-cells = <1>;
\t#size-cells = <1>;
\tchosen { bootargs = "console=tty1"; };
\tmemory@40000000 { device_type = "memory"; reg = <0x40000000 0x80000000>; };
\tserial@12c30000 { compatible = "samsung,exynos4210-uart"; reg = <0x12c30000 0x100>; };
};
"""
SNOW_CONFIG = """\
MEMORY_START="0x41e00000"
MEMORY_END="0x60000000"
LOAD_CMD="ext2load mmc 1:3"
BOOT_CMD="bootm"
DEVICE_TREE="board.dtb"
XEN="xen-4.17-armhf"
XEN_CMD="console=dtuart dtuart=serial0 dom0_mem=768M"
DOM0_KERNEL="zImage-6.6.0-xen"
DOM0_CMD="console=tty root=/dev/mmcblk1p4 rw rootwait"
UBOOT_SOURCE="xen.source"
"""


def file_says(path: Path) -> str:
    return subprocess.run(["file", "-b", str(path)], capture_output=True, text=True,
                          check=True).stdout.strip()


def dumpimage_l(path: Path) -> str:
    return subprocess.run(["dumpimage", "-l", str(path)], capture_output=True, text=True,
                          check=True).stdout


def compile_dts(text: str, out: Path) -> Path:
    source = out.with_suffix(".dts")
    source.write_text(text)
    subprocess.run(["dtc", "-q", "-I", "dts", "-O", "dtb", "-o", str(out), str(source)],
                   check=True)
    return out


# ---- what a kernel's content says --------------------------------------------------------------

@pytest.mark.parametrize(("data", "file_word", "arch"), [
    (zimage(4096), "ARM boot executable zImage", "arm"),
    (arm64_image(4096), "ARM64 boot executable Image", "arm64"),
    (elf(40, bits=32), "ELF 32-bit LSB executable, ARM", "arm"),
    (elf(183), "ELF 64-bit LSB executable, ARM aarch64", "arm64"),
    (elf(183, big_endian=True), "ELF 64-bit MSB executable, ARM aarch64", "arm64"),
    (elf(40, bits=32, big_endian=True), "ELF 32-bit MSB executable, ARM", "arm"),
])
def test_kernel_architecture_comes_from_its_header(tmp_path: Path, data: bytes, file_word: str,
                                                   arch: str) -> None:
    kernel = write(tmp_path / "kernel", data)
    assert file_word in file_says(kernel)
    assert kernel_arch(data, "kernel") == arch
    assert check_file(kernel, Role.DOMAIN_KERNEL, "DOM0_KERNEL").arch == arch


@pytest.mark.parametrize(("machine", "bits", "name"), [(62, 64, "x86-64"), (3, 32, "x86"),
                                                      (243, 64, "RISC-V"), (999, 64,
                                                                            "another machine")])
def test_elf_for_another_machine_is_refused_naming_the_key(tmp_path: Path, machine: int,
                                                           bits: int, name: str) -> None:
    xen_syms = write(tmp_path / "xen-syms", elf(machine, bits=bits))
    with pytest.raises(UserError) as info:
        check_file(xen_syms, Role.EXECUTABLE, "XEN")
    assert info.value.message == (
        f"XEN: xen-syms is an ELF for {name} (e_machine {machine}); Xen on Arm boots arm "
        "(EM_ARM 40) and arm64 (EM_AARCH64 183) binaries")


def test_compressed_kernel_takes_the_architecture_of_what_it_holds(tmp_path: Path) -> None:
    for tool in ("gzip", "zstd", "lz4"):
        kernel = write(tmp_path / f"zImage.{tool}", compress(tool, zimage(100_000)))
        assert check_file(kernel, Role.EXECUTABLE, "XEN").arch == "arm"


def test_raw_data_kernel_has_no_architecture_of_its_own(tmp_path: Path) -> None:
    blob = write(tmp_path / "xen.bin", bytes([0xA5, 0x5A, 0x01, 0xFE]) * 1024)
    assert check_file(blob, Role.EXECUTABLE, "XEN").arch is None


@pytest.mark.parametrize(("own", "others", "chosen"), [
    ("arm", ["arm64"], "arm"),        # its own content wins
    (None, ["arm", "arm"], "arm"),    # an arm Xen runs only arm guests
    (None, ["arm", "arm64"], "arm64"),  # an arm64 guest needs an arm64 Xen
    (None, [None], "arm64"),          # nothing tells: the original's arm64
    (None, [], "arm64"),
])
def test_unknown_architecture_is_chosen_from_the_other_kernels(own: str | None,
                                                               others: list[str | None],
                                                               chosen: str) -> None:
    assert choose_arch(own, others) == chosen


# ---- the legacy kernel image -------------------------------------------------------------------

@pytest.mark.parametrize(("arch", "words"), [
    ("arm", "ARM Linux Kernel Image (uncompressed)"),
    ("arm64", "AArch64 Linux Kernel Image (uncompressed)"),
])
def test_kernel_uimage_is_mkimage_with_its_architecture(tmp_path: Path, arch: str,
                                                        words: str) -> None:
    data = write(tmp_path / "xen", zimage(50_000) if arch == "arm" else arm64_image(50_000))
    ours = write(tmp_path / "ours.ub", build_legacy_image(
        LegacyImage(data.read_bytes(), 0x42200000, 0x42200000, EPOCH, arch=arch)))
    theirs = tmp_path / "theirs.ub"
    subprocess.run(["mkimage", "-A", arch, "-T", "kernel", "-C", "none", "-a", "0x42200000",
                    "-e", "0x42200000", "-d", str(data), str(theirs)], check=True,
                   capture_output=True, env={**os.environ, "SOURCE_DATE_EPOCH": str(EPOCH)})
    assert ours.read_bytes() == theirs.read_bytes()
    assert f"Image Type:   {words}" in dumpimage_l(ours)
    assert parse_legacy_image(ours.read_bytes()).arch == arch


def test_parse_refuses_an_image_of_another_architecture() -> None:
    blob = build_legacy_image(LegacyImage(b"1234", 0x1000, 0x1000, EPOCH, arch="arm"))
    header = bytearray(blob[:64])
    header[29] = 3  # IH_ARCH_I386
    header[4:8] = bytes(4)
    header[4:8] = zlib.crc32(bytes(header)).to_bytes(4, "big")
    with pytest.raises(ValueError, match="architecture 3 is neither arm"):
        parse_legacy_image(bytes(header) + blob[64:])


# ---- through the CLI: bootm on an arm32 board --------------------------------------------------

def snow_inputs(work: Path) -> Path:
    """The inputs of an arm32 Chromebook: zImage Xen and dom0 of the sizes reported for it."""
    write(work / "xen-4.17-armhf", zimage(884744, "xen-armhf."))
    write(work / "zImage-6.6.0-xen", zimage(8897024, "dom0-zimage."))
    compile_dts(SNOW_DTS, work / "board.dtb")
    (work / "config").write_text(SNOW_CONFIG)
    return work


def build(work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = run_ibtasks("uboot-script-gen", "-c", "config", "-d", ".", *args, cwd=work)
    assert result.returncode == 0, result.stderr
    return result


def test_arm32_bootm_wraps_xen_as_an_arm_kernel_image(tmp_path: Path) -> None:
    work = snow_inputs(tmp_path)
    result = build(work)
    assert result.stdout.splitlines()[-1] == (
        "ext2load mmc 1:3 0x42000000 xen.scr; source 0x42000000")
    listing = dumpimage_l(work / "xen-4.17-armhf.ub")
    assert "Image Type:   ARM Linux Kernel Image (uncompressed)" in listing
    assert "Load Address: 42200000" in listing and "Entry Point:  42200000" in listing
    lines = (work / "xen.source").read_text().splitlines()
    loads = [line for line in lines if "load" in line]
    assert loads == ["ext2load mmc 1:3 0x42200000 xen-4.17-armhf.ub",
                     "ext2load mmc 1:3 0x42400000 zImage-6.6.0-xen",
                     "ext2load mmc 1:3 0x42E00000 board.dtb"]
    assert "fdt set /chosen/dom0@42400000 reg <0x0 0x42400000 0x0 0x87C200>" in lines
    assert lines[-1] == "bootm 0x42200000 - 0x42E00000"
    # The script image keeps the original's arm64 mark: `source` does not check it.
    assert "Image Type:   AArch64 Linux Script (uncompressed)" in dumpimage_l(work / "xen.scr")


def test_arm64_bootm_still_wraps_xen_as_an_aarch64_kernel_image(seed_inputs: Path) -> None:
    (seed_inputs / "config").write_text("MEMORY_START=0x40000000\nMEMORY_END=0x80000000\n"
                                        "DEVICE_TREE=mpsoc.dtb\nXEN=xen\nDOM0_KERNEL=Image-dom0\n"
                                        "BOOT_CMD=bootm\n")
    build(seed_inputs, "-t", "tftp")
    assert "Image Type:   AArch64 Linux Kernel Image (uncompressed)" in dumpimage_l(
        seed_inputs / "xen.ub")


@pytest.mark.parametrize(("dom0", "words"), [
    (zimage(300_000), "ARM Linux Kernel Image"),
    (arm64_image(300_000), "AArch64 Linux Kernel Image"),
])
def test_xen_of_raw_data_takes_the_architecture_of_the_other_kernels(tmp_path: Path,
                                                                     dom0: bytes,
                                                                     words: str) -> None:
    work = snow_inputs(tmp_path)
    write(work / "xen-4.17-armhf", bytes([0xA5, 0x5A, 0x01, 0xFE]) * 50_000)  # `file`: data
    assert file_says(work / "xen-4.17-armhf") == "data"
    write(work / "zImage-6.6.0-xen", dom0)
    build(work)
    assert f"Image Type:   {words} (uncompressed)" in dumpimage_l(work / "xen-4.17-armhf.ub")


def test_a_dom0_whose_architecture_changes_rewraps_xen(tmp_path: Path) -> None:
    work = snow_inputs(tmp_path)
    write(work / "xen-4.17-armhf", bytes([0xA5, 0x5A, 0x01, 0xFE]) * 50_000)
    build(work)
    assert "ARM Linux Kernel Image" in dumpimage_l(work / "xen-4.17-armhf.ub")
    write(work / "zImage-6.6.0-xen", arm64_image(8897024))
    build(work)
    assert "AArch64 Linux Kernel Image" in dumpimage_l(work / "xen-4.17-armhf.ub")


def test_gzipped_arm32_xen_is_marked_by_what_it_holds(tmp_path: Path) -> None:
    work = snow_inputs(tmp_path)
    write(work / "xen-4.17-armhf", compress("gzip", zimage(884744, "xen-armhf.")))
    write(work / "zImage-6.6.0-xen", arm64_image(300_000))  # would say arm64 if asked
    build(work)
    assert "ARM Linux Kernel Image" in dumpimage_l(work / "xen-4.17-armhf.ub")


def test_x86_elf_xen_is_one_line_error_with_its_config_line(tmp_path: Path) -> None:
    work = snow_inputs(tmp_path)
    write(work / "xen-4.17-armhf", elf(62))
    result = run_ibtasks("uboot-script-gen", "-c", "config", "-d", ".", cwd=work)
    assert result.returncode == 1
    assert result.stderr == (
        "ibtasks: error: config:6: XEN: xen-4.17-armhf is an ELF for x86-64 (e_machine 62); "
        "Xen on Arm boots arm (EM_ARM 40) and arm64 (EM_AARCH64 183) binaries\n")
    assert not (work / "xen.source").exists() and not (work / "xen-4.17-armhf.ub").exists()


# ---- FIT images ---------------------------------------------------------------------------------

def fit_arches(fit: Path) -> dict[str, str]:
    """Image name -> `Architecture:` as `dumpimage -l` lists a FIT."""
    arches: dict[str, str] = {}
    name = ""
    for line in dumpimage_l(fit).splitlines():
        match = re.match(r"\s*Image \d+ \((\S+)\)", line)
        if match:
            name = match.group(1)
        match = re.match(r"\s*Architecture:\s*(.+)", line)
        if match:
            arches[name] = match.group(1).strip()
    return arches


def test_fit_of_an_arm32_system_marks_its_images_arm(tmp_path: Path) -> None:
    work = snow_inputs(tmp_path)
    # A FIT cannot use bootm; an arm32 Xen (a zImage) is started with bootz (plan.boot_command).
    (work / "config").write_text(SNOW_CONFIG.replace('BOOT_CMD="bootm"\n', 'BOOT_CMD="bootz"\n'))
    build(work, "-f")
    assert fit_arches(work / "xen.fit") == {"host_fdt": "ARM", "host_kernel": "ARM",
                                            "dom0_linux": "ARM"}


def test_fit_marks_an_arm32_guest_arm_next_to_an_arm64_xen(seed_inputs: Path) -> None:
    write(seed_inputs / "zImage-domU", zimage(1 * MiB))
    (seed_inputs / "config").write_text(
        "MEMORY_START=0x40000000\nMEMORY_END=0x80000000\nDEVICE_TREE=mpsoc.dtb\nXEN=xen\n"
        "DOM0_KERNEL=Image-dom0\nDOM0_RAMDISK=dom0-ramdisk.cpio\nNUM_DOMUS=1\n"
        "DOMU_KERNEL[0]=zImage-domU\n")
    build(seed_inputs, "-t", "tftp", "-f")
    assert fit_arches(seed_inputs / "boot.fit") == {
        "host_fdt": "AArch64", "host_kernel": "AArch64", "dom0_linux": "AArch64",
        "dom0_ramdisk": "AArch64", "domU0_kernel": "ARM"}


# ---- a real arm32 U-Boot -------------------------------------------------------------------------

ARM_VIRT = Machine(machine="virt", cpu="cortex-a15", smp=1, memory_mb=1024,
                   qemu="qemu-system-arm", accel="tcg")


def qemu_arm_boot(work: Path, log: Path) -> str:
    """Boot `work`'s boot.scr with tftp under the 32-bit U-Boot; the console text."""
    spec = BootSpec(
        commands=("setenv autoload no", "dhcp", "setenv serverip 10.0.2.2",
                  "tftpb 0x40200000 boot.scr", "source 0x40200000"),
        markers=("## Booting kernel from Legacy Image",),
        absent_markers=(),
        log_path=log, media_args=tftp_args(work), machine=ARM_VIRT,
        firmware=UBOOT_QEMU_ARM, timeout_seconds=120, idle_seconds=30, settle_seconds=3,
        failure_patterns=("Bad Linux ARM64 Image magic", "Unknown command", "FDT_ERR_",
                          "Unsupported Architecture"),
    )
    result = boot(spec)
    text = log.read_text(errors="replace")
    assert result.ok or "Unsupported Architecture" in text, describe_failure(result)
    return text


def looping_zimage(size: int) -> bytes:
    """A zImage whose code branches past the header to a `b .`: a kernel that idles forever."""
    data = bytearray(zimage(size))
    data[0x20:0x24] = (0xEA000002).to_bytes(4, "little")  # b 0x30
    data[0x30:0x34] = (0xEAFFFFFE).to_bytes(4, "little")  # b .
    return bytes(data)


@pytest.mark.boot
def test_arm32_u_boot_sources_the_script_and_bootm_takes_the_arm_image_only(
        tmp_path: Path) -> None:
    work = tmp_path / "tftp"
    work.mkdir()
    write(work / "xen", looping_zimage(200_000))
    write(work / "zImage", zimage(300_000, "dom0."))
    compile_dts(SNOW_DTS.replace("0x80000000", "0x40000000"), work / "board.dtb")
    (work / "config").write_text(
        "MEMORY_START=0x40000000\nMEMORY_END=0x60000000\nBOOT_CMD=bootm\nDEVICE_TREE=board.dtb\n"
        "XEN=xen\nDOM0_KERNEL=zImage\nDOM0_CMD=\"console=ttyAMA0 root=/dev/ram0\"\n")
    build(work, "-t", "tftp")
    console = qemu_arm_boot(work, tmp_path / "arm.log")
    assert "Image Type:   ARM Linux Kernel Image (uncompressed)" in console
    assert "Starting kernel ..." in console
    assert "Unsupported Architecture" not in console

    # The same image marked arm64, as ibtasks wrote it before: the board refuses it.
    image = parse_legacy_image((work / "xen.ub").read_bytes())
    write(work / "xen.ub", build_legacy_image(LegacyImage(image.data, image.load, image.entry,
                                                          image.timestamp, arch="arm64")))
    console = qemu_arm_boot(work, tmp_path / "arm64.log")
    assert "Unsupported Architecture 0x16" in console
    assert "Starting kernel ..." not in console
