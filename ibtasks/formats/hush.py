"""Words and strings in a U-Boot script, written so that U-Boot's shell reads them back unchanged.

U-Boot runs a sourced script with hush: the 2001 parser (`common/cli_hush.c`, still the default)
or busybox's (`common/cli_hush_upstream.c`, CONFIG_HUSH_MODERN). Both split words at blanks and
newlines, run `;`, `&&` and `||`, start a comment at a `#` that begins a word, and expand `$name`
and `${name}` also inside "..."; '...' is literal to the next `'`. They disagree on backslashes:
the old parser drops every backslash, even inside '...' (`done_word`), the new one keeps it
inside '...' and inside "..." unless it escapes `$`, `` ` ``, `"` or `\\`. And when a line
references a variable, the old parser expands it, puts each quoted word back into '...' and
parses the line again (`make_string`). The old parser also starts a '...' at a `'` inside
"..." (`parse_stream`). Hence: a backslash or a `'` cannot be written at all, a word needing
quotes goes into '...', and a string keeps the seed's "..." unless it holds `$` or `` ` ``
(which "..." would expand) or `"`.
"""

from __future__ import annotations

import re

from ibtasks.errors import is_control

# Characters neither shell treats specially anywhere in a word (not first: `=` makes a first
# word an assignment, which never happens to a file name or a value).
_PLAIN = re.compile(r"[A-Za-z0-9_./+,:=@%-]+")
# Characters a string cannot hold inside "...": it would expand or end there.
_NOT_IN_DOUBLE_QUOTES = frozenset('$`"')


def describe_char(char: str) -> str:
    """`char` as a message shows it: `'\\n'`, `'\\x1b'`, `'$'`."""
    return repr(char)


def first_control(text: str) -> str | None:
    """The first control character of `text`, or None."""
    return next((c for c in text if is_control(c)), None)


def word_problem(text: str) -> str | None:
    """Why `text` (a file name) cannot be one word of a U-Boot script, or None if it can.

    Control characters, backslashes and quotes are refused: a file name with them cannot be
    written so that both U-Boot shells, and xl's config parser, read it back as it is.
    """
    control = first_control(text)
    if control is not None:
        return f"has a control character ({describe_char(control)})"
    if "\\" in text:
        return "has a backslash, which U-Boot's two shells read differently"
    for quote in ("'", '"'):
        if quote in text:
            return f"has a quote ({quote}), which U-Boot's shell or an xl config cannot carry"
    if not text:
        return "is empty"
    return None


def string_problem(text: str) -> str | None:
    """Why `text` cannot be one quoted string of a U-Boot script, or None if it can.

    Control characters, backslashes and single quotes are refused: U-Boot's old shell starts a
    '...' at a `'` even inside "..." and keeps no quote character in '...', so no quoting
    carries a `'`.
    """
    control = first_control(text)
    if control is not None:
        return f"has a control character ({describe_char(control)})"
    if "\\" in text:
        return "has a backslash, which U-Boot's two shells read differently"
    if "'" in text:
        return "has a single quote ('), which U-Boot's shell cannot quote"
    return None


def quote_word(text: str) -> str:
    """`text` as one word of a U-Boot command: as it is when plain, else in '...'.

    Raises ValueError when `word_problem` has a reason; callers check while loading the config.
    """
    if _PLAIN.fullmatch(text):
        return text
    problem = word_problem(text)
    if problem is not None:
        raise ValueError(f"{text!r} {problem}")
    return f"'{text}'"


def quote_string(text: str) -> str:
    """`text` as one string argument (`fdt set ... bootargs "..."`): in "..." as the seed
    writes it, or in '...' when it holds `$` or `` ` `` (which "..." would expand) or `"`.

    Raises ValueError when `string_problem` has a reason; callers check while loading the
    config.
    """
    problem = string_problem(text)
    if problem is not None:
        raise ValueError(f"{text!r} {problem}")
    if _NOT_IN_DOUBLE_QUOTES.intersection(text):
        return f"'{text}'"
    return f'"{text}"'


def fdt_name(name: str) -> str:
    """A node path or property name as an `fdt` argument: `#` escaped as `\\#` (the seed's
    `\\#address-cells`, which both shells read as `#`), other names as `quote_word`."""
    if _PLAIN.fullmatch(name.replace("#", "")):
        return name.replace("#", "\\#")
    return quote_word(name)
