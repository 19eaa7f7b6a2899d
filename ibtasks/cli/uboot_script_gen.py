"""`ibtasks uboot-script-gen`: boot.source, boot.scr and the edited DTB, as the original script."""

from __future__ import annotations

import argparse
import io
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ibtasks.cli.arguments import config_from_args, print_warnings
from ibtasks.cli.cache_flags import cache_from_args
from ibtasks.cli.fast_path import write_stamp
from ibtasks.cli.folders import check_writable
from ibtasks.cli.guarded import run_guarded

if TYPE_CHECKING:
    from ibtasks.config.model import Config
    from ibtasks.config.reader import Binary
    from ibtasks.plan.layout import Layout
    from ibtasks.tasks.ownership import OutputGuard


def uboot_script_gen(args: argparse.Namespace, stamp: str | None, guard: OutputGuard) -> int:
    from ibtasks.cli.json_result import build_result, check_json_flags, render_result
    from ibtasks.plan.boot_script import render_final_message
    from ibtasks.plan.memory_map import render_memory_map
    from ibtasks.plan.outputs import boot_outputs, check_output_clashes, inputs, outputs
    from ibtasks.tasks.boot import boot_tasks
    from ibtasks.tasks.build_dirs import anchored, source_date_epoch, work_dir
    from ibtasks.tasks.chain import BY_SCRIPT_GEN, script_flags, write_generated
    from ibtasks.tasks.run_log import RunLog
    from ibtasks.tasks.runner import run_graph

    text_to_stderr = check_json_flags(args.json, args.doit_args)
    if args.memory_map_svg:  # before anything is built: a failed build leaves no output
        svg = Path(args.memory_map_svg)
        check_writable(svg.parent if str(svg.parent) else Path("."), f"--memory-map-svg {svg}: ")
    config, raw = config_from_args(args, guard)
    cache = cache_from_args(args, raw)
    check_output_clashes(boot_outputs(config, args.output_name),
                         inputs(config, Path(args.config)))
    epoch = source_date_epoch(os.environ)
    argv = args.doit_args or ["run"]
    work = work_dir(config)
    # doit runs in the output directory, on paths relative to it: its record stays valid when
    # the tree is copied elsewhere.
    tasks_config = anchored(config, config.output_dir)
    run_log = RunLog() if args.json else None
    code = run_guarded(guard, outputs(config), argv,
                       lambda: run_graph(lambda: boot_tasks(tasks_config, epoch, cache), work, argv,
                                         args.verbose, cwd=config.output_dir, run_log=run_log))
    if argv[0] != "run" or code != 0:
        return code
    write_generated(config, outputs(config), script_flags(args), BY_SCRIPT_GEN,
                    guard.recorded_sha256)
    layout = print_layout_warnings(work)
    out = io.StringIO()
    reserved = read_reserved(work)
    if args.memory_map:
        out.write(render_memory_map(layout, reserved, config.uboot_script))
    if args.memory_map_svg:
        write_memory_map_svg(Path(args.memory_map_svg), layout, reserved, config.uboot_script)
    for domu in config.domus:
        if domu.rootfs is not None and not domu.noboot:
            out.write(f"Skipping DomU[{domu.index}]: cannot handle non-ramdisk rootfs "
                      "for dom0less VMs.\n")
    out.write(render_final_message(config, layout))
    # With --json (or doit's --reporter after --) stdout carries JSON only.
    (sys.stderr if text_to_stderr else sys.stdout).write(out.getvalue())
    if run_log is not None:
        sys.stdout.write(render_result(build_result("uboot-script-gen", outputs(config),
                                                    layout, run_log)))
        return 0
    if stamp is not None and not config.warnings and not layout.warnings:
        checks = (work / "check").iterdir() if (work / "check").is_dir() else iter(())
        files = [args.config, *(str(p) for p in outputs(config)), str(work / "layout.json"),
                 str(work / "doit-deps.json"), *(str(p) for p in checks),
                 *(str(config.root_dir / b.path) for b in read_inputs(config)),
                 *(str(p) for p in (config.fit.signing_inputs() if config.fit else []))]
        names = [*config.environ_used, "SOURCE_DATE_EPOCH"]
        write_stamp(stamp, files, {n: os.environ.get(n) for n in names}, out.getvalue())
    return 0


def read_inputs(config: Config) -> list[Binary]:
    """The inputs a build reads: with -s only APPEND_EXTRA_CMDS, the binaries need not exist."""
    extra = [config.boot.append_extra_cmds] if config.boot.append_extra_cmds else []
    return extra + ([] if config.boot.calc else config.binaries())


def read_reserved(work: Path) -> list[tuple[int, int]]:
    """The DTB's reserved regions (address, size in bytes) its check recorded; none with -s."""
    import json

    record = work / "check" / "DEVICE_TREE.json"
    if not record.is_file():
        return []
    return [(int(a), int(n)) for a, n in json.loads(record.read_text()).get("reserved", [])]


def write_memory_map_svg(path: Path, layout: Layout, reserved: list[tuple[int, int]],
                         script_name: str) -> None:
    """`--memory-map-svg FILE`: the picture, written atomically (fsutil.write_atomic); a file
    that cannot be written is a UserError naming the flag."""
    from ibtasks.errors import UserError
    from ibtasks.fsutil import write_atomic
    from ibtasks.plan.memory_map import render_memory_map_svg

    try:
        write_atomic(path, render_memory_map_svg(layout, reserved, script_name).encode())
    except UserError as exc:
        raise UserError(exc.message, "--memory-map-svg") from exc


def print_layout_warnings(work: Path) -> Layout:
    """The layout a build planned, after printing its warnings (loads against the DTB's /memory
    banks, ibtasks.plan.memory_banks)."""
    from ibtasks.plan.layout import Layout

    layout = Layout.from_json((work / "layout.json").read_bytes())
    print_warnings(layout.warnings)
    return layout
