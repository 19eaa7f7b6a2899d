"""Signing a FIT we built: the one step left to mkimage (RSA and U-Boot's key node format).

`mkimage -F -k DIR [-K U-BOOT.DTB] -r FIT` fills every `signature` node of the FIT (and, with
-K, adds the public key to U-Boot's control DTB, marked required), as upstream's -k/-u do. The
user's U-Boot DTB is changed as they asked, but atomically: mkimage works on a copy, which
replaces it only when signing succeeded.
"""

from __future__ import annotations

import os
from pathlib import Path

from ibtasks.fsutil import replacing
from ibtasks.tools import find_signing_mkimage, run_tool


def sign_fit(fit: Path, key_dir: Path, u_boot_dtb: Path | None, epoch: int, where: str,
             name: str | None = None) -> None:
    """Sign `fit` in place; `epoch` becomes the signature's timestamp (reproducible bytes);
    `name` is what messages call the FIT (default: its file name, e.g. when `fit` is a temporary).

    With `u_boot_dtb`, its public-key node is added through a copy that replaces the file only
    after mkimage succeeded. Raises UserError (naming `where`) when mkimage is missing or fails.
    """
    label = name or fit.name
    mkimage = find_signing_mkimage(where)
    if u_boot_dtb is None:
        _run_mkimage([mkimage, "-F", "-k", str(key_dir), "-r", str(fit)], label, epoch, where)
        return
    original = u_boot_dtb.read_bytes()
    with replacing(u_boot_dtb, suffix=".dtb") as (out, copy):
        out.write(original)
        out.close()
        _run_mkimage([mkimage, "-F", "-k", str(key_dir), "-K", str(copy), "-r", str(fit)],
                     label, epoch, where)


def _run_mkimage(argv: list[str], name: str, epoch: int, where: str) -> None:
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(epoch)}
    run_tool(argv, f"mkimage could not sign {name}", where, env=env)
