"""Xen's command line: XEN_CMD as given, or the default built from the table's XEN_CMD default,
DOM0_MEM, DOM0_VCPUS and the cache colours (upstream's uboot-script-gen builds it the same way).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ibtasks.errors import UserError

if TYPE_CHECKING:
    from ibtasks.config.reader import KeyReader
    from ibtasks.config.xen_props import XenProps

# Keys that only feed the default XEN_CMD.
DEFAULT_FEEDS = ("DOM0_MEM", "DOM0_VCPUS", "XEN_COLORS", "DOM0_COLORS")


def choose_xen_cmd(reader: KeyReader, text: str, has_dom0: bool, xen: XenProps,
                   domu_colors: bool) -> str:
    """XEN_CMD as given (`text`, the key's value or its default), else the default built from
    DOM0_MEM (MiB), DOM0_VCPUS and the colours; the keys that feed the default are an error
    next to an explicit XEN_CMD (`UserError` naming the key)."""
    feeds = [name for name in DEFAULT_FEEDS if reader.given(name) is not None]
    if reader.given("XEN_CMD") is not None:
        for name in feeds:
            raise UserError(f"{name} only feeds the default XEN_CMD, but XEN_CMD is set: "
                            "put it in XEN_CMD instead", reader.where(name))
        if domu_colors and "llc-coloring=on" not in text.split():
            raise UserError("DOMU_COLORS needs cache colouring: add llc-coloring=on to XEN_CMD",
                            reader.where("XEN_CMD"))
        return text
    return default_xen_cmd(text, reader.number("DOM0_MEM"), reader.number("DOM0_VCPUS"),
                           has_dom0, xen, domu_colors)


def default_xen_cmd(base: str, dom0_mem: int | None, dom0_vcpus: int | None,
                    has_dom0: bool, xen: XenProps, any_domu_colors: bool) -> str:
    """The default XEN_CMD: `base` (the table's), with DOM0_MEM (MiB) and DOM0_VCPUS written in
    decimal, the colours, and no dom0 words when there is no dom0 (Xen would otherwise reserve
    memory for a dom0 that never comes)."""
    words = base.split()
    if dom0_mem is not None:
        words = [f"dom0_mem={dom0_mem}M" if w.startswith("dom0_mem=") else w for w in words]
    if dom0_vcpus is not None:
        words = [f"dom0_max_vcpus={dom0_vcpus}" if w.startswith("dom0_max_vcpus=") else w
                 for w in words]
    if xen.xen_colors or xen.dom0_colors or any_domu_colors:
        words.append("llc-coloring=on")
    if xen.xen_colors:
        words.append(f"xen-llc-colors={xen.xen_colors}")
    if xen.dom0_colors:
        words.append(f"dom0-llc-colors={xen.dom0_colors}")
    if not has_dom0:
        words = [w for w in words if not w.startswith("dom0")]
    return " ".join(words)
