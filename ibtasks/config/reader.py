"""Raw values as the readers found them, and typed access to them with the table's defaults.

The bash and YAML readers return a `RawConfig`; `KeyReader` reads it key by key, applying the
defaults of `settings.SETTINGS` and naming the file, line and key in every `UserError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ibtasks.config.board_paths import board_path
from ibtasks.config.settings import (
    SETTINGS_BY_NAME,
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


class KeyReader:
    """Typed access to a `RawConfig`: each key's text, number, flag or input file, with the
    settings table's default when unset; errors (`UserError`) name the key and its line."""

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
