"""Boot real Xen + Linux under QEMU with upstream script features: BOOT_CMD, overlays, -s.

BOOT_CMD=bootefi and bootm, a DT overlay, and `-s` (addresses computed by U-Boot). Debian's
U-Boot 2023.01 for qemu_arm64 is built without CONFIG_OF_LIBFDT_OVERLAY, so it has no
`fdt apply`: the overlay boots through --preedited-dtb (applied offline by `fdtoverlay`) and
U-Boot's `fdt print /chosen` (DBG_FDT_PRINT_CHOSEN) shows the overlay's property on the console.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ibtasks.qemu.runner import describe_failure
from tests.boot_fixtures import (
    DOMAIN_NAMES,
    MACHINE,
    BootParts,
    boot_system,
    domain,
    prepare_boot_parts,
    system,
)
from tests.conftest import REPO

pytestmark = pytest.mark.boot

DOM0 = "DOM0-ALIVE"
DOMU0 = "DOMU0-ALIVE"
OVERLAY_MARKER = "IBTASKS-OVERLAY-APPLIED"
OVERLAY_DTS = f"""/dts-v1/;
/plugin/;
/ {{
    fragment@0 {{
        target-path = "/chosen";
        __overlay__ {{
            ibtasks,overlay-marker = "{OVERLAY_MARKER}";
        }};
    }};
}};
"""


@pytest.fixture(scope="session")
def boot_parts(tmp_path_factory: pytest.TempPathFactory) -> BootParts:
    return prepare_boot_parts(tmp_path_factory.mktemp("boot-parts"))


def make_system(parts: BootParts, work: Path, extra: list[str], *flags: str,
                fdtedit: str | None = None, files: tuple[Path, ...] = ()) -> Path:
    """A TFTP directory with dom0 and one domU, the config plus `extra` lines, our boot.scr."""
    work.mkdir(parents=True)
    for name in ("xen", "Image", "virt.dtb", *(f"{n}.cpio.gz" for n in DOMAIN_NAMES)):
        os.link(parts.path(name), work / name)
    for path in files:
        os.link(path, work / path.name)
    text = system.render_config(MACHINE, "xen", "virt.dtb", domain("dom0"), [domain("domu0")],
                                fdtedit)
    (work / "config").write_text(text + "\n".join(extra) + "\n")
    env = {**os.environ, "SOURCE_DATE_EPOCH": "0",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-m", "ibtasks", "uboot-script-gen", "-c", "config",
                           "-d", ".", "-t", "tftp", *flags], cwd=work, env=env,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    print(done.stdout)
    return work


def test_bootefi_starts_xen_as_an_efi_application(boot_parts: BootParts, tmp_path: Path) -> None:
    work = make_system(boot_parts, tmp_path / "tftp", ["BOOT_CMD=bootefi"])
    last = (work / "boot.source").read_text().splitlines()[-1]
    assert last.startswith("bootefi 0x") and " - " not in last
    result = boot_system(work, [DOM0, DOMU0])
    assert result.ok, describe_failure(result)


def test_bootm_starts_xen_from_our_uimage(boot_parts: BootParts, tmp_path: Path) -> None:
    work = make_system(boot_parts, tmp_path / "tftp", ["BOOT_CMD=bootm"])
    source = (work / "boot.source").read_text()
    assert "tftpb 0x40400000 xen.ub\n" in source and "\nbootm 0x40400000 - 0x" in source
    result = boot_system(work, [DOM0, DOMU0])
    assert result.ok, describe_failure(result)


def test_overlay_applied_offline_reaches_u_boot_and_the_system_boots(
        boot_parts: BootParts, tmp_path: Path) -> None:
    dts = tmp_path / "marker.dts"
    dts.write_text(OVERLAY_DTS)
    overlay = tmp_path / "marker.dtbo"
    subprocess.run(["dtc", "-q", "-I", "dts", "-O", "dtb", "-o", str(overlay), str(dts)],
                   check=True)
    work = make_system(boot_parts, tmp_path / "tftp",
                       ["NUM_DT_OVERLAY=1", "DT_OVERLAY[0]=marker.dtbo", "DBG_FDT_PRINT_CHOSEN=y"],
                       "--preedited-dtb", fdtedit="virt-edited.dtb", files=(overlay,))
    source = (work / "boot.source").read_text()
    assert "marker.dtbo" not in source  # already applied to the DTB the script loads
    result = boot_system(work, [OVERLAY_MARKER, DOM0, DOMU0])
    assert result.ok, describe_failure(result)
    assert "ibtasks,overlay-marker" in result.marker_lines[OVERLAY_MARKER]


def test_addresses_computed_by_u_boot_boot_the_same_system(boot_parts: BootParts,
                                                           tmp_path: Path) -> None:
    work = make_system(boot_parts, tmp_path / "tftp", [], "-s")
    source = (work / "boot.source").read_text()
    assert "setexpr memaddr ${memaddr} + ${filesize}" in source
    assert not (work / "boot.dtb").exists()
    result = boot_system(work, [DOM0, DOMU0])
    assert result.ok, describe_failure(result)
