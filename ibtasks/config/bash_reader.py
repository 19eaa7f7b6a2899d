"""Read ImageBuilder's bash config files without running them.

The original `source`s its config. We parse the subset of bash that configs really use
(assignments, quoting, `$VAR` expansion, indexed arrays) with bash's own semantics, and reject
everything else with a message naming the line, because a config must never be executed.
This module reads statements and assignments; `bash_words` reads and expands each word.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from ibtasks.config.bash_words import (
    GLOB,
    NAME_PATTERN,
    NAME_RE,
    NOT_EXECUTED,
    WORD_END,
    WRITE_NUMBER,
    WRITE_PLAIN,
    BashWords,
    Piece,
)
from ibtasks.config.settings import SETTINGS_BY_NAME


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


_ASSIGN = re.compile(rf"({NAME_PATTERN})(?:\[([^\]\s]*)\])?(\+?)=")
_ELEMENT = re.compile(r"\[([^\]\s]*)\]=")
_KEYWORDS = {
    "if", "then", "elif", "else", "fi", "for", "while", "until", "do", "done", "case", "esac",
    "select", "function", "time", "coproc", "[[", "]]", "!", "{", "}",
}  # fmt: skip
_DECLARE = {"declare", "typeset", "local", "readonly"}


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


class _Parser(BashWords):
    """The statements of a config: assignments, `export`, `declare -A`; anything else is
    refused with the most helpful message we can give."""

    def __init__(self, text: str, path: str, environ: Mapping[str, str]) -> None:
        super().__init__(text, path, environ)
        self.out: list[Assignment] = []

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
        while end < len(self.text) and self.text[end] not in WORD_END:
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
            elif NAME_RE.fullmatch(name := self.raw_word()):
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
            raise self.error(f"arithmetic ((...)) is not supported: {WRITE_NUMBER}")
        if c2 in ("&&", "||"):
            raise self.error(f"`{c2}` is not supported: {WRITE_PLAIN}")
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
            raise self.error(f"{what} is not supported: {WRITE_PLAIN}")
        word = self.raw_word()
        after = self.pos + len(word)
        rest = self.text[after:].lstrip(" \t")
        if word.isdigit() and self.text[after : after + 1] in ("<", ">"):
            raise self.error(
                f"redirection `{word}{self.text[after]}` is not supported: {WRITE_PLAIN}")
        if word in ("source", "."):
            raise self.error(
                f"`{word}` is not supported: {NOT_EXECUTED}copy the other file's assignments "
                "into this one"
            )
        if word in _KEYWORDS:
            raise self.error(f"`{word}` is not supported: {WRITE_PLAIN}")
        if word in _DECLARE:
            raise self.error(f"`{word}` is not supported: {WRITE_PLAIN}")
        if NAME_RE.fullmatch(word) and rest.startswith("()"):
            raise self.error(f"function definitions are not supported: {WRITE_PLAIN}")
        if NAME_RE.fullmatch(word) and rest.startswith(("=", "+=")):
            raise self.error(
                f"`{word} =` is not an assignment: bash needs NAME=value without spaces around ="
            )
        if "`" in word or "$(" in word:
            self.pos += word.index("`" if "`" in word else "$(")
            self.word(array=False)  # raises the error for the substitution
        raise self.error(
            f"command `{word}` is not supported: {NOT_EXECUTED}write only assignments (NAME=value)"
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

    def split(self, pieces: list[Piece]) -> list[str]:
        """Bash word splitting of an unquoted array element, on blanks (the default IFS)."""
        fields: list[str] = []
        current: str | None = None
        for text, splittable in pieces:
            if not splittable:
                current = (current or "") + text
                continue
            if glob := next((g for g in GLOB if g in text), None):
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
