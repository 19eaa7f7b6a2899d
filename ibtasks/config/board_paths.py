"""Paths as the board asks for them, and output names kept inside the output directory.

The script, the boot partition and the xl configs name every input by the path the board will
ask for: relative to the root (-d) directory however the config spells it (`./xen`,
`/abs/root/xen`, `sub/../xen`, `//xen`), as upstream since 2022 computes it (`realpath
--no-symlinks`, then the root's prefix stripped), so lexically and without resolving symlinks
(README Q10). A file outside the root keeps its absolute path, as upstream writes it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path


def absolute_lexical(path: str | os.PathLike[str]) -> str:
    """`path` made absolute from the current directory, `.`, `..` and `//` resolved by text
    (`realpath --no-symlinks`)."""
    text = re.sub(r"^/{2,}", "/", os.fspath(path))  # POSIX keeps a leading `//`; realpath not
    return os.path.normpath(os.path.abspath(text))


def board_path(root: Path, path: str) -> tuple[str, bool]:
    """(the path the board asks for, whether it lies inside `root`) of `path`, which is
    relative to `root` or absolute.

    Inside the root the path is relative to it (`sub/../xen` -> `xen`); outside, absolute.
    """
    base = absolute_lexical(root)
    full = absolute_lexical(os.path.join(base, re.sub(r"^/{2,}", "/", path)))
    if full == base or full.startswith(base.rstrip("/") + "/"):
        return os.path.relpath(full, base), True
    return full, False


def output_name_problem(output_dir: Path, name: str) -> tuple[str, str | None]:
    """(`name` normalised, why it is not a file inside `output_dir` or None).

    Output names from the config (UBOOT_SOURCE, FDTEDIT, FIT...) must stay inside the output
    directory (a subdirectory is fine); only the command line (-o, --output-dir) may write
    elsewhere.
    """
    normal, inside = board_path(output_dir, name)
    if not inside:
        return normal, (f"{name} is outside the output directory {output_dir}; name a file "
                        "inside it, or give the path on the command line (-o)")
    if normal == ".":
        return normal, f"{name} names the output directory itself, not a file"
    return normal, None
