"""ibtasks: Xen ImageBuilder reimplemented as a doit task graph; the API an embedding dodo.py uses.

    from pathlib import Path
    import ibtasks

    BUILD = Path("build")
    config = ibtasks.load_config("config", ibtasks.Options(root_dir=BUILD, load_cmd="tftpb"))
    DOIT_CONFIG = ibtasks.doit_config(BUILD / ".ibtasks")

    def task_boot_files():
        yield from ibtasks.boot_tasks(config)

Everything here is what `ibtasks uboot-script-gen` and `ibtasks disk-image` run, as
functions: `load_config` / `config_from_mapping` (a validated, frozen `Config`),
`boot_tasks` and `disk_tasks` (doit task dicts, named `ib_*`), `doit_config` (state file,
backend, checker) and `UserError`, the one exception for mistakes in the user's input.
Importing the package is cheap: the command line's no-op fast path imports it, so nothing here
loads doit or the config machinery until a function is called or a name is used (PEP 562).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from ibtasks.config.mapping_reader import MappingKey, MappingValue
    from ibtasks.config.model import Config, Options
    from ibtasks.errors import UserError
    from ibtasks.tasks.boot import BOOT_TASKS

# Names resolved on first use: name -> module holding it.
_LAZY = {
    # The basenames boot_tasks yields for the default BOOT_CMD without -s or a FIT, for
    # `create_after(creates=...)` before the inputs (and so the config) exist.
    "BOOT_TASKS": "ibtasks.tasks.boot",
    "Config": "ibtasks.config.model",
    "Options": "ibtasks.config.model",
    "UserError": "ibtasks.errors",
}

__all__ = ["BOOT_TASKS", "Config", "Options", "UserError", "__version__", "boot_task_names",
           "boot_tasks", "config_from_mapping", "disk_tasks", "doit_config", "load_config",
           "source_date_epoch"]


def __getattr__(name: str) -> Any:
    """`ibtasks.Config`, `ibtasks.Options`, `ibtasks.UserError` and `ibtasks.BOOT_TASKS`,
    imported on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ibtasks' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def load_config(path: str | os.PathLike[str], options: Options,
                environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate the config file `path`: the bash file ImageBuilder reads (parsed, never
    run; `$VAR` from earlier lines, then `environ`, default the process environment) or the
    same keys as YAML (`*.yaml`, `*.yml`). `options` holds what the command line would: the
    -d directory (`root_dir`, which the config's paths are relative to), the load command
    (`load_cmd`, as `-t` takes it: `tftp`, `sd`, `scsi`, `usb`, `virtio` or a U-Boot command
    such as `load mmc 1:2`) and the rest of `Options`. Defaults are the original
    uboot-script-gen's (see README's key reference).

    Returns a frozen `Config`; its `warnings` are the lines the CLI prints as warnings. Raises
    `UserError` naming the file, line and key of the first problem (with `STRICT=y` or
    `options.strict`, also of the first warning).
    """
    from ibtasks.config.loader import load_config as load

    return load(path, _resolved(options), environ)


def config_from_mapping(values: Mapping[MappingKey, MappingValue], options: Options,
                        source: str = "<mapping>") -> Config:
    """Validate a config given as a mapping instead of a file, as `load_config` does.

    Keys are written as in the bash form, `"MEMORY_START"`, `"DOMU_KERNEL[0]"` (a per-domU key
    without an index is index 0, as bash reads `ARRAY=value`), or as `(name, index)` tuples,
    `("DOMU_KERNEL", 0)`, `("XEN", None)`. Values are text as a config line would hold it
    (`"0x40000000"`, `"console=ttyAMA0 quiet"`), whole numbers (written in decimal: sizes in
    MiB for `DOMU_MEM`, addresses in bytes), flags (`True`/`False`) or paths (relative to
    `options.root_dir`). `source` names the mapping in messages (`dodo.py`).

    Raises `UserError` naming `source` and the key: a key given twice, one that is not a key
    name, a value of another type, and every check `load_config` makes.
    """
    from ibtasks.config.mapping_reader import config_from_mapping as build

    return build(values, _resolved(options), source)


def _resolved(options: Options) -> Options:
    """`options` with its load command's `-t` shorthand (`sd`) resolved (`load mmc 0:1`)."""
    from dataclasses import replace

    from ibtasks.config.load_command import resolve_load_cmd

    if options.load_cmd is None:
        return options
    return replace(options, load_cmd=resolve_load_cmd(options.load_cmd))


def source_date_epoch(environ: Mapping[str, str] | None = None) -> int:
    """The timestamp written into boot.scr, FIT, uImage and disk images, in seconds since 1970:
    SOURCE_DATE_EPOCH of `environ` (default the process environment), as mkimage reads it
    (reproducible-builds.org), else 315532800 (1980-01-01, the earliest time FAT stores).
    Raises `UserError` when SOURCE_DATE_EPOCH is set but not a whole number."""
    from ibtasks.tasks.build_dirs import source_date_epoch as read

    return read(os.environ if environ is None else environ)


def boot_tasks(config: Config, epoch: int | None = None, *, name: str | None = None
               ) -> Iterator[dict[str, Any]]:
    """The doit task dicts of uboot-script-gen's outputs for `config`: `ib_check:<KEY>` per
    binary, `ib_layout`, `ib_dtb` (FDTEDIT), `ib_boot_source`, `ib_boot_scr` (or `ib_fit`
    with a FIT; `ib_xen_uimage` with BOOT_CMD=bootm); see README's task graph.

    Outputs go to `config.output_dir` and intermediate files to its `.ibtasks` folder; each
    task has complete `file_dep` and `targets` and keys on exactly the values its planner
    reads. `epoch`: seconds since 1970 stamped into the images, default
    `source_date_epoch()`. Nothing is read or written until doit runs them; a task that
    fails on the user's input returns doit's `TaskFailed` with the one-line message.

    `name` (a board's name: letters, digits, `_.+-`) puts every task under it,
    `board-a:ib_layout`, `board-a:ib_check:XEN`, and the work files in
    `.ibtasks/board-a/`, so several boards share one dodo.py and one dep file
    (`doit 'board-a:*'` builds one board); `board-a:ib_layout` saves each module's load
    address by key (and the script's as `UBOOT_SCRIPT`) for doit's `getargs`. Raises
    `UserError` for a name that cannot be a task name.
    """
    from ibtasks.tasks.boot import boot_tasks as generate

    return generate(config, source_date_epoch() if epoch is None else epoch, name=name)


def boot_task_names(config: Config | None = None, *, name: str | None = None
                    ) -> tuple[str, ...]:
    """The task basenames `boot_tasks(config, name=name)` yields, for doit's
    `create_after(creates=...)` (`ib_check` and `ib_dtb` are left out with -s, `ib_fit`
    replaces `ib_boot_scr` with a FIT, `ib_xen_uimage` is added with BOOT_CMD=bootm); without
    `config` (before the inputs exist), those of the default BOOT_CMD, `BOOT_TASKS`. Each is
    under `name` when given (`board-a:ib_layout`)."""
    from ibtasks.tasks.boot import BOOT_TASKS
    from ibtasks.tasks.boot import boot_task_names as names
    from ibtasks.tasks.namespace import namespaced_name

    basenames = BOOT_TASKS if config is None else names(config)
    return tuple(namespaced_name(name, n) for n in basenames)


def disk_tasks(config: Config, image: str | os.PathLike[str], *,
               work: str | os.PathLike[str] | None = None, slack_mib: int = 128,
               power_of_two: bool = False, epoch: int | None = None,
               name: str | None = None
               ) -> Iterator[dict[str, Any]]:
    """The doit task dicts of disk-image's outputs, to run beside `boot_tasks(config)`:
    `ib_partition:boot` (every file the script loads, FAT or `BOOT_FS=ext4`),
    `ib_partition:dom0` and `ib_partition:domU<i>` (ext4 from each rootfs archive, dom0's with
    the xl configs), and `ib_disk`, the GPT (or `PARTITION_TABLE=dos`) disk `image`, updated in
    place. As the original `disk_image` script, without root: partition images in `work`
    (default the `.ibtasks` folder of `config.output_dir`), `slack_mib` MiB free in each
    rootfs partition (`-s`), the size rounded up to a power of two MiB with `power_of_two`
    (`-a`); `epoch` as for `boot_tasks`.

    Raises `UserError` at once when an xl config cannot be written (a domU dom0 starts without
    a kernel; `root=`/`disk=` not deducible from the load command) or a boot file lies outside
    the -d directory. `name` as for `boot_tasks` (`board-a:ib_disk`; the default `work` is
    then `.ibtasks/board-a/`).
    """
    from ibtasks.plan.disk_contents import check_disk_config
    from ibtasks.tasks.build_dirs import work_dir
    from ibtasks.tasks.disk import DiskOptions
    from ibtasks.tasks.disk import disk_tasks as generate
    from ibtasks.tasks.namespace import check_task_namespace, namespaced

    check_disk_config(config)
    default_work = work_dir(config) / check_task_namespace(name) if name else work_dir(config)
    options = DiskOptions(Path(image), Path(work) if work is not None else default_work,
                          slack_mib, power_of_two)
    return namespaced(name, generate(config, options,
                                     source_date_epoch() if epoch is None else epoch))


def doit_config(work: str | os.PathLike[str], verbose: bool = False) -> dict[str, Any]:
    """`DOIT_CONFIG` for a dodo.py running our tasks: doit's state in `work`/doit-deps.json
    (JSON, written atomically, so a copied tree keeps its records; use the folder
    `boot_tasks` writes to, `<output dir>/.ibtasks`), the checker that caches file digests
    by (mtime, size) in `work`/digests.json, and a reporter that prints one
    `ibtasks: error:` line per failed task (`verbose`: also each task it runs). Creates
    `work`. Merge your own keys into the result (`{**doit_config(...), "verbosity": 1}`)."""
    from ibtasks.tasks.runner import doit_config as make

    return make(Path(work), verbose)
