"""Checks across domUs of upstream's domain keys: `domu_props` reads one domU at a time, while
these rules (unique domain ids, one hardware and one xenstore domain, static memory that does not
overlap, shared regions that agree, event channels listed at both ends) need every domU at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ibtasks.config.domu_props import CAPS, DomUProps, SharedMem, StaticEvtchn
from ibtasks.config.number_lists import check_overlaps
from ibtasks.errors import UserError

if TYPE_CHECKING:
    from ibtasks.config.reader import KeyReader


def check_domus(props: list[tuple[int, bool, DomUProps]], has_dom0: bool,
                reader: KeyReader) -> None:
    """Checks across domUs: (index, boots with Xen, props) of every domU. Raises `UserError`
    naming the key of the later domU and its line."""
    def where(name: str, index: int) -> str:
        return reader.where(name, index) or reader.raw.source

    check_overlaps([(b, s, f"DOMU_STATIC_MEM[{i}]", where("DOMU_STATIC_MEM", i))
                    for i, _, p in props for b, s in p.static_mem])
    domids: dict[int, int] = {}
    holders: dict[int, int] = {}
    if has_dom0:
        holders = {CAPS["hardware"]: -1, CAPS["xenstore"]: -1}
    booted = {i for i, boots, _ in props if boots}
    _check_shared_mem(props, where)
    for i, _, p in props:
        if p.domid is not None:
            if p.domid == 0 and has_dom0:
                raise UserError(f"DOMU_DOMID[{i}]: domain id 0 is dom0's", where("DOMU_DOMID", i))
            if p.domid in domids:
                raise UserError(f"DOMU_DOMID[{i}]: domain id {p.domid} is also "
                                f"DOMU_DOMID[{domids[p.domid]}]", where("DOMU_DOMID", i))
            domids[p.domid] = i
        for cap in (CAPS["hardware"], CAPS["xenstore"]):
            if p.caps is not None and p.caps & cap:
                if cap in holders:
                    other = "dom0" if holders[cap] < 0 else f"DOMU_CAPS[{holders[cap]}]"
                    name = "hardware" if cap == CAPS["hardware"] else "xenstore"
                    raise UserError(f"DOMU_CAPS[{i}]: there can be only one {name} domain and "
                                    f"{other} is it", where("DOMU_CAPS", i))
                holders[cap] = i
        _check_evtchns(i, p, props, booted, where)


def _check_shared_mem(props: list[tuple[int, bool, DomUProps]],
                      where: Callable[[str, int], str]) -> None:
    """Xen: regions with the same ID must have the same host address and size."""
    first: dict[str, tuple[int, SharedMem]] = {}
    for i, _, p in props:
        for shm in p.shared_mem:
            if shm.shm_id not in first:
                first[shm.shm_id] = (i, shm)
                continue
            j, other = first[shm.shm_id]
            if (shm.host, shm.size) != (other.host, other.size):
                raise UserError(f"DOMU_SHARED_MEM[{i}]: region '{shm.shm_id}' must have the "
                                f"same host address and size as in DOMU_SHARED_MEM[{j}]",
                                where("DOMU_SHARED_MEM", i))


def _check_evtchns(i: int, p: DomUProps, props: list[tuple[int, bool, DomUProps]],
                   booted: set[int], where: Callable[[str, int], str]) -> None:
    by_index = {j: q for j, _, q in props}
    place = where("DOMU_STATIC_EVTCHNS", i)
    for event in p.static_evtchns:
        label = f"DOMU_STATIC_EVTCHNS[{i}]"
        if i not in booted:
            raise UserError(f"{label}: domU{i} is not started by Xen, so it has no static "
                            "event channels", place)
        remote = by_index.get(event.remote_domu)
        if remote is None or event.remote_domu not in booted or event.remote_domu == i:
            raise UserError(f"{label}: domU{event.remote_domu} is not another domU that Xen "
                            "starts", place)
        if StaticEvtchn(event.remote_port, i, event.local_port) not in remote.static_evtchns:
            raise UserError(f"{label}: DOMU_STATIC_EVTCHNS[{event.remote_domu}] must list the "
                            f"other end '{event.remote_port} {i} {event.local_port}'", place)
