"""What each boot task keys on: the frozen input its action hands to the planner.

A task's action receives one frozen value and plans from it alone; the task's
`config_changed` payload is that value's JSON form (`key_payload`), so the cache key cannot
drift from what the planner reads (Nikola's per-plugin `kw`). The tasks that plan from the
whole `Config` (ib_dtb, ib_boot_source, ib_fit) get a view of it: a copy in which the fields
that task must not depend on are blanked. A field a view does not name is kept, so a new
`Config` field is keyed on by default; a planner cannot read a value its task does not key on.

The JSON form leaves out places (`where`, `*_where`, `Config.source`: `config:12`, read only
for messages) and writes paths relative to the -d directory (`Config.root_dir` itself is
`.`), so moving a line or the config file, or copying the tree, reruns nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Any

from ibtasks.config.fit_settings import FitSettings
from ibtasks.config.model import Config

PLACES = frozenset({"where", "source"})  # and every field ending in `_where`


def is_place(name: str) -> bool:
    """Whether a dataclass field named `name` holds a place (`config:12`), for messages only."""
    return name in PLACES or name.endswith("_where")


def key_payload(value: Any, root: Path) -> Any:
    """The JSON form of a task input: dataclasses as dicts of their compared fields without
    places, paths relative to `root` (the -d directory), tuples as lists, bytes by sha256.

    Raises TypeError for a value with no JSON form (a new field type must choose one here).
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: key_payload(getattr(value, f.name), root)
                for f in dataclasses.fields(value) if f.compare and not is_place(f.name)}
    if isinstance(value, Path):
        return os.path.relpath(value, root)
    if isinstance(value, tuple | list):
        return [key_payload(item, root) for item in value]
    if isinstance(value, dict):
        return {str(k): key_payload(v, root) for k, v in sorted(value.items())}
    if isinstance(value, bytes):
        return hashlib.sha256(value).hexdigest()
    if isinstance(value, Enum):
        return value.value
    if value is None or isinstance(value, str | int | float):
        return value
    raise TypeError(f"no JSON form for a task input of type {type(value).__name__}")


# ---- small inputs: tasks whose actions take a few values --------------------------------------

@dataclass(frozen=True)
class CheckInput:
    """ib_check:<KEY>: what the check of one input file reads besides the file itself.

    `role` is a `file_check.Role` value; `dt_paths` the node paths whose existence the
    DEVICE_TREE check records (DOMU_PASSTHROUGH_PATHS); `boot_cmd` BOOT_CMD, for the host
    kernel only (can it start it); `record` the check record's format version, raised when a
    field is added so that older records are made again.
    """

    key: str
    role: str
    record: int
    dt_paths: tuple[str, ...] = ()
    boot_cmd: str | None = None


@dataclass(frozen=True)
class LayoutInput:
    """ib_layout: MEMORY_START/MEMORY_END (bytes), the modules in load order as (key, path),
    the key loaded wrapped in a uImage (bootm: its slot holds the 64-byte header), and
    --strict (a warning of the plan is an error)."""

    memory_start: int
    memory_end: int
    modules: tuple[tuple[str, str], ...]
    uimage_key: str | None
    strict: bool


@dataclass(frozen=True)
class ScriptImageInput:
    """ib_boot_scr: the script image's timestamp (seconds since 1970, SOURCE_DATE_EPOCH)."""

    epoch: int


@dataclass(frozen=True)
class UImageInput:
    """ib_xen_uimage (BOOT_CMD=bootm): the key of the kernel wrapped (XEN or LINUX) and the
    uImage's timestamp (seconds since 1970)."""

    key: str
    epoch: int


@dataclass(frozen=True)
class FitInput:
    """ib_fit: the config as the FIT planner reads it (`fit_view`) and the FIT's timestamp."""

    config: Config
    epoch: int


# ---- views of Config: what the planners of whole-config tasks may read ------------------------

def blank_of(value: Any) -> Any:
    """A value of the same shape as `value` that holds nothing: dataclasses field by field,
    then False, 0, "", () or None; the same whatever `value` held, so a view keyed on it
    never changes with the config."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return replace(value, **{f.name: blank_of(getattr(value, f.name))
                                 for f in dataclasses.fields(value) if f.init})
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return 0
    if isinstance(value, str):
        return ""
    if isinstance(value, tuple):
        return ()
    return None


def _blanked(config: Config, **fields: Any) -> Config:
    """`config` with `fields` and the fields no boot-file planner reads blanked: disk-image's
    choices, the script's own names (each task writes the target it is given), --strict (the
    layout's), and what was found while loading (warnings)."""
    blanks: dict[str, Any] = {
        "uboot_source": "", "uboot_script": "", "boot_fs": "fat", "partition_table": "gpt",
        "boot_aux_files": (), "boot_partition_mib": None, "strict": False, "warnings": (),
        "environ_used": (),
        # dom0's root= is already in dom0_cmd; the rootfs partitions are disk-image's; the
        # xl configs (DOMU_CMD as given, DOMU_DRIVER_DOMAIN) are in dom0's partition.
        "dom0_rootfs": None,
        "domus": tuple(replace(d, cmd_given=None, driver_domain=False) for d in config.domus)}
    return replace(config, **{**blanks, **fields})


def dtb_view(config: Config) -> Config:
    """ib_dtb's input: what `plan_chosen_edits` and the overlays read (the /chosen values,
    the domains, the DTB and overlay paths); load commands, output names, memory bounds (the
    layout file carries the addresses), FIT and script options are blanked."""
    boot = config.boot
    return _blanked(
        config, output_dir=config.root_dir, load_cmd="", memory_start=0, memory_end=0, fdtedit="",
        preedited_dtb=False, fit=None,
        boot=replace(boot, boot_cmd="booti", append_extra_cmds=None, print_chosen=False,
                     xen_load=None, dom0_load=None, domu_load=(), prepend_path="", calc=False,
                     bitstream=None))


def script_view(config: Config) -> Config:
    """ib_boot_source's input: everything the script text reads (`render_boot_source`, or
    `render_calc_boot_source` with -s, and the /chosen edits); of the FIT only whether there
    is one (the script extracts from it by image names), not its name or signing key."""
    return _blanked(config, fit=FitSettings("") if config.fit is not None else None)


def fit_view(config: Config) -> Config:
    """ib_fit's input: the FIT settings (name, signing key and U-Boot DTB), which keys are
    Xen and the DTB, and where the binaries are (`root_dir`); every address comes from the
    layout file and every byte from a file_dep, so the rest is blanked."""
    return _blanked(
        config, output_dir=config.root_dir, load_cmd="", memory_start=0, memory_end=0, xen_cmd="",
        dom0_kernel=None, dom0_cmd="", dom0_ramdisk=None, domus=(), fdtedit="",
        preedited_dtb=False, xen_props=blank_of(config.xen_props),
        boot=blank_of(config.boot))
