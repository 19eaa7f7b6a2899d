"""Nothing in a config can inject commands into boot.source: names and values are quoted for
U-Boot's hush or refused with one line naming the key, and control characters never reach the
script or an error line raw.

The rendered lines are compared exactly; the last test runs the script in Debian's U-Boot under
QEMU (old hush, the stricter parser) and reads back what U-Boot made of each quoted argument.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from ibtasks.errors import printable
from ibtasks.formats.hush import fdt_name, quote_string, quote_word
from ibtasks.qemu.runner import BootSpec, Machine, boot, describe_failure, tftp_args, tftp_commands
from tests.conftest import run_ibtasks

BASE = """\
MEMORY_START=0x40000000
MEMORY_END=0x80000000
DEVICE_TREE=mpsoc.dtb
DOM0_KERNEL=Image-dom0
"""


def build(inputs: Path, config: str, *args: str) -> subprocess.CompletedProcess[str]:
    (inputs / "config").write_text(config)
    return run_ibtasks("uboot-script-gen", "-c", "config", "-d", ".", "-t", "tftp", *args,
                       cwd=inputs)


def script(inputs: Path, config: str, *args: str) -> list[str]:
    result = build(inputs, config, *args)
    assert result.returncode == 0, result.stderr
    return (inputs / "boot.source").read_text().splitlines()


def refused(inputs: Path, config: str, *args: str) -> str:
    """The one stderr line of a refused config; nothing is left behind."""
    result = build(inputs, config, *args)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert not (inputs / "boot.source").exists() and not (inputs / "boot.scr").exists()
    return result.stderr


# ---- file names in load lines ------------------------------------------------------------------

def test_file_name_with_a_newline_is_refused_naming_the_key(seed_inputs: Path) -> None:
    assert refused(seed_inputs, BASE + "XEN=$'xen\\nreset'\n") == (
        "ibtasks: error: config:5: XEN: has a control character ('\\n'); "
        "write the value on one line\n")


def test_file_name_with_spaces_and_shell_characters_is_one_single_quoted_word(
        seed_inputs: Path) -> None:
    shutil.copy(seed_inputs / "xen", seed_inputs / "my xen;reset #1 $v&&x")
    lines = script(seed_inputs, BASE + "XEN='my xen;reset #1 $v&&x'\n")
    assert lines[0] == "tftpb 0x40400000 'my xen;reset #1 $v&&x'"
    assert lines[1] == "tftpb 0x40800000 Image-dom0"


@pytest.mark.parametrize(("name", "problem"), [
    ("it's", "has a quote ('), which U-Boot's shell or an xl config cannot carry"),
    ('say"x"', "has a quote (\"), which U-Boot's shell or an xl config cannot carry"),
    ("back\\slash", "has a backslash, which U-Boot's two shells read differently"),
])
def test_file_name_no_quoting_can_carry_is_refused(seed_inputs: Path, name: str,
                                                   problem: str) -> None:
    shutil.copy(seed_inputs / "xen", seed_inputs / name)
    escaped = name.replace("\\", "\\\\").replace("'", "\\'")
    assert refused(seed_inputs, BASE + f"XEN=$'{escaped}'\n") == (
        f"ibtasks: error: config:5: XEN: the file name {name} {problem}\n")


def test_prepend_path_with_a_space_is_quoted_with_the_file_name(seed_inputs: Path) -> None:
    lines = script(seed_inputs, BASE + "XEN=xen\n", "-p", "boot files")
    assert lines[0] == "tftpb 0x40400000 'boot files/xen'"
    result = build(seed_inputs, BASE + "XEN=xen\n", "-p", "boot files")
    assert result.stdout.splitlines()[-1] == (
        "tftpb 0x40200000 'boot files/boot.scr'; source 0x40200000")


# ---- strings in fdt set ------------------------------------------------------------------------

def test_command_line_with_dollar_and_semicolon_is_single_quoted_and_lands_in_the_dtb(
        seed_inputs: Path) -> None:
    lines = script(seed_inputs, BASE + "XEN=xen\nDOM0_CMD='console=hvc0 a=${b} c;d #e'\n")
    assert ("fdt set /chosen xen,dom0-bootargs 'console=hvc0 a=${b} c;d #e root=/dev/ram0'"
            in lines)
    value = subprocess.run(["fdtget", "-t", "s", str(seed_inputs / "boot.dtb"), "/chosen",
                            "xen,dom0-bootargs"], check=True, capture_output=True, text=True)
    assert value.stdout == "console=hvc0 a=${b} c;d #e root=/dev/ram0\n"


def test_plain_command_lines_keep_the_seeds_double_quotes(seed_inputs: Path) -> None:
    lines = script(seed_inputs, BASE + "XEN=xen\nDOM0_CMD='console=hvc0 quiet'\n")
    assert 'fdt set /chosen xen,dom0-bootargs "console=hvc0 quiet root=/dev/ram0"' in lines


@pytest.mark.parametrize(("key", "value", "problem"), [
    ("DOM0_CMD", "$'console=hvc0\\nreset'",
     "has a control character ('\\n'); write the value on one line"),
    ("XEN_CMD", "$'console=dtuart\\x1b[2J'",
     "has a control character ('\\x1b'); write the value on one line"),
    ("DOM0_CMD", "'init=/bin/sh\\x'",
     "has a backslash, which U-Boot's two shells read differently"),
    ("XEN_CMD", "\"console=dtuart it's\"",
     "has a single quote ('), which U-Boot's shell cannot quote"),
    ("DOM0_CMD", "'<0x1> root=/dev/ram0'",
     "starts with <, which U-Boot's fdt set reads as cells, not a string"),
    ("XEN_CMD", "'[00 01]'", "starts with [, which U-Boot's fdt set reads as bytes, not a string"),
])
def test_command_line_no_quoting_can_carry_is_refused_naming_the_key(
        seed_inputs: Path, key: str, value: str, problem: str) -> None:
    assert refused(seed_inputs, BASE + f"XEN=xen\n{key}={value}\n") == (
        f"ibtasks: error: config:6: {key}: {problem}\n")


def test_domu_command_line_with_a_tab_is_refused_naming_its_index(seed_inputs: Path) -> None:
    config = (BASE + "XEN=xen\nNUM_DOMUS=1\nDOMU_KERNEL[0]=zynqmp-dom1/Image-domU\n"
              "DOMU_CMD[0]=$'console=ttyAMA0\\tquiet'\n")
    assert refused(seed_inputs, config) == (
        "ibtasks: error: config:8: DOMU_CMD[0]: has a control character ('\\t'); "
        "write the value on one line\n")


def test_quoting_rules_pick_the_form_each_shell_reads_back() -> None:
    assert quote_word("zynqmp-dom1/Image-domU.gz") == "zynqmp-dom1/Image-domU.gz"
    assert quote_word("a b") == "'a b'"
    assert quote_word("#x") == "'#x'"
    assert quote_string("console=hvc0") == '"console=hvc0"'
    assert quote_string("a=$b") == "'a=$b'"
    assert quote_string('say "hi"') == "'say \"hi\"'"
    for bad in ("a\nb", "a\\b", "it's"):
        with pytest.raises(ValueError):
            quote_string(bad)
    assert fdt_name("#address-cells") == "\\#address-cells"
    assert fdt_name("/axi/serial@ff010000") == "/axi/serial@ff010000"
    assert fdt_name("/odd node") == "'/odd node'"


def test_noboot_domu_kernel_named_in_an_xl_config_may_not_hold_a_double_quote(
        seed_inputs: Path) -> None:
    shutil.copy(seed_inputs / "xen", seed_inputs / 'a"b')
    config = BASE + "XEN=xen\nNUM_DOMUS=1\nDOMU_KERNEL[0]='a\"b'\nDOMU_NOBOOT[0]=y\n"
    assert refused(seed_inputs, config) == (
        "ibtasks: error: config:7: DOMU_KERNEL[0]: the file name a\"b has a quote (\"), which "
        "U-Boot's shell or an xl config cannot carry\n")


def test_string_value_of_a_domain_property_with_a_single_quote_is_refused(
        seed_inputs: Path) -> None:
    config = (BASE + "XEN=xen\nNUM_DOMUS=1\nDOMU_KERNEL[0]=zynqmp-dom1/Image-domU\n"
              "DOMU_SHARED_MEM[0]=\"it's 0x50000000 0x60000000 0x1000\"\n")
    assert refused(seed_inputs, config) == (
        "ibtasks: error: config:8: DOMU_SHARED_MEM[0]: has a single quote ('), which U-Boot's "
        "shell cannot quote\n")


# ---- error lines -------------------------------------------------------------------------------

def test_error_line_escapes_control_characters_of_the_users_input(tmp_path: Path) -> None:
    (tmp_path / "config").write_text(BASE)
    result = run_ibtasks("uboot-script-gen", "-c", "config", "-d", "no\x1b[31mdir\rhere",
                         "-t", "tftp", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == "ibtasks: error: -d no\\x1b[31mdir\\rhere: not a directory\n"


def test_printable_escapes_every_kind_of_control_character() -> None:
    assert printable("a\nb\tc\x00d\x1be\x7ff\x85g\u2028h é") == (
        "a\\nb\\tc\\x00d\\x1be\\x7ff\\x85g\\u2028h é")


# ---- a real U-Boot reads the script back -------------------------------------------------------

@pytest.mark.boot
def test_real_uboot_loads_quoted_names_and_sets_quoted_strings_unchanged(
        seed_inputs: Path) -> None:
    name = "xen image;echo INJECTED #$v"
    shutil.copy(seed_inputs / "xen", seed_inputs / name)
    # Markers are printed before the script ends; `sleep` keeps U-Boot from its prompt meanwhile.
    (seed_inputs / "extra.txt").write_text("echo SCRIPT-END\nsleep 20\n")
    config = (BASE + f"XEN='{name}'\nDOM0_CMD='console=hvc0 a=${{b}} c;d #e'\n"
              "BOOT_CMD=none\nDBG_FDT_PRINT_CHOSEN=y\nAPPEND_EXTRA_CMDS=extra.txt\n")
    build_result = build(seed_inputs, config)
    assert build_result.returncode == 0, build_result.stderr
    spec = BootSpec(
        commands=tftp_commands("boot.scr", 0x40200000),
        markers=(f"Filename '{name}'.", "Bytes transferred = 3000000",
                 'xen,dom0-bootargs = "console=hvc0 a=${b} c;d #e root=/dev/ram0"',
                 "SCRIPT-END"),
        absent_markers=("\nINJECTED",),
        log_path=seed_inputs / "console.log",
        media_args=tftp_args(seed_inputs),
        machine=Machine(memory_mb=2048),
        timeout_seconds=90.0,
    )
    result = boot(spec)
    print(result.summary())
    assert result.ok, describe_failure(result)
