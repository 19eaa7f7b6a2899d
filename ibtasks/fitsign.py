"""Signing a FIT we built: the one step left to mkimage (RSA and U-Boot's key node format).

`mkimage -F -k DIR [-K U-BOOT.DTB] -r FIT` fills every `signature` node of the FIT (and, with
-K, adds the public key to U-Boot's control DTB, marked required), as upstream's -k/-u do.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from ibtasks.errors import UserError


def sign_fit(fit: Path, key_dir: Path, u_boot_dtb: Path | None, epoch: int, where: str) -> None:
    """Sign `fit` in place; `epoch` becomes the signature's timestamp (reproducible bytes)."""
    mkimage = shutil.which("mkimage")
    if mkimage is None:
        raise UserError("signing a FIT needs mkimage (Debian package u-boot-tools)", where)
    argv = [mkimage, "-F", "-k", str(key_dir)]
    if u_boot_dtb is not None:
        argv += ["-K", str(u_boot_dtb)]
    argv += ["-r", str(fit)]
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(epoch)}
    result = subprocess.run(argv, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        lines = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
        why = lines[-1] if lines else f"exit code {result.returncode}"
        raise UserError(f"mkimage could not sign {fit.name}: {why}", where)
