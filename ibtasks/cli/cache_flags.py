"""`--cache oci://HOST[:PORT]/REPO` and `--cache-read-only`, on both subcommands (see
ibtasks.cache; the environment's IBTASKS_CACHE and IBTASKS_CACHE_READ_ONLY when not given)."""

from __future__ import annotations

import argparse
import os

from ibtasks.cache.location import CacheLocation, cache_location


def add_cache_flags(parser: argparse.ArgumentParser) -> None:
    """The shared cache's flags."""
    parser.add_argument("--cache", metavar="oci://HOST/REPO",
                        help="share the partition images and FIT through this OCI registry "
                             "repository (also IBTASKS_CACHE)")
    parser.add_argument("--cache-read-only", action="store_true",
                        help="take hits from the cache but upload nothing (untrusted jobs; "
                             "also IBTASKS_CACHE_READ_ONLY=1)")


def cache_from_args(args: argparse.Namespace) -> CacheLocation | None:
    """The cache a command line (or the environment) names; None when none. Raises
    UserError naming `--cache` or IBTASKS_CACHE for a malformed location."""
    return cache_location(getattr(args, "cache", None),
                          getattr(args, "cache_read_only", False), os.environ)
