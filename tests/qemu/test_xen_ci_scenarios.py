"""The Xen CI scenarios of examples/xen-ci: built by our CLI, checked in the DTB, and booted.

Each `examples/xen-ci/<scenario>/config` is the config Xen's CI writes in
automation/scripts/qemu-smoke-dom0less-arm64.sh. Every scenario is built here with the synthetic
inputs of the seed goldens and a DTB dumped from QEMU, and the edited DTB is read back with
fdtget for what the scenario is about.

Only some of them can boot on Debian's Xen (xen-hypervisor-4.17-arm64, 4.17.7, debug=n). What
it was built with was read from the binary: it embeds its .config gzip'd (CONFIG_HYPFS_CONFIG),
which says `# CONFIG_BOOT_TIME_CPUPOOLS is not set` and `# CONFIG_UNSUPPORTED is not set`, and
has no CONFIG_STATIC_MEMORY or CONFIG_STATIC_SHM line at all (in 4.17 both hide behind
UNSUPPORTED). `strings` agrees: "Checking for static heap in /chosen" (static heap needs no
option), "xen,static-mem" only in the boot-time parser, "CONFIG_STATIC_SHM must be enabled for
parsing static shared memory nodes", and no "cpupool-cpus". So the boot test boots:

- default (GICv2) and gicv3: dom0 and domU0 reach init, and Xen reports the GIC version;
- static-heap: both domains reach init, and dom0's 1:1 memory bank is 0x50000000-0x70000000,
  inside the static heap (0x60000000-0x80000000 on the default boot).

It does not boot these (the DT test still covers them); what a boot of each did, tried once by
hand with the same runner:

- static-mem: without CONFIG_STATIC_MEMORY Xen has no static allocator; it loads dom0, then
  panics "direct-map is not valid for domain domU0 without static allocation." (Xen's CI builds
  with the option);
- static-shared-mem: needs CONFIG_STATIC_SHM (and STATIC_MEMORY); Xen never loads dom0 (its
  boot-time DT scan gives up at the shared-mem node, with the message above printed before the
  console is up) and panics "At the moment, Xenstore support requires dom0 to be present";
- boot-cpupools: without CONFIG_BOOT_TIME_CPUPOOLS the `xen,cpupool` node is ignored: dom0 and
  domU0 reach init, but the domU runs in Pool-0, so a boot would prove nothing about the pool.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from ibtasks.qemu.runner import Machine, describe_failure

# board, system: examples/qemu-virt, put on sys.path by boot_fixtures
from tests.boot_fixtures import (
    BootParts,
    board,
    boot_system,
    debian,
    prepare_boot_parts,
    system,
)
from tests.conftest import REPO, run_ibtasks

EXAMPLES = REPO / "examples" / "xen-ci"


@dataclass(frozen=True)
class Scenario:
    """One Xen CI variant: its directory, QEMU's GIC version, and what a boot must show."""

    name: str
    gic_version: int = 2
    boots: bool = False
    xen_markers: tuple[str, ...] = ()


SCENARIOS = (
    Scenario("default", boots=True, xen_markers=("GICv2 initialization:",)),
    Scenario("gicv3", gic_version=3, boots=True, xen_markers=("GICv3 initialization:",)),
    Scenario("static-mem"),
    # Xen prints nothing about the static heap once its console is up; but dom0's 1:1 memory
    # comes from the heap, and lands at 0x60000000 without it (measured on the default boot).
    Scenario("static-heap", boots=True,
             xen_markers=("BANK[0] 0x00000050000000-0x00000070000000 (512MB)",)),
    Scenario("static-shared-mem"),
    Scenario("boot-cpupools"),
)
BY_NAME = {scenario.name: scenario for scenario in SCENARIOS}


def machine_for(gic_version: int) -> Machine:
    """Xen's CI board (cortex-a57, 2 CPUs, 2 GiB) with the scenario's GIC."""
    return Machine(machine=f"virt,virtualization=on,gic-version={gic_version}")


def fdtget(dtb: Path, node: str, prop: str, kind: str = "s") -> str:
    done = subprocess.run(["fdtget", "-t", kind, str(dtb), node, prop],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"fdtget {node} {prop}: {done.stderr.strip()}"
    return done.stdout.strip()


@pytest.fixture(scope="session")
def qemu_dtbs(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """QEMU's DTB, made fit for Xen, for GICv2 and GICv3."""
    out = tmp_path_factory.mktemp("xen-ci-dtbs")
    dtbs = {version: out / f"virt-gicv{version}.dtb" for version in (2, 3)}
    for version, path in dtbs.items():
        board.build_dtb(machine_for(version), path)
    return dtbs


def build_scenario(scenario: Scenario, files: dict[str, Path], dtb: Path, work: Path) -> Path:
    """The scenario's config with `files` beside it, built by our CLI; the edited DTB."""
    work.mkdir(parents=True)
    shutil.copy(EXAMPLES / scenario.name / "config", work / "config")
    for name, source in files.items():
        debian.copy_into(source, work / name)  # hard links: the real kernel is 33 MB
    shutil.copy(dtb, work / "virt.dtb")
    done = run_ibtasks("uboot-script-gen", "-c", "config", "-d", ".", "-t", "tftp", cwd=work,
                       env={"SOURCE_DATE_EPOCH": "0"})
    assert done.returncode == 0, done.stderr
    assert "tftpb 0x40200000 boot.scr; source 0x40200000" in done.stdout
    return work / "boot.dtb"


def synthetic_files(inputs: Path) -> dict[str, Path]:
    """The seed goldens' synthetic binaries under the names the configs use."""
    ramdisk = inputs / "zynqmp-dom3" / "domU-ramdisk.cpio.gz"
    return {
        "xen": inputs / "xen",
        "Image": inputs / "Image-dom0",
        "dom0.cpio.gz": inputs / "rootfs-dom0.cpio.gz",
        "domu0.cpio.gz": ramdisk,
        "domu1.cpio.gz": ramdisk,
    }


def check_default(dtb: Path) -> None:
    assert fdtget(dtb, "/intc@8000000", "compatible") == "arm,cortex-a15-gic"
    assert fdtget(dtb, "/chosen/domU0", "memory", "x") == "0 40000"  # 256 MiB in KiB


def check_gicv3(dtb: Path) -> None:
    assert fdtget(dtb, "/intc@8000000", "compatible") == "arm,gic-v3"
    assert fdtget(dtb, "/chosen/domU0", "memory", "x") == "0 40000"


def check_static_mem(dtb: Path) -> None:
    assert fdtget(dtb, "/chosen/domU0", "xen,static-mem", "x") == "0 50000000 0 10000000"
    assert fdtget(dtb, "/chosen/domU0", "direct-map") == ""  # a flag: present and empty
    assert fdtget(dtb, "/chosen/domU0", "memory", "x") == "0 40000"


def check_static_heap(dtb: Path) -> None:
    assert fdtget(dtb, "/chosen", "xen,static-heap", "x") == "0 50000000 0 30000000"
    assert fdtget(dtb, "/chosen/domU0", "memory", "x") == "0 20000"  # DOMU_MEM[0]=128


def check_static_shared_mem(dtb: Path) -> None:
    for domu in ("/chosen/domU0", "/chosen/domU1"):
        node = f"{domu}/shared-mem@50000000"
        assert fdtget(dtb, node, "compatible") == "xen,domain-shared-memory-v1"
        assert fdtget(dtb, node, "xen,shm-id") == "my-shared-mem-0"
        # host address, guest address, size: 2+2+2 cells
        assert fdtget(dtb, node, "xen,shared-mem", "x") == "0 50000000 0 4000000 0 10000000"


def check_boot_cpupools(dtb: Path) -> None:
    pool = "/chosen/cpupool_0"
    assert fdtget(dtb, pool, "compatible") == "xen,cpupool"
    assert fdtget(dtb, pool, "cpupool-sched") == "null"
    # QEMU's DTB already gives cpu@1 a phandle (its cpu-map uses it): the pool must reuse it.
    assert fdtget(dtb, pool, "cpupool-cpus", "x") == fdtget(dtb, "/cpus/cpu@1", "phandle", "x")
    assert fdtget(dtb, "/chosen/domU0", "domain-cpupool", "x") == fdtget(dtb, pool, "phandle", "x")


CHECKS = {
    "default": check_default,
    "gicv3": check_gicv3,
    "static-mem": check_static_mem,
    "static-heap": check_static_heap,
    "static-shared-mem": check_static_shared_mem,
    "boot-cpupools": check_boot_cpupools,
}


def test_every_scenario_directory_has_a_config_and_a_check() -> None:
    found = sorted(path.parent.name for path in EXAMPLES.glob("*/config"))
    assert found == sorted(BY_NAME) == sorted(CHECKS)


@pytest.mark.parametrize("name", [scenario.name for scenario in SCENARIOS])
def test_xen_ci_scenario_builds_a_dtb_holding_its_feature(
    name: str, seed_inputs_master: Path, qemu_dtbs: dict[int, Path], tmp_path: Path
) -> None:
    scenario = BY_NAME[name]
    dtb = build_scenario(scenario, synthetic_files(seed_inputs_master),
                         qemu_dtbs[scenario.gic_version], tmp_path / name)
    xen_cmd = "console=dtuart dom0_mem=512M console_timestamps=boot"
    assert fdtget(dtb, "/chosen", "xen,xen-bootargs") == xen_cmd
    assert fdtget(dtb, "/chosen/domU0", "xen,enhanced") == "enabled"
    CHECKS[name](dtb)


@pytest.fixture(scope="session")
def boot_parts(tmp_path_factory: pytest.TempPathFactory) -> BootParts:
    return prepare_boot_parts(tmp_path_factory.mktemp("boot-parts"))


@pytest.mark.boot
@pytest.mark.parametrize("name", [scenario.name for scenario in SCENARIOS if scenario.boots])
def test_xen_ci_scenario_boots_on_debian_xen(
    name: str, boot_parts: BootParts, tmp_path: Path
) -> None:
    scenario = BY_NAME[name]
    machine = machine_for(scenario.gic_version)
    dtb = tmp_path / "virt.dtb"
    board.build_dtb(machine, dtb)
    files = {file: boot_parts.path(file)
             for file in ("xen", "Image", "dom0.cpio.gz", "domu0.cpio.gz", "domu1.cpio.gz")}
    work = tmp_path / "tftp"
    build_scenario(scenario, files, dtb, work)
    markers = [*scenario.xen_markers, system.marker_for("dom0"), system.marker_for("domu0")]
    result = boot_system(work, markers, absent_markers=[system.marker_for("domu1")],
                         machine=machine)
    assert result.ok, describe_failure(result)
