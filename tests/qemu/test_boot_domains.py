"""Boot Debian's Xen 4.17 under QEMU with the domain keys: no dom0, and enhanced domUs next to dom0.

What Xen 4.17 (Debian bookworm, arm64) can boot was checked with `strings` on the binary: it
parses `xen,enhanced`, `xen,static-heap` and event channels, but has no "cpupool-cpus" (built
without CONFIG_BOOT_TIME_CPUPOOLS), no static-memory allocator messages (no
CONFIG_STATIC_MEMORY) and no LLC colouring, so cpupools, static memory and colours are checked
in the device tree only (tests/config/test_domain_props.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ibtasks.qemu.runner import describe_failure
from tests.boot_fixtures import (  # system: examples/qemu-virt, put on sys.path by boot_fixtures
    MACHINE,
    BootParts,
    boot_system,
    build_system,
    domain,
    prepare_boot_parts,
    reported_values,
    system,
)

pytestmark = pytest.mark.boot

DOM0 = "DOM0-ALIVE"
DOMU0 = "DOMU0-ALIVE"
DOMU1 = "DOMU1-ALIVE"


@pytest.fixture(scope="session")
def boot_parts(tmp_path_factory: pytest.TempPathFactory) -> BootParts:
    return prepare_boot_parts(tmp_path_factory.mktemp("boot-parts"))


def test_dom0less_without_dom0_starts_two_domus(boot_parts: BootParts, tmp_path: Path) -> None:
    work = build_system(boot_parts, tmp_path / "tftp", [domain("domu0"), domain("domu1")])
    config = system.render_config(MACHINE, "xen", "virt.dtb", domain("dom0"),
                                  [domain("domu0"), domain("domu1")])
    # No DOM0_* key and the default XEN_CMD, which then has no dom0 words.
    lines = [line for line in config.splitlines()
             if not line.startswith(("DOM0_", "XEN_CMD"))]
    (work / "config").write_text("\n".join(lines) + "\n")
    system.generate_boot_script(work / "config", work)
    source = (work / "boot.source").read_text()
    assert "Image-dom0" not in source and "dom0@" not in source and "dom0.cpio.gz" not in source
    assert "dom0_mem" not in source
    assert "xen,enhanced" not in source  # no dom0 runs xenstored
    result = boot_system(work, [DOMU0, DOMU1], absent_markers=[DOM0], settle_seconds=3.0)
    assert result.ok, describe_failure(result)
    assert result.marker_lines[DOMU0].startswith("(XEN) DOM")


def test_enhanced_domus_next_to_dom0_reach_init(boot_parts: BootParts, tmp_path: Path) -> None:
    work = build_system(boot_parts, tmp_path / "tftp", [domain("domu0"), domain("domu1")])
    config = (work / "config").read_text()
    # domU0 takes the default (enabled with a dom0); domU1 asks for PV without xenstore.
    (work / "config").write_text(config + "DOMU_ENHANCED[1]=2\nDOMU_NR_SPIS[1]=64\n")
    system.generate_boot_script(work / "config", work)
    source = (work / "boot.source").read_text()
    assert 'fdt set /chosen/domU0 xen,enhanced "enabled"' in source
    assert 'fdt set /chosen/domU1 xen,enhanced "no-xenstore"' in source
    result = boot_system(work, [DOM0, DOMU0, DOMU1])
    assert result.ok, describe_failure(result)
    assert reported_values(result.marker_lines[DOMU1])["cmdline"] == "console=ttyAMA0"
