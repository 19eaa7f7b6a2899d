"""Shell completion for the `ibtasks` command: the script `-- tabcompletion` writes (bash, or
zsh through its bashcompinit), made from the argparse parser and doit's commands, and the
hidden `--complete-tasks LINE` it calls for the task names of the graph a command line builds.

The script completes subcommands, each subcommand's flags and their values (file and folder
names for flags taking paths, the choices of those that have them, `-t`'s shorthands); after
`--`, doit's commands, their options and the task names of the words before `--`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shlex
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import FrameType

from ibtasks import __version__
from ibtasks.cli.completion_script import BASH_FUNCTIONS, COMPLETE_TASKS_FLAG, ZSH_PREAMBLE
from ibtasks.errors import UserError

# Seconds the task listing may take before the completion gives up and offers nothing (a
# config naming a FIFO, a build holding the lock, a huge graph): a TAB must never hang.
COMPLETE_TASKS_TIMEOUT_S = 3
# Flag values that are not file names on this machine, by argparse metavar: free text, a
# board-side path prefix, a registry location. Numbers (type int/float) are not files either.
NOT_LOCAL_PATHS = frozenset({"TEXT", "PREPEND_PATH", "oci://HOST/REPO"})


@dataclass(frozen=True)
class FlagValue:
    """What follows a flag: `kind` is `file`, `dir`, `words` (then `words` lists them) or
    `none` (a value, but nothing to offer: numbers, free text)."""

    kind: str
    words: tuple[str, ...] = ()


def flag_value(action: argparse.Action) -> FlagValue | None:
    """What a flag of the parser takes, from argparse's own description of it: None for a flag
    without a value (`--strict`); a directory for a metavar ending in DIR (`-d DIR`, `-w
    WORKDIR`), the load command's shorthands for `-t`, the choices when it has some."""
    from ibtasks.config.load_command import LOAD_CMD_ALIASES

    if action.nargs == 0:
        return None
    metavar = action.metavar if isinstance(action.metavar, str) else ""
    if action.choices:
        return FlagValue("words", tuple(str(choice) for choice in action.choices))
    if metavar == "LOADCMD":
        return FlagValue("words", tuple(LOAD_CMD_ALIASES))
    if action.type in (int, float) or not metavar or metavar in NOT_LOCAL_PATHS:
        return FlagValue("none")
    return FlagValue("dir" if metavar.endswith("DIR") else "file")


def subcommand_parsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The parser's subcommands (`uboot-script-gen`, `disk-image`, ...), each with its parser."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def takes_doit_commands(parser: argparse.ArgumentParser) -> bool:
    """Whether a subcommand runs doit's commands after `--` (it has the DOIT-ARGS positional)."""
    return any(action.dest == "doit_args" for action in parser._actions)


def render_script(parser: argparse.ArgumentParser, shell: str,
                  hardcoded_tasks: Sequence[str] | None = None) -> str:
    """The completion script for `shell` (`bash` or `zsh`), as text; with `hardcoded_tasks`,
    those task names are offered instead of asking the command line's graph each time (doit's
    `--hardcode-tasks`)."""
    from ibtasks.tasks.doit_commands import doit_commands

    subcommands = subcommand_parsers(parser)
    commands = doit_commands()
    top = [s for a in parser._actions for s in a.option_strings]
    cases: list[str] = []
    values: dict[str, list[str]] = {}
    for name, sub in subcommands.items():
        cases.append(f"        {name}) flags={_quote(_options_of(sub))} "
                     f"doit={1 if takes_doit_commands(sub) else 0};;")
        for action in sub._actions:
            value = flag_value(action)
            if value is None:
                continue
            key = value.kind + (":" + " ".join(value.words) if value.words else "")
            values.setdefault(key, []).extend(f"{name} {s}" for s in action.option_strings)
    for command in commands:
        for spelling, choices in command.values.items():
            key = "words:" + " ".join(choices) if choices else "none"
            values.setdefault(key, []).append(f"-- {command.name} {spelling}")
    value_cases = [f"        {'|'.join(_quote(p) for p in patterns)}) "
                   f"{_value_action(key)}; return 0;;" for key, patterns in values.items()]
    doit_cases = [f"        {_quote(c.name)}) flags={_quote(' '.join(c.options))} "
                  f"takes_tasks={int(c.takes_tasks)} takes_commands={int(c.takes_commands)};;"
                  for c in commands]
    text = (BASH_FUNCTIONS
            .replace("@VERSION@", __version__)
            .replace("@FLAG@", COMPLETE_TASKS_FLAG)
            .replace("@TOP@", _quote(" ".join(top + list(subcommands))))
            .replace("@SUBCOMMANDS@", "\n".join(cases))
            .replace("@VALUES@", "\n".join(value_cases))
            .replace("@DOIT_COMMANDS@", _quote(" ".join(c.name for c in commands)))
            .replace("@DOIT_CASES@", "\n".join(doit_cases))
            .replace("@HARDCODED@", "1" if hardcoded_tasks is not None else "0")
            .replace("@TASKS@", _quote("\n".join(hardcoded_tasks or ()))))
    if shell == "zsh":
        return ZSH_PREAMBLE + text + "complete -o filenames -F _ibtasks ibtasks\n"
    return text + "complete -F _ibtasks ibtasks\n"


def _options_of(parser: argparse.ArgumentParser) -> str:
    return " ".join(s for action in parser._actions for s in action.option_strings)


def _value_action(key: str) -> str:
    kind, _, words = key.partition(":")
    if kind in ("file", "dir"):
        return f"_ibtasks_paths {kind}"
    if kind == "words":
        return f"_ibtasks_reply {_quote(words)} \"$cur\""
    return ":"


def _quote(text: str) -> str:
    return shlex.quote(text) if text else "''"


class _TabcompletionParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"-- tabcompletion: {message}")


# How a command line runs, holding its folder's lock (cli.main.run_locked without a stamp).
Runner = Callable[[argparse.Namespace], int]


def write_completion(parser: argparse.ArgumentParser, args: argparse.Namespace,
                     run: Runner) -> int:
    """`ibtasks SUBCOMMAND ... -- tabcompletion [-s bash|zsh] [--hardcode-tasks]`: write the
    script to stdout, as doit's `tabcompletion` does (same options; the config is read only for
    `--hardcode-tasks`, to list this command line's tasks). Returns 0; a bad option of
    tabcompletion is a UserError."""
    options = _TabcompletionParser(prog="tabcompletion", add_help=False)
    options.add_argument("-s", "--shell", choices=("bash", "zsh"), default="bash")
    options.add_argument("--hardcode-tasks", action="store_true")
    chosen = options.parse_args(args.doit_args[1:])
    tasks = None
    if chosen.hardcode_tasks:
        tasks = list_tasks(args, run)
    sys.stdout.write(render_script(parser, chosen.shell, tasks))
    return 0


def list_tasks(args: argparse.Namespace, run: Runner) -> list[str]:
    """The task names of the graph `args` builds (doit's `list --all --quiet`, subtasks and
    board prefixes included), run by `run`, without the report flags that change only what a
    build prints."""
    listing = argparse.Namespace(**vars(args))
    listing.doit_args = ["list", "--all", "--quiet"]
    listing.watch = listing.json = listing.verbose = False
    listing.memory_map, listing.memory_map_svg = False, None
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = run(listing)
    return [line.strip() for line in out.getvalue().splitlines() if line.strip()] if code == 0 \
        else []


class _TooSlow(Exception):
    pass


def _give_up(signum: int, frame: FrameType | None) -> None:
    raise _TooSlow


@contextlib.contextmanager
def _silenced() -> Iterator[None]:
    """stderr (file descriptor 2 too: tools we start) to /dev/null while completing."""
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
        try:
            with contextlib.redirect_stderr(null):
                yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def complete_tasks(line: str, run: Runner) -> int:
    """`ibtasks --complete-tasks LINE` (COMPLETE_TASKS_FLAG): print the task names (one a
    line) of the graph that the words of LINE (the command line typed so far, `ibtasks
    SUBCOMMAND ...`) before its `--` build. Prints nothing, and nothing on stderr, when the
    line is incomplete, its config broken, or listing takes more than COMPLETE_TASKS_TIMEOUT_S
    seconds; a build running in the same folder is not waited for. Always returns 0."""
    from ibtasks.cli.arguments import build_parser, parse_args

    names: list[str] = []
    os.environ["IBTASKS_LOCK_TIMEOUT"] = "0"
    signal.signal(signal.SIGALRM, _give_up)
    signal.alarm(COMPLETE_TASKS_TIMEOUT_S)
    try:
        with _silenced(), contextlib.redirect_stdout(io.StringIO()):  # also `-h`'s help
            words = shlex.split(line)[1:]
            words = words[:words.index("--")] if "--" in words else words
            args = parse_args(build_parser(), words)
            if hasattr(args, "doit_args"):
                names = list_tasks(args, run)
    except (_TooSlow, Exception, SystemExit):  # whatever it is, a TAB prints nothing
        names = []
    finally:
        signal.alarm(0)
    sys.stdout.write("".join(f"{name}\n" for name in names))
    return 0
