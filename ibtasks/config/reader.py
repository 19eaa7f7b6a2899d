"""Raw values as the readers found them, and typed access to them with the table's defaults.

The bash and YAML readers return a `RawConfig`; `KeyReader` reads it key by key, applying the
defaults of `settings.SETTINGS` and naming the file, line and key in every `UserError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ibtasks.config.board_paths import board_path
from ibtasks.config.settings import (
    SETTINGS_BY_NAME,
    Kind,
    Setting,
    is_set,
    number_hint,
    parse_address,
    parse_count,
)
from ibtasks.errors import UserError


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


def from_key(name: str) -> dict[str, str]:
    """The metadata of a model field filled from the config key `name` by
    `KeyReader.read_fields`, through the key's row of the settings table:
    `vcpus: int = field(metadata=from_key("DOMU_VCPUS"))`."""
    return {"key": name}


class KeyReader:
    """Typed access to a `RawConfig`: each key's text, number, flag or input file, with the
    settings table's default when unset; errors (`UserError`) name the key and its line."""

    def __init__(self, raw: RawConfig, root: Path | None = None) -> None:
        self.raw = raw
        self.root = root  # paths of binaries are made relative to it (board_path)

    def setting(self, name: str) -> Setting:
        """The key's row of `settings.SETTINGS` (its kind, rule and default)."""
        return SETTINGS_BY_NAME[name]

    def default(self, name: str) -> str | None:
        """The key's default, from its row: the one place a default is written."""
        return self.setting(name).default

    def label(self, name: str, index: int | None = None) -> str:
        return name if index is None else f"{name}[{index}]"

    def where(self, name: str, index: int | None = None) -> str | None:
        value = self.raw.values.get((name, index))
        return value.where if value else None

    def given(self, name: str, index: int | None = None) -> str | None:
        """The value as the user wrote it (stripped), None when unset or blank: no default."""
        value = self.raw.values.get((name, index))
        return (value.text.strip() or None) if value is not None else None

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

    def number(self, name: str, index: int | None = None, *, high: int | None = None
               ) -> int | None:
        """A NUMBER key read through its row of the table: decimal or 0x hex, as bash
        arithmetic reads it in the original, within the row's `low`..`high` (`high` here
        overrides the row's for a limit known only from other keys, DOMU_CPUPOOL's). None when
        unset (or blank) and the row has no default. Raises `UserError`: `KEY[n]: expected a
        whole number of MiB, got '512M'`, `must be at least 1 MiB`, or, for a row with an upper
        limit, `expected a domain id from 0 to 32751, got '...'`; a leading-0 number gets the
        octal hint."""
        setting = self.setting(name)
        text = self.text(name, index)
        if text is None or not text.strip():
            text = setting.default
            if text is None:
                return None
        text = text.strip()
        value = parse_count(text)
        high = setting.high if high is None else high
        label, where = self.label(name, index), self.where(name, index)
        if high is not None:
            if value is None or not setting.low <= value <= high:
                raise UserError(f"{label}: expected {setting.what} from {setting.low} to {high}, "
                                f"got '{text}'{number_hint(text)}", where)
        elif value is None:
            what = f"a whole number of {setting.unit}" if setting.unit else "a whole number"
            raise UserError(f"{label}: expected {what}, got '{text}'{number_hint(text)}", where)
        elif value < setting.low:
            unit = f" {setting.unit}" if setting.unit else ""
            raise UserError(f"{label}: must be at least {setting.low}{unit}", where)
        return value

    def count(self, name: str, index: int | None = None) -> int:
        """A NUMBER key (`number`), 0 when unset without a default."""
        return self.number(name, index) or 0

    def choice(self, name: str, index: int | None = None) -> str | None:
        """A CHOICE key: one of its row's words (any case, returned in lower case), the row's
        default when unset or blank, None without one. Raises `UserError`: `BOOT_FS: expected
        fat or ext4, got 'vfat'` (`expected one of a, b, c` for more than two)."""
        setting = self.setting(name)
        text = self.text(name, index)
        if text is None or not text.strip():
            text = setting.default
            if text is None:
                return None
        word = text.strip().lower()
        if word not in setting.choices:
            listed = (" or ".join(setting.choices) if len(setting.choices) == 2
                      else "one of " + ", ".join(setting.choices))
            raise UserError(f"{self.label(name, index)}: expected {listed}, got '{text.strip()}'",
                            self.where(name, index))
        return word

    def value(self, name: str, index: int | None = None) -> Any:
        """A key read by its row's kind: NUMBER `number` (int or None), FLAG `flag` (bool),
        CHOICE `choice` (str or None), PATH `binary` (Binary or None), ADDRESS `address` (int),
        TEXT and OUTPUT the text or default, stripped (None when blank)."""
        kind = self.setting(name).kind
        if kind is Kind.NUMBER:
            return self.number(name, index)
        if kind is Kind.FLAG:
            return self.flag(name, index)
        if kind is Kind.CHOICE:
            return self.choice(name, index)
        if kind is Kind.PATH:
            return self.binary(name, index)
        if kind is Kind.ADDRESS:
            return self.address(name)
        return (self.text(name, index) or "").strip() or None

    def read_fields(self, cls: type, index: int | None = None) -> dict[str, Any]:
        """The values of `cls`'s fields marked `from_key`, each read by `value`, for
        `cls(**values, ...)`: a plain key needs no reading code of its own."""
        return {f.name: self.value(f.metadata["key"], index) for f in fields(cls)
                if "key" in f.metadata}

    def choice_or_default(self, name: str) -> str:
        """A CHOICE key whose row has a default (`choice`), so never unset."""
        word = self.choice(name)
        if word is None:
            raise RuntimeError(f"{name}: the settings table gives no default")
        return word

    def flag(self, name: str, index: int | None = None) -> bool:
        """A FLAG key: set unless a no word (`settings.is_set`); the row's default when the key
        is not written at all (written empty means no, as the original's non-empty test)."""
        given = self.flag_given(name, index)
        if given is not None:
            return given
        default = self.setting(name).default
        return default is not None and is_set(default)

    def flag_given(self, name: str, index: int | None = None) -> bool | None:
        """A FLAG key as written, None when not written (for a default that depends on other
        keys, DOMU_DIRECT_MAP's)."""
        value = self.raw.values.get((name, index))
        return None if value is None else is_set(value.text)

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

    def command_line(self, name: str, index: int | None = None) -> str:
        """A command-line key (its value or default, stripped; '' when neither). Raises
        `UserError` for a double quote: the value lands inside "..." of a U-Boot `fdt set`
        command, which has no escape for it."""
        return check_command_line(self.text(name, index) or "", self.label(name, index),
                                  self.where(name, index))


def check_command_line(text: str, label: str, where: str | None) -> str:
    """`text` stripped, or `UserError` naming `label` when it holds a double quote (see
    `KeyReader.command_line`)."""
    if '"' in text:
        raise UserError(f"{label}: a double quote cannot appear in a command line", where)
    return text.strip()
