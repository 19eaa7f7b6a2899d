"""One load-command parser: the disk U-Boot loads from, as Linux names its partitions.

dom0's `root=` (DOM0_ROOTFS), the xl configs' `disk=` and the `# mount` hint all read the load
command through `config.load_command.parse_block_device`, so they agree on every input: a device
Linux cannot name with one letter (`virtio 27:1`) is an error in both, never `/dev/vd|2`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ibtasks.config.load_command import (
    DOM0_ROOTFS_PARTITION,
    deduce_dom0_root,
    number_rootfs_partitions,
    parse_block_device,
)
from ibtasks.errors import UserError
from ibtasks.plan.xl_configs import XlDomU, render_xl_config
from tests.cli.test_cli_errors import GOOD, fail


@pytest.mark.parametrize(("load_cmd", "root"), [
    ("load mmc 0:1", "root=/dev/mmcblk0p2"),
    ("load mmc 2:3", "root=/dev/mmcblk2p4"),
    ("load scsi 1:1", "root=/dev/sdb2"),
    ("load virtio 0:1", "root=/dev/vda2"),
    ("ext4load virtio 25:2", "root=/dev/vdz3"),
])
def test_dom0_root_is_the_partition_after_the_boot_partition(load_cmd: str, root: str) -> None:
    assert deduce_dom0_root(load_cmd, True) == root


@pytest.mark.parametrize("load_cmd", ["load virtio 26:1", "load virtio 27:1", "load scsi 99:1",
                                      "load mmc x:1", "load mmc 0", "tftpb", "fatload usb 0:1"])
def test_a_disk_linux_cannot_name_is_refused_for_dom0_and_for_xl_alike(load_cmd: str) -> None:
    assert parse_block_device(load_cmd) is None
    with pytest.raises(UserError, match="cannot deduce dom0's root="):
        deduce_dom0_root(load_cmd, True)
    domu = XlDomU(0, "Image", None, 128, 1, None, False, rootfs_partition=3)
    with pytest.raises(UserError, match=r"DOMU_ROOTFS\[0\]: cannot name its partition"):
        render_xl_config(domu, load_cmd)


def test_xl_disk_and_dom0_root_name_the_same_disk() -> None:
    numbers = number_rootfs_partitions(True, [True])
    assert numbers == {0: DOM0_ROOTFS_PARTITION + 1}
    domu = XlDomU(0, "Image", None, 128, 1, None, False, rootfs_partition=numbers[0])
    text = render_xl_config(domu, "load virtio 1:1")
    assert deduce_dom0_root("load virtio 1:1", True) == "root=/dev/vdb2"
    assert 'disk=["/dev/vdb3,,xvda"]' in text
    assert "# mount /dev/vdb1 /boot" in text


def test_cli_refuses_a_dom0_rootfs_on_virtio_device_27(seed_inputs: Path) -> None:
    (seed_inputs / "rootfs-dom0.cpio.gz").write_bytes(b"")
    assert fail(seed_inputs, GOOD + "DOM0_ROOTFS=rootfs-dom0.cpio.gz\n",
                flags=("-c", "config", "-d", ".", "-t", "load virtio 27:1")) == (
        "ibtasks: error: DOM0_ROOTFS: cannot deduce dom0's root= from load command "
        "'load virtio 27:1' (only mmc, scsi and virtio devices like 'load mmc 0:1'); "
        "add root= to DOM0_CMD\n")
