"""The one exception type for user errors, and how the place it names is printed.

Every mistake a user can make (a bad config line, a missing file, too little memory) is raised
as `UserError`; the CLI catches it once and prints a single line.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""

    def __init__(self, message: str, where: str | None = None) -> None:
        self.message = message
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


def at_line(path: str, line: int) -> str:
    """The `file:line` place of a config line."""
    return f"{path}:{line}"


def hex_and_dec(value: int) -> str:
    """A size as `0x200000 (2097152)`, the way our messages print sizes."""
    return f"{value:#x} ({value})"
