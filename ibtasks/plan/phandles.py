"""The phandles the /chosen edits refer to: cpupools' CPUs and pools, static event channels.

New phandles are allocated downward from 0xfffffffe, as upstream ImageBuilder does, skipping
every phandle the input DTB already uses (`formats.dtb.facts.DtFacts`); CPUs that already have
one keep it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ibtasks.config.model import Config
from ibtasks.errors import UserError
from ibtasks.formats.dtb.facts import DtFacts

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
        """The highest phandle not yet used; UserError when none is left."""
        while self.next_free in self.used:
            self.next_free -= 1
        if self.next_free == 0:
            raise UserError("DEVICE_TREE: no free phandle left")
        found = self.next_free
        self.used.add(found)
        return found


def allocate_phandles(config: Config, facts: DtFacts) -> Phandles:
    """Every phandle of cpupools (CPUs, then the pool, pool by pool) and static event channels.
    UserError naming CPUPOOL[n] when a CPU is not a child of /cpus in the DTB."""
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
