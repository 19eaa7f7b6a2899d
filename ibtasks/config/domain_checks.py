"""Checks across domUs of upstream's domain keys, and the default XEN_CMD they lead to.

Split from `domains`, which reads one domain at a time: these rules (unique domain ids, one
hardware and one xenstore domain, static memory that does not overlap, shared regions that
agree, event channels listed at both ends) need every domU at once.
"""

from __future__ import annotations

from collections.abc import Callable

from ibtasks.config.domain_props import (
    CAPS,
    DomUProps,
    SharedMem,
    StaticEvtchn,
    Values,
    XenProps,
    check_overlaps,
)
from ibtasks.config.settings import parse_count
from ibtasks.errors import UserError


def check_domus(props: list[tuple[int, bool, DomUProps]], has_dom0: bool, source: str,
                values: Values) -> None:
    """Checks across domUs: (index, boots with Xen, props) of every domU."""
    def where(name: str, index: int) -> str:
        value = values.get((name, index))
        return value.where if value else source

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


def check_dom0(values: Values) -> bool:
    """Whether a dom0 is started; without DOM0_KERNEL no other DOM0_* key may be set."""
    kernel = values.get(("DOM0_KERNEL", None))
    if kernel is not None and kernel.text.strip():
        return True
    for name in ("DOM0_RAMDISK", "DOM0_ROOTFS", "DOM0_CMD", "DOM0_MEM", "DOM0_VCPUS",
                 "DOM0_COLORS"):
        value = values.get((name, None))
        if value is not None and value.text:
            raise UserError(f"{name} is set but DOM0_KERNEL is not: without DOM0_KERNEL there "
                            "is no dom0", value.where)
    return False


def choose_xen_cmd(values: Values, text: str, has_dom0: bool, xen: XenProps,
                   domu_colors: bool) -> str:
    """XEN_CMD as given (`text`), else the default built from DOM0_MEM, DOM0_VCPUS and the
    colours; the keys that feed the default are an error next to an explicit XEN_CMD."""
    given = values.get(("XEN_CMD", None))
    feeds = {name: v for name in ("DOM0_MEM", "DOM0_VCPUS", "XEN_COLORS", "DOM0_COLORS")
             if (v := values.get((name, None))) is not None and v.text.strip()}
    if given is not None and given.text.strip():
        for name, value in feeds.items():
            raise UserError(f"{name} only feeds the default XEN_CMD, but XEN_CMD is set: "
                            "put it in XEN_CMD instead", value.where)
        if domu_colors and "llc-coloring=on" not in text.split():
            raise UserError("DOMU_COLORS needs cache colouring: add llc-coloring=on to XEN_CMD",
                            given.where)
        return text
    numbers: dict[str, str | None] = {}
    for name, unit in (("DOM0_MEM", "MiB"), ("DOM0_VCPUS", "")):
        found = feeds.get(name)
        numbers[name] = None if found is None else found.text.strip()
        if found is None:
            continue
        value = found
        if parse_count(value.text) is None:
            what = f"a whole number of {unit}" if unit else "a whole number"
            raise UserError(f"{name}: expected {what}, got '{value.text.strip()}'", value.where)
        if parse_count(value.text) == 0:
            raise UserError(f"{name}: must be at least 1{' ' + unit if unit else ''}",
                            value.where)
    return default_xen_cmd(text, numbers["DOM0_MEM"], numbers["DOM0_VCPUS"], has_dom0, xen,
                           domu_colors)


def default_xen_cmd(base: str, dom0_mem: str | None, dom0_vcpus: str | None,
                    has_dom0: bool, xen: XenProps, any_domu_colors: bool) -> str:
    """The default XEN_CMD: the seed's, with DOM0_MEM/DOM0_VCPUS, colours, and no dom0 words
    when there is no dom0 (Xen would otherwise reserve memory for a dom0 that never comes)."""
    words = base.split()
    if dom0_mem is not None:
        words = [f"dom0_mem={dom0_mem}M" if w.startswith("dom0_mem=") else w for w in words]
    if dom0_vcpus is not None:
        words = [f"dom0_max_vcpus={dom0_vcpus}" if w.startswith("dom0_max_vcpus=") else w
                 for w in words]
    if xen.xen_colors or xen.dom0_colors or any_domu_colors:
        words.append("llc-coloring=on")
    if xen.xen_colors:
        words.append(f"xen-llc-colors={xen.xen_colors}")
    if xen.dom0_colors:
        words.append(f"dom0-llc-colors={xen.dom0_colors}")
    if not has_dom0:
        words = [w for w in words if not w.startswith("dom0")]
    return " ".join(words)
