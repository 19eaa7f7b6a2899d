"""What the config puts into the boot script, checked while loading it: nothing can inject.

Every file name, command line, string value and load command that lands in boot.source must
come back from U-Boot's shell as written (`ibtasks.formats.hush`), or the config is refused with one
line naming the key; a file outside the root (-d) directory and an unknown load command are
warnings. Control characters are refused in every value: none belongs in a config, and a
newline in a value would start a line of its own in the script.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ibtasks.config.load_command import check_load_command
from ibtasks.errors import UserError
from ibtasks.formats.hush import describe_char, first_control, string_problem, word_problem

if TYPE_CHECKING:
    from ibtasks.config.model import Config
    from ibtasks.config.reader import RawConfig

# Keys whose values become string properties in the `fdt set` commands (command lines are
# checked on their final value, with the `root=` deduction).
STRING_VALUE_KEYS = ("DOMU_SHARED_MEM", "CPUPOOL", "DOMU_COLORS", "DOMU_PASSTHROUGH_PROP",
                     "DOMU_VCPU_HARD_AFFINITY", "DOMU_ENHANCED", "DOMU_CAPS")
# Keys whose words become node paths in the `fdt set` commands.
NODE_PATH_KEYS = ("DOMU_PASSTHROUGH_PATHS",)


def _label(name: str, index: int | None) -> str:
    if index is None:
        return name
    if "," in name:  # DOMU_VCPU_HARD_AFFINITY,v: one raw key per [domU,vCPU]
        name, _, vcpu = name.partition(",")
        return f"{name}[{index},{vcpu}]"
    return f"{name}[{index}]"


def check_raw_values(raw: RawConfig) -> None:
    """No value of any key holds a control character (a newline, CR, tab, NUL, ESC...)."""
    for (name, index), value in sorted(raw.values.items(), key=lambda kv: kv[1].where):
        control = first_control(value.text)
        if control is not None:
            raise UserError(f"{_label(name, index)}: has a control character "
                            f"({describe_char(control)}); write the value on one line",
                            value.where)
        base = name.partition(",")[0]
        if base in STRING_VALUE_KEYS or base in NODE_PATH_KEYS:
            problem = (string_problem(value.text) if base in STRING_VALUE_KEYS
                       else _words_problem(value.text))
            if problem is not None:
                raise UserError(f"{_label(name, index)}: {problem}", value.where)


def _words_problem(text: str) -> str | None:
    for word in text.split():
        problem = word_problem(word)
        if problem is not None:
            return f"{word} {problem}"
    return None


def check_command_line(text: str, label: str, where: str | None) -> None:
    """A kernel or Xen command line can be one `fdt set` string, as `fdt set` reads it.

    Raises UserError naming `label`: a control character, backslash or `'` cannot be quoted
    for U-Boot's shell, `"` cannot be written in xl configs (`extra="..."`), and a value that
    starts with `<` or `[` would be read by `fdt set` as cells or bytes, not a string.
    """
    problem = string_problem(text)
    if problem is None and '"' in text:
        problem = "has a double quote, which cannot appear in a command line"
    if problem is None and text[:1] in ("<", "["):
        problem = (f"starts with {text[0]}, which U-Boot's fdt set reads as "
                   f"{'cells' if text[0] == '<' else 'bytes'}, not a string")
    if problem is not None:
        raise UserError(f"{label}: {problem}", where)


def check_script_inputs(config: Config, raw: RawConfig, load_cmd_label: str,
                        output_name_label: str | None) -> tuple[str, ...]:
    """Check what `config` writes into the script; return the warnings to show.

    `load_cmd_label` names where the main load command came from (`-t`, `LOAD_CMD` or
    `XEN_LOAD`); `output_name_label` is `-o` when the command line named the outputs.
    Raises UserError naming the key (and its line) of the first value that cannot be written.
    """
    warnings: list[str] = []
    # Files dom0 starts domUs from are named in xl configs (`kernel="/boot/<path>"`) too.
    named = config.binaries() + [b for d in config.domus
                                 for b in (d.kernel, d.ramdisk, d.passthrough_dtb) if b]
    for binary in named:
        problem = word_problem(binary.path)
        if problem is not None:
            raise UserError(f"{binary.key}: the file name {binary.path} {problem}", binary.where)
    for binary in config.binaries():
        if binary.path.startswith("/"):
            warnings.append(f"{binary.where}: {binary.key}: {binary.path} is outside -d "
                            f"({config.root_dir}): the script loads it by this absolute path, "
                            "which the board must be able to reach")
    prefix = config.boot.prepend_path
    if prefix and (problem := word_problem(prefix)) is not None:
        raise UserError(f"-p: the prefix {prefix} {problem}")
    names = [("FDTEDIT", config.fdtedit), ("UBOOT_SCRIPT", config.uboot_script)]
    for key, name in names:
        problem = word_problem(name)
        if problem is not None:
            raise UserError(f"{output_name_label or key}: the output name {name} {problem}",
                            None if output_name_label else _where(raw, key))
    if config.boot.boot_cmd == "bootm" and config.xen.path.startswith("/"):
        raise UserError(f"BOOT_CMD: bootm writes {config.xen.key} as a uImage, <path>.ub, in the "
                        f"output directory, but {config.xen.path} is outside -d "
                        f"({config.root_dir}); put {config.xen.key} under -d",
                        _where(raw, "BOOT_CMD"))
    _check_command_lines(config, raw)
    loads = [(load_cmd_label, config.load_cmd, _where(raw, load_cmd_label))]
    loads += [(name, cmd, _where(raw, name)) for name, cmd in
              (("XEN_LOAD", config.boot.xen_load), ("DOM0_LOAD", config.boot.dom0_load)) if cmd]
    loads += [(f"DOMU_LOAD[{i}]", cmd, _where(raw, "DOMU_LOAD", i))
              for i, cmd in config.boot.domu_load]
    seen: set[tuple[str, str]] = set()
    for label, command, where in loads:
        if (label, command) in seen:
            continue
        seen.add((label, command))
        error, warning = check_load_command(command, label, where)
        if error is not None:
            raise UserError(error, where)
        if warning is not None:
            warnings.append(warning)
    return tuple(warnings)


def _check_command_lines(config: Config, raw: RawConfig) -> None:
    if config.linux_mode:
        check_command_line(config.boot.linux_cmd, "LINUX_CMD", _where(raw, "LINUX_CMD"))
        return
    check_command_line(config.xen_cmd, "XEN_CMD", _where(raw, "XEN_CMD"))
    if config.dom0_kernel is not None:
        check_command_line(config.dom0_cmd, "DOM0_CMD", _where(raw, "DOM0_CMD"))
    for domu in config.domus:
        check_command_line(domu.cmd, f"DOMU_CMD[{domu.index}]",
                           _where(raw, "DOMU_CMD", domu.index))


def _where(raw: RawConfig, name: str, index: int | None = None) -> str | None:
    value = raw.values.get((name, index))
    return value.where if value is not None else None
