"""The upstream script features through the real CLI: BOOT_CMD, APPEND_EXTRA_CMDS,
DBG_FDT_PRINT_CHOSEN, XEN_LOAD/DOM0_LOAD/DOMU_LOAD, -p, XEN_POLICY, BITSTREAM, DT overlays and
bare-metal LINUX. Script lines are compared exactly; the edited DTB is read back with fdtget.

Inputs are the seed goldens' synthetic files. Addresses by hand: the script slot is 0x40200000;
xen (3,000,000 B) at 0x40400000 ends at 0x406DC6C0, so Image-dom0 (5,000,000 B) is at
0x40800000 and ends at 0x40CC4B40; the next module is at 0x40E00000.
"""

from __future__ import annotations

import os
import struct
import subprocess
from pathlib import Path

import pytest

from tests.conftest import run_ibtasks
from tests.kernelfiles import with_efi_stub, zimage

BASE = """\
MEMORY_START=0x40000000
MEMORY_END=0x80000000
DEVICE_TREE=mpsoc.dtb
XEN=xen
DOM0_KERNEL=Image-dom0
"""
LOADS = ["tftpb 0x40400000 xen", "tftpb 0x40800000 Image-dom0"]
# The XSM policy header Xen's FLASK reads: magic (little-endian), then "XenFlask".
POLICY = struct.pack("<II", 0xF97CFF8C, 8) + b"XenFlask" + bytes(100)


def build(inputs: Path, config: str, *args: str, load: tuple[str, ...] = ("-t", "tftp"),
          env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    (inputs / "config").write_text(config)
    return run_ibtasks("uboot-script-gen", "-c", "config", "-d", ".", *load, *args, cwd=inputs,
                       env=env)


def script(inputs: Path, config: str, *args: str, load: tuple[str, ...] = ("-t", "tftp")
           ) -> list[str]:
    result = build(inputs, config, *args, load=load)
    assert result.returncode == 0, result.stderr
    return (inputs / "boot.source").read_text().splitlines()


def error(inputs: Path, config: str, *args: str) -> str:
    result = build(inputs, config, *args)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert not (inputs / "boot.source").exists() and not (inputs / "boot.scr").exists()
    return result.stderr


def fdtget(dtb: Path, node: str, prop: str, kind: str = "s") -> str:
    return subprocess.run(["fdtget", "-t", kind, str(dtb), node, prop], check=True,
                          capture_output=True, text=True).stdout.strip()


def make_overlay(out: Path, target: str, body: str) -> None:
    """Compile a one-fragment overlay that sets `body` at `target` with dtc."""
    dts = out.with_suffix(".dts")
    dts.write_text(f"/dts-v1/;\n/plugin/;\n/ {{ fragment@0 {{ target-path = {target}; "
                   f"__overlay__ {{ {body} }}; }}; }};\n")
    subprocess.run(["dtc", "-q", "-I", "dts", "-O", "dtb", "-o", str(out), str(dts)], check=True)


# ---- BOOT_CMD ----------------------------------------------------------------------------------

def test_default_boot_command_is_booti(seed_inputs: Path) -> None:
    lines = script(seed_inputs, BASE)
    assert lines[:2] == LOADS
    assert lines[-1] == "booti 0x40400000 - 0x40E00000"


def test_bootz_keeps_the_dash_for_no_ramdisk(seed_inputs: Path) -> None:
    # bootz starts only an ARM zImage (plan.boot_command): one of the seed Xen's size.
    (seed_inputs / "xen").write_bytes(zimage((seed_inputs / "xen").stat().st_size))
    assert script(seed_inputs, BASE + "BOOT_CMD=bootz\n")[-1] == "bootz 0x40400000 - 0x40E00000"


def test_bootefi_has_no_dash_and_loads_xen_last_at_its_address(seed_inputs: Path) -> None:
    with_efi_stub(seed_inputs / "xen")
    lines = script(seed_inputs, BASE + "BOOT_CMD=bootefi\n")
    assert lines[:3] == ["tftpb 0x40800000 Image-dom0", "tftpb 0x40E00000 mpsoc.dtb",
                         "tftpb 0x40400000 xen"]
    assert lines[-1] == "bootefi 0x40400000 0x40E00000"


def test_boot_cmd_none_stores_the_addresses_instead_of_booting(seed_inputs: Path) -> None:
    lines = script(seed_inputs, BASE + "BOOT_CMD=none\n")
    assert lines[-3:] == ["setenv fdt_high 0xffffffffffffffff",
                          "setenv host_kernel_addr 0x40400000",
                          "setenv host_fdt_addr 0x40E00000"]
    assert not [line for line in lines if line.startswith("boot")]


def test_bootm_loads_xen_wrapped_by_us_exactly_as_mkimage_wraps_it(seed_inputs: Path) -> None:
    lines = script(seed_inputs, BASE + "BOOT_CMD=bootm\n")
    # xen.ub is 3,000,064 bytes: still one 3 MiB span, so the addresses do not move.
    assert lines[:2] == ["tftpb 0x40400000 xen.ub", "tftpb 0x40800000 Image-dom0"]
    assert lines[-1] == "bootm 0x40400000 - 0x40E00000"
    reference = seed_inputs / "mkimage.ub"
    subprocess.run(["mkimage", "-A", "arm64", "-T", "kernel", "-C", "none", "-a", "0x40400000",
                    "-e", "0x40400000", "-d", str(seed_inputs / "xen"), str(reference)],
                   check=True, capture_output=True,
                   env={**os.environ, "SOURCE_DATE_EPOCH": "315532800"})
    assert (seed_inputs / "xen.ub").read_bytes() == reference.read_bytes()
    listing = subprocess.run(["dumpimage", "-l", str(seed_inputs / "xen.ub")], check=True,
                             capture_output=True, text=True).stdout
    assert "AArch64 Linux Kernel Image (uncompressed)" in listing
    assert "Load Address: 40400000" in listing and "Entry Point:  40400000" in listing


def test_bootm_uimage_slot_includes_the_header(seed_inputs: Path, tmp_path: Path) -> None:
    # A 2 MiB - 32 byte Xen fits one slot raw, but not with the 64-byte uImage header.
    xen = bytearray((seed_inputs / "xen").read_bytes()[:2 * 1024 * 1024 - 32])
    xen[16:24] = struct.pack("<Q", len(xen))  # the Image header's image_size
    (seed_inputs / "xen").write_bytes(bytes(xen))
    booti = script(seed_inputs, BASE)
    assert booti[1] == "tftpb 0x40600000 Image-dom0"
    bootm = script(seed_inputs, BASE + "BOOT_CMD=bootm\n")
    assert bootm[1] == "tftpb 0x40800000 Image-dom0"


def test_unknown_boot_cmd_is_rejected(seed_inputs: Path) -> None:
    assert error(seed_inputs, BASE + "BOOT_CMD=go\n") == (
        "ibtasks: error: config:6: BOOT_CMD: expected one of booti, bootm, bootz, bootefi, "
        "none, got 'go'\n")


def test_bootm_with_addresses_computed_at_boot_is_rejected(seed_inputs: Path) -> None:
    assert error(seed_inputs, BASE + "BOOT_CMD=bootm\n", "-s") == (
        "ibtasks: error: config:6: BOOT_CMD: bootm needs Xen wrapped in a uImage whose header "
        "holds its load address, which -s leaves to U-Boot; use booti or drop -s\n")


# ---- APPEND_EXTRA_CMDS and DBG_FDT_PRINT_CHOSEN ------------------------------------------------

def test_extra_commands_and_print_chosen_come_before_the_boot_command(seed_inputs: Path) -> None:
    lines = script(seed_inputs, BASE + "APPEND_EXTRA_CMDS=extra-cmds.txt\n"
                   "DBG_FDT_PRINT_CHOSEN=y\n")
    assert lines[-5:] == ["setenv fdt_high 0xffffffffffffffff", "fdt print /chosen",
                          "echo extra commands from a file", "setenv bootdelay 0",
                          "booti 0x40400000 - 0x40E00000"]


def test_changed_extra_commands_file_rebuilds_the_script(seed_inputs: Path) -> None:
    config = BASE + "APPEND_EXTRA_CMDS=extra-cmds.txt\n"
    script(seed_inputs, config)
    (seed_inputs / "extra-cmds.txt").write_text("echo changed\n")
    assert script(seed_inputs, config)[-2] == "echo changed"
    assert "echo changed" in (seed_inputs / "boot.scr").read_text(errors="replace")


def test_missing_extra_commands_file_is_rejected(seed_inputs: Path) -> None:
    assert error(seed_inputs, BASE + "APPEND_EXTRA_CMDS=fixups.txt\n") == (
        "ibtasks: error: config:6: APPEND_EXTRA_CMDS: fixups.txt does not exist "
        "(looked in .)\n")


def test_extra_commands_file_that_is_not_text_is_rejected(seed_inputs: Path) -> None:
    assert error(seed_inputs, BASE + "APPEND_EXTRA_CMDS=mpsoc.dtb\n") == (
        "ibtasks: error: config:6: APPEND_EXTRA_CMDS: mpsoc.dtb should be a text file of U-Boot "
        "commands, but it is DTB\n")


# ---- per-image load commands and -p ------------------------------------------------------------

def test_each_image_uses_its_own_load_command(seed_inputs: Path) -> None:
    config = BASE + ("DOM0_RAMDISK=dom0-ramdisk.cpio\nNUM_DOMUS=1\n"
                     "DOMU_KERNEL[0]=zynqmp-dom1/Image-domU\nXEN_LOAD=sd\n"
                     "DOM0_LOAD='load scsi 0:2'\nDOMU_LOAD[0]=virtio\n")
    lines = script(seed_inputs, config)
    assert lines[:5] == [
        "load mmc 0:1 0x40400000 xen",
        "load scsi 0:2 0x40800000 Image-dom0",
        "load scsi 0:2 0x40E00000 dom0-ramdisk.cpio",
        "load virtio 0:1 0x41000000 zynqmp-dom1/Image-domU",
        "load mmc 0:1 0x41400000 mpsoc.dtb",
    ]


def test_dom0_root_is_deduced_from_dom0_load(seed_inputs: Path) -> None:
    config = BASE + "DOM0_ROOTFS=rootfs-dom0.cpio.gz\nDOM0_LOAD=sd\n"
    script(seed_inputs, config)
    assert fdtget(seed_inputs / "boot.dtb", "/chosen", "xen,dom0-bootargs").endswith(
        "root=/dev/mmcblk0p2")


def test_per_image_load_commands_can_replace_load_cmd(seed_inputs: Path) -> None:
    lines = script(seed_inputs, BASE + "XEN_LOAD=tftp\nDOM0_LOAD=sd\n", load=())
    assert lines[:2] == ["tftpb 0x40400000 xen", "load mmc 0:1 0x40800000 Image-dom0"]


def test_load_cmd_is_required_when_an_image_has_no_own_command(seed_inputs: Path) -> None:
    (seed_inputs / "config").write_text(BASE + "XEN_LOAD=tftp\n")
    result = run_ibtasks("uboot-script-gen", "-c", "config", "-d", ".", cwd=seed_inputs)
    assert result.stderr == (
        "ibtasks: error: no load command: pass -t (tftp, sd, scsi, usb, virtio or a U-Boot "
        "command), set LOAD_CMD in the config or export LOAD_CMD\n")


def test_prepend_path_prefixes_every_loaded_path_and_the_message(seed_inputs: Path) -> None:
    result = build(seed_inputs, BASE + "BOOT_CMD=bootm\n", "-p", "/boot/xen/", "--preedited-dtb")
    assert result.returncode == 0, result.stderr
    lines = (seed_inputs / "boot.source").read_text().splitlines()
    assert lines[:3] == ["tftpb 0x40400000 /boot/xen/xen.ub",
                         "tftpb 0x40800000 /boot/xen/Image-dom0",
                         "tftpb 0x40E00000 /boot/xen/boot.dtb"]
    assert result.stdout.splitlines()[-1] == (
        "tftpb 0x40200000 /boot/xen/boot.scr; source 0x40200000")


# ---- XEN_POLICY, BITSTREAM, DT overlays --------------------------------------------------------

def test_xsm_policy_is_loaded_after_xen_and_described_in_chosen(seed_inputs: Path) -> None:
    (seed_inputs / "xenpolicy").write_bytes(POLICY)
    lines = script(seed_inputs, BASE + "XEN_POLICY=xenpolicy\n")
    assert lines[:3] == ["tftpb 0x40400000 xen", "tftpb 0x40800000 xenpolicy",
                         "tftpb 0x40A00000 Image-dom0"]
    assert "fdt mknod /chosen xen-policy@40800000" in lines
    dtb = seed_inputs / "boot.dtb"
    assert fdtget(dtb, "/chosen/xen-policy@40800000", "compatible").split() == [
        "xen,xsm-policy", "xen,multiboot-module", "multiboot,module"]
    assert fdtget(dtb, "/chosen/xen-policy@40800000", "reg", "x").split() == [
        "0", "40800000", "0", f"{len(POLICY):x}"]


def test_policy_that_is_not_a_policy_is_rejected(seed_inputs: Path) -> None:
    assert error(seed_inputs, BASE + "XEN_POLICY=extra-cmds.txt\n") == (
        "ibtasks: error: config:6: XEN_POLICY: extra-cmds.txt should be an XSM policy "
        "(SE Linux policy data), but it is text\n")


def test_bitstream_is_loaded_after_the_dtb_and_programmed_before_booting(
        seed_inputs: Path) -> None:
    size = (seed_inputs / "design.bit").stat().st_size
    lines = script(seed_inputs, BASE + "BITSTREAM=design.bit\n")
    assert lines[2:5] == ["tftpb 0x40E00000 mpsoc.dtb", "tftpb 0x41000000 design.bit",
                          f"fpga load 0 0x41000000 0x{size:X}"]
    assert lines[5] == "fdt addr 0x40E00000"


def test_raw_bitstream_data_is_accepted_and_text_is_not(seed_inputs: Path) -> None:
    (seed_inputs / "design.bin").write_bytes(bytes(range(256)) * 4)
    assert "tftpb 0x41000000 design.bin" in script(seed_inputs, BASE + "BITSTREAM=design.bin\n")
    assert error(seed_inputs, BASE + "BITSTREAM=extra-cmds.txt\n") == (
        "ibtasks: error: config:6: BITSTREAM: extra-cmds.txt should be an FPGA bitstream "
        "(Xilinx BIT or raw data), but it is text\n")


def test_overlays_load_before_the_dtb_and_apply_after_the_resize(seed_inputs: Path) -> None:
    # A large overlay: `fdt resize` must make room for all it adds (at most its own size).
    make_overlay(seed_inputs / "overlay2.dtbo", '"/chosen"',
                 f'ibtasks,second = "yes"; ibtasks,big = "{"x" * 3000}";')
    overlays = sum((seed_inputs / n).stat().st_size for n in ("overlay.dtbo", "overlay2.dtbo"))
    lines = script(seed_inputs, BASE + "NUM_DT_OVERLAY=2\nDT_OVERLAY[0]=overlay.dtbo\n"
                   "DT_OVERLAY[1]=overlay2.dtbo\n")
    assert lines[:6] == [*LOADS, "tftpb 0x40E00000 overlay.dtbo",
                         "tftpb 0x41000000 overlay2.dtbo", "tftpb 0x41200000 mpsoc.dtb",
                         "fdt addr 0x41200000"]
    resize = int(lines[6].split()[2])
    assert lines[6].startswith("fdt resize") and resize >= overlays and resize % 1024 == 0
    assert lines[7:9] == ["fdt apply 0x40E00000", "fdt apply 0x41000000"]
    dtb = seed_inputs / "boot.dtb"
    assert fdtget(dtb, "/overlay-marker", "compatible") == "ibtasks,overlay-marker"
    assert fdtget(dtb, "/chosen", "ibtasks,second") == "yes"
    assert fdtget(dtb, "/chosen", "xen,dom0-bootargs").startswith("console=hvc0")


def test_preedited_dtb_has_the_overlay_and_the_script_does_not_load_it(seed_inputs: Path) -> None:
    lines = script(seed_inputs, BASE + "NUM_DT_OVERLAY=1\nDT_OVERLAY[0]=overlay.dtbo\n",
                   "--preedited-dtb")
    assert lines == [*LOADS, "tftpb 0x41000000 boot.dtb", "setenv fdt_high 0xffffffffffffffff",
                     "booti 0x40400000 - 0x41000000"]
    assert fdtget(seed_inputs / "boot.dtb", "/overlay-marker", "compatible") == (
        "ibtasks,overlay-marker")


def test_overlay_that_is_not_a_dtb_is_rejected(seed_inputs: Path) -> None:
    assert error(seed_inputs, BASE + "NUM_DT_OVERLAY=1\nDT_OVERLAY[0]=design.bit\n") == (
        "ibtasks: error: config:7: DT_OVERLAY[0]: design.bit should be a flattened device tree "
        "(DTB), but it is Xilinx BIT\n")


def test_overlay_that_does_not_apply_is_rejected_naming_it(seed_inputs: Path) -> None:
    make_overlay(seed_inputs / "bad.dtbo", '"/nowhere"', 'x = "y";')
    stderr = error(seed_inputs, BASE + "NUM_DT_OVERLAY=1\nDT_OVERLAY[0]=bad.dtbo\n")
    assert stderr.startswith("ibtasks: error: DT_OVERLAY[0]: fdtoverlay cannot apply bad.dtbo "
                             "to DEVICE_TREE (mpsoc.dtb): ")


def test_missing_overlay_entry_is_rejected(seed_inputs: Path) -> None:
    assert error(seed_inputs, BASE + "NUM_DT_OVERLAY=2\nDT_OVERLAY[0]=overlay.dtbo\n") == (
        "ibtasks: error: config:6: DT_OVERLAY[1] is not set (NUM_DT_OVERLAY is 2)\n")


def test_overlay_beyond_num_dt_overlay_is_rejected(seed_inputs: Path) -> None:
    assert error(seed_inputs, BASE + "DT_OVERLAY[0]=overlay.dtbo\n") == (
        "ibtasks: error: config:6: DT_OVERLAY[0] is set but NUM_DT_OVERLAY is 0\n")


# ---- bare-metal Linux --------------------------------------------------------------------------

LINUX = """\
MEMORY_START=0x40000000
MEMORY_END=0x80000000
DEVICE_TREE=mpsoc.dtb
LINUX=Image-dom0
LINUX_RAMDISK=dom0-ramdisk.cpio
"""


def test_linux_without_xen_boots_the_kernel_with_its_ramdisk(seed_inputs: Path) -> None:
    lines = script(seed_inputs, LINUX, load=("-t", "sd"))
    # Image-dom0 ends at 0x408C4B40; the 1,200,640-byte ramdisk at 0x40A00000 ends at 0x40B25200.
    assert lines == [
        "load mmc 0:1 0x40400000 Image-dom0",
        "load mmc 0:1 0x40A00000 dom0-ramdisk.cpio",
        "load mmc 0:1 0x40C00000 mpsoc.dtb",
        "fdt addr 0x40C00000",
        "fdt resize 1024",
        'fdt set /chosen bootargs "earlycon console=ttyPS0,115200 root=/dev/ram0"',
        "fdt set /chosen linux,initrd-start <0x0 0x40A00000>",
        "fdt set /chosen linux,initrd-end <0x0 0x40B25200>",
        "setenv fdt_high 0xffffffffffffffff",
        "booti 0x40400000 - 0x40C00000",
    ]
    dtb = seed_inputs / "boot.dtb"
    assert fdtget(dtb, "/chosen", "bootargs") == "earlycon console=ttyPS0,115200 root=/dev/ram0"
    assert fdtget(dtb, "/chosen", "linux,initrd-end", "x") == "0 40b25200"
    assert "xen,xen-bootargs" not in subprocess.run(
        ["fdtget", "-p", str(dtb), "/chosen"], check=True, capture_output=True, text=True).stdout


def test_linux_cmd_with_root_is_kept(seed_inputs: Path) -> None:
    script(seed_inputs, LINUX + "LINUX_CMD='console=ttyAMA0 root=/dev/vda'\n")
    assert fdtget(seed_inputs / "boot.dtb", "/chosen", "bootargs") == (
        "console=ttyAMA0 root=/dev/vda")


@pytest.mark.parametrize(("extra", "message"), [
    ("XEN=xen\n", "config:4: LINUX: set XEN or LINUX, not both (LINUX boots Linux without Xen)"),
    ("DOM0_KERNEL=Image-dom0\n", "config:6: DOM0_KERNEL: a bare-metal LINUX boot has no Xen or "
     "dom0; remove it or set XEN instead of LINUX"),
    ("NUM_DOMUS=1\nDOMU_KERNEL[0]=xen\n", "config:6: NUM_DOMUS: a bare-metal LINUX boot has no "
     "domUs; set it to 0 or set XEN instead of LINUX"),
    ("XEN_POLICY=xen\n", "config:6: XEN_POLICY needs XEN, which is not set"),
])
def test_xen_things_in_a_linux_boot_are_rejected(seed_inputs: Path, extra: str,
                                                 message: str) -> None:
    assert error(seed_inputs, LINUX + extra) == f"ibtasks: error: {message}\n"


def test_linux_keys_without_linux_are_rejected(seed_inputs: Path) -> None:
    assert error(seed_inputs, BASE + "LINUX_CMD=quiet\n") == (
        "ibtasks: error: config:6: LINUX_CMD needs LINUX, which is not set\n")


def test_neither_xen_nor_linux_is_rejected(seed_inputs: Path) -> None:
    config = "\n".join(line for line in LINUX.splitlines() if not line.startswith("LINUX"))
    assert error(seed_inputs, config + "\n") == (
        "ibtasks: error: config: XEN is required but not set\n")


def test_linux_cmd_with_a_double_quote_is_rejected(seed_inputs: Path) -> None:
    assert error(seed_inputs, LINUX + "LINUX_CMD='console=\"x\"'\n") == (
        "ibtasks: error: config:6: LINUX_CMD: a double quote cannot appear in a command line\n")


def test_linux_ramdisk_that_is_not_cpio_is_rejected(seed_inputs: Path) -> None:
    assert error(seed_inputs, LINUX.replace("dom0-ramdisk.cpio", "mpsoc.dtb")) == (
        "ibtasks: error: config:5: LINUX_RAMDISK: mpsoc.dtb should be a cpio archive, but it is "
        "DTB\n")


def test_print_chosen_set_to_no_is_off(seed_inputs: Path) -> None:
    assert "fdt print /chosen" not in script(seed_inputs, BASE + "DBG_FDT_PRINT_CHOSEN=no\n")


def test_disk_image_boot_partition_holds_what_the_script_loads(seed_inputs: Path) -> None:
    config = BASE + ("NUM_DT_OVERLAY=1\nDT_OVERLAY[0]=overlay.dtbo\nBITSTREAM=design.bit\n"
                     "BOOT_CMD=bootm\n")
    (seed_inputs / "config").write_text(config)
    env = {"PATH": os.environ.get("PATH", "") + ":/usr/sbin:/sbin"}
    result = run_ibtasks("disk-image", "-c", "config", "-d", ".", "-t", "sd", "-o", "disk.img",
                         cwd=seed_inputs, env=env)
    assert result.returncode == 0, result.stderr
    listing = subprocess.run(["mdir", "-b", "-i", f"{seed_inputs / 'disk.img'}@@1M", "::/"],
                             check=True, capture_output=True, text=True, env={**os.environ, **env})
    names = {line.rsplit("/", 1)[-1] for line in listing.stdout.split()}
    loaded = {line.split()[-1] for line in (seed_inputs / "boot.source").read_text().splitlines()
              if line.startswith("load mmc")}
    assert loaded == {"xen.ub", "Image-dom0", "overlay.dtbo", "mpsoc.dtb", "design.bit"}
    assert loaded <= names


def test_yaml_config_lists_overlays_without_counting_them_as_domus(seed_inputs: Path) -> None:
    (seed_inputs / "config.yaml").write_text(
        "MEMORY_START: 0x40000000\nMEMORY_END: 0x80000000\nDEVICE_TREE: mpsoc.dtb\nXEN: xen\n"
        "DOM0_KERNEL: Image-dom0\nDT_OVERLAY: [overlay.dtbo]\n"
        "DOMUS:\n  - KERNEL: zynqmp-dom1/Image-domU\n")
    result = run_ibtasks("uboot-script-gen", "-c", "config.yaml", "-d", ".", "-t", "tftp",
                         cwd=seed_inputs)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = (seed_inputs / "boot.source").read_text().splitlines()
    assert lines[2:4] == ["tftpb 0x40E00000 zynqmp-dom1/Image-domU",
                          "tftpb 0x41200000 overlay.dtbo"]
    assert "fdt apply 0x41200000" in lines


def test_fit_with_bootm_or_computed_addresses_is_rejected(seed_inputs: Path) -> None:
    assert error(seed_inputs, BASE + "BOOT_CMD=bootm\n", "-f") == (
        "ibtasks: error: config:6: BOOT_CMD=bootm cannot be combined with a FIT (-f or FIT): the "
        "FIT holds Xen and fixed load addresses\n")
    assert error(seed_inputs, BASE, "-f", "-s") == (
        "ibtasks: error: -s cannot be combined with a FIT (-f or FIT): the FIT holds Xen and "
        "fixed load addresses\n")
