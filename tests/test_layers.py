"""The package's import rule, read from the source with `ast` (no module is imported).

Layers, lowest first; a module may import its own layer and the layers listed for it:

    base     ibtasks/*.py (errors, fsutil, lifetime, tools)
    formats  bytes in and out; knows nothing of the config or the pipeline
    cache    the shared OCI registry cache: keys, registry client, entries (no doit)
    config   settings table, readers, the validated model
    plan     pure planning on the model
    tasks    the doit layer: the only code that imports doit
    qemu     the QEMU runner (base and formats only)
    cli      the command lines, on top of everything
    api      ibtasks/__init__.py, the public API

Every import counts: module level, inside functions, and under `if TYPE_CHECKING:`. Beyond the
order: no cycle between modules, no import of another module's `_private` name, doit only in
tasks/, no module named after a standard-library module, none over the size limit.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = "ibtasks"

ALLOWED: dict[str, frozenset[str]] = {
    "base": frozenset({"base"}),
    "formats": frozenset({"base", "formats"}),
    "cache": frozenset({"base", "cache"}),
    "config": frozenset({"base", "formats", "config"}),
    "plan": frozenset({"base", "formats", "config", "plan"}),
    "tasks": frozenset({"base", "formats", "config", "plan", "cache", "tasks"}),
    "qemu": frozenset({"base", "formats", "qemu"}),
    "cli": frozenset({"base", "formats", "config", "plan", "cache", "tasks", "qemu", "cli"}),
    "api": frozenset({"base", "formats", "config", "plan", "cache", "tasks", "qemu", "cli"}),
}
DOIT_LAYERS = frozenset({"tasks"})
MAX_LINES = 400
# Modules being split while the package is restructured; this list only shrinks.
BEING_SPLIT: set[str] = set()


@dataclass(frozen=True)
class Edge:
    """One import: `source` imports `target` (module names), naming `names` from it, at `line`."""

    source: str
    target: str
    names: tuple[str, ...]
    line: int


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str:
    """The layer of a module name of the package (`ibtasks.plan.layout` -> plan)."""
    parts = module.split(".")
    if len(parts) == 1:
        return "api"
    if parts[1] == "__main__":
        return "cli"
    return parts[1] if len(parts) > 2 or parts[1] in ALLOWED else "base"


def modules(root: Path) -> dict[str, Path]:
    """Every module of the package under `root` (the folder holding the package)."""
    return {module_name(p, root): p for p in sorted((root / PACKAGE).rglob("*.py"))}


def edges(root: Path) -> Iterator[Edge]:
    """Every import of a package module by a package module, and every import of doit."""
    known = modules(root)
    for name, path in known.items():
        tree = ast.parse(path.read_text(), str(path))
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield Edge(name, alias.name, (), node.lineno)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([node.module] if node.module else [])])
                names = tuple(a.name for a in node.names)
                submodules = [f"{base}.{n}" for n in names if f"{base}.{n}" in known]
                if submodules:  # `from ibtasks.formats import gpt`
                    for sub in submodules:
                        yield Edge(name, sub, (), node.lineno)
                    names = tuple(n for n in names if f"{base}.{n}" not in known)
                    if not names:
                        continue
                yield Edge(name, base, names, node.lineno)


def problems(root: Path) -> list[str]:
    """Every breach of the import rule in the package under `root`, as `module:line: why`."""
    known = modules(root)
    found: list[str] = []
    graph: dict[str, set[str]] = {m: set() for m in known}
    for edge in edges(root):
        where = f"{edge.source}:{edge.line}"
        top = edge.target.split(".")[0]
        if top == "doit" and layer_of(edge.source) not in DOIT_LAYERS:
            found.append(f"{where}: imports doit outside the task layer")
        if top != PACKAGE:
            continue
        if edge.target == PACKAGE and edge.names in ((), ("__version__",)):
            continue  # the package itself, for its version
        if edge.target not in known:
            found.append(f"{where}: imports {edge.target}, which is not a module")
            continue
        source_layer, target_layer = layer_of(edge.source), layer_of(edge.target)
        if target_layer not in ALLOWED[source_layer]:
            found.append(f"{where}: {source_layer} may not import {target_layer} "
                         f"({edge.target})")
        private = [n for n in edge.names if n.startswith("_") and not n.startswith("__")]
        if private and edge.target != edge.source:
            found.append(f"{where}: imports private {', '.join(private)} of {edge.target}")
        if edge.target != edge.source and edge.target != PACKAGE:
            graph[edge.source].add(edge.target)
    for cycle in cycles(graph):
        found.append(f"import cycle: {' -> '.join(cycle)}")
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each as a path."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_import_follows_the_layer_order() -> None:
    assert problems(REPO) == []


def test_the_rule_catches_an_edge_against_the_order(tmp_path: Path) -> None:
    """The checker itself, on a copy of the package with bad edges planted."""
    import shutil

    shutil.copytree(REPO / PACKAGE, tmp_path / PACKAGE,
                    ignore=shutil.ignore_patterns("__pycache__"))
    formats = tmp_path / PACKAGE / "formats" / "gpt.py"
    formats.write_text(formats.read_text() + "\nfrom ibtasks.config.model import Config\n")
    plan = tmp_path / PACKAGE / "plan" / "layout.py"
    plan.write_text(plan.read_text() + "\ndef _late() -> None:\n"
                    "    import doit\n    from ibtasks.tasks.boot import boot_tasks\n")
    found = problems(tmp_path)
    assert any("ibtasks.formats.gpt" in p and "formats may not import config" in p
               for p in found), found
    assert any("ibtasks.plan.layout" in p and "plan may not import tasks" in p for p in found)
    assert any("ibtasks.plan.layout" in p and "imports doit outside" in p for p in found)
    assert any(p.startswith("import cycle:") for p in found), found


def test_the_rule_catches_a_cycle_and_a_private_name(tmp_path: Path) -> None:
    pkg = tmp_path / PACKAGE / "plan"
    pkg.mkdir(parents=True)
    (tmp_path / PACKAGE / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from ibtasks.plan.b import _helper\n")
    (pkg / "b.py").write_text("from ibtasks.plan import a\n")
    found = problems(tmp_path)
    assert "ibtasks.plan.a:1: imports private _helper of ibtasks.plan.b" in found
    assert "import cycle: ibtasks.plan.a -> ibtasks.plan.b" in found


@pytest.mark.parametrize("name", sorted(modules(REPO)))
def test_module_is_not_named_after_the_standard_library(name: str) -> None:
    assert name.rpartition(".")[2] not in sys.stdlib_module_names


def test_no_module_is_past_the_size_limit() -> None:
    long = {name: n for name, path in modules(REPO).items()
            if (n := len(path.read_text().splitlines())) > MAX_LINES and name not in BEING_SPLIT}
    assert long == {}
