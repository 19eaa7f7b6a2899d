"""Boot real Xen + Linux (Debian arm64) under QEMU with U-Boot and our boot script.

Each scenario writes an ImageBuilder config, runs our `uboot-script-gen`, serves the result over
QEMU's TFTP and waits for every domain's /init marker. Run with `-s` to see when each arrived.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from ibtasks.qemu.runner import (
    BootSpec,
    ahci_disk_args,
    boot,
    describe_failure,
    disk_commands,
    tftp_args,
    tftp_commands,
    virtio_disk_args,
)
from tests.boot_fixtures import (
    MACHINE,
    BootParts,
    boot_system,
    build_system,
    domain,
    gzip_file,
    prepare_boot_parts,
    reported_values,
)

pytestmark = pytest.mark.boot

DOM0 = "DOM0-ALIVE"
DOMU0 = "DOMU0-ALIVE"
DOMU1 = "DOMU1-ALIVE"
# sfdisk and mkfs.vfat live in /usr/sbin, which a non-root PATH may lack.
SBIN_PATH = {**os.environ, "PATH": os.environ.get("PATH", "") + ":/usr/sbin:/sbin"}


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


def write_script(directory: Path, text: str) -> Path:
    """boot.scr with `text`, made by mkimage as ImageBuilder makes it."""
    source = directory / "boot.source"
    source.write_text(text)
    subprocess.run(
        ["mkimage", "-A", "arm64", "-T", "script", "-C", "none", "-d", str(source),
         str(directory / "boot.scr")],
        check=True, capture_output=True,
    )
    return directory / "boot.scr"


def tftp_spec(directory: Path, markers: tuple[str, ...]) -> BootSpec:
    return BootSpec(
        commands=tftp_commands(),
        markers=markers,
        log_path=directory / "console.log",
        media_args=tftp_args(directory),
        machine=MACHINE,
        timeout_seconds=60.0,
    )


def test_unknown_command_in_boot_script_fails_fast(tmp_path: Path) -> None:
    write_script(tmp_path, "echo before\nno_such_command 1 2\n")
    result = boot(tftp_spec(tmp_path, (DOM0,)))
    print(result.summary())
    assert not result.ok
    assert result.reason == "console: Unknown command 'no_such_command' - try 'help'"
    assert result.elapsed < 30
    # The script ran up to the bad line.
    assert "\nbefore\nUnknown command" in result.log_path.read_text()


def test_return_to_uboot_prompt_after_the_script_is_a_failure(tmp_path: Path) -> None:
    write_script(tmp_path, "echo the script ends without booting\n")
    result = boot(tftp_spec(tmp_path, (DOM0,)))
    print(result.summary())
    assert not result.ok
    assert result.reason == "back at the U-Boot prompt after the last command"
    assert result.elapsed < 30


@pytest.mark.parametrize(
    ("media", "interface"),
    [("virtio-mmio", "virtio"), ("virtio-pci", "virtio"), ("ahci", "scsi")],
)
def test_boot_script_runs_from_the_first_partition_of_a_disk(
    tmp_path: Path, media: str, interface: str
) -> None:
    # The script prints the marker and then waits, so the prompt does not come back first.
    write_script(tmp_path, "echo SCRIPT-FROM-DISK\nsleep 30\n")
    disk = tmp_path / "disk.img"
    part = tmp_path / "p1.img"
    with disk.open("wb") as out:
        out.truncate(40 << 20)
    subprocess.run(["sfdisk", "-q", str(disk)], input="label: dos\nstart=2048, type=c\n",
                   text=True, check=True, env=SBIN_PATH)
    subprocess.run(["mkfs.vfat", "-C", str(part), str(30 << 10)], check=True,
                   capture_output=True, env=SBIN_PATH)
    subprocess.run(["mcopy", "-i", str(part), str(tmp_path / "boot.scr"), "::boot.scr"],
                   check=True)
    with disk.open("r+b") as out:
        out.seek(2048 * 512)
        out.write(part.read_bytes())
    args = {
        "virtio-mmio": virtio_disk_args(disk),
        "virtio-pci": virtio_disk_args(disk, "pci"),
        "ahci": ahci_disk_args(disk),
    }[media]
    spec = BootSpec(
        commands=disk_commands(interface),
        markers=("SCRIPT-FROM-DISK",),
        log_path=tmp_path / "console.log",
        media_args=args,
        machine=MACHINE,
        timeout_seconds=60.0,
    )
    result = boot(spec)
    print(result.summary())
    assert result.ok, describe_failure(result)


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
