"""Which check each input gets is the task layer's choice (`tasks.boot.check_role`), from its key;
the format code (`formats.file_check`) knows roles, not config keys."""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

import pytest

from ibtasks.config.reader import Binary
from ibtasks.errors import UserError
from ibtasks.formats.file_check import Role, check_file
from ibtasks.tasks.boot import check_role
from tests.inputs import arm64_image


@pytest.mark.parametrize(("key", "role"), [
    ("XEN", Role.EXECUTABLE), ("LINUX", Role.EXECUTABLE),
    ("DOM0_KERNEL", Role.DOMAIN_KERNEL), ("DOMU_KERNEL[0]", Role.DOMAIN_KERNEL),
    ("DOMU_KERNEL[12]", Role.DOMAIN_KERNEL),
    ("DEVICE_TREE", Role.DTB), ("DT_OVERLAY[1]", Role.DTB),
    ("DOMU_PASSTHROUGH_DTB[2]", Role.PARTIAL_DTB),
    ("DOM0_RAMDISK", Role.RAMDISK), ("DOMU_RAMDISK[0]", Role.RAMDISK),
    ("LINUX_RAMDISK", Role.RAMDISK),
    ("XEN_POLICY", Role.POLICY), ("BITSTREAM", Role.BITSTREAM),
])
def test_each_key_gets_the_role_of_what_is_done_with_its_file(key: str, role: Role) -> None:
    assert check_role(Binary(key, "file", "config:1")) is role


def zstd(path: Path, data: bytes) -> Path:
    path.write_bytes(subprocess.run(["zstd", "-q", "-c"], input=data, capture_output=True,
                                    check=True).stdout)
    return path


def test_a_zstd_kernel_is_refused_only_where_xen_unpacks_it(tmp_path: Path) -> None:
    kernel = zstd(tmp_path / "Image.zst", arm64_image("dom0", 300_000))
    with pytest.raises(UserError, match="Xen unpacks only gzip kernels"):
        check_file(kernel, Role.DOMAIN_KERNEL, "ANY_LABEL")
    # U-Boot starts an EXECUTABLE itself: the content is judged, the compression allowed.
    assert check_file(kernel, Role.EXECUTABLE, "ANY_LABEL").kind == "zstd(arm64 Image)"


def test_a_compressed_dtb_is_refused_only_where_u_boot_edits_it(tmp_path: Path) -> None:
    dts = tmp_path / "p.dts"
    dts.write_text("/dts-v1/;\n/ { passthrough { }; };\n")
    dtb = subprocess.run(["dtc", "-I", "dts", "-O", "dtb", str(dts)], capture_output=True,
                         check=True).stdout
    packed = tmp_path / "p.dtb.gz"
    packed.write_bytes(gzip.compress(dtb, mtime=0))
    with pytest.raises(UserError, match="give the plain DTB"):
        check_file(packed, Role.DTB, "ANY_LABEL")
    assert check_file(packed, Role.PARTIAL_DTB, "ANY_LABEL").kind == "gzip(DTB)"
