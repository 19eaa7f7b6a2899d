"""Read ImageBuilder's bash config files without running them.

The original `source`s its config. We parse the subset of bash that configs really use
(assignments, quoting, `$VAR` expansion, indexed arrays) with bash's own semantics, and reject
everything else with a message naming the line, because a config must never be executed.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from ibtasks.config.settings import SETTINGS_BY_NAME
from ibtasks.errors import UserError, at_line


@dataclass(frozen=True)
class Assignment:
    """One assignment as written in the file, with its value already expanded.

    `index` is None for a plain `NAME=...` (which bash treats as element 0 of an array),
    the decimal digits for `NAME[n]=...`, or the raw text `n,m` for associative keys.
    An array literal `NAME=(a b)` is returned as a reset marker (`replaces_array=True`,
    index None, value "": forget every element set so far) followed by one assignment per
    element, indices 0, 1, ...; `NAME+=(c)` appends elements without a marker.
    `value` is the variable's value after the assignment, so `NAME+=x` gives the joined text.
    `line` is where the assignment starts; for an array literal's element, where the element is.
    """

    name: str
    index: str | None
    value: str
    line: int
    replaces_array: bool = False
    empty_expansions: tuple[str, ...] = ()  # `$NAME`/`${NAME}` in it that were unset or empty


_RUN = "config files are read, not executed; "
_PLAIN = _RUN + "write plain assignments"
_VALUE = _RUN + "write the value itself"
_NUMBER = _RUN + "write the number itself"
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_ASSIGN = re.compile(rf"({_NAME})(?:\[([^\]\s]*)\])?(\+?)=")
_ELEMENT = re.compile(r"\[([^\]\s]*)\]=")
_NAME_RE = re.compile(_NAME)
# Characters with no meaning to any word reader: not blanks or operators, quotes, `$`, `\\`,
# `~` or `:` (tilde), glob or brace characters (arrays), `}` (end of ${V:-word}).
_PLAIN_RUN = re.compile(r"[^ \t\n;&|<>()~*?\[{}\\'\"$`:]+")
_QUOTED_RUN = re.compile(r"[^\"\\$`}]+")
_WORD_END = " \t\n;&|<>()"
_GLOB = "*?["
_KEYWORDS = {
    "if", "then", "elif", "else", "fi", "for", "while", "until", "do", "done", "case", "esac",
    "select", "function", "time", "coproc", "[[", "]]", "!", "{", "}",
}  # fmt: skip
_DECLARE = {"declare", "typeset", "local", "readonly"}
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
_Piece = tuple[str, bool]


def parse_bash_config(text: str, path: str, environ: Mapping[str, str]) -> list[Assignment]:
    """The assignments of a bash config, in file order, expanded as `source` would.

    Names in `$VAR` come from earlier assignments, then from `environ`; unset gives "".
    Raises `UserError` naming the line of the first statement that is not a plain assignment,
    of expansions past `MAX_EXPANDED_CHARS` (1 MiB) or `${...}` nested past `MAX_NESTING`.
    """
    return list(iter_bash_config(text, path, environ))


def iter_bash_config(text: str, path: str, environ: Mapping[str, str]) -> Iterator[Assignment]:
    """`parse_bash_config`, one statement at a time: a caller sees the assignments of the lines
    before an error (to show its warnings about them) before the error is raised."""
    return _Parser(text, path, environ).assignments()


# A word that reads as more of a value (kernel arguments, paths), not as shell syntax.
_PLAIN_WORD = re.compile(r"[A-Za-z0-9_./,:=+@%-]+")


class _Parser:
    """A cursor over the config text plus the variables assigned so far."""

    def __init__(self, text: str, path: str, environ: Mapping[str, str]) -> None:
        self.text = text
        self.path = path
        self.environ = environ
        self.pos = 0
        self.newlines = [i for i, c in enumerate(text) if c == "\n"]
        self.vars: dict[str, dict[str, str]] = {}
        self.out: list[Assignment] = []
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

    # -- statements ----------------------------------------------------------------------

    def assignments(self) -> Iterator[Assignment]:
        if "\r" in self.text:
            raise self.error(
                "carriage return (Windows line ending) found: convert the file to Unix line "
                "endings, e.g. with dos2unix",
                self.text.index("\r"),
            )
        empty = True  # nothing since the last `;` or newline
        while True:
            self.skip_blanks()
            c = self.peek()
            if c == "":
                return
            if c == "\n":
                self.pos += 1
                empty = True
            elif c == ";":
                if empty:
                    raise self.error(
                        f"unexpected `{self.peek(2).strip()}`: write plain assignments"
                    )
                self.pos += 1
                empty = True
            elif c == "#":
                self.skip_comment()
            else:
                self.statement()
                yield from self.out
                self.out.clear()
                empty = False

    def skip_blanks(self) -> None:
        while True:
            c = self.peek()
            if c in (" ", "\t"):
                self.pos += 1
            elif self.peek(2) == "\\\n":
                self.pos += 2
            else:
                return

    def skip_comment(self) -> None:
        end = self.text.find("\n", self.pos)
        self.pos = len(self.text) if end < 0 else end

    def at_statement_end(self) -> bool:
        return self.peek() in ("", "\n", ";", "#")

    def statement(self) -> None:
        """One simple statement: assignments, `export ...` or `declare -a|-A NAME...`."""
        start = self.pos
        word = self.raw_word()
        if word in ("export", "declare", "typeset"):
            self.pos += len(word)
            self.declaration(word, start)
            return
        previous: Assignment | None = None
        while True:
            if not self.assignment():
                if previous is not None:
                    self.reject_unquoted_value(previous)
                self.reject_command()
            previous = self.out[-1] if self.out else None
            self.skip_blanks()
            if self.at_statement_end():
                return

    def raw_word(self) -> str:
        end = self.pos
        while end < len(self.text) and self.text[end] not in _WORD_END:
            end += 1
        return self.text[self.pos : end]

    def declaration(self, word: str, start: int) -> None:
        """`export A=1 B`, or `declare -A NAME` (associative keys stay raw text for us)."""
        self.skip_blanks()
        if word != "export":
            option = self.raw_word()
            if option not in ("-a", "-A"):
                raise self.error(
                    f"`{word} {option}` is not supported: only `{word} -A NAME` is; write plain "
                    "assignments"
                )
            self.pos += 2
            self.skip_blanks()
        while not self.at_statement_end():
            if self.assignment(allow=word == "export"):
                pass
            elif _NAME_RE.fullmatch(name := self.raw_word()):
                self.pos += len(name)
            else:
                raise self.error(
                    f"`{word} {self.raw_word() or self.peek()}` is not supported: only `{word} "
                    "NAME` and `export NAME=value` are"
                )
            self.skip_blanks()

    def reject_unquoted_value(self, previous: Assignment) -> None:
        """`DOMU_CMD[0]=console=ttyAMA0 rootwait`: bash ends the value at the blank and runs
        `rootwait` as a command; say to quote the value rather than that commands are not
        supported."""
        if previous.name not in SETTINGS_BY_NAME:
            return  # `A=1 make` is bash's way to run a command with A set
        word = self.raw_word()
        after = self.text[self.pos + len(word):]
        rest = after.lstrip(" \t")
        if (not word or not _PLAIN_WORD.fullmatch(word) or rest.startswith(("=", "+=", "()"))
                or after[:1] in ("<", ">")):
            return
        end = self.text.find("\n", self.pos)
        tail = self.text[self.pos: len(self.text) if end < 0 else end].split(" #")[0].rstrip()
        label = previous.name if previous.index is None else f"{previous.name}[{previous.index}]"
        raise self.error(
            f"{label}: the value ends at the blank before `{word}`, which bash would run as a "
            f"command; quote the whole value: {label}=\"{previous.value} {tail}\""
        )

    def reject_command(self) -> None:
        """Raise the most helpful error for a statement that is not an assignment."""
        c2 = self.peek(2)
        if c2 == "((":
            raise self.error(f"arithmetic ((...)) is not supported: {_NUMBER}")
        if c2 in ("&&", "||"):
            raise self.error(f"`{c2}` is not supported: {_PLAIN}")
        c = self.peek()
        if c in "|&<>()":
            what = {
                "|": "pipe `|`",
                "&": "background `&`",
                "<": "redirection `<`",
                ">": "redirection `>`",
                "(": "subshell `(`",
                ")": "`)`",
            }[c]
            raise self.error(f"{what} is not supported: {_PLAIN}")
        word = self.raw_word()
        after = self.pos + len(word)
        rest = self.text[after:].lstrip(" \t")
        if word.isdigit() and self.text[after : after + 1] in ("<", ">"):
            raise self.error(f"redirection `{word}{self.text[after]}` is not supported: {_PLAIN}")
        if word in ("source", "."):
            raise self.error(
                f"`{word}` is not supported: {_RUN}copy the other file's assignments into this one"
            )
        if word in _KEYWORDS:
            raise self.error(f"`{word}` is not supported: {_PLAIN}")
        if word in _DECLARE:
            raise self.error(f"`{word}` is not supported: {_PLAIN}")
        if _NAME_RE.fullmatch(word) and rest.startswith("()"):
            raise self.error(f"function definitions are not supported: {_PLAIN}")
        if _NAME_RE.fullmatch(word) and rest.startswith(("=", "+=")):
            raise self.error(
                f"`{word} =` is not an assignment: bash needs NAME=value without spaces around ="
            )
        if "`" in word or "$(" in word:
            self.pos += word.index("`" if "`" in word else "$(")
            self.word(array=False)  # raises the error for the substitution
        raise self.error(
            f"command `{word}` is not supported: {_RUN}write only assignments (NAME=value)"
        )

    # -- assignments ---------------------------------------------------------------------

    def assignment(self, allow: bool = True) -> bool:
        """Parse `NAME[idx]+=value` at the cursor; False if the word is not an assignment."""
        m = _ASSIGN.match(self.text, self.pos)
        if not m or not allow:
            return False
        start = self.pos
        name, raw_index, plus = m.group(1), m.group(2), m.group(3) == "+"
        index = None if raw_index is None else self.check_index(name, raw_index, start)
        self.pos = m.end()
        if self.peek() == "(":
            if index is not None:
                raise self.error(f"{name}[{raw_index}]=(...) is not valid bash: write {name}=(...)")
            self.array_literal(name, plus, start)
        else:
            self.empty_names = []
            value = "".join(t for t, _ in self.word(array=False, assign=True))
            key = index or "0"
            if plus:
                value = (self.get(name, key) or "") + value
            self.set(name, key, value)
            self.out.append(Assignment(name, index, value, self.line_of(start),
                                       empty_expansions=tuple(dict.fromkeys(self.empty_names))))
        self.expect_word_end()
        return True

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

    def expect_word_end(self) -> None:
        c = self.peek()
        if c in ("", " ", "\t", "\n", ";") or self.peek(2) == "\\\n":
            return
        self.reject_command()

    def array_literal(self, name: str, append: bool, start: int) -> None:
        opened = self.pos
        self.pos += 1
        if append:
            self.init_var(name)
            keys = [int(k) for k in self.vars[name] if k.isdigit()]
            next_index = max(keys) + 1 if keys else 0
        else:
            self.vars[name] = {}
            self.out.append(Assignment(name, None, "", self.line_of(start), replaces_array=True))
            next_index = 0
        while True:
            while self.peek() in (" ", "\t", "\n") or self.peek(2) == "\\\n":
                self.pos += 2 if self.peek() == "\\" else 1
            c = self.peek()
            if c == "":
                raise self.error(f"unterminated array {name}=( : add the closing )", opened)
            if c == ")":
                self.pos += 1
                if self.peek() and self.peek() not in " \t\n;":
                    raise self.error(f"text right after {name}=(...): put a space after the )")
                return
            if c == "#":
                self.skip_comment()
                continue
            if c in "|&<>(;":
                raise self.error(f"`{c}` inside the array {name}=(...) is not supported: quote it")
            line = self.line_of(self.pos)
            m = _ELEMENT.match(self.text, self.pos)
            if m:
                self.pos = m.end()
                key = self.check_index(name, m.group(1), self.pos)
                values = ["".join(t for t, _ in self.word(array=False))]
                next_index = int(key) if key.isdigit() else next_index
            else:
                values = self.split(self.word(array=True))
                key = None
            for value in values:
                key = key or str(next_index)
                self.set(name, key, value)
                self.out.append(Assignment(name, key, value, line))
                next_index = int(key) + 1 if key.isdigit() else next_index
                key = None

    def split(self, pieces: list[_Piece]) -> list[str]:
        """Bash word splitting of an unquoted array element, on blanks (the default IFS)."""
        fields: list[str] = []
        current: str | None = None
        for text, splittable in pieces:
            if not splittable:
                current = (current or "") + text
                continue
            if glob := next((g for g in _GLOB if g in text), None):
                raise self.error(
                    f"glob character {glob} inside an array is not supported: quote the element"
                )
            for ch in text:
                if ch in " \t\n":
                    if current is not None:
                        fields.append(current)
                    current = None
                else:
                    current = (current or "") + ch
        if current is not None:
            fields.append(current)
        return fields

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

    def word(self, *, array: bool, assign: bool = False) -> list[_Piece]:
        """An unquoted word up to a blank or operator: quotes removed, expansions done."""
        pieces: list[_Piece] = []
        word_start = True
        while self.pos < len(self.text):
            c = self.peek()
            if c in _WORD_END:
                break
            if c == "~" and (word_start or (assign and pieces and pieces[-1][0].endswith(":"))):
                pieces.append((self.tilde(), False))
            elif array and c in _GLOB + "{":
                what = "brace expansion" if c == "{" else f"glob character {c}"
                raise self.error(f"{what} inside an array is not supported: quote the element")
            else:
                pieces.extend(self.part(end=""))
            word_start = False
        return pieces

    def part(self, *, end: str) -> list[_Piece]:
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
        if rest not in ("", "/", ":", end) and rest not in _WORD_END:
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

    def double_quoted(self) -> list[_Piece]:
        opened = self.pos
        self.pos += 1
        pieces: list[_Piece] = []
        while True:
            c = self.peek()
            if c == "":
                raise self.error('unterminated double quote: add the closing "', opened)
            if c == '"':
                self.pos += 1
                return pieces or [("", False)]
            pieces.extend(self.dquoted_char(extra=""))

    def dquoted_char(self, extra: str) -> list[_Piece]:
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
        return self.error(f"command substitution `...` is not supported: {_VALUE}")

    # -- expansions ----------------------------------------------------------------------

    def dollar(self, *, quoted: bool) -> list[_Piece]:
        after = self.text[self.pos + 1 : self.pos + 2]
        if after == "(":
            if self.text.startswith("$((", self.pos):
                raise self.error(f"arithmetic $((...)) is not supported: {_NUMBER}")
            raise self.error(f"command substitution $(...) is not supported: {_VALUE}")
        if after == "[":
            raise self.error(f"arithmetic $[...] is not supported: {_NUMBER}")
        if after == "{":
            return self.braced(quoted)
        if after == "'" and not quoted:
            self.pos += 1
            return [(self.ansi_c(), False)]
        if after == '"' and not quoted:
            self.pos += 1
            return self.double_quoted()
        m = _NAME_RE.match(self.text, self.pos + 1)
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
        return self.error(f"special parameter ${which} is not supported: {_VALUE}")

    def braced(self, quoted: bool) -> list[_Piece]:
        if self.nesting >= MAX_NESTING:
            raise self.error(f"${{...}} nested more than {MAX_NESTING} deep: write the value "
                             "itself")
        self.nesting += 1
        try:
            return self.braced_inner(quoted)
        finally:
            self.nesting -= 1

    def braced_inner(self, quoted: bool) -> list[_Piece]:
        opened = self.pos
        self.pos += 2
        m = _NAME_RE.match(self.text, self.pos)
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

    def default_word(self, quoted: bool, opened: int) -> list[_Piece]:
        """The `word` of ${VAR:-word}, up to the matching `}`."""
        pieces: list[_Piece] = []
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
