"""Legacy kernel images (xen.ub for BOOT_CMD=bootm): ours against `mkimage -A arm64 -T kernel
-C none` byte for byte, read by `dumpimage -l`, parsed back, and corrupt images refused.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from ibtasks.formats.uimage import TYPE_KERNEL, LegacyImage, build_legacy_image, parse_legacy_image

EPOCH = 1700000000
PAYLOADS = {"one-byte": b"\x01", "odd": b"1234567", "two-mib": bytes(range(256)) * 8192}


def mkimage(data: Path, address: int) -> bytes:
    out = data.with_suffix(".ub")
    subprocess.run(["mkimage", "-A", "arm64", "-T", "kernel", "-C", "none", "-a", f"{address:#x}",
                    "-e", f"{address:#x}", "-d", str(data), str(out)], check=True,
                   capture_output=True, env={**os.environ, "SOURCE_DATE_EPOCH": str(EPOCH)})
    return out.read_bytes()


@pytest.mark.parametrize("name", sorted(PAYLOADS))
@pytest.mark.parametrize("address", [0x40400000, 0xFFE00000])
def test_kernel_image_is_byte_identical_to_mkimage(tmp_path: Path, name: str,
                                                   address: int) -> None:
    data = tmp_path / "xen"
    data.write_bytes(PAYLOADS[name])
    ours = build_legacy_image(LegacyImage(PAYLOADS[name], address, address, EPOCH))
    assert ours == mkimage(data, address)


def test_dumpimage_reads_our_kernel_image(tmp_path: Path) -> None:
    image = tmp_path / "xen.ub"
    image.write_bytes(build_legacy_image(LegacyImage(b"1234", 0x40400000, 0x40400000, EPOCH)))
    listing = subprocess.run(["dumpimage", "-l", str(image)], check=True, capture_output=True,
                             text=True).stdout
    assert "Image Type:   AArch64 Linux Kernel Image (uncompressed)" in listing
    assert "Data Size:    4 Bytes = 0.00 KiB = 0.00 MiB" in listing
    assert "Load Address: 40400000" in listing and "Entry Point:  40400000" in listing


def test_parse_of_build_gives_the_image_back() -> None:
    image = LegacyImage(b"xen-bytes", 0x40400000, 0x40400100, EPOCH, TYPE_KERNEL, b"xen")
    assert parse_legacy_image(build_legacy_image(image)) == image


@pytest.mark.parametrize(("offset", "message"), [(0, "bad magic"), (20, "header CRC mismatch"),
                                                  (64, "data CRC mismatch")])
def test_corrupt_kernel_image_is_refused(offset: int, message: str) -> None:
    blob = bytearray(build_legacy_image(LegacyImage(b"1234", 0x1000, 0x1000, EPOCH)))
    blob[offset] ^= 0xFF  # the data CRC lives in the header, so the header CRC still holds
    with pytest.raises(ValueError, match=message):
        parse_legacy_image(bytes(blob))
