"""Device-tree edits as values: one list, rendered as U-Boot `fdt` commands or applied offline.

The boot script and the edited DTB must say the same thing, so both come from the same list of
`MakeNode`/`SetProp` operations. Applied offline, the DTB holds what U-Boot's `fdt mknod`/`fdt set`
(libfdt) leave in memory: placement follows libfdt and the input's strings block is kept, so name
offsets match libfdt's.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import fdt

from ibtasks.errors import UserError
from ibtasks.formats.dtb.tree import (
    RawProp,
    child_node,
    find_node,
    is_printable_name,
    parse_dtb,
    write_dtb,
)
from ibtasks.formats.hush import fdt_name, quote_string


@dataclass(frozen=True)
class Strings:
    """A string-list property value (`"a" "b"`)."""

    items: tuple[str, ...]


@dataclass(frozen=True)
class Cells:
    """A property value of 32-bit cells (`<0x0 0x40000000>`)."""

    items: tuple[int, ...]

    def __post_init__(self) -> None:
        for cell in self.items:
            if not 0 <= cell <= 0xFFFFFFFF:
                raise ValueError(f"cell {cell:#x} does not fit in 32 bits")


@dataclass(frozen=True)
class Flag:
    """An empty (boolean) property."""


PropValue = Strings | Cells | Flag


@dataclass(frozen=True)
class MakeNode:
    """Create node `name` under `parent` (libfdt puts it first among the parent's children)."""

    parent: str
    name: str

    @property
    def path(self) -> str:
        return f"{self.parent.rstrip('/')}/{self.name}"


@dataclass(frozen=True)
class SetProp:
    """Set property `name` of `node` (libfdt puts a new property first in its node)."""

    node: str
    name: str
    value: PropValue


DtEdit = MakeNode | SetProp


def split_u64(value: int) -> tuple[int, int]:
    """A 64-bit number as (high, low) 32-bit cells."""
    return (value >> 32) & 0xFFFFFFFF, value & 0xFFFFFFFF


def reg_cells(address: int, size: int) -> Cells:
    """A `reg` value with #address-cells = #size-cells = 2, as /chosen is set up."""
    return Cells(split_u64(address) + split_u64(size))


def _render_value(value: PropValue) -> str:
    if isinstance(value, Strings):
        return " ".join(quote_string(item) for item in value.items)
    if isinstance(value, Cells):
        return "<" + " ".join(f"0x{cell:X}" for cell in value.items) + ">"
    return ""


def render_fdt_command(edit: DtEdit) -> str:
    """The U-Boot `fdt` command for one edit, each argument quoted as U-Boot's shell needs
    (`hush.fdt_name`, `hush.quote_string`: `#` escaped, strings in "..." or '...')."""
    if isinstance(edit, MakeNode):
        return f"fdt mknod {fdt_name(edit.parent)} {fdt_name(edit.name)}"
    value = _render_value(edit.value)
    return f"fdt set {fdt_name(edit.node)} {fdt_name(edit.name)} {value}".rstrip()


# --- applying edits offline ---------------------------------------------------------------


def apply_edits(dtb: bytes, edits: Sequence[DtEdit], source: str) -> bytes:
    """Return the DTB `dtb` after the edits, as U-Boot's `fdt mknod`/`fdt set` (libfdt) would
    leave it. Raises UserError naming `source` for an edit libfdt would refuse (a missing node,
    an invalid name, a string holding NUL) or a DTB that does not parse.

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
    return write_dtb(tree, strings)


def _make_node(tree: fdt.FDT, edit: MakeNode, source: str) -> None:
    command = f"'fdt mknod {edit.parent} {edit.name}'"
    parent = _find_node(tree, edit.parent, command, source)
    if parent is None:
        raise UserError(f"cannot apply {command}: node {edit.parent} does not exist", source)
    if not edit.name or "/" in edit.name or not is_printable_name(edit.name):
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
    if not edit.name or not is_printable_name(edit.name):
        raise UserError(f"cannot apply {command}: invalid property name {edit.name!r}", source)
    prop = RawProp(edit.name, _encode(edit.value, command, source))
    prop.set_parent(node)
    old = node.get_property(edit.name)
    if old is None:
        node.props.insert(0, prop)  # libfdt: a new property goes first in its node
    else:
        at = next(i for i, p in enumerate(node.props) if p is old)
        node.props[at] = prop  # libfdt: replaced in place


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


def _find_node(tree: fdt.FDT, path: str, command: str, source: str) -> fdt.Node | None:
    if not path.startswith("/"):
        raise UserError(f"cannot apply {command}: {path} is not an absolute path", source)
    return find_node(tree.root, path)

