"""How the script loads and starts things: BOOT_CMD, per-image load commands, extra modules.

Upstream grew these keys after the seed (reference doc §1.1, §1.2, §1.5): the boot command,
XEN_LOAD/DOM0_LOAD/DOMU_LOAD[n], APPEND_EXTRA_CMDS, XEN_POLICY, BITSTREAM, DT overlays, `-p`,
`-s`, and a bare-metal LINUX boot. `read_boot_options` validates them into one frozen value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ibtasks.config.load_command import resolve_load_cmd
from ibtasks.config.reader import from_key
from ibtasks.errors import UserError

if TYPE_CHECKING:
    from ibtasks.config.reader import Binary, KeyReader

# Keys whose files belong to the host side: they use XEN_LOAD when it is set.
HOST_KEYS = ("XEN", "LINUX", "LINUX_RAMDISK", "XEN_POLICY", "DEVICE_TREE", "BITSTREAM")


@dataclass(frozen=True)
class BootOptions:
    """The script-level choices beyond the seed's; the table's defaults give the seed's script."""

    boot_cmd: str = field(metadata=from_key("BOOT_CMD"))
    append_extra_cmds: Binary | None = field(metadata=from_key("APPEND_EXTRA_CMDS"))
    print_chosen: bool = field(metadata=from_key("DBG_FDT_PRINT_CHOSEN"))
    xen_load: str | None
    dom0_load: str | None
    domu_load: tuple[tuple[int, str], ...]  # (domU index, DOMU_LOAD[index])
    prepend_path: str  # -p: prefix of every path the script loads
    calc: bool  # -s: addresses computed by U-Boot at boot
    xen_policy: Binary | None = field(metadata=from_key("XEN_POLICY"))
    bitstream: Binary | None = field(metadata=from_key("BITSTREAM"))
    dt_overlays: tuple[Binary, ...]
    linux_cmd: str  # bare-metal mode only (the config's `xen` is then LINUX); else ''
    linux_ramdisk: Binary | None = field(metadata=from_key("LINUX_RAMDISK"))

    def load_cmd_for(self, key: str, default: str) -> str:
        """The load command of the file named by `key` (`DOMU_KERNEL[1]`, `DT_OVERLAY[0]`...)."""
        if key in HOST_KEYS or key.startswith("DT_OVERLAY["):
            return self.xen_load or default
        if key.startswith("DOM0_"):
            return self.dom0_load or default
        if key.startswith("DOMU_") and key.endswith("]"):
            index = int(key[key.index("[") + 1:-1])
            return dict(self.domu_load).get(index) or default
        return default


def _load_text(reader: KeyReader, name: str, index: int | None = None) -> str | None:

    text = reader.text(name, index)
    return resolve_load_cmd(text.strip()) if text and text.strip() else None


def read_boot_options(reader: KeyReader, prepend_path: str, calc: bool, linux_mode: bool,
                      num_domus: int) -> BootOptions:
    """Validate the keys of this module; raise `UserError` naming the key and its place."""
    boot_cmd = reader.choice_or_default("BOOT_CMD")
    if calc and boot_cmd == "bootm":
        raise UserError("BOOT_CMD: bootm needs Xen wrapped in a uImage whose header holds its "
                        "load address, which -s leaves to U-Boot; use booti or drop -s",
                        reader.where("BOOT_CMD"))
    overlays = reader.counted_binaries("DT_OVERLAY", "NUM_DT_OVERLAY")
    num_overlays = len(overlays)
    for index in _indices(reader, "DT_OVERLAY"):
        if index >= num_overlays:
            raise UserError(f"DT_OVERLAY[{index}] is set but NUM_DT_OVERLAY is {num_overlays}",
                            reader.where("DT_OVERLAY", index))
    xen_only = ("XEN_POLICY",)
    linux_only = ("LINUX_CMD", "LINUX_RAMDISK")
    for name in (xen_only if linux_mode else linux_only):
        if reader.where(name):
            other = "XEN" if linux_mode else "LINUX"
            raise UserError(f"{name} needs {other}, which is not set", reader.where(name))
    linux_cmd = ""
    if linux_mode:
        linux_cmd = reader.command_line("LINUX_CMD")
        if "root=" not in linux_cmd:
            linux_cmd += " root=/dev/ram0"
    domu_load = tuple((i, cmd) for i in range(num_domus)
                      if (cmd := _load_text(reader, "DOMU_LOAD", i)) is not None)
    return BootOptions(
        **reader.read_fields(BootOptions),
        xen_load=_load_text(reader, "XEN_LOAD"),
        dom0_load=_load_text(reader, "DOM0_LOAD"),
        domu_load=domu_load,
        prepend_path=prepend_path.rstrip("/"),
        calc=calc,
        dt_overlays=tuple(overlays),
        linux_cmd=linux_cmd,
    )


def _indices(reader: KeyReader, name: str) -> list[int]:
    return sorted(i for (n, i) in reader.raw.values if n == name and i is not None)
