"""The offline side of the device-tree edits: apply `dtedit` values to a DTB as libfdt would.

The edited DTB must hold what U-Boot's `fdt mknod`/`fdt set` leave in memory, so placement follows
libfdt. The `fdt` package's own parser is not used (it shares one memreserve list between parses
and stops at FDT_NOP tags, see library-notes.md): we walk the blob into its Node objects and let
it serialise them, keeping the input's strings block so name offsets match libfdt's.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from string import printable

import fdt

from ibtasks.errors import UserError, hex_and_dec
from ibtasks.formats.dt_edits import Cells, DtEdit, Flag, MakeNode, PropValue, SetProp, Strings

FDT_MAGIC = 0xD00DFEED
_BEGIN_NODE, _END_NODE, _PROP, _NOP, _END = 1, 2, 3, 4, 9
_HEADER = struct.Struct(">10I")  # v17 header; v16 lacks the last word (size_dt_struct)
_HEADER_V16_SIZE = 36
# libfdt's read-write functions need v17 and U-Boot converts older blobs; v16 differs from v17
# only by the missing size_dt_struct, so both are accepted and kept as they came.
_VERSIONS = (16, 17)


def check_dtb(data: bytes, source: str) -> None:
    """Raise UserError unless `data` is a flattened device tree we can parse (magic 0xd00dfeed)."""
    parse_dtb(data, source)


def apply_edits(dtb: bytes, edits: Sequence[DtEdit], source: str) -> bytes:
    """Return the DTB after the edits, as U-Boot's `fdt mknod`/`fdt set` (libfdt) would leave it.

    A MakeNode of a node that already exists is an error, not a no-op: libfdt's `fdt_add_subnode`
    fails with FDT_ERR_EXISTS, and merging our properties into a stale node (say a `dom0` left
    by an earlier build) would hand Xen a module description we never computed.
    """
    tree, strings = parse_dtb(dtb, source)
    for edit in edits:
        if isinstance(edit, MakeNode):
            _make_node(tree, edit, source)
        else:
            _set_prop(tree, edit, source)
            # libfdt appends a new name to the strings block when it sets the property; fdt
            # would add names in tree order, so add them here in edit order.
            if edit.name + "\0" not in strings:
                strings += edit.name + "\0"
    return _to_dtb(tree, strings)


def read_reserved_regions(dtb: bytes, source: str) -> list[tuple[int, int]]:
    """(address, size) of every /reserved-memory child's reg (all entries, using /reserved-memory's
    #address-cells/#size-cells, falling back to the root's, default 2/1 per the DT spec) and every
    /memreserve/ entry, sorted."""
    tree, _ = parse_dtb(dtb, source)
    regions = [(entry["address"], entry["size"]) for entry in tree.entries]
    reserved = child_node(tree.root, "reserved-memory")
    if reserved is not None:
        address_cells = _cells_setting(reserved, tree.root, "#address-cells", 2, source)
        size_cells = _cells_setting(reserved, tree.root, "#size-cells", 1, source)
        for child in reserved.nodes:
            regions.extend(reg_entries(child, address_cells, size_cells, source))
    return sorted(regions)


# --- applying edits -------------------------------------------------------------------------


def _make_node(tree: fdt.FDT, edit: MakeNode, source: str) -> None:
    command = f"'fdt mknod {edit.parent} {edit.name}'"
    parent = _find_node(tree, edit.parent, command, source)
    if parent is None:
        raise UserError(f"cannot apply {command}: node {edit.parent} does not exist", source)
    if not edit.name or "/" in edit.name or not _is_printable(edit.name):
        raise UserError(f"cannot apply {command}: invalid node name {edit.name!r}", source)
    existing = child_node(parent, edit.name)
    if existing is not None:
        raise UserError(
            f"cannot apply {command}: {edit.parent} already has a node {existing.name} "
            "(libfdt: FDT_ERR_EXISTS); remove it from the device tree",
            source,
        )
    node = fdt.Node(edit.name)
    node.set_parent(parent)
    parent.nodes.insert(0, node)  # libfdt: a new subnode becomes the first child


def _set_prop(tree: fdt.FDT, edit: SetProp, source: str) -> None:
    command = f"'fdt set {edit.node} {edit.name}'"
    node = _find_node(tree, edit.node, command, source)
    if node is None:
        raise UserError(f"cannot apply {command}: node {edit.node} does not exist", source)
    if not edit.name or not _is_printable(edit.name):
        raise UserError(f"cannot apply {command}: invalid property name {edit.name!r}", source)
    prop = _make_property(edit.name, _encode(edit.value, command, source))
    prop.set_parent(node)
    old = node.get_property(edit.name)
    if old is None:
        node.props.insert(0, prop)  # libfdt: a new property goes first in its node
    else:
        node.props[node.props.index(old)] = prop  # libfdt: replaced in place


def _encode(value: PropValue, command: str, source: str) -> bytes:
    """The property bytes U-Boot's `fdt set` stores for a value."""
    if isinstance(value, Strings):
        for item in value.items:
            if "\0" in item:
                raise UserError(f"cannot apply {command}: a string holds a NUL byte", source)
        return b"".join(item.encode() + b"\0" for item in value.items)
    if isinstance(value, Cells):
        return b"".join(struct.pack(">I", cell) for cell in value.items)
    if isinstance(value, Flag):
        return b""
    raise TypeError(f"not a property value: {value!r}")


def _make_property(name: str, raw: bytes) -> fdt.Property:
    """A property that serialises back to exactly `raw` (fdt's type guessing is not needed)."""
    return fdt.PropBytes(name, data=raw) if raw else fdt.Property(name)


def _to_dtb(tree: fdt.FDT, strings: str) -> bytes:
    """The blob `fdt.FDT.to_dtb(strings=strings)` writes, byte for byte, in linear time.

    fdt builds each node's bytes by concatenating its children's, which copies a node with
    many children over and over (quadratic); here one buffer grows as the tree is walked.
    Layout as fdt's: header, memory reservation block, structure block, strings block; a
    property name is found in (or appended to) `strings` the way fdt does it.
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
        if node.parent is None:  # fdt writes the root's empty name as one zero word
            block += struct.pack(">II", _BEGIN_NODE, 0)
        else:
            block += struct.pack(">I", _BEGIN_NODE) + node.name.encode("ascii") + b"\0"
            block += b"\0" * (-len(block) % 4)
        for prop in node.props:
            data = prop_bytes(prop)
            block += struct.pack(">III", _PROP, len(data), name_offset(prop.name)) + data
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
    return b"".join((header.export(), rsv, bytes(block), strings.encode("ascii")))


# --- finding nodes --------------------------------------------------------------------------


def child_node(node: fdt.Node, name: str) -> fdt.Node | None:
    """The first child libfdt's `fdt_subnode_offset` finds: `dom0` also matches `dom0@40800000`."""
    for child in node.nodes:
        if child.name == name or ("@" not in name and child.name.startswith(name + "@")):
            return child
    return None


def _path_of(node: fdt.Node) -> str:
    if node.parent is None:
        return "/"
    return f"{_path_of(node.parent).rstrip('/')}/{node.name}"


def _find_node(tree: fdt.FDT, path: str, command: str, source: str) -> fdt.Node | None:
    if not path.startswith("/"):
        raise UserError(f"cannot apply {command}: {path} is not an absolute path", source)
    node: fdt.Node | None = tree.root
    for name in (part for part in path.split("/") if part):
        node = child_node(node, name) if node is not None else None
    return node


# --- reserved memory ------------------------------------------------------------------------


def _cells_setting(node: fdt.Node, root: fdt.Node, name: str, default: int, source: str) -> int:
    for holder in (node, root):
        prop = holder.get_property(name)
        if prop is not None:
            raw = prop_bytes(prop)
            if len(raw) != 4:
                raise UserError(f"{_path_of(holder)}: {name} is not one cell", source)
            return int.from_bytes(raw, "big")
    return default


def reg_entries(
    node: fdt.Node, address_cells: int, size_cells: int, source: str
) -> list[tuple[int, int]]:
    prop = node.get_property("reg")
    if prop is None:
        return []  # a dynamically placed region (`size`, `alloc-ranges`) has no fixed place
    raw = prop_bytes(prop)
    entry = 4 * (address_cells + size_cells)
    if entry == 0 or len(raw) % entry:
        raise UserError(
            f"{_path_of(node)}: reg has {len(raw)} bytes, not a multiple of "
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


def prop_bytes(prop: fdt.Property) -> bytes:
    """A parsed property's bytes (we parse every value as PropBytes)."""
    return bytes(prop.data) if isinstance(prop, fdt.PropBytes) else b""


# --- parsing --------------------------------------------------------------------------------


def parse_dtb(data: bytes, source: str) -> tuple[fdt.FDT, str]:
    """The tree and the strings block of a DTB; FDT_NOP tags are skipped."""
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
    tree.root = _parse_struct(data[off_struct : off_struct + size_struct], strings_block, source)
    return tree, strings


def _parse_struct(block: bytes, strings: bytes, source: str) -> fdt.Node:
    """The root node of a structure block."""
    root: fdt.Node | None = None
    current: fdt.Node | None = None
    # Names already seen in each open node, for the duplicate checks: fdt's get_subnode and
    # get_property scan the whole list, which made a node with many children quadratic.
    child_names: list[set[str]] = []
    prop_names: list[set[str]] = []
    names_at: dict[int, str] = {}  # property names by strings-block offset, checked once
    at = 0

    while True:
        if at + 4 > len(block):
            raise _corrupt(source, "the structure block ends without FDT_END")
        tag = int.from_bytes(block[at : at + 4], "big")
        at += 4
        if tag == _NOP:
            continue
        if tag == _BEGIN_NODE:
            name = _cstring(block, at, "node name", source)
            at = (at + len(name) + 1 + 3) & ~3
            if current is None:
                if root is not None:
                    raise _corrupt(source, "a second root node")
                root = current = fdt.Node("/")
                child_names.append(set())
                prop_names.append(set())
                continue
            if name in child_names[-1]:
                raise _corrupt(source, f"{_path_of(current)}: duplicate node {name}")
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
            if current is None or at + 8 > len(block):
                raise _corrupt(source, "a property outside any node")
            length, name_offset = struct.unpack_from(">II", block, at)
            at += 8
            if name_offset >= len(strings) or at + length > len(block):
                raise _corrupt(source, f"property at {at - 12:#x} points outside its blocks")
            name = names_at.get(name_offset) or names_at.setdefault(
                name_offset, _cstring(strings, name_offset, "property name", source))
            if name in prop_names[-1]:
                raise _corrupt(source, f"{_path_of(current)}: duplicate property {name}")
            prop_names[-1].add(name)
            prop = _make_property(name, block[at : at + length])
            prop.set_parent(current)
            current.props.append(prop)
            at = (at + length + 3) & ~3
        elif tag == _END:
            if root is None or current is not None:
                raise _corrupt(source, "FDT_END before the root node is closed")
            return root
        else:
            raise _corrupt(source, f"unknown tag {tag:#x} at {at - 4:#x} of the structure block")


def _cstring(buf: bytes, start: int, what: str, source: str) -> str:
    """A NUL-terminated printable ASCII name from the structure or strings block."""
    end = buf.find(b"\0", start)
    if end < 0:
        raise _corrupt(source, f"{what} at {start:#x} is not NUL-terminated")
    try:
        name = buf[start:end].decode("ascii")
    except UnicodeDecodeError:
        raise _corrupt(source, f"{what} at {start:#x} is not ASCII") from None
    if not _is_printable(name):
        raise _corrupt(source, f"{what} {name!r} holds unprintable characters")
    return name


def _corrupt(source: str, why: str) -> UserError:
    return UserError(f"corrupt device tree: {why}", source)


_PRINTABLE = frozenset(printable)


def _is_printable(name: str) -> bool:
    return _PRINTABLE.issuperset(name)
