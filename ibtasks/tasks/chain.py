"""uboot-script-gen then disk-image: the disk carries the script the user generated.

ImageBuilder's `disk_image` does not make a boot script: it copies `$UBOOT_SCRIPT` from its -d
directory, the one `uboot-script-gen -t "load mmc 1:1"` wrote, and uses its own -t only for
what it deduces (the xl configs' partitions). So that the pair composes the same way, every
successful uboot-script-gen records what it generated in
`<output dir>/.ibtasks/generated/<UBOOT_SOURCE>.json`: its flags, its output names and the
sha256 of each output. disk-image then decides (`plan_boot_script`):

- the script was written by uboot-script-gen (recorded, same digest, or since removed by a
  failed run): it is made again with the recorded flags (-t, -o, -p, -s, -f, -k, -u,
  --preedited-dtb), so it follows changed inputs but keeps the user's load command;
- a script that ibtasks did not write (no record, or another digest): copied as is, with the
  UBOOT_SOURCE and edited DTB beside it when present, and a note;
- no script and no record: disk-image generates it with its own flags (and records that, so a
  later disk-image regenerates it with its then flags).

A record that cannot be read is treated as absent.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ibtasks.config.build import build_config
from ibtasks.config.load_command import resolve_load_cmd
from ibtasks.config.loader import read_config_file
from ibtasks.config.model import Config, Options
from ibtasks.errors import UserError
from ibtasks.fsutil import file_sha256 as sha256_of
from ibtasks.fsutil import write_atomic
from ibtasks.plan.outputs import outputs

RECORD_VERSION = 1
BY_SCRIPT_GEN = "uboot-script-gen"
BY_DISK_IMAGE = "disk-image"


@dataclass(frozen=True)
class ScriptFlags:
    """The uboot-script-gen flags that shape its outputs, as the user gave them."""

    load_cmd: str | None = None  # -t as given (None: the config's LOAD_CMD)
    output_name: str | None = None  # -o NAME
    prepend_path: str = ""  # -p
    calc: bool = False  # -s
    fit: bool = False  # -f
    fit_key_dir: str | None = None  # -k KEY_DIR/HINT, relative to -d
    fit_u_boot_dtb: str | None = None  # -u DTB, relative to -d
    preedited_dtb: bool = False  # --preedited-dtb

    def describe(self) -> str:
        """The flags as a command line fragment, for messages."""
        words = [f"-t '{self.load_cmd}'" if self.load_cmd else "LOAD_CMD of the config"]
        words += [f"-o {self.output_name}"] if self.output_name else []
        words += [f"-p {self.prepend_path}"] if self.prepend_path else []
        words += ["-s"] if self.calc else []
        words += ["-f"] if self.fit else []
        words += [f"-k {self.fit_key_dir}"] if self.fit_key_dir else []
        words += [f"-u {self.fit_u_boot_dtb}"] if self.fit_u_boot_dtb else []
        words += ["--preedited-dtb"] if self.preedited_dtb else []
        return " ".join(words)


@dataclass(frozen=True)
class Generated:
    """One record: who wrote the outputs, with which flags, and their sha256 by name."""

    by: str
    flags: ScriptFlags
    script: str  # the script image (UBOOT_SCRIPT, or the FIT), relative to the output dir
    outputs: dict[str, str] = field(default_factory=dict)


def script_flags(args: Any) -> ScriptFlags:
    """The flags of a parsed command line (disk-image lacks the FIT ones and -o NAME)."""
    return ScriptFlags(
        load_cmd=args.load_cmd,
        output_name=getattr(args, "output_name", None),
        prepend_path=getattr(args, "prepend_path", ""),
        calc=getattr(args, "calc", False),
        fit=getattr(args, "fit", False),
        fit_key_dir=getattr(args, "fit_key_dir", None),
        fit_u_boot_dtb=getattr(args, "fit_u_boot_dtb", None),
        preedited_dtb=bool(args.preedited_dtb),
    )


def record_path(output_dir: Path, uboot_source: str) -> Path:
    """Where the record of the output set named by `uboot_source` lives."""
    return output_dir / ".ibtasks" / "generated" / f"{urllib.parse.quote(uboot_source, '')}.json"


def file_sha256(path: Path) -> str | None:
    """The sha256 of a file, None when it cannot be read."""
    try:
        return sha256_of(path)
    except OSError:
        return None


def script_name(config: Config) -> str:
    """The script image a build of `config` writes: the FIT in FIT mode, else UBOOT_SCRIPT."""
    return config.fit.name if config.fit else config.uboot_script


def write_generated(config: Config, outputs: list[Path], flags: ScriptFlags, by: str,
                    digest: Callable[[Path], str | None] = file_sha256) -> None:
    """Record the outputs just written (atomically); `outputs` are under config.output_dir.
    `digest` gives each output's sha256: the build's output record has them already
    (`OutputGuard.recorded_sha256`), so they need not be read again."""
    body = {
        "version": RECORD_VERSION,
        "by": by,
        "flags": asdict(flags),
        "script": script_name(config),
        "outputs": {os.path.relpath(p, config.output_dir): digest(p) for p in outputs},
    }
    write_atomic(record_path(config.output_dir, config.uboot_source),
                 (json.dumps(body, indent=1, sort_keys=True) + "\n").encode())


def read_generated(output_dir: Path, uboot_source: str) -> Generated | None:
    """The record of an output set, or None when absent, unreadable or of another version."""
    try:
        body: Any = json.loads(record_path(output_dir, uboot_source).read_text())
        if not isinstance(body, dict) or body.get("version") != RECORD_VERSION:
            return None
        flags = ScriptFlags(**body["flags"])
        outputs = body["outputs"]
        if not (isinstance(body["by"], str) and isinstance(body["script"], str)
                and isinstance(outputs, dict)):
            return None
        return Generated(body["by"], flags, body["script"], dict(outputs))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def other_records(output_dir: Path, uboot_source: str) -> list[Generated]:
    """uboot-script-gen's records of the other output sets (other -o names) in `output_dir`."""
    directory = record_path(output_dir, uboot_source).parent
    found = []
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        name = urllib.parse.unquote(path.name[: -len(".json")])
        record = read_generated(output_dir, name) if name != uboot_source else None
        if record is not None and record.by == BY_SCRIPT_GEN:
            found.append(record)
    return found


@dataclass(frozen=True)
class BootScriptPlan:
    """What disk-image puts on the boot partition for the script.

    `config` generates the boot files (None: the user's script is copied as is); `flags` and
    `by` are recorded after a successful build; `copied` are the files taken as they are.
    """

    config: Config | None
    flags: ScriptFlags
    by: str
    copied: tuple[Path, ...] = ()
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


def plan_boot_script(disk_config: Config, config_file: Path, own: ScriptFlags,
                     base: Options) -> BootScriptPlan:
    """Decide how disk-image gets its script (see the module docstring).

    `disk_config` is the config as disk-image's flags build it, `own` those flags, `base` its
    options (root and output directories, boot filesystem, table). Raises UserError when the
    recorded flags and disk-image's conflict, or when the script the config names is missing
    but uboot-script-gen wrote another output set here.
    """
    out = disk_config.output_dir
    script = script_name(disk_config)
    record = read_generated(out, disk_config.uboot_source)
    current = file_sha256(out / record.script) if record is not None else None
    if record is not None and record.by == BY_SCRIPT_GEN and (
            current is None or current == record.outputs.get(record.script)):
        flags = record.flags
        if own.preedited_dtb and not flags.preedited_dtb:
            raise UserError(
                f"--preedited-dtb: {record.script} was generated by uboot-script-gen without "
                "--preedited-dtb; pass it to uboot-script-gen too, or leave it out here")
        options = replace(base, load_cmd=resolve_load_cmd(flags.load_cmd) if flags.load_cmd
                          else None, output_name=flags.output_name,
                          prepend_path=flags.prepend_path, calc=flags.calc, fit=flags.fit,
                          fit_key_dir=flags.fit_key_dir, fit_u_boot_dtb=flags.fit_u_boot_dtb,
                          preedited_dtb=flags.preedited_dtb)
        config = build_config(read_config_file(config_file), options)
        notes: tuple[str, ...] = ()
        if config.load_cmd != disk_config.load_cmd:
            notes = (f"{record.script}: made with uboot-script-gen's flags ({flags.describe()}), "
                     f"as its last run here; disk-image's -t '{disk_config.load_cmd}' sets the "
                     "xl configs' partitions only, as ImageBuilder's disk_image",)
        return BootScriptPlan(config, flags, BY_SCRIPT_GEN, notes=notes)
    written = record.outputs.get(record.script) if record is not None else None
    if record is not None and record.by == BY_DISK_IMAGE and current in (None, written):
        return BootScriptPlan(disk_config, own, BY_DISK_IMAGE)
    if record is not None and current is not None:
        script = record.script
    if (out / script).is_file():
        # As the original copies UBOOT_SOURCE beside it; the edited DTB too, when present.
        beside = [p for p in outputs(disk_config) if p != out / script and p.is_file()]
        path = record_path(out, disk_config.uboot_source)
        if record is None and path.exists():
            # Our own script may be behind it, stale: say so where --strict sees it.
            return BootScriptPlan(None, own, "", (out / script, *beside), warnings=(
                f"{path}: unreadable record of what uboot-script-gen wrote; {script} is copied "
                "as it is, unchecked: run uboot-script-gen again to bring it up to date",))
        return BootScriptPlan(None, own, "", (out / script, *beside), (
            f"{script}: not written by ibtasks (or changed since); copied as it is, unchecked",))
    others = other_records(out, disk_config.uboot_source)
    if others:
        names = ", ".join(sorted(r.script for r in others))
        raise UserError(
            f"{script}: not in {out}, but uboot-script-gen wrote {names} here "
            f"({others[0].flags.describe()}); disk-image puts UBOOT_SCRIPT on the disk: run "
            "uboot-script-gen without -o, or name that script in UBOOT_SOURCE/UBOOT_SCRIPT")
    return BootScriptPlan(disk_config, own, BY_DISK_IMAGE)
