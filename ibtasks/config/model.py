"""The validated configuration: frozen dataclasses, one per concept (`Config`, `DomU`), and the
command-line `Options` that complete a config. `build.build_config` makes them from raw values.

Paths are relative to `Config.root_dir` (inputs) and `Config.output_dir` (outputs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ibtasks.config.boot_options import BootOptions
from ibtasks.config.domu_props import DomUProps
from ibtasks.config.fit_settings import FitSettings
from ibtasks.config.reader import Binary, from_key
from ibtasks.config.xen_props import XenProps


@dataclass(frozen=True)
class DomU:
    """One dom0less domU, `DOMU_*[index]`; fields marked `from_key` are read through their
    key's row of the settings table (`config.domu.read_domu`)."""

    index: int
    kernel: Binary | None = field(metadata=from_key("DOMU_KERNEL"))
    cmd: str
    ramdisk: Binary | None = field(metadata=from_key("DOMU_RAMDISK"))
    passthrough_dtb: Binary | None = field(metadata=from_key("DOMU_PASSTHROUGH_DTB"))
    mem_mib: int
    vcpus: int = field(metadata=from_key("DOMU_VCPUS"))
    noboot: bool = field(metadata=from_key("DOMU_NOBOOT"))
    rootfs: Binary | None = field(metadata=from_key("DOMU_ROOTFS"))
    cmd_given: str | None  # DOMU_CMD as written, None when unset (xl configs differ)
    props: DomUProps  # upstream's extras (domu_props.py)
    driver_domain: bool = field(metadata=from_key("DOMU_DRIVER_DOMAIN"))

    @property
    def boots_with_xen(self) -> bool:
        """Xen starts it at boot; the seed skips domUs with a rootfs or DOMU_NOBOOT."""
        return not self.noboot and self.rootfs is None


@dataclass(frozen=True)
class Config:
    """Everything one build needs, validated by `build.build_config`: frozen, so a task can key
    on it. Input paths (`Binary.path`) are relative to `root_dir`, output names to
    `output_dir`; addresses (`memory_start`, `memory_end`) are in bytes, domU memory in MiB
    (`DomU.mem_mib`). `warnings` are what the CLI prints before building."""

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
    boot_fs: str  # disk-image: fat or ext4
    warnings: tuple[str, ...] = field(compare=False)
    environ_used: tuple[str, ...] = field(compare=False)
    # --strict or STRICT=y: warnings found while building (the layout's) are errors too.
    strict: bool
    partition_table: str  # disk-image: gpt or dos
    boot_aux_files: tuple[Binary, ...]  # disk-image: BOOT_AUX_FILE[n]
    fit: FitSettings | None  # FIT mode (-f, FIT): see plan.fit
    xen_props: XenProps  # heap, colours, pools (xen_props.py)
    boot: BootOptions  # boot command, loads (boot_options.py)
    boot_partition_mib: int | None = None  # disk-image: BOOT_PARTITION_SIZE or --boot-size

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


@dataclass(frozen=True)
class Options:
    """Command-line choices that override or complete the config file, one field per flag of
    the original scripts (`uboot-script-gen`, `disk_image`).

    `root_dir` is -d: every input path of the config is relative to it (a `str` is accepted
    and made a `Path`); `output_dir` is --output-dir (default: `root_dir`, as the original);
    `load_cmd` is -t after its shorthands are resolved (`config.load_command.resolve_load_cmd`:
    tftp, sd, scsi, usb, virtio) and wins over LOAD_CMD; `output_name` is -o NAME
    (NAME.source, NAME.scr, NAME.dtb); `boot_fs` (fat or ext4) and `partition_table` (gpt or
    dos) are disk-image's --boot-fs and --table and win over BOOT_FS and PARTITION_TABLE;
    `fit`, `fit_key_dir`, `fit_u_boot_dtb` are -f, -k KEY_DIR/HINT and -u DTB; `prepend_path`
    is -p; `calc` is -s (U-Boot computes addresses at boot); `preedited_dtb` loads the edited
    DTB instead of running fdt commands; `strict` makes every warning an error (as STRICT=y).
    """

    root_dir: Path
    load_cmd: str | None = None  # from -t, already resolved; wins over LOAD_CMD
    output_name: str | None = None  # -o NAME: NAME.source and NAME.scr
    output_dir: Path | None = None  # default: root_dir, as the seed
    preedited_dtb: bool = False
    boot_fs: str | None = None  # disk-image --boot-fs, wins over BOOT_FS
    partition_table: str | None = None  # disk-image --table, wins over PARTITION_TABLE
    boot_size: int | None = None  # disk-image --boot-size MiB, wins over BOOT_PARTITION_SIZE
    fit: bool = False  # -f
    fit_key_dir: str | None = None  # -k KEY_DIR/HINT, wins over FIT_ENC_KEY_DIR
    fit_u_boot_dtb: str | None = None  # -u DTB, wins over FIT_ENC_UB_DTB
    prepend_path: str = ""  # -p PREPEND_PATH
    calc: bool = False  # -s: addresses computed by U-Boot
    strict: bool = False  # --strict: every warning is an error (also STRICT=y)

    def __post_init__(self) -> None:
        # An embedding dodo.py may pass plain strings (`Options(root_dir="build")`).
        for name in ("root_dir", "output_dir"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))
