"""The settings table drives reading: every number key takes decimal and 0x hex (as bash
arithmetic does in the original) and lands in the output with its value, every ranged or closed
key refuses what its row refuses with one line, and every default is written in its row only.

Values are read back from the outputs with real tools (fdtget on the edited DTB, the script
text); the expected numbers are written by hand here, never computed from the table.
"""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest

from ibtasks.config.build import build_config
from ibtasks.config.loader import raw_from_bash
from ibtasks.config.model import Config, Options
from ibtasks.config.reader import KeyReader, RawConfig
from ibtasks.config.settings import SETTINGS, SETTINGS_BY_NAME, Kind
from tests.conftest import run_ibtasks

REPO = Path(__file__).resolve().parent.parent
BASE = """\
MEMORY_START=0x40000000
MEMORY_END=0x80000000
DEVICE_TREE={dtb}
XEN=xen
DOM0_KERNEL=Image-dom0
"""
ONE_DOMU = "NUM_DOMUS=1\nDOMU_KERNEL[0]=zynqmp-dom1/Image-domU\n"
TWO_DOMUS = "NUM_DOMUS=2\nDOMU_KERNEL[0]=zynqmp-dom1/Image-domU\n" \
            "DOMU_KERNEL[1]=zynqmp-dom2/Image-domU\n"
POOLS = 'NUM_CPUPOOLS=2\nCPUPOOL[0]="cpu@0"\nCPUPOOL[1]="cpu@1"\n'
OUTPUTS = ("boot.source", "boot.scr", "boot.dtb")


def generate(inputs: Path, config: str, dtb: str = "mpsoc.dtb") -> Path:
    """Run uboot-script-gen on BASE + `config`; the edited DTB."""
    (inputs / "config").write_text(BASE.format(dtb=dtb) + config)
    result = run_ibtasks("uboot-script-gen", "-c", "config", "-d", ".", "-t", "tftp", cwd=inputs)
    assert result.returncode == 0, result.stderr
    return inputs / "boot.dtb"


def refused(inputs: Path, config: str, dtb: str = "mpsoc.dtb") -> str:
    """Run uboot-script-gen on a config that must fail: its one stderr line, no outputs left."""
    (inputs / "config").write_text(BASE.format(dtb=dtb) + config)
    result = run_ibtasks("uboot-script-gen", "-c", "config", "-d", ".", "-t", "tftp", cwd=inputs)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert [name for name in OUTPUTS if (inputs / name).exists()] == []
    return result.stderr


def last_line(config: str) -> int:
    return (BASE + config).count("\n")


def fdtget(dtb: Path, node: str, prop: str, kind: str = "i") -> str:
    return subprocess.run(["fdtget", "-t", kind, str(dtb), node, prop], check=True,
                          capture_output=True, text=True).stdout.strip()


def cells(dtb: Path, node: str, prop: str) -> list[int]:
    return [int(w) for w in fdtget(dtb, node, prop, "u").split()]


def config_of(inputs: Path, config: str, dtb: str = "mpsoc.dtb") -> Config:
    text = BASE.format(dtb=dtb) + config
    return build_config(raw_from_bash(text, "config", {}),
                        Options(root_dir=inputs, load_cmd="tftpb"))


# ---- every number key takes 0x hex, and the value lands ----------------------------------------

# Per NUMBER row: config lines with the value in hex, the DTB, and what fdtget must read back:
# (node, property, kind, expected) with kind "u" (cells), "s" (a string) or "w" (a word of one).
HEX_CASES: dict[str, tuple[str, str, str, str, str, object]] = {
    "NUM_DOMUS": (TWO_DOMUS.replace("NUM_DOMUS=2", "NUM_DOMUS=0x2"), "mpsoc.dtb",
                  "/chosen/domU1", "compatible", "s", "xen,domain"),
    "DOMU_MEM": (TWO_DOMUS + "DOMU_MEM[1]=0x100\n", "mpsoc.dtb",
                 "/chosen/domU1", "memory", "u", [0, 256 * 1024]),
    "DOMU_VCPUS": (ONE_DOMU + "DOMU_VCPUS[0]=0x3\n", "mpsoc.dtb",
                   "/chosen/domU0", "cpus", "u", [3]),
    "DOM0_MEM": (ONE_DOMU + "DOM0_MEM=0x100\n", "mpsoc.dtb",
                 "/chosen", "xen,xen-bootargs", "w", "dom0_mem=256M"),
    "DOM0_VCPUS": (ONE_DOMU + "DOM0_VCPUS=0x2\n", "mpsoc.dtb",
                   "/chosen", "xen,xen-bootargs", "w", "dom0_max_vcpus=2"),
    "NUM_CPUPOOLS": (ONE_DOMU + POOLS.replace("=2", "=0x2"), "mpsoc-cpus.dtb",
                     "/chosen/cpupool_1", "compatible", "s", "xen,cpupool"),
    "DOMU_CPUPOOL": (ONE_DOMU + POOLS + "DOMU_CPUPOOL[0]=0x1\n", "mpsoc-cpus.dtb",
                     "/chosen/domU0", "domain-cpupool", "u", "phandle of /chosen/cpupool_1"),
    "DOMU_NR_SPIS": (ONE_DOMU + "DOMU_NR_SPIS[0]=0x10\n", "mpsoc.dtb",
                     "/chosen/domU0", "nr_spis", "u", [16]),
    "DOMU_GRANT_VER": (ONE_DOMU + "DOMU_GRANT_VER[0]=0x2\n", "mpsoc.dtb",
                       "/chosen/domU0", "max_grant_version", "u", [2]),
    "DOMU_GRANT_FRAMES": (ONE_DOMU + "DOMU_GRANT_FRAMES[0]=0x40\n", "mpsoc.dtb",
                          "/chosen/domU0", "max_grant_frames", "u", [64]),
    "DOMU_MAPTRACK_FRAMES": (ONE_DOMU + "DOMU_MAPTRACK_FRAMES[0]=0x400\n", "mpsoc.dtb",
                             "/chosen/domU0", "max_maptrack_frames", "u", [1024]),
    "DOMU_DOMID": (ONE_DOMU + "DOMU_DOMID[0]=0x10\n", "mpsoc.dtb",
                   "/chosen/domU0", "domid", "u", [16]),
    "DOMU_TRAP_UNMAP": (ONE_DOMU + "DOMU_TRAP_UNMAP[0]=0x1\n", "mpsoc.dtb",
                        "/chosen/domU0", "trap-unmapped-accesses", "u", [1]),
    "NUM_DT_OVERLAY": (ONE_DOMU + "NUM_DT_OVERLAY=0x1\nDT_OVERLAY[0]=overlay.dtbo\n",
                       "mpsoc.dtb", "/overlay-marker", "compatible", "s",
                       "ibtasks,overlay-marker"),
}
NUMBER_ROWS = [s.name for s in SETTINGS if s.kind is Kind.NUMBER]


def test_every_number_row_has_a_hex_case_here() -> None:
    # NUM_BOOT_AUX_FILE and BOOT_PARTITION_SIZE land in disk.img only: their cases are the
    # build_config tests below.
    assert sorted([*HEX_CASES, "NUM_BOOT_AUX_FILE", "BOOT_PARTITION_SIZE"]) == sorted(
        NUMBER_ROWS)


@pytest.mark.parametrize("name", sorted(HEX_CASES))
def test_number_key_in_hex_lands_in_the_device_tree_with_its_value(seed_inputs: Path,
                                                                    name: str) -> None:
    config, dtb_name, node, prop, kind, expected = HEX_CASES[name]
    dtb = generate(seed_inputs, config, dtb_name)
    if name == "DOMU_CPUPOOL":
        expected = cells(dtb, "/chosen/cpupool_1", "phandle")
    if kind == "u":
        assert cells(dtb, node, prop) == expected
    elif kind == "w":
        assert expected in fdtget(dtb, node, prop, "s").split()
    else:
        assert fdtget(dtb, node, prop, "s") == expected


def test_boot_aux_file_count_in_hex_counts_the_files(seed_inputs: Path) -> None:
    config = config_of(seed_inputs, ONE_DOMU + "NUM_BOOT_AUX_FILE=0x2\nBOOT_AUX_FILE[0]=xen\n"
                       "BOOT_AUX_FILE[1]=design.bit\n")
    assert [b.path for b in config.boot_aux_files] == ["xen", "design.bit"]


def test_boot_partition_size_in_hex_is_its_mib(seed_inputs: Path) -> None:
    config = config_of(seed_inputs, ONE_DOMU + "BOOT_PARTITION_SIZE=0x40\n")
    assert config.boot_partition_mib == 64


# ---- numbers inside text values follow the same rule ------------------------------------------


def test_colours_in_hex_are_written_in_decimal(seed_inputs: Path) -> None:
    dtb = generate(seed_inputs, ONE_DOMU + 'DOMU_COLORS[0]="0x0-0x3,0x8"\n')
    assert fdtget(dtb, "/chosen/domU0", "llc-colors", "s") == "0-3,8"
    assert "llc-coloring=on" in fdtget(dtb, "/chosen", "xen,xen-bootargs", "s").split()


def test_static_memory_in_decimal_gives_the_same_regions_as_in_hex(seed_inputs: Path) -> None:
    dtb = generate(seed_inputs, ONE_DOMU + 'DOMU_STATIC_MEM[0]="1610612736 16777216"\n')
    assert cells(dtb, "/chosen/domU0", "xen,static-mem") == [0, 0x60000000, 0, 0x1000000]


def test_python_number_forms_in_a_region_list_are_refused(seed_inputs: Path) -> None:
    config = ONE_DOMU + 'DOMU_STATIC_MEM[0]="0x6000_0000 0x1000000"\n'
    assert refused(seed_inputs, config) == (
        f"ibtasks: error: config:{last_line(config)}: DOMU_STATIC_MEM[0]: expected pairs of "
        "'base size' numbers, got '0x6000_0000 0x1000000'\n")


def test_leading_zero_in_an_event_channel_port_gets_the_octal_hint(seed_inputs: Path) -> None:
    config = ONE_DOMU + 'DOMU_STATIC_EVTCHNS[0]="010 1 11"\n'
    assert refused(seed_inputs, config) == (
        f"ibtasks: error: config:{last_line(config)}: DOMU_STATIC_EVTCHNS[0]: expected "
        "'local-port remote-domU remote-port', got '010 1 11'; a leading 0 makes bash read it "
        "as octal\n")


# ---- ranges: one line naming the key, for every ranged row -------------------------------------

RANGE_CASES: dict[str, tuple[str, str]] = {
    "DOMU_MEM": ("DOMU_MEM[0]=0x0", "DOMU_MEM[0]: must be at least 1 MiB"),
    "DOMU_VCPUS": ("DOMU_VCPUS[0]=0", "DOMU_VCPUS[0]: must be at least 1"),
    "DOM0_MEM": ("DOM0_MEM=0x0", "DOM0_MEM: must be at least 1 MiB"),
    "DOM0_VCPUS": ("DOM0_VCPUS=0", "DOM0_VCPUS: must be at least 1"),
    "NUM_CPUPOOLS": ("NUM_CPUPOOLS=0x41", "NUM_CPUPOOLS: expected a count from 0 to 64, "
                     "got '0x41'"),
    "DOMU_CPUPOOL": (POOLS.strip() + "\nDOMU_CPUPOOL[0]=0x2",
                     "DOMU_CPUPOOL[0]: expected a cpupool index from 0 to 1, got '0x2'"),
    "DOMU_NR_SPIS": ("DOMU_NR_SPIS[0]=0x3dd", "DOMU_NR_SPIS[0]: expected a number from 0 to "
                     "988, got '0x3dd'"),
    "DOMU_GRANT_VER": ("DOMU_GRANT_VER[0]=0", "DOMU_GRANT_VER[0]: expected a grant table "
                       "version from 1 to 2, got '0'"),
    "DOMU_GRANT_FRAMES": ("DOMU_GRANT_FRAMES[0]=0x100000000", "DOMU_GRANT_FRAMES[0]: expected "
                          "a number from 1 to 4294967295, got '0x100000000'"),
    "DOMU_MAPTRACK_FRAMES": ("DOMU_MAPTRACK_FRAMES[0]=4294967296", "DOMU_MAPTRACK_FRAMES[0]: "
                             "expected a number from 0 to 4294967295, got '4294967296'"),
    "DOMU_DOMID": ("DOMU_DOMID[0]=0x7ff0", "DOMU_DOMID[0]: expected a domain id from 0 to "
                   "32751, got '0x7ff0'"),
    "BOOT_PARTITION_SIZE": ("BOOT_PARTITION_SIZE=0x0",
                            "BOOT_PARTITION_SIZE: must be at least 1 MiB"),
    "DOMU_TRAP_UNMAP": ("DOMU_TRAP_UNMAP[0]=0x2", "DOMU_TRAP_UNMAP[0]: expected 0 or 1 from 0 "
                        "to 1, got '0x2'"),
}


def test_every_ranged_row_has_a_range_case_here() -> None:
    ranged = [s.name for s in SETTINGS if s.kind is Kind.NUMBER and (s.low or s.high is not None)]
    assert sorted(RANGE_CASES) == sorted(ranged)


@pytest.mark.parametrize("name", sorted(RANGE_CASES))
def test_number_outside_its_rows_range_is_refused_with_one_line(seed_inputs: Path,
                                                                name: str) -> None:
    line, message = RANGE_CASES[name]
    config = ONE_DOMU + line + "\n"
    assert refused(seed_inputs, config, "mpsoc-cpus.dtb") == (
        f"ibtasks: error: config:{last_line(config)}: {message}\n")


@pytest.mark.parametrize("name", NUMBER_ROWS)
def test_leading_zero_number_is_refused_with_the_octal_hint_for_every_number_key(
        seed_inputs: Path, name: str) -> None:
    line = f"{name}[0]=010" if SETTINGS_BY_NAME[name].per_domu else f"{name}=010"
    config = ONE_DOMU + line + "\n"
    stderr = refused(seed_inputs, config)
    assert stderr.startswith(f"ibtasks: error: config:{last_line(config)}: {line.split('=')[0]}: ")
    assert stderr.endswith("got '010'; a leading 0 makes bash read it as octal\n")


# ---- closed choices ----------------------------------------------------------------------------

CHOICE_CASES = {
    "BOOT_CMD": ("BOOT_CMD=bootelf", "BOOT_CMD: expected one of booti, bootm, bootz, bootefi, "
                 "none, got 'bootelf'"),
    "BOOT_FS": ("BOOT_FS=vfat", "BOOT_FS: expected fat or ext4, got 'vfat'"),
    "PARTITION_TABLE": ("PARTITION_TABLE=mbr", "PARTITION_TABLE: expected gpt or dos, got 'mbr'"),
    "DOMU_PASSTHROUGH_PROP": ("DOMU_PASSTHROUGH_PROP[0]=on", "DOMU_PASSTHROUGH_PROP[0]: expected "
                              "enabled or disabled, got 'on'"),
}


def test_every_choice_row_has_a_choice_case_here() -> None:
    assert sorted(CHOICE_CASES) == sorted(s.name for s in SETTINGS if s.kind is Kind.CHOICE)


@pytest.mark.parametrize("name", sorted(CHOICE_CASES))
def test_word_outside_a_closed_choice_is_refused_with_one_line(seed_inputs: Path,
                                                               name: str) -> None:
    line, message = CHOICE_CASES[name]
    config = ONE_DOMU + line + "\n"
    assert refused(seed_inputs, config) == (
        f"ibtasks: error: config:{last_line(config)}: {message}\n")


def test_choices_are_read_in_any_case(seed_inputs: Path) -> None:
    dtb = generate(seed_inputs, ONE_DOMU + "DOMU_PASSTHROUGH_PROP[0]=Disabled\n")
    assert fdtget(dtb, "/chosen/domU0", "passthrough", "s") == "disabled"
    config = config_of(seed_inputs, ONE_DOMU + "BOOT_FS=EXT4\nPARTITION_TABLE=Dos\n")
    assert (config.boot_fs, config.partition_table) == ("ext4", "dos")


# ---- defaults: in the table only ---------------------------------------------------------------


def test_a_config_without_the_defaulted_keys_gets_the_tables_defaults(seed_inputs: Path) -> None:
    dtb = generate(seed_inputs, ONE_DOMU)
    assert cells(dtb, "/chosen/domU0", "memory") == [0, 512 * 1024]  # DOMU_MEM 512
    assert cells(dtb, "/chosen/domU0", "cpus") == [1]  # DOMU_VCPUS 1
    props = subprocess.run(["fdtget", "-p", str(dtb), "/chosen/domU0"], check=True,
                           capture_output=True, text=True).stdout.split()
    assert "vpl011" in props  # DOMU_VPL011 1
    assert fdtget(dtb, "/chosen", "xen,xen-bootargs", "s") == (
        "console=dtuart dtuart=serial0 dom0_mem=1G dom0_max_vcpus=1 bootscrub=0 vwfi=native "
        "sched=null")
    assert fdtget(dtb, "/chosen", "xen,dom0-bootargs", "s").startswith(
        "console=hvc0 earlycon=xen earlyprintk=xen clk_ignore_unused")
    module = subprocess.run(["fdtget", "-l", str(dtb), "/chosen/domU0"], check=True,
                            capture_output=True, text=True).stdout.split()[0]
    assert fdtget(dtb, f"/chosen/domU0/{module}", "bootargs", "s") == "console=ttyAMA0"
    script = (seed_inputs / "boot.source").read_text().splitlines()  # UBOOT_SOURCE boot.source
    assert script[-1].startswith("booti ")  # BOOT_CMD booti
    config = config_of(seed_inputs, ONE_DOMU)
    assert (config.boot_fs, config.partition_table) == ("fat", "gpt")


def test_every_default_passes_its_own_rows_rule() -> None:
    reader = KeyReader(RawConfig("config", {}))
    for setting in SETTINGS:
        if setting.default is None:
            continue
        index = 0 if setting.per_domu else None
        value = reader.value(setting.name, index)
        if setting.kind is Kind.NUMBER:
            assert isinstance(value, int), setting.name
        if setting.kind is Kind.CHOICE:
            assert value in setting.choices, setting.name


def _string_constants(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)}
    return {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant)
            and isinstance(node.value, str) and id(node) not in docstrings}


def test_no_default_is_written_outside_its_row() -> None:
    defaults = {s.default: s.name for s in SETTINGS if s.default and len(s.default) > 1}
    for path in sorted((REPO / "ibtasks" / "config").glob("*.py")):
        if path.name == "settings.py":
            continue
        found = {text: defaults[text] for text in _string_constants(path) if text in defaults}
        assert found == {}, f"{path.name} writes the default of {found}"


@pytest.mark.parametrize(("line", "message"), [
    ("DOMU_NR_SPIS[0]=0b11", "DOMU_NR_SPIS[0]: expected a number from 0 to 988, got '0b11'"),
    ("DOMU_DOMID[0]=0o17", "DOMU_DOMID[0]: expected a domain id from 0 to 32751, got '0o17'"),
    ("NUM_CPUPOOLS=1_0", "NUM_CPUPOOLS: expected a count from 0 to 64, got '1_0'"),
    ("DOMU_CAPS[0]=0b1", "DOMU_CAPS[0]: unknown capability '0b1' (known: none, control, "
     "hardware, xenstore, dom0, or a number)"),
])
def test_python_only_number_forms_are_refused_as_bash_would(seed_inputs: Path, line: str,
                                                            message: str) -> None:
    config = ONE_DOMU + line + "\n"
    assert refused(seed_inputs, config) == (
        f"ibtasks: error: config:{last_line(config)}: {message}\n")
