"""Boot real Xen + Linux (Debian arm64) under QEMU with U-Boot and our boot script.

Each scenario writes an ImageBuilder config, runs our `uboot-script-gen`, serves the result over
QEMU's TFTP and waits for every domain's /init marker. Run with `-s` to see when each arrived.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from boot_fixtures import (
    MACHINE,
    BootParts,
    boot_system,
    build_system,
    domain,
    gzip_file,
    prepare_boot_parts,
    reported_values,
)

from ibtasks.qemu import BootSpec, boot, describe_failure, tftp_args, tftp_commands

pytestmark = pytest.mark.boot

DOM0 = "DOM0-ALIVE"
DOMU0 = "DOMU0-ALIVE"
DOMU1 = "DOMU1-ALIVE"


@pytest.fixture(scope="session")
def boot_parts(tmp_path_factory: pytest.TempPathFactory) -> BootParts:
    """Xen, the kernel, the DTB and the initramfs images, made once for all scenarios."""
    return prepare_boot_parts(tmp_path_factory.mktemp("boot-parts"))


def test_dom0_and_two_domus_reach_init_over_tftp(boot_parts: BootParts, tmp_path: Path) -> None:
    work = build_system(boot_parts, tmp_path / "tftp", [domain("domu0"), domain("domu1")])
    result = boot_system(work, [DOM0, DOMU0, DOMU1])
    assert result.ok, describe_failure(result)
    # Dom0 writes to the console itself; dom0less domUs speak through Xen's console.
    assert result.marker_lines[DOM0].startswith(DOM0)
    assert result.marker_lines[DOMU0].startswith("(XEN) DOM")
    assert result.marker_lines[DOMU1].startswith("(XEN) DOM")
    assert reported_values(result.marker_lines[DOMU0])["cmdline"] == "console=ttyAMA0"


def test_gzipped_domu_kernel_boots(boot_parts: BootParts, tmp_path: Path) -> None:
    gzipped = tmp_path / "Image.gz"
    gzip_file(boot_parts.path("Image"), gzipped)
    work = build_system(
        boot_parts,
        tmp_path / "tftp",
        [domain("domu0", kernel="Image.gz"), domain("domu1")],
        extra_files=[gzipped],
    )
    assert "Image.gz" in (work / "boot.source").read_text()
    result = boot_system(work, [DOM0, DOMU0, DOMU1])
    assert result.ok, describe_failure(result)


def test_domu_marked_noboot_does_not_start(boot_parts: BootParts, tmp_path: Path) -> None:
    work = build_system(
        boot_parts, tmp_path / "tftp", [domain("domu0"), domain("domu1", noboot=True)]
    )
    assert "domu1.cpio.gz" not in (work / "boot.source").read_text()
    # Dom0less domUs start together; 5 s more after the others is ample for a stray one.
    result = boot_system(work, [DOM0, DOMU0], absent_markers=[DOMU1], settle_seconds=5.0)
    assert result.ok, describe_failure(result)


def test_domu_memory_vcpus_and_command_line_arrive_in_the_domu(
    boot_parts: BootParts, tmp_path: Path
) -> None:
    cmdline = "console=ttyAMA0 ibtasks.scenario=mem-vcpus-cmd"
    work = build_system(
        boot_parts,
        tmp_path / "tftp",
        [domain("domu0", mem_mb=300, vcpus=2, cmd=cmdline), domain("domu1")],
    )
    result = boot_system(work, [DOM0, DOMU0, DOMU1])
    assert result.ok, describe_failure(result)
    seen = reported_values(result.marker_lines[DOMU0])
    assert seen["cmdline"] == cmdline
    assert seen["cpus"] == "2"
    # MemTotal is what is left after the kernel's own reservations: 256 MB gives 230560 kB.
    assert 0.85 * 300 * 1024 < int(seen["memtotal_kb"]) <= 300 * 1024, seen
    default = reported_values(result.marker_lines[DOMU1])
    assert default["cpus"] == "1"
    assert 0.85 * 512 * 1024 < int(default["memtotal_kb"]) <= 512 * 1024, default


def test_preedited_dtb_boots_without_fdt_commands(boot_parts: BootParts, tmp_path: Path) -> None:
    work = build_system(
        boot_parts,
        tmp_path / "tftp",
        [domain("domu0"), domain("domu1")],
        fdtedit="virt-edited.dtb",
    )
    script = (work / "boot.source").read_text().splitlines()
    assert not [line for line in script if line.startswith("fdt ")], script
    assert any("virt-edited.dtb" in line for line in script), script
    result = boot_system(work, [DOM0, DOMU0, DOMU1])
    assert result.ok, describe_failure(result)


def test_unknown_command_in_boot_script_fails_fast(tmp_path: Path) -> None:
    source = tmp_path / "boot.source"
    source.write_text("echo before\nno_such_command 1 2\n")
    subprocess.run(
        ["mkimage", "-A", "arm64", "-T", "script", "-C", "none", "-d", str(source),
         str(tmp_path / "boot.scr")],
        check=True, capture_output=True,
    )
    spec = BootSpec(
        commands=tftp_commands(),
        markers=(DOM0,),
        log_path=tmp_path / "console.log",
        media_args=tftp_args(tmp_path),
        machine=MACHINE,
        timeout_seconds=60.0,
    )
    result = boot(spec)
    print(result.summary())
    assert not result.ok
    assert "Unknown command 'no_such_command'" in result.reason, result.reason
    assert result.elapsed < 30
    # The script ran up to the bad line, and U-Boot's prompt came back after it.
    assert "\nbefore\nUnknown command" in result.log_path.read_text()


def test_xen_without_serial_alias_is_reported_as_silent(
    boot_parts: BootParts, tmp_path: Path
) -> None:
    work = build_system(boot_parts, tmp_path / "tftp", [domain("domu0")])
    subprocess.run(["fdtput", "-d", str(work / "virt.dtb"), "/aliases", "serial0"], check=True)
    # The script carries no size check of the DTB, so the edited file loads as before.
    result = boot_system(work, [DOM0, DOMU0], idle_seconds=8.0)
    assert not result.ok
    assert result.reason == "console silent for 8 s", result.reason
    assert "Starting kernel" in result.log_path.read_text()
