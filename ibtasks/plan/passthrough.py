"""What an xl config needs for device passthrough, read from a domU's partial device tree.

xl takes the partial DTB (`device_tree=`) but not the permissions it implies, so upstream's
disk_image derives them (xen.git docs/misc/arm/passthrough.txt): `iomem` from each `xen,reg`
(<host address, size, guest address> in /passthrough's cells) as page frame numbers in hex,
`dtdev` from each `xen,path` unless its node has `xen,force-assign-without-iommu`, and `irqs`
from GIC `interrupts` triplets (SPI number + 32). The text follows upstream's format; unlike
upstream (which greps the dtc output) we read only /passthrough's nodes, use every address cell
(upstream keeps the low 32 bits of the address, then 20 bits of the frame number) and refuse
what xl cannot express instead of writing it wrong: unaligned regions, non-SPI interrupts.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

import fdt

from ibtasks.errors import UserError
from ibtasks.formats.dtb.tree import node_path, node_prop, parse_dtb, walk

if TYPE_CHECKING:
    from ibtasks.config.model import Config

PAGE_SHIFT = 12
PAGE = 1 << PAGE_SHIFT
GIC_SPI = 0
GIC_SPI_BASE = 32  # SPI n is interrupt ID 32 + n
XEN_DIR = "/etc/xen"


@dataclass(frozen=True)
class Passthrough:
    """The passthrough lines of one domU's xl config; `dtb_name` is the file in /etc/xen."""

    dtb_name: str
    iomem: tuple[str, ...]
    dtdev: tuple[str, ...]
    irqs: tuple[int, ...]

    def xl_lines(self) -> list[str]:
        """The lines upstream appends after `extra=`/`disk=`; empty lists are left out."""
        lines = [f'device_tree="{XEN_DIR}/{self.dtb_name}"']
        if self.iomem:
            lines.append("iomem = [ " + ", ".join(f'"{r}"' for r in self.iomem) + " ]")
        if self.dtdev:
            lines.append("dtdev = [ " + ", ".join(f'"{p}"' for p in self.dtdev) + " ]")
        if self.irqs:
            lines.append("irqs = [ " + ",".join(str(n) for n in self.irqs) + " ]")
        return lines


def _cells(raw: bytes) -> list[int]:
    return [int.from_bytes(raw[at:at + 4], "big") for at in range(0, len(raw) - 3, 4)]


def _number(cells: list[int]) -> int:
    value = 0
    for cell in cells:
        value = (value << 32) | cell
    return value


def _cell_count(node: fdt.Node, name: str, default: int, where: str) -> int:
    raw = node_prop(node, name)
    if raw is None:
        return default
    if len(raw) != 4 or not 1 <= int.from_bytes(raw, "big") <= 2:
        raise UserError(f"/passthrough: {name} must be one cell of 1 or 2", where)
    return int.from_bytes(raw, "big")


def _iomem(raw: bytes, address_cells: int, size_cells: int, place: str, where: str
           ) -> list[str]:
    cells = _cells(raw)
    entry = 2 * address_cells + size_cells
    if len(raw) % 4 or len(cells) % entry:
        raise UserError(f"{place}: xen,reg has {len(raw)} bytes, not a multiple of "
                        f"{address_cells}+{size_cells}+{address_cells} cells", where)
    out = []
    for at in range(0, len(cells), entry):
        host = _number(cells[at:at + address_cells])
        size = _number(cells[at + address_cells:at + address_cells + size_cells])
        guest = _number(cells[at + address_cells + size_cells:at + entry])
        if host % PAGE or size % PAGE or guest % PAGE or size == 0:
            raise UserError(f"{place}: xen,reg <{host:#x} {size:#x} {guest:#x}> is not whole "
                            "4 KiB pages, which is all xl's iomem can map", where)
        text = f"0x{host >> PAGE_SHIFT:X},{size >> PAGE_SHIFT:X}"
        if guest != host:
            text += f"@0x{guest >> PAGE_SHIFT:X}"
        out.append(text)
    return out


def _irqs(raw: bytes, place: str, where: str) -> list[int]:
    cells = _cells(raw)
    if len(raw) % 12:
        raise UserError(f"{place}: interrupts has {len(cells)} cells, expected GIC triplets "
                        "<type number flags>", where)
    out = []
    for at in range(0, len(cells), 3):
        if cells[at] != GIC_SPI:
            raise UserError(f"{place}: interrupt <{cells[at]} {cells[at + 1]} ...> is not a "
                            "shared peripheral interrupt (type 0); only SPIs can be assigned",
                            where)
        out.append(cells[at + 1] + GIC_SPI_BASE)
    return out


def _string(raw: bytes, place: str, where: str) -> str:
    text = raw.split(b"\0", 1)[0].decode("ascii", "replace")
    if not text.startswith("/") or '"' in text:
        raise UserError(f"{place}: xen,path {text!r} is not a device-tree path", where)
    return text


def read_passthrough(dtb: bytes, dtb_name: str, where: str) -> Passthrough:
    """The xl passthrough settings of a partial DTB; `where` names it in errors."""
    tree, _ = parse_dtb(dtb, where)
    top = next((n for n in tree.root.nodes if n.name == "passthrough"), None)
    if top is None:
        raise UserError("the partial device tree has no /passthrough node", where)
    address_cells = _cell_count(top, "#address-cells", 2, where)
    size_cells = _cell_count(top, "#size-cells", 1, where)
    iomem: list[str] = []
    paths: list[str] = []
    forced: set[str] = set()
    irqs: list[int] = []
    for node in walk(top):  # in device-tree order, as dtc prints them
        place = node_path(node)
        reg = node_prop(node, "xen,reg")
        if reg is not None:
            iomem += _iomem(reg, address_cells, size_cells, place, where)
        path = node_prop(node, "xen,path")
        if path is not None:
            paths.append(_string(path, place, where))
            if node_prop(node, "xen,force-assign-without-iommu") is not None:
                forced.add(paths[-1])
        interrupts = node_prop(node, "interrupts")
        if interrupts is not None:
            irqs += _irqs(interrupts, place, where)
    dtdev = tuple(p for p in paths if p not in forced)
    return Passthrough(dtb_name, tuple(iomem), dtdev, tuple(irqs))


def passthrough_files(config: Config, indices: Collection[int]
                      ) -> tuple[dict[int, Passthrough], dict[str, bytes]]:
    """The passthrough settings of the domUs `indices` (those with an xl config) and the
    partial DTBs to copy to dom0's /etc/xen, by path inside its rootfs.

    Upstream copies each DTB under its base name; two different DTBs of one name would
    overwrite each other there, so that is an error.
    """
    settings: dict[int, Passthrough] = {}
    files: dict[str, bytes] = {}
    owners: dict[str, str] = {}
    for domu in config.domus:
        binary = domu.passthrough_dtb
        if binary is None or domu.index not in indices:
            continue
        where = f"{binary.where}: {binary.key}"
        data = (config.root_dir / binary.path).read_bytes()
        name = PurePosixPath(binary.path).name
        target = f"{XEN_DIR.lstrip('/')}/{name}"
        if target in files and files[target] != data:
            raise UserError(f"{binary.path} and {owners[target]} would both be {XEN_DIR}/{name} "
                            "in dom0's rootfs; give them different file names", where)
        settings[domu.index] = read_passthrough(data, name, where)
        files[target] = data
        owners[target] = binary.path
    return settings, files
