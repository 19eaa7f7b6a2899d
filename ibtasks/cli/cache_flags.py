"""`--cache oci://HOST[:PORT]/REPO` and `--cache-read-only`, on both subcommands (see
ibtasks.cache); the config's CACHE and CACHE_READ_ONLY keys when not given, then the
environment's IBTASKS_CACHE and IBTASKS_CACHE_READ_ONLY."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from ibtasks.cache.location import CacheLocation, cache_location

if TYPE_CHECKING:
    from ibtasks.config.reader import RawConfig


def add_cache_flags(parser: argparse.ArgumentParser) -> None:
    """The shared cache's flags."""
    parser.add_argument("--cache", metavar="oci://HOST/REPO",
                        help="share the partition images and FIT through this OCI registry "
                             "repository (also IBTASKS_CACHE)")
    parser.add_argument("--cache-read-only", action="store_true",
                        help="take hits from the cache but upload nothing (untrusted jobs; "
                             "also IBTASKS_CACHE_READ_ONLY=1)")


def cache_from_args(args: argparse.Namespace, raw: RawConfig) -> CacheLocation | None:
    """The cache a command line, its config's raw values `raw` (the keys are not part of the
    validated config, so that no task's input changes with the cache) or the environment
    names; None when none. Raises UserError naming `--cache`, the config's file, line and
    CACHE, or IBTASKS_CACHE for a malformed location."""
    from ibtasks.config.settings import is_set

    key = raw.values.get(("CACHE", None))
    read_only_key = raw.values.get(("CACHE_READ_ONLY", None))
    return cache_location(getattr(args, "cache", None),
                          getattr(args, "cache_read_only", False), os.environ,
                          key=(key.text, key.where) if key is not None else None,
                          key_read_only=is_set(read_only_key.text)
                          if read_only_key is not None else None)
