"""What goes into the FIT: its images, configuration and signature nodes, planned from the
config, the layout and the binaries (the FIT settings themselves are read in config.fit_settings).

Image names are upstream's (`host_kernel`, `dom0_linux`, `domU0_kernel`, `host_fdt`, `boot_scr`),
since the script names them in `imxtract` and users' own scripts may too.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from ibtasks.config.fit_settings import FitSettings
from ibtasks.errors import UserError, hex_and_dec
from ibtasks.formats.filetype import choose_arch, head_of_bytes, kernel_arch
from ibtasks.formats.fit import SIGN_ALGO, Fit, FitConfig, FitImage, Signature

if TYPE_CHECKING:
    from ibtasks.config.model import Config
    from ibtasks.plan.layout import Layout

SCRIPT_IMAGE = "boot_scr"
FIT_DESCRIPTION = "Configuration from Imagebuilder to load Xen/Linux"

# key pattern -> (image name, type, description, os); `{i}` is the domU index.
_NAMES: tuple[tuple[str, str, str, str, str | None], ...] = (
    (r"XEN|LINUX", "host_kernel", "kernel", "xen kernel", "linux"),
    (r"DEVICE_TREE", "host_fdt", "flat_dt", "xen fdt", None),
    (r"DOM0_KERNEL", "dom0_linux", "kernel", "dom0 linux kernel binary", "linux"),
    (r"DOM0_RAMDISK", "dom0_ramdisk", "ramdisk", "dom0 ramdisk", "linux"),
    (r"LINUX_RAMDISK", "host_ramdisk", "ramdisk", "host ramdisk", "linux"),
    (r"DOMU_KERNEL\[(\d+)\]", "domU{i}_kernel", "kernel", "domU{i} kernel binary", "linux"),
    (r"DOMU_RAMDISK\[(\d+)\]", "domU{i}_ramdisk", "ramdisk", "domU{i} ramdisk", "linux"),
    (r"DOMU_PASSTHROUGH_DTB\[(\d+)\]", "domU{i}_fdt", "flat_dt", "domU{i} fdt", None),
    (r"DT_OVERLAY\[(\d+)\]", "host_fdto{i}", "flat_dt", "xen fdt overlay {i}", None),
    (r"BITSTREAM", "fpga_bitstream", "fpga", "FPGA bit stream", None),
)


def image_name(key: str) -> str:
    """The FIT image name of a config key's binary (upstream's names; others from the key)."""
    return _describe(key)[0]


def _describe(key: str) -> tuple[str, str, str, str | None]:
    for pattern, name, kind, description, os_name in _NAMES:
        match = re.fullmatch(pattern, key)
        if match:
            index = match.group(1) if match.groups() else ""
            return (name.format(i=index), kind, description.format(i=index), os_name)
    plain = re.sub(r"[^a-z0-9]+", "_", key.lower()).strip("_")
    return plain, "firmware", key, None


def plan_fit(config: Config, layout: Layout, read: Callable[[str], bytes], edited_dtb: bytes,
             script: bytes, timestamp: int, settings: FitSettings) -> Fit:
    """The FIT of a build: every loaded binary (the DTB as edited), then the script."""
    signature = Signature(SIGN_ALGO, settings.key_hint) if settings.key_hint else None
    contents = [(region, edited_dtb if region.key == config.device_tree.key
                 else read(region.path)) for region in layout.regions]
    arches = _kernel_arches([(r.key, r.path, data) for r, data in contents])
    host_arch = choose_arch(arches.get(config.xen.key),
                            [a for key, a in arches.items() if key != config.xen.key])
    images = []
    for region, data in contents:
        name, kind, description, os_name = _describe(region.key)
        entry = region.address if name == "host_kernel" else None
        # A kernel is marked with its own architecture (an arm64 Xen runs arm guests too);
        # everything else with the host's, Xen's.
        arch = choose_arch(arches.get(region.key), [host_arch])
        images.append(FitImage(name, description, data, kind, region.address, arch=arch,
                               os=os_name, entry=entry, signature=signature,
                               compatible="u-boot,fpga-legacy" if kind == "fpga" else None))
    # host_fdt and host_kernel first, as upstream's .its, so `dumpimage -p 0` is the DTB.
    first = [i for n in ("host_fdt", "host_kernel") for i in images if i.name == n]
    images = first + [i for i in images if i not in first]
    images.append(FitImage(SCRIPT_IMAGE, "imagebuilder's boot script", script, "script",
                           layout.script_slot, arch=None, entry=layout.script_slot,
                           signature=signature))
    special = {"host_kernel", "host_fdt", "fpga_bitstream", SCRIPT_IMAGE}
    overlays = tuple(i.name for i in images if i.name.startswith("host_fdto"))
    configuration = FitConfig(
        "config", "Imagebuilder xen", kernel="host_kernel", fdt=("host_fdt", *overlays),
        fpga="fpga_bitstream" if any(i.name == "fpga_bitstream" for i in images) else None,
        loadables=tuple(i.name for i in images
                        if i.name not in special and i.name not in overlays),
    )
    return Fit(FIT_DESCRIPTION, timestamp, tuple(images), (configuration,), "config")


def _kernel_arches(binaries: list[tuple[str, str, bytes]]) -> dict[str, str | None]:
    """The architecture each kernel's content says (`filetype.kernel_arch`), by config key."""
    arches: dict[str, str | None] = {}
    for key, path, data in binaries:
        if _describe(key)[1] == "kernel":
            try:
                arches[key] = kernel_arch(head_of_bytes(data, path).data, path)
            except UserError as exc:
                raise UserError(f"{key}: {exc.message}") from exc
    return arches


def check_fit_fits(layout: Layout, fit_size: int, name: str) -> None:
    """The FIT, loaded at the first free address, must end below MEMORY_END.

    Upstream checks `MEMORY_END - 2 * (fit_addr + 2 MiB)`, doubling an absolute address, which
    rejects most boards whose RAM does not start at 0; this is the check it means.
    """
    end = layout.end + fit_size
    if end > layout.memory_end:
        raise UserError(
            f"not enough memory for the FIT image {name}: loaded at {layout.end:#x} it ends at "
            f"{end:#x}, above MEMORY_END {layout.memory_end:#x} "
            f"({hex_and_dec(end - layout.memory_end)} bytes short)", "MEMORY_END")
