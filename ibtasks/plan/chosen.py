"""Every device-tree edit of a build, in one list: the /chosen nodes that tell Xen what to boot.

Xen and its command line, dom0, every domU booted with Xen (with upstream's domain properties:
static memory, shared memory, event channels, vCPU affinity, ...), cpupools, passthrough flags
and the phandles they refer to (`phandles`), as in Xen's docs/misc/arm/device-tree/booting.txt
and cpupools.txt. A pure function of the config, the layout and the input DTB's facts; the same
list becomes the script's `fdt` commands and the edited DTB (`formats.dtb.edits`). Differences
from the seed, each on purpose: the dom0 ramdisk whenever it is set (Q1), DOMU_CMD as the domU
kernel's bootargs (Q2), 64-bit reg cells (Q3), and node names with unit addresses such as
`module@40C00000` (Q4).
"""

from __future__ import annotations

from ibtasks.config.model import Config, DomU
from ibtasks.errors import UserError
from ibtasks.formats.cells import to_cells
from ibtasks.formats.dtb.edits import (
    Cells,
    DtEdit,
    Flag,
    MakeNode,
    SetProp,
    Strings,
    split_u64,
)
from ibtasks.formats.dtb.facts import DtFacts
from ibtasks.plan.layout import Layout
from ibtasks.plan.phandles import Phandles, allocate_phandles

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


# --- Xen's and the domains' properties (upstream's domains keys) -------------------------


def _cells_of(value: int, cells: int, what: str, where: str | None) -> tuple[int, ...]:
    if cells not in (1, 2) or value >> (32 * cells):
        raise UserError(f"{what}: {value:#x} does not fit the device tree's {cells} cells", where)
    return split_u64(value) if cells == 2 else (value,)


def xen_edits(config: Config, facts: DtFacts) -> list[DtEdit]:
    """/chosen properties for Xen itself: `xen,static-heap` in the root node's cell sizes."""
    heap = config.xen_props.static_heap
    if not heap:
        return []
    where = config.xen_props.static_heap_where
    cells: tuple[int, ...] = ()
    for base, size in heap:
        cells += _cells_of(base, facts.address_cells, "XEN_STATIC_HEAP", where)
        cells += _cells_of(size, facts.size_cells, "XEN_STATIC_HEAP", where)
    return [SetProp(CHOSEN, "xen,static-heap", Cells(cells))]


def domu_prop_edits(domu: DomU, node: str, phandles: Phandles, where: str | None = None
                    ) -> list[DtEdit]:
    """The domU node's properties after `cpus`, and its shared-memory, event-channel and vCPU
    subnodes (the domU node has #address-cells = #size-cells = 2). A value that does not fit
    its cells is a UserError naming its key (`where`: the config file)."""
    p = domu.props

    def cells_of(key: str, what: str, *values: int, width: int = 2) -> tuple[int, ...]:
        label = f"{key}[{domu.index}]"
        return tuple(c for v in values for c in to_cells(v, width, label, what, where))

    edits: list[DtEdit] = []
    if p.static_mem:
        cells = cells_of("DOMU_STATIC_MEM", "xen,static-mem",
                         *(v for region in p.static_mem for v in region))
        edits.append(SetProp(node, "xen,static-mem", Cells(cells)))
    if p.direct_map:
        edits.append(SetProp(node, "direct-map", Flag()))
    if p.cpupool is not None:
        edits.append(SetProp(node, "domain-cpupool", Cells((phandles.pools[p.cpupool],))))
    if p.enhanced:
        edits.append(SetProp(node, "xen,enhanced", Strings((p.enhanced,))))
    if p.vpl011:
        edits.append(SetProp(node, "vpl011", Cells((1,))))  # as the seed; Xen checks presence
    numbers = (("nr_spis", p.nr_spis), ("max_grant_version", p.grant_ver),
               ("max_grant_frames", p.grant_frames), ("max_maptrack_frames", p.maptrack_frames),
               ("capabilities", p.caps), ("domid", p.domid),
               ("trap-unmapped-accesses", p.trap_unmap))
    edits += [SetProp(node, name, Cells((value,))) for name, value in numbers if value is not None]
    if p.colors:
        edits.append(SetProp(node, "llc-colors", Strings((p.colors,))))
    if p.passthrough_prop:
        edits.append(SetProp(node, "passthrough", Strings((p.passthrough_prop,))))
    for shm in p.shared_mem:
        name = f"shared-mem@{shm.host:X}" if shm.host is not None else f"shared-mem-{shm.shm_id}"
        sub = MakeNode(node, name)
        host = (shm.host,) if shm.host is not None else ()
        cells = cells_of("DOMU_SHARED_MEM", "xen,shared-mem", *host, shm.guest, shm.size)
        edits += [sub,
                  SetProp(sub.path, "compatible", Strings(("xen,domain-shared-memory-v1",))),
                  SetProp(sub.path, "xen,shm-id", Strings((shm.shm_id,))),
                  SetProp(sub.path, "xen,shared-mem", Cells(cells))]
    for event in p.static_evtchns:
        sub = MakeNode(node, f"evtchn@{event.local_port:X}")
        remote = phandles.evtchns[event.remote_domu, event.remote_port]
        edits += [sub,
                  SetProp(sub.path, "compatible", Strings(("xen,evtchn-v1",))),
                  SetProp(sub.path, "phandle", Cells((phandles.evtchns[domu.index,
                                                                        event.local_port],))),
                  SetProp(sub.path, "xen,evtchn",
                          Cells((*cells_of("DOMU_STATIC_EVTCHNS", "xen,evtchn",
                                           event.local_port, width=1), remote)))]
    for vcpu, pcpus in p.vcpu_hard_affinity:
        sub = MakeNode(node, f"vcpu{vcpu}")
        edits += [sub,
                  SetProp(sub.path, "compatible", Strings(("xen,vcpu",))),
                  SetProp(sub.path, "id", Cells((vcpu,))),
                  SetProp(sub.path, "hard-affinity", Strings((pcpus,)))]
    return edits


def passthrough_edits(config: Config, facts: DtFacts) -> list[DtEdit]:
    """`xen,passthrough` on every DOMU_PASSTHROUGH_PATHS node, for every domU (also those dom0
    starts later: Xen must keep the device from dom0 at boot)."""
    edits: list[DtEdit] = []
    for domu in config.domus:
        for path in domu.props.passthrough_paths:
            if not facts.nodes.get(path, False):
                raise UserError(f"DOMU_PASSTHROUGH_PATHS[{domu.index}]: {path} is not a node of "
                                f"DEVICE_TREE ({config.device_tree.path})",
                                domu.props.passthrough_where)
            edits.append(SetProp(path, "xen,passthrough", Flag()))
    return edits


def cpupool_edits(config: Config, phandles: Phandles) -> list[DtEdit]:
    """Phandles for CPUs that lack one, then `/chosen/cpupool_<n>` nodes (`xen,cpupool`)."""
    edits: list[DtEdit] = []
    for pool in config.xen_props.cpupools:
        for cpu in pool.cpus:
            if cpu in phandles.new_cpus:
                edits.append(SetProp(f"/cpus/{cpu}", "phandle", Cells((phandles.cpus[cpu],))))
        node = MakeNode(CHOSEN, f"cpupool_{pool.index}")
        edits += [node,
                  SetProp(node.path, "phandle", Cells((phandles.pools[pool.index],))),
                  SetProp(node.path, "compatible", Strings(("xen,cpupool",))),
                  SetProp(node.path, "cpupool-cpus",
                          Cells(tuple(phandles.cpus[c] for c in pool.cpus)))]
        if pool.sched:
            edits.append(SetProp(node.path, "cpupool-sched", Strings((pool.sched,))))
    return edits
