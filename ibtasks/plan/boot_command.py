"""Can BOOT_CMD start the host kernel (XEN, or LINUX)? Judged from the kernel's check.

U-Boot's boot commands each take one kind of file (U-Boot doc/usage/cmd/booti.rst, bootz.rst,
bootefi.rst): `booti` an arm64 (or RISC-V) Image, checking the "ARM\\x64" magic; `bootz` an
ARM zImage, checking the 0x016F2818 magic; `bootefi` a PE/COFF EFI application, which starts
with the DOS stub's "MZ" (an arm64 Image or Xen built with its EFI stub has it). U-Boot refuses
anything else at boot, so a mismatch is an error here: exit 0 must mean the board can boot
what we wrote. `bootm` loads the uImage we wrap the kernel in (any architecture), and `none`
starts nothing.
"""

from __future__ import annotations

from ibtasks.errors import UserError

PE_MAGIC = b"MZ"  # the DOS header every PE/COFF image starts with (Microsoft PE format spec)

# What each boot command takes, as the file checks name kinds (file_check.ACCEPTED).
_TAKES = {"booti": "arm64 Image", "bootz": "arm zImage"}
_INSTEAD = {"arm64 Image": "booti", "arm zImage": "bootz"}


def check_boot_command(boot_cmd: str, key: str, name: str, kind: str, first_bytes: bytes
                       ) -> None:
    """Raise `UserError` naming BOOT_CMD and `key` when `boot_cmd` cannot start the kernel.

    `kind` is the kernel's file kind from its check ("arm64 Image", "arm zImage", "ELF",
    "gzip(arm64 Image)", "data"), `first_bytes` the file's first bytes as stored. A kernel of
    unknown kind ("data", which the original accepted) is not judged.
    """
    if boot_cmd in _TAKES:
        wanted = _TAKES[boot_cmd]
        if kind in (wanted, "data"):
            return
        other = _INSTEAD.get(kind)
        hint = (f"; use BOOT_CMD={other}" if other else
                "; give the raw kernel Image" if kind.endswith(")") else "")
        raise UserError(f"BOOT_CMD={boot_cmd} cannot start {key}: {name} is {_article(kind)}, "
                        f"and {boot_cmd} takes only {_article(wanted)}{hint}")
    if boot_cmd == "bootefi" and kind != "data" and not first_bytes.startswith(PE_MAGIC):
        raise UserError(f"BOOT_CMD=bootefi cannot start {key}: {name} is {_article(kind)} without "
                        "the PE/COFF header (\"MZ\") of an EFI application; build it with its "
                        "EFI stub (Xen: CONFIG_ARM_EFI, Linux: CONFIG_EFI) or use BOOT_CMD=booti")


def _article(kind: str) -> str:
    return f"an {kind}" if kind[:1].lower() in "aeiou" else f"a {kind}"
