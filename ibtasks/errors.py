"""The one exception type for user errors, and how the place it names is printed.

Every mistake a user can make (a bad config line, a missing file, too little memory) is raised
as `UserError`; the CLI catches it once and prints a single line (`error_line`), with any control
character of the user's input escaped (`printable`), as it prints warnings (`warning_line`).
"""

from __future__ import annotations

import unicodedata

_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


class UserError(Exception):
    """A problem with the user's input (config, command line, input files), reported by the
    CLI as one line `ibtasks: error: WHERE: MESSAGE` without a traceback, exit status 1.

    `message` says what is wrong and what to do; `where` names the place, `config:12` or a key,
    when there is one. Every user error of ibtasks is this type; anything else is a bug."""

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


def is_control(char: str) -> bool:
    """A control character (C0, DEL, C1) or a Unicode line or paragraph separator."""
    return unicodedata.category(char) in ("Cc", "Zl", "Zp")


def printable(text: str) -> str:
    """`text` with each control character escaped (`\\n`, `\\x1b`, `\\u2028`), so that a
    message stays on one line and cannot drive the terminal."""
    return "".join(_escape(c) if is_control(c) else c for c in text)


def _escape(char: str) -> str:
    if char in _ESCAPES:
        return _ESCAPES[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def error_line(message: str) -> str:
    """The one stderr line of a user error: `ibtasks: error: <place>: <message>`."""
    return f"ibtasks: error: {printable(message)}\n"


def warning_line(message: str) -> str:
    """The stderr line of a warning: `ibtasks: warning: <place>: <message>`."""
    return f"ibtasks: warning: {printable(message)}\n"
