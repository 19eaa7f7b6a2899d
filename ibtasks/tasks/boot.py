"""doit task generators of the boot files: one task per artifact, with complete file_dep and
targets, and a `config_changed` that is the JSON form of the frozen input its action plans from
(`task_inputs`).

    ib_check:<KEY>   one per input binary -> .ibtasks/check/<KEY>.json (type, sizes)
    ib_layout        the memory plan      -> .ibtasks/layout.json
    ib_dtb           the edited DTB       -> FDTEDIT
    ib_boot_source   the script text      -> UBOOT_SOURCE
    ib_boot_scr      the script image     -> UBOOT_SCRIPT
    ib_fit           with -f/FIT, instead of ib_boot_scr: everything in one FIT -> FIT
    ib_xen_uimage    BOOT_CMD=bootm only  -> <XEN>.ub (Xen as a legacy kernel uImage)

With `-s` (addresses computed by U-Boot) there are no checks and no ib_dtb: ib_layout only
places the script (no file_dep), ib_boot_source depends on APPEND_EXTRA_CMDS alone.

Values pass between tasks as small JSON files written only when their content changes, so a
kernel rebuilt with the same size stops at its own check. Another project's dodo.py can
`yield from ibtasks.boot_tasks(config)`; see examples/embed/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ibtasks.cache.location import CacheLocation
from ibtasks.config.model import Config
from ibtasks.config.reader import Binary
from ibtasks.formats.file_check import Role
from ibtasks.plan.boot_script import xen_uimage_name
from ibtasks.tasks.boot_actions import (
    check_binary,
    layout_values,
    write_boot_scr,
    write_boot_source,
    write_edited_dtb,
    write_fit,
    write_layout,
    write_xen_uimage,
)
from ibtasks.tasks.build_dirs import DEFAULT_EPOCH, work_dir
from ibtasks.tasks.cached_step import cached_action
from ibtasks.tasks.namespace import check_task_namespace, namespaced
from ibtasks.tasks.step import TaskDict, run_step
from ibtasks.tasks.task_inputs import (
    CheckInput,
    FitInput,
    LayoutInput,
    ScriptImageInput,
    UImageInput,
    dtb_view,
    fit_view,
    key_payload,
    script_view,
)
from ibtasks.tasks.uptodate import task_uptodate

# The check record's format: raised when a field is added (the DTB's /memory banks), so doit
# reruns checks recorded by an older ibtasks instead of reading them without it.
CHECK_RECORD_VERSION = 2
BOOT_TASKS = ("ib_check", "ib_layout", "ib_dtb", "ib_boot_source", "ib_boot_scr")


def boot_task_names(config: Config) -> tuple[str, ...]:
    """The basenames `boot_tasks(config)` yields, for doit's `create_after(creates=...)`
    (doit 0.37 mis-loads a delayed generator whose `creates` names a task it never yields):
    no ib_check or ib_dtb with -s, ib_fit instead of ib_boot_scr with a FIT, and
    ib_xen_uimage with BOOT_CMD=bootm."""
    names = [n for n in BOOT_TASKS if not (config.boot.calc and n in ("ib_check", "ib_dtb"))]
    if config.fit:
        names = ["ib_fit" if n == "ib_boot_scr" else n for n in names]
    return tuple(names + (["ib_xen_uimage"] if config.boot.boot_cmd == "bootm" else []))


def keyed(planned: Any, config: Config, *, by_content: bool = True) -> list[Any]:
    """The `uptodate` of a task whose action plans from `planned`: its JSON form, paths
    relative to the -d directory (`task_inputs.key_payload`), and the targets' check."""
    return task_uptodate({"input": key_payload(planned, config.root_dir)},
                         by_content=by_content)


def check_role(binary: Binary) -> Role:
    """What the check of `binary` expects its file to be, from its key: the kernels Xen loads
    for dom0 and the domUs are DOMAIN_KERNELs, a domU's passthrough DTB is a PARTIAL_DTB."""
    if binary.key == "DOM0_KERNEL" or binary.key.startswith("DOMU_KERNEL["):
        return Role.DOMAIN_KERNEL
    if binary.key.startswith("DOMU_PASSTHROUGH_DTB"):
        return Role.PARTIAL_DTB
    if binary.key == "DEVICE_TREE" or binary.key.startswith("DT_OVERLAY"):
        return Role.DTB
    if binary.key == "XEN_POLICY":
        return Role.POLICY
    if binary.key == "BITSTREAM":
        return Role.BITSTREAM
    if "RAMDISK" in binary.key:
        return Role.RAMDISK
    return Role.EXECUTABLE


def check_input(config: Config, binary: Binary) -> CheckInput:
    """ib_check:<KEY>'s input: the role, for the DTB the passthrough node paths whose
    existence it records, for the host kernel BOOT_CMD."""
    dt_paths: tuple[str, ...] = ()
    if binary is config.host_dtb:
        dt_paths = tuple(sorted({p for d in config.domus for p in d.props.passthrough_paths}))
    boot_cmd = config.boot.boot_cmd if binary is config.xen else None
    return CheckInput(binary.key, check_role(binary).value, CHECK_RECORD_VERSION, dt_paths,
                      boot_cmd)


def layout_input(config: Config) -> LayoutInput:
    """ib_layout's input: memory bounds, modules in load order, bootm's wrapped key, --strict."""
    modules = () if config.boot.calc else tuple((b.key, b.path) for b in config.binaries())
    uimage_key = config.xen.key if config.boot.boot_cmd == "bootm" else None
    return LayoutInput(config.memory_start, config.memory_end, modules, uimage_key,
                       config.strict)


def _check_name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", key)


def check_tasks(config: Config, work: Path | None = None) -> Iterator[TaskDict]:
    """ib_check:<KEY> for every binary the script loads (none with -s); records in `work`
    (default `work_dir(config)`)."""
    for binary in [] if config.boot.calc else config.binaries():
        checked = check_input(config, binary)
        target = str((work or work_dir(config)) / "check" / f"{_check_name(binary.key)}.json")
        yield {
            "basename": "ib_check",
            "name": binary.key,
            "doc": f"check {binary.key} is {checked.role} and record its size",
            "actions": [(run_step, [check_binary, checked, str(config.root_dir / binary.path),
                                    binary.where, target])],
            "file_dep": [str(config.root_dir / binary.path)],
            "targets": [target],
            "uptodate": keyed(checked, config),
            "clean": True,
        }


def boot_tasks(config: Config, epoch: int = DEFAULT_EPOCH,
               cache: CacheLocation | None = None, name: str | None = None
               ) -> Iterator[TaskDict]:
    """Yield the task dicts of the boot-file graph for `config` (a validated `Config`);
    `epoch` (seconds since 1970) stamps boot.scr, the FIT and bootm's uImage, as
    SOURCE_DATE_EPOCH does mkimage's; with `cache`, the FIT goes through that shared cache
    (tasks.cached_step). With `name` (a board's name), every task lives under it
    (`name:ib_layout`) and the work files in `.ibtasks/<name>/` (tasks.namespace); raises
    `UserError` for a name that cannot be one. Nothing is read or written until doit runs
    them."""
    work = work_dir(config) / check_task_namespace(name) if name else work_dir(config)
    yield from namespaced(name, _boot_graph(config, epoch, cache, work))


def _boot_graph(config: Config, epoch: int, cache: CacheLocation | None, work: Path
                ) -> Iterator[TaskDict]:
    root = config.root_dir
    checks: dict[str, str] = {}
    for task in check_tasks(config, work):
        checks[task["name"]] = task["targets"][0]
        yield task
    layout = str(work / "layout.json")
    planned = layout_input(config)
    yield {
        "basename": "ib_layout",
        "doc": "plan the load address of every binary" if not config.boot.calc else
               "place the boot script (-s: U-Boot places the binaries)",
        "actions": [(run_step, [write_layout, planned,
                                tuple(checks[key] for key, _ in planned.modules),
                                checks.get("DEVICE_TREE"), layout]),
                    (layout_values, [layout])],
        "file_dep": list(checks.values()),
        "targets": [layout],
        "uptodate": keyed(planned, config),
        "clean": True,
    }

    source_out = str(config.output_dir / config.uboot_source)
    scr_out = str(config.output_dir / (config.fit.name if config.fit else config.uboot_script))
    dtb_out = str(config.output_dir / config.fdtedit)
    dtb_check = checks.get("DEVICE_TREE")  # None with -s
    if dtb_check is not None:
        view = dtb_view(config)
        dtb = str(root / config.device_tree.path)
        yield {
            "basename": "ib_dtb",
            "doc": "write the DTB with the overlays and Xen's /chosen edits applied",
            "actions": [(run_step, [write_edited_dtb, view, dtb, layout, dtb_out, dtb_check])],
            "file_dep": [dtb, *(str(root / b.path) for b in config.boot.dt_overlays), layout,
                         dtb_check],
            "targets": [dtb_out],
            "uptodate": keyed(view, config),
            "clean": True,
        }
    extra = config.boot.append_extra_cmds
    view = script_view(config)
    yield {
        "basename": "ib_boot_source",
        "doc": "write the U-Boot script text",
        "actions": [(run_step, [write_boot_source, view, layout, source_out, dtb_check])],
        "file_dep": [layout, *([dtb_check] if dtb_check else []),
                     *([str(root / extra.path)] if extra else [])],
        "targets": [source_out],
        "uptodate": keyed(view, config),
        "clean": True,
    }
    if config.fit:
        yield fit_task(config, layout, dtb_out, source_out, scr_out, epoch, cache)
        return
    stamped = ScriptImageInput(epoch)
    yield {
        "basename": "ib_boot_scr",
        "doc": "wrap the script as a U-Boot script image (boot.scr)",
        "actions": [(run_step, [write_boot_scr, stamped, source_out, layout, scr_out])],
        "file_dep": [source_out, layout],
        "targets": [scr_out],
        "uptodate": keyed(stamped, config),
        "clean": True,
    }
    if config.boot.boot_cmd == "bootm":
        yield uimage_task(config, layout, checks, epoch)


def uimage_task(config: Config, layout: str, checks: dict[str, str], epoch: int) -> TaskDict:
    """ib_xen_uimage (BOOT_CMD=bootm): Xen (or LINUX) wrapped as a legacy kernel uImage."""
    uimage_out = str(config.output_dir / xen_uimage_name(config))
    xen = str(config.root_dir / config.xen.path)
    # Xen's check first, then the other kernels' (they decide when Xen's content cannot).
    kernel_checks = (checks[config.xen.key], *(
        checks[b.key] for b in config.binaries()
        if b.key != config.xen.key and check_role(b) in (Role.EXECUTABLE, Role.DOMAIN_KERNEL)))
    wrapped = UImageInput(config.xen.key, epoch)
    return {
        "basename": "ib_xen_uimage",
        "doc": f"wrap {config.xen.key} as a legacy kernel uImage for bootm",
        "actions": [(run_step, [write_xen_uimage, wrapped, xen, layout, uimage_out,
                                kernel_checks])],
        "file_dep": [xen, layout, *kernel_checks],
        "targets": [uimage_out],
        "uptodate": keyed(wrapped, config),
        "clean": True,
    }


def fit_task(config: Config, layout: str, dtb_out: str, source_out: str, fit_out: str,
             epoch: int, cache: CacheLocation | None = None) -> TaskDict:
    """ib_fit: every binary, the edited DTB and the script in one FIT (-f, FIT)."""
    packed = FitInput(fit_view(config), epoch)
    keys = [str(p) for p in config.fit.signing_inputs()] if config.fit else []
    file_dep = [*(str(config.root_dir / b.path) for b in config.binaries()),
                dtb_out, source_out, layout, *keys]
    return {
        "basename": "ib_fit",
        "doc": "pack every binary, the edited DTB and the script into one FIT image",
        "actions": [cached_action(cache, "ib_fit", packed, config.root_dir, file_dep, [fit_out],
                                  ("mkimage",) if keys else (), None,
                                  write_fit, packed, layout, dtb_out, source_out, fit_out)],
        "file_dep": file_dep,
        "targets": [fit_out],
        "uptodate": keyed(packed, config),
        "clean": True,
    }

