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

The file is composed (never constructed) by `BoundedLoader`, which refuses what no config needs
and a hostile file uses: nesting past `MAX_DEPTH`, aliases that stand for more than
`MAX_ALIAS_NODES` nodes ("billion laughs"), recursive aliases, duplicate and non-scalar keys.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml

from ibtasks.config.reader import RawConfig, RawKey, RawValue
from ibtasks.config.settings import SETTINGS_BY_NAME, suggest_key
from ibtasks.errors import UserError, at_line

# A config is at most 4 levels deep (mapping, DOMUS list, domU mapping, value).
MAX_DEPTH = 20
# Anchors and aliases are fine for sharing a value or a domU; not for multiplying nodes.
MAX_ALIAS_NODES = 10_000


class _Refused(yaml.MarkedYAMLError):
    """Valid YAML that a config may not be (too deep, too many alias nodes, duplicate keys)."""

    def __init__(self, problem: str, mark: Any) -> None:
        super().__init__(problem=problem, problem_mark=mark)


class BoundedLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader whose composer enforces the limits above.

    Raises a `yaml.MarkedYAMLError` whose `problem_mark` is where the offending node starts.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0
        self.alias_nodes = 0
        self.weights: dict[int, int] = {}

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        target = None
        if isinstance(event, yaml.AliasEvent) and event.anchor is not None:
            target = self.anchors.get(event.anchor)
        if isinstance(parent, yaml.MappingNode) and index is None:  # a mapping's key
            if not isinstance(event, yaml.ScalarEvent | yaml.AliasEvent) or (
                    target is not None and not isinstance(target, yaml.ScalarNode)):
                raise _Refused("a key must be a plain name", event.start_mark)
        if isinstance(event, yaml.AliasEvent):
            if target is not None:
                if target.end_mark is None:  # the alias sits inside its own anchor
                    raise _Refused(f"alias *{event.anchor} refers to itself",
                                   event.start_mark)
                self.alias_nodes += self.weight(target)
                if self.alias_nodes > MAX_ALIAS_NODES:
                    raise _Refused(f"aliases stand for more than {MAX_ALIAS_NODES} "
                                   "nodes in all; write the values out", event.start_mark)
        if self.depth >= MAX_DEPTH:
            raise _Refused(f"nested more than {MAX_DEPTH} levels deep",
                           event.start_mark)
        self.depth += 1
        try:
            node: yaml.Node | None = super().compose_node(parent, index)
        finally:
            self.depth -= 1
        if node is None:  # cannot happen: every event that starts a node is handled
            raise _Refused("unexpected YAML event", event.start_mark)
        return node

    def compose_mapping_node(self, anchor: Any) -> yaml.MappingNode:
        node: yaml.MappingNode = super().compose_mapping_node(anchor)
        seen: dict[str, yaml.Node] = {}
        for key, _ in node.value:  # scalars: compose_node refused any other key
            if key.value in seen:
                first = seen[key.value].start_mark.line + 1
                raise _Refused(f"{key.value}: given twice (first on line {first})",
                               key.start_mark)
            seen[key.value] = key
        return node

    def weight(self, node: yaml.Node) -> int:
        """How many nodes `node` stands for, aliases expanded (memoised: a DAG, not a tree)."""
        known = self.weights.get(id(node))
        if known is not None:
            return known
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(self.weight(item) for item in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(self.weight(k) + self.weight(v) for k, v in node.value)
        self.weights[id(node)] = total
        return total


def compose_yaml(data: bytes | str, path: str) -> yaml.Node | None:
    """The node tree of a YAML config (UTF-8), or None when empty; `UserError` naming the line."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            raise UserError(f"not UTF-8 text (byte 0x{data[exc.start]:02X}); save the YAML "
                            "config as UTF-8", at_line(path, line)) from exc
    else:
        text = data
    loader: BoundedLoader | None = None
    try:
        loader = BoundedLoader(text)  # its reader refuses control characters at once
        return loader.get_single_node()
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise UserError(f"not valid YAML: character #x{exc.character:04X} is not allowed",
                        at_line(path, line)) from exc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = at_line(path, mark.line + 1) if mark else path
        problem = " ".join(str(exc.problem).split())
        prefix = "" if isinstance(exc, _Refused) else "not valid YAML: "
        raise UserError(f"{prefix}{problem}", where) from exc
    except yaml.YAMLError as exc:
        raise UserError(f"not valid YAML: {' '.join(str(exc).split())}", path) from exc
    finally:
        if loader is not None:
            loader.dispose()


def read_yaml_config(data: bytes | str, path: str,
                     warn: Callable[[str], None] | None = None) -> RawConfig:
    """Read a YAML config; raise `UserError` naming the line of anything malformed.

    `warn` receives each warning (unknown keys) as it is found, before any later error.
    """
    root = compose_yaml(data, path)
    values: dict[RawKey, RawValue] = {}
    warnings: _Warnings = _Warnings(warn)
    if root is None:
        return RawConfig(path, values)
    if not isinstance(root, yaml.MappingNode):
        raise UserError("expected a mapping of KEY: value", at_line(path, root.start_mark.line + 1))
    domus_seen = False
    lists: dict[str, tuple[int, str]] = {}
    seen: dict[str, int] = {}
    for key_node, value_node in root.value:
        name = str(key_node.value).upper()
        where = at_line(path, key_node.start_mark.line + 1)
        _check_once(seen, name, key_node, path)
        if name == "DOMUS":
            domus_seen = True
            _read_domus(value_node, path, values, warnings)
            continue
        setting = SETTINGS_BY_NAME.get(name)
        if setting is not None and setting.per_domu and not name.startswith("DOMU_"):
            lists[name] = (_read_list(name, value_node, path, values), where)
            continue
        if setting is not None and setting.per_domu:
            short = name.removeprefix("DOMU_")
            warnings.append(f"{where}: {name}: a per-domU key belongs in a domU of the DOMUS "
                            f"list (DOMUS: [{{{short}: ...}}]), ignored here")
            continue
        if setting is None:
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


class _Warnings(list[str]):
    """The warnings found so far, each also passed on to a callback at once."""

    def __init__(self, warn: Callable[[str], None] | None) -> None:
        super().__init__()
        self.warn = warn

    def append(self, message: str) -> None:
        super().append(message)
        if self.warn is not None:
            self.warn(message)


def _check_once(seen: dict[str, int], name: str, key: yaml.Node, path: str) -> None:
    """Keys are case-insensitive and DOMU_ optional, so `xen:` and `XEN:` are the same key."""
    line = key.start_mark.line + 1
    if name in seen:
        raise UserError(f"{key.value}: the same key as on line {seen[name]}; give each key once",
                        at_line(path, line))
    seen[name] = line


def _read_domus(node: yaml.Node, path: str, values: dict[RawKey, RawValue],
                warnings: list[str]) -> None:
    if not isinstance(node, yaml.SequenceNode):
        raise UserError("DOMUS: expected a list of domU mappings",
                        at_line(path, node.start_mark.line + 1))
    for index, item in enumerate(node.value):
        if not isinstance(item, yaml.MappingNode):
            raise UserError(f"DOMUS[{index}]: expected a mapping like KERNEL: Image",
                            at_line(path, item.start_mark.line + 1))
        seen: dict[str, int] = {}
        for key_node, value_node in item.value:
            short = str(key_node.value).upper()
            name = short if short.startswith("DOMU_") else f"DOMU_{short}"
            where = at_line(path, key_node.start_mark.line + 1)
            _check_once(seen, name, key_node, path)
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
