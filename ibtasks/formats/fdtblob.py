"""A minimal flattened-device-tree writer and reader for trees we build from scratch (FIT images).

The `fdt` package copies every property through its own value classes and guesses types; a FIT
holds megabytes of opaque `data`, so here a tree is plain names and bytes, written in order
(dtc's layout: header, memory reservation block, structure, strings) and read back the same way.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from ibtasks.errors import UserError

FDT_MAGIC = 0xD00DFEED
_BEGIN_NODE, _END_NODE, _PROP, _NOP, _END = 1, 2, 3, 4, 9
_HEADER = struct.Struct(">10I")
_VERSION, _LAST_COMP_VERSION = 17, 16


@dataclass(frozen=True)
class Node:
    """A device-tree node: properties (name, raw bytes) and children, both in order."""

    name: str
    props: tuple[tuple[str, bytes], ...] = ()
    children: tuple[Node, ...] = field(default=())

    def prop(self, name: str) -> bytes | None:
        for key, value in self.props:
            if key == name:
                return value
        return None

    def child(self, name: str) -> Node | None:
        for node in self.children:
            if node.name == name:
                return node
        return None


def strings_value(*items: str) -> bytes:
    """A string or string-list property (`"a", "b"`)."""
    return b"".join(item.encode() + b"\0" for item in items)


def cells_value(*cells: int) -> bytes:
    """A property of 32-bit big-endian cells."""
    return b"".join(struct.pack(">I", cell) for cell in cells)


def write_fdt(root: Node) -> bytes:
    """A version-17 DTB of `root`; property names enter the strings block in first-use order."""
    structure = bytearray()
    strings = bytearray()
    offsets: dict[str, int] = {}

    def name_offset(name: str) -> int:
        if name not in offsets:
            offsets[name] = len(strings)
            strings.extend(name.encode() + b"\0")
        return offsets[name]

    def emit(node: Node) -> None:
        structure.extend(struct.pack(">I", _BEGIN_NODE) + node.name.encode() + b"\0")
        structure.extend(b"\0" * (-len(structure) % 4))
        for name, value in node.props:
            structure.extend(struct.pack(">III", _PROP, len(value), name_offset(name)))
            structure.extend(value)
            structure.extend(b"\0" * (-len(structure) % 4))
        for child in node.children:
            emit(child)
        structure.extend(struct.pack(">I", _END_NODE))

    emit(Node("", root.props, root.children))
    structure.extend(struct.pack(">I", _END))
    off_rsv = _HEADER.size + (-_HEADER.size % 8)
    off_struct = off_rsv + 16  # one terminating (0, 0) reservation entry
    off_strings = off_struct + len(structure)
    total = off_strings + len(strings)
    header = _HEADER.pack(FDT_MAGIC, total, off_struct, off_strings, off_rsv, _VERSION,
                          _LAST_COMP_VERSION, 0, len(strings), len(structure))
    return b"".join((header, b"\0" * (off_rsv - _HEADER.size), b"\0" * 16, structure, strings))


def read_fdt(blob: bytes, source: str) -> Node:
    """The root node of a DTB (any version-16/17 blob, also mkimage's); UserError if corrupt."""
    if len(blob) < _HEADER.size or int.from_bytes(blob[:4], "big") != FDT_MAGIC:
        raise UserError("not a flattened device tree (expected magic d00dfeed)", source)
    (_, total, off_struct, off_strings, _, version, _, _, size_strings,
     size_struct) = _HEADER.unpack_from(blob)
    if version < 16 or total > len(blob) or off_strings + size_strings > total:
        raise UserError(f"corrupt device tree header (version {version}, {total} bytes)", source)
    if version < 17:
        size_struct = off_strings - off_struct
    block = memoryview(blob)[off_struct:off_struct + size_struct]
    strings = blob[off_strings:off_strings + size_strings]
    stack: list[tuple[str, list[tuple[str, bytes]], list[Node]]] = []
    at = 0
    try:
        while True:
            (tag,) = struct.unpack_from(">I", block, at)
            at += 4
            if tag == _BEGIN_NODE:
                end = bytes(block[at:at + 256]).index(b"\0")
                stack.append((bytes(block[at:at + end]).decode("ascii"), [], []))
                at = (at + end + 1 + 3) & ~3
            elif tag == _PROP:
                length, name_at = struct.unpack_from(">II", block, at)
                name = strings[name_at:strings.index(b"\0", name_at)].decode("ascii")
                value = bytes(block[at + 8:at + 8 + length])
                if len(value) != length or not stack:
                    raise ValueError("property outside its block")
                stack[-1][1].append((name, value))
                at = (at + 8 + length + 3) & ~3
            elif tag == _END_NODE:
                name, props, children = stack.pop()
                node = Node(name or "/", tuple(props), tuple(children))
                if not stack:
                    return node
                stack[-1][2].append(node)
            elif tag != _NOP:
                raise ValueError(f"unexpected tag {tag:#x} at {at - 4:#x}")
    except (struct.error, ValueError, UnicodeDecodeError, IndexError) as exc:
        raise UserError(f"corrupt device tree structure: {exc}", source) from None
