"""The boot tasks' actions: module-level functions with explicit arguments, each planning from
the frozen input its task keys on (`task_inputs`) and writing its one target atomically.

Values pass between tasks as files: a check record per input, `layout.json`; those are written
only when their content changes, so the tasks after them stay up to date.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from ibtasks.config.model import Config
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
from ibtasks.plan.boot_script import render_boot_source
from ibtasks.plan.calc_script import render_calc_boot_source
from ibtasks.plan.chosen import plan_chosen_edits
from ibtasks.plan.fit import check_fit_fits, plan_fit
from ibtasks.plan.layout import Layout, Module, plan_layout
from ibtasks.plan.memory_banks import check_layout_in_banks
from ibtasks.tasks.task_inputs import (
    CheckInput,
    FitInput,
    LayoutInput,
    ScriptImageInput,
    UImageInput,
)


def check_binary(checked: CheckInput, path: str, where: str, out: str) -> None:
    """Check one input's type (`checked.role`) and record its sizes in bytes (and a DTB's
    reserved memory and the facts the domain edits need, `dt_facts`) as JSON in `out`; for the
    host kernel, that `checked.boot_cmd` (BOOT_CMD) can start it. Raises `UserError` naming
    the key at `where` (its config line)."""
    key = checked.key
    try:
        info = check_file(Path(path), Role(checked.role), key)
        if checked.boot_cmd is not None:
            with open(path, "rb") as f:
                first = f.read(2)
            check_boot_command(checked.boot_cmd, key, Path(path).name, info.kind, first)
    except UserError as exc:
        raise UserError(exc.message, where) from exc
    record: dict[str, Any] = {"key": key, "kind": info.kind, "size": info.size,
                              "effective_size": info.effective_size, "arch": info.arch}
    if key == "DEVICE_TREE":
        data = Path(path).read_bytes()
        record["reserved"] = read_reserved_regions(data, f"{key} ({path})")
        record["facts"] = read_dt_facts(data, f"{key} ({path})", checked.dt_paths).to_record()
        try:
            check_host_dtb(data, key, Path(path).name)
        except UserError as exc:
            raise UserError(exc.message, where) from exc
    write_if_changed(out, (json.dumps(record, indent=1) + "\n").encode())


def write_layout(planned: LayoutInput, checks: tuple[str, ...], dtb_check: str | None,
                 out: str) -> None:
    """Plan the memory layout from the checks' sizes (`checks[i]` is the record of
    `planned.modules[i]`); write it to `out` if it changed.

    `planned.uimage_key` is loaded wrapped in a uImage (bootm): its slot holds the 64-byte
    header too, and its address must fit the header's 32-bit load field. With the DTB's check,
    every load must lie in its /memory banks (`memory_banks`); the banks and warnings go into
    the layout. With `planned.strict` (--strict, STRICT=y) the first warning is raised as a
    UserError instead. Raises `UserError` when the modules do not fit (`plan_layout`).
    """
    placed = []
    for (key, path), check in zip(planned.modules, checks, strict=True):
        record = json.loads(Path(check).read_text())
        size = record["effective_size"]
        if key == planned.uimage_key:
            size = max(size, record["size"] + HEADER.size)
        placed.append(Module(key, path, size))
    reserved: list[tuple[int, int]] = []
    banks: tuple[tuple[int, int], ...] = ()
    if dtb_check is not None:
        dtb_record = json.loads(Path(dtb_check).read_text())
        reserved = [(int(a), int(n)) for a, n in dtb_record.get("reserved", [])]
        banks = DtFacts.from_record(dtb_record["facts"]).memory
    layout = plan_layout(planned.memory_start, planned.memory_end, placed, reserved)
    for region in layout.regions:
        if region.key == planned.uimage_key:
            check_u32(region.address, region.key, "the load and entry fields of the legacy "
                      "uImage BOOT_CMD=bootm boots (use booti above 4 GiB)")
        if region.key == "BITSTREAM":
            check_u32(region.size, region.key, "the size argument of 'fpga load'")
    if dtb_check is not None:
        dtb = next((f"{key} ({path})" for key, path in planned.modules if key == "DEVICE_TREE"),
                   "DEVICE_TREE")
        warnings = check_layout_in_banks(layout, banks, dtb)
        if planned.strict and warnings:
            raise UserError(warnings[0])
        layout = replace(layout, banks=banks, warnings=warnings)
    write_if_changed(out, layout.to_json())


def layout_values(layout_path: str) -> dict[str, int]:
    """ib_layout's saved values, for doit's `getargs`: the load address (bytes) of each
    module by its key (`XEN`, `DOMU_KERNEL[0]`, ...) and of the boot script (`UBOOT_SCRIPT`).
    doit keeps them in its record, so an up-to-date ib_layout still provides them."""
    layout = json.loads(Path(layout_path).read_text())
    values = {region["key"]: int(region["address"]) for region in layout["regions"]}
    return {**values, "UBOOT_SCRIPT": int(layout["script_slot"])}


def read_facts(dtb_check: str) -> DtFacts:
    """The input DTB's facts as its check task recorded them."""
    return DtFacts.from_record(json.loads(Path(dtb_check).read_text())["facts"])


def write_edited_dtb(view: Config, dtb: str, layout_path: str, out: str,
                     dtb_check: str) -> None:
    """Apply the overlays and the /chosen edits offline to the input DTB; `view` is
    `task_inputs.dtb_view` of the config."""
    layout = Layout.from_json(Path(layout_path).read_bytes())
    edits = plan_chosen_edits(view, layout, read_facts(dtb_check))
    source = f"DEVICE_TREE ({view.device_tree.path})"
    # Overlays first, as the script's `fdt apply` runs before its edits.
    base = apply_overlays(Path(dtb).read_bytes(),
                          [(b.key, view.root_dir / b.path) for b in view.boot.dt_overlays],
                          source)
    write_atomic(out, apply_edits(base, edits, source))


def write_boot_source(view: Config, layout_path: str, out: str,
                      dtb_check: str | None) -> None:
    """The script text from `view` (`task_inputs.script_view`); with -s (no checks,
    `dtb_check` None) U-Boot computes the addresses. Raises `UserError` when
    APPEND_EXTRA_CMDS is not a text file."""
    extra = view.boot.append_extra_cmds
    if extra is not None:
        try:
            check_file(view.root_dir / extra.path, Role.TEXT, extra.key)
        except UserError as exc:
            raise UserError(exc.message, extra.where) from exc
    if view.boot.calc or dtb_check is None:
        text = render_calc_boot_source(view)
    else:
        layout = Layout.from_json(Path(layout_path).read_bytes())
        edits = plan_chosen_edits(view, layout, read_facts(dtb_check))
        text = render_boot_source(view, layout, edits)
    write_atomic(out, text.encode())


def write_xen_uimage(wrapped: UImageInput, xen: str, layout_path: str, out: str,
                     kernel_checks: tuple[str, ...] = ()) -> None:
    """Xen (or LINUX) as `mkimage -A ARCH -T kernel -C none -a ADDR -e ADDR` at its slot.

    ARCH is the one Xen's check found (`kernel_checks[0]`), else what the other kernels' checks
    say (`filetype.choose_arch`): an arm32 U-Boot's bootm refuses an image marked arm64.
    """
    address = Layout.from_json(Path(layout_path).read_bytes()).region(wrapped.key).address
    arches = [json.loads(Path(check).read_text()).get("arch") for check in kernel_checks]
    arch = choose_arch(arches[0] if arches else None, arches[1:])
    image = LegacyImage(Path(xen).read_bytes(), address, address, wrapped.epoch, arch=arch)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, build_legacy_image(image))


def write_boot_scr(stamped: ScriptImageInput, source: str, layout_path: str, out: str) -> None:
    """boot.scr: the script `source` as a legacy script image at the layout's script slot, as
    `mkimage -A arm64 -T script -C none` writes it, stamped `stamped.epoch`."""
    layout = Layout.from_json(Path(layout_path).read_bytes())
    image = ScriptImage(Path(source).read_bytes(), layout.script_slot, stamped.epoch)
    write_atomic(out, build_script_image(image))


def write_fit(packed: FitInput, layout_path: str, dtb: str, source: str, out: str) -> None:
    """Build the FIT from the binaries, the edited DTB and the script; sign it if asked
    (`mkimage -F -r`). Raises `UserError` when it does not fit below MEMORY_END."""
    view = packed.config
    settings = view.fit
    if settings is None:
        raise UserError("internal: write_fit without FIT settings")
    layout = Layout.from_json(Path(layout_path).read_bytes())
    fit = plan_fit(view, layout, lambda path: (view.root_dir / path).read_bytes(),
                   Path(dtb).read_bytes(), Path(source).read_bytes(), packed.epoch, settings)
    blob = build_fit(fit)
    if settings.key_dir is None:
        check_fit_fits(layout, len(blob), settings.name)
        write_atomic(out, blob)
        return
    with replacing(out, suffix=".unsigned") as (handle, unsigned):
        handle.write(blob)
        handle.close()  # mkimage signs the file in place
        sign_fit(unsigned, settings.key_dir, settings.u_boot_dtb, packed.epoch, settings.where,
                 name=Path(out).name)
        check_fit_fits(layout, unsigned.stat().st_size, settings.name)
