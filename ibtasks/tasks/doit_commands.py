"""doit's commands as our command line offers them after `--`: names, whether each takes task
names, its own options; read from doit's command classes, for the shell completion script."""

from __future__ import annotations

from dataclasses import dataclass

from ibtasks.tasks.runner import IbtasksMain

# Ours, not doit's (doit 0.37 has none): `-- auto` is `--watch` (ibtasks.cli.main).
WATCH_COMMAND = "auto"


@dataclass(frozen=True)
class DoitCommand:
    """One command after `--`: `name` (`forget`), whether it takes task names (`TASK` in doit's
    usage line) or command names (`help COMMAND`), and its options (`--reporter`, `-s`);
    `values` maps each option that takes a value to its choices (empty: any value)."""

    name: str
    takes_tasks: bool
    takes_commands: bool
    options: tuple[str, ...]
    values: dict[str, tuple[str, ...]]


def doit_commands() -> list[DoitCommand]:
    """Every command `ibtasks ... -- COMMAND` runs, sorted by name: doit's own (as
    `IbtasksMain` registers them, reading no doit.cfg or pyproject.toml) and `auto`."""
    main = IbtasksMain(config_filenames=())
    commands = [_describe(name, cls) for name, cls in main.get_cmds().to_dict().items()]
    commands.append(DoitCommand(WATCH_COMMAND, False, False, (), {}))
    return sorted(commands, key=lambda command: command.name)


def _describe(name: str, cls: type) -> DoitCommand:
    usage = getattr(cls, "doc_usage", "") or ""
    options: list[str] = []
    values: dict[str, tuple[str, ...]] = {}
    for option in getattr(cls, "cmd_options", ()):
        spellings = [f"-{option['short']}" if option.get("short") else "",
                     f"--{option['long']}" if option.get("long") else ""]
        for spelling in filter(None, spellings):
            options.append(spelling)
            if option.get("type") is not bool:
                values[spelling] = tuple(str(choice) for choice, _ in option.get("choices", ()))
    return DoitCommand(name, "TASK" in usage, "COMMAND" in usage, tuple(options), values)
