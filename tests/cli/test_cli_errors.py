"""Every bad command line and config value, through the real CLI: one exact stderr line, a
non-zero exit, no traceback, and no boot.source, boot.scr or boot.dtb left behind.

Inputs are the seed goldens' synthetic files (tests/conftest.py); each expected line was read
off a run of `python -m ibtasks` and checked against the rule it reports.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run_ibtasks

OUTPUTS = ("boot.source", "boot.scr", "boot.dtb")

GOOD = """\
MEMORY_START=0x40000000
MEMORY_END=0x50000000
DEVICE_TREE=mpsoc.dtb
XEN=xen
DOM0_KERNEL=Image-dom0
"""


def with_line(config: str, old: str, new: str) -> str:
    """`config` with the line starting `old=` replaced by `new` (or dropped if `new` is empty)."""
    lines = [new if line.startswith(f"{old}=") else line for line in config.splitlines()]
    return "\n".join(line for line in lines if line) + "\n"


def fail(inputs: Path, config: str, *args: str, name: str = "config",
         flags: tuple[str, ...] | None = None) -> str:
    """Run the CLI on `config`; check it fails cleanly and leaves no output; return stderr."""
    (inputs / name).write_text(config)
    argv = flags if flags is not None else ("-c", name, "-d", ".", "-t", "tftp", *args)
    result = run_ibtasks("uboot-script-gen", *argv, cwd=inputs)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stdout == ""
    left = [name for name in OUTPUTS if (inputs / name).exists()]
    assert left == []
    return result.stderr


def succeed(inputs: Path, config: str) -> None:
    (inputs / "config").write_text(config)
    result = run_ibtasks("uboot-script-gen", "-c", "config", "-d", ".", "-t", "tftp", cwd=inputs)
    assert result.returncode == 0, result.stderr
    assert all((inputs / name).is_file() for name in OUTPUTS)


# ---- the command line ---------------------------------------------------------------------------

def test_missing_config_flag_is_rejected(seed_inputs: Path) -> None:
    assert fail(seed_inputs, GOOD, flags=("-d", ".", "-t", "tftp")) == (
        "ibtasks: error: the following arguments are required: -c "
        "(see 'ibtasks uboot-script-gen -h')\n")


def test_missing_directory_flag_is_rejected(seed_inputs: Path) -> None:
    assert fail(seed_inputs, GOOD, flags=("-c", "config", "-t", "tftp")) == (
        "ibtasks: error: the following arguments are required: -d "
        "(see 'ibtasks uboot-script-gen -h')\n")


def test_missing_load_command_flag_without_load_cmd_key_is_rejected(seed_inputs: Path) -> None:
    assert fail(seed_inputs, GOOD, flags=("-c", "config", "-d", ".")) == (
        "ibtasks: error: no load command: pass -t (tftp, sd, scsi, usb, virtio or a U-Boot "
        "command), set LOAD_CMD in the config or export LOAD_CMD\n")


def test_unknown_flag_is_rejected(seed_inputs: Path) -> None:
    assert fail(seed_inputs, GOOD, "-x") == (
        "ibtasks: error: uboot-script-gen: unrecognized arguments: -x "
        "(see 'ibtasks uboot-script-gen -h')\n")


def test_missing_config_file_is_rejected(seed_inputs: Path) -> None:
    assert fail(seed_inputs, GOOD, flags=("-c", "nothere", "-d", ".", "-t", "tftp")) == (
        "ibtasks: error: config file nothere does not exist\n")


def test_root_directory_that_is_not_a_directory_is_rejected(seed_inputs: Path) -> None:
    assert fail(seed_inputs, GOOD, flags=("-c", "config", "-d", "xen", "-t", "tftp")) == (
        "ibtasks: error: -d xen: not a directory\n")


# ---- syntax -------------------------------------------------------------------------------------

def test_command_substitution_is_rejected_with_its_line(seed_inputs: Path) -> None:
    config = with_line(GOOD, "XEN", "XEN=$(echo xen)")
    assert fail(seed_inputs, config) == (
        "ibtasks: error: config:4: command substitution $(...) is not supported: config files "
        "are read, not executed; write the value itself\n")


def test_if_statement_is_rejected_with_its_line(seed_inputs: Path) -> None:
    config = GOOD + "if true; then\nDOM0_CMD=console=hvc0\nfi\n"
    assert fail(seed_inputs, config) == (
        "ibtasks: error: config:6: `if` is not supported: config files are read, not executed; "
        "write plain assignments\n")


def test_yaml_config_with_a_syntax_error_names_its_line(seed_inputs: Path) -> None:
    config = "MEMORY_START: 0x40000000\nXEN: xen\n  bad: [\n"
    assert fail(seed_inputs, config, name="config.yaml",
                flags=("-c", "config.yaml", "-d", ".", "-t", "tftp")) == (
        "ibtasks: error: config.yaml:3: not valid YAML: mapping values are not allowed here\n")


def test_unsupported_upstream_key_is_rejected(seed_inputs: Path) -> None:
    assert fail(seed_inputs, GOOD + "LOPPER_PATH=/opt/lopper\n") == (
        "ibtasks: error: config:6: LOPPER_PATH: this upstream ImageBuilder key is not "
        "supported by ibtasks; remove it or use ImageBuilder itself\n")


def test_double_quote_in_a_command_line_is_rejected(seed_inputs: Path) -> None:
    config = GOOD + "DOM0_CMD='console=hvc0 quiet=\"yes\"'\n"
    assert fail(seed_inputs, config) == (
        "ibtasks: error: config:6: DOM0_CMD: a double quote cannot appear in a command line\n")


def test_double_quote_in_a_domu_command_line_is_rejected(seed_inputs: Path) -> None:
    config = GOOD + ("NUM_DOMUS=1\nDOMU_KERNEL[0]=zynqmp-dom1/Image-domU\n"
                     "DOMU_CMD[0]='console=ttyAMA0 \"x\"'\n")
    assert fail(seed_inputs, config) == (
        "ibtasks: error: config:8: DOMU_CMD[0]: a double quote cannot appear in a command "
        "line\n")


# ---- required keys ------------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["XEN", "MEMORY_START"])
def test_missing_required_key_is_named(seed_inputs: Path, key: str) -> None:
    assert fail(seed_inputs, with_line(GOOD, key, "")) == (
        f"ibtasks: error: config: {key} is required but not set\n")


# ---- binaries -----------------------------------------------------------------------------------

def test_missing_binary_names_key_line_and_path(seed_inputs: Path) -> None:
    assert fail(seed_inputs, with_line(GOOD, "XEN", "XEN=xen-4.15")) == (
        "ibtasks: error: config:4: XEN: xen-4.15 does not exist (looked in .)\n")


def test_directory_given_as_a_binary_is_rejected(seed_inputs: Path) -> None:
    assert fail(seed_inputs, with_line(GOOD, "XEN", "XEN=zynqmp-dom1")) == (
        "ibtasks: error: config:4: XEN: zynqmp-dom1 is not a regular file (looked in .)\n")


def _copy_package(name: str, into: Path) -> None:
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.submodule_search_locations
    shutil.copytree(next(iter(spec.submodule_search_locations)), into / name,
                    ignore=shutil.ignore_patterns("__pycache__"))


@pytest.fixture
def unprivileged_tree(seed_inputs_master: Path) -> Iterator[Path]:
    """A world-readable copy of the inputs and of our dependencies, for the user `ibtest`.

    As root every file is readable, so the unreadable-binary check is only testable as another
    user. That user cannot run root's Python (its home is 0700); /usr/bin/python3 (3.11) can,
    with ibtasks, doit, fdt and yaml copied beside the inputs (the checkout may be unreadable
    too). CI creates the user (`useradd -m ibtest`).
    """
    pwd.getpwnam("ibtest")  # KeyError here means the machine lacks the test user
    top = Path(tempfile.mkdtemp(prefix="ibtasks-unpriv-"))
    try:
        top.chmod(0o755)
        for name in ("ibtasks", "doit", "fdt", "yaml"):
            _copy_package(name, top / "lib")
        shutil.copytree(seed_inputs_master, top / "inputs")
        subprocess.run(["chmod", "-R", "a+rX", str(top)], check=True)
        (top / "inputs").chmod(0o777)
        yield top
    finally:
        shutil.rmtree(top)


def test_unreadable_binary_is_rejected_for_an_unprivileged_user(unprivileged_tree: Path) -> None:
    inputs = unprivileged_tree / "inputs"
    (inputs / "config").write_text(GOOD)
    (inputs / "xen").chmod(0o000)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(unprivileged_tree / "lib"),
           "PYTHONDONTWRITEBYTECODE": "1", "HOME": str(inputs)}
    argv = ["setpriv", "--reuid=ibtest", "--regid=ibtest", "--clear-groups",
            "/usr/bin/python3", "-m", "ibtasks", "uboot-script-gen", "-c", "config", "-d", ".",
            "-t", "tftp"]
    result = subprocess.run(argv, cwd=inputs, env=env, capture_output=True, text=True)
    assert (result.returncode, result.stderr) == (
        1, "ibtasks: error: config:4: XEN: xen is not readable\n")
    assert [n for n in OUTPUTS if (inputs / n).exists()] == []
    # The same user builds fine once the file is readable: the failure was the permission.
    (inputs / "xen").chmod(0o644)
    result = subprocess.run(argv, cwd=inputs, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert all((inputs / n).is_file() for n in OUTPUTS)


def test_text_file_as_xen_is_rejected(seed_inputs: Path) -> None:
    assert fail(seed_inputs, with_line(GOOD, "XEN", "XEN=extra-cmds.txt")) == (
        "ibtasks: error: config:4: XEN: extra-cmds.txt should be an executable (arm64 Image, "
        "zImage or ELF), but it is text\n")


def test_dtb_as_kernel_is_rejected(seed_inputs: Path) -> None:
    config = with_line(GOOD, "DOM0_KERNEL", "DOM0_KERNEL=mpsoc.dtb")
    assert fail(seed_inputs, config) == (
        "ibtasks: error: config:5: DOM0_KERNEL: mpsoc.dtb should be an executable (arm64 Image, "
        "zImage or ELF), but it is DTB\n")


def test_kernel_as_device_tree_is_rejected(seed_inputs: Path) -> None:
    config = with_line(GOOD, "DEVICE_TREE", "DEVICE_TREE=Image-dom0")
    assert fail(seed_inputs, config) == (
        "ibtasks: error: config:3: DEVICE_TREE: Image-dom0 should be a flattened device tree "
        "(DTB), but it is arm64 Image\n")


def test_gzipped_tarball_as_ramdisk_is_rejected(seed_inputs: Path) -> None:
    assert fail(seed_inputs, GOOD + "DOM0_RAMDISK=rootfs-domU.tar.gz\n") == (
        "ibtasks: error: config:6: DOM0_RAMDISK: rootfs-domU.tar.gz should be a cpio archive, "
        "but it is gzip-compressed data\n")


def test_uimage_kernel_is_rejected_with_how_to_unwrap_it(seed_inputs: Path) -> None:
    subprocess.run(["mkimage", "-A", "arm64", "-T", "kernel", "-C", "none", "-a", "0", "-e", "0",
                    "-d", "Image-dom0", "uImage"], cwd=seed_inputs, check=True,
                   capture_output=True)
    config = with_line(GOOD, "DOM0_KERNEL", "DOM0_KERNEL=uImage")
    assert fail(seed_inputs, config) == (
        "ibtasks: error: config:5: DOM0_KERNEL: uImage is a U-Boot legacy image (uImage); give "
        "the raw file it wraps (dumpimage -p 0 -o FILE extracts it)\n")


# ---- numbers and domUs --------------------------------------------------------------------------

def test_num_domus_that_is_not_a_number_is_rejected(seed_inputs: Path) -> None:
    assert fail(seed_inputs, GOOD + "NUM_DOMUS=two\n") == (
        "ibtasks: error: config:6: NUM_DOMUS: expected a whole number, got 'two'\n")


DOMU = "NUM_DOMUS=1\nDOMU_KERNEL[0]=zynqmp-dom1/Image-domU\n"


def test_domu_mem_with_a_unit_is_rejected(seed_inputs: Path) -> None:
    assert fail(seed_inputs, GOOD + DOMU + "DOMU_MEM[0]=512M\n") == (
        "ibtasks: error: config:8: DOMU_MEM[0]: expected a whole number of MiB, got '512M'\n")


def test_domu_vcpus_that_is_not_a_number_is_rejected(seed_inputs: Path) -> None:
    assert fail(seed_inputs, GOOD + DOMU + "DOMU_VCPUS[0]=512M\n") == (
        "ibtasks: error: config:8: DOMU_VCPUS[0]: expected a whole number, got '512M'\n")


def test_bootable_domu_without_kernel_is_rejected(seed_inputs: Path) -> None:
    assert fail(seed_inputs, GOOD + "NUM_DOMUS=2\n" + "DOMU_KERNEL[0]=zynqmp-dom1/Image-domU\n"
                "DOMU_RAMDISK[1]=zynqmp-dom2/domU-ramdisk.cpio\n") == (
        "ibtasks: error: config:6: DOMU_KERNEL[1] is required for a domU that Xen boots "
        "(NUM_DOMUS is 2)\n")


# ---- memory -------------------------------------------------------------------------------------

def test_memory_end_equal_to_memory_start_is_rejected(seed_inputs: Path) -> None:
    config = with_line(GOOD, "MEMORY_END", "MEMORY_END=0x40000000")
    assert fail(seed_inputs, config) == (
        "ibtasks: error: config:2: MEMORY_END (0x40000000) must be above MEMORY_START "
        "(0x40000000)\n")


# By hand: slot 0x40200000; xen (3,000,000 B) at 0x40400000 ends 0x406DC6C0 -> 0x40800000;
# dom0 (5,000,000 B) at 0x40800000 ends 0x40CC4B40 -> 0x40E00000; mpsoc.dtb (458 B) at
# 0x40E00000 -> 0x41000000; the seed wants one more 2 MiB slot: MEMORY_END >= 0x41200000.
NOT_ENOUGH = (
    "ibtasks: error: MEMORY_END: not enough memory to load all binaries: they end at 0x41000000, "
    "which needs MEMORY_END >= 0x41200000; MEMORY_END is 0x411fffff (0x1 (1) bytes short)\n")


def test_not_enough_memory_is_rejected(seed_inputs: Path) -> None:
    config = with_line(GOOD, "MEMORY_END", "MEMORY_END=0x411FFFFF")
    assert fail(seed_inputs, config) == NOT_ENOUGH


def test_failed_build_removes_outputs_of_an_earlier_successful_build(seed_inputs: Path) -> None:
    succeed(seed_inputs, GOOD)
    config = with_line(GOOD, "MEMORY_END", "MEMORY_END=0x411FFFFF")
    assert fail(seed_inputs, config) == NOT_ENOUGH
    # ...and the next good build makes them again rather than trusting doit's record.
    succeed(seed_inputs, GOOD)


def test_wrong_file_type_after_a_successful_build_removes_its_outputs(seed_inputs: Path) -> None:
    succeed(seed_inputs, GOOD)
    shutil.copy(seed_inputs / "extra-cmds.txt", seed_inputs / "xen")
    assert fail(seed_inputs, GOOD) == (
        "ibtasks: error: config:4: XEN: xen should be an executable (arm64 Image, zImage or "
        "ELF), but it is text\n")


def test_dom0_rootfs_with_tftp_cannot_deduce_root(seed_inputs: Path) -> None:
    assert fail(seed_inputs, GOOD + "DOM0_ROOTFS=rootfs-dom0.cpio.gz\n") == (
        "ibtasks: error: DOM0_ROOTFS: cannot deduce dom0's root= from load command 'tftpb' "
        "(only mmc, scsi and virtio devices like 'load mmc 0:1'); add root= to DOM0_CMD\n")


# ---- outputs ------------------------------------------------------------------------------------

def test_output_directory_under_a_regular_file_is_rejected(seed_inputs: Path) -> None:
    assert fail(seed_inputs, GOOD, "--output-dir", "xen/out") == (
        "ibtasks: error: cannot create output directory xen/out: Not a directory\n")
    assert not (seed_inputs / ".ibtasks").exists()


def test_error_output_has_no_traceback_under_python_optimisation(seed_inputs: Path) -> None:
    """Validation must not rely on `assert`, which -O removes."""
    (seed_inputs / "config").write_text(GOOD + "NUM_DOMUS=two\n")
    env = {**os.environ, "PYTHONOPTIMIZE": "1"}
    result = subprocess.run([sys.executable, "-m", "ibtasks", "uboot-script-gen", "-c", "config",
                             "-d", ".", "-t", "tftp"], cwd=seed_inputs, env=env,
                            capture_output=True, text=True)
    assert (result.returncode, result.stderr) == (
        1, "ibtasks: error: config:6: NUM_DOMUS: expected a whole number, got 'two'\n")


def test_a_config_that_fails_validation_removes_the_previous_builds_outputs(
        seed_inputs: Path) -> None:
    succeed(seed_inputs, GOOD)
    stderr = fail(seed_inputs, with_line(GOOD, "XEN", "XEN=no-such-xen"))
    assert stderr == ("ibtasks: error: config:4: XEN: no-such-xen does not exist "
                      f"(looked in {Path('.')})\n")
