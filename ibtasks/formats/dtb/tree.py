"""Flattened device trees (the DT spec, chapter 5) as trees of the `fdt` package's nodes.

Every DTB ibtasks reads or writes goes through here: the board's DTB, domU partial DTBs and FIT
images. The `fdt` package's own parser is not used (it shares one memreserve list between parses
and stops at FDT_NOP tags, see library-notes.md): the blob is walked into its Node objects, and
written back in one pass (fdt's own writer copies nodes quadratically). Property values are kept
as the raw bytes of the blob (`RawProp`), never guessed into fdt's typed values nor copied, so a
FIT's megabytes of `data` cost one copy each way.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from string import printable

import fdt

from ibtasks.errors import UserError, hex_and_dec

FDT_MAGIC = 0xD00DFEED
_BEGIN_NODE, _END_NODE, _PROP, _NOP, _END = 1, 2, 3, 4, 9
_HEADER = struct.Struct(">10I")  # v17 header; v16 lacks the last word (size_dt_struct)
_HEADER_V16_SIZE = 36
# libfdt's read-write functions need v17 and U-Boot converts older blobs; v16 differs from v17
# only by the missing size_dt_struct, so both are accepted and kept as they came.
_VERSIONS = (16, 17)


class RawProp(fdt.PropBytes):  # type: ignore[misc]
    """A property whose value is the bytes `data`, kept as given (fdt.PropBytes copies them
    twice into a bytearray and compares them byte by byte in Python)."""

    def __init__(self, name: str, data: bytes = b"") -> None:
        fdt.Property.__init__(self, name)
        self.data = data

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, fdt.PropBytes) and self.name == other.name
                and bytes(self.data) == bytes(other.data))

    __hash__ = None  # type: ignore[assignment]


def prop_bytes(prop: fdt.Property) -> bytes:
    """The value of a property as bytes (an fdt.Property without data is empty)."""
    if isinstance(prop, RawProp):
        return prop.data  # type: ignore[no-any-return]
    return bytes(prop.data) if isinstance(prop, fdt.PropBytes) else b""


def node_prop(node: fdt.Node, name: str) -> bytes | None:
    """The value of property `name` of `node` as bytes, or None when it has none."""
    prop = node.get_property(name)
    return None if prop is None else prop_bytes(prop)


def new_node(name: str, props: Iterable[tuple[str, bytes]] = (),
             children: Iterable[fdt.Node] = ()) -> fdt.Node:
    """A node with properties (name, value bytes) and child nodes, both kept in order."""
    node = fdt.Node(name)
    for prop_name, value in props:
        prop = RawProp(prop_name, value)
        prop.set_parent(node)
        node.props.append(prop)
    for child in children:
        child.set_parent(node)
        node.nodes.append(child)
    return node


def new_tree(root: fdt.Node) -> fdt.FDT:
    """A version-17 tree (last compatible 16, as dtc writes) of `root`, without memreserve
    entries."""
    header = fdt.Header()
    header.version = 17  # sets last_comp_version to 16
    header.boot_cpuid_phys = 0
    tree = fdt.FDT(header=header, entries=[])  # never fdt's shared default list
    tree.root = root
    return tree


def strings_value(*items: str) -> bytes:
    """A string or string-list property value (`"a", "b"`), each item NUL-terminated."""
    return b"".join(item.encode() + b"\0" for item in items)


def cells_value(*cells: int) -> bytes:
    """A property value of 32-bit big-endian cells (`<0x1 0x2>`)."""
    return b"".join(struct.pack(">I", cell) for cell in cells)


# --- finding nodes --------------------------------------------------------------------------


def child_node(node: fdt.Node, name: str) -> fdt.Node | None:
    """The first child libfdt's `fdt_subnode_offset` finds: `dom0` also matches `dom0@40800000`."""
    for child in node.nodes:
        if child.name == name or ("@" not in name and child.name.startswith(name + "@")):
            return child
    return None


def find_node(root: fdt.Node, path: str) -> fdt.Node | None:
    """The node at the absolute `path` below `root`, each name matched as `child_node` does."""
    node: fdt.Node | None = root
    for name in (part for part in path.split("/") if part):
        node = child_node(node, name) if node is not None else None
    return node


def node_path(node: fdt.Node) -> str:
    """The absolute path of `node` in its tree."""
    names = []
    while node.parent is not None:
        names.append(node.name)
        node = node.parent
    return "/" + "/".join(reversed(names))


def walk(node: fdt.Node) -> Iterator[fdt.Node]:
    """Every node of the tree under `node`, depth first in tree order (as dtc prints them);
    iterative, so deep trees meet no recursion limit."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(current.nodes))


# --- writing --------------------------------------------------------------------------------


def write_dtb(tree: fdt.FDT, strings: str = "") -> bytes:
    """The blob of `tree`: what `fdt.FDT.to_dtb(strings=strings)` writes, byte for byte, in
    linear time.

    Layout as dtc's: header, memory reservation block, structure block, strings block. A
    property name is found in `strings` (the input's strings block, for an edited DTB; libfdt
    finds a name anywhere in the block, also as the tail of a longer one) or appended to it in
    first-use order.
    """
    offsets: dict[str, int] = {}

    def name_offset(name: str) -> int:
        nonlocal strings
        found = offsets.get(name)
        if found is None:
            found = strings.find(name + "\0")
            if found < 0:
                found = len(strings)
                strings += name + "\0"
            offsets[name] = found
        return found

    header = tree.header
    rsv = b"".join(struct.pack(">QQ", e["address"], e["size"]) for e in tree.entries)
    rsv += b"\0" * 16
    block = bytearray()
    stack: list[fdt.Node | None] = [tree.root]
    while stack:
        node = stack.pop()
        if node is None:
            block += struct.pack(">I", _END_NODE)
            continue
        if node.parent is None:  # the root's empty name: one zero word
            block += struct.pack(">II", _BEGIN_NODE, 0)
        else:
            block += struct.pack(">I", _BEGIN_NODE) + node.name.encode("ascii") + b"\0"
            block += b"\0" * (-len(block) % 4)
        for prop in node.props:
            data = prop_bytes(prop)
            block += struct.pack(">III", _PROP, len(data), name_offset(prop.name))
            block += data
            block += b"\0" * (-len(block) % 4)
        stack.append(None)
        stack.extend(reversed(node.nodes))
    block += struct.pack(">I", _END)
    struct_at = header.size + len(rsv)
    header.size_dt_strings = len(strings)
    header.size_dt_struct = len(block)
    header.off_mem_rsvmap = header.size
    header.off_dt_struct = struct_at
    header.off_dt_strings = struct_at + len(block)
    header.total_size = struct_at + len(block) + len(strings)
    return b"".join((header.export(), rsv, block, strings.encode("ascii")))


# --- parsing --------------------------------------------------------------------------------


def check_dtb(data: bytes, source: str) -> None:
    """Raise UserError (naming `source`) unless `data` is a flattened device tree we can parse
    (magic 0xd00dfeed, version 16 or 17, every block inside the blob)."""
    parse_dtb(data, source)


def parse_dtb(data: bytes, source: str) -> tuple[fdt.FDT, str]:
    """The tree and the strings block of a DTB (version 16 or 17); FDT_NOP tags are skipped.

    Raises UserError naming `source` when the blob is not a DTB, is truncated or corrupt.
    """
    if len(data) < 4 or int.from_bytes(data[:4], "big") != FDT_MAGIC:
        magic = data[:4].hex() or "nothing"
        raise UserError(
            f"not a flattened device tree (starts with {magic}, expected magic d00dfeed)", source
        )
    if len(data) < _HEADER_V16_SIZE:
        raise UserError(
            f"truncated device tree: {len(data)} bytes, shorter than its header", source
        )
    padded = data[: _HEADER.size].ljust(_HEADER.size, b"\0")
    (
        _,
        total,
        off_struct,
        off_strings,
        off_rsv,
        version,
        last_comp,
        cpuid,
        size_strings,
        size_struct,
    ) = _HEADER.unpack(padded)
    if version not in _VERSIONS or last_comp > 17:
        raise UserError(
            f"device tree version {version} (last compatible {last_comp}) is not supported; "
            "recompile it with dtc (version 17)",
            source,
        )
    header_size = _HEADER.size if version >= 17 else _HEADER_V16_SIZE
    if total > len(data):
        raise UserError(
            f"truncated device tree: its header says {hex_and_dec(total)} bytes, "
            f"the file has {hex_and_dec(len(data))}",
            source,
        )
    if version < 17:  # no size_dt_struct: the block runs to the strings or to the end
        size_struct = (off_strings if off_strings > off_struct else total) - off_struct
    for what, start, size in (
        ("memory reservation block", off_rsv, 16),
        ("structure block", off_struct, size_struct),
        ("strings block", off_strings, size_strings),
    ):
        if start < header_size or start + size > total:
            raise _corrupt(
                source,
                f"{what} at {start:#x} (+{size:#x}) lies outside {header_size:#x}..{total:#x}",
            )
    if off_rsv % 8 or off_struct % 4:
        raise _corrupt(source, "misaligned memory reservation or structure block")
    strings_block = data[off_strings : off_strings + size_strings]
    try:
        strings = strings_block.decode("ascii")
    except UnicodeDecodeError:
        raise _corrupt(source, "the strings block holds non-ASCII bytes") from None

    entries: list[dict[str, int]] = []
    at = off_rsv
    while True:
        if at + 16 > total:
            raise _corrupt(source, "the memory reservation block has no terminating entry")
        address, size = struct.unpack_from(">QQ", data, at)
        at += 16
        if address == 0 and size == 0:
            break
        entries.append({"address": address, "size": size})

    header = fdt.Header()
    header.version = version  # sets last_comp_version too, so restore it after
    header.last_comp_version = last_comp
    header.boot_cpuid_phys = cpuid
    tree = fdt.FDT(header=header, entries=entries)  # never fdt's shared default list
    tree.root = _parse_struct(data, off_struct, size_struct, strings_block, source)
    return tree, strings


def _parse_struct(data: bytes, start: int, size: int, strings: bytes, source: str) -> fdt.Node:
    """The root node of the structure block at `start` (`size` bytes) of `data`; read in place,
    not copied out, so a FIT's megabytes are copied once, into their property."""
    block, end = data, start + size
    root: fdt.Node | None = None
    current: fdt.Node | None = None
    # Names already seen in each open node, for the duplicate checks: fdt's get_subnode and
    # get_property scan the whole list, which made a node with many children quadratic.
    child_names: list[set[str]] = []
    prop_names: list[set[str]] = []
    names_at: dict[int, str] = {}  # property names by strings-block offset, checked once
    at = start

    while True:
        if at + 4 > end:
            raise _corrupt(source, "the structure block ends without FDT_END")
        tag = int.from_bytes(block[at : at + 4], "big")
        at += 4
        if tag == _NOP:
            continue
        if tag == _BEGIN_NODE:
            name = _cstring(block, at, "node name", source, end)
            at = (at + len(name) + 1 + 3) & ~3
            if current is None:
                if root is not None:
                    raise _corrupt(source, "a second root node")
                root = current = fdt.Node("/")
                child_names.append(set())
                prop_names.append(set())
                continue
            if name in child_names[-1]:
                raise _corrupt(source, f"{node_path(current)}: duplicate node {name}")
            child_names[-1].add(name)
            node = fdt.Node(name)
            node.set_parent(current)
            current.nodes.append(node)
            current = node
            child_names.append(set())
            prop_names.append(set())
        elif tag == _END_NODE:
            if current is None:
                raise _corrupt(source, "FDT_END_NODE outside any node")
            current = current.parent
            child_names.pop()
            prop_names.pop()
        elif tag == _PROP:
            if current is None or at + 8 > end:
                raise _corrupt(source, "a property outside any node")
            length, name_offset = struct.unpack_from(">II", block, at)
            at += 8
            if name_offset >= len(strings) or at + length > end:
                raise _corrupt(source,
                               f"property at {at - 12 - start:#x} points outside its blocks")
            name = names_at.get(name_offset) or names_at.setdefault(
                name_offset, _cstring(strings, name_offset, "property name", source))
            if name in prop_names[-1]:
                raise _corrupt(source, f"{node_path(current)}: duplicate property {name}")
            prop_names[-1].add(name)
            prop = RawProp(name, block[at : at + length])
            prop.set_parent(current)
            current.props.append(prop)
            at = (at + length + 3) & ~3
        elif tag == _END:
            if root is None or current is not None:
                raise _corrupt(source, "FDT_END before the root node is closed")
            return root
        else:
            raise _corrupt(source, f"unknown tag {tag:#x} at {at - 4 - start:#x} of the "
                                   "structure block")


def _cstring(buf: bytes, start: int, what: str, source: str, end: int | None = None) -> str:
    """A NUL-terminated printable ASCII name from the structure or strings block."""
    stop = buf.find(b"\0", start, len(buf) if end is None else end)
    if stop < 0:
        raise _corrupt(source, f"{what} at {start:#x} is not NUL-terminated")
    try:
        name = buf[start:stop].decode("ascii")
    except UnicodeDecodeError:
        raise _corrupt(source, f"{what} at {start:#x} is not ASCII") from None
    if not is_printable_name(name):
        raise _corrupt(source, f"{what} {name!r} holds unprintable characters")
    return name


def _corrupt(source: str, why: str) -> UserError:
    return UserError(f"corrupt device tree: {why}", source)


_PRINTABLE = frozenset(printable)


def is_printable_name(name: str) -> bool:
    """Whether `name` (of a node or property) holds printable ASCII only, as fdt requires."""
    return _PRINTABLE.issuperset(name)
