"""Load a config file of either syntax into a `RawConfig`: bash (the original's) or YAML.

The readers only find values and where they were written; `config.build_config` validates them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path

from ibtasks.config import Config, Options, RawConfig, RawKey, RawValue, build_config, check_key
from ibtasks.config_bash import parse_bash_config
from ibtasks.errors import UserError, at_line


def read_config_file(path: Path, environ: Mapping[str, str] | None = None) -> RawConfig:
    """Read `path` as YAML when it ends in .yaml/.yml, else as an ImageBuilder bash config."""
    try:
        text = path.read_text()
    except FileNotFoundError as exc:
        raise UserError(f"config file {path} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read config file {path}: {exc}") from exc
    if path.suffix in (".yaml", ".yml"):
        from ibtasks.config_yaml import read_yaml_config  # pyyaml costs ~8 ms to import

        return read_yaml_config(text, str(path))
    recorder = RecordingEnviron(os.environ if environ is None else environ)
    raw = raw_from_bash(text, str(path), recorder)
    return replace(raw, environ_used=tuple(sorted(recorder.used)))


class RecordingEnviron(Mapping[str, str]):
    """The environment, remembering which variables the config looked up (for `stamp`)."""

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


def raw_from_bash(text: str, path: str, environ: Mapping[str, str]) -> RawConfig:
    """Collect the ImageBuilder keys a bash config assigns; the last assignment wins."""
    values: dict[RawKey, RawValue] = {}
    warnings: list[str] = []
    for assignment in parse_bash_config(text, path, environ):
        where = at_line(path, assignment.line)
        if assignment.replaces_array:
            # DOMU_VCPU_HARD_AFFINITY[n,v] is kept as ("DOMU_VCPU_HARD_AFFINITY,v", n)
            for key in [k for k in values if k[0].split(",")[0] == assignment.name]:
                del values[key]
            if assignment.index is None:
                continue
        raw_key, warning = check_key(assignment.name, assignment.index, where)
        if warning:
            warnings.append(warning)
        if raw_key:
            values[raw_key] = RawValue(assignment.value, where)
    return RawConfig(path, values, tuple(warnings))


def load_config(path: str | os.PathLike[str], options: Options,
                environ: Mapping[str, str] | None = None) -> Config:
    """The Python API: read and validate a config file (bash or YAML)."""
    return build_config(read_config_file(Path(path), environ), options)
