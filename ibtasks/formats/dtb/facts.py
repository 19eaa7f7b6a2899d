"""What ibtasks reads of the board's DTB (DEVICE_TREE), once, in its check task.

The check records these facts in its JSON, so the DTB and boot.source tasks depend on a small
file instead of parsing the DTB again: the root node's cell sizes (for xen,static-heap), every
phandle in use (new ones must not collide), the /cpus children and their phandles (for
cpupools), whether each DOMU_PASSTHROUGH_PATHS node exists, the RAM banks of the /memory nodes
(every load address must lie inside them) and the reserved regions (loads move past them). The
check also refuses a DTB the boot script cannot edit: a DT overlay, or one without /chosen.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import fdt

from ibtasks.errors import UserError
from ibtasks.formats.dtb.tree import child_node, find_node, node_path, node_prop, parse_dtb, walk

OVERLAY_NODES = ("__fixups__", "__local_fixups__")


@dataclass(frozen=True)
class DtFacts:
    """Facts of the input DTB; the defaults describe a tree with nothing of interest."""

    address_cells: int = 2
    size_cells: int = 1
    phandles: tuple[int, ...] = ()
    cpus: Mapping[str, int | None] = field(default_factory=dict)  # /cpus child -> phandle
    nodes: Mapping[str, bool] = field(default_factory=dict)  # asked-for path -> exists
    memory: tuple[tuple[int, int], ...] = ()  # RAM banks (address, size in bytes), sorted

    def to_record(self) -> dict[str, Any]:
        """The facts as JSON-serialisable values (the check task's record)."""
        return {"address_cells": self.address_cells, "size_cells": self.size_cells,
                "phandles": list(self.phandles), "cpus": dict(self.cpus),
                "nodes": dict(self.nodes), "memory": [list(bank) for bank in self.memory]}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> DtFacts:
        """The facts of `to_record`; a record of an older ibtasks lacks `memory` (its check
        task reruns: see CHECK_RECORD_VERSION in tasks.boot), read here as no banks."""
        return cls(record["address_cells"], record["size_cells"], tuple(record["phandles"]),
                   dict(record["cpus"]), dict(record["nodes"]),
                   tuple((int(a), int(s)) for a, s in record.get("memory", [])))


def read_dt_facts(data: bytes, source: str, paths: Iterable[str] = ()) -> DtFacts:
    """The facts of the DTB `data`; `paths` are node paths whose existence is recorded.
    Cell sizes default to 2 and 1 (the DT spec's). Raises UserError naming `source` when the
    DTB does not parse or a /memory reg does not fit its cells."""
    tree, _ = parse_dtb(data, source)
    root = tree.root
    phandles = sorted({value for node in walk(root) for name in ("phandle", "linux,phandle")
                       if (value := _cell(node, name)) is not None})
    cpus_node = child_node(root, "cpus")
    cpus = {} if cpus_node is None else {
        child.name: _cell(child, "phandle") or _cell(child, "linux,phandle")
        for child in cpus_node.nodes}
    nodes = {path: find_node(root, path) is not None for path in paths}
    address_cells, size_cells = _cell(root, "#address-cells"), _cell(root, "#size-cells")
    address_cells = 2 if address_cells is None else address_cells
    size_cells = 1 if size_cells is None else size_cells
    return DtFacts(
        address_cells=address_cells,
        size_cells=size_cells,
        phandles=tuple(phandles),
        cpus=cpus,
        nodes=nodes,
        memory=tuple(_memory_banks(root, address_cells, size_cells, source)),
    )


def read_reserved_regions(dtb: bytes, source: str) -> list[tuple[int, int]]:
    """(address, size) in bytes of every /reserved-memory child's reg (all entries, using
    /reserved-memory's #address-cells/#size-cells, falling back to the root's, default 2/1 per
    the DT spec) and every /memreserve/ entry, sorted. UserError naming `source` when the DTB
    does not parse or a reg does not fit its cells."""
    tree, _ = parse_dtb(dtb, source)
    regions = [(entry["address"], entry["size"]) for entry in tree.entries]
    reserved = child_node(tree.root, "reserved-memory")
    if reserved is not None:
        address_cells = _cells_setting(reserved, tree.root, "#address-cells", 2, source)
        size_cells = _cells_setting(reserved, tree.root, "#size-cells", 1, source)
        for child in reserved.nodes:
            regions.extend(reg_entries(child, address_cells, size_cells, source))
    return sorted(regions)


def check_host_dtb(data: bytes, key: str, name: str) -> None:
    """Raise `UserError` naming `key` (DEVICE_TREE) when the DTB `data` (the file `name`) is a
    DT overlay or has no /chosen node.

    The script edits `/chosen` with `fdt set /chosen ...` as the original does, and U-Boot's
    `fdt set` does not create a missing node (libfdt returns FDT_ERR_NOTFOUND); U-Boot adds
    /chosen itself only later, in the boot command's own fixups. A DT overlay (`.dtbo`:
    `/fragment@N` nodes, `/__fixups__`) has no /chosen and is not a board's tree at all: it
    belongs in DT_OVERLAY[n].
    """
    tree, _ = parse_dtb(data, f"{key} ({name})")
    children = [child.name for child in tree.root.nodes]
    overlay = next((c for c in children if c.startswith("fragment@") or c in OVERLAY_NODES),
                   None)
    if overlay is not None:
        raise UserError(f"{key}: {name} is a DT overlay (it has /{overlay}), not a board's DTB; "
                        f"give the board's DTB as {key} and the overlay as DT_OVERLAY[0] with "
                        "NUM_DT_OVERLAY=1")
    if "chosen" not in children:
        raise UserError(f"{key}: {name} has no /chosen node, which the script's `fdt set "
                        "/chosen ...` commands edit and U-Boot does not create; add "
                        "`chosen { };` to the board's .dts and compile it again")


def reg_entries(node: fdt.Node, address_cells: int, size_cells: int, source: str
                ) -> list[tuple[int, int]]:
    """The (address, size) entries of `node`'s reg, in the given cell counts (its parent's);
    none without a reg. UserError when its length is not a whole number of entries."""
    raw = node_prop(node, "reg")
    if raw is None:
        return []  # a dynamically placed region (`size`, `alloc-ranges`) has no fixed place
    entry = 4 * (address_cells + size_cells)
    if entry == 0 or len(raw) % entry:
        raise UserError(
            f"{node_path(node)}: reg has {len(raw)} bytes, not a multiple of "
            f"{address_cells}+{size_cells} cells",
            source,
        )
    split = 4 * address_cells
    return [
        (
            int.from_bytes(raw[at : at + split], "big"),
            int.from_bytes(raw[at + split : at + entry], "big"),
        )
        for at in range(0, len(raw), entry)
    ]


def _cell(node: fdt.Node, name: str) -> int | None:
    raw = node_prop(node, name)
    return int.from_bytes(raw, "big") if raw is not None and len(raw) == 4 else None


def _cells_setting(node: fdt.Node, root: fdt.Node, name: str, default: int, source: str) -> int:
    for holder in (node, root):
        raw = node_prop(holder, name)
        if raw is not None:
            if len(raw) != 4:
                raise UserError(f"{node_path(holder)}: {name} is not one cell", source)
            return int.from_bytes(raw, "big")
    return default


def _memory_banks(root: fdt.Node, address_cells: int, size_cells: int,
                  source: str) -> list[tuple[int, int]]:
    """The RAM banks of every `device_type = "memory"` child of the root, as Linux's
    early_init_dt_scan_memory and Xen's bootfdt read them: all `reg` entries in the root's
    cell sizes; nodes with `status = "disabled"` and empty banks are left out."""
    banks = []
    for node in root.nodes:
        status = node_prop(node, "status")
        if node_prop(node, "device_type") != b"memory\0":
            continue
        if status is not None and status.rstrip(b"\0") == b"disabled":
            continue
        banks += [bank for bank in reg_entries(node, address_cells, size_cells, source)
                  if bank[1] > 0]
    return sorted(banks)
