"""`ibtasks disk-image`: the partitioned disk image, as the original `disk_image` script."""

from __future__ import annotations

import argparse
import io
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ibtasks.cli.arguments import config_from_args, print_warnings
from ibtasks.cli.cache_flags import cache_from_args
from ibtasks.cli.folders import check_writable
from ibtasks.cli.guarded import run_guarded
from ibtasks.cli.uboot_script_gen import print_layout_warnings
from ibtasks.errors import UserError, printable

if TYPE_CHECKING:
    from ibtasks.tasks.ownership import OutputGuard


def parallel_flags(jobs: int | None) -> list[str]:
    """doit's flags to run up to `jobs` tasks at once (default: the CPU count) in forked
    processes, which inherit the task list, so nothing of ours is pickled but the results (doit's
    thread runner would swap sys.stdout/stderr from several threads at once). Serial for one."""
    count = jobs if jobs is not None else (os.cpu_count() or 1)
    return ["-n", str(count), "-P", "process"] if count > 1 else []


def disk_image(args: argparse.Namespace, guard: OutputGuard, stamp: str | None = None) -> int:
    from dataclasses import replace

    from ibtasks.cli.json_result import (
        build_result,
        check_json_flags,
        describe_partitions,
        render_result,
    )
    from ibtasks.cli.progress import DiskProgress
    from ibtasks.config.build import check_strict
    from ibtasks.config.model import Options
    from ibtasks.plan.disk_contents import check_disk_config
    from ibtasks.plan.outputs import boot_outputs, check_output_clashes, inputs, outputs
    from ibtasks.plan.outputs import disk_outputs as disk_clash_outputs
    from ibtasks.tasks.build_dirs import anchored, anchored_path, source_date_epoch, work_dir
    from ibtasks.tasks.chain import plan_boot_script, script_flags, write_generated
    from ibtasks.tasks.disk import DiskOptions, all_tasks, disk_outputs
    from ibtasks.tasks.run_log import RunLog
    from ibtasks.tasks.runner import run_graph

    text_to_stderr = check_json_flags(args.json, args.doit_args)
    config, raw = config_from_args(args, guard)
    if args.jobs is not None and args.jobs < 1:
        raise UserError(f"-j {args.jobs}: give 1 or more jobs")
    if args.boot_size is not None and args.boot_size < 1:
        raise UserError(f"--boot-size {args.boot_size}: the boot partition needs 1 MiB or more")
    if args.slack < 0:
        raise UserError(f"-s {args.slack}: the slack must be 0 MiB or more")
    work = Path(args.work) if args.work else work_dir(config)
    check_writable(work, "-w " if args.work else "")
    image = Path(args.image)
    check_writable(image.parent if str(image.parent) else Path("."), f"-o {args.image}: ")
    options = DiskOptions(image=image, work=work, slack_mib=args.slack,
                          power_of_two=args.power_of_two, cache=cache_from_args(args, raw))
    # The script: the one uboot-script-gen made (again, with its flags), the user's own as it
    # is, or ours with disk-image's flags (see ibtasks.tasks.chain).
    flags = script_flags(args)
    plan = plan_boot_script(config, Path(args.config), flags, Options(
        root_dir=config.root_dir, output_dir=config.output_dir, boot_fs=args.boot_fs,
        partition_table=args.table))
    check_strict(plan.warnings, config.strict)
    print_warnings(plan.warnings)
    quiet = not plan.warnings and not plan.notes  # then a no-op may replay (cli.disk_stamp)
    for note in plan.notes:
        sys.stderr.write(f"ibtasks: note: {printable(note)}\n")
    generated = outputs(plan.config) if plan.config is not None else []
    written = disk_clash_outputs(config, image, work, "-w" if args.work else "the work folder")
    if plan.config is not None:
        written = boot_outputs(plan.config, plan.flags.output_name) + written
    check_output_clashes(written, inputs(config, Path(args.config)))
    try:
        check_disk_config(config)
    except UserError:
        guard.remove_ours([*generated, *disk_outputs(options)])
        raise
    if config.rootfs_archives():
        from ibtasks.formats.rootfs import fallback_note

        fallback = fallback_note()
        if fallback:
            quiet = False
            sys.stderr.write(f"ibtasks: note: {fallback}\n")
    epoch = source_date_epoch(os.environ)
    argv = args.doit_args or ["run"]
    if argv[0] == "run" and not {"-n", "--process"} & set(argv):
        argv = ["run", *parallel_flags(args.jobs), *argv[1:]]
    anchor = config.output_dir
    tasks_config = anchored(config, anchor)
    boot = anchored(plan.config, anchor) if plan.config is not None else None
    copied = [anchored_path(p, anchor) for p in plan.copied]
    tasks_options = replace(options, image=anchored_path(image, anchor),
                            work=anchored_path(work, anchor))
    tasks = list(all_tasks(tasks_config, tasks_options, epoch, boot, copied))
    guarded = [*generated, *disk_outputs(options)]
    if args.work:
        # -w names a folder of the user's (`-w .` is common): the partition images and their
        # records there are kept from their files like any output.
        guarded += [anchor / target for task in tasks
                    if task.get("basename") in ("ib_partition", "ib_bmap")
                    for target in task["targets"]]
    # Progress and the summary on stdout, unless it carries JSON (cli.progress).
    progress = DiskProgress(sys.stderr if text_to_stderr else sys.stdout, anchor)
    run_log = RunLog(progress) if argv[0] == "run" else None
    try:
        code = run_guarded(guard, guarded, argv,
                           lambda: run_graph(lambda: tasks, work_dir(config), argv, args.verbose,
                                             cwd=anchor, run_log=run_log))
    finally:
        progress.close()
    if argv[0] == "run" and code == 0:
        if plan.config is not None:
            write_generated(plan.config, generated, plan.flags, plan.by, guard.recorded_sha256)
        layout = None
        if (work_dir(config) / "layout.json").exists():  # none when the script is the user's
            layout = print_layout_warnings(work_dir(config))
            quiet &= not layout.warnings
        # Outputs are hashed (O(disk)) for --json only; the summary needs the table alone.
        result = (build_result("disk-image", [*generated, *disk_outputs(options)], layout,
                               run_log or RunLog(), image) if args.json else None)
        disk = result["disk"] if result is not None else describe_partitions(image)
        progress.summary(run_log or RunLog(), disk, image)
        if result is not None:
            sys.stdout.write(render_result(result))
        if stamp is not None and quiet and not config.warnings:
            from ibtasks.cli.disk_stamp import record_disk_run

            # What the replayed no-op prints: the disk's summary with nothing rebuilt.
            replay = io.StringIO()
            DiskProgress(replay, anchor).summary(RunLog(), disk, image, timed=False)
            record_disk_run(stamp, args.config, config.environ_used, tasks, anchor,
                            work_dir(config), replay.getvalue())
    return code
