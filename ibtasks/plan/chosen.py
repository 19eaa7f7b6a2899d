"""The /chosen edits that tell Xen what to boot (xen.git docs/misc/arm/device-tree/booting.txt).

A pure function of the config and the layout; the same list becomes the script's `fdt` commands
and the edited DTB. Differences from the seed, each on purpose: the dom0 ramdisk whenever it is
set (Q1), DOMU_CMD as the domU kernel's bootargs (Q2), 64-bit reg cells (Q3), and node names with
unit addresses such as `module@40C00000` (Q4).
"""

from __future__ import annotations

from ibtasks.config.model import Config, DomU
from ibtasks.formats.cells import to_cells
from ibtasks.formats.dt_edits import Cells, DtEdit, MakeNode, SetProp, Strings
from ibtasks.formats.dt_facts import DtFacts
from ibtasks.plan.domain_edits import (
    Phandles,
    allocate_phandles,
    cpupool_edits,
    domu_prop_edits,
    passthrough_edits,
    xen_edits,
)
from ibtasks.plan.layout import Layout

CHOSEN = "/chosen"


def _module(parent: str, prefix: str, layout: Layout, key: str,
            compatible: tuple[str, ...]) -> tuple[str, list[DtEdit]]:
    region = layout.region(key)
    node = MakeNode(parent, f"{prefix}@{region.address:X}")
    what = f"the reg of {node.path}"  # /chosen and domU nodes have 2 + 2 cells
    return node.path, [
        node,
        SetProp(node.path, "compatible", Strings(compatible)),
        SetProp(node.path, "reg", Cells(to_cells(region.address, 2, key, what)
                                        + to_cells(region.size, 2, key, what))),
    ]


def _domu_edits(domu: DomU, layout: Layout, phandles: Phandles, where: str) -> list[DtEdit]:
    node = MakeNode(CHOSEN, f"domU{domu.index}")
    memory_key = "DOMU_STATIC_MEM" if domu.props.static_mem_kib else "DOMU_MEM"
    edits: list[DtEdit] = [
        node,
        SetProp(node.path, "compatible", Strings(("xen,domain",))),
        SetProp(node.path, "#address-cells", Cells((2,))),
        SetProp(node.path, "#size-cells", Cells((2,))),
        SetProp(node.path, "memory",
                Cells(to_cells(domu.props.static_mem_kib or domu.mem_mib * 1024, 2,
                               f"{memory_key}[{domu.index}]",
                               f"{node.path} memory (KiB)", where))),
        SetProp(node.path, "cpus", Cells(to_cells(domu.vcpus, 1, f"DOMU_VCPUS[{domu.index}]",
                                                  f"{node.path} cpus", where))),
        *domu_prop_edits(domu, node.path, phandles, where),
    ]
    if domu.kernel:
        path, kernel = _module(node.path, "module", layout, domu.kernel.key,
                               ("multiboot,kernel", "multiboot,module"))
        edits += [*kernel, SetProp(path, "bootargs", Strings((domu.cmd,)))]
    if domu.ramdisk:
        edits += _module(node.path, "module", layout, domu.ramdisk.key,
                         ("multiboot,ramdisk", "multiboot,module"))[1]
    if domu.passthrough_dtb:
        edits += _module(node.path, "module", layout, domu.passthrough_dtb.key,
                         ("multiboot,device-tree", "multiboot,module"))[1]
    return edits


def plan_linux_edits(config: Config, layout: Layout) -> list[DtEdit]:
    """A bare-metal Linux boot's /chosen: bootargs and the ramdisk's start and end (64-bit)."""
    edits: list[DtEdit] = [SetProp(CHOSEN, "bootargs", Strings((config.boot.linux_cmd,)))]
    if config.boot.linux_ramdisk:
        ramdisk = layout.region(config.boot.linux_ramdisk.key)
        key, what = config.boot.linux_ramdisk.key, "linux,initrd-start/-end"
        edits += [SetProp(CHOSEN, "linux,initrd-start",
                          Cells(to_cells(ramdisk.address, 2, key, what))),
                  SetProp(CHOSEN, "linux,initrd-end", Cells(to_cells(ramdisk.end, 2, key, what)))]
    return edits


def plan_chosen_edits(config: Config, layout: Layout, facts: DtFacts | None = None
                      ) -> list[DtEdit]:
    """Every device-tree edit, in upstream's order; `facts` of the input DTB are needed for
    cpupools, static event channels, passthrough paths and the static heap."""
    if config.linux_mode:
        return plan_linux_edits(config, layout)
    facts = facts or DtFacts()
    phandles = allocate_phandles(config, facts)
    edits: list[DtEdit] = [
        SetProp(CHOSEN, "#address-cells", Cells((2,))),
        SetProp(CHOSEN, "#size-cells", Cells((2,))),
        SetProp(CHOSEN, "xen,xen-bootargs", Strings((config.xen_cmd,))),
        *xen_edits(config, facts),
    ]
    if config.boot.xen_policy:
        edits += _module(CHOSEN, "xen-policy", layout, config.boot.xen_policy.key,
                         ("xen,xsm-policy", "xen,multiboot-module", "multiboot,module"))[1]
    if config.dom0_kernel:
        edits += _module(CHOSEN, "dom0", layout, config.dom0_kernel.key,
                         ("xen,linux-zimage", "xen,multiboot-module", "multiboot,module"))[1]
        edits.append(SetProp(CHOSEN, "xen,dom0-bootargs", Strings((config.dom0_cmd,))))
    edits += passthrough_edits(config, facts)
    if config.dom0_ramdisk:
        edits += _module(CHOSEN, "dom0-ramdisk", layout, config.dom0_ramdisk.key,
                         ("xen,linux-initrd", "xen,multiboot-module", "multiboot,module"))[1]
    for domu in config.domus:
        if domu.boots_with_xen:
            edits += _domu_edits(domu, layout, phandles, config.source)
    return edits + cpupool_edits(config, phandles)
