"""The folders a command line names: -d must exist and be searchable, outputs and -w must be
writable directories (made when missing); each problem is one `UserError` naming the flag.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ibtasks.errors import UserError


def check_writable(directory: Path, flag: str = "") -> None:
    """`directory` exists (made if needed) and is writable; errors start with `flag` (`-w `,
    `-o disk.img: `) when a flag named it."""
    if os.path.lexists(directory) and not directory.is_dir():
        raise UserError(f"{flag}{directory}: is not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{flag}cannot create output directory {directory}: {exc.strerror}"
                        ) from exc
    if not os.access(directory, os.W_OK | os.X_OK):
        raise UserError(f"{flag}output directory {directory} is not writable")


def input_dir(text: str) -> Path:
    """The -d directory, which must exist and be searchable (every input is looked up in it);
    raises UserError naming -d, the path and the OS reason."""
    import stat

    try:
        mode = os.stat(text).st_mode
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise UserError(f"-d {text}: not a directory") from exc
    except OSError as exc:
        raise UserError(f"-d {text}: cannot reach it: {exc.strerror}") from exc
    if not stat.S_ISDIR(mode):
        raise UserError(f"-d {text}: not a directory")
    if not os.access(text, os.X_OK):
        raise UserError(f"-d {text}: cannot look up files in it: {os.strerror(13)}")
    return Path(text)


def output_dir_of(args: argparse.Namespace) -> Path:
    """Where outputs and the state folder go: --output-dir, else -d (see config.Options)."""
    root = input_dir(args.root)
    output_dir = getattr(args, "output_dir", None)
    return Path(output_dir) if output_dir else root


def make_folder(folder: Path, what: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create {what} {folder}: {exc.strerror}") from exc
