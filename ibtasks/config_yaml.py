"""The YAML form of a config: the same keys as the bash form, domUs as a list of mappings.

    MEMORY_START: 0x40000000
    XEN: xen
    DOMUS:
      - KERNEL: Image        # DOMU_KERNEL[0]; the DOMU_ prefix may be left out
        MEM: 256

Keys are case-insensitive. Scalars are taken as written (0x40000000 stays hex), so the same
validation as for bash configs applies; every value remembers its line for error messages.
Indexed keys that are not per domU are lists (`BOOT_AUX_FILE: [BOOT.BIN, pmufw.elf]`), which
also set their count key (NUM_BOOT_AUX_FILE).
"""

from __future__ import annotations

import yaml

from ibtasks.config import RawConfig, RawKey, RawValue
from ibtasks.errors import UserError, at_line
from ibtasks.settings import SETTINGS_BY_NAME, suggest_key


def read_yaml_config(text: str, path: str) -> RawConfig:
    """Read a YAML config; raise `UserError` naming the line of anything malformed."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = at_line(path, mark.line + 1) if mark else path
        raise UserError(f"not valid YAML: {getattr(exc, 'problem', exc)}", where) from exc
    values: dict[RawKey, RawValue] = {}
    warnings: list[str] = []
    if root is None:
        return RawConfig(path, values)
    if not isinstance(root, yaml.MappingNode):
        raise UserError("expected a mapping of KEY: value", at_line(path, root.start_mark.line + 1))
    domus_seen = False
    lists: dict[str, tuple[int, str]] = {}
    for key_node, value_node in root.value:
        name = str(key_node.value).upper()
        where = at_line(path, key_node.start_mark.line + 1)
        if name == "DOMUS":
            domus_seen = True
            _read_domus(value_node, path, values, warnings)
            continue
        setting = SETTINGS_BY_NAME.get(name)
        if setting is not None and setting.per_domu and not name.startswith("DOMU_"):
            lists[name] = (_read_list(name, value_node, path, values), where)
            continue
        if setting is None or setting.per_domu:
            warnings.append(_unknown(name, where, per_domu=False))
            continue
        values[(name, None)] = RawValue(_scalar(value_node, name, path), where)
    if domus_seen:
        count = len({k[1] for k in values if k[1] is not None and k[0].startswith("DOMU_")})
        given = values.get(("NUM_DOMUS", None))
        if given is not None and given.text != str(count):
            raise UserError(f"NUM_DOMUS is {given.text} but DOMUS lists {count} domUs; "
                            "leave NUM_DOMUS out", given.where)
        values[("NUM_DOMUS", None)] = RawValue(str(count), path)
    for name, (count, where) in lists.items():
        if f"NUM_{name}" not in SETTINGS_BY_NAME:
            continue
        number = values.get((f"NUM_{name}", None))
        if number is not None and number.text != str(count):
            raise UserError(f"NUM_{name} is {number.text} but {name} lists {count}; leave "
                            f"NUM_{name} out", number.where)
        values[(f"NUM_{name}", None)] = RawValue(str(count), where)
    return RawConfig(path, values, tuple(warnings))


def _read_list(name: str, node: yaml.Node, path: str, values: dict[RawKey, RawValue]) -> int:
    """`KEY: [a, b]` as KEY[0], KEY[1]; returns how many."""
    if not isinstance(node, yaml.SequenceNode):
        raise UserError(f"{name}: expected a list", at_line(path, node.start_mark.line + 1))
    for index, item in enumerate(node.value):
        values[(name, index)] = RawValue(_scalar(item, f"{name}[{index}]", path),
                                         at_line(path, item.start_mark.line + 1))
    return len(node.value)


def _read_domus(node: yaml.Node, path: str, values: dict[RawKey, RawValue],
                warnings: list[str]) -> None:
    if not isinstance(node, yaml.SequenceNode):
        raise UserError("DOMUS: expected a list of domU mappings",
                        at_line(path, node.start_mark.line + 1))
    for index, item in enumerate(node.value):
        if not isinstance(item, yaml.MappingNode):
            raise UserError(f"DOMUS[{index}]: expected a mapping like KERNEL: Image",
                            at_line(path, item.start_mark.line + 1))
        for key_node, value_node in item.value:
            short = str(key_node.value).upper()
            name = short if short.startswith("DOMU_") else f"DOMU_{short}"
            where = at_line(path, key_node.start_mark.line + 1)
            setting = SETTINGS_BY_NAME.get(name)
            if setting is None or not setting.per_domu:
                warnings.append(_unknown(f"{name}[{index}]", where, per_domu=True))
                continue
            values[(name, index)] = RawValue(_scalar(value_node, name, path), where)


def _scalar(node: yaml.Node, name: str, path: str) -> str:
    if not isinstance(node, yaml.ScalarNode):
        raise UserError(f"{name}: expected a single value", at_line(path, node.start_mark.line + 1))
    if node.tag == "tag:yaml.org,2002:null":
        return ""
    return str(node.value)


def _unknown(label: str, where: str, per_domu: bool) -> str:
    base = label.split("[")[0]
    suggestion = suggest_key(base)
    hint = ""
    if suggestion:
        shown = suggestion.removeprefix("DOMU_") if per_domu else suggestion
        hint = f"; did you mean {shown}?"
    return f"{where}: {label}: unknown key, ignored{hint}"
