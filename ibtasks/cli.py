"""The command line: drop-in flags of ImageBuilder's scripts, running our doit graph.

    ibtasks uboot-script-gen -c CONFIG -d DIR -t LOADCMD [-o NAME] [-- DOIT-ARGS...]
    ibtasks disk-image -c CONFIG -d DIR -t LOADCMD -o disk.img [-w WORKDIR] [-s SLACK] [-a]
                       [--table gpt|dos]

User errors print one line (`ibtasks: error: ...`) and exit non-zero; anything else is a bug.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from ibtasks import __version__
from ibtasks.errors import UserError
from ibtasks.stamp import remove_stamp, stamp_for, write_stamp

if TYPE_CHECKING:
    from ibtasks.config import Binary, Config

# Imports of doit and of our graph modules cost ~70 ms; they happen only past the no-op fast
# path (see ibtasks.stamp), inside the functions that need them.

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
    parser.add_argument("--preedited-dtb", action="store_true",
                        help="load the edited DTB instead of running fdt commands in U-Boot")
    parser.add_argument("-v", "--verbose", action="store_true", help="show each task run")
    parser.add_argument("doit_args", nargs="*", metavar="DOIT-ARGS",
                        help="after --: a doit command on the same graph (list, info TASK, ...)")


def _add_fit_flags(parser: argparse.ArgumentParser) -> None:
    """Upstream's FIT flags (see ibtasks.fitplan)."""
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


def config_from_args(args: argparse.Namespace) -> Config:
    from ibtasks.config import Options, build_config, output_paths, resolve_load_cmd
    from ibtasks.config_load import read_config_file

    root = Path(args.root)
    if not root.is_dir():
        raise UserError(f"-d {args.root}: not a directory")
    output_dir = Path(args.output_dir) if getattr(args, "output_dir", None) else None
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
    )
    raw = read_config_file(Path(args.config))
    try:
        config = build_config(raw, options)
    except UserError:
        _remove_outputs(output_paths(raw, options))
        raise
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


def uboot_script_gen(args: argparse.Namespace, stamp: str | None) -> int:
    from ibtasks.bootscript import render_final_message
    from ibtasks.doitrun import run_graph
    from ibtasks.layout import Layout, render_memory_map
    from ibtasks.taskgen import boot_tasks, outputs, source_date_epoch, work_dir

    config = config_from_args(args)
    epoch = source_date_epoch(os.environ)
    argv = args.doit_args or ["run"]
    work = work_dir(config)
    code = run_graph(lambda: boot_tasks(config, epoch), work, argv, args.verbose)
    if argv[0] != "run":
        return code
    if code != 0:
        _remove_outputs(outputs(config))
        return code
    layout = Layout.from_json((work / "layout.json").read_bytes())
    for warning in layout.warnings:  # the layout's check against the DTB's /memory banks
        sys.stderr.write(f"ibtasks: warning: {warning}\n")
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


def disk_image(args: argparse.Namespace) -> int:
    from ibtasks.diskconfig import check_disk_config
    from ibtasks.disktasks import DiskOptions, all_tasks, disk_outputs
    from ibtasks.doitrun import run_graph
    from ibtasks.taskgen import outputs, source_date_epoch, work_dir

    config = config_from_args(args)
    if args.slack < 0:
        raise UserError(f"-s {args.slack}: the slack must be 0 MiB or more")
    work = Path(args.work) if args.work else work_dir(config)
    _check_writable(work)
    image = Path(args.image)
    _check_writable(image.parent if str(image.parent) else Path("."))
    options = DiskOptions(image=image, work=work, slack_mib=args.slack,
                          power_of_two=args.power_of_two)
    try:
        check_disk_config(config)
    except UserError:
        _remove_outputs([*outputs(config), *disk_outputs(options)])
        raise
    epoch = source_date_epoch(os.environ)
    argv = args.doit_args or ["run"]
    code = run_graph(lambda: all_tasks(config, options, epoch), work, argv, args.verbose)
    if argv[0] == "run" and code != 0:
        _remove_outputs([*outputs(config), *disk_outputs(options)])
    elif argv[0] == "run":
        from ibtasks.layout import Layout

        layout = Layout.from_json((work_dir(config) / "layout.json").read_bytes())
        for warning in layout.warnings:
            sys.stderr.write(f"ibtasks: warning: {warning}\n")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        if args.command == "disk-image":
            return disk_image(args)
        # The no-op fast path (entry.main) found this command's stamp stale or missing.
        stamp = stamp_for(argv, os.getcwd()) if not args.doit_args else None
        if stamp is not None:
            remove_stamp(stamp)
        return uboot_script_gen(args, stamp)
    except UserError as exc:
        sys.stderr.write(f"ibtasks: error: {exc}\n")
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        sys.stderr.write("ibtasks: interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
