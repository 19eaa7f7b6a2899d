"""The command line: drop-in flags of ImageBuilder's scripts, running our doit graph.

    ibtasks uboot-script-gen -c CONFIG -d DIR -t LOADCMD [-o NAME] [-- DOIT-ARGS...]
    ibtasks disk-image -c CONFIG -d DIR -t LOADCMD -o disk.img [-w WORKDIR] [-s SLACK] [-a]
                       [--table gpt|dos]

User errors print one line (`ibtasks: error: ...`) and exit non-zero; anything else is a bug.
A build holds its directory's lock (ibtasks.tasks.build_lock) from before it reads the config until
its cleanup is done, and touches only files it wrote (ibtasks.tasks.ownership).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ibtasks.cli.arguments import build_parser, parse_args
from ibtasks.cli.completion_script import COMPLETE_TASKS_FLAG
from ibtasks.cli.fast_path import remove_stamp, stamp_for
from ibtasks.cli.folders import check_writable, make_folder, output_dir_of
from ibtasks.errors import UserError, error_line

# Imports of doit and of our graph modules cost ~70 ms; they happen only past the no-op fast
# path (see ibtasks.cli.fast_path), inside the functions that need them.

EXIT_USER_ERROR = 1


def run_locked(args: argparse.Namespace, stamp: str | None) -> int:
    """Run the command holding the lock of its state folder (and of disk-image's -w folder),
    after healing what a killed build left: set-aside files, temporaries (tasks.ownership)."""
    from ibtasks.tasks.build_dirs import WORK_DIR_NAME
    from ibtasks.tasks.build_lock import BuildLock, LockTimeout, hold_locks, lock_timeout
    from ibtasks.tasks.ownership import OutputGuard, remove_stale_temporaries

    out_dir = output_dir_of(args)
    state = out_dir / WORK_DIR_NAME
    check_writable(out_dir)
    make_folder(state, "the state folder")
    try:
        timeout = lock_timeout(os.environ)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    locks = [BuildLock(str(state / "lock"), str(out_dir), timeout)]
    folders = [state, state / "check", out_dir]
    work = getattr(args, "work", None)
    if work and os.path.realpath(work) != os.path.realpath(state):
        if os.path.lexists(work) and not os.path.isdir(work):
            raise UserError(f"-w {work}: is not a directory")
        make_folder(Path(work), "the work folder (-w)")
        locks.append(BuildLock(str(Path(work) / ".ibtasks-lock"), work, timeout))
        folders.append(Path(work))
    image = getattr(args, "image", None)
    if image:
        folders.append(Path(image).parent)
    try:
        held = hold_locks(locks)
    except LockTimeout as exc:
        raise UserError(str(exc)) from exc
    except OSError as exc:  # the lock file itself; other OS errors are not about locking
        raise UserError(f"cannot lock {exc.filename or state}: {exc.strerror}") from exc
    with held:
        guard = OutputGuard(state)
        guard.heal()
        remove_stale_temporaries(folders)
        _heal_state_files(state, stamp)
        if args.command == "disk-image":
            from ibtasks.cli.disk_image import disk_image

            return disk_image(args, guard, stamp)
        from ibtasks.cli.uboot_script_gen import uboot_script_gen

        return uboot_script_gen(args, stamp, guard)


def _heal_state_files(state: Path, stamp: str | None) -> None:
    """Set aside the records our tasks pass on (layout.json, check records) and this command's
    no-op stamp when they cannot be read: their tasks then run again (ibtasks.tasks.state_file).
    Then forget the stamp: a build that fails must not be replayed."""
    from ibtasks.tasks.state_file import check_state_file

    check_state_file(state / "layout.json")
    try:
        checks = sorted((state / "check").glob("*.json"))
    except OSError:
        checks = []
    for record in checks:
        check_state_file(record)
    if stamp is not None:
        check_state_file(stamp)
        remove_stamp(stamp)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == [COMPLETE_TASKS_FLAG]:  # the completion script's call (cli.completion)
        from ibtasks.cli.completion import complete_tasks

        return complete_tasks(" ".join(argv[1:]), lambda words: run_locked(words, None))
    try:
        parser = build_parser()
        args = parse_args(parser, argv)
        if args.command in ("run", "qemu-dtb"):
            from ibtasks.cli import run

            if args.command == "qemu-dtb":
                return run.qemu_dtb(args)
            return run.run_system(args, lambda build: run_locked(build, None),
                                  lambda words: parse_args(parser, words))
        if getattr(args, "doit_args", [])[:1] == ["tabcompletion"]:
            from ibtasks.cli.completion import write_completion

            return write_completion(parser, args, lambda words: run_locked(words, None))
        if getattr(args, "doit_args", [])[:1] == ["auto"]:
            # doit 0.37 has no `auto` (doit-auto1 needs the unmaintained pyinotify): our
            # --watch (watchfiles) rebuilds the whole graph when an input changes.
            if args.doit_args[1:]:
                raise UserError("-- auto: takes no task names here (every task is rebuilt "
                                "as needed); use -- auto alone or --watch")
            args.doit_args, args.watch = [], True
        if args.watch:
            from ibtasks.cli.watch import watch_and_rebuild

            args.verbose = True  # each rebuild names the tasks it reran
            return watch_and_rebuild(args, lambda: run_locked(args, None))
        stamp = None
        if not args.doit_args:
            # The no-op fast path (entry.main) found this command's stamp stale or missing.
            stamp = stamp_for(argv, os.getcwd())
        return run_locked(args, stamp)
    except UserError as exc:
        sys.stderr.write(error_line(str(exc)))
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        sys.stderr.write("ibtasks: interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
