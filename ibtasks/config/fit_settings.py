"""FIT settings (`-f`, FIT, FIT_ENC_KEY_DIR, FIT_ENC_UB_DTB, -k, -u): whether a FIT is built, its
name, and the signing key and U-Boot DTB when signing, as upstream's uboot-script-gen reads them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ibtasks.errors import UserError


@dataclass(frozen=True)
class FitSettings:
    """A FIT build: its output name, and the signing key and U-Boot DTB if signing."""

    name: str  # FIT, relative to the output directory
    key_dir: Path | None = None  # FIT_ENC_KEY_DIR's directory, under the root (-d) directory
    key_hint: str | None = None  # FIT_ENC_KEY_DIR's last part: KEY_DIR/HINT.key and .crt
    u_boot_dtb: Path | None = None  # FIT_ENC_UB_DTB: gets the public key (modified in place)
    where: str = "FIT_ENC_KEY_DIR"

    def key_files(self) -> list[Path]:
        """The key files mkimage reads (the certificate only to add the key to a DTB)."""
        if self.key_dir is None or self.key_hint is None:
            return []
        files = [self.key_dir / f"{self.key_hint}.key"]
        if self.u_boot_dtb is not None:
            files.append(self.key_dir / f"{self.key_hint}.crt")
        return files

    def signing_inputs(self) -> list[Path]:
        """Key files and the U-Boot DTB: a replaced U-Boot DTB must get the key again."""
        return self.key_files() + ([self.u_boot_dtb] if self.u_boot_dtb else [])


Lookup = Callable[[str], tuple[str | None, str | None]]  # key -> (value, where)


def read_fit_settings(lookup: Lookup, fit_flag: bool, source_stem: str, root: Path
                      ) -> tuple[FitSettings | None, tuple[str, ...]]:
    """The FIT settings from the config (`lookup`) and -f/-k/-u, and warnings to show.

    As upstream: FIT names the image and turns FIT mode on; -f alone names it after
    UBOOT_SOURCE; FIT_ENC_KEY_DIR is KEY_DIR/HINT relative to the -d directory.
    """
    name, _ = lookup("FIT")
    if not name and fit_flag:
        name = f"{source_stem}.fit"
    key_text, key_where = lookup("FIT_ENC_KEY_DIR")
    dtb_text, dtb_where = lookup("FIT_ENC_UB_DTB")
    if dtb_text and not key_text:
        raise UserError("FIT_ENC_UB_DTB: signing needs the key: set FIT_ENC_KEY_DIR=KEY_DIR/HINT "
                        "or pass -k KEY_DIR/HINT", dtb_where)
    if not name:
        if key_text:
            return None, ("FIT_ENC_KEY_DIR: ignored: no FIT is built (pass -f or set FIT)",)
        return None, ()
    if not key_text:
        return FitSettings(name), ()
    key_dir, _, hint = key_text.rstrip("/").rpartition("/")
    if not key_dir or not hint:
        raise UserError(f"FIT_ENC_KEY_DIR: expected KEY_DIR/HINT (KEY_DIR holding HINT.key and "
                        f"HINT.crt), got '{key_text}'", key_where)
    settings = FitSettings(name, root / key_dir, hint,
                           root / dtb_text if dtb_text else None, key_where or "FIT_ENC_KEY_DIR")
    for path in settings.key_files():
        if not path.is_file():
            raise UserError(f"FIT_ENC_KEY_DIR: {path.relative_to(root)} does not exist "
                            f"(looked in {root})", key_where)
    if settings.u_boot_dtb is not None and not settings.u_boot_dtb.is_file():
        raise UserError(f"FIT_ENC_UB_DTB: {dtb_text} does not exist (looked in {root})",
                        dtb_where)
    return settings, ()
