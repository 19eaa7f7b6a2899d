"""Building the validated `Config` from raw key values, with every check.

Readers (`bash_reader`, `yaml_reader`) return raw text values with their origin; this module turns
them into a `Config`, applying the defaults of `settings.SETTINGS`, the seed's `root=` deduction,
and every validation, raising `UserError` that names the file, line and key.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import replace

from ibtasks.config import disk_settings
from ibtasks.config.boot_options import BootOptions, read_boot_options
from ibtasks.config.dom0 import check_dom0, check_no_dom0, dom0_command_line
from ibtasks.config.domu import read_domu
from ibtasks.config.domu_checks import check_domus
from ibtasks.config.domu_props import AFFINITY_KEY
from ibtasks.config.fit_settings import read_fit_settings
from ibtasks.config.model import Config, DomU, Options
from ibtasks.config.output_names import config_output_name, output_names, source_stem
from ibtasks.config.output_names import output_paths as output_paths  # the CLI's import
from ibtasks.config.reader import Binary, KeyReader, RawConfig, RawKey
from ibtasks.config.script_checks import check_raw_values, check_script_inputs
from ibtasks.config.settings import SETTINGS_BY_NAME, is_set
from ibtasks.config.value_warnings import alignment_warnings, beyond_count_warnings, flag_warnings
from ibtasks.config.xen_cmd import choose_xen_cmd
from ibtasks.config.xen_props import read_xen_props
from ibtasks.errors import UserError

# Keys of today's upstream ImageBuilder that change what boots; silently ignoring them would boot
# a different system than the user asked for.
UNSUPPORTED_UPSTREAM_KEYS = frozenset({
    # Generate the partial DTB from a git repository or with lopper: run those tools yourself
    # and give the result as DOMU_PASSTHROUGH_DTB.
    "PASSTHROUGH_DTS_REPO", "LOPPER_PATH", "LOPPER_CMD",
    # Xilinx-only (vIOMMU, PL011 emulation) and not-yet-merged upstream patches.
    "DOMU_VIOMMU", "DOM0_VIOMMU", "DOMU_VUART_PL011", "DOMU_P2M_MEM_MB",
    # Bare-metal Linux on a rootfs partition: disk-image has no partition for it.
    "LINUX_ROOTFS",
})



def is_strict(raw: RawConfig, options: Options) -> bool:
    """Whether warnings are errors: `--strict` or a set `STRICT` key."""
    value = raw.values.get(("STRICT", None))
    return options.strict or (value is not None and is_set(value.text))


def check_strict(warnings: Sequence[str], strict: bool) -> None:
    """In strict mode raise the first warning as a `UserError`, its text the error line."""
    if strict and warnings:
        raise UserError(warnings[0])


def build_config(raw: RawConfig, options: Options) -> Config:
    """Validate `raw`, apply defaults; raise `UserError` naming the place of the first problem.

    Paths of input files become the paths the board asks for (`board_paths.board_path`).
    """
    check_raw_values(raw)
    reader = KeyReader(raw, options.root_dir)
    xen, linux_mode = _host_kernel(reader)
    num_domus = reader.count("NUM_DOMUS")
    if linux_mode:
        check_no_dom0(reader, num_domus)
    has_dom0 = check_dom0(reader)
    xen_props = read_xen_props(reader)
    domus = tuple(read_domu(reader, i, has_dom0, len(xen_props.cpupools))
                  for i in range(num_domus))
    check_domus([(d.index, d.boots_with_xen, d.props) for d in domus], has_dom0, reader)
    if not linux_mode and not has_dom0 and not any(d.boots_with_xen for d in domus):
        raise UserError("without DOM0_KERNEL at least one domU must be started by Xen "
                        "(NUM_DOMUS, DOMU_KERNEL[n])", reader.where("NUM_DOMUS") or raw.source)

    boot = read_boot_options(reader, options.prepend_path, options.calc, linux_mode, num_domus)
    load_cmd = (options.load_cmd or reader.text("LOAD_CMD")
                or _covering_load_cmd(boot, domus, has_dom0))
    if not load_cmd:
        raise UserError("no load command: pass -t (tftp, sd, scsi, usb, virtio or a U-Boot "
                        "command), set LOAD_CMD in the config or export LOAD_CMD")
    memory_start = reader.address("MEMORY_START")
    memory_end = reader.address("MEMORY_END")
    if memory_end <= memory_start:
        raise UserError(
            f"MEMORY_END ({memory_end:#x}) must be above MEMORY_START ({memory_start:#x})",
            reader.where("MEMORY_END"),
        )

    dom0_rootfs = reader.binary("DOM0_ROOTFS")
    dom0_cmd = ("" if linux_mode else
                dom0_command_line(reader, boot.dom0_load or load_cmd, dom0_rootfs is not None))

    uboot_source, uboot_script, fdtedit = output_names(reader, options)
    fit, fit_warnings = read_fit_settings(_fit_lookup(reader, options), options.fit,
                                          source_stem(uboot_source), options.root_dir)
    if fit is not None and reader.where("FIT"):
        fit = replace(fit, name=config_output_name(reader, options, "FIT") or fit.name)

    config = Config(
        source=raw.source,
        root_dir=options.root_dir,
        output_dir=options.output_dir or options.root_dir,
        load_cmd=load_cmd,
        memory_start=memory_start,
        memory_end=memory_end,
        host_dtb=_host_dtb(reader, options.calc),
        xen=xen,
        xen_cmd=choose_xen_cmd(reader, reader.command_line("XEN_CMD"), has_dom0, xen_props,
                               any(d.props.colors for d in domus)),
        dom0_kernel=None if linux_mode else reader.binary("DOM0_KERNEL"),
        dom0_cmd=dom0_cmd,
        dom0_ramdisk=reader.binary("DOM0_RAMDISK"),
        dom0_rootfs=dom0_rootfs,
        domus=domus,
        uboot_source=uboot_source,
        uboot_script=uboot_script,
        fdtedit=fdtedit,
        preedited_dtb=options.preedited_dtb or reader.flag("PREEDITED_DTB"),
        boot_fs=options.boot_fs or reader.choice_or_default("BOOT_FS"),
        warnings=raw.warnings + fit_warnings,
        strict=is_strict(raw, options),
        environ_used=raw.environ_used,
        boot=boot,
        partition_table=disk_settings.partition_table(reader, options.partition_table),
        boot_aux_files=disk_settings.boot_aux_files(reader),
        fit=fit,
        xen_props=xen_props,
        boot_partition_mib=(options.boot_size if options.boot_size is not None
                            else reader.number("BOOT_PARTITION_SIZE")),
    )
    load_label = ("-t" if options.load_cmd else "LOAD_CMD" if reader.text("LOAD_CMD")
                  else "XEN_LOAD")
    script_warnings = check_script_inputs(config, raw, load_label,
                                          "-o" if options.output_name else None)
    value_warnings = (beyond_count_warnings(raw.values) + flag_warnings(raw.values)
                      + alignment_warnings(memory_start, reader.where("MEMORY_START")))
    config = replace(config, warnings=config.warnings + value_warnings + script_warnings)
    if config.fit and (boot.calc or boot.boot_cmd == "bootm"):
        what = "-s" if boot.calc else "BOOT_CMD=bootm"
        raise UserError(f"{what} cannot be combined with a FIT (-f or FIT): the FIT holds Xen "
                        "and fixed load addresses", reader.where("BOOT_CMD") if not boot.calc
                        else None)
    if boot.calc:
        warnings = _calc_warnings(reader)
        if warnings:
            config = replace(config, warnings=config.warnings + warnings)
        if config.preedited_dtb:
            raise UserError("--preedited-dtb cannot be combined with -s: the edited DTB needs "
                            "the load addresses, which -s leaves to U-Boot")
        _check_no_dtb_facts_needed(raw)
        # -s: files need not exist now; only the one we read while generating must.
        _check_inputs_exist(config, [boot.append_extra_cmds] if boot.append_extra_cmds else [])
    else:
        _check_inputs_exist(config)
    return config


def _host_dtb(reader: KeyReader, calc: bool) -> Binary | None:
    """DEVICE_TREE; optional with -s, whose script then edits U-Boot's own control DTB
    (`${fdtcontroladdr}`), as upstream's "Make DEVICE_TREE optional parameter" (2025-08)."""
    dtb = reader.binary("DEVICE_TREE")
    if dtb is None and not calc:
        raise UserError("DEVICE_TREE is required but not set (only uboot-script-gen -s can do "
                        "without: its script edits U-Boot's own DTB, ${fdtcontroladdr})",
                        reader.where("DEVICE_TREE") or reader.raw.source)
    return dtb


def _calc_warnings(reader: KeyReader) -> tuple[str, ...]:
    """-s writes no edited DTB: a FDTEDIT name would silently name nothing."""
    where = reader.where("FDTEDIT")
    if where and reader.text("FDTEDIT"):
        return (f"{where}: FDTEDIT: -s writes no edited DTB (U-Boot edits the DTB at boot), "
                "ignored",)
    return ()


# Keys whose edits need facts of the input DTB (phandles, cell sizes, node paths), which -s
# does not read.
DTB_FACT_KEYS = ("CPUPOOL", "XEN_STATIC_HEAP", "DOMU_STATIC_EVTCHNS", "DOMU_PASSTHROUGH_PATHS")


def _check_no_dtb_facts_needed(raw: RawConfig) -> None:
    for (name, index), value in sorted(raw.values.items(), key=lambda kv: kv[1].where):
        if name in DTB_FACT_KEYS and value.text.strip():
            label = name if index is None else f"{name}[{index}]"
            raise UserError(f"{label}: needs facts of the DTB (phandles, cell sizes, node "
                            "paths), which -s does not read; drop -s", value.where)


def _host_kernel(reader: KeyReader) -> tuple[Binary, bool]:
    """XEN, or LINUX for a bare-metal Linux boot (reference doc §1.5); one of them is needed."""
    xen, linux = reader.binary("XEN"), reader.binary("LINUX")
    if xen and linux:
        raise UserError("LINUX: set XEN or LINUX, not both (LINUX boots Linux without Xen)",
                        reader.where("LINUX"))
    if linux:
        return linux, True
    return reader.required_binary("XEN"), False


def _covering_load_cmd(boot: BootOptions, domus: tuple[DomU, ...],
                       has_dom0: bool) -> str | None:
    """Without LOAD_CMD, XEN_LOAD may stand in when the per-image keys cover every file."""
    covered = {i for i, _ in boot.domu_load}
    if boot.xen_load and (boot.linux_cmd or boot.dom0_load or not has_dom0) and all(
            d.index in covered for d in domus if d.boots_with_xen):
        return boot.xen_load
    return None


def _fit_lookup(reader: KeyReader, options: Options
                ) -> Callable[[str], tuple[str | None, str | None]]:
    """FIT keys' values and places; -k and -u win over the config, as upstream."""
    flags = {"FIT_ENC_KEY_DIR": ("-k", options.fit_key_dir),
             "FIT_ENC_UB_DTB": ("-u", options.fit_u_boot_dtb)}

    def lookup(name: str) -> tuple[str | None, str | None]:
        flag, value = flags.get(name, ("", None))
        if value:
            return value, flag
        return reader.text(name), reader.where(name)
    return lookup


def _check_inputs_exist(config: Config, inputs: list[Binary] | None = None) -> None:
    """Every input must exist and be readable now: doit would run an action without it."""
    if inputs is None:
        inputs = config.binaries() + config.rootfs_archives() + list(config.boot_aux_files)
        if config.boot.append_extra_cmds:
            inputs.append(config.boot.append_extra_cmds)
    for binary in inputs:
        path = config.root_dir / binary.path
        try:
            mode: int | None = os.stat(path).st_mode
        except (FileNotFoundError, NotADirectoryError):
            mode = None
        except OSError as exc:  # a directory on the way that the user may not search, a loop
            raise UserError(f"{binary.key}: cannot reach {binary.path}: {exc.strerror} (looked "
                            f"in {config.root_dir})", binary.where) from exc
        if mode is None or not stat.S_ISREG(mode):
            what = "is not a regular file" if mode is not None else "does not exist"
            raise UserError(f"{binary.key}: {binary.path} {what} (looked in {config.root_dir})",
                            binary.where)
        if not os.access(path, os.R_OK):
            raise UserError(f"{binary.key}: {binary.path} is not readable", binary.where)


def check_key(name: str, index: str | None, where: str) -> RawKey | None:
    """The raw key of one bash assignment, or None for a name that is not an ImageBuilder key.

    Which unknown names deserve a warning is the reader's choice (`loader`): it knows which
    names the file's expansions use. Raises `UserError` for upstream keys we do not support and
    for indices a key cannot have.
    """
    setting = SETTINGS_BY_NAME.get(name)
    if setting is None:
        if name in UNSUPPORTED_UPSTREAM_KEYS:
            raise UserError(f"{name}: this upstream ImageBuilder key is not supported by ibtasks; "
                            "remove it or use ImageBuilder itself", where)
        return None
    if name == AFFINITY_KEY and index is not None and "," in index:
        domu, _, vcpu = index.partition(",")
        return (f"{name},{int(vcpu)}", int(domu))  # one raw key per [domU,vCPU]
    if name == AFFINITY_KEY:
        raise UserError(f"{name}[{index}]: write {name}[domU,vCPU]=pCPUs, with "
                        f"`declare -A {name}`", where)
    if not setting.per_domu:
        if index not in (None, "0"):
            raise UserError(f"{name} is not a per-domU key: write {name}=..., not {name}[{index}]",
                            where)
        return (name, None)
    if index is None:
        return (name, 0)  # bash: ARRAY=value sets element 0
    if not index.isdigit():
        raise UserError(f"{name}[{index}]: a domU index must be a number", where)
    return (name, int(index))
