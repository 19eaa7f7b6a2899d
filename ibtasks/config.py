"""The validated configuration: frozen dataclasses built from raw key values, with every check.

Readers (`config_bash`, `config_yaml`) return raw text values with their origin; this module turns
them into a `Config`, applying the defaults of `settings.SETTINGS`, the seed's `root=` deduction,
and every validation, raising `UserError` that names the file, line and key.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from ibtasks import diskconfig
from ibtasks.boardpath import board_path, output_name_problem
from ibtasks.bootopts import BootOptions, read_boot_options
from ibtasks.config_warnings import alignment_warnings, beyond_count_warnings, flag_warnings
from ibtasks.domain_checks import check_dom0, check_domus, choose_xen_cmd
from ibtasks.domains import AFFINITY_KEY, DomUProps, XenProps, build_domu_props, build_xen_props
from ibtasks.errors import UserError
from ibtasks.fitplan import FitSettings, read_fit_settings
from ibtasks.hush import word_problem
from ibtasks.scriptcheck import check_raw_values, check_script_inputs
from ibtasks.settings import (
    SETTINGS_BY_NAME,
    Setting,
    is_set,
    number_hint,
    parse_address,
    parse_count,
)

# The seed's -t shorthands, plus upstream's usb and virtio.
LOAD_CMD_ALIASES = {
    "tftp": "tftpb",
    "sd": "load mmc 0:1",
    "scsi": "load scsi 0:1",
    "usb": "fatload usb 0:1",
    "virtio": "load virtio 0:1",
}

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



@dataclass(frozen=True)
class RawValue:
    """A key's value as the user wrote it, and where (`config:12`)."""

    text: str
    where: str


RawKey = tuple[str, int | None]


@dataclass(frozen=True)
class RawConfig:
    """What a reader found: values by (name, domU index), plus warnings to show the user."""

    source: str
    values: Mapping[RawKey, RawValue]
    warnings: tuple[str, ...] = ()
    environ_used: tuple[str, ...] = ()  # environment variables the config expanded


@dataclass(frozen=True)
class Binary:
    """An input file named by a key; `path` is relative to the root (-d) directory."""

    key: str
    path: str
    where: str


@dataclass(frozen=True)
class DomU:
    """One dom0less domU, `DOMU_*[index]`."""

    index: int
    kernel: Binary | None
    cmd: str
    ramdisk: Binary | None
    passthrough_dtb: Binary | None
    mem_mib: int
    vcpus: int
    noboot: bool
    rootfs: Binary | None
    cmd_given: str | None = None  # DOMU_CMD as written, None when unset (xl configs differ)
    props: DomUProps = field(default_factory=DomUProps)  # upstream extras (domains.py)
    driver_domain: bool = False

    @property
    def boots_with_xen(self) -> bool:
        """Xen starts it at boot; the seed skips domUs with a rootfs or DOMU_NOBOOT."""
        return not self.noboot and self.rootfs is None


@dataclass(frozen=True)
class Config:
    """Everything one build needs, validated. Paths are relative to `root_dir`/`output_dir`."""

    source: str
    root_dir: Path
    output_dir: Path
    load_cmd: str
    memory_start: int
    memory_end: int
    host_dtb: Binary | None  # DEVICE_TREE; None only with -s: U-Boot's control DTB is edited
    xen: Binary  # the kernel the boot command starts: XEN, or LINUX in bare-metal mode
    xen_cmd: str
    dom0_kernel: Binary | None  # None: dom0less without a dom0
    dom0_cmd: str
    dom0_ramdisk: Binary | None
    dom0_rootfs: Binary | None
    domus: tuple[DomU, ...]
    uboot_source: str
    uboot_script: str
    fdtedit: str
    preedited_dtb: bool
    boot_fs: str = "fat"
    warnings: tuple[str, ...] = field(default=(), compare=False)
    environ_used: tuple[str, ...] = field(default=(), compare=False)
    # --strict or STRICT=y: warnings found while building (the layout's) are errors too.
    strict: bool = False
    partition_table: str = "gpt"  # disk-image: gpt or dos
    boot_aux_files: tuple[Binary, ...] = ()  # disk-image: BOOT_AUX_FILE[n]
    fit: FitSettings | None = None  # FIT mode (-f, FIT): see fitplan
    xen_props: XenProps = field(default_factory=XenProps)  # heap, colours, pools (domains.py)
    boot: BootOptions = field(default_factory=BootOptions)  # boot command, loads: bootopts.py

    @property
    def device_tree(self) -> Binary:
        """DEVICE_TREE, for the code paths that load or read it (all but `-s` without it)."""
        if self.host_dtb is None:
            raise RuntimeError("no DEVICE_TREE: with -s the script edits U-Boot's control DTB")
        return self.host_dtb

    @property
    def dtb_label(self) -> str:
        """The host DTB as messages name it."""
        if self.host_dtb is None:
            return "U-Boot's control DTB (${fdtcontroladdr})"
        return f"DEVICE_TREE ({self.host_dtb.path})"

    @property
    def linux_mode(self) -> bool:
        """A bare-metal Linux boot (LINUX set, no XEN): no dom0, no domUs, no Xen."""
        return self.xen.key == "LINUX"

    def rootfs_archives(self) -> list[Binary]:
        """DOM0_ROOTFS and every DOMU_ROOTFS, in partition order."""
        found = [self.dom0_rootfs] + [d.rootfs for d in self.domus]
        return [b for b in found if b is not None]

    def binaries(self) -> list[Binary]:
        """Every input that the boot script loads, in the seed's load order."""
        # New modules go where upstream puts them relative to their neighbours: the policy
        # after Xen, overlays just before the DTB, the bitstream after it.
        found = [self.xen]
        for extra in (self.boot.linux_ramdisk, self.boot.xen_policy, self.dom0_kernel,
                      self.dom0_ramdisk):
            if extra:
                found.append(extra)
        for domu in self.domus:
            if domu.boots_with_xen:
                found += [b for b in (domu.kernel, domu.ramdisk, domu.passthrough_dtb) if b]
        found += [*self.boot.dt_overlays, *([self.host_dtb] if self.host_dtb else [])]
        if self.boot.bitstream:
            found.append(self.boot.bitstream)
        return found


def resolve_load_cmd(text: str) -> str:
    """Map the seed's `-t` shorthands (tftp, sd, scsi) and upstream's (usb, virtio)."""
    return LOAD_CMD_ALIASES.get(text, text)


@dataclass(frozen=True)
class Options:
    """Command-line choices that override or complete the config file."""

    root_dir: Path
    load_cmd: str | None = None  # from -t, already resolved; wins over LOAD_CMD
    output_name: str | None = None  # -o NAME: NAME.source and NAME.scr
    output_dir: Path | None = None  # default: root_dir, as the seed
    preedited_dtb: bool = False
    boot_fs: str | None = None  # disk-image --boot-fs, wins over BOOT_FS
    partition_table: str | None = None  # disk-image --table, wins over PARTITION_TABLE
    fit: bool = False  # -f
    fit_key_dir: str | None = None  # -k KEY_DIR/HINT, wins over FIT_ENC_KEY_DIR
    fit_u_boot_dtb: str | None = None  # -u DTB, wins over FIT_ENC_UB_DTB
    prepend_path: str = ""  # -p PREPEND_PATH
    calc: bool = False  # -s: addresses computed by U-Boot
    strict: bool = False  # --strict: every warning is an error (also STRICT=y)


def is_strict(raw: RawConfig, options: Options) -> bool:
    """Whether warnings are errors: `--strict` or a set `STRICT` key."""
    value = raw.values.get(("STRICT", None))
    return options.strict or (value is not None and is_set(value.text))


def check_strict(warnings: Sequence[str], strict: bool) -> None:
    """In strict mode raise the first warning as a `UserError`, its text the error line."""
    if strict and warnings:
        raise UserError(warnings[0])


def _boot_fs(text: str, where: str | None) -> str:
    if text not in ("fat", "ext4"):
        raise UserError(f"BOOT_FS: expected fat or ext4, got '{text}'", where)
    return text


def build_config(raw: RawConfig, options: Options) -> Config:
    """Validate `raw`, apply defaults; raise `UserError` naming the place of the first problem.

    Paths of input files become the paths the board asks for (`boardpath.board_path`).
    """
    check_raw_values(raw)
    reader = _Reader(raw, options.root_dir)
    xen, linux_mode = _host_kernel(reader)
    num_domus = reader.count("NUM_DOMUS")
    if linux_mode:
        _check_no_dom0(reader, num_domus)
    has_dom0 = check_dom0(raw.values)
    xen_props = build_xen_props(raw.values, raw.source)
    domus = tuple(_build_domu(reader, i, has_dom0, len(xen_props.cpupools))
                  for i in range(num_domus))
    check_domus([(d.index, d.boots_with_xen, d.props) for d in domus], has_dom0, raw.source,
                raw.values)
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
    dom0_cmd = reader.text("DOM0_CMD") or ""
    if linux_mode:
        dom0_cmd = ""
    elif "root=" not in dom0_cmd:
        dom0_cmd = f"{dom0_cmd} {_deduce_dom0_root(boot.dom0_load or load_cmd, dom0_rootfs)}"

    uboot_source, uboot_script, fdtedit = _output_names(reader, options)
    fit, fit_warnings = read_fit_settings(_fit_lookup(reader, options), options.fit,
                                          _stem(uboot_source), options.root_dir)
    if fit is not None and reader.where("FIT"):
        fit = replace(fit, name=_config_output_name(reader, options, "FIT") or fit.name)

    config = Config(
        source=raw.source,
        root_dir=options.root_dir,
        output_dir=options.output_dir or options.root_dir,
        load_cmd=load_cmd,
        memory_start=memory_start,
        memory_end=memory_end,
        host_dtb=_host_dtb(reader, options.calc),
        xen=xen,
        xen_cmd=choose_xen_cmd(raw.values, _bootargs(reader, "XEN_CMD"), has_dom0, xen_props,
                               any(d.props.colors for d in domus)),
        dom0_kernel=None if linux_mode else reader.binary("DOM0_KERNEL"),
        dom0_cmd=_check_quotes(dom0_cmd, "DOM0_CMD", reader.where("DOM0_CMD")),
        dom0_ramdisk=reader.binary("DOM0_RAMDISK"),
        dom0_rootfs=dom0_rootfs,
        domus=domus,
        uboot_source=uboot_source,
        uboot_script=uboot_script,
        fdtedit=fdtedit,
        preedited_dtb=options.preedited_dtb or reader.flag("PREEDITED_DTB"),
        boot_fs=_boot_fs(options.boot_fs or reader.text("BOOT_FS") or "fat",
                         reader.where("BOOT_FS")),
        warnings=raw.warnings + fit_warnings,
        strict=is_strict(raw, options),
        environ_used=raw.environ_used,
        boot=boot,
        partition_table=diskconfig.partition_table(reader, options.partition_table),
        boot_aux_files=diskconfig.boot_aux_files(reader),
        fit=fit,
        xen_props=xen_props,
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


def _host_dtb(reader: _Reader, calc: bool) -> Binary | None:
    """DEVICE_TREE; optional with -s, whose script then edits U-Boot's own control DTB
    (`${fdtcontroladdr}`), as upstream's "Make DEVICE_TREE optional parameter" (2025-08)."""
    dtb = reader.binary("DEVICE_TREE")
    if dtb is None and not calc:
        raise UserError("DEVICE_TREE is required but not set (only uboot-script-gen -s can do "
                        "without: its script edits U-Boot's own DTB, ${fdtcontroladdr})",
                        reader.where("DEVICE_TREE") or reader.raw.source)
    return dtb


def _calc_warnings(reader: _Reader) -> tuple[str, ...]:
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


def _host_kernel(reader: _Reader) -> tuple[Binary, bool]:
    """XEN, or LINUX for a bare-metal Linux boot (reference doc §1.5); one of them is needed."""
    xen, linux = reader.binary("XEN"), reader.binary("LINUX")
    if xen and linux:
        raise UserError("LINUX: set XEN or LINUX, not both (LINUX boots Linux without Xen)",
                        reader.where("LINUX"))
    if linux:
        return linux, True
    return reader.required_binary("XEN"), False


def _check_no_dom0(reader: _Reader, num_domus: int) -> None:
    for name in ("DOM0_KERNEL", "DOM0_RAMDISK", "DOM0_ROOTFS", "XEN_CMD", "DOM0_CMD",
                 "DOM0_LOAD"):
        if reader.where(name):
            raise UserError(f"{name}: a bare-metal LINUX boot has no Xen or dom0; remove it or "
                            "set XEN instead of LINUX", reader.where(name))
    if num_domus:
        raise UserError("NUM_DOMUS: a bare-metal LINUX boot has no domUs; set it to 0 or set "
                        "XEN instead of LINUX", reader.where("NUM_DOMUS"))


def _covering_load_cmd(boot: BootOptions, domus: tuple[DomU, ...],
                       has_dom0: bool) -> str | None:
    """Without LOAD_CMD, XEN_LOAD may stand in when the per-image keys cover every file."""
    covered = {i for i, _ in boot.domu_load}
    if boot.xen_load and (boot.linux_cmd or boot.dom0_load or not has_dom0) and all(
            d.index in covered for d in domus if d.boots_with_xen):
        return boot.xen_load
    return None


def _output_names(reader: _Reader, options: Options, strict: bool = True
                  ) -> tuple[str, str, str]:
    """UBOOT_SOURCE, UBOOT_SCRIPT and FDTEDIT, with -o NAME winning over the first two.

    Names from the config are normalised and must stay inside the output directory (a
    UserError naming the key otherwise; with `strict` False such a name is replaced by its
    default, so that cleaning up after a failure never touches a file outside); -o may point
    anywhere, as vendor build systems rely on (`-o ${WORKDIR}/xen_boot`).
    """
    if options.output_name:
        problem = word_problem(options.output_name)
        if problem is not None and strict:
            raise UserError(f"-o: the output name {options.output_name} {problem}")
        uboot_source = f"{options.output_name}.source"
        uboot_script = f"{options.output_name}.scr"
    else:
        uboot_source = _config_output_name(reader, options, "UBOOT_SOURCE", strict) or "boot.source"
        uboot_script = (_config_output_name(reader, options, "UBOOT_SCRIPT", strict)
                        or f"{_stem(uboot_source)}.scr")
    fdtedit = (_config_output_name(reader, options, "FDTEDIT", strict)
               or f"{_stem(uboot_source)}.dtb")
    return uboot_source, uboot_script, fdtedit


def _config_output_name(reader: _Reader, options: Options, name: str, strict: bool = True
                        ) -> str | None:
    """An output name given in the config, normalised inside the output directory; None when
    unset (or, not `strict`, when it points outside)."""
    value = reader.raw.values.get((name, None))
    if value is None or not value.text:
        return None
    normal, problem = output_name_problem(options.output_dir or options.root_dir, value.text)
    if problem is None:
        return normal
    if strict:
        raise UserError(f"{name}: {problem}", value.where)
    return None


def _fit_lookup(reader: _Reader, options: Options
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


def output_paths(raw: RawConfig, options: Options) -> list[Path]:
    """Where a build of `raw` writes its outputs, even if `raw` does not validate.

    A failed build removes them, as the original did, so a stale boot.scr from an earlier
    config is never taken for the result of this one.
    """
    out_dir = options.output_dir or options.root_dir
    reader = _Reader(raw)
    names = list(_output_names(reader, options, strict=False))
    fit = (_config_output_name(reader, options, "FIT", strict=False)
           or (f"{_stem(names[0])}.fit" if options.fit else None))
    return [out_dir / name for name in names + ([fit] if fit else [])]


def _stem(name: str) -> str:
    return name[: -len(".source")] if name.endswith(".source") else name


def _bootargs(reader: _Reader, name: str, index: int | None = None) -> str:
    return _check_quotes(reader.text(name, index) or "", reader.label(name, index),
                         reader.where(name, index))


def _check_quotes(text: str, label: str, where: str | None) -> str:
    # The value lands inside "..." of a U-Boot `fdt set` command, which has no escape for '"'.
    if '"' in text:
        raise UserError(f"{label}: a double quote cannot appear in a command line", where)
    return text.strip()


def _deduce_dom0_root(load_cmd: str, rootfs: Binary | None) -> str:
    """The seed's `root=` for dom0: the ramdisk, or partition p+1 of the load command's device."""
    if rootfs is None:
        return "root=/dev/ram0"
    words = load_cmd.split()
    device = next((w for w in words if ":" in w), "")
    dev_text, _, part_text = device.partition(":")
    kind = next((w for w in ("mmc", "scsi", "virtio") if w in words), None)
    if kind is None or not dev_text.isdigit() or not part_text.isdigit():
        raise UserError(
            f"cannot deduce dom0's root= from load command '{load_cmd}' (only mmc, scsi and "
            "virtio devices like 'load mmc 0:1'); add root= to DOM0_CMD",
            "DOM0_ROOTFS",
        )
    dev, part = int(dev_text), int(part_text) + 1
    if kind == "mmc":
        return f"root=/dev/mmcblk{dev}p{part}"
    letter = chr(ord("a") + dev)
    return f"root=/dev/{'sd' if kind == 'scsi' else 'vd'}{letter}{part}"


def _build_domu(reader: _Reader, i: int, has_dom0: bool = True, num_cpupools: int = 0) -> DomU:
    noboot = reader.flag("DOMU_NOBOOT", i)
    rootfs = reader.binary("DOMU_ROOTFS", i)
    kernel = reader.binary("DOMU_KERNEL", i)
    if kernel is None and not noboot and rootfs is None:
        raise UserError(f"DOMU_KERNEL[{i}] is required for a domU that Xen boots "
                        f"(NUM_DOMUS is {reader.count('NUM_DOMUS')})", reader.where("NUM_DOMUS"))
    mem = reader.count("DOMU_MEM", i, unit="MiB")
    vcpus = reader.count("DOMU_VCPUS", i)
    if mem == 0:
        raise UserError(f"DOMU_MEM[{i}]: must be at least 1 MiB", reader.where("DOMU_MEM", i))
    if vcpus == 0:
        raise UserError(f"DOMU_VCPUS[{i}]: must be at least 1", reader.where("DOMU_VCPUS", i))
    props = build_domu_props(reader.raw.values, reader.raw.source, i, has_dom0=has_dom0,
                             vcpus=vcpus, num_cpupools=num_cpupools)
    if props.static_mem:
        kib = props.static_mem_kib
        if reader.where("DOMU_MEM", i) is not None and mem * 1024 != kib:
            raise UserError(f"DOMU_MEM[{i}] is {mem} MiB but DOMU_STATIC_MEM[{i}] adds up to "
                            f"{kib} KiB: leave DOMU_MEM[{i}] out", reader.where("DOMU_MEM", i))
        mem = -(-kib // 1024)
    cmd = _bootargs(reader, "DOMU_CMD", i)
    if not props.vpl011 and not reader.raw.values.get(("DOMU_CMD", i)):
        cmd = ""  # upstream: no console=ttyAMA0 without the virtual PL011
    return DomU(
        index=i,
        kernel=kernel,
        cmd=cmd,
        ramdisk=reader.binary("DOMU_RAMDISK", i),
        passthrough_dtb=reader.binary("DOMU_PASSTHROUGH_DTB", i),
        mem_mib=mem,
        vcpus=vcpus,
        noboot=noboot,
        rootfs=rootfs,
        cmd_given=reader.given("DOMU_CMD", i),
        props=props,
        driver_domain=reader.flag("DOMU_DRIVER_DOMAIN", i),
    )


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


class _Reader:
    """Typed access to raw values with the settings table's defaults and error places."""

    def __init__(self, raw: RawConfig, root: Path | None = None) -> None:
        self.raw = raw
        self.root = root  # paths of binaries are made relative to it (board_path)

    def setting(self, name: str) -> Setting:
        return SETTINGS_BY_NAME[name]

    def label(self, name: str, index: int | None = None) -> str:
        return name if index is None else f"{name}[{index}]"

    def where(self, name: str, index: int | None = None) -> str | None:
        value = self.raw.values.get((name, index))
        return value.where if value else None

    def given(self, name: str, index: int | None = None) -> str | None:
        """The value as the user wrote it (stripped), None when unset or empty: no default."""
        value = self.raw.values.get((name, index))
        return value.text.strip() if value is not None and value.text else None

    def text(self, name: str, index: int | None = None) -> str | None:
        value = self.raw.values.get((name, index))
        if value is not None and value.text != "":
            return value.text
        return self.setting(name).default

    def required(self, name: str) -> str:
        text = self.text(name)
        if not text:
            raise UserError(f"{name} is required but not set", self.raw.source)
        return text

    def address(self, name: str) -> int:
        text = self.required(name)
        value = parse_address(text)
        if value is None:
            raise UserError(f"{name}: expected an address like 0x40000000, got '{text}'"
                            f"{number_hint(text)}", self.where(name))
        if value >> 64:
            raise UserError(f"{name}: {value:#x} does not fit in 64 bits", self.where(name))
        return value

    def count(self, name: str, index: int | None = None, unit: str = "") -> int:
        text = self.text(name, index) or "0"
        value = parse_count(text)
        if value is None:
            what = f"a whole number of {unit}" if unit else "a whole number"
            raise UserError(f"{self.label(name, index)}: expected {what}, got '{text}'"
                            f"{number_hint(text)}", self.where(name, index))
        return value

    def flag(self, name: str, index: int | None = None) -> bool:
        value = self.raw.values.get((name, index))
        return value is not None and is_set(value.text)

    def binary(self, name: str, index: int | None = None) -> Binary | None:
        text = self.text(name, index)
        if not text:
            return None
        path = board_path(self.root, text)[0] if self.root is not None else text
        return Binary(self.label(name, index), path, self.where(name, index) or self.raw.source)

    def counted_binaries(self, name: str, count_name: str) -> tuple[Binary, ...]:
        """`NAME[0]` to `NAME[COUNT-1]` (DT_OVERLAY, BOOT_AUX_FILE), each of which must be set."""
        count = self.count(count_name)
        found = []
        for index in range(count):
            binary = self.binary(name, index)
            if binary is None:
                raise UserError(f"{name}[{index}] is not set ({count_name} is {count})",
                                self.where(count_name))
            found.append(binary)
        return tuple(found)

    def required_binary(self, name: str) -> Binary:
        self.required(name)
        binary = self.binary(name)
        if binary is None:  # unreachable: required() raised
            raise UserError(f"{name} is required but not set", self.raw.source)
        return binary


def check_key(name: str, index: str | None, where: str) -> RawKey | None:
    """The raw key of one bash assignment, or None for a name that is not an ImageBuilder key.

    Which unknown names deserve a warning is the reader's choice (`config_load`): it knows which
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
