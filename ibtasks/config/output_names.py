"""The names of the files a build writes: UBOOT_SOURCE, UBOOT_SCRIPT, FDTEDIT, FIT and `-o`.

Defaults come from the settings table (UBOOT_SOURCE's row) and follow from each other as in
the original: `boot.source` gives `boot.scr`, `boot.dtb` and, with `-f`, `boot.fit`.
"""

from __future__ import annotations

from pathlib import Path

from ibtasks.config.board_paths import output_name_problem
from ibtasks.config.model import Options
from ibtasks.config.reader import KeyReader, RawConfig
from ibtasks.errors import UserError
from ibtasks.formats.hush import word_problem


def output_names(reader: KeyReader, options: Options, strict: bool = True
                 ) -> tuple[str, str, str]:
    """UBOOT_SOURCE, UBOOT_SCRIPT and FDTEDIT, with -o NAME winning over the first two.

    Names from the config are normalised and must stay inside the output directory (a
    UserError naming the key otherwise; with `strict` False such a name is replaced by its
    default, so that cleaning up after a failure never touches a file outside); -o may point
    anywhere, as vendor build systems rely on (`-o ${WORKDIR}/xen_boot`).
    """
    if options.output_name:
        problem = word_problem(options.output_name)
        if problem is not None and strict:
            raise UserError(f"-o: the output name {options.output_name} {problem}")
        uboot_source = f"{options.output_name}.source"
        uboot_script = f"{options.output_name}.scr"
    else:
        uboot_source = (config_output_name(reader, options, "UBOOT_SOURCE", strict)
                        or reader.default("UBOOT_SOURCE") or "")
        uboot_script = (config_output_name(reader, options, "UBOOT_SCRIPT", strict)
                        or f"{source_stem(uboot_source)}.scr")
    fdtedit = (config_output_name(reader, options, "FDTEDIT", strict)
               or f"{source_stem(uboot_source)}.dtb")
    return uboot_source, uboot_script, fdtedit


def config_output_name(reader: KeyReader, options: Options, name: str, strict: bool = True
                       ) -> str | None:
    """An output name given in the config, normalised inside the output directory; None when
    unset (or, not `strict`, when it points outside). Raises `UserError` naming the key."""
    value = reader.raw.values.get((name, None))
    if value is None or not value.text:
        return None
    normal, problem = output_name_problem(options.output_dir or options.root_dir, value.text)
    if problem is None:
        return normal
    if strict:
        raise UserError(f"{name}: {problem}", value.where)
    return None


def output_paths(raw: RawConfig, options: Options) -> list[Path]:
    """Where a build of `raw` writes its outputs, even if `raw` does not validate.

    A failed build removes them, as the original did, so a stale boot.scr from an earlier
    config is never taken for the result of this one.
    """
    out_dir = options.output_dir or options.root_dir
    reader = KeyReader(raw)
    names = list(output_names(reader, options, strict=False))
    fit = (config_output_name(reader, options, "FIT", strict=False)
           or (f"{source_stem(names[0])}.fit" if options.fit else None))
    return [out_dir / name for name in names + ([fit] if fit else [])]


def source_stem(name: str) -> str:
    """The script source's name without `.source`: the stem of the other outputs' names."""
    return name[: -len(".source")] if name.endswith(".source") else name
