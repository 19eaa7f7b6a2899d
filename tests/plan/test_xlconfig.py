"""xl configs: golden texts derived by hand from `generate_domU_configs` of the original disk_image.

Each expected text follows the original's echo lines in order (name, memory, vcpus, the
`# mount` hint, kernel, ramdisk, extra, disk); only the partition numbers of rootfs domUs
differ where the original's numbering was wrong (Q7), as each test says.
"""

import pytest

from ibtasks.config.load_command import number_rootfs_partitions, parse_block_device
from ibtasks.errors import UserError
from ibtasks.plan.xl_configs import XlDomU, render_xl_config, render_xl_configs


def domu(index: int = 0, **changes: object) -> XlDomU:
    values: dict[str, object] = dict(
        index=index,
        kernel="dom1/Image",
        ramdisk="dom1/rd.cpio",
        memory_mib=512,
        vcpus=1,
        cmd=None,
        noboot=True,
        rootfs_partition=None,
    )
    values.update(changes)
    return XlDomU(**values)  # type: ignore[arg-type]


def test_noboot_domu_with_ramdisk_on_sd_card_gets_the_originals_text() -> None:
    assert render_xl_config(domu(), "load mmc 0:1") == (
        'name="domU0"\n'
        "memory=512\n"
        "vcpus=1\n"
        "# mount /dev/mmcblk0p1 /boot\n"
        'kernel="/boot/dom1/Image"\n'
        'ramdisk="/boot/dom1/rd.cpio"\n'
        'extra="console=hvc0 root=/dev/ram0"\n'
    )


def test_rootfs_domu_after_a_domu_without_rootfs_gets_the_partition_that_exists() -> None:
    # dom0 rootfs = sda2, domU0 has none, domU1's rootfs is the third partition: sda3.
    # The original wrote sda4 (partition 1 + 2 + domU index), a partition that does not exist.
    numbers = number_rootfs_partitions(True, [False, True])
    assert numbers == {1: 3}
    one = domu(1, ramdisk=None, memory_mib=256, vcpus=2, noboot=False, rootfs_partition=numbers[1])
    assert render_xl_config(one, "load scsi 0:1") == (
        'name="domU1"\n'
        "memory=256\n"
        "vcpus=2\n"
        "# mount /dev/sda1 /boot\n"
        'kernel="/boot/dom1/Image"\n'
        'extra="console=hvc0 root=/dev/xvda"\n'
        'disk=["/dev/sda3,,xvda"]\n'
    )


def test_rootfs_partitions_without_dom0_rootfs_start_at_two() -> None:
    assert number_rootfs_partitions(False, [True, False, True]) == {0: 2, 2: 3}


def test_virtio_disk_names_vd_devices_and_user_root_is_kept() -> None:
    text = render_xl_config(
        domu(cmd="console=hvc0 root=/dev/xvda2 rw", rootfs_partition=2), "load virtio 1:1"
    )
    assert "# mount /dev/vdb1 /boot\n" in text
    assert 'extra="console=hvc0 root=/dev/xvda2 rw"\n' in text
    assert text.endswith('disk=["/dev/vdb2,,xvda"]\n')


def test_partitions_count_from_the_boot_partition_of_the_load_command() -> None:
    # As the original: the boot partition is the load command's, rootfs partitions follow it.
    text = render_xl_config(domu(rootfs_partition=2), "load mmc 1:3")
    assert "# mount /dev/mmcblk1p3 /boot\n" in text
    assert text.endswith('disk=["/dev/mmcblk1p4,,xvda"]\n')


def test_tftp_boot_omits_the_mount_hint() -> None:
    text = render_xl_config(domu(), "tftpb")
    assert "# mount" not in text
    assert parse_block_device("tftpb") is None


def test_rootfs_domu_with_tftp_load_command_is_rejected() -> None:
    with pytest.raises(UserError, match=r"DOMU_ROOTFS\[0\]: cannot name its partition"):
        render_xl_config(domu(rootfs_partition=2), "tftpb")


def test_domu_without_kernel_is_rejected() -> None:
    with pytest.raises(UserError, match=r"DOMU_KERNEL\[0\] is needed"):
        render_xl_config(domu(kernel=None), "load mmc 0:1")


def test_double_quote_in_domu_cmd_is_rejected() -> None:
    with pytest.raises(UserError, match=r'DOMU_CMD\[0\]: a double quote'):
        render_xl_config(domu(cmd='console=hvc0 x="y"'), "load mmc 0:1")


def test_only_domus_that_dom0_starts_get_a_config() -> None:
    domus = [
        domu(0, noboot=False),  # Xen boots it: no xl config
        domu(1, noboot=True),
        domu(2, noboot=False, rootfs_partition=2),
    ]
    assert sorted(render_xl_configs(domus, "load mmc 0:1")) == [
        "etc/xen/domU1.cfg",
        "etc/xen/domU2.cfg",
    ]
