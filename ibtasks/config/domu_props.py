"""One domU's keys beyond the seed's (upstream's dom0less extras), read into a frozen `DomUProps`.

Numbers are read through their rows of the settings table (`KeyReader.number`); formats follow
upstream ImageBuilder's README and Xen's docs/misc/arm/device-tree/booting.txt. Checks that need
every domU at once are in `domu_checks`; the device-tree edits in `plan.chosen`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ibtasks.config.number_lists import numbers_hint, parse_numbers, parse_range_list, parse_regions
from ibtasks.config.reader import from_key
from ibtasks.config.settings import FALSE_WORDS, MAX_CPUPOOLS, parse_count
from ibtasks.config.xen_props import read_colors
from ibtasks.errors import UserError

if TYPE_CHECKING:
    from ibtasks.config.reader import KeyReader

PAGE = 0x1000
CAPS = {"none": 0, "control": 1, "hardware": 2, "xenstore": 4, "dom0": 7}
MAX_SHM_ID = 15  # MAX_SHM_ID_LENGTH 16, NUL included
MAX_EVTCHN_PORT = 1 << 17
AFFINITY_KEY = "DOMU_VCPU_HARD_AFFINITY"


@dataclass(frozen=True)
class SharedMem:
    """One `DOMU_SHARED_MEM` region: `ID [HPA] GPA size` (bytes; HPA None: Xen places it)."""

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
    """The domain properties beyond the seed's memory/cpus/modules; None or empty means unset.
    A field marked `from_key` is read through its key's row of the settings table, with no
    code here."""

    vpl011: bool = field(metadata=from_key("DOMU_VPL011"))
    nr_spis: int | None = field(metadata=from_key("DOMU_NR_SPIS"))
    grant_ver: int | None = field(metadata=from_key("DOMU_GRANT_VER"))
    grant_frames: int | None = field(metadata=from_key("DOMU_GRANT_FRAMES"))
    maptrack_frames: int | None = field(metadata=from_key("DOMU_MAPTRACK_FRAMES"))
    domid: int | None = field(metadata=from_key("DOMU_DOMID"))
    trap_unmap: int | None = field(metadata=from_key("DOMU_TRAP_UNMAP"))
    passthrough_prop: str | None = field(metadata=from_key("DOMU_PASSTHROUGH_PROP"))
    enhanced: str | None  # "enabled" or "no-xenstore"
    static_mem: tuple[tuple[int, int], ...]  # (base, size) in bytes
    direct_map: bool
    shared_mem: tuple[SharedMem, ...]
    caps: int | None
    colors: str | None  # decimal list, `0-3,8`
    cpupool: int | None
    static_evtchns: tuple[StaticEvtchn, ...]
    vcpu_hard_affinity: tuple[tuple[int, str], ...]  # (vCPU, decimal pCPU list)
    passthrough_paths: tuple[str, ...]
    passthrough_where: str | None

    @property
    def static_mem_kib(self) -> int:
        return sum(size for _, size in self.static_mem) // 1024


def _enhanced(reader: KeyReader, index: int, has_dom0: bool) -> str | None:
    text = reader.given("DOMU_ENHANCED", index)
    if text is None:
        # Upstream's default: PV interfaces when a dom0 can run xenstored for them.
        return "enabled" if has_dom0 and reader.where("DOMU_ENHANCED", index) is None else None
    lowered = text.lower()
    if lowered in ("1", "enabled"):
        return "enabled"
    if lowered in ("2", "no-xenstore"):
        return "no-xenstore"  # upstream turns 2 into "enabled" when dom0 exists; we do not
    if lowered in FALSE_WORDS:
        return None
    raise UserError(f"DOMU_ENHANCED[{index}]: expected 0, 1 (enabled) or 2 (no-xenstore), got "
                    f"'{text}'", reader.where("DOMU_ENHANCED", index))


def _caps(reader: KeyReader, index: int) -> int | None:
    text = reader.given("DOMU_CAPS", index)
    if text is None:
        return None
    where = reader.where("DOMU_CAPS", index)
    number = parse_count(text)
    if number is not None:
        if number > 7:
            raise UserError(f"DOMU_CAPS[{index}]: expected a capability mask from 0 to 7, got "
                            f"'{text}'", where)
        return number
    caps = 0
    for word in re.split(r"[\s,|]+", text.lower()):
        if word not in CAPS:
            raise UserError(f"DOMU_CAPS[{index}]: unknown capability '{word}' (known: "
                            f"{', '.join(CAPS)}, or a number){numbers_hint([word])}", where)
        caps |= CAPS[word]
    return caps


def _shared_mem(reader: KeyReader, index: int) -> tuple[SharedMem, ...]:
    label, where = f"DOMU_SHARED_MEM[{index}]", reader.where("DOMU_SHARED_MEM", index)
    text = reader.given("DOMU_SHARED_MEM", index)
    regions = []
    for entry in (e.split() for e in (text or "").split(";") if e.strip()):
        numbers = parse_numbers(entry[1:])
        if len(entry) not in (3, 4) or numbers is None:
            raise UserError(f"{label}: expected 'ID [host-address] guest-address size', got "
                            f"'{' '.join(entry)}'{numbers_hint(entry[1:])}", where)
        shm_id = entry[0]
        if len(shm_id) > MAX_SHM_ID or not shm_id.isprintable():
            raise UserError(f"{label}: ID '{shm_id}' is longer than {MAX_SHM_ID} characters",
                            where)
        host = numbers[0] if len(numbers) == 3 else None
        guest, size = numbers[-2], numbers[-1]
        if size == 0 or guest % PAGE or size % PAGE or (host or 0) % PAGE:
            raise UserError(f"{label}: region '{shm_id}' must be non-empty and 4 KiB aligned",
                            where)
        regions.append(SharedMem(shm_id, host, guest, size))
    return tuple(regions)


def _evtchns(reader: KeyReader, index: int) -> tuple[StaticEvtchn, ...]:
    label, where = f"DOMU_STATIC_EVTCHNS[{index}]", reader.where("DOMU_STATIC_EVTCHNS", index)
    text = reader.given("DOMU_STATIC_EVTCHNS", index)
    found: list[StaticEvtchn] = []
    for entry in (e.split() for e in (text or "").split(";") if e.strip()):
        numbers = parse_numbers(entry)
        if len(entry) != 3 or numbers is None:
            raise UserError(f"{label}: expected 'local-port remote-domU remote-port', got "
                            f"'{' '.join(entry)}'{numbers_hint(entry)}", where)
        event = StaticEvtchn(*numbers)
        if event.local_port == 0 or event.remote_port == 0 or event.local_port > MAX_EVTCHN_PORT:
            raise UserError(f"{label}: port numbers must be from 1 to {MAX_EVTCHN_PORT}", where)
        if any(e.local_port == event.local_port for e in found):
            raise UserError(f"{label}: local port {event.local_port} is given twice", where)
        found.append(event)
    return tuple(found)


def _affinity(reader: KeyReader, index: int, vcpus: int) -> tuple[tuple[int, str], ...]:
    prefix = AFFINITY_KEY + ","
    if reader.where(AFFINITY_KEY, index) is not None:  # YAML: no [domU,vCPU] form
        raise UserError(f"{AFFINITY_KEY}[{index}]: give it per vCPU in a bash config: "
                        f"{AFFINITY_KEY}[domU,vCPU]=pCPUs", reader.where(AFFINITY_KEY, index))
    found = []
    for (name, at), value in reader.raw.values.items():
        if at != index or not name.startswith(prefix):
            continue
        vcpu = int(name[len(prefix):])
        label = f"{AFFINITY_KEY}[{index},{vcpu}]"
        text = value.text.strip()
        if vcpu >= vcpus:
            raise UserError(f"{label}: vCPU {vcpu} does not exist (DOMU_VCPUS[{index}] is "
                            f"{vcpus})", value.where)
        cpus = parse_range_list(text)
        if cpus is None:
            raise UserError(f"{label}: expected pCPUs like '0-3' or '1,4-7', got '{text}'",
                            value.where)
        found.append((vcpu, cpus))
    return tuple(sorted(found))


def read_domu_props(reader: KeyReader, index: int, *, has_dom0: bool, vcpus: int,
                    num_cpupools: int) -> DomUProps:
    """Read and check domU `index`'s extra keys (the cross-domain checks are in `domu_checks`).
    Raises `UserError` naming `KEY[index]` and its line."""
    static_text = reader.given("DOMU_STATIC_MEM", index)
    static_mem = (parse_regions(static_text, f"DOMU_STATIC_MEM[{index}]",
                                reader.where("DOMU_STATIC_MEM", index)) if static_text else ())
    direct_map = reader.flag_given("DOMU_DIRECT_MAP", index)
    if direct_map and not static_mem:
        raise UserError(f"DOMU_DIRECT_MAP[{index}]: needs DOMU_STATIC_MEM[{index}] (Xen: "
                        "direct-map is only valid with static allocation)",
                        reader.where("DOMU_DIRECT_MAP", index))
    cpupool = reader.number("DOMU_CPUPOOL", index,
                            high=min(max(num_cpupools - 1, 0), MAX_CPUPOOLS - 1))
    if cpupool is not None and num_cpupools == 0:
        raise UserError(f"DOMU_CPUPOOL[{index}]: NUM_CPUPOOLS is 0: define CPUPOOL[n] first",
                        reader.where("DOMU_CPUPOOL", index))
    paths = tuple((reader.given("DOMU_PASSTHROUGH_PATHS", index) or "").split())
    for path in paths:
        if not path.startswith("/") or path == "/":
            raise UserError(f"DOMU_PASSTHROUGH_PATHS[{index}]: '{path}' is not an absolute node "
                            "path", reader.where("DOMU_PASSTHROUGH_PATHS", index))
    enhanced = _enhanced(reader, index, has_dom0)
    evtchns = _evtchns(reader, index)
    if evtchns and enhanced is None:
        raise UserError(f"DOMU_STATIC_EVTCHNS[{index}]: needs PV interfaces: set "
                        f"DOMU_ENHANCED[{index}]=2 (no-xenstore) or 1",
                        reader.where("DOMU_STATIC_EVTCHNS", index))
    return DomUProps(
        **reader.read_fields(DomUProps, index),
        enhanced=enhanced,
        static_mem=static_mem,
        direct_map=bool(static_mem) if direct_map is None else direct_map,
        shared_mem=_shared_mem(reader, index),
        caps=_caps(reader, index),
        colors=read_colors(reader, "DOMU_COLORS", index),
        cpupool=cpupool,
        static_evtchns=evtchns,
        vcpu_hard_affinity=_affinity(reader, index, vcpus),
        passthrough_paths=paths,
        passthrough_where=reader.where("DOMU_PASSTHROUGH_PATHS", index) or reader.raw.source,
    )
