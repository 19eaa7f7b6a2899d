"""Upstream's per-domain and Xen-wide keys (dom0less extras): read, validated, as frozen values.

`config.build_config` calls `build_domu_props` per domU and `build_xen_props` once; the device
tree edits they lead to are planned in `plan.chosen`. Formats follow upstream ImageBuilder's
README and Xen's docs/misc/arm/device-tree/booting.txt.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from ibtasks.config.settings import FALSE_WORDS, is_set
from ibtasks.errors import UserError, hex_and_dec

PAGE = 0x1000
CAPS = {"none": 0, "control": 1, "hardware": 2, "xenstore": 4, "dom0": 7}
SCHEDULERS = ("null", "credit", "credit2", "rtds", "arinc653")
MAX_NR_SPIS = 1020 - 32  # the GIC's SPI range (Xen: vgic nr_spis limit)
MAX_DOMID = 0x7FEF  # DOMID_FIRST_RESERVED - 1
MAX_SHM_ID = 15  # MAX_SHM_ID_LENGTH 16, NUL included
_COLORS = re.compile(r"\d+(-\d+)?(,\d+(-\d+)?)*")
_AFFINITY = _COLORS
AFFINITY_KEY = "DOMU_VCPU_HARD_AFFINITY"


class _Raw(Protocol):
    @property
    def text(self) -> str: ...

    @property
    def where(self) -> str: ...


Values = Mapping[tuple[str, int | None], _Raw]


@dataclass(frozen=True)
class SharedMem:
    """One `DOMU_SHARED_MEM` region: `ID [HPA] GPA size` (HPA None: Xen places it)."""

    shm_id: str
    host: int | None
    guest: int
    size: int


@dataclass(frozen=True)
class StaticEvtchn:
    """One `DOMU_STATIC_EVTCHNS` endpoint: local port, the remote domU's index and its port."""

    local_port: int
    remote_domu: int
    remote_port: int


@dataclass(frozen=True)
class DomUProps:
    """The domain properties beyond the seed's memory/cpus/modules; None or empty means unset."""

    enhanced: str | None = None  # "enabled" or "no-xenstore"
    vpl011: bool = True
    static_mem: tuple[tuple[int, int], ...] = ()
    direct_map: bool = False
    shared_mem: tuple[SharedMem, ...] = ()
    nr_spis: int | None = None
    grant_ver: int | None = None
    grant_frames: int | None = None
    maptrack_frames: int | None = None
    caps: int | None = None
    domid: int | None = None
    colors: str | None = None
    cpupool: int | None = None
    static_evtchns: tuple[StaticEvtchn, ...] = ()
    vcpu_hard_affinity: tuple[tuple[int, str], ...] = ()
    passthrough_paths: tuple[str, ...] = ()
    passthrough_prop: str | None = None
    trap_unmap: int | None = None
    passthrough_where: str | None = None

    @property
    def static_mem_kib(self) -> int:
        return sum(size for _, size in self.static_mem) // 1024


@dataclass(frozen=True)
class CpuPool:
    """`CPUPOOL[n]="cpu@a,cpu@b [scheduler]"`: CPU node names under /cpus and a scheduler."""

    index: int
    cpus: tuple[str, ...]
    sched: str | None
    where: str


@dataclass(frozen=True)
class XenProps:
    """Xen-wide keys: static heap regions, cache colours and boot-time cpupools."""

    static_heap: tuple[tuple[int, int], ...] = ()
    static_heap_where: str | None = None
    xen_colors: str | None = None
    dom0_colors: str | None = None
    cpupools: tuple[CpuPool, ...] = ()


class _Keys:
    """Typed reads of raw values, naming `KEY[n]` and its place in every error."""

    def __init__(self, values: Values, source: str, index: int | None = None) -> None:
        self.values = values
        self.source = source
        self.index = index

    def label(self, name: str) -> str:
        return name if self.index is None else f"{name}[{self.index}]"

    def where(self, name: str) -> str:
        value = self.values.get((name, self.index))
        return value.where if value else self.source

    def text(self, name: str) -> str | None:
        value = self.values.get((name, self.index))
        return value.text.strip() if value is not None and value.text.strip() else None

    def fail(self, name: str, message: str) -> UserError:
        return UserError(f"{self.label(name)}: {message}", self.where(name))

    def number(self, name: str, low: int, high: int, what: str = "a number") -> int | None:
        text = self.text(name)
        if text is None:
            return None
        value = _int(text)
        if value is None or not low <= value <= high:
            raise self.fail(name, f"expected {what} from {low} to {high}, got '{text}'")
        return value

    def switch(self, name: str) -> bool | None:
        """0/1 style keys: None when unset."""
        value = self.values.get((name, self.index))
        if value is None:
            return None
        return is_set(value.text)


def _int(text: str) -> int | None:
    try:
        value = int(text, 0)
    except ValueError:
        return None
    return value if value >= 0 else None


def _pairs(keys: _Keys, name: str) -> tuple[tuple[int, int], ...]:
    """`base size [base size ...]`, page aligned, non-empty, not overlapping each other."""
    text = keys.text(name)
    if text is None:
        return ()
    words = text.split()
    numbers = [_int(w) for w in words]
    if len(words) % 2 or any(n is None for n in numbers):
        raise keys.fail(name, f"expected pairs of 'base size' numbers, got '{text}'")
    pairs = [(numbers[i] or 0, numbers[i + 1] or 0) for i in range(0, len(numbers), 2)]
    for base, size in pairs:
        if size == 0 or base % PAGE or size % PAGE:
            raise keys.fail(name, f"region {base:#x} size {hex_and_dec(size)} must be non-empty "
                                  "and 4 KiB aligned")
    check_overlaps([(b, s, keys.label(name), keys.where(name)) for b, s in pairs])
    return tuple(pairs)


def check_overlaps(regions: list[tuple[int, int, str, str]]) -> None:
    """Raise naming both owners if two (base, size, owner, where) regions overlap; a region
    that overlaps any later one overlaps the next in address order."""
    ordered = sorted(regions)
    for (b1, s1, o1, _), (b2, s2, o2, where) in itertools.pairwise(ordered):
        if b2 < b1 + s1:
            raise UserError(f"{o2}: region {b2:#x}-{b2 + s2:#x} overlaps {o1}'s "
                            f"{b1:#x}-{b1 + s1:#x}", where)


def _colors(keys: _Keys, name: str) -> str | None:
    text = keys.text(name)
    if text is None:
        return None
    if not _COLORS.fullmatch(text) or any(
            int(a) > int(b) for a, b in re.findall(r"(\d+)-(\d+)", text)):
        raise keys.fail(name, f"expected colours like '0-3' or '0-3,8,10-11', got '{text}'")
    return text


def _enhanced(keys: _Keys, has_dom0: bool) -> str | None:
    text = keys.text("DOMU_ENHANCED")
    if text is None:
        # Upstream's default: PV interfaces when a dom0 can run xenstored for them.
        return "enabled" if has_dom0 and ("DOMU_ENHANCED", keys.index) not in keys.values \
            else None
    lowered = text.lower()
    if lowered in ("1", "enabled"):
        return "enabled"
    if lowered in ("2", "no-xenstore"):
        return "no-xenstore"  # upstream turns 2 into "enabled" when dom0 exists; we do not
    if lowered in FALSE_WORDS:
        return None
    raise keys.fail("DOMU_ENHANCED", f"expected 0, 1 (enabled) or 2 (no-xenstore), got '{text}'")


def _caps(keys: _Keys) -> int | None:
    text = keys.text("DOMU_CAPS")
    if text is None:
        return None
    number = _int(text)
    if number is not None:
        if number > 7:
            raise keys.fail("DOMU_CAPS", f"expected a capability mask from 0 to 7, got '{text}'")
        return number
    caps = 0
    for word in re.split(r"[\s,|]+", text.lower()):
        if word not in CAPS:
            raise keys.fail("DOMU_CAPS", f"unknown capability '{word}' (known: "
                                         f"{', '.join(CAPS)}, or a number)")
        caps |= CAPS[word]
    return caps


def _shared_mem(keys: _Keys) -> tuple[SharedMem, ...]:
    name = "DOMU_SHARED_MEM"
    text = keys.text(name)
    if text is None:
        return ()
    regions = []
    for entry in (e.split() for e in text.split(";") if e.strip()):
        numbers = [_int(w) for w in entry[1:]]
        if len(entry) not in (3, 4) or any(n is None for n in numbers):
            raise keys.fail(name, f"expected 'ID [host-address] guest-address size', got "
                                  f"'{' '.join(entry)}'")
        shm_id = entry[0]
        if len(shm_id) > MAX_SHM_ID or not shm_id.isprintable():
            raise keys.fail(name, f"ID '{shm_id}' is longer than {MAX_SHM_ID} characters")
        host = numbers[0] if len(numbers) == 3 else None
        guest, size = numbers[-2] or 0, numbers[-1] or 0
        if size == 0 or guest % PAGE or size % PAGE or (host or 0) % PAGE:
            raise keys.fail(name, f"region '{shm_id}' must be non-empty and 4 KiB aligned")
        regions.append(SharedMem(shm_id, host, guest, size))
    return tuple(regions)


def _evtchns(keys: _Keys) -> tuple[StaticEvtchn, ...]:
    name = "DOMU_STATIC_EVTCHNS"
    text = keys.text(name)
    if text is None:
        return ()
    found: list[StaticEvtchn] = []
    for entry in (e.split() for e in text.split(";") if e.strip()):
        numbers = [_int(w) for w in entry]
        if len(entry) != 3 or any(n is None for n in numbers):
            raise keys.fail(name, f"expected 'local-port remote-domU remote-port', got "
                                  f"'{' '.join(entry)}'")
        event = StaticEvtchn(numbers[0] or 0, numbers[1] or 0, numbers[2] or 0)
        if event.local_port == 0 or event.remote_port == 0 or event.local_port > 1 << 17:
            raise keys.fail(name, f"port numbers must be from 1 to {1 << 17}")
        if any(e.local_port == event.local_port for e in found):
            raise keys.fail(name, f"local port {event.local_port} is given twice")
        found.append(event)
    return tuple(found)


def _affinity(keys: _Keys, vcpus: int) -> tuple[tuple[int, str], ...]:
    prefix = AFFINITY_KEY + ","
    if (AFFINITY_KEY, keys.index) in keys.values:  # YAML: no [domU,vCPU] form
        raise keys.fail(AFFINITY_KEY, "give it per vCPU in a bash config: "
                                      f"{AFFINITY_KEY}[domU,vCPU]=pCPUs")
    found = []
    for (name, index), value in keys.values.items():
        if index != keys.index or not name.startswith(prefix):
            continue
        vcpu = int(name[len(prefix):])
        label = f"{AFFINITY_KEY}[{index},{vcpu}]"
        text = value.text.strip()
        if vcpu >= vcpus:
            raise UserError(f"{label}: vCPU {vcpu} does not exist (DOMU_VCPUS[{index}] is "
                            f"{vcpus})", value.where)
        if not _AFFINITY.fullmatch(text):
            raise UserError(f"{label}: expected pCPUs like '0-3' or '1,4-7', got '{text}'",
                            value.where)
        found.append((vcpu, text))
    return tuple(sorted(found))


def build_domu_props(values: Values, source: str, index: int, *, has_dom0: bool,
                     vcpus: int, num_cpupools: int) -> DomUProps:
    """Read and check domU `index`'s extra keys (the cross-domain checks are in `check_domus`)."""
    keys = _Keys(values, source, index)
    static_mem = _pairs(keys, "DOMU_STATIC_MEM")
    direct_map = keys.switch("DOMU_DIRECT_MAP")
    if direct_map and not static_mem:
        raise keys.fail("DOMU_DIRECT_MAP", f"needs DOMU_STATIC_MEM[{index}] (Xen: direct-map is "
                                           "only valid with static allocation)")
    cpupool = keys.number("DOMU_CPUPOOL", 0, max(num_cpupools - 1, 0), "a cpupool index")
    if cpupool is not None and num_cpupools == 0:
        raise keys.fail("DOMU_CPUPOOL", "NUM_CPUPOOLS is 0: define CPUPOOL[n] first")
    passthrough_prop = keys.text("DOMU_PASSTHROUGH_PROP")
    if passthrough_prop not in (None, "enabled", "disabled"):
        raise keys.fail("DOMU_PASSTHROUGH_PROP",
                        f"expected enabled or disabled, got '{passthrough_prop}'")
    paths = tuple((keys.text("DOMU_PASSTHROUGH_PATHS") or "").split())
    for path in paths:
        if not path.startswith("/") or path == "/":
            raise keys.fail("DOMU_PASSTHROUGH_PATHS", f"'{path}' is not an absolute node path")
    enhanced = _enhanced(keys, has_dom0)
    evtchns = _evtchns(keys)
    if evtchns and enhanced is None:
        raise keys.fail("DOMU_STATIC_EVTCHNS", f"needs PV interfaces: set DOMU_ENHANCED[{index}]"
                                               "=2 (no-xenstore) or 1")
    return DomUProps(
        enhanced=enhanced,
        vpl011=keys.switch("DOMU_VPL011") is not False,
        static_mem=static_mem,
        direct_map=bool(static_mem) if direct_map is None else direct_map,
        shared_mem=_shared_mem(keys),
        nr_spis=keys.number("DOMU_NR_SPIS", 0, MAX_NR_SPIS),
        grant_ver=keys.number("DOMU_GRANT_VER", 1, 2, "a grant table version"),
        grant_frames=keys.number("DOMU_GRANT_FRAMES", 1, 0xFFFFFFFF),
        maptrack_frames=keys.number("DOMU_MAPTRACK_FRAMES", 0, 0xFFFFFFFF),
        caps=_caps(keys),
        domid=keys.number("DOMU_DOMID", 0, MAX_DOMID, "a domain id"),
        colors=_colors(keys, "DOMU_COLORS"),
        cpupool=cpupool,
        static_evtchns=evtchns,
        vcpu_hard_affinity=_affinity(keys, vcpus),
        passthrough_paths=paths,
        passthrough_prop=passthrough_prop,
        trap_unmap=keys.number("DOMU_TRAP_UNMAP", 0, 1, "0 or 1"),
        passthrough_where=keys.where("DOMU_PASSTHROUGH_PATHS"),
    )


def build_xen_props(values: Values, source: str) -> XenProps:
    """Read XEN_STATIC_HEAP, XEN_COLORS, DOM0_COLORS, NUM_CPUPOOLS and CPUPOOL[n]."""
    keys = _Keys(values, source)
    num = keys.number("NUM_CPUPOOLS", 0, 64, "a count") or 0
    pools = []
    for i in range(num):
        pool_keys = _Keys(values, source, i)
        text = pool_keys.text("CPUPOOL")
        if text is None:
            raise UserError(f"CPUPOOL[{i}] is required (NUM_CPUPOOLS is {num})",
                            keys.where("NUM_CPUPOOLS"))
        words = text.split()
        cpus = tuple(c for c in words[0].split(",") if c)
        sched = words[1] if len(words) > 1 else None
        if len(words) > 2 or not cpus:
            raise pool_keys.fail("CPUPOOL", f"expected 'cpu@a,cpu@b [scheduler]', got '{text}'")
        if sched is not None and sched not in SCHEDULERS:
            raise pool_keys.fail("CPUPOOL", f"unknown scheduler '{sched}' (known: "
                                            f"{', '.join(SCHEDULERS)})")
        pools.append(CpuPool(i, cpus, sched, pool_keys.where("CPUPOOL")))
    seen: dict[str, int] = {}
    for pool in pools:
        for cpu in pool.cpus:
            if cpu in seen:
                raise UserError(f"CPUPOOL[{pool.index}]: {cpu} is already in CPUPOOL[{seen[cpu]}]",
                                pool.where)
            seen[cpu] = pool.index
    return XenProps(
        static_heap=_pairs(keys, "XEN_STATIC_HEAP"),
        static_heap_where=keys.where("XEN_STATIC_HEAP"),
        xen_colors=_colors(keys, "XEN_COLORS"),
        dom0_colors=_colors(keys, "DOM0_COLORS"),
        cpupools=tuple(pools),
    )
