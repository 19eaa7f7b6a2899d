"""Where a build's files live and how doit sees them: the work folder (`.ibtasks`), paths
anchored to the directory doit runs in, and the build's one timestamp (SOURCE_DATE_EPOCH).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from ibtasks.config.model import Config
from ibtasks.errors import UserError

WORK_DIR_NAME = ".ibtasks"
# Every timestamp when SOURCE_DATE_EPOCH is unset, so builds stay identical: 1980-01-01, the
# earliest time FAT can store (and non-zero, which E2FSPROGS_FAKE_TIME needs to take effect).
DEFAULT_EPOCH = 315532800


def source_date_epoch(environ: Mapping[str, str]) -> int:
    """SOURCE_DATE_EPOCH (reproducible-builds.org), in seconds since 1970, or `DEFAULT_EPOCH`
    when unset or empty; raise `UserError` when it is not a whole number."""
    text = environ.get("SOURCE_DATE_EPOCH", "")
    if not text:
        return DEFAULT_EPOCH
    if not text.isdigit():
        raise UserError(f"SOURCE_DATE_EPOCH: expected seconds since 1970, got '{text}'")
    return int(text)


def work_dir(config: Config) -> Path:
    """Where intermediate files (checks, layout, doit's state) live: inside the output dir."""
    return config.output_dir / WORK_DIR_NAME


def anchored_path(path: Path, anchor: Path) -> Path:
    """`path` (relative to the current directory, or absolute) as doit should see it when it
    runs in `anchor`: relative when it lies inside `anchor`, else absolute.

    doit keys its record by the file paths as given; relative to the output directory they stay
    the same when a built tree is copied elsewhere (a CI cache restore), so nothing reruns.
    Paths with `..` are never rewritten textually (a symlinked directory resolves `..`
    elsewhere): they are made absolute as written.
    """
    cwd = os.getcwd()
    full, base = os.path.join(cwd, path), os.path.join(cwd, anchor)
    if ".." in Path(full).parts or ".." in Path(base).parts:
        return Path(full)
    full, base = os.path.normpath(full), os.path.normpath(base)
    if os.path.commonpath([full, base]) == base:
        return Path(os.path.relpath(full, base))
    return Path(full)


def anchored(config: Config, anchor: Path) -> Config:
    """`config` with its directories (and the FIT's key paths) as seen from `anchor`, the
    directory doit runs in (see `anchored_path`); the tasks of the result are path-independent
    when the -d and output directories lie inside `anchor`."""
    fit = config.fit
    if fit is not None:
        fit = replace(fit,
                      key_dir=anchored_path(fit.key_dir, anchor) if fit.key_dir else None,
                      u_boot_dtb=anchored_path(fit.u_boot_dtb, anchor) if fit.u_boot_dtb
                      else None)
    return replace(config, root_dir=anchored_path(config.root_dir, anchor),
                   output_dir=anchored_path(config.output_dir, anchor), fit=fit)
