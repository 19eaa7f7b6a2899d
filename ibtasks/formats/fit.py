"""FIT images (U-Boot doc/usage/fit): every binary and the boot script in one device tree.

Built and parsed in Python; the layout is what `mkimage -f` makes of the equivalent .its (root
`timestamp` first, each hash node's `value` before its `algo`), so `dumpimage -l` and U-Boot's
`imxtract` and `source ADDR:boot_scr` read it. A FIT is a tree of the one DTB model
(`formats.dtb.tree`), its `data` kept as raw bytes. Signing is left to mkimage (`fit_sign`).
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass

import fdt

from ibtasks.errors import UserError
from ibtasks.formats.dtb.tree import (
    cells_value,
    child_node,
    new_node,
    new_tree,
    node_prop,
    parse_dtb,
    strings_value,
    write_dtb,
)

# crc32 and sha1 as U-Boot's own examples (doc/usage/fit/kernel.rst). Upstream ImageBuilder
# writes md5, which U-Boot builds such as Debian's qemu_arm64 lack: there `imxtract` stops with
# "Unsupported hash algorithm".
HASH_ALGOS: tuple[str, ...] = ("crc32", "sha1")
_DIGESTS = {"sha1": "sha1", "sha256": "sha256", "md5": "md5"}
SIGN_ALGO = "sha1,rsa2048"  # upstream's choice for FIT_ENC_KEY_DIR


@dataclass(frozen=True)
class Signature:
    """A `signature` node for mkimage to fill: the algorithm and the key's file name hint."""

    algo: str
    key_name_hint: str


@dataclass(frozen=True)
class FitImage:
    """One `/images/<name>` node."""

    name: str
    description: str
    data: bytes
    type: str  # kernel, ramdisk, flat_dt, script, fpga, ...
    load: int
    arch: str | None = "arm64"
    os: str | None = None
    entry: int | None = None
    compatible: str | None = None
    hashes: tuple[str, ...] = HASH_ALGOS
    signature: Signature | None = None


@dataclass(frozen=True)
class FitConfig:
    """One `/configurations/<name>` node: which images are the kernel, fdt, ramdisk, loadables."""

    name: str
    description: str
    kernel: str | None = None
    fdt: tuple[str, ...] = ()
    ramdisk: str | None = None
    fpga: str | None = None
    loadables: tuple[str, ...] = ()


@dataclass(frozen=True)
class Fit:
    """A whole FIT: its images and configurations."""

    description: str
    timestamp: int
    images: tuple[FitImage, ...]
    configs: tuple[FitConfig, ...]
    default: str | None = None

    def image(self, name: str) -> FitImage:
        for image in self.images:
            if image.name == name:
                return image
        raise KeyError(name)


def hash_value(algo: str, data: bytes) -> bytes:
    """The bytes of a hash node's `value`, as U-Boot computes them."""
    if algo == "crc32":
        return cells_value(zlib.crc32(data))
    if algo in _DIGESTS:
        return hashlib.new(_DIGESTS[algo], data).digest()
    raise ValueError(f"unsupported FIT hash algorithm {algo!r}")


def _address_cells(fit: Fit) -> int:
    top = max([0, *(i.load for i in fit.images), *(i.entry or 0 for i in fit.images)])
    return 1 if top <= 0xFFFFFFFF else 2


def _address(value: int, cells: int) -> bytes:
    return value.to_bytes(4 * cells, "big")


def _image_node(image: FitImage, cells: int) -> fdt.Node:
    props: list[tuple[str, bytes]] = [
        ("description", strings_value(image.description)),
        ("data", image.data),
        ("type", strings_value(image.type)),
    ]
    if image.arch:
        props.append(("arch", strings_value(image.arch)))
    if image.os:
        props.append(("os", strings_value(image.os)))
    props.append(("compression", strings_value("none")))
    if image.compatible:
        props.append(("compatible", strings_value(image.compatible)))
    props.append(("load", _address(image.load, cells)))
    if image.entry is not None:
        props.append(("entry", _address(image.entry, cells)))
    children = [
        new_node(f"hash-{n}" if len(image.hashes) > 1 else "hash",
                 (("value", hash_value(algo, image.data)), ("algo", strings_value(algo))))
        for n, algo in enumerate(image.hashes, 1)
    ]
    if image.signature:
        children.append(new_node("signature", (
            ("algo", strings_value(image.signature.algo)),
            ("key-name-hint", strings_value(image.signature.key_name_hint)),
        )))
    return new_node(image.name, props, children)


def _config_node(config: FitConfig) -> fdt.Node:
    props = [("description", strings_value(config.description))]
    if config.kernel:
        props.append(("kernel", strings_value(config.kernel)))
    if config.fdt:
        props.append(("fdt", strings_value(*config.fdt)))
    if config.ramdisk:
        props.append(("ramdisk", strings_value(config.ramdisk)))
    if config.fpga:
        props.append(("fpga", strings_value(config.fpga)))
    if config.loadables:
        props.append(("loadables", strings_value(*config.loadables)))
    return new_node(config.name, props)


def build_fit(fit: Fit) -> bytes:
    """The FIT blob (bytes), with every hash computed; the layout `mkimage -f` gives the
    equivalent .its (see the module docstring). ValueError for duplicate image names or an
    unsupported hash algorithm (the planner never makes either)."""
    names = [image.name for image in fit.images]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate FIT image names in {names}")
    cells = _address_cells(fit)
    configs_props = (("default", strings_value(fit.default)),) if fit.default else ()
    root = new_node("/", (
        ("timestamp", cells_value(fit.timestamp & 0xFFFFFFFF)),
        ("description", strings_value(fit.description)),
        ("#address-cells", cells_value(cells)),
    ), (
        new_node("images", (), [_image_node(i, cells) for i in fit.images]),
        new_node("configurations", configs_props, [_config_node(c) for c in fit.configs]),
    ))
    return write_dtb(new_tree(root))


# --- parsing ----------------------------------------------------------------------------------


def _text(node: fdt.Node, name: str, source: str) -> str | None:
    raw = node_prop(node, name)
    if raw is None:
        return None
    if not raw.endswith(b"\0"):
        raise UserError(f"{node.name}/{name}: not a string", source)
    return raw[:-1].decode()


def _texts(node: fdt.Node, name: str) -> tuple[str, ...]:
    raw = node_prop(node, name)
    return tuple(raw[:-1].decode().split("\0")) if raw else ()


def _number(node: fdt.Node, name: str, source: str) -> int | None:
    raw = node_prop(node, name)
    if raw is None:
        return None
    if len(raw) not in (4, 8):
        raise UserError(f"{node.name}/{name}: expected 1 or 2 cells, got {len(raw)} bytes", source)
    return int.from_bytes(raw, "big")


def _parse_image(node: fdt.Node, source: str) -> FitImage:
    data = node_prop(node, "data")
    kind = _text(node, "type", source)
    load = _number(node, "load", source)
    if data is None or kind is None or load is None:
        raise UserError(f"FIT image {node.name} lacks data, type or load", source)
    hashes = []
    signature = None
    for child in node.nodes:
        algo = _text(child, "algo", source) or ""
        if child.name.startswith("hash"):
            if node_prop(child, "value") != hash_value(algo, data):
                raise UserError(f"FIT image {node.name}: {algo} hash mismatch", source)
            hashes.append(algo)
        elif child.name.startswith("signature"):
            signature = Signature(algo, _text(child, "key-name-hint", source) or "")
    return FitImage(
        name=node.name,
        description=_text(node, "description", source) or "",
        data=data,
        type=kind,
        load=load,
        arch=_text(node, "arch", source),
        os=_text(node, "os", source),
        entry=_number(node, "entry", source),
        compatible=_text(node, "compatible", source),
        hashes=tuple(hashes),
        signature=signature,
    )


def parse_fit(blob: bytes, source: str = "FIT") -> Fit:
    """Read a FIT built by us or by mkimage (embedded data only), checking every hash.
    Raises UserError naming `source` when it is not a FIT, is corrupt or a hash mismatches."""
    root = parse_dtb(blob, source)[0].root
    images, configs = child_node(root, "images"), child_node(root, "configurations")
    if images is None or configs is None:
        raise UserError("not a FIT: no /images or /configurations node", source)
    return Fit(
        description=_text(root, "description", source) or "",
        timestamp=_number(root, "timestamp", source) or 0,
        images=tuple(_parse_image(node, source) for node in images.nodes),
        configs=tuple(
            FitConfig(
                name=node.name,
                description=_text(node, "description", source) or "",
                kernel=_text(node, "kernel", source),
                fdt=_texts(node, "fdt"),
                ramdisk=_text(node, "ramdisk", source),
                fpga=_text(node, "fpga", source),
                loadables=_texts(node, "loadables"),
            )
            for node in configs.nodes
        ),
        default=_text(configs, "default", source),
    )
