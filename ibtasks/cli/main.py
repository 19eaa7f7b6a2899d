"""The command line: drop-in flags of ImageBuilder's scripts, running our doit graph.

    ibtasks uboot-script-gen -c CONFIG -d DIR -t LOADCMD [-o NAME] [-- DOIT-ARGS...]
    ibtasks disk-image -c CONFIG -d DIR -t LOADCMD -o disk.img [-w WORKDIR] [-s SLACK] [-a]
                       [--table gpt|dos]

User errors print one line (`ibtasks: error: ...`) and exit non-zero; anything else is a bug.
A build holds its directory's lock (ibtasks.tasks.build_lock) from before it reads the config until
its cleanup is done, and touches only files it wrote (ibtasks.tasks.ownership).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from ibtasks import __version__
from ibtasks.cli.fast_path import remove_stamp, stamp_for, write_stamp
from ibtasks.errors import UserError, error_line, printable, warning_line

if TYPE_CHECKING:
    from ibtasks.config.model import Config
    from ibtasks.config.reader import Binary
    from ibtasks.plan.layout import Layout
    from ibtasks.tasks.ownership import OutputGuard

# Imports of doit and of our graph modules cost ~70 ms; they happen only past the no-op fast
# path (see ibtasks.cli.fast_path), inside the functions that need them.

EXIT_USER_ERROR = 1


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one UserError line, not usage + error."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message} (see '{self.prog} -h')")


def _add_inputs(parser: argparse.ArgumentParser) -> None:
    """The original scripts' -c, -d and -t."""
    parser.add_argument("-c", dest="config", required=True, metavar="CONFIG",
                        help="ImageBuilder config file (bash syntax, or YAML if *.yaml/*.yml)")
    parser.add_argument("-d", dest="root", required=True, metavar="DIR",
                        help="directory the config's paths are relative to; outputs go here")
    parser.add_argument("-t", dest="load_cmd", metavar="LOADCMD",
                        help="U-Boot load command: tftp, sd, scsi, usb, virtio or any command "
                             "(wins over LOAD_CMD)")


def _add_common_tail(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--strict", action="store_true",
                        help="treat every warning as an error (also STRICT=y in the config)")
    parser.add_argument("--preedited-dtb", action="store_true",
                        help="load the edited DTB instead of running fdt commands in U-Boot")
    parser.add_argument("-v", "--verbose", action="store_true", help="show each task run")
    parser.add_argument("doit_args", nargs="*", metavar="DOIT-ARGS",
                        help="after --: a doit command on the same graph (list, info TASK, ...)")


def _add_fit_flags(parser: argparse.ArgumentParser) -> None:
    """Upstream's FIT flags (see ibtasks.plan.fit)."""
    parser.add_argument("-f", dest="fit", action="store_true",
                        help="build one FIT image (NAME.fit) holding every binary and the script")
    parser.add_argument("-k", dest="fit_key_dir", metavar="KEY_DIR/HINT",
                        help="sign the FIT with KEY_DIR/HINT.key (wins over FIT_ENC_KEY_DIR)")
    parser.add_argument("-u", dest="fit_u_boot_dtb", metavar="U-BOOT_DTB",
                        help="add the public key to this U-Boot DTB (wins over FIT_ENC_UB_DTB)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ibtasks", description="Xen ImageBuilder as a doit task graph.")
    parser.add_argument("--version", action="version", version=f"ibtasks {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    script = commands.add_parser("uboot-script-gen",
                                 help="boot.source, boot.scr and the edited DTB for a config")
    _add_inputs(script)
    script.add_argument("-o", dest="output_name", metavar="NAME",
                        help="write NAME.source, NAME.scr and NAME.dtb")
    script.add_argument("--output-dir", metavar="DIR",
                        help="write outputs here instead of the -d directory")
    script.add_argument("--memory-map", action="store_true",
                        help="print the memory layout as a table after building")
    script.add_argument("-p", dest="prepend_path", default="", metavar="PREPEND_PATH",
                        help="prefix every path the script loads (and the script's own path)")
    script.add_argument("-s", dest="calc", action="store_true",
                        help="let U-Boot compute addresses at boot from each file's size; "
                             "the files need not exist now (no edited DTB)")
    _add_fit_flags(script)
    _add_common_tail(script)

    disk = commands.add_parser("disk-image", help="a partitioned disk.img, as an ordinary user")
    _add_inputs(disk)
    disk.add_argument("-o", dest="image", required=True, metavar="IMAGE",
                      help="the disk image to write")
    disk.add_argument("-w", dest="work", metavar="WORKDIR",
                      help="keep partition images here (default: DIR/.ibtasks)")
    disk.add_argument("-s", dest="slack", type=int, default=128, metavar="MIB",
                      help="free space in each rootfs partition (default 128)")
    disk.add_argument("--boot-fs", choices=("fat", "ext4"),
                      help="boot partition filesystem (default fat; wins over BOOT_FS)")
    disk.add_argument("--table", choices=("gpt", "dos"),
                      help="partition table (default gpt; wins over PARTITION_TABLE)")
    disk.add_argument("-a", dest="power_of_two", action="store_true",
                      help="round the image size up to a power of two MiB (petalinux-boot --qemu)")
    _add_common_tail(disk)
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    """`parser.parse_args`, but an argument the subcommand does not take is reported with that
    subcommand's help (`ibtasks uboot-script-gen -h`), saying which subcommand takes it."""
    args, extra = parser.parse_known_args(argv)
    if not extra:
        return args
    command = args.command
    others = [name for name in ("uboot-script-gen", "disk-image") if name != command
              and _takes_option(parser, name, extra[0])]
    where = f"; it is an option of ibtasks {others[0]}" if others else ""
    raise UserError(f"{command}: unrecognized arguments: {' '.join(extra)}{where} "
                    f"(see 'ibtasks {command} -h')")


def _takes_option(parser: argparse.ArgumentParser, command: str, word: str) -> bool:
    """Whether subcommand `command` of `parser` has the option `word` (`--table`, `-a`)."""
    for action in parser._subparsers._group_actions if parser._subparsers else ():
        sub = getattr(action, "choices", {}).get(command)
        if sub is not None:
            return word.split("=", 1)[0] in sub._option_string_actions
    return False


def config_from_args(args: argparse.Namespace, guard: OutputGuard | None = None) -> Config:
    """The validated config of a command line; when it does not validate, `guard` removes the
    outputs it names that ibtasks wrote earlier (never a user's file). Warnings are printed as
    soon as they are known (before an error they may explain); with --strict or STRICT=y the
    first one is the error."""
    from ibtasks.config.build import (
        build_config,
        check_strict,
        is_strict,
        output_paths,
    )
    from ibtasks.config.load_command import resolve_load_cmd
    from ibtasks.config.loader import read_config_file
    from ibtasks.config.model import Options

    root = _input_dir(args.root)
    output_dir = Path(args.output_dir) if getattr(args, "output_dir", None) else None
    if args.load_cmd is not None and not args.load_cmd.strip():
        raise UserError("-t: the value is empty; give a load command (tftp, sd, scsi, usb, "
                        "virtio or a U-Boot command), or leave -t out to use LOAD_CMD")
    options = Options(
        root_dir=root,
        load_cmd=resolve_load_cmd(args.load_cmd) if args.load_cmd else None,
        output_name=getattr(args, "output_name", None),
        output_dir=output_dir,
        preedited_dtb=args.preedited_dtb,
        boot_fs=getattr(args, "boot_fs", None),
        prepend_path=getattr(args, "prepend_path", ""),
        calc=getattr(args, "calc", False),
        partition_table=getattr(args, "table", None),
        fit=getattr(args, "fit", False),
        fit_key_dir=getattr(args, "fit_key_dir", None),
        fit_u_boot_dtb=getattr(args, "fit_u_boot_dtb", None),
        strict=args.strict,
    )
    found: list[str] = []

    def warn(message: str) -> None:
        check_strict([message], options.strict)
        found.append(message)

    try:
        raw = read_config_file(Path(args.config), warn=warn)
    except UserError:
        _print_warnings(found)  # about lines before the error: they may explain it
        raise
    strict = is_strict(raw, options)
    try:
        check_strict(raw.warnings, strict)
        _print_warnings(raw.warnings)
        config = build_config(raw, options)
        check_strict(config.warnings, strict)
    except UserError:
        if guard is not None:
            guard.remove_ours(output_paths(raw, options))
        raise
    _print_warnings(config.warnings[len(raw.warnings):])
    _check_writable(config.output_dir)
    return config


def _print_warnings(warnings: Sequence[str]) -> None:
    for warning in warnings:
        sys.stderr.write(warning_line(warning))


def _check_writable(directory: Path, flag: str = "") -> None:
    """`directory` exists (made if needed) and is writable; errors start with `flag` (`-w `,
    `-o disk.img: `) when a flag named it."""
    if os.path.lexists(directory) and not directory.is_dir():
        raise UserError(f"{flag}{directory}: is not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{flag}cannot create output directory {directory}: {exc.strerror}"
                        ) from exc
    if not os.access(directory, os.W_OK | os.X_OK):
        raise UserError(f"{flag}output directory {directory} is not writable")


def _input_dir(text: str) -> Path:
    """The -d directory, which must exist and be searchable (every input is looked up in it);
    raises UserError naming -d, the path and the OS reason."""
    import stat

    try:
        mode = os.stat(text).st_mode
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise UserError(f"-d {text}: not a directory") from exc
    except OSError as exc:
        raise UserError(f"-d {text}: cannot reach it: {exc.strerror}") from exc
    if not stat.S_ISDIR(mode):
        raise UserError(f"-d {text}: not a directory")
    if not os.access(text, os.X_OK):
        raise UserError(f"-d {text}: cannot look up files in it: {os.strerror(13)}")
    return Path(text)


def _output_dir(args: argparse.Namespace) -> Path:
    """Where outputs and the state folder go: --output-dir, else -d (see config.Options)."""
    root = _input_dir(args.root)
    output_dir = getattr(args, "output_dir", None)
    return Path(output_dir) if output_dir else root


def _make_folder(folder: Path, what: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create {what} {folder}: {exc.strerror}") from exc


def run_locked(args: argparse.Namespace, stamp: str | None) -> int:
    """Run the command holding the lock of its state folder (and of disk-image's -w folder),
    after healing what a killed build left: set-aside files, temporaries (tasks.ownership)."""
    from ibtasks.tasks.build_dirs import WORK_DIR_NAME
    from ibtasks.tasks.build_lock import BuildLock, LockTimeout, hold_locks, lock_timeout
    from ibtasks.tasks.ownership import OutputGuard, remove_stale_temporaries

    out_dir = _output_dir(args)
    state = out_dir / WORK_DIR_NAME
    _check_writable(out_dir)
    _make_folder(state, "the state folder")
    try:
        timeout = lock_timeout(os.environ)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    locks = [BuildLock(str(state / "lock"), str(out_dir), timeout)]
    folders = [state, state / "check", out_dir]
    work = getattr(args, "work", None)
    if work and os.path.realpath(work) != os.path.realpath(state):
        if os.path.lexists(work) and not os.path.isdir(work):
            raise UserError(f"-w {work}: is not a directory")
        _make_folder(Path(work), "the work folder (-w)")
        locks.append(BuildLock(str(Path(work) / ".ibtasks-lock"), work, timeout))
        folders.append(Path(work))
    image = getattr(args, "image", None)
    if image:
        folders.append(Path(image).parent)
    try:
        held = hold_locks(locks)
    except LockTimeout as exc:
        raise UserError(str(exc)) from exc
    except OSError as exc:  # the lock file itself; other OS errors are not about locking
        raise UserError(f"cannot lock {exc.filename or state}: {exc.strerror}") from exc
    with held:
        guard = OutputGuard(state)
        guard.heal()
        remove_stale_temporaries(folders)
        _heal_state_files(state, stamp)
        if args.command == "disk-image":
            return disk_image(args, guard)
        return uboot_script_gen(args, stamp, guard)


def _heal_state_files(state: Path, stamp: str | None) -> None:
    """Set aside the records our tasks pass on (layout.json, check records) and this command's
    no-op stamp when they cannot be read: their tasks then run again (ibtasks.tasks.state_file).
    Then forget the stamp: a build that fails must not be replayed."""
    from ibtasks.tasks.state_file import check_state_file

    check_state_file(state / "layout.json")
    try:
        checks = sorted((state / "check").glob("*.json"))
    except OSError:
        checks = []
    for record in checks:
        check_state_file(record)
    if stamp is not None:
        check_state_file(stamp)
        remove_stamp(stamp)


def run_guarded(guard: OutputGuard, paths: Sequence[Path], argv: Sequence[str],
                run: Any) -> int:
    """Run `run()` (a doit command) for outputs `paths`: with `run`, files ibtasks did not
    write are set aside first; success records the outputs, failure removes them and puts the
    set-aside files back (ibtasks.tasks.ownership)."""
    from ibtasks.tasks.ownership import check_output_paths

    if argv[0] != "run":
        return int(run())
    check_output_paths(paths)
    guard.begin(paths)
    try:
        code = int(run())
    except BaseException:
        guard.abort(paths)
        raise
    if code == 0:
        guard.commit(paths)
    else:
        guard.abort(paths)
    return code


def uboot_script_gen(args: argparse.Namespace, stamp: str | None, guard: OutputGuard) -> int:
    from ibtasks.plan.boot_script import render_final_message
    from ibtasks.plan.layout import render_memory_map
    from ibtasks.plan.outputs import boot_outputs, check_output_clashes, inputs, outputs
    from ibtasks.tasks.boot import boot_tasks
    from ibtasks.tasks.build_dirs import anchored, source_date_epoch, work_dir
    from ibtasks.tasks.chain import BY_SCRIPT_GEN, script_flags, write_generated
    from ibtasks.tasks.runner import run_graph

    config = config_from_args(args, guard)
    check_output_clashes(boot_outputs(config, args.output_name),
                         inputs(config, Path(args.config)))
    epoch = source_date_epoch(os.environ)
    argv = args.doit_args or ["run"]
    work = work_dir(config)
    # doit runs in the output directory, on paths relative to it: its record stays valid when
    # the tree is copied elsewhere.
    tasks_config = anchored(config, config.output_dir)
    code = run_guarded(guard, outputs(config), argv,
                       lambda: run_graph(lambda: boot_tasks(tasks_config, epoch), work, argv,
                                         args.verbose, cwd=config.output_dir))
    if argv[0] != "run" or code != 0:
        return code
    write_generated(config, outputs(config), script_flags(args), BY_SCRIPT_GEN,
                    guard.recorded_sha256)
    layout = _print_layout_warnings(work)
    out = io.StringIO()
    if args.memory_map:
        out.write(render_memory_map(layout))
    for domu in config.domus:
        if domu.rootfs is not None and not domu.noboot:
            out.write(f"Skipping DomU[{domu.index}]: cannot handle non-ramdisk rootfs "
                      "for dom0less VMs.\n")
    out.write(render_final_message(config, layout))
    sys.stdout.write(out.getvalue())
    if stamp is not None and not config.warnings and not layout.warnings:
        checks = (work / "check").iterdir() if (work / "check").is_dir() else iter(())
        files = [args.config, *(str(p) for p in outputs(config)), str(work / "layout.json"),
                 str(work / "doit-deps.json"), *(str(p) for p in checks),
                 *(str(config.root_dir / b.path) for b in _read_inputs(config)),
                 *(str(p) for p in (config.fit.signing_inputs() if config.fit else []))]
        names = [*config.environ_used, "SOURCE_DATE_EPOCH"]
        write_stamp(stamp, files, {n: os.environ.get(n) for n in names}, out.getvalue())
    return 0


def _read_inputs(config: Config) -> list[Binary]:
    """The inputs a build reads: with -s only APPEND_EXTRA_CMDS, the binaries need not exist."""
    extra = [config.boot.append_extra_cmds] if config.boot.append_extra_cmds else []
    return extra + ([] if config.boot.calc else config.binaries())


def _print_layout_warnings(work: Path) -> Layout:
    """The layout a build planned, after printing its warnings (loads against the DTB's /memory
    banks, ibtasks.plan.memory_banks)."""
    from ibtasks.plan.layout import Layout

    layout = Layout.from_json((work / "layout.json").read_bytes())
    _print_warnings(layout.warnings)
    return layout


def disk_image(args: argparse.Namespace, guard: OutputGuard) -> int:
    from dataclasses import replace

    from ibtasks.config.build import check_strict
    from ibtasks.config.model import Options
    from ibtasks.plan.disk_contents import check_disk_config
    from ibtasks.plan.outputs import boot_outputs, check_output_clashes, inputs, outputs
    from ibtasks.plan.outputs import disk_outputs as disk_clash_outputs
    from ibtasks.tasks.build_dirs import anchored, anchored_path, source_date_epoch, work_dir
    from ibtasks.tasks.chain import plan_boot_script, script_flags, write_generated
    from ibtasks.tasks.disk import DiskOptions, all_tasks, disk_outputs
    from ibtasks.tasks.runner import run_graph

    config = config_from_args(args, guard)
    if args.slack < 0:
        raise UserError(f"-s {args.slack}: the slack must be 0 MiB or more")
    work = Path(args.work) if args.work else work_dir(config)
    _check_writable(work, "-w " if args.work else "")
    image = Path(args.image)
    _check_writable(image.parent if str(image.parent) else Path("."), f"-o {args.image}: ")
    options = DiskOptions(image=image, work=work, slack_mib=args.slack,
                          power_of_two=args.power_of_two)
    # The script: the one uboot-script-gen made (again, with its flags), the user's own as it
    # is, or ours with disk-image's flags (see ibtasks.tasks.chain).
    flags = script_flags(args)
    plan = plan_boot_script(config, Path(args.config), flags, Options(
        root_dir=config.root_dir, output_dir=config.output_dir, boot_fs=args.boot_fs,
        partition_table=args.table))
    check_strict(plan.warnings, config.strict)
    _print_warnings(plan.warnings)
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
    epoch = source_date_epoch(os.environ)
    argv = args.doit_args or ["run"]
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
        guarded += [anchor / target for task in tasks if task.get("basename") == "ib_partition"
                    for target in task["targets"]]
    code = run_guarded(guard, guarded, argv,
                       lambda: run_graph(lambda: tasks, work_dir(config), argv, args.verbose,
                                         cwd=anchor))
    if argv[0] == "run" and code == 0:
        if plan.config is not None:
            write_generated(plan.config, generated, plan.flags, plan.by, guard.recorded_sha256)
        if (work_dir(config) / "layout.json").exists():  # none when the script is the user's
            _print_layout_warnings(work_dir(config))
    return code


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parse_args(build_parser(), argv)
        stamp = None
        if args.command == "uboot-script-gen" and not args.doit_args:
            # The no-op fast path (entry.main) found this command's stamp stale or missing.
            stamp = stamp_for(argv, os.getcwd())
        return run_locked(args, stamp)
    except UserError as exc:
        sys.stderr.write(error_line(str(exc)))
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        sys.stderr.write("ibtasks: interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
