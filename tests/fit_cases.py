"""Small FITs covering every image type, hash, signature and address width that ibtasks writes.

Shared by tests/goldens/fit-bytes/make-goldens.py (which wrote the goldens) and the tests that
compare today's FIT bytes with them. Data are short recognisable strings, so offsets can be
checked by hand in `dtc -I dtb -O dts` output.
"""

from __future__ import annotations

from ibtasks.formats.fit import SIGN_ALGO, Fit, FitConfig, FitImage, Signature

EPOCH = 1700000000


def every_type() -> Fit:
    """A kernel, a dom0 kernel, a ramdisk, a DTB, an FPGA bitstream and the boot script, hashed
    with crc32+sha1 (ibtasks' default) or one of crc32, sha1, sha256, md5; two configurations."""
    return Fit("every image type", EPOCH, (
        FitImage("host_kernel", "xen kernel", b"xen-1234", "kernel", 0x40200000, os="linux",
                 entry=0x40200000),
        FitImage("dom0_linux", "dom0 kernel", b"dom0-Image", "kernel", 0x40600000, os="linux",
                 entry=0x40600000, hashes=("sha256",)),
        FitImage("dom0_ramdisk", "dom0 ramdisk", b"070701-cpio", "ramdisk", 0x40800000,
                 os="linux", hashes=("md5",)),
        FitImage("host_fdt", "xen fdt", b"\xd0\x0d\xfe\xed-dtb", "flat_dt", 0x40A00000,
                 hashes=("crc32",)),
        FitImage("fpga_bitstream", "FPGA bit stream", b"bitstream", "fpga", 0x40C00000,
                 compatible="u-boot,fpga-legacy", hashes=("sha1",)),
        FitImage("boot_scr", "imagebuilder's boot script", b"booti 0x40200000 - 0x40A00000\n",
                 "script", 0x40E00000, arch=None, entry=0x40E00000),
    ), (
        FitConfig("config", "xen and dom0", kernel="host_kernel", fdt=("host_fdt",),
                  ramdisk="dom0_ramdisk", fpga="fpga_bitstream",
                  loadables=("dom0_linux", "boot_scr")),
        FitConfig("script-only", "the script alone", loadables=("boot_scr",)),
    ), "config")


def signed() -> Fit:
    """Every image with a signature node for mkimage to fill (FIT_ENC_KEY_DIR)."""
    signature = Signature(SIGN_ALGO, "dev")
    return Fit("signed", EPOCH, (
        FitImage("host_kernel", "xen kernel", b"xen-1234", "kernel", 0x40200000, os="linux",
                 entry=0x40200000, signature=signature),
        FitImage("host_fdt", "xen fdt", b"\xd0\x0d\xfe\xed-dtb", "flat_dt", 0x40400000,
                 signature=signature),
    ), (FitConfig("config", "signed", kernel="host_kernel", fdt=("host_fdt",)),), "config")


def above_4_gib() -> Fit:
    """Loads above 4 GiB: every address in two cells; no default configuration."""
    return Fit("high", EPOCH, (
        FitImage("host_kernel", "xen kernel", b"xen-1234", "kernel", 0x880200000, os="linux",
                 entry=0x880200000),
        FitImage("domU0_kernel", "domU0 kernel", b"domU-Image", "kernel", 0x880400000,
                 os="linux"),
    ), (FitConfig("config", "high", kernel="host_kernel", loadables=("domU0_kernel",)),))


CASES = {"every-type": every_type, "signed": signed, "above-4-gib": above_4_gib}
