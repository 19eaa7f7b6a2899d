"""The word reader under the bash config reader: a cursor over the text, the variables assigned
so far, and bash's quoting and `$VAR`/`${VAR:-word}` expansion of one word at a time.

Constructs that would run something (command substitution, arithmetic) are refused with a
message naming the line; bounds keep a hostile config from hanging or exhausting memory.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Mapping

from ibtasks.errors import UserError, at_line

NOT_EXECUTED = "config files are read, not executed; "
WRITE_PLAIN = NOT_EXECUTED + "write plain assignments"
WRITE_VALUE = NOT_EXECUTED + "write the value itself"
WRITE_NUMBER = NOT_EXECUTED + "write the number itself"
NAME_PATTERN = r"[A-Za-z_][A-Za-z0-9_]*"
NAME_RE = re.compile(NAME_PATTERN)
# Characters with no meaning to any word reader: not blanks or operators, quotes, `$`, `\\`,
# `~` or `:` (tilde), glob or brace characters (arrays), `}` (end of ${V:-word}).
_PLAIN_RUN = re.compile(r"[^ \t\n;&|<>()~*?\[{}\\'\"$`:]+")
_QUOTED_RUN = re.compile(r"[^\"\\$`}]+")
WORD_END = " \t\n;&|<>()"
GLOB = "*?["
_ANSI_C = {
    "n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "e": "\x1b", "E": "\x1b",
    "f": "\f", "v": "\v", "\\": "\\", "'": "'", '"': '"', "?": "?",
}  # fmt: skip

# Bounds that keep a hostile config from hanging or exhausting memory; real configs stay far
# below them. Expansions (and `+=`, which copies the old value) may produce this much text in
# all: `A=$A$A` repeated doubles each time.
MAX_EXPANDED_CHARS = 1024 * 1024
# ${A:-${B:-...}} may nest this deep (each level costs Python stack).
MAX_NESTING = 32

# A piece of a word: its text, and whether bash would split it into several words (the
# result of an unquoted expansion). Only array elements are split.
Piece = tuple[str, bool]


class BashWords:
    """A cursor over the config text plus the variables assigned so far; reads one word at a
    time as bash would expand it. Names in `$VAR` come from earlier assignments, then from
    `environ`; unset gives ""."""

    def __init__(self, text: str, path: str, environ: Mapping[str, str]) -> None:
        self.text = text
        self.path = path
        self.environ = environ
        self.pos = 0
        self.newlines = [i for i, c in enumerate(text) if c == "\n"]
        self.vars: dict[str, dict[str, str]] = {}
        self.expanded = 0  # characters produced by expansions so far
        self.nesting = 0  # ${ levels open at the cursor
        self.empty_names: list[str] = []  # plain expansions of the current value that gave ""

    # -- places and errors ---------------------------------------------------------------

    def line_of(self, pos: int) -> int:
        return bisect.bisect_left(self.newlines, pos) + 1

    def error(self, message: str, pos: int | None = None) -> UserError:
        where = at_line(self.path, self.line_of(self.pos if pos is None else pos))
        return UserError(message, where=where)

    def peek(self, n: int = 1) -> str:
        return self.text[self.pos : self.pos + n]

    def check_index(self, name: str, raw: str, pos: int) -> str:
        if re.fullmatch(r"\d+,\d+", raw):
            return raw
        if not re.fullmatch(r"\d+", raw):
            raise self.error(
                f"array index `{raw}` in {name}[{raw}] is not a number: write the index as "
                f"digits, e.g. {name}[0]",
                pos,
            )
        if len(raw) > 1 and raw.startswith("0"):
            raise self.error(
                f"array index {name}[{raw}] has a leading zero, which bash reads as octal: "
                "write the index without leading zeros",
                pos,
            )
        return raw

    # -- variables -----------------------------------------------------------------------

    def init_var(self, name: str) -> None:
        if name not in self.vars:
            self.vars[name] = {"0": self.environ[name]} if name in self.environ else {}

    def set(self, name: str, key: str, value: str) -> None:
        self.init_var(name)
        self.vars[name][key] = value

    def get(self, name: str, key: str) -> str | None:
        """The value of `name[key]` for an expansion (or `+=`), counted against the bound."""
        if name in self.vars:
            value = self.vars[name].get(key)
        else:
            value = self.environ.get(name) if key == "0" else None
        if value:
            self.expanded += len(value)
            if self.expanded > MAX_EXPANDED_CHARS:
                raise self.error(
                    f"${name}: expansions in this config add up to more than "
                    f"{MAX_EXPANDED_CHARS // 1024 // 1024} MiB of text; write the values "
                    "themselves"
                )
        return value

    # -- words ---------------------------------------------------------------------------

    def word(self, *, array: bool, assign: bool = False) -> list[Piece]:
        """An unquoted word up to a blank or operator: quotes removed, expansions done."""
        pieces: list[Piece] = []
        word_start = True
        while self.pos < len(self.text):
            c = self.peek()
            if c in WORD_END:
                break
            if c == "~" and (word_start or (assign and pieces and pieces[-1][0].endswith(":"))):
                pieces.append((self.tilde(), False))
            elif array and c in GLOB + "{":
                what = "brace expansion" if c == "{" else f"glob character {c}"
                raise self.error(f"{what} inside an array is not supported: quote the element")
            else:
                pieces.extend(self.part(end=""))
            word_start = False
        return pieces

    def part(self, *, end: str) -> list[Piece]:
        """One quoted string, escape, expansion or plain character in unquoted text."""
        c = self.peek()
        if c == "\\":
            nxt = self.text[self.pos + 1 : self.pos + 2]
            self.pos += 2
            return [] if nxt == "\n" else [(nxt or "\\", False)]
        if c == "'":
            return [(self.single_quoted(), False)]
        if c == '"':
            return self.double_quoted()
        if c == "$":
            return self.dollar(quoted=False)
        if c == "`":
            raise self.backtick()
        # A run of characters that no caller treats specially, at once (a 1 MiB config in
        # well under a second instead of one Python call per character).
        m = _PLAIN_RUN.match(self.text, self.pos)
        text = m.group() if m else c
        self.pos += len(text)
        return [(text, bool(end))]  # literal text of ${V:-word} is split like an expansion

    def tilde(self, end: str = "") -> str:
        rest = self.text[self.pos + 1 : self.pos + 2]
        if rest not in ("", "/", ":", end) and rest not in WORD_END:
            raise self.error("tilde expansion other than ~ and ~/ is not supported: write the path")
        if "HOME" not in self.environ:
            raise self.error("~ needs HOME, which is not set: write the path")
        self.pos += 1
        return self.environ["HOME"]

    def single_quoted(self) -> str:
        opened = self.pos
        end = self.text.find("'", self.pos + 1)
        if end < 0:
            raise self.error("unterminated single quote: add the closing '", opened)
        self.pos = end + 1
        return self.text[opened + 1 : end]

    def double_quoted(self) -> list[Piece]:
        opened = self.pos
        self.pos += 1
        pieces: list[Piece] = []
        while True:
            c = self.peek()
            if c == "":
                raise self.error('unterminated double quote: add the closing "', opened)
            if c == '"':
                self.pos += 1
                return pieces or [("", False)]
            pieces.extend(self.dquoted_char(extra=""))

    def dquoted_char(self, extra: str) -> list[Piece]:
        """One character or expansion inside double quotes; `extra` may also be escaped."""
        c = self.peek()
        if c == "\\":
            nxt = self.text[self.pos + 1 : self.pos + 2]
            if nxt == "\n":
                self.pos += 2
                return []
            if nxt and nxt in '$`"\\' + extra:
                self.pos += 2
                return [(nxt, False)]
        elif c == "$":
            return self.dollar(quoted=True)
        elif c == "`":
            raise self.backtick()
        m = _QUOTED_RUN.match(self.text, self.pos)
        text = m.group() if m else c
        self.pos += len(text)
        return [(text, False)]

    def backtick(self) -> UserError:
        return self.error(f"command substitution `...` is not supported: {WRITE_VALUE}")

    # -- expansions ----------------------------------------------------------------------

    def dollar(self, *, quoted: bool) -> list[Piece]:
        after = self.text[self.pos + 1 : self.pos + 2]
        if after == "(":
            if self.text.startswith("$((", self.pos):
                raise self.error(f"arithmetic $((...)) is not supported: {WRITE_NUMBER}")
            raise self.error(f"command substitution $(...) is not supported: {WRITE_VALUE}")
        if after == "[":
            raise self.error(f"arithmetic $[...] is not supported: {WRITE_NUMBER}")
        if after == "{":
            return self.braced(quoted)
        if after == "'" and not quoted:
            self.pos += 1
            return [(self.ansi_c(), False)]
        if after == '"' and not quoted:
            self.pos += 1
            return self.double_quoted()
        m = NAME_RE.match(self.text, self.pos + 1)
        if m:
            self.pos = m.end()
            value = self.get(m.group(), "0")
            if not value:
                self.empty_names.append(m.group())
            return [(value or "", not quoted)]
        if after and after in "0123456789@*#?$!-":
            raise self.special(after)
        self.pos += 1
        return [("$", False)]

    def special(self, which: str) -> UserError:
        return self.error(f"special parameter ${which} is not supported: {WRITE_VALUE}")

    def braced(self, quoted: bool) -> list[Piece]:
        if self.nesting >= MAX_NESTING:
            raise self.error(f"${{...}} nested more than {MAX_NESTING} deep: write the value "
                             "itself")
        self.nesting += 1
        try:
            return self.braced_inner(quoted)
        finally:
            self.nesting -= 1

    def braced_inner(self, quoted: bool) -> list[Piece]:
        opened = self.pos
        self.pos += 2
        m = NAME_RE.match(self.text, self.pos)
        if not m:
            c = self.peek()
            if c and c in "0123456789@*#?$!-" and self.text[self.pos + 1 : self.pos + 2] == "}":
                raise self.special(c)
            raise self.operator(opened)
        name = m.group()
        self.pos = m.end()
        key = "0"
        if self.peek() == "[":
            close = self.text.find("]", self.pos)
            if close < 0:
                raise self.operator(opened)
            raw = self.text[self.pos + 1 : close]
            if raw in ("@", "*"):
                raise self.error(
                    f"${{{name}[{raw}]}} (all elements) is not supported: name one element, "
                    f"e.g. ${{{name}[0]}}"
                )
            key = self.check_index(name, raw, self.pos)
            self.pos = close + 1
        value = self.get(name, key)
        op = "-" if self.peek() == "-" else ":-" if self.peek(2) == ":-" else ""
        if self.peek() == "}":
            self.pos += 1
            if not value:
                self.empty_names.append(name if key == "0" else f"{name}[{key}]")
            return [(value or "", not quoted)]
        if not op:
            raise self.operator(opened)
        self.pos += len(op)
        default = self.default_word(quoted, opened)
        use_default = value is None or (op == ":-" and value == "")
        return default if use_default else [(value or "", not quoted)]

    def default_word(self, quoted: bool, opened: int) -> list[Piece]:
        """The `word` of ${VAR:-word}, up to the matching `}`."""
        pieces: list[Piece] = []
        start = True
        while True:
            c = self.peek()
            if c == "":
                raise self.error("unterminated ${ : add the closing }", opened)
            if c == "}":
                self.pos += 1
                return pieces
            if quoted:
                if c == '"':
                    pieces.extend(self.double_quoted())
                else:
                    pieces.extend(self.dquoted_char(extra="}"))
            elif c == "~" and start:
                pieces.append((self.tilde(end="}"), False))
            else:
                pieces.extend(self.part(end="}"))
            start = False

    def operator(self, opened: int) -> UserError:
        close = self.text.find("}", opened)
        if close < 0:
            return self.error("unterminated ${ : add the closing }", opened)
        shown = self.text[opened : close + 1] if 0 <= close < opened + 40 else "${..."
        return self.error(
            f"parameter expansion {shown} is not supported: only $VAR, ${{VAR}}, ${{VAR[n]}}, "
            "${VAR:-word} and ${VAR-word} are; write the value itself",
            opened,
        )

    def ansi_c(self) -> str:
        """$'...' strings: C escapes as bash decodes them."""
        opened = self.pos - 1
        self.pos += 1
        out: list[str] = []
        while True:
            c = self.peek()
            if c == "":
                raise self.error("unterminated $' quote: add the closing '", opened)
            self.pos += 1
            if c == "'":
                return "".join(out)
            if c != "\\":
                out.append(c)
                continue
            e = self.peek()
            self.pos += 1
            if e in _ANSI_C:
                out.append(_ANSI_C[e])
            elif m := re.compile(r"[0-7]{1,3}").match(self.text, self.pos - 1):
                out.append(chr(int(m.group(), 8) & 0xFF))
                self.pos = m.end()
            elif e == "x" and (m := re.compile(r"[0-9A-Fa-f]{1,2}").match(self.text, self.pos)):
                out.append(chr(int(m.group(), 16)))
                self.pos = m.end()
            elif e in ("c", "u", "U", "x"):
                raise self.error(
                    f"the escape \\{e} in $'...' is not supported: write the character"
                )
            else:
                out.append("\\" + e)
