"""disk-image's config keys beyond the seed: the partition table choice and the boot aux files.

Kept out of `config` so the validation of these keys reads in one place; `build_config` calls
these with its reader, so errors name the key and its file:line as every other key's do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ibtasks.errors import UserError
from ibtasks.formats.mbr import check_dos_partition_count

if TYPE_CHECKING:
    from ibtasks.config.reader import Binary, KeyReader


def partition_table(reader: KeyReader, from_cli: str | None) -> str:
    """`--table` wins over PARTITION_TABLE; GPT=y (upstream's switch) must agree; a DOS table
    must hold every partition in its four primary slots."""
    if from_cli is not None:
        text, where = from_cli, f"--table {from_cli}"  # argparse allows only the row's choices
    else:
        text = reader.choice_or_default("PARTITION_TABLE")
        where = reader.where("PARTITION_TABLE") or reader.raw.source
        if text == "dos" and reader.flag("GPT"):
            raise UserError("GPT: set together with PARTITION_TABLE=dos; remove one of them",
                            reader.where("GPT"))
        where += ": PARTITION_TABLE=dos"
    if text == "dos":
        rootfs = [reader.binary("DOM0_ROOTFS")] + [
            reader.binary("DOMU_ROOTFS", i) for i in range(reader.count("NUM_DOMUS"))]
        check_dos_partition_count(1 + sum(b is not None for b in rootfs), where)
    return text


def boot_aux_files(reader: KeyReader) -> tuple[Binary, ...]:
    """BOOT_AUX_FILE[0] to [NUM_BOOT_AUX_FILE-1]; each must be set (existence is checked later)."""
    return reader.counted_binaries("BOOT_AUX_FILE", "NUM_BOOT_AUX_FILE")
