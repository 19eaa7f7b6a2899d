"""`ibtasks run`: build a config (incrementally, as uboot-script-gen or disk-image would) and boot
it under QEMU with real U-Boot, over TFTP from the build's outputs or from the built disk.img;
and `ibtasks qemu-dtb`, the DTB of the QEMU machine it boots.

Interactive by default: the serial console on the terminal, Ctrl-A X quits QEMU. With
`--expect TEXT` (repeatable) or `--fail TEXT` it is a CI check instead: each marker's arrival
time is printed, and the exit status is 0 only when every marker arrived and no failure text
did; the whole console is saved (`--log`, default `.ibtasks/console.log`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from ibtasks.errors import UserError
from ibtasks.qemu.board import VirtOptions, machine_of_dtb, write_virt_dtb
from ibtasks.qemu.machine import (
    UBOOT_QEMU_ARM64,
    ahci_disk_args,
    disk_commands,
    tftp_args,
    tftp_commands,
    virtio_disk_args,
)
from ibtasks.qemu.runner import DEFAULT_FAILURE_PATTERNS, BootSpec, boot, describe_failure

MEDIA = ("tftp", "virtio", "scsi")  # --from: where U-Boot loads the boot script from
BOOT_FAILED = 1


def add_machine_options(parser: argparse.ArgumentParser) -> None:
    """The `virt` machine's options (defaults: what the config's DTB describes)."""
    parser.add_argument("--smp", type=int, metavar="N", help="cores (default: the DTB's)")
    parser.add_argument("--memory", type=int, metavar="MIB",
                        help="RAM in MiB (default: up to the end of the DTB's /memory)")
    parser.add_argument("--gic-version", type=int, choices=(2, 3),
                        help="GIC version (default: 3 if the DTB has an arm,gic-v3 node)")
    parser.add_argument("--virtualization", choices=("on", "off"),
                        help="EL2 for Xen (default on)")
    parser.add_argument("--cpu", default="cortex-a57", help="QEMU's -cpu (default cortex-a57)")


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """`ibtasks run`'s own flags, after the -c/-d/-t it shares with the builds."""
    parser.add_argument("--from", dest="media", choices=MEDIA, default="tftp",
                        help="boot over TFTP from the outputs (default), or from disk.img on "
                             "a virtio-blk or an AHCI (scsi) disk")
    parser.add_argument("-o", dest="image", metavar="IMAGE",
                        help="--from virtio/scsi: the disk image (default DIR/disk.img)")
    parser.add_argument("--expect", action="append", default=[], metavar="TEXT",
                        help="console text that must appear (repeatable); makes the run a check")
    parser.add_argument("--fail", action="append", default=[], metavar="TEXT",
                        help="console text that fails the run at once (repeatable)")
    parser.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS",
                        help="a check fails after this long (default 300)")
    parser.add_argument("--log", metavar="FILE",
                        help="where the console is saved (default DIR/.ibtasks/console.log)")
    parser.add_argument("--u-boot", dest="firmware", default=str(UBOOT_QEMU_ARM64),
                        metavar="U-BOOT.BIN",
                        help=f"U-Boot for QEMU (default {UBOOT_QEMU_ARM64}, Debian's u-boot-qemu)")
    add_machine_options(parser)


def virt_options(args: argparse.Namespace, dtb: bytes | None, source: str) -> VirtOptions:
    """The machine: each option given, else what the DTB `dtb` describes, else VirtOptions'."""
    implied = machine_of_dtb(dtb, source) if dtb is not None else VirtOptions()
    virtualization = implied.virtualization if args.virtualization is None \
        else args.virtualization == "on"
    options = VirtOptions(
        smp=args.smp if args.smp is not None else implied.smp,
        memory_mb=args.memory if args.memory is not None else implied.memory_mb,
        gic_version=args.gic_version if args.gic_version is not None else implied.gic_version,
        virtualization=virtualization,
        cpu=args.cpu,
    )
    if options.smp < 1 or options.memory_mb < 1:
        raise UserError(f"--smp {options.smp} --memory {options.memory_mb}: both must be 1 or more")
    return options


def build_argv(args: argparse.Namespace) -> list[str]:
    """The uboot-script-gen or disk-image command line that builds what `run` boots."""
    load_cmd = args.load_cmd or args.media
    common = ["-c", args.config, "-d", args.root, "-t", load_cmd]
    common += ["--strict"] * bool(args.strict) + ["-v"] * bool(args.verbose)
    if args.media == "tftp":
        return ["uboot-script-gen", *common]
    return ["disk-image", *common, "-o", disk_path(args)]


def disk_path(args: argparse.Namespace) -> str:
    """The disk image booted with --from virtio/scsi."""
    return args.image or str(Path(args.root) / "disk.img")


def boot_spec(args: argparse.Namespace) -> BootSpec:
    """What to boot: read the config (quietly: the build printed its warnings) for the script's
    name and the DTB the machine follows."""
    from ibtasks.config.build import build_config
    from ibtasks.config.load_command import resolve_load_cmd
    from ibtasks.config.loader import read_config_file
    from ibtasks.config.model import Options

    raw = read_config_file(Path(args.config), warn=lambda message: None)
    config = build_config(raw, Options(root_dir=Path(args.root),
                                       load_cmd=resolve_load_cmd(args.load_cmd or args.media)))
    dtb_path = config.root_dir / config.host_dtb.path if config.host_dtb is not None else None
    dtb = dtb_path.read_bytes() if dtb_path is not None else None
    machine = virt_options(args, dtb, f"DEVICE_TREE ({dtb_path})").machine()
    script = config.uboot_script
    if args.media == "tftp":
        media, commands = tftp_args(config.output_dir), tftp_commands(script)
    else:
        image = Path(disk_path(args)).resolve()
        media = virtio_disk_args(image) if args.media == "virtio" else ahci_disk_args(image)
        commands = disk_commands(args.media, script=script)
    log = Path(args.log) if args.log else config.output_dir / ".ibtasks" / "console.log"
    return BootSpec(
        commands=commands,
        markers=tuple(args.expect),
        log_path=log,
        media_args=media,
        machine=machine,
        firmware=Path(args.firmware),
        failure_patterns=(*DEFAULT_FAILURE_PATTERNS, *args.fail),
        timeout_seconds=args.timeout,
        idle_seconds=min(60.0, args.timeout),
    )


def run_system(args: argparse.Namespace, build: Callable[[argparse.Namespace], int],
               parse: Callable[[list[str]], argparse.Namespace]) -> int:
    """`ibtasks run`: build with `build` (the locked uboot-script-gen/disk-image of cli.main,
    on the namespace `parse` makes of `build_argv`), then boot; with --watch, again on each
    change of an input."""
    if args.timeout <= 0:
        raise UserError(f"--timeout {args.timeout:g}: must be more than 0 seconds")
    if not Path(args.firmware).is_file():
        raise UserError(f"U-Boot firmware {args.firmware} not found: install u-boot-qemu "
                        "(or give --u-boot)")

    def build_and_boot() -> int:
        code = build(parse(build_argv(args)))
        return code if code != 0 else boot_once(args)

    if args.watch:
        from ibtasks.cli.watch import watch_and_reboot, watch_and_rebuild

        args.verbose = True  # each rebuild names the tasks it reran
        if not args.expect and not args.fail:
            from ibtasks.qemu.interactive import InteractiveBoot

            return watch_and_reboot(args, lambda: build(parse(build_argv(args))),
                                    lambda: InteractiveBoot(boot_spec(args)))
        return watch_and_rebuild(args, build_and_boot)
    return build_and_boot()


def boot_once(args: argparse.Namespace) -> int:
    """One boot of what was built: a check with --expect/--fail, else interactive."""
    spec = boot_spec(args)
    if not args.expect and not args.fail:
        from ibtasks.qemu.interactive import boot_interactive

        return boot_interactive(spec)
    result = boot(spec)
    sys.stdout.write(result.summary() + "\n")
    if not result.ok:
        sys.stderr.write(describe_failure(result) + "\n")
        return BOOT_FAILED
    return 0


def qemu_dtb(args: argparse.Namespace) -> int:
    """`ibtasks qemu-dtb -o virt.dtb`: the DTB of the `virt` machine with these options."""
    options = virt_options(args, None, "")
    write_virt_dtb(options, Path(args.output))
    print(f"QEMU virt DTB written to {args.output}: {options.smp} cores, {options.memory_mb} MiB, "
          f"GICv{options.gic_version}, virtualization={'on' if options.virtualization else 'off'}")
    return 0
