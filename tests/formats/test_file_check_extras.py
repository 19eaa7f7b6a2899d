"""What the upstream script features' new inputs must be, and what file(1) (upstream's check)
says of the same bytes: an XSM policy is "SE Linux policy", a bitstream "Xilinx BIT data" or plain
data, APPEND_EXTRA_CMDS "ASCII text"; none of them may be compressed.
"""

from __future__ import annotations

import gzip
import struct
import subprocess
from pathlib import Path

import pytest

from ibtasks.errors import UserError
from ibtasks.formats.file_check import Role, check_file

POLICY = struct.pack("<II", 0xF97CFF8C, 8) + b"XenFlask" + bytes(100)


def file_says(path: Path) -> str:
    return subprocess.run(["file", "-b", str(path)], check=True, capture_output=True,
                          text=True).stdout


def test_xsm_policy_is_what_file_calls_a_se_linux_policy(tmp_path: Path) -> None:
    policy = tmp_path / "xenpolicy"
    policy.write_bytes(POLICY)
    assert file_says(policy).startswith("SE Linux policy")
    assert check_file(policy, Role.POLICY, "XEN_POLICY").kind == "SE Linux policy"


def test_xilinx_bit_file_is_a_bitstream(seed_inputs: Path) -> None:
    assert file_says(seed_inputs / "design.bit").startswith("Xilinx BIT data")
    info = check_file(seed_inputs / "design.bit", Role.BITSTREAM, "BITSTREAM")
    assert (info.kind, info.size) == ("Xilinx BIT", (seed_inputs / "design.bit").stat().st_size)


def test_extra_commands_are_text(seed_inputs: Path) -> None:
    assert file_says(seed_inputs / "extra-cmds.txt").startswith("ASCII text")
    assert check_file(seed_inputs / "extra-cmds.txt", Role.TEXT, "APPEND_EXTRA_CMDS").kind == "text"


@pytest.mark.parametrize(("role", "key"), [(Role.POLICY, "XEN_POLICY"),
                                           (Role.BITSTREAM, "BITSTREAM"),
                                           (Role.TEXT, "APPEND_EXTRA_CMDS")])
def test_compressed_inputs_used_as_they_are_are_rejected(tmp_path: Path, role: Role,
                                                         key: str) -> None:
    packed = tmp_path / "input.gz"
    packed.write_bytes(gzip.compress(POLICY if role is Role.POLICY else b"echo hi\n", mtime=0))
    with pytest.raises(UserError) as caught:
        check_file(packed, role, key)
    assert caught.value.message == (
        f"{key}: input.gz is gzip-compressed; give the plain file (it is used as it is)")


def test_compressed_overlay_is_rejected(seed_inputs: Path, tmp_path: Path) -> None:
    packed = tmp_path / "overlay.dtbo.gz"
    packed.write_bytes(gzip.compress((seed_inputs / "overlay.dtbo").read_bytes(), mtime=0))
    with pytest.raises(UserError) as caught:
        check_file(packed, Role.DTB, "DT_OVERLAY[0]")
    assert caught.value.message == (
        "DT_OVERLAY[0]: overlay.dtbo.gz is gzip-compressed; give the plain DTB (U-Boot's fdt "
        "commands need it uncompressed)")
