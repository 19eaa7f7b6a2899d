"""Load a config file of either syntax into a `RawConfig`: bash (the original's) or YAML.

The readers only find values and where they were written; `config.build_config` validates them.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path

from ibtasks.config.bash_reader import Assignment, iter_bash_config
from ibtasks.config.build import build_config, check_key, check_strict, is_strict
from ibtasks.config.model import Config, Options
from ibtasks.config.reader import RawConfig, RawKey, RawValue
from ibtasks.config.settings import suggest_key
from ibtasks.errors import UserError, at_line

BOM = "\ufeff"

# Real configs are a few KiB; anything near this is a mistake (a log, an image, /dev/zero).
MAX_CONFIG_BYTES = 1024 * 1024

Warn = Callable[[str], None]


def read_config_bytes(path: Path) -> bytes:
    """The bytes of the config file `path`, at most `MAX_CONFIG_BYTES` (1 MiB).

    Only a regular file is read: a FIFO would block, `/dev/zero` never ends. The file is opened
    without blocking and checked on the open descriptor, so what is checked is what is read.
    Raises `UserError` naming the file when it is missing, unreadable, not a regular file or
    larger than 1 MiB.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError as exc:
        raise UserError(f"config file {path} does not exist") from exc
    except OSError as exc:
        raise UserError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise UserError(f"config file {path} is {_file_kind(mode)}, not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise UserError(f"cannot read config file {path}: {exc.strerror}") from exc
    finally:
        os.close(fd)
    if len(data) > MAX_CONFIG_BYTES:
        raise UserError(f"config file {path} is larger than {MAX_CONFIG_BYTES // 1024 // 1024} "
                        "MiB, the most a config may be: is it the right file?")
    return data


def _file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "a special file"


def read_config_file(path: Path, environ: Mapping[str, str] | None = None,
                     warn: Warn | None = None) -> RawConfig:
    """Read `path` as YAML when it ends in .yaml/.yml, else as an ImageBuilder bash config.

    `environ` (default `os.environ`) supplies `$VAR` expansions and a `LOAD_CMD` the config
    does not set: the original required LOAD_CMD from `-t` or the environment, so an
    exported LOAD_CMD still works; `-t` and the config's own LOAD_CMD come first.
    `warn` receives each warning as soon as it is found, so that warnings about earlier
    lines reach the user even when a later line is an error. Raises `UserError`.
    """
    data = read_config_bytes(path)
    recorder = RecordingEnviron(os.environ if environ is None else environ)
    if path.suffix in (".yaml", ".yml"):
        from ibtasks.config.yaml_reader import read_yaml_config  # pyyaml costs ~8 ms to import

        raw = read_yaml_config(data, str(path), warn)
    else:
        # Bash reads bytes: a Latin-1 comment is fine. Undecodable bytes are kept as
        # surrogates and refused only where a value is used (see raw_from_bash).
        text = data.decode("utf-8", errors="surrogateescape")
        bom = text.startswith(BOM)
        raw = raw_from_bash(text.removeprefix(BOM), str(path), recorder, warn)
        if bom:
            # bash would take the BOM as part of the first line's name and fail on it; an
            # editor's BOM is no reason to refuse a config, but the user should know.
            message = (f"{at_line(str(path), 1)}: the file starts with a UTF-8 byte order mark "
                       "(BOM), which bash would take as part of the first name; ignored here, "
                       "but save the file without it")
            if warn is not None:
                warn(message)
            raw = replace(raw, warnings=(message, *raw.warnings))
    if ("LOAD_CMD", None) not in raw.values and recorder.get("LOAD_CMD"):
        values = dict(raw.values)
        values[("LOAD_CMD", None)] = RawValue(recorder["LOAD_CMD"], "environment LOAD_CMD")
        raw = replace(raw, values=values)
    return replace(raw, environ_used=tuple(sorted(recorder.used)))


class RecordingEnviron(Mapping[str, str]):
    """The environment, remembering which variables the config looked up (for `cli.fast_path`)."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.used: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.used.add(name)
        return self.environ[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.environ)

    def __len__(self) -> int:
        return len(self.environ)


def raw_from_bash(text: str, path: str, environ: Mapping[str, str],
                  warn: Warn | None = None) -> RawConfig:
    """Collect the ImageBuilder keys a bash config assigns; the last assignment wins.

    Warnings (also passed to `warn` as they are found): a name close to a key ("did you mean"),
    and a variable that is neither a key nor used by an expansion: it has no effect, as a key
    copied from a fork (`BOOTBIN=BOOT.BIN`) has none. A name written as `$NAME` or `${NAME`
    anywhere in the file counts as used (a helper like `DOMDIR`), so no helper is ever warned
    about. Raises `UserError` for what the bash reader refuses and for a used value that is not
    UTF-8 text (bash itself reads bytes, so only values we use must be text).
    """
    values: dict[RawKey, RawValue] = {}
    warnings: list[str] = []
    used = set(_EXPANDED_NAME.findall(text))
    warned: set[str] = set()

    def add_warning(message: str) -> None:
        warnings.append(message)
        if warn is not None:
            warn(message)

    for assignment in iter_bash_config(text, path, environ):
        where = at_line(path, assignment.line)
        if assignment.replaces_array:
            # DOMU_VCPU_HARD_AFFINITY[n,v] is kept as ("DOMU_VCPU_HARD_AFFINITY,v", n)
            for key in [k for k in values if k[0].split(",")[0] == assignment.name]:
                del values[key]
            if assignment.index is None:
                continue
        raw_key = check_key(assignment.name, assignment.index, where)
        if raw_key is None:
            warning = _unknown_name_warning(assignment, where, used, warned)
            if warning:
                add_warning(warning)
            continue
        _check_utf8(assignment, where)
        values[raw_key] = RawValue(assignment.value, where)
        if assignment.empty_expansions:
            add_warning(_empty_expansion_warning(assignment, where))
    return RawConfig(path, values, tuple(warnings))


_EXPANDED_NAME = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")


def _unknown_name_warning(assignment: Assignment, where: str, used: set[str],
                          warned: set[str]) -> str | None:
    """The warning for assigning a name that is not an ImageBuilder key, if it deserves one."""
    name = assignment.name
    if name in used:
        return None  # a helper variable
    label = name if assignment.index is None else f"{name}[{assignment.index}]"
    suggestion = suggest_key(name)
    if suggestion:
        return f"{where}: {label}: unknown key, ignored; did you mean {suggestion}?"
    if name in warned:
        return None
    warned.add(name)
    message = f"{where}: {label}: not an ImageBuilder key and not used by any expansion, ignored"
    value = assignment.value
    if _looks_like_a_file(value):
        # Forks kept boot firmware in keys of their own (BOOTBIN=BOOT.BIN); ImageBuilder's way
        # of putting a file on the boot partition is BOOT_AUX_FILE.
        message += (f"; to copy {value} into the boot partition write NUM_BOOT_AUX_FILE=1 and "
                    f"BOOT_AUX_FILE[0]={value}")
    return message


def _empty_expansion_warning(assignment: Assignment, where: str) -> str:
    """`XEN=$XENDIR/xen` with XENDIR unset gives `/xen`: say so before the error it causes."""
    label = (assignment.name if assignment.index is None
             else f"{assignment.name}[{assignment.index}]")
    names = ", ".join(f"${name}" for name in assignment.empty_expansions)
    verb = "was" if len(assignment.empty_expansions) == 1 else "were"
    return (f"{where}: {label}: {names} {verb} unset or empty (neither set earlier in the file "
            f"nor in the environment), so the value is '{assignment.value}'")


def _looks_like_a_file(value: str) -> bool:
    """A single word whose last path component has an extension: `BOOT.BIN`, `fw/pmufw.elf`."""
    base = value.rsplit("/", 1)[-1]
    return bool(value) and not any(c.isspace() for c in value) and "." in base.strip(".")


def _check_utf8(assignment: Assignment, where: str) -> None:
    """A used value must be text: undecodable bytes were kept as surrogates by the reader."""
    bad = next((c for c in assignment.value if "\udc80" <= c <= "\udcff"), None)
    if bad is not None:
        label = (assignment.name if assignment.index is None
                 else f"{assignment.name}[{assignment.index}]")
        raise UserError(f"{label}: the value is not UTF-8 text (byte 0x{ord(bad) - 0xDC00:02X}); "
                        "save the config as UTF-8", where)


def load_config(path: str | os.PathLike[str], options: Options,
                environ: Mapping[str, str] | None = None) -> Config:
    """The Python API: read and validate a config file (bash or YAML).

    Warnings are in the result's `warnings`; with `STRICT=y` (or `options.strict`) the first
    warning is raised as a `UserError` instead.
    """
    raw = read_config_file(Path(path), environ)
    check_strict(raw.warnings, is_strict(raw, options))
    config = build_config(raw, options)
    check_strict(config.warnings, is_strict(raw, options))
    return config
