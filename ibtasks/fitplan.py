"""What goes into the FIT (`-f`, FIT, FIT_ENC_KEY_DIR, FIT_ENC_UB_DTB): settings and contents.

Image names are upstream's (`host_kernel`, `dom0_linux`, `domU0_kernel`, `host_fdt`, `boot_scr`),
since the script names them in `imxtract` and users' own scripts may too.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ibtasks.errors import UserError, hex_and_dec
from ibtasks.filetype import choose_arch, head_of_bytes, kernel_arch
from ibtasks.fit import SIGN_ALGO, Fit, FitConfig, FitImage, Signature

if TYPE_CHECKING:
    from ibtasks.config import Config
    from ibtasks.layout import Layout

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


@dataclass(frozen=True)
class FitSettings:
    """A FIT build: its output name, and the signing key and U-Boot DTB if signing."""

    name: str  # FIT, relative to the output directory
    key_dir: Path | None = None  # FIT_ENC_KEY_DIR's directory, under the root (-d) directory
    key_hint: str | None = None  # FIT_ENC_KEY_DIR's last part: KEY_DIR/HINT.key and .crt
    u_boot_dtb: Path | None = None  # FIT_ENC_UB_DTB: gets the public key (modified in place)
    where: str = "FIT_ENC_KEY_DIR"

    def key_files(self) -> list[Path]:
        """The key files mkimage reads (the certificate only to add the key to a DTB)."""
        if self.key_dir is None or self.key_hint is None:
            return []
        files = [self.key_dir / f"{self.key_hint}.key"]
        if self.u_boot_dtb is not None:
            files.append(self.key_dir / f"{self.key_hint}.crt")
        return files

    def signing_inputs(self) -> list[Path]:
        """Key files and the U-Boot DTB: a replaced U-Boot DTB must get the key again."""
        return self.key_files() + ([self.u_boot_dtb] if self.u_boot_dtb else [])


Lookup = Callable[[str], tuple[str | None, str | None]]  # key -> (value, where)


def read_fit_settings(lookup: Lookup, fit_flag: bool, source_stem: str, root: Path
                      ) -> tuple[FitSettings | None, tuple[str, ...]]:
    """The FIT settings from the config (`lookup`) and -f/-k/-u, and warnings to show.

    As upstream: FIT names the image and turns FIT mode on; -f alone names it after
    UBOOT_SOURCE; FIT_ENC_KEY_DIR is KEY_DIR/HINT relative to the -d directory.
    """
    name, _ = lookup("FIT")
    if not name and fit_flag:
        name = f"{source_stem}.fit"
    key_text, key_where = lookup("FIT_ENC_KEY_DIR")
    dtb_text, dtb_where = lookup("FIT_ENC_UB_DTB")
    if dtb_text and not key_text:
        raise UserError("FIT_ENC_UB_DTB: signing needs the key: set FIT_ENC_KEY_DIR=KEY_DIR/HINT "
                        "or pass -k KEY_DIR/HINT", dtb_where)
    if not name:
        if key_text:
            return None, ("FIT_ENC_KEY_DIR: ignored: no FIT is built (pass -f or set FIT)",)
        return None, ()
    if not key_text:
        return FitSettings(name), ()
    key_dir, _, hint = key_text.rstrip("/").rpartition("/")
    if not key_dir or not hint:
        raise UserError(f"FIT_ENC_KEY_DIR: expected KEY_DIR/HINT (KEY_DIR holding HINT.key and "
                        f"HINT.crt), got '{key_text}'", key_where)
    settings = FitSettings(name, root / key_dir, hint,
                           root / dtb_text if dtb_text else None, key_where or "FIT_ENC_KEY_DIR")
    for path in settings.key_files():
        if not path.is_file():
            raise UserError(f"FIT_ENC_KEY_DIR: {path.relative_to(root)} does not exist "
                            f"(looked in {root})", key_where)
    if settings.u_boot_dtb is not None and not settings.u_boot_dtb.is_file():
        raise UserError(f"FIT_ENC_UB_DTB: {dtb_text} does not exist (looked in {root})",
                        dtb_where)
    return settings, ()


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
