"""doit task generators: one task per artifact, with complete file_dep, targets and config_changed.

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
`yield from boot_tasks(config)`; see examples/embed/.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from doit.exceptions import TaskFailed

from ibtasks.config.model import Config
from ibtasks.config.reader import Binary
from ibtasks.errors import UserError
from ibtasks.formats.cells import check_u32
from ibtasks.formats.dt_overlay import apply_overlays
from ibtasks.formats.dtb.edits import apply_edits
from ibtasks.formats.dtb.facts import (
    DtFacts,
    check_host_dtb,
    read_dt_facts,
    read_reserved_regions,
)
from ibtasks.formats.file_check import Role, check_file
from ibtasks.formats.filetype import choose_arch
from ibtasks.formats.fit import build_fit
from ibtasks.formats.fit_sign import sign_fit
from ibtasks.formats.uimage import (
    HEADER,
    LegacyImage,
    ScriptImage,
    build_legacy_image,
    build_script_image,
)
from ibtasks.fsutil import replacing, write_atomic, write_if_changed
from ibtasks.plan.boot_command import check_boot_command
from ibtasks.plan.boot_script import render_boot_source, xen_uimage_name
from ibtasks.plan.calc_script import render_calc_boot_source
from ibtasks.plan.chosen import edit_inputs as domain_edit_inputs
from ibtasks.plan.chosen import plan_chosen_edits
from ibtasks.plan.fit import FitSettings, check_fit_fits, plan_fit
from ibtasks.plan.layout import Layout, Module, plan_layout
from ibtasks.plan.memory_banks import check_layout_in_banks
from ibtasks.tasks.uptodate import task_uptodate

WORK_DIR_NAME = ".ibtasks"
# Every timestamp when SOURCE_DATE_EPOCH is unset, so builds stay identical: 1980-01-01, the
# earliest time FAT can store (and non-zero, which E2FSPROGS_FAKE_TIME needs to take effect).
DEFAULT_EPOCH = 315532800

TaskDict = dict[str, Any]
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


def source_date_epoch(environ: os._Environ[str] | dict[str, str]) -> int:
    """SOURCE_DATE_EPOCH (reproducible-builds.org) or a fixed time."""
    text = environ.get("SOURCE_DATE_EPOCH", "")
    if not text:
        return DEFAULT_EPOCH
    if not text.isdigit():
        raise UserError(f"SOURCE_DATE_EPOCH: expected seconds since 1970, got '{text}'")
    return int(text)


def work_dir(config: Config) -> Path:
    """Where intermediate files (checks, layout, doit's state) live: inside the output dir."""
    return config.output_dir / WORK_DIR_NAME


def anchored_path(path: Path, anchor: Path) -> Path:
    """`path` (relative to the current directory, or absolute) as doit should see it when it
    runs in `anchor`: relative when it lies inside `anchor`, else absolute.

    doit keys its record by the file paths as given; relative to the output directory they stay
    the same when a built tree is copied elsewhere (a CI cache restore), so nothing reruns.
    Paths with `..` are never rewritten textually (a symlinked directory resolves `..`
    elsewhere): they are made absolute as written.
    """
    cwd = os.getcwd()
    full, base = os.path.join(cwd, path), os.path.join(cwd, anchor)
    if ".." in Path(full).parts or ".." in Path(base).parts:
        return Path(full)
    full, base = os.path.normpath(full), os.path.normpath(base)
    if os.path.commonpath([full, base]) == base:
        return Path(os.path.relpath(full, base))
    return Path(full)


def anchored(config: Config, anchor: Path) -> Config:
    """`config` with its directories (and the FIT's key paths) as seen from `anchor`, the
    directory doit runs in (see `anchored_path`); the tasks of the result are path-independent
    when the -d and output directories lie inside `anchor`."""
    fit = config.fit
    if fit is not None:
        fit = replace(fit,
                      key_dir=anchored_path(fit.key_dir, anchor) if fit.key_dir else None,
                      u_boot_dtb=anchored_path(fit.u_boot_dtb, anchor) if fit.u_boot_dtb
                      else None)
    return replace(config, root_dir=anchored_path(config.root_dir, anchor),
                   output_dir=anchored_path(config.output_dir, anchor), fit=fit)


def run_step(func: Callable[..., None], *args: Any) -> TaskFailed | None:
    """Run one action; a user error becomes doit's TaskFailed with our one-line message."""
    try:
        func(*args)
    except UserError as exc:
        return TaskFailed(str(exc))
    return None


# ---- actions: module-level functions with explicit arguments ----------------------------------

def check_binary(key: str, role: str, path: str, where: str, out: str,
                 dt_paths: tuple[str, ...] = (), boot_cmd: str | None = None) -> None:
    """Check one input's type and record its sizes (and a DTB's reserved memory and the facts
    the domain edits need, `dtb.facts`) as JSON; for the host kernel, that `boot_cmd` (BOOT_CMD)
    can start it (bootcmdcheck)."""
    try:
        info = check_file(Path(path), Role(role), key)
        if boot_cmd is not None:
            with open(path, "rb") as f:
                first = f.read(2)
            check_boot_command(boot_cmd, key, Path(path).name, info.kind, first)
    except UserError as exc:
        raise UserError(exc.message, where) from exc
    record: dict[str, Any] = {"key": key, "kind": info.kind, "size": info.size,
                              "effective_size": info.effective_size, "arch": info.arch}
    if key == "DEVICE_TREE":
        data = Path(path).read_bytes()
        record["reserved"] = read_reserved_regions(data, f"{key} ({path})")
        record["facts"] = read_dt_facts(data, f"{key} ({path})", dt_paths).to_record()
        try:
            check_host_dtb(data, key, Path(path).name)
        except UserError as exc:
            raise UserError(exc.message, where) from exc
    write_if_changed(out, (json.dumps(record, indent=1) + "\n").encode())


def write_layout(memory_start: int, memory_end: int, modules: list[tuple[str, str, str]],
                 dtb_check: str | None, out: str, uimage_key: str | None = None,
                 strict: bool = False) -> None:
    """Plan the memory layout from the checks' sizes; write it if it changed.

    `uimage_key` is loaded wrapped in a uImage (bootm): its slot holds the 64-byte header too,
    and its address must fit the header's 32-bit load field. With the DTB's check, every load
    must lie in its /memory banks (`membanks`); the banks and warnings go into the layout.
    With `strict` (--strict, STRICT=y) the first warning is raised as a UserError instead.
    """
    placed = []
    for key, path, check in modules:
        record = json.loads(Path(check).read_text())
        size = record["effective_size"]
        if key == uimage_key:
            size = max(size, record["size"] + HEADER.size)
        placed.append(Module(key, path, size))
    reserved: list[tuple[int, int]] = []
    banks: tuple[tuple[int, int], ...] = ()
    if dtb_check is not None:
        dtb_record = json.loads(Path(dtb_check).read_text())
        reserved = [(int(a), int(n)) for a, n in dtb_record.get("reserved", [])]
        banks = DtFacts.from_record(dtb_record["facts"]).memory
    layout = plan_layout(memory_start, memory_end, placed, reserved)
    for region in layout.regions:
        if region.key == uimage_key:
            check_u32(region.address, region.key, "the load and entry fields of the legacy "
                      "uImage BOOT_CMD=bootm boots (use booti above 4 GiB)")
        if region.key == "BITSTREAM":
            check_u32(region.size, region.key, "the size argument of 'fpga load'")
    if dtb_check is not None:
        dtb = next((f"{key} ({path})" for key, path, _ in modules if key == "DEVICE_TREE"),
                   "DEVICE_TREE")
        warnings = check_layout_in_banks(layout, banks, dtb)
        if strict and warnings:
            raise UserError(warnings[0])
        layout = replace(layout, banks=banks, warnings=warnings)
    write_if_changed(out, layout.to_json())


def read_facts(dtb_check: str) -> DtFacts:
    """The input DTB's facts as its check task recorded them."""
    return DtFacts.from_record(json.loads(Path(dtb_check).read_text())["facts"])


def write_edited_dtb(config: Config, dtb: str, layout_path: str, out: str,
                     dtb_check: str) -> None:
    """Apply the /chosen edits offline to the input DTB."""
    layout = Layout.from_json(Path(layout_path).read_bytes())
    edits = plan_chosen_edits(config, layout, read_facts(dtb_check))
    source = f"DEVICE_TREE ({config.device_tree.path})"
    # Overlays first, as the script's `fdt apply` runs before its edits.
    base = apply_overlays(Path(dtb).read_bytes(),
                          [(b.key, config.root_dir / b.path) for b in config.boot.dt_overlays],
                          source)
    write_atomic(out, apply_edits(base, edits, source))


def write_boot_source(config: Config, layout_path: str, out: str,
                      dtb_check: str | None) -> None:
    """The script text; with -s (no checks, `dtb_check` None) U-Boot computes the addresses."""
    extra = config.boot.append_extra_cmds
    if extra is not None:
        try:
            check_file(config.root_dir / extra.path, Role.TEXT, extra.key)
        except UserError as exc:
            raise UserError(exc.message, extra.where) from exc
    if config.boot.calc or dtb_check is None:
        text = render_calc_boot_source(config)
    else:
        layout = Layout.from_json(Path(layout_path).read_bytes())
        edits = plan_chosen_edits(config, layout, read_facts(dtb_check))
        text = render_boot_source(config, layout, edits)
    write_atomic(out, text.encode())


def write_xen_uimage(xen: str, layout_path: str, key: str, epoch: int, out: str,
                     kernel_checks: tuple[str, ...] = ()) -> None:
    """Xen (or LINUX) as `mkimage -A ARCH -T kernel -C none -a ADDR -e ADDR` at its slot.

    ARCH is the one Xen's check found (`kernel_checks[0]`), else what the other kernels' checks
    say (`filetype.choose_arch`): an arm32 U-Boot's bootm refuses an image marked arm64.
    """
    address = Layout.from_json(Path(layout_path).read_bytes()).region(key).address
    arches = [json.loads(Path(check).read_text()).get("arch") for check in kernel_checks]
    arch = choose_arch(arches[0] if arches else None, arches[1:])
    image = LegacyImage(Path(xen).read_bytes(), address, address, epoch, arch=arch)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, build_legacy_image(image))


def write_boot_scr(source: str, layout_path: str, epoch: int, out: str) -> None:
    layout = Layout.from_json(Path(layout_path).read_bytes())
    image = ScriptImage(Path(source).read_bytes(), layout.script_slot, epoch)
    write_atomic(out, build_script_image(image))


def write_fit(config: Config, layout_path: str, dtb: str, source: str, epoch: int,
              out: str) -> None:
    """Build the FIT from the binaries, the edited DTB and the script; sign it if asked."""
    settings = config.fit
    if settings is None:
        raise UserError("internal: write_fit without FIT settings")
    layout = Layout.from_json(Path(layout_path).read_bytes())
    fit = plan_fit(config, layout, lambda path: (config.root_dir / path).read_bytes(),
                   Path(dtb).read_bytes(), Path(source).read_bytes(), epoch, settings)
    blob = build_fit(fit)
    if settings.key_dir is None:
        check_fit_fits(layout, len(blob), settings.name)
        write_atomic(out, blob)
        return
    with replacing(out, suffix=".unsigned") as (handle, unsigned):
        handle.write(blob)
        handle.close()  # mkimage signs the file in place
        sign_fit(unsigned, settings.key_dir, settings.u_boot_dtb, epoch, settings.where,
                 name=Path(out).name)
        check_fit_fits(layout, unsigned.stat().st_size, settings.name)


def fit_task(config: Config, layout: str, dtb_out: str, source_out: str, fit_out: str,
             epoch: int) -> TaskDict:
    """ib_fit: every binary, the edited DTB and the script in one FIT (-f, FIT)."""
    settings: FitSettings | None = config.fit
    keys = [str(p) for p in settings.signing_inputs()] if settings else []
    return {
        "basename": "ib_fit",
        "doc": "pack every binary, the edited DTB and the script into one FIT image",
        "actions": [(run_step, [write_fit, config, layout, dtb_out, source_out, epoch, fit_out])],
        "file_dep": [*(str(config.root_dir / b.path) for b in config.binaries()),
                     dtb_out, source_out, layout, *keys],
        "targets": [fit_out],
        "uptodate": task_uptodate({
            "epoch": epoch,
            "key": [_relative(settings.key_dir, config.root_dir), settings.key_hint]
            if settings else None,
            "u_boot_dtb": _relative(settings.u_boot_dtb, config.root_dir) if settings else None,
        }),
        "clean": True,
    }


# ---- what each task reads from the config ------------------------------------------------------

def _role(config: Config, binary: Binary) -> Role:
    if binary.key == "DEVICE_TREE" or binary.key.startswith(("DOMU_PASSTHROUGH_DTB",
                                                             "DT_OVERLAY")):
        return Role.DTB
    if binary.key == "XEN_POLICY":
        return Role.POLICY
    if binary.key == "BITSTREAM":
        return Role.BITSTREAM
    if "RAMDISK" in binary.key:
        return Role.RAMDISK
    return Role.EXECUTABLE


def _edit_inputs(config: Config) -> dict[str, Any]:
    """Every config value that the /chosen edits read (addresses and sizes come from layout)."""
    return {
        "xen_cmd": config.xen_cmd,
        "dom0_cmd": config.dom0_cmd,
        "linux_cmd": config.boot.linux_cmd,
        "modules": [b.key for b in config.binaries()],
        "domus": [[d.index, d.mem_mib, d.vcpus, d.cmd] for d in config.domus if d.boots_with_xen],
        **domain_edit_inputs(config),
    }


def _boot_inputs(config: Config) -> str:
    """The boot options as the script reads them: without the keys' places (config file and
    line), so moving a line or the config file reruns nothing."""
    def unplaced(value: Any) -> Any:
        if isinstance(value, Binary):
            return replace(value, where="")
        if isinstance(value, tuple):
            return tuple(unplaced(v) for v in value)
        return value
    boot = config.boot
    return repr(replace(boot, **{f.name: unplaced(getattr(boot, f.name)) for f in fields(boot)}))


def _relative(path: Path | None, root: Path) -> str | None:
    """`path` as the user named it, relative to the -d directory (the cache key needs no
    absolute path)."""
    if path is None:
        return None
    return os.path.relpath(path, root)


def _dt_paths(config: Config) -> tuple[str, ...]:
    """Node paths whose existence the DEVICE_TREE check records (DOMU_PASSTHROUGH_PATHS)."""
    return tuple(sorted({p for d in config.domus for p in d.props.passthrough_paths}))


def _check_name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", key)


def boot_tasks(config: Config, epoch: int = DEFAULT_EPOCH) -> Iterator[TaskDict]:
    """Yield the task dicts of the boot-file graph for `config`."""
    work = work_dir(config)
    root = config.root_dir
    calc = config.boot.calc
    checks: dict[str, str] = {}
    for binary in [] if calc else config.binaries():
        target = str(work / "check" / f"{_check_name(binary.key)}.json")
        checks[binary.key] = target
        role = _role(config, binary)
        dt_paths = _dt_paths(config) if binary is config.device_tree else ()
        boot_cmd = config.boot.boot_cmd if binary is config.xen else None
        yield {
            "basename": "ib_check",
            "name": binary.key,
            "doc": f"check {binary.key} is {role.value} and record its size",
            "actions": [(run_step, [check_binary, binary.key, role.value,
                                    str(root / binary.path), binary.where, target, dt_paths,
                                    boot_cmd])],
            "file_dep": [str(root / binary.path)],
            "targets": [target],
            "uptodate": task_uptodate({"role": role.value, "dt_paths": list(dt_paths),
                                       "record": CHECK_RECORD_VERSION,
                                       **({"boot_cmd": boot_cmd} if boot_cmd else {})}),
            "clean": True,
        }

    layout = str(work / "layout.json")
    modules = [] if calc else [(b.key, b.path, checks[b.key]) for b in config.binaries()]
    bootm = config.boot.boot_cmd == "bootm"
    uimage_key = config.xen.key if bootm else None
    yield {
        "basename": "ib_layout",
        "doc": "plan the load address of every binary" if not calc else
               "place the boot script (-s: U-Boot places the binaries)",
        "actions": [(run_step, [write_layout, config.memory_start, config.memory_end,
                                modules, checks.get("DEVICE_TREE"), layout,
                                uimage_key, config.strict])],
        "file_dep": list(checks.values()),
        "targets": [layout],
        "uptodate": task_uptodate({"memory": [config.memory_start, config.memory_end],
                                   "modules": [m[:2] for m in modules],
                                   "uimage": uimage_key, "strict": config.strict}),
        "clean": True,
    }

    source_out = str(config.output_dir / config.uboot_source)
    scr_out = str(config.output_dir / (config.fit.name if config.fit else config.uboot_script))
    dtb_out = str(config.output_dir / config.fdtedit)
    overlays = [str(root / b.path) for b in config.boot.dt_overlays]
    dtb_check = checks.get("DEVICE_TREE")  # None with -s
    if dtb_check is not None:
        yield {
            "basename": "ib_dtb",
            "doc": "write the DTB with the overlays and Xen's /chosen edits applied",
            "actions": [(run_step, [write_edited_dtb, config,
                                    str(root / config.device_tree.path), layout, dtb_out,
                                    dtb_check])],
            "file_dep": [str(root / config.device_tree.path), *overlays, layout, dtb_check],
            "targets": [dtb_out],
            "uptodate": task_uptodate({**_edit_inputs(config),
                                       "overlays": [b.path for b in config.boot.dt_overlays]}),
            "clean": True,
        }
    extra = config.boot.append_extra_cmds
    yield {
        "basename": "ib_boot_source",
        "doc": "write the U-Boot script text",
        "actions": [(run_step, [write_boot_source, config, layout, source_out, dtb_check])],
        "file_dep": [layout, *([dtb_check] if dtb_check else []),
                     *([str(root / extra.path)] if extra else [])],
        "targets": [source_out],
        "uptodate": task_uptodate({
            **_edit_inputs(config),
            "load_cmd": config.load_cmd,
            "paths": [b.path for b in config.binaries()],
            "preedited_dtb": config.preedited_dtb,
            "fdtedit": config.fdtedit,
            "fit": config.fit.name if config.fit else None,
            "boot": _boot_inputs(config),
        }),
        "clean": True,
    }
    if config.fit:
        yield fit_task(config, layout, dtb_out, source_out, scr_out, epoch)
        return
    yield {
        "basename": "ib_boot_scr",
        "doc": "wrap the script as a U-Boot script image (boot.scr)",
        "actions": [(run_step, [write_boot_scr, source_out, layout, epoch, scr_out])],
        "file_dep": [source_out, layout],
        "targets": [scr_out],
        "uptodate": task_uptodate({"epoch": epoch}),
        "clean": True,
    }
    if bootm:
        uimage_out = str(config.output_dir / xen_uimage_name(config))
        xen = str(root / config.xen.path)
        # Xen's check first, then the other kernels' (they decide when Xen's content cannot).
        kernel_checks = (checks[config.xen.key], *(
            checks[b.key] for b in config.binaries()
            if b.key != config.xen.key and _role(config, b) is Role.EXECUTABLE))
        yield {
            "basename": "ib_xen_uimage",
            "doc": f"wrap {config.xen.key} as a legacy kernel uImage for bootm",
            "actions": [(run_step, [write_xen_uimage, xen, layout, config.xen.key, epoch,
                                    uimage_out, kernel_checks])],
            "file_dep": [xen, layout, *kernel_checks],
            "targets": [uimage_out],
            "uptodate": task_uptodate({"epoch": epoch, "key": config.xen.key}),
            "clean": True,
        }
