"""The command line: drop-in flags of ImageBuilder's scripts, running our doit graph.

    ibtasks uboot-script-gen -c CONFIG -d DIR -t LOADCMD [-o NAME] [-- DOIT-ARGS...]

User errors print one line (`ibtasks: error: ...`) and exit non-zero; anything else is a bug.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from ibtasks import __version__
from ibtasks.bootscript import render_final_message
from ibtasks.config import Config, Options, resolve_load_cmd
from ibtasks.config_load import load_config
from ibtasks.doitrun import run_graph
from ibtasks.errors import UserError
from ibtasks.layout import Layout, render_memory_map
from ibtasks.taskgen import boot_tasks, outputs, source_date_epoch, work_dir

EXIT_USER_ERROR = 1


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one UserError line, not usage + error."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message} (see '{self.prog} -h')")


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", dest="config", required=True, metavar="CONFIG",
                        help="ImageBuilder config file (bash syntax, or YAML if *.yaml/*.yml)")
    parser.add_argument("-d", dest="root", required=True, metavar="DIR",
                        help="directory the config's paths are relative to; outputs go here")
    parser.add_argument("-t", dest="load_cmd", metavar="LOADCMD",
                        help="U-Boot load command: tftp, sd, scsi, usb, virtio or any command "
                             "(wins over LOAD_CMD)")
    parser.add_argument("-o", dest="output_name", metavar="NAME",
                        help="write NAME.source and NAME.scr")
    parser.add_argument("--output-dir", metavar="DIR",
                        help="write outputs here instead of the -d directory")
    parser.add_argument("--preedited-dtb", action="store_true",
                        help="load the edited DTB instead of running fdt commands in U-Boot")
    parser.add_argument("--memory-map", action="store_true",
                        help="print the memory layout as a table after building")
    parser.add_argument("-v", "--verbose", action="store_true", help="show each task run")
    parser.add_argument("doit_args", nargs="*", metavar="DOIT-ARGS",
                        help="after --: a doit command on the same graph (list, info TASK, ...)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ibtasks", description="Xen ImageBuilder as a doit task graph.")
    parser.add_argument("--version", action="version", version=f"ibtasks {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    script = commands.add_parser("uboot-script-gen",
                                 help="boot.source, boot.scr and the edited DTB for a config")
    _add_common(script)
    return parser


def config_from_args(args: argparse.Namespace) -> Config:
    root = Path(args.root)
    if not root.is_dir():
        raise UserError(f"-d {args.root}: not a directory")
    output_dir = Path(args.output_dir) if args.output_dir else None
    options = Options(
        root_dir=root,
        load_cmd=resolve_load_cmd(args.load_cmd) if args.load_cmd else None,
        output_name=args.output_name,
        output_dir=output_dir,
        preedited_dtb=args.preedited_dtb,
    )
    config = load_config(args.config, options)
    for warning in config.warnings:
        sys.stderr.write(f"ibtasks: warning: {warning}\n")
    _check_writable(config.output_dir)
    return config


def _check_writable(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create output directory {directory}: {exc.strerror}") from exc
    if not os.access(directory, os.W_OK | os.X_OK):
        raise UserError(f"output directory {directory} is not writable")


def _remove_outputs(paths: Sequence[Path]) -> None:
    """After a failure, leave nothing a later build or a user could take as a finished output."""
    for path in paths:
        path.unlink(missing_ok=True)


def uboot_script_gen(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    epoch = source_date_epoch(os.environ)
    argv = args.doit_args or ["run"]
    code = run_graph(lambda: boot_tasks(config, epoch), work_dir(config), argv, args.verbose)
    if argv[0] != "run":
        return code
    if code != 0:
        _remove_outputs(outputs(config))
        return code
    layout = Layout.from_json((work_dir(config) / "layout.json").read_bytes())
    if args.memory_map:
        sys.stdout.write(render_memory_map(layout))
    for binary in config.domus:
        if binary.rootfs is not None and not binary.noboot:
            sys.stdout.write(f"Skipping DomU[{binary.index}]: cannot handle non-ramdisk rootfs "
                             "for dom0less VMs.\n")
    sys.stdout.write(render_final_message(config, layout))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return uboot_script_gen(args)
    except UserError as exc:
        sys.stderr.write(f"ibtasks: error: {exc}\n")
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        sys.stderr.write("ibtasks: interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
