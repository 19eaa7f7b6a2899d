"""What the domain edits need to know about the input DTB, read once by the DEVICE_TREE check.

The check task records these facts in its JSON, so the DTB and boot.source tasks depend on a
small file instead of parsing the DTB again: the root node's cell sizes (for xen,static-heap),
every phandle in use (new ones must not collide), the /cpus children and their phandles (for
cpupools), whether each DOMU_PASSTHROUGH_PATHS node exists, and the RAM banks of the /memory
nodes (every load address must lie inside them).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import fdt

from ibtasks.formats.devicetree import child_node, parse_dtb, prop_bytes, reg_entries


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
        return {"address_cells": self.address_cells, "size_cells": self.size_cells,
                "phandles": list(self.phandles), "cpus": dict(self.cpus),
                "nodes": dict(self.nodes), "memory": [list(bank) for bank in self.memory]}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> DtFacts:
        """The facts of `to_record`; a record of an older ibtasks lacks `memory` (its check
        task reruns: see CHECK_RECORD_VERSION in taskgen), read here as no banks."""
        return cls(record["address_cells"], record["size_cells"], tuple(record["phandles"]),
                   dict(record["cpus"]), dict(record["nodes"]),
                   tuple((int(a), int(s)) for a, s in record.get("memory", [])))


def _cell(node: fdt.Node, name: str) -> int | None:
    prop = node.get_property(name)
    if prop is None:
        return None
    raw = prop_bytes(prop)
    return int.from_bytes(raw, "big") if len(raw) == 4 else None


def _walk(node: fdt.Node) -> Iterator[fdt.Node]:
    """Every node of the tree under `node`, depth first (iterative: no recursion limit)."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(current.nodes))


def _memory_banks(root: fdt.Node, address_cells: int, size_cells: int,
                  source: str) -> list[tuple[int, int]]:
    """The RAM banks of every `device_type = "memory"` child of the root, as Linux's
    early_init_dt_scan_memory and Xen's bootfdt read them: all `reg` entries in the root's
    cell sizes; nodes with `status = "disabled"` and empty banks are left out."""
    banks = []
    for node in root.nodes:
        kind = node.get_property("device_type")
        status = node.get_property("status")
        if kind is None or prop_bytes(kind) != b"memory\0":
            continue
        if status is not None and prop_bytes(status).rstrip(b"\0") == b"disabled":
            continue
        banks += [bank for bank in reg_entries(node, address_cells, size_cells, source)
                  if bank[1] > 0]
    return sorted(banks)


def read_dt_facts(data: bytes, source: str, paths: Iterable[str] = ()) -> DtFacts:
    """The facts of a DTB; `paths` are node paths whose existence is recorded."""
    tree, _ = parse_dtb(data, source)
    root = tree.root
    phandles = sorted({value for node in _walk(root) for name in ("phandle", "linux,phandle")
                       if (value := _cell(node, name)) is not None})
    cpus_node = child_node(root, "cpus")
    cpus = {} if cpus_node is None else {
        child.name: _cell(child, "phandle") or _cell(child, "linux,phandle")
        for child in cpus_node.nodes}
    nodes = {}
    for path in paths:
        node: fdt.Node | None = root
        for part in (p for p in path.split("/") if p):
            node = child_node(node, part) if node is not None else None
        nodes[path] = node is not None
    address_cells, size_cells = _cell(root, "#address-cells"), _cell(root, "#size-cells")
    address_cells = 2 if address_cells is None else address_cells  # DT spec defaults
    size_cells = 1 if size_cells is None else size_cells
    return DtFacts(
        address_cells=address_cells,
        size_cells=size_cells,
        phandles=tuple(phandles),
        cpus=cpus,
        nodes=nodes,
        memory=tuple(_memory_banks(root, address_cells, size_cells, source)),
    )
