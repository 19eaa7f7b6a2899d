"""Every ImageBuilder config key, once: the table that drives parsing, defaults and the docs.

`SETTINGS` is the single source of truth: each row gives a key's kind and parse rule (a NUMBER's
range, a CHOICE's words), its default and its help. `reader.KeyReader` reads every key through
its row, so keys of one kind behave alike, and a default is written nowhere else. The README's
key reference is generated from it (`render_key_reference`) and a test keeps the two in sync.

Adding a plain key (one the device tree or script takes as it is):
1. a row here: name, per domU or not, kind, default (None: unset), help, origin, and its rule
   (`low`/`high`/`unit`/`what` for a NUMBER, `choices` for a CHOICE);
2. one field in the model class it belongs to (`model.DomU`, `domu_props.DomUProps`,
   `boot_options.BootOptions`), marked `field(metadata=from_key("KEY"))`: `read_fields` fills
   it through the row, with no reading code;
3. one planner line that uses it (a domU property is one entry of `plan.chosen`'s
   property list);
4. tests: the value landing in the output, and its rule's one-line error; then regenerate
   README.md's key reference.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from enum import Enum


class Kind(Enum):
    """How a key's text value is read."""

    PATH = "path"  # an input file, relative to the -d directory
    OUTPUT = "output"  # an output file name, relative to the output directory
    TEXT = "text"  # free text (command lines, load commands)
    ADDRESS = "address"  # a 64-bit number of bytes, usually hex (0x40000000)
    NUMBER = "number"  # a whole number, decimal or 0x hex, within the row's range
    FLAG = "flag"  # set/unset: empty, 0, n, no, false mean unset
    CHOICE = "choice"  # one word of the row's closed list (any case)


@dataclass(frozen=True)
class Setting:
    """One config key: its name, whether it is per-domU (`KEY[n]`), how it is read (`kind` and
    its rule: `low`/`high` for a NUMBER, `choices` for a CHOICE), its default (as the user
    would write it; the one place it is written), its help and where it comes from."""

    name: str
    per_domu: bool
    kind: Kind
    default: str | None
    help: str
    origin: str  # "seed" (ImageBuilder 2021), "upstream <year>", or "ibtasks"
    required: bool = False
    low: int = 0  # NUMBER: the smallest value accepted
    high: int | None = None  # NUMBER: the largest value accepted; None: no limit
    unit: str = ""  # NUMBER: what one is ("MiB"), for messages and the docs
    what: str = "a number"  # NUMBER with `high`: the noun of "expected <what> from 0 to 988"
    choices: tuple[str, ...] = ()  # CHOICE: the accepted words, lower case

    def describe_values(self) -> str:
        """The row's rule in words, for the README: `>= 1 MiB`, `0 to 988`, `gpt, dos`."""
        unit = f" {self.unit}" if self.unit else ""
        if self.kind is Kind.NUMBER:
            if self.high is not None:
                return f"{self.low} to {self.high}{unit}"
            return f">= {self.low}{unit}"
        if self.kind is Kind.CHOICE:
            return ", ".join(self.choices)
        return ""


# How the original reads numbers: addresses go through bash arithmetic (`$((MEMORY_START +
# offset))`), which takes decimal, 0x hex and, with a leading 0, octal; counts go through
# `[ $i -lt $NUM_DOMUS ]` and `$((DOMU_MEM * 1024))`; every NUMBER key alike. We take ASCII
# decimal and 0x hex only: never Python's extras (`0x4000_0000`, `0o17`, `0b1`, Unicode
# digits), and never a leading-0 number, which bash would read as octal where the user most
# likely meant decimal.
_ADDRESS = re.compile(r"0[xX][0-9a-fA-F]+|0|[1-9][0-9]*")
_OCTAL_LOOKING = re.compile(r"0[0-9]+")
OCTAL_HINT = "a leading 0 makes bash read it as octal"

FALSE_WORDS = frozenset({"", "0", "n", "no", "false", "off"})
TRUE_WORDS = frozenset({"1", "y", "yes", "true", "on"})


def parse_address(text: str) -> int | None:
    """An ADDRESS value (bytes) as bash arithmetic reads it, or None when it is not a plain
    decimal or 0x hex literal. Blanks around the number are allowed (bash allows them)."""
    text = text.strip()
    return int(text, 0) if _ADDRESS.fullmatch(text) else None


def parse_count(text: str) -> int | None:
    """A NUMBER value (MiB, vCPUs, a number of domUs, ids, frames) or a number inside a text
    value, as bash arithmetic reads it, the way the original multiplies `$((DOMU_MEM*1024))`:
    decimal without a leading 0, or 0x hex (blanks around allowed); None otherwise. The row's
    range is checked by `reader.KeyReader.number`."""
    return parse_address(text)


def number_hint(text: str) -> str:
    """Why `text` is not read as a number, when there is more to say than "expected ...":
    `; a leading 0 makes bash read it as octal`, or ''."""
    return f"; {OCTAL_HINT}" if _OCTAL_LOOKING.fullmatch(text.strip()) else ""


def flag_word(text: str) -> bool | None:
    """A FLAG value: True for 1/y/yes/true/on, False for 0/n/no/false/off/empty (any case),
    None for anything else, which the original counts as set (it tests for a non-empty
    string)."""
    lowered = text.strip().lower()
    if lowered in FALSE_WORDS:
        return False
    return True if lowered in TRUE_WORDS else None


def is_set(text: str) -> bool:
    """Whether a FLAG value counts as set, as the original's non-empty test reads it, except
    that the no words (0, n, no, false, off) mean unset (see `flag_word`)."""
    return flag_word(text) is not False


# Limits of the ranged rows: the GIC's SPI range (Xen's vgic `nr_spis` limit, 1020 - 32),
# DOMID_FIRST_RESERVED - 1, and our bound on boot-time cpupools.
MAX_NR_SPIS = 1020 - 32
MAX_DOMID = 0x7FEF
MAX_CPUPOOLS = 64

DEFAULT_XEN_CMD = (
    "console=dtuart dtuart=serial0 dom0_mem=1G dom0_max_vcpus=1 bootscrub=0 vwfi=native sched=null"
)
DEFAULT_DOM0_CMD = "console=hvc0 earlycon=xen earlyprintk=xen clk_ignore_unused"
DEFAULT_DOMU_CMD = "console=ttyAMA0"

SETTINGS: tuple[Setting, ...] = (
    Setting("MEMORY_START", False, Kind.ADDRESS, None, "Start of RAM.", "seed", required=True),
    Setting("MEMORY_END", False, Kind.ADDRESS, None, "End of RAM (exclusive).", "seed",
            required=True),
    Setting("DEVICE_TREE", False, Kind.PATH, None,
            "The host DTB to load and edit; required unless `-s` is given, which then edits "
            "U-Boot's own control DTB (`${fdtcontroladdr}`), as upstream since 2025.", "seed"),
    Setting("XEN", False, Kind.PATH, None,
            "The Xen binary (not a uImage); required unless LINUX is set.", "seed",
            required=True),
    Setting("XEN_CMD", False, Kind.TEXT, DEFAULT_XEN_CMD,
            "Xen's command line (`/chosen xen,xen-bootargs`).", "seed"),
    Setting("DOM0_KERNEL", False, Kind.PATH, None,
            "Dom0's kernel; without it no dom0 is started (dom0less only; not with LINUX).",
            "seed"),
    Setting("DOM0_CMD", False, Kind.TEXT, DEFAULT_DOM0_CMD,
            "Dom0's command line; `root=` is added when missing (see root= deduction).", "seed"),
    Setting("DOM0_RAMDISK", False, Kind.PATH, None,
            "Dom0's ramdisk (cpio, plain or compressed; not a uImage).", "seed"),
    Setting("DOM0_ROOTFS", False, Kind.PATH, None,
            "Dom0's root filesystem archive: its own disk partition; sets dom0's `root=`.", "seed"),
    Setting("NUM_DOMUS", False, Kind.NUMBER, "0", "How many dom0less domUs follow.", "seed"),
    Setting("DOMU_KERNEL", True, Kind.PATH, None, "The domU's kernel.", "seed"),
    Setting("DOMU_CMD", True, Kind.TEXT, DEFAULT_DOMU_CMD,
            "The domU kernel's command line (`bootargs` of its kernel module).", "seed"),
    Setting("DOMU_RAMDISK", True, Kind.PATH, None, "The domU's ramdisk.", "seed"),
    Setting("DOMU_PASSTHROUGH_DTB", True, Kind.PATH, None,
            "Partial DTB for device assignment (xen.git docs/misc/arm/passthrough.txt).", "seed"),
    Setting("DOMU_MEM", True, Kind.NUMBER, "512", "The domU's memory in MiB.", "seed",
            low=1, unit="MiB"),
    Setting("DOMU_VCPUS", True, Kind.NUMBER, "1", "The domU's number of vCPUs.", "seed",
            low=1),
    Setting("DOMU_NOBOOT", True, Kind.FLAG, None,
            "Do not start this domU at boot; dom0 can create it later (xl config).", "seed"),
    Setting("DOMU_ROOTFS", True, Kind.PATH, None,
            "The domU's root filesystem archive (own disk partition; not started at boot).",
            "seed"),
    Setting("UBOOT_SOURCE", False, Kind.OUTPUT, "boot.source",
            "Name of the U-Boot script source written; `-o NAME` gives NAME.source.", "seed"),
    Setting("UBOOT_SCRIPT", False, Kind.OUTPUT, None,
            "Name of the U-Boot script image; default: UBOOT_SOURCE with `.scr`.", "seed"),
    Setting("LOAD_CMD", False, Kind.TEXT, None,
            "U-Boot load command prefix; `-t` wins over this key, and this key over a "
            "`LOAD_CMD` environment variable (the original's way).", "upstream 2021"),
    Setting("FDTEDIT", False, Kind.OUTPUT, None,
            "Name of the edited DTB written beside the script; default: UBOOT_SOURCE with "
            "`.dtb`.", "upstream 2021"),
    Setting("BOOT_FS", False, Kind.CHOICE, "fat",
            "disk-image: the boot partition's filesystem, `fat` (as upstream since 2022) or "
            "`ext4` (as the original); also `--boot-fs`.", "ibtasks", choices=("fat", "ext4")),
    Setting("PREEDITED_DTB", False, Kind.FLAG, None,
            "Load the edited DTB (FDTEDIT) instead of running `fdt` commands in U-Boot; "
            "also `--preedited-dtb`.", "ibtasks"),
    Setting("STRICT", False, Kind.FLAG, None,
            "Every warning (unknown or unused key, ...) is an error; also `--strict`.",
            "ibtasks"),
    Setting("CACHE", False, Kind.TEXT, None,
            "The shared cache, an OCI registry repository `oci://HOST[:PORT]/REPOSITORY`; "
            "`--cache` wins over this key, and this key over `IBTASKS_CACHE`.", "ibtasks"),
    Setting("CACHE_READ_ONLY", False, Kind.FLAG, None,
            "Take hits from the shared cache but upload nothing; `--cache-read-only` wins "
            "over this key, and this key (set or unset) over `IBTASKS_CACHE_READ_ONLY`.",
            "ibtasks"),
    # --- disk_image extras (upstream 2021-2022) ---
    Setting("PARTITION_TABLE", False, Kind.CHOICE, "gpt",
            "disk-image: `gpt`, or `dos` (MBR: up to 4 primary partitions, the boot partition "
            "bootable); also `--table`.", "ibtasks", choices=("gpt", "dos")),
    Setting("BOOT_PARTITION_SIZE", False, Kind.NUMBER, None,
            "disk-image: the boot partition's size, fixed (default: its files plus 16 MiB); a "
            "boot partition whose files no longer fit is an error; also `--boot-size`.",
            "ibtasks", low=1, unit="MiB"),
    Setting("GPT", False, Kind.FLAG, None,
            "disk-image: upstream's switch from DOS to GPT; GPT is already our default, so it "
            "only conflicts with `PARTITION_TABLE=dos`.", "upstream 2022"),
    Setting("NUM_BOOT_AUX_FILE", False, Kind.NUMBER, "0",
            "disk-image: how many `BOOT_AUX_FILE[n]` follow.", "upstream 2021"),
    Setting("BOOT_AUX_FILE", True, Kind.PATH, None,
            "disk-image: an extra file copied into the boot partition at its path; indexed "
            "0 to NUM_BOOT_AUX_FILE-1 (not per domU).", "upstream 2021"),
    Setting("DOMU_DRIVER_DOMAIN", True, Kind.FLAG, None,
            "disk-image: `driver_domain=1` in the domU's xl config.", "upstream 2022"),
    # --- FIT images (upstream 2021) ---
    Setting("FIT", False, Kind.OUTPUT, None,
            "Build this FIT image holding every binary, the edited DTB and the script "
            "(`boot_scr`) instead of boot.scr; `-f` names it after UBOOT_SOURCE (`boot.fit`).",
            "upstream 2021"),
    Setting("FIT_ENC_KEY_DIR", False, Kind.TEXT, None,
            "Sign the FIT's images (`sha1,rsa2048`) with KEY_DIR/HINT.key: write `KEY_DIR/HINT`; "
            "also `-k`. Signing runs `mkimage -F -r`.", "upstream 2021"),
    Setting("FIT_ENC_UB_DTB", False, Kind.PATH, None,
            "U-Boot's control DTB that gets the public key (KEY_DIR/HINT.crt), marked required; "
            "replaced atomically once signing succeeded; also `-u`.", "upstream 2021"),
    # --- domain and Xen properties in the device tree (config/domu_props.py, xen_props.py) ---
    Setting("DOM0_MEM", False, Kind.NUMBER, None,
            "Dom0's memory in MiB for the default XEN_CMD (`dom0_mem=<N>M`); unset keeps the "
            "seed's `dom0_mem=1G` (upstream's code uses 1500). An error with XEN_CMD.",
            "upstream 2022", low=1, unit="MiB"),
    Setting("DOM0_VCPUS", False, Kind.NUMBER, None,
            "Dom0's vCPUs for the default XEN_CMD (`dom0_max_vcpus=`, default 1). An error with "
            "XEN_CMD.", "upstream 2022", low=1),
    Setting("DOM0_COLORS", False, Kind.TEXT, None,
            "Dom0's LLC colours (`0-3,8`): `llc-coloring=on dom0-llc-colors=` in the default "
            "XEN_CMD.", "upstream 2022"),
    Setting("XEN_COLORS", False, Kind.TEXT, None,
            "Xen's LLC colours: `llc-coloring=on xen-llc-colors=` in the default XEN_CMD.",
            "upstream 2022"),
    Setting("XEN_STATIC_HEAP", False, Kind.TEXT, None,
            "`base size ...` pairs: `/chosen xen,static-heap`, in the root node's cell sizes.",
            "upstream 2023"),
    Setting("NUM_CPUPOOLS", False, Kind.NUMBER, "0", "How many boot-time cpupools follow.",
            "upstream 2022", high=MAX_CPUPOOLS, what="a count"),
    Setting("CPUPOOL", True, Kind.TEXT, None,
            "`cpu@a,cpu@b [scheduler]`: `/chosen/cpupool_<n>` (`xen,cpupool`) of /cpus nodes; "
            "indexed 0 to NUM_CPUPOOLS-1 (not per domU).", "upstream 2022"),
    Setting("DOMU_CPUPOOL", True, Kind.NUMBER, None,
            "Index of the CPUPOOL the domU starts in (`domain-cpupool`); below NUM_CPUPOOLS.",
            "upstream 2022", high=MAX_CPUPOOLS - 1, what="a cpupool index"),
    Setting("DOMU_ENHANCED", True, Kind.TEXT, None,
            "`xen,enhanced`: 1 `enabled`, 2 `no-xenstore`, 0 none; default `enabled` when "
            "there is a dom0.", "upstream 2022"),
    Setting("DOMU_VPL011", True, Kind.FLAG, "1",
            "0 omits `vpl011` (and the default DOMU_CMD `console=ttyAMA0`).", "upstream 2024"),
    Setting("DOMU_STATIC_MEM", True, Kind.TEXT, None,
            "`base size ...` pairs: `xen,static-mem`; the domU's memory is their sum.",
            "upstream 2022"),
    Setting("DOMU_DIRECT_MAP", True, Kind.FLAG, None,
            "`direct-map`; default on with DOMU_STATIC_MEM, invalid without.", "upstream 2022"),
    Setting("DOMU_SHARED_MEM", True, Kind.TEXT, None,
            "`ID [host] guest size` (`;` between regions): `xen,domain-shared-memory-v1` "
            "subnodes.", "upstream 2023"),
    Setting("DOMU_NR_SPIS", True, Kind.NUMBER, None, "`nr_spis`.", "upstream 2024",
            high=MAX_NR_SPIS),
    Setting("DOMU_GRANT_VER", True, Kind.NUMBER, None, "`max_grant_version`.",
            "upstream 2024", low=1, high=2, what="a grant table version"),
    Setting("DOMU_GRANT_FRAMES", True, Kind.NUMBER, None, "`max_grant_frames`.", "upstream 2024",
            low=1, high=0xFFFFFFFF),
    Setting("DOMU_MAPTRACK_FRAMES", True, Kind.NUMBER, None, "`max_maptrack_frames`.",
            "upstream 2024", high=0xFFFFFFFF),
    Setting("DOMU_CAPS", True, Kind.TEXT, None,
            "`capabilities`: control, hardware, xenstore, dom0, none (combine with `,`) or a "
            "number.", "upstream 2025"),
    Setting("DOMU_DOMID", True, Kind.NUMBER, None, "`domid`: the domain id.", "upstream 2025",
            high=MAX_DOMID, what="a domain id"),
    Setting("DOMU_COLORS", True, Kind.TEXT, None,
            "LLC colours: `llc-colors` string; adds `llc-coloring=on` to the default XEN_CMD.",
            "upstream 2022"),
    Setting("DOMU_STATIC_EVTCHNS", True, Kind.TEXT, None,
            "`local-port remote-domU remote-port; ...`: `xen,evtchn-v1` subnodes; both ends "
            "must be listed.", "upstream 2025"),
    Setting("DOMU_VCPU_HARD_AFFINITY", True, Kind.TEXT, None,
            "`[n,v]` (bash `declare -A`): pCPUs of vCPU v (`0-3,5`): `vcpu<v>` subnode "
            "`hard-affinity`.", "upstream 2025"),
    Setting("DOMU_PASSTHROUGH_PATHS", True, Kind.TEXT, None,
            "Host DT node paths given to the domU: `xen,passthrough` on each (must exist).",
            "upstream 2021"),
    Setting("DOMU_PASSTHROUGH_PROP", True, Kind.CHOICE, None,
            "`passthrough`.", "upstream 2025", choices=("enabled", "disabled")),
    Setting("DOMU_TRAP_UNMAP", True, Kind.NUMBER, None, "`trap-unmapped-accesses`.",
            "upstream 2025", high=1, what="0 or 1"),
    # ---- boot command, per-image loads, extra modules, bare-metal Linux ----
    Setting("BOOT_CMD", False, Kind.CHOICE, "booti",
            "The script's last command: `booti`, `bootm` (Xen wrapped as a uImage `<XEN>.ub`), "
            "`bootz`, `bootefi` (no `-`), or `none` (sets `host_kernel_addr`/`host_fdt_addr`).",
            "upstream 2022", choices=("booti", "bootm", "bootz", "bootefi", "none")),
    Setting("APPEND_EXTRA_CMDS", False, Kind.PATH, None,
            "A text file whose lines are appended just before the boot command.",
            "upstream 2022"),
    Setting("DBG_FDT_PRINT_CHOSEN", False, Kind.FLAG, None,
            "Add `fdt print /chosen` after `setenv fdt_high`, to see the edits at boot.",
            "upstream 2025"),
    Setting("XEN_LOAD", False, Kind.TEXT, None,
            "Load command (or `-t` alias) for Xen or LINUX, the policy, overlays, DTB and "
            "bitstream; default LOAD_CMD.", "upstream 2025"),
    Setting("DOM0_LOAD", False, Kind.TEXT, None,
            "Load command (or `-t` alias) for dom0's kernel and ramdisk; dom0's `root=` is "
            "deduced from it; default LOAD_CMD.", "upstream 2025"),
    Setting("DOMU_LOAD", True, Kind.TEXT, None,
            "Load command (or `-t` alias) for the domU's kernel, ramdisk and passthrough DTB; "
            "default LOAD_CMD.", "upstream 2025"),
    Setting("XEN_POLICY", False, Kind.PATH, None,
            "An XSM (FLASK) policy, loaded after Xen: `/chosen/xen-policy@ADDR`.",
            "upstream 2025"),
    Setting("NUM_DT_OVERLAY", False, Kind.NUMBER, "0", "How many DT_OVERLAY[n] follow.",
            "upstream 2021"),
    Setting("DT_OVERLAY", True, Kind.PATH, None,
            "A DT overlay (indexed by overlay, not domU), loaded before the DTB, applied with "
            "`fdt apply` (and offline with `fdtoverlay` to FDTEDIT).", "upstream 2021"),
    Setting("BITSTREAM", False, Kind.PATH, None,
            "An FPGA bitstream, loaded after the DTB; `fpga load 0 ADDR SIZE` before the boot "
            "command.", "upstream 2021"),
    Setting("LINUX", False, Kind.PATH, None,
            "Bare-metal mode instead of XEN: the Linux kernel booted with the DTB.",
            "upstream 2021"),
    Setting("LINUX_CMD", False, Kind.TEXT, "earlycon console=ttyPS0,115200",
            "Bare-metal Linux's command line (`/chosen bootargs`); `root=/dev/ram0` is added "
            "when missing.", "upstream 2021"),
    Setting("LINUX_RAMDISK", False, Kind.PATH, None,
            "Bare-metal Linux's ramdisk (`linux,initrd-start`/`-end`).", "upstream 2021"),
)

SETTINGS_BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}


def suggest_key(name: str) -> str | None:
    """The known key closest to a misspelt `name`, if any is close."""
    matches = difflib.get_close_matches(name, SETTINGS_BY_NAME, n=1, cutoff=0.75)
    return matches[0] if matches else None


def render_key_reference() -> str:
    """The README's config-key table, generated from `SETTINGS`."""
    lines = [
        "| Key | Per domU | Kind | Values | Default | Origin | Meaning |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in SETTINGS:
        default = "(required)" if s.required else (f"`{s.default}`" if s.default else "")
        name = f"`{s.name}[n]`" if s.per_domu else f"`{s.name}`"
        lines.append(
            f"| {name} | {'yes' if s.per_domu else ''} | {s.kind.value} | {s.describe_values()} "
            f"| {default} | {s.origin} | {s.help} |"
        )
    return "\n".join(lines) + "\n"
