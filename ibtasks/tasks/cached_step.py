"""Task actions through the shared cache (ibtasks.cache): look the key up before building.

doit decides what is up to date as always; only an action that runs comes here. With a cache
it computes the task's key (kind, ibtasks' version, the tools' versions, the frozen input's
JSON, the sha256 of each file_dep), lands the outputs of a hit (each verified, then renamed into
place) and runs the `landed` step (the records a build would leave beside them); on a miss it
builds and, unless read-only, uploads. Any cache failure is one warning line and a build. A
task whose action ran without a cache never touches the network.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import ibtasks
from ibtasks.cache.keys import cache_key, key_document
from ibtasks.cache.location import CacheLocation
from ibtasks.errors import printable, warning_line
from ibtasks.fsutil import file_sha256
from ibtasks.tasks.step import run_step
from ibtasks.tasks.task_inputs import key_payload
from ibtasks.tools import mke2fs_version, mkimage_version

Step = tuple[Callable[..., None], tuple[Any, ...]]  # a function and its arguments


@functools.cache
def _tool_version(name: str) -> str:
    """The version of one thing a cached task's bytes depend on, looked up once per run."""
    if name == "e2fsprogs":
        return ".".join(map(str, mke2fs_version()))
    if name == "mkimage":
        return mkimage_version()
    try:
        return version(name)  # a Python package we build with (pyfatfs)
    except PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class CachedStep:
    """What a cached task's key holds and its entry carries.

    `kind` is the task's name (`ib_partition:dom0`); `payload` its frozen input as JSON
    (`task_inputs.key_payload`, paths relative to -d); `inputs` its file_deps as (name relative
    to -d, path to read); `outputs` the target files the entry holds, in order; `tools` the
    names of the tools and packages whose versions change its bytes (`e2fsprogs`, `pyfatfs`,
    `mkimage`)."""

    kind: str
    payload: Any
    inputs: tuple[tuple[str, str], ...]
    outputs: tuple[str, ...]
    tools: tuple[str, ...] = ()

    def document(self) -> dict[str, Any]:
        """The key document (ibtasks.cache.keys), hashing every input file now."""
        files = [(name, file_sha256(path)) for name, path in self.inputs]
        tools = {name: _tool_version(name) for name in self.tools}
        return key_document(self.kind, ibtasks.__version__, tools, self.payload, files)


def cache_warning(kind: str, message: str) -> None:
    """One `ibtasks: warning: cache: <task>: ...` line on the process's stderr (doit captures
    an action's `sys.stderr` at verbosity 0 and shows it only when the task fails)."""
    stream = sys.__stderr__ or sys.stderr
    stream.write(warning_line(f"cache: {kind}: {printable(message)}"))
    stream.flush()


def run_cached(cache: CacheLocation | None, step: CachedStep, landed: Step | None,
               build: Callable[..., None], *args: Any) -> None:
    """Run `build(*args)` through the cache at `cache` (None: just build).

    On a hit the outputs land and `landed` runs instead of the build; on a miss the build runs
    and its outputs are uploaded (not with a read-only cache). A cache error (unreachable,
    refused credentials, a corrupt blob) is a warning and the task builds; a build error is
    the build's, raised as usual. Nothing is uploaded after a failed build.
    """
    if cache is None:
        build(*args)
        return
    # The registry client (and its HTTP library) is loaded only by a build that uses a cache.
    from ibtasks.cache.entries import fetch_entry, store_entry
    from ibtasks.cache.registry import CacheError, Registry

    registry = Registry(cache, dict(os.environ))
    try:
        document: dict[str, Any] = {}
        try:
            document = step.document()
            key = cache_key(document)
            if fetch_entry(registry, key, step.outputs):
                if landed is not None:
                    finish, finish_args = landed
                    finish(*finish_args)
                return
            upload = not cache.read_only
        except (CacheError, OSError) as exc:  # OSError: an input file could not be hashed
            cache_warning(step.kind, f"{exc}; building it")
            upload = False  # one warning per task: a registry that failed is not asked again
        build(*args)
        if upload:
            try:
                store_entry(registry, key, document, step.outputs)
            except CacheError as exc:
                cache_warning(step.kind, f"not uploaded: {exc}")
    finally:
        registry.close()


def cached_action(cache: CacheLocation | None, kind: str, planned: Any, root: Path,
                  inputs: Sequence[str], outputs: Sequence[str], tools: tuple[str, ...],
                  landed: Step | None, build: Callable[..., None], *args: Any) -> Any:
    """The doit action of a cacheable task `kind` whose action `build(*args)` plans from
    `planned` (its frozen input, keyed relative to the -d directory `root`), reads the files
    `inputs` and writes `outputs`. Without a cache, the plain action."""
    if cache is None:
        return (run_step, [build, *args])
    step = CachedStep(kind, key_payload(planned, root),
                      tuple((os.path.relpath(p, root), p) for p in inputs), tuple(outputs),
                      tools)
    return (run_step, [run_cached, cache, step, landed, build, *args])
