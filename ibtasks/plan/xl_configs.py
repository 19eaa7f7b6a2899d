"""xl config files (`/etc/xen/domU<i>.cfg`) for the domUs that dom0 starts, not Xen.

Follows `generate_domU_configs` of the original `disk_image`, with two fixes: a config is
written for each domU with DOMU_NOBOOT or DOMU_ROOTFS (not for every domU, quirk Q6, nor only
for NOBOOT ones as upstream later did), and `disk=` names the partition the domU's rootfs really
has on our disk, counting only rootfs partitions that exist (quirk Q7). As upstream since
2021/2022: `driver_domain=1` for DOMU_DRIVER_DOMAIN, and the passthrough lines of a
DOMU_PASSTHROUGH_DTB (`ibtasks.plan.passthrough`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ibtasks.config.load_command import parse_block_device
from ibtasks.errors import UserError
from ibtasks.plan.passthrough import Passthrough

DEFAULT_XL_CMD = "console=hvc0"


@dataclass(frozen=True)
class XlDomU:
    """What the xl config of `DOMU_*[index]` says.

    `kernel`/`ramdisk` are paths inside the boot partition (as in the config, relative to -d);
    `cmd` is DOMU_CMD exactly as the user set it, None when unset (then `console=hvc0`, as the
    original: the dom0less default `console=ttyAMA0` is wrong for an xl-started guest);
    `rootfs_partition` is the 1-based number of its rootfs partition in our disk layout.
    """

    index: int
    kernel: str | None
    ramdisk: str | None
    memory_mib: int
    vcpus: int
    cmd: str | None
    noboot: bool
    rootfs_partition: int | None = None
    driver_domain: bool = False
    passthrough: Passthrough | None = None

    @property
    def needs_xl_config(self) -> bool:
        return self.noboot or self.rootfs_partition is not None


def _quoted(text: str, what: str) -> str:
    # xl's config parser has no escape for '"' inside "..." strings.
    if '"' in text or "\n" in text:
        raise UserError(f"{what}: a double quote or newline cannot appear in an xl config value")
    return f'"{text}"'


def render_xl_config(domu: XlDomU, load_cmd: str) -> str:
    """The text of `/etc/xen/domU<index>.cfg`, line for line as the original writes it."""
    i = domu.index
    if domu.kernel is None:
        raise UserError(f"DOMU_KERNEL[{i}] is needed: dom0 starts domU{i} with xl from it")
    device = parse_block_device(load_cmd)
    lines = [f'name="domU{i}"', f"memory={domu.memory_mib}", f"vcpus={domu.vcpus}"]
    if domu.driver_domain:
        lines.append("driver_domain=1")
    if device is not None:
        # The original's hint: where the boot partition, and so the kernel, is found.
        lines.append(f"# mount {device.partition_path(device.partition)} /boot")
    lines.append(f"kernel={_quoted('/boot/' + domu.kernel, f'DOMU_KERNEL[{i}]')}")
    if domu.ramdisk:
        lines.append(f"ramdisk={_quoted('/boot/' + domu.ramdisk, f'DOMU_RAMDISK[{i}]')}")
    cmd = domu.cmd or DEFAULT_XL_CMD
    if "root=" not in cmd:
        cmd += " root=/dev/ram0" if domu.rootfs_partition is None else " root=/dev/xvda"
    lines.append(f"extra={_quoted(cmd, f'DOMU_CMD[{i}]')}")
    if domu.rootfs_partition is not None:
        if device is None:
            raise UserError(
                f"DOMU_ROOTFS[{i}]: cannot name its partition for xl from load command "
                f"'{load_cmd}' (only mmc, scsi and virtio devices like 'load mmc 0:1')"
            )
        # Partitions are numbered from the boot partition U-Boot loads from, as the original.
        number = device.partition + domu.rootfs_partition - 1
        lines.append(f'disk=["{device.partition_path(number)},,xvda"]')
    if domu.passthrough is not None:
        lines += domu.passthrough.xl_lines()
    return "\n".join(lines) + "\n"


def render_xl_configs(domus: Sequence[XlDomU], load_cmd: str) -> dict[str, str]:
    """`{"etc/xen/domU<i>.cfg": text}` for every domU that dom0 starts."""
    return {
        f"etc/xen/domU{domu.index}.cfg": render_xl_config(domu, load_cmd)
        for domu in domus
        if domu.needs_xl_config
    }
