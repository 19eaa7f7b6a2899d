"""`ibtasks qemu-dtb` writes the DTB of QEMU's virt machine for the options given, fit for Xen
(checked with fdtget); `ibtasks run`'s machine defaults to what the config's DTB describes
(cores, RAM, GIC version), each option given wins; bad flags are one line, before any boot."""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

import pytest

from ibtasks.cli.run import virt_options
from ibtasks.qemu.board import VirtOptions, machine_of_dtb
from tests.conftest import run_ibtasks


def fdtget(dtb: Path, node: str, prop: str, kind: str = "s") -> str:
    return subprocess.run(["fdtget", "-t", kind, str(dtb), node, prop], check=True,
                          capture_output=True, text=True).stdout.strip()


def nodes(dtb: Path, parent: str) -> list[str]:
    return subprocess.run(["fdtget", "-l", str(dtb), parent], check=True, capture_output=True,
                          text=True).stdout.split()


def qemu_dtb(tmp_path: Path, *flags: str) -> Path:
    done = run_ibtasks("qemu-dtb", "-o", "virt.dtb", *flags, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return tmp_path / "virt.dtb"


def no_flags() -> argparse.Namespace:
    return argparse.Namespace(smp=None, memory=None, gic_version=None, virtualization=None,
                              cpu="cortex-a57")


def test_qemu_dtb_writes_the_machine_asked_for_with_xens_edits(tmp_path: Path) -> None:
    dtb = qemu_dtb(tmp_path, "--smp", "4", "--memory", "1024", "--gic-version", "2")
    assert [n for n in nodes(dtb, "/cpus") if n.startswith("cpu@")] == \
        ["cpu@0", "cpu@1", "cpu@2", "cpu@3"]
    assert fdtget(dtb, "/memory@40000000", "reg", "x").split() == ["0", "40000000", "0",
                                                                    "40000000"]
    assert "arm,cortex-a15-gic" in fdtget(dtb, "/intc@8000000", "compatible")
    assert fdtget(dtb, "/aliases", "serial0") == "/pl011@9000000"  # Xen's dtuart=serial0
    assert fdtget(dtb, "/pl061@9030000", "status") == "disabled"
    assert "rng-seed" not in subprocess.run(["fdtget", "-p", str(dtb), "/chosen"],
                                            capture_output=True, text=True).stdout


def test_qemu_dtb_is_the_same_bytes_for_the_same_options(tmp_path: Path) -> None:
    first = qemu_dtb(tmp_path).read_bytes()
    assert qemu_dtb(tmp_path).read_bytes() == first  # no random seeds left in it
    assert qemu_dtb(tmp_path, "--gic-version", "2").read_bytes() != first


@pytest.mark.parametrize(("flags", "expected"), [
    ((), VirtOptions(smp=2, memory_mb=2048, gic_version=3)),
    (("--smp", "4", "--memory", "1024", "--gic-version", "2"),
     VirtOptions(smp=4, memory_mb=1024, gic_version=2)),
    (("--smp", "1", "--memory", "3072"), VirtOptions(smp=1, memory_mb=3072, gic_version=3)),
])
def test_the_machine_a_qemu_dtb_describes_is_the_one_it_was_dumped_for(
        tmp_path: Path, flags: tuple[str, ...], expected: VirtOptions) -> None:
    dtb = qemu_dtb(tmp_path, *flags)
    assert machine_of_dtb(dtb.read_bytes(), "virt.dtb") == expected


def test_a_hand_written_dtb_gives_its_cores_ram_and_gic(tmp_path: Path) -> None:
    dts = """/dts-v1/;
/ { #address-cells = <2>; #size-cells = <2>;
    cpus { #address-cells = <1>; #size-cells = <0>;
        cpu@0 { device_type = "cpu"; reg = <0>; }; cpu@1 { device_type = "cpu"; reg = <1>; };
        cpu@2 { device_type = "cpu"; reg = <2>; }; cpu-map { }; };
    memory@40000000 { device_type = "memory"; reg = <0 0x40000000 0 0x20000000>; };
    memory@60000000 { device_type = "memory"; reg = <0 0x60000000 0 0x10000000>; };
    intc@8000000 { compatible = "arm,gic-v3"; interrupt-controller; };
};"""
    dtb = subprocess.run(["dtc", "-q", "-I", "dts", "-O", "dtb", "-"], input=dts.encode(),
                         check=True, capture_output=True).stdout
    implied = machine_of_dtb(dtb, "board.dtb")
    assert implied == VirtOptions(smp=3, memory_mb=768, gic_version=3)
    given = no_flags()
    given.smp, given.gic_version = 2, 2
    assert virt_options(given, dtb, "board.dtb") == VirtOptions(smp=2, memory_mb=768,
                                                                gic_version=2)
    assert virt_options(no_flags(), None, "") == VirtOptions()


def test_a_dtb_without_cores_or_memory_asks_for_the_flags(tmp_path: Path) -> None:
    dtb = subprocess.run(["dtc", "-q", "-I", "dts", "-O", "dtb", "-"],
                         input=b"/dts-v1/; / { };", check=True, capture_output=True).stdout
    from ibtasks.errors import UserError

    with pytest.raises(UserError, match=r"^board.dtb: no /cpus cores or /memory banks: give "
                                        r"--smp and --memory$"):
        machine_of_dtb(dtb, "board.dtb")


@pytest.mark.parametrize(("flags", "message"), [
    (("--timeout", "0"), "ibtasks: error: --timeout 0: must be more than 0 seconds\n"),
    (("--from", "nfs"), "ibtasks: error: argument --from: invalid choice: 'nfs' (choose from "
                        "'tftp', 'virtio', 'scsi') (see 'ibtasks run -h')\n"),
    (("--gic-version", "4"), "ibtasks: error: argument --gic-version: invalid choice: 4 "
                             "(choose from 2, 3) (see 'ibtasks run -h')\n"),
])
def test_a_bad_run_flag_is_one_line_and_nothing_is_built(tmp_path: Path, flags: tuple[str, ...],
                                                         message: str) -> None:
    (tmp_path / "config").write_text("XEN=xen\n")
    done = run_ibtasks("run", "-c", "config", "-d", ".", *flags, cwd=tmp_path)
    assert (done.returncode, done.stderr) == (1, message)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config"]


def test_a_missing_u_boot_is_one_line_naming_the_package_before_anything_is_built(
        tmp_path: Path) -> None:
    (tmp_path / "config").write_text("XEN=xen\n")
    done = run_ibtasks("run", "-c", "config", "-d", ".", "--u-boot", "/nonexistent/u-boot.bin",
                       "--expect", "X", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (1, "ibtasks: error: U-Boot firmware "
                                                 "/nonexistent/u-boot.bin not found: install "
                                                 "u-boot-qemu (or give --u-boot)\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config"]
