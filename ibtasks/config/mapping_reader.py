"""A config given as a Python mapping of keys to values, for a dodo.py that keeps its settings in
code: `{"MEMORY_START": "0x40000000", "DOMU_KERNEL[0]": "Image"}`, or with the index apart,
`{("DOMU_KERNEL", 0): "Image", ("XEN", None): "xen"}`. The same keys and values as the bash
form, read as bash would read `KEY=value` / `KEY[i]=value` (`NAME` alone is index 0 of an
array); validated by `build_config` like a file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from ibtasks.config.build import build_config, check_key, check_strict, is_strict
from ibtasks.config.model import Config, Options
from ibtasks.config.reader import RawConfig, RawKey, RawValue
from ibtasks.config.settings import suggest_key
from ibtasks.errors import UserError

# A key as written in the bash form (`DOMU_KERNEL[0]`), or (name, index or None).
MappingKey = str | tuple[str, int | str | None]
MappingValue = str | int | os.PathLike[str]  # bool is an int: a flag
_KEY = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:\[([0-9]+(?:,[0-9]+)?)\])?")


def _split_key(key: MappingKey, source: str) -> tuple[str, str | None]:
    if isinstance(key, tuple) and len(key) == 2 and isinstance(key[0], str):
        name, index = key
        if index is None or (isinstance(index, int) and not isinstance(index, bool)
                             and index >= 0):
            return name, None if index is None else str(index)
        if isinstance(index, str) and re.fullmatch(r"[0-9]+,[0-9]+", index):
            return name, index  # DOMU_VCPU_HARD_AFFINITY's [domU,vCPU]
    if isinstance(key, str) and (match := _KEY.fullmatch(key)):
        return match.group(1), match.group(2)
    raise UserError(f"{key!r}: not a config key; write 'NAME', 'NAME[index]' or "
                    "(NAME, index or None)", source)


def _text(value: MappingValue, label: str, source: str) -> str:
    if isinstance(value, bool):  # a flag, as the bash form writes one
        return "y" if value else "n"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str | os.PathLike):
        return os.fspath(value)
    raise UserError(f"{label}: expected text, a number, a flag or a path, got "
                    f"{type(value).__name__}", source)


def read_mapping_config(values: Mapping[MappingKey, MappingValue], source: str = "<mapping>"
                        ) -> RawConfig:
    """The raw config of a mapping: keys `NAME`, `NAME[i]` or (NAME, i or None); values text,
    whole numbers (written in decimal), flags (True is `y`, False `n`) or paths.

    Every value's place is `source` (the dodo.py, say). An unknown key is a warning with the
    closest known key, as in a file; raises `UserError` naming the key for a key that is not a
    name, one given twice (`DOMU_KERNEL[0]` and `("DOMU_KERNEL", 0)`), an unsupported upstream
    key, an index a key cannot have, or a value of another type.
    """
    found: dict[RawKey, RawValue] = {}
    labels: dict[RawKey, MappingKey] = {}
    warnings: list[str] = []
    for key, value in values.items():
        name, index = _split_key(key, source)
        label = name if index is None else f"{name}[{index}]"
        raw_key = check_key(name, index, source)
        if raw_key is None:
            suggestion = suggest_key(name)
            warnings.append(f"{source}: {label}: unknown key, ignored"
                            + (f"; did you mean {suggestion}?" if suggestion else ""))
            continue
        if raw_key in found:
            raise UserError(f"{label}: given twice, as {labels[raw_key]!r} and {key!r}", source)
        found[raw_key] = RawValue(_text(value, label, source), source)
        labels[raw_key] = key
    return RawConfig(source, found, tuple(warnings))


def config_from_mapping(values: Mapping[MappingKey, MappingValue], options: Options,
                        source: str = "<mapping>") -> Config:
    """Read (`read_mapping_config`) and validate (`build_config`) a config given as a mapping,
    as `loader.load_config` does a file: warnings in the result's `warnings`, or with
    `STRICT=y` / `options.strict` the first one raised as a `UserError`."""
    raw = read_mapping_config(values, source)
    check_strict(raw.warnings, is_strict(raw, options))
    config = build_config(raw, options)
    check_strict(config.warnings, is_strict(raw, options))
    return config

