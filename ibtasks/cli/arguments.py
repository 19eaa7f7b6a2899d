"""The command lines: the original scripts' flags (-c, -d, -t, -o ...) and ours, parsed into a
validated `Config`; a bad command line is one `UserError` line, never argparse's usage text.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from ibtasks import __version__
from ibtasks.cli.cache_flags import add_cache_flags
from ibtasks.cli.folders import check_writable, input_dir
from ibtasks.errors import UserError, warning_line

if TYPE_CHECKING:
    from ibtasks.config.model import Config
    from ibtasks.config.reader import RawConfig
    from ibtasks.tasks.ownership import OutputGuard


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
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show each task: why it ran, or that it was up to date")
    parser.add_argument("--watch", action="store_true",
                        help="after building, rebuild whenever the config or an input changes")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON document on stdout: outputs, layout, partitions, "
                             "tasks (other text goes to stderr)")
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
                        help="print the memory map after building: loads, reserved memory, "
                             "gaps, what moved, RAM banks")
    script.add_argument("--memory-map-svg", metavar="FILE",
                        help="draw the memory map as an SVG picture in FILE")
    script.add_argument("-p", dest="prepend_path", default="", metavar="PREPEND_PATH",
                        help="prefix every path the script loads (and the script's own path)")
    script.add_argument("-s", dest="calc", action="store_true",
                        help="let U-Boot compute addresses at boot from each file's size; "
                             "the files need not exist now (no edited DTB)")
    _add_fit_flags(script)
    add_cache_flags(script)
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
    disk.add_argument("-j", dest="jobs", type=int, metavar="N",
                      help="build up to N partitions at once (default: the number of CPUs)")
    disk.add_argument("--boot-size", type=int, metavar="MIB",
                      help="the boot partition's size, fixed (wins over BOOT_PARTITION_SIZE)")
    disk.add_argument("-a", dest="power_of_two", action="store_true",
                      help="round the image size up to a power of two MiB (petalinux-boot --qemu)")
    add_cache_flags(disk)
    _add_common_tail(disk)
    _add_run_commands(commands)
    return parser


def _add_run_commands(commands: argparse._SubParsersAction[_Parser]) -> None:
    """`ibtasks run` and `ibtasks qemu-dtb` (their own flags: ibtasks.cli.run)."""
    from ibtasks.cli.run import add_machine_options, add_run_arguments

    run = commands.add_parser("run", help="build, then boot under QEMU with U-Boot")
    _add_inputs(run)
    add_run_arguments(run)
    run.add_argument("--strict", action="store_true", help="treat every warning as an error")
    run.add_argument("-v", "--verbose", action="store_true",
                     help="show each task: why it ran, or that it was up to date")
    run.add_argument("--watch", action="store_true",
                     help="rebuild and boot again whenever the config or an input changes")
    dtb = commands.add_parser("qemu-dtb", help="the DTB of QEMU's virt machine, for DEVICE_TREE")
    dtb.add_argument("-o", dest="output", required=True, metavar="DTB", help="the DTB to write")
    add_machine_options(dtb)


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


def config_from_args(args: argparse.Namespace, guard: OutputGuard | None = None
                     ) -> tuple[Config, RawConfig]:
    """The validated config of a command line, and the raw values it was built from (for the
    keys kept out of it, such as CACHE); when it does not validate, `guard` removes the outputs
    it names that ibtasks wrote earlier (never a user's file). Warnings are printed as soon as
    they are known (before an error they may explain); with --strict or STRICT=y the first one
    is the error."""
    from ibtasks.config.build import (
        build_config,
        check_strict,
        is_strict,
        output_paths,
    )
    from ibtasks.config.load_command import resolve_load_cmd
    from ibtasks.config.loader import read_config_file
    from ibtasks.config.model import Options

    root = input_dir(args.root)
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
        boot_size=getattr(args, "boot_size", None),
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
        print_warnings(found)  # about lines before the error: they may explain it
        raise
    strict = is_strict(raw, options)
    try:
        check_strict(raw.warnings, strict)
        print_warnings(raw.warnings)
        config = build_config(raw, options)
        check_strict(config.warnings, strict)
    except UserError:
        if guard is not None:
            guard.remove_ours(output_paths(raw, options))
        raise
    print_warnings(config.warnings[len(raw.warnings):])
    check_writable(config.output_dir)
    return config, raw


def print_warnings(warnings: Sequence[str]) -> None:
    for warning in warnings:
        sys.stderr.write(warning_line(warning))
