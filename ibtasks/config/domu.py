"""One dom0less domU's keys (`DOMU_*[n]`) read into a `DomU`: the seed's kernel, ramdisk,
memory, vCPUs and command line, and upstream's extras (`domu_props`).
"""

from __future__ import annotations

from ibtasks.config.domu_props import read_domu_props
from ibtasks.config.model import DomU
from ibtasks.config.reader import KeyReader
from ibtasks.errors import UserError


def read_domu(reader: KeyReader, index: int, has_dom0: bool, num_cpupools: int) -> DomU:
    """DomU `index` from its keys and their table defaults. Raises `UserError` naming
    `KEY[index]`: a domU that Xen boots needs DOMU_KERNEL; DOMU_MEM must agree with
    DOMU_STATIC_MEM, whose sum it then is (rounded up to MiB)."""
    noboot = reader.flag("DOMU_NOBOOT", index)
    rootfs = reader.binary("DOMU_ROOTFS", index)
    kernel = reader.binary("DOMU_KERNEL", index)
    if kernel is None and not noboot and rootfs is None:
        raise UserError(f"DOMU_KERNEL[{index}] is required for a domU that Xen boots "
                        f"(NUM_DOMUS is {reader.count('NUM_DOMUS')})", reader.where("NUM_DOMUS"))
    mem = reader.count("DOMU_MEM", index)
    vcpus = reader.count("DOMU_VCPUS", index)
    props = read_domu_props(reader, index, has_dom0=has_dom0, vcpus=vcpus,
                            num_cpupools=num_cpupools)
    if props.static_mem:
        kib = props.static_mem_kib
        if reader.where("DOMU_MEM", index) is not None and mem * 1024 != kib:
            raise UserError(f"DOMU_MEM[{index}] is {mem} MiB but DOMU_STATIC_MEM[{index}] adds "
                            f"up to {kib} KiB: leave DOMU_MEM[{index}] out",
                            reader.where("DOMU_MEM", index))
        mem = -(-kib // 1024)
    cmd = reader.command_line("DOMU_CMD", index)
    if not props.vpl011 and not reader.raw.values.get(("DOMU_CMD", index)):
        cmd = ""  # upstream: no console=ttyAMA0 without the virtual PL011
    return DomU(
        **reader.read_fields(DomU, index),
        index=index,
        cmd=cmd,
        mem_mib=mem,
        cmd_given=reader.given("DOMU_CMD", index),
        props=props,
    )
