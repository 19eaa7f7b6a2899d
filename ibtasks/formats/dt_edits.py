"""Device-tree edits as values: one list, rendered as U-Boot `fdt` commands or applied offline.

The boot script and the edited DTB must say the same thing, so both come from the same list of
`MakeNode`/`SetProp` operations (see `devicetree.apply_edits` for the offline side).
"""

from __future__ import annotations

from dataclasses import dataclass

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
