"""Device-tree edits for upstream's domain and Xen keys (domains.py), as `dtedit` values.

`chosen.plan_chosen_edits` calls these, so the boot script and the edited DTB get the same edits.
Property names and formats: Xen docs/misc/arm/device-tree/booting.txt and cpupools.txt. New
phandles are allocated downward from 0xfffffffe, as upstream does, skipping every phandle the
input DTB already uses (`dtfacts.DtFacts`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ibtasks.config.model import Config, DomU
from ibtasks.errors import UserError
from ibtasks.formats.cells import to_cells
from ibtasks.formats.dt_edits import Cells, DtEdit, Flag, MakeNode, SetProp, Strings, split_u64
from ibtasks.formats.dt_facts import DtFacts

CHOSEN = "/chosen"
FIRST_PHANDLE = 0xFFFFFFFE


@dataclass
class Phandles:
    """Phandles the edits refer to: existing ones reused, new ones allocated."""

    used: set[int]
    next_free: int = FIRST_PHANDLE
    cpus: dict[str, int] = field(default_factory=dict)  # /cpus child -> phandle
    new_cpus: set[str] = field(default_factory=set)  # those that need a phandle property
    pools: dict[int, int] = field(default_factory=dict)
    evtchns: dict[tuple[int, int], int] = field(default_factory=dict)  # (domU, local port)

    def allocate(self) -> int:
        while self.next_free in self.used:
            self.next_free -= 1
        if self.next_free == 0:
            raise UserError("DEVICE_TREE: no free phandle left")
        found = self.next_free
        self.used.add(found)
        return found


def allocate_phandles(config: Config, facts: DtFacts) -> Phandles:
    """Every phandle of cpupools (CPUs, then the pool, pool by pool) and static event channels."""
    phandles = Phandles(set(facts.phandles) | {0xFFFFFFFF})
    source = config.dtb_label
    for pool in config.xen_props.cpupools:
        for cpu in pool.cpus:
            if cpu not in facts.cpus:
                known = ", ".join(facts.cpus) or "none"
                raise UserError(f"CPUPOOL[{pool.index}]: {cpu} is not a node in /cpus of "
                                f"{source} (there: {known})", pool.where)
            existing = facts.cpus[cpu]
            if existing is None:
                phandles.cpus[cpu] = phandles.allocate()
                phandles.new_cpus.add(cpu)
            else:
                phandles.cpus[cpu] = existing
        phandles.pools[pool.index] = phandles.allocate()
    for domu in config.domus:
        if domu.boots_with_xen:
            for event in domu.props.static_evtchns:
                phandles.evtchns[domu.index, event.local_port] = phandles.allocate()
    return phandles


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

