"""Boot Xen, dom0 and two domUs from one FIT image (`-f`) under QEMU, as upstream documents:

    tftpb <fit_addr> boot.fit; source <fit_addr>:boot_scr

U-Boot checks each image's crc32 and sha1 while `imxtract` copies it out, so this also proves
U-Boot accepts our hashes and layout.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ibtasks.qemu.runner import DEFAULT_FAILURE_PATTERNS, describe_failure
from tests.boot_fixtures import BootParts, boot_system, build_system, domain, prepare_boot_parts
from tests.conftest import REPO

pytestmark = pytest.mark.boot

MARKERS = ["DOM0-ALIVE", "DOMU0-ALIVE", "DOMU1-ALIVE"]


@pytest.fixture(scope="module")
def boot_parts(tmp_path_factory: pytest.TempPathFactory) -> BootParts:
    return prepare_boot_parts(tmp_path_factory.mktemp("boot-parts"))


def make_fit(work: Path) -> str:
    """Run our uboot-script-gen -f in the TFTP directory; the address it says to load at."""
    env = {**os.environ, "SOURCE_DATE_EPOCH": "0",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-m", "ibtasks", "uboot-script-gen", "-c", "config",
                           "-d", ".", "-t", "tftp", "-f"], cwd=work, env=env,
                          capture_output=True, text=True, check=True)
    print(done.stdout)
    head, command = done.stdout.splitlines()
    assert head.startswith("Generated uboot FIT image boot.fit, to be loaded at or after address ")
    address = command.split()[1]
    assert command == f"tftpb {address} boot.fit; source {address}:boot_scr"
    return address


def test_dom0_and_two_domus_boot_from_one_fit_over_tftp(boot_parts: BootParts,
                                                        tmp_path: Path) -> None:
    work = build_system(boot_parts, tmp_path / "tftp", [domain("domu0"), domain("domu1")])
    (work / "boot.scr").unlink()  # nothing but the FIT may be used
    address = make_fit(work)
    assert "imxtract $fit_addr host_kernel" in (work / "boot.source").read_text()
    result = boot_system(work, MARKERS, commands=[
        "setenv autoload no", "dhcp", "setenv serverip 10.0.2.2",
        f"tftpb {address} boot.fit", f"source {address}:boot_scr",
    ], failure_patterns=(*DEFAULT_FAILURE_PATTERNS, "Bad Data Hash",
                         "Unsupported hash algorithm", "Can't extract", "Bad FIT"))
    assert result.ok, describe_failure(result)
    assert result.marker_lines["DOMU0-ALIVE"].startswith("(XEN) DOM")
    log = (work / "console.log").read_text(errors="replace")
    # U-Boot checked both hashes of the script and of each of the 8 images it copied out.
    assert log.count("## Copying '") == 8
    assert log.count("crc32+ sha1+") == 9
