"""boot.scr: our script image against `mkimage -A arm64 -T script -C none` byte for byte, read
by `dumpimage -l`, parsed back, and corrupt images refused by the parser.
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from ibtasks.formats.uimage import ScriptImage, build_script_image, parse_script_image
from ibtasks.tasks.build_dirs import DEFAULT_EPOCH
from tests.conftest import GOLDENS, run_ibtasks

EPOCH = 1700000000  # 2023-11-14 22:13:20 UTC

SCRIPTS = {
    "one-byte": b"\n",
    "one-line": b"echo hello\n",
    "no-final-newline": b"setenv bootdelay 0",
    "odd-length": b"echo 123\n" * 7 + b"x",
    "large": b"".join(b"setenv var%06d 0x%08X\n" % (i, i * 4096) for i in range(20000)),
}


def mkimage(source: Path, load: int, epoch: int, name: str | None = None) -> bytes:
    out = source.with_suffix(".mkimage.scr")
    argv = ["mkimage", "-A", "arm64", "-T", "script", "-C", "none", "-a", f"{load:#x}",
            "-e", f"{load:#x}", "-d", str(source), str(out)]
    if name is not None:
        argv[1:1] = ["-n", name]
    subprocess.run(argv, check=True, capture_output=True,
                   env={**os.environ, "SOURCE_DATE_EPOCH": str(epoch)})
    return out.read_bytes()


def dumpimage_l(path: Path) -> str:
    return subprocess.run(["dumpimage", "-l", str(path)], check=True, capture_output=True,
                          text=True).stdout


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_script_image_is_byte_identical_to_mkimage(tmp_path: Path, name: str) -> None:
    source = tmp_path / "boot.source"
    source.write_bytes(SCRIPTS[name])
    ours = build_script_image(ScriptImage(SCRIPTS[name], 0x40200000, EPOCH))
    assert ours == mkimage(source, 0x40200000, EPOCH)


def test_script_image_with_a_name_is_byte_identical_to_mkimage(tmp_path: Path) -> None:
    source = tmp_path / "boot.source"
    source.write_bytes(b"echo named\n")
    ours = build_script_image(ScriptImage(b"echo named\n", 0xC00000, EPOCH, b"xen boot"))
    assert ours == mkimage(source, 0xC00000, EPOCH, "xen boot")


def test_load_address_above_4_gib_is_cut_to_32_bits_as_mkimage_does(tmp_path: Path) -> None:
    source = tmp_path / "boot.source"
    source.write_bytes(b"echo high\n")
    ours = build_script_image(ScriptImage(b"echo high\n", 0x800200000, EPOCH))
    assert ours == mkimage(source, 0x800200000, EPOCH)
    (tmp_path / "ours.scr").write_bytes(ours)
    assert "Load Address: 00200000" in dumpimage_l(tmp_path / "ours.scr")


def test_dumpimage_reads_our_script_image(tmp_path: Path) -> None:
    script = SCRIPTS["large"]
    path = tmp_path / "boot.scr"
    path.write_bytes(build_script_image(ScriptImage(script, 0x40200000, EPOCH)))
    listing = dumpimage_l(path)
    assert "Image Type:   AArch64 Linux Script (uncompressed)" in listing
    assert "Created:      Tue Nov 14 22:13:20 2023" in listing
    assert "Load Address: 40200000" in listing
    assert "Entry Point:  40200000" in listing
    assert f"Image 0: {len(script)} Bytes" in listing
    # dumpimage 2023.01 -p 0 extracts the whole data part, length table included; it does the
    # same to mkimage's own images (checked by hand).
    subprocess.run(["dumpimage", "-T", "script", "-p", "0", "-o", str(tmp_path / "out"),
                    str(path)], check=True, capture_output=True)
    assert (tmp_path / "out").read_bytes() == struct.pack(">II", len(script), 0) + script


def test_empty_script_image_is_readable(tmp_path: Path) -> None:
    # mkimage refuses an empty input ("is empty, bailing out"), so there is no byte reference;
    # ours still is a well-formed image that dumpimage lists and we parse back.
    image = ScriptImage(b"", 0xC00000, 0)
    path = tmp_path / "empty.scr"
    path.write_bytes(build_script_image(image))
    assert "Data Size:    8 Bytes" in dumpimage_l(path)
    assert parse_script_image(path.read_bytes()) == image


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_parse_reads_back_what_build_wrote(name: str) -> None:
    image = ScriptImage(SCRIPTS[name], 0x2A00000, EPOCH, b"boot")
    assert parse_script_image(build_script_image(image)) == image


def test_parse_reads_mkimage_output(tmp_path: Path) -> None:
    source = tmp_path / "boot.source"
    source.write_bytes(b"echo from mkimage\n")
    blob = mkimage(source, 0x40200000, EPOCH)
    assert parse_script_image(blob) == ScriptImage(b"echo from mkimage\n", 0x40200000, EPOCH)


# ---- corrupt images -----------------------------------------------------------------------------

GOOD = build_script_image(ScriptImage(b"echo hello\n", 0x40200000, EPOCH))


def flipped(blob: bytes, offset: int) -> bytes:
    return blob[:offset] + bytes([blob[offset] ^ 0x01]) + blob[offset + 1:]


@pytest.mark.parametrize(("blob", "message"), [
    (GOOD[:63], "shorter than a uImage header"),
    (flipped(GOOD, 0), "bad magic 0x26051956"),
    (flipped(GOOD, 4), "header CRC mismatch"),  # the header CRC field itself
    (flipped(GOOD, 8), "header CRC mismatch"),  # the timestamp
    (flipped(GOOD, 64 + 8), "data CRC mismatch"),  # the first script byte
    (GOOD[:-1], "data CRC mismatch"),  # one byte missing
])
def test_corrupt_image_is_refused(blob: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=rf"^{re.escape(message)}$"):
        parse_script_image(blob)


def test_kernel_image_is_not_a_script(tmp_path: Path) -> None:
    kernel = tmp_path / "Image"
    kernel.write_bytes(b"\0" * 100)
    subprocess.run(["mkimage", "-A", "arm64", "-T", "kernel", "-C", "none", "-a", "0", "-e",
                    "0", "-d", str(kernel), str(tmp_path / "uImage")], check=True,
                   capture_output=True)
    with pytest.raises(ValueError, match=r"^image type 2 is not a script$"):
        parse_script_image((tmp_path / "uImage").read_bytes())


# ---- the CLI's boot.scr -------------------------------------------------------------------------

@pytest.mark.parametrize("epoch", [None, "1618531200"])
def test_cli_boot_scr_is_mkimage_of_its_boot_source(seed_inputs: Path, epoch: str | None
                                                    ) -> None:
    (seed_inputs / "config").write_text(
        (GOLDENS / "readme-tftp" / "config").read_text())
    env = {"SOURCE_DATE_EPOCH": epoch} if epoch else {}
    if epoch is None:
        env_unset = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
        result = subprocess.run(
            [sys.executable, "-m", "ibtasks", "uboot-script-gen", "-c", "config", "-d", ".", "-t",
             "tftp"], cwd=seed_inputs, env=env_unset, capture_output=True, text=True)
    else:
        result = run_ibtasks("uboot-script-gen", "-c", "config", "-d", ".", "-t", "tftp",
                             cwd=seed_inputs, env=env)
    assert result.returncode == 0, result.stderr
    # Unset, the timestamp is fixed at 0 so builds are reproducible.
    expected = mkimage(seed_inputs / "boot.source", 0xC00000, int(epoch or DEFAULT_EPOCH))
    assert (seed_inputs / "boot.scr").read_bytes() == expected
