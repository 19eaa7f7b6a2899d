"""Values the original takes silently but a user probably did not mean (config.value_warnings),
numbers read as bash arithmetic reads them (settings.parse_address/parse_count), and the
messages for a BOM, an empty expansion and a per-domU key at the top of a YAML config.

Warnings print before the result and keep exit 0; --strict makes the first one the error.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ibtasks.config.reader import RawValue
from ibtasks.config.settings import flag_word, number_hint, parse_address, parse_count
from ibtasks.config.value_warnings import beyond_count_warnings
from tests.conftest import run_ibtasks

BASE = """\
MEMORY_START=0x40000000
MEMORY_END=0x50000000
DEVICE_TREE=mpsoc.dtb
XEN=xen
DOM0_KERNEL=Image-dom0
"""
DOMU0 = "NUM_DOMUS=1\nDOMU_KERNEL[0]=zynqmp-dom1/Image-domU\n"
SCRIPT_GEN = ("uboot-script-gen", "-c", "config", "-d", ".", "-t", "tftp")


def build(inputs: Path, extra: str, *flags: str, name: str = "config",
          text: str | None = None) -> subprocess.CompletedProcess[str]:
    (inputs / name).write_text(BASE + extra if text is None else text)
    return run_ibtasks("uboot-script-gen", "-c", name, "-d", ".", "-t", "tftp", *flags,
                       cwd=inputs)


def warnings_of(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 0, result.stderr
    return [line for line in result.stderr.splitlines() if line.startswith("ibtasks: warning:")]


def loaded(inputs: Path) -> list[str]:
    """The paths boot.source loads (its tftpb lines)."""
    return [line.split()[2] for line in (inputs / "boot.source").read_text().splitlines()
            if line.startswith("tftpb")]


# ---- indexed keys beyond their count ----------------------------------------------------------

def test_domu_kernel_beyond_num_domus_is_a_warning_and_not_loaded(seed_inputs: Path) -> None:
    result = build(seed_inputs, DOMU0 + "DOMU_KERNEL[1]=zynqmp-dom2/Image-domU\n")
    assert warnings_of(result) == [
        "ibtasks: warning: config:8: DOMU_KERNEL[1] is set but NUM_DOMUS=1 counts domUs 0..0: "
        "it is ignored"]
    assert "zynqmp-dom2/Image-domU" not in loaded(seed_inputs)
    assert "zynqmp-dom1/Image-domU" in loaded(seed_inputs)


def test_domu_kernel_without_num_domus_says_how_to_count_it(seed_inputs: Path) -> None:
    result = build(seed_inputs, "DOMU_KERNEL[0]=zynqmp-dom1/Image-domU\n")
    assert warnings_of(result) == [
        "ibtasks: warning: config:6: DOMU_KERNEL[0] is set but NUM_DOMUS is not set (0): it is "
        "ignored; set NUM_DOMUS=1 to use it"]
    dtb = subprocess.run(["fdtget", "-l", "boot.dtb", "/chosen"], cwd=seed_inputs,
                         capture_output=True, text=True, check=True).stdout.split()
    assert not [node for node in dtb if node.startswith("domU")]


def test_domu_memory_and_boot_aux_file_beyond_their_counts_are_warnings(
        seed_inputs: Path) -> None:
    result = build(seed_inputs, DOMU0 + "DOMU_MEM[1]=256\nNUM_BOOT_AUX_FILE=0\n"
                                        "BOOT_AUX_FILE[0]=design.bit\n")
    assert warnings_of(result) == [
        "ibtasks: warning: config:8: DOMU_MEM[1] is set but NUM_DOMUS=1 counts domUs 0..0: it "
        "is ignored",
        "ibtasks: warning: config:10: BOOT_AUX_FILE[0] is set but NUM_BOOT_AUX_FILE is 0: it is "
        "ignored; set NUM_BOOT_AUX_FILE=1 to use it"]


def test_cpupool_beyond_num_cpupools_is_a_warning() -> None:
    values = {("NUM_CPUPOOLS", None): RawValue("1", "c:1"),
              ("CPUPOOL", 0): RawValue("cpu@0 null", "c:2"),
              ("CPUPOOL", 2): RawValue("cpu@1 null", "c:3")}
    assert beyond_count_warnings(values) == (
        "c:3: CPUPOOL[2] is set but NUM_CPUPOOLS=1 counts cpupools 0..0: it is ignored",)


def test_strict_makes_a_key_beyond_its_count_an_error_and_writes_nothing(
        seed_inputs: Path) -> None:
    result = build(seed_inputs, DOMU0 + "DOMU_KERNEL[1]=zynqmp-dom2/Image-domU\n", "--strict")
    assert (result.returncode, result.stderr) == (1, (
        "ibtasks: error: config:8: DOMU_KERNEL[1] is set but NUM_DOMUS=1 counts domUs 0..0: "
        "it is ignored\n"))
    assert not (seed_inputs / "boot.scr").exists()


# ---- flags that are neither yes nor no --------------------------------------------------------

def test_misspelt_noboot_warns_and_counts_as_set_as_in_the_original(seed_inputs: Path) -> None:
    result = build(seed_inputs, DOMU0 + "DOMU_NOBOOT[0]=flase\n")
    assert warnings_of(result) == [
        "ibtasks: warning: config:8: DOMU_NOBOOT[0]: 'flase' is neither yes (1, y, yes, true, "
        "on) nor no (0, n, no, false, off); it counts as set, as in the original"]
    assert "zynqmp-dom1/Image-domU" not in loaded(seed_inputs)


def test_preedited_dtb_maybe_warns_and_the_script_loads_the_edited_dtb(
        seed_inputs: Path) -> None:
    result = build(seed_inputs, "PREEDITED_DTB=maybe\n")
    assert warnings_of(result) == [
        "ibtasks: warning: config:6: PREEDITED_DTB: 'maybe' is neither yes (1, y, yes, true, "
        "on) nor no (0, n, no, false, off); it counts as set, as in the original"]
    assert "boot.dtb" in loaded(seed_inputs)


def test_recognised_yes_and_no_words_give_no_warning(seed_inputs: Path) -> None:
    result = build(seed_inputs, DOMU0 + "DOMU_NOBOOT[0]=No\nPREEDITED_DTB=YES\n"
                                        "DBG_FDT_PRINT_CHOSEN=off\n")
    assert warnings_of(result) == []
    assert [flag_word(w) for w in ("1", "y", "On", " true ", "0", "", "OFF", "maybe")] == [
        True, True, True, True, False, False, False, None]


# ---- numbers ----------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["0x4000_0000", "1_073_741_824", "0o17", "0b101", "0x", "\u0663",
                                  "0x4000 0000", "-1", "+5", "1e3", "010"])
def test_address_that_bash_arithmetic_would_not_read_as_written_is_refused(text: str) -> None:
    assert parse_address(text) is None


def test_addresses_in_decimal_or_hex_with_blanks_around_are_read() -> None:
    assert [parse_address(t) for t in ("0x40000000", " 0X4000000a ", "1073741824", "0")] == [
        0x40000000, 0x4000000A, 1073741824, 0]
    assert [parse_count(t) for t in ("512", " 2 ", "0", "0x10", "\u0663", "08", "1_0")] == [
        512, 2, 0, 16, None, None, None]  # 0x hex as bash arithmetic reads it
    assert number_hint("0700") == "; a leading 0 makes bash read it as octal"


def test_domu_memory_with_a_leading_zero_is_refused_naming_octal(seed_inputs: Path) -> None:
    result = build(seed_inputs, DOMU0 + "DOMU_MEM[0]=0512\n")
    assert (result.returncode, result.stderr) == (1, (
        "ibtasks: error: config:8: DOMU_MEM[0]: expected a whole number of MiB, got '0512'; a "
        "leading 0 makes bash read it as octal\n"))


def test_num_domus_in_another_scripts_digits_is_refused(seed_inputs: Path) -> None:
    result = build(seed_inputs, "NUM_DOMUS=\u0661\n")  # ARABIC-INDIC DIGIT ONE
    assert (result.returncode, result.stderr) == (1, (
        "ibtasks: error: config:6: NUM_DOMUS: expected a whole number, got '\u0661'\n"))


# ---- MEMORY_START alignment -------------------------------------------------------------------

@pytest.mark.parametrize(("start", "aligned"), [("0x40000001", "0x40200000"),
                                                ("0x40100000", "0x40200000"),
                                                ("1073745920", "0x40200000")])
def test_memory_start_not_2_mib_aligned_is_a_warning_naming_the_aligned_value(
        seed_inputs: Path, start: str, aligned: str) -> None:
    result = build(seed_inputs, f"MEMORY_START={start}\n")
    assert warnings_of(result) == [
        f"ibtasks: warning: config:6: MEMORY_START: {int(start, 0):#x} is not 2 MiB aligned, and "
        "every load address follows it (Xen and arm64 kernels need 2 MiB-aligned placement; "
        f"booti moves only the kernel it starts); use {aligned}"]


def test_aligned_memory_start_gives_no_warning(seed_inputs: Path) -> None:
    assert warnings_of(build(seed_inputs, "MEMORY_START=0x40200000\n")) == []


# ---- messages ---------------------------------------------------------------------------------

def test_byte_order_mark_at_the_start_is_a_warning_and_the_config_is_read(
        seed_inputs: Path) -> None:
    (seed_inputs / "config").write_bytes(b"\xef\xbb\xbf" + BASE.encode())
    result = run_ibtasks(*SCRIPT_GEN, cwd=seed_inputs)
    assert warnings_of(result) == [
        "ibtasks: warning: config:1: the file starts with a UTF-8 byte order mark (BOM), which "
        "bash would take as part of the first name; ignored here, but save the file without it"]
    assert loaded(seed_inputs)[0] == "xen"


def test_path_from_an_unset_variable_names_the_variable_above_the_error(
        seed_inputs: Path) -> None:
    result = build(seed_inputs, "XEN=$XENDIR/xen\n")
    assert (result.returncode, result.stderr) == (1, (
        "ibtasks: warning: config:6: XEN: $XENDIR was unset or empty (neither set earlier in "
        "the file nor in the environment), so the value is '/xen'\n"
        "ibtasks: error: config:6: XEN: /xen does not exist (looked in .)\n"))


def test_default_expansion_of_an_unset_variable_gives_no_warning(seed_inputs: Path) -> None:
    assert warnings_of(build(seed_inputs, "XEN=${XENDIR:-.}/xen\n")) == []


def test_per_domu_key_at_the_top_of_a_yaml_config_points_to_the_domus_list(
        seed_inputs: Path) -> None:
    text = ("MEMORY_START: 0x40000000\nMEMORY_END: 0x50000000\nDEVICE_TREE: mpsoc.dtb\n"
            "XEN: xen\nDOM0_KERNEL: Image-dom0\nDOMU_KERNEL: [zynqmp-dom1/Image-domU]\n")
    result = build(seed_inputs, "", name="config.yaml", text=text)
    assert warnings_of(result) == [
        "ibtasks: warning: config.yaml:6: DOMU_KERNEL: a per-domU key belongs in a domU of the "
        "DOMUS list (DOMUS: [{KERNEL: ...}]), ignored here"]


def test_device_tree_without_chosen_is_refused_naming_the_node(seed_inputs: Path) -> None:
    source = ('/dts-v1/;\n/ { #address-cells = <2>; #size-cells = <2>; memory@40000000 { '
              'device_type = "memory"; reg = <0 0x40000000 0 0x10000000>; }; };\n')
    subprocess.run(["dtc", "-q", "-I", "dts", "-O", "dtb", "-o", "bare.dtb", "-"],
                   input=source, text=True, cwd=seed_inputs, check=True)
    result = build(seed_inputs, "DEVICE_TREE=bare.dtb\n")
    assert (result.returncode, result.stderr) == (1, (
        "ibtasks: error: config:6: DEVICE_TREE: bare.dtb has no /chosen node, which the "
        "script's `fdt set /chosen ...` commands edit and U-Boot does not create; add "
        "`chosen { };` to the board's .dts and compile it again\n"))
    assert not (seed_inputs / "boot.scr").exists()
