"""The `ibtasks` command: the no-op fast path first, with the standard library only.

A no-op rebuild replays the last run's output (see `fast_path`) before argparse, pathlib, doit or
any of our graph modules are imported; everything else goes to `cli.main`.
"""

import os
import sys

from ibtasks.cli.fast_path import replay_if_unchanged, stamp_for

# Flags that report on the build (each task and why, a JSON result) or write a file of their
# own (the memory map's picture): the replay cannot.
REPORT_FLAGS = ("-v", "--verbose", "--json", "--memory-map-svg")


def reports_on_build(argv: list[str]) -> bool:
    """Whether `argv` (before any `--`) asks for a report of the tasks, which needs doit."""
    ours = argv[:argv.index("--")] if "--" in argv else argv
    return any(word.split("=", 1)[0] in REPORT_FLAGS for word in ours)


def main() -> int:
    argv = sys.argv[1:]
    stamp = stamp_for(argv, os.getcwd())
    if stamp is not None and not reports_on_build(argv):
        replay = replay_if_unchanged(stamp)
        if replay is not None:
            sys.stdout.write(replay)
            return 0
    from ibtasks.cli.main import main as cli_main

    return cli_main(argv)
