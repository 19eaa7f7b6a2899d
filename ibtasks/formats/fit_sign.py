"""Signing a FIT we built: the one step left to mkimage (RSA and U-Boot's key node format).

`mkimage -F -k DIR [-K U-BOOT.DTB] -r FIT` fills every `signature` node of the FIT (and, with
-K, adds the public key to U-Boot's control DTB, marked required), as upstream's -k/-u do. The
user's U-Boot DTB is changed as they asked, but atomically: mkimage works on a copy, which
replaces it only when signing succeeded.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from ibtasks.errors import UserError
from ibtasks.fsutil import replacing


def sign_fit(fit: Path, key_dir: Path, u_boot_dtb: Path | None, epoch: int, where: str,
             name: str | None = None) -> None:
    """Sign `fit` in place; `epoch` becomes the signature's timestamp (reproducible bytes);
    `name` is what messages call the FIT (default: its file name, e.g. when `fit` is a temporary).

    With `u_boot_dtb`, its public-key node is added through a copy that replaces the file only
    after mkimage succeeded. Raises UserError (naming `where`) when mkimage is missing or fails.
    """
    label = name or fit.name
    mkimage = shutil.which("mkimage")
    if mkimage is None:
        raise UserError("signing a FIT needs mkimage (Debian package u-boot-tools)", where)
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
    result = subprocess.run(argv, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        lines = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
        why = lines[-1] if lines else f"exit code {result.returncode}"
        raise UserError(f"mkimage could not sign {name}: {why}", where)
