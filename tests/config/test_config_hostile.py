"""Hostile config files end at once, in one line: no hang, no traceback, no MemoryError.

Each case runs the real CLI in a child whose address space is capped at 1 GiB and whose run is
capped at 60 s, so a blow-up shows as a MemoryError traceback or a timeout, not as a slow pass.
Inputs are made here: FIFOs, sparse files, generated bash and YAML text.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

from tests.conftest import run_ibtasks

MEMORY_CAP = 1024 * 1024 * 1024

GOOD = """\
MEMORY_START=0x40000000
MEMORY_END=0x50000000
DEVICE_TREE=mpsoc.dtb
XEN=xen
DOM0_KERNEL=Image-dom0
"""


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def run_capped(cwd: Path, *args: str, env: dict[str, str] | None = None
               ) -> subprocess.CompletedProcess[str]:
    """`ibtasks uboot-script-gen -d . -t tftp ARGS` under the memory and time caps."""
    full_env = {k: v for k, v in os.environ.items() if k != "LOAD_CMD"} | (env or {})
    return subprocess.run([sys.executable, "-m", "ibtasks", "uboot-script-gen", "-d", ".",
                           "-t", "tftp", *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=60, preexec_fn=_cap_memory)


def refused(cwd: Path, config: str | Path, *args: str,
            env: dict[str, str] | None = None) -> str:
    """Run on `config`; it must fail with exactly one stderr line; return that line."""
    result = run_capped(cwd, "-c", str(config), *args, env=env)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stdout == ""
    assert not (cwd / "boot.source").exists()
    return result.stderr


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, str):
        text = text.encode()
    path.write_bytes(text)
    return path


# ---- what the config file is --------------------------------------------------------------------

def test_fifo_as_config_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "config")
    assert refused(tmp_path, "config") == (
        "ibtasks: error: config file config is a FIFO (named pipe), not a regular file\n")


def test_yaml_config_that_is_a_fifo_is_refused_too(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "config.yaml")
    assert refused(tmp_path, "config.yaml") == (
        "ibtasks: error: config file config.yaml is a FIFO (named pipe), not a regular file\n")


def test_dev_zero_as_config_is_refused_as_a_character_device(tmp_path: Path) -> None:
    assert refused(tmp_path, "/dev/zero") == (
        "ibtasks: error: config file /dev/zero is a character device, not a regular file\n")


def test_directory_as_config_is_refused(tmp_path: Path) -> None:
    (tmp_path / "configs").mkdir()
    assert refused(tmp_path, "configs") == (
        "ibtasks: error: config file configs is a directory, not a regular file\n")


def test_config_over_one_mib_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    with open(tmp_path / "config", "wb") as f:
        f.truncate(8 * 1024 * 1024 * 1024)  # sparse: 8 GiB of NUL bytes
    assert refused(tmp_path, "config") == (
        "ibtasks: error: config file config is larger than 1 MiB, the most a config may be: is "
        "it the right file?\n")


def test_config_one_byte_over_one_mib_is_refused(tmp_path: Path) -> None:
    padding = "#" * (1024 * 1024 - len(GOOD)) + "\n"
    write(tmp_path / "config", GOOD + padding)
    assert (tmp_path / "config").stat().st_size == 1024 * 1024 + 1
    assert refused(tmp_path, "config").endswith("is larger than 1 MiB, the most a config may be: "
                                                "is it the right file?\n")


def test_config_of_exactly_one_mib_is_read(seed_inputs: Path) -> None:
    padding = "#" * (1024 * 1024 - len(GOOD) - 1) + "\n"
    write(seed_inputs / "config", GOOD + padding)
    assert (seed_inputs / "config").stat().st_size == 1024 * 1024
    result = run_capped(seed_inputs, "-c", "config")
    assert result.returncode == 0, result.stderr
    assert "booti 0x40400000 - " in (seed_inputs / "boot.source").read_text()


# ---- bash: expansion size and nesting -----------------------------------------------------------

def test_doubling_a_variable_34_times_stops_at_the_line_that_passes_one_mib(tmp_path: Path) -> None:
    # After line L the expansions have produced 2^L - 2 characters: line 21 passes 2^20.
    write(tmp_path / "config", "A=x\n" + "A=$A$A\n" * 34)
    assert refused(tmp_path, "config") == (
        "ibtasks: error: config:21: $A: expansions in this config add up to more than 1 MiB of "
        "text; write the values themselves\n")


def test_appending_a_variable_to_itself_stops_at_the_bound(tmp_path: Path) -> None:
    # `A+=$A` copies A twice (the old value and the expansion), as A=$A$A: line 21 again.
    write(tmp_path / "config", "A=x\n" + "A+=$A\n" * 40)
    assert refused(tmp_path, "config").startswith("ibtasks: error: config:21: $A: expansions in "
                                                  "this config add up to more than 1 MiB")


def test_array_of_many_copies_of_a_variable_stops_at_the_bound(tmp_path: Path) -> None:
    big = "x" * 4096
    write(tmp_path / "config", f"B={big}\nC=(\n" + "$B $B\n" * 200 + ")\n")
    # 4096 * 2 per line: 128 element lines make exactly 1 MiB, the 129th (line 131) passes it.
    assert refused(tmp_path, "config").startswith("ibtasks: error: config:131: $B: expansions")


def test_large_environment_variable_expanded_many_times_stops_at_the_bound(
        tmp_path: Path) -> None:
    # 16 expansions of 64 KiB make exactly 1 MiB; the 17th passes it.
    write(tmp_path / "config", 'XEN_CMD="$BIG"\n' * 40)
    stderr = refused(tmp_path, "config", env={"BIG": "y" * 65536})
    assert stderr.startswith("ibtasks: error: config:17: $BIG: expansions")


def test_a_thousand_nested_default_expansions_stop_at_32_levels(tmp_path: Path) -> None:
    write(tmp_path / "config", "\n\nA=" + "${A:-" * 1000 + "x" + "}" * 1000 + "\n")
    assert refused(tmp_path, "config") == (
        "ibtasks: error: config:3: ${...} nested more than 32 deep: write the value itself\n")


def test_nested_defaults_inside_double_quotes_stop_at_32_levels(tmp_path: Path) -> None:
    write(tmp_path / "config", 'A="' + '${A:-"' * 500 + "x" + '"}' * 500 + '"\n')
    assert refused(tmp_path, "config") == (
        "ibtasks: error: config:1: ${...} nested more than 32 deep: write the value itself\n")


def test_32_nested_defaults_are_read_as_bash_reads_them(seed_inputs: Path) -> None:
    value = "${UNSET:-" * 31 + "${XEN_CMD:-console=dtuart quiet}" + "}" * 31
    text = GOOD + f'XEN_CMD="{value}"\n'
    write(seed_inputs / "config", text)
    bash = subprocess.run(["env", "-i", "bash", "-c", 'source ./config; printf %s "$XEN_CMD"'],
                          cwd=seed_inputs, capture_output=True, text=True, check=True).stdout
    assert bash == "console=dtuart quiet"
    result = run_capped(seed_inputs, "-c", "config")
    assert result.returncode == 0, result.stderr
    assert f'xen,xen-bootargs "{bash}"' in (seed_inputs / "boot.source").read_text()


# ---- YAML: aliases, nesting, keys ---------------------------------------------------------------

def laughs(levels: int, last: str) -> str:
    """The "billion laughs": each level a list of nine aliases of the one before."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n" + last + "\n"


def test_yaml_alias_bomb_is_refused_at_the_line_where_it_passes_the_bound(
        tmp_path: Path) -> None:
    # Level 4 stands for 9 * (1 + 9 * (1 + 9 * 10)) = 7380 nodes; level 5 passes 10,000.
    write(tmp_path / "config.yaml", laughs(9, f"DT_OVERLAY: *l{8}"))
    assert refused(tmp_path, "config.yaml") == (
        "ibtasks: error: config.yaml:5: aliases stand for more than 10000 nodes in all; write the "
        "values out\n")


def test_yaml_alias_bomb_used_as_a_key_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "config.yaml", laughs(2, "? *l1\n: 1"))
    assert refused(tmp_path, "config.yaml") == (
        "ibtasks: error: config.yaml:3: a key must be a plain name\n")


def test_yaml_key_that_is_a_list_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "config.yaml", "XEN: xen\n[a, b]: 1\n")
    assert refused(tmp_path, "config.yaml") == (
        "ibtasks: error: config.yaml:2: a key must be a plain name\n")


def test_yaml_alias_inside_its_own_anchor_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "config.yaml", "XEN: xen\nDT_OVERLAY: &a [a.dtbo, *a]\n")
    assert refused(tmp_path, "config.yaml") == (
        "ibtasks: error: config.yaml:2: alias *a refers to itself\n")


def test_yaml_nested_3000_lists_deep_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "config.yaml", "XEN: xen\nDT_OVERLAY: " + "[" * 3000 + "]" * 3000 + "\n")
    assert refused(tmp_path, "config.yaml") == (
        "ibtasks: error: config.yaml:2: nested more than 20 levels deep\n")


def test_yaml_nested_mappings_are_refused_past_20_levels(tmp_path: Path) -> None:
    text = "".join(f"{'  ' * i}k{i}:\n" for i in range(25)) + "  " * 25 + "v: 1\n"
    write(tmp_path / "config.yaml", text)
    assert refused(tmp_path, "config.yaml") == (
        "ibtasks: error: config.yaml:20: nested more than 20 levels deep\n")


def test_yaml_anchors_that_share_values_still_work(seed_inputs: Path) -> None:
    text = ("MEMORY_START: 0x40000000\nMEMORY_END: 0x50000000\nDEVICE_TREE: mpsoc.dtb\n"
            "XEN: xen\nDOM0_KERNEL: Image-dom0\nDOMUS:\n"
            "  - &domu {KERNEL: zynqmp-dom1/Image-domU, CMD: &cmd console=ttyAMA0 quiet}\n"
            "  - *domu\n")
    write(seed_inputs / "config.yaml", text)
    result = run_capped(seed_inputs, "-c", "config.yaml")
    assert result.returncode == 0, result.stderr
    source = (seed_inputs / "boot.source").read_text()
    assert source.count('bootargs "console=ttyAMA0 quiet"') == 2


def test_yaml_key_given_twice_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "config.yaml", "XEN: xen\nDEVICE_TREE: a.dtb\nXEN: xen-4.19\n")
    assert refused(tmp_path, "config.yaml") == (
        "ibtasks: error: config.yaml:3: XEN: given twice (first on line 1)\n")


def test_yaml_key_given_twice_in_another_case_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "config.yaml", "XEN: xen\nxen: xen-4.19\n")
    assert refused(tmp_path, "config.yaml") == (
        "ibtasks: error: config.yaml:2: xen: the same key as on line 1; give each key once\n")


def test_yaml_domu_key_given_with_and_without_its_prefix_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "config.yaml",
          "XEN: xen\nDOMUS:\n  - KERNEL: a\n    MEM: 256\n    DOMU_KERNEL: b\n")
    assert refused(tmp_path, "config.yaml") == (
        "ibtasks: error: config.yaml:5: DOMU_KERNEL: the same key as on line 3; give each key "
        "once\n")


# ---- bytes that are not UTF-8 -------------------------------------------------------------------

def test_latin1_comment_is_accepted_as_bash_accepts_it(seed_inputs: Path) -> None:
    text = b"# Konfiguration f\xfcr das Entwicklungsbrett\n" + GOOD.encode()
    write(seed_inputs / "config", text)
    bash = subprocess.run(["env", "-i", "bash", "-c", 'source ./config; printf %s "$XEN"'],
                          cwd=seed_inputs, capture_output=True, check=True).stdout
    assert bash == b"xen"
    result = run_capped(seed_inputs, "-c", "config")
    assert (result.returncode, result.stderr) == (0, "")


def test_latin1_in_a_used_value_names_its_line_and_key(tmp_path: Path) -> None:
    write(tmp_path / "config", GOOD.encode() + b'DOM0_CMD="console=hvc0 caf\xe9"\n')
    assert refused(tmp_path, "config") == (
        "ibtasks: error: config:6: DOM0_CMD: the value is not UTF-8 text (byte 0xE9); save the "
        "config as UTF-8\n")


def test_latin1_helper_expanded_into_a_key_names_the_keys_line(tmp_path: Path) -> None:
    write(tmp_path / "config", b"DIR=kern\xe9l\n" + GOOD.encode() + b"DOM0_RAMDISK=$DIR/rd\n")
    assert refused(tmp_path, "config") == (
        "ibtasks: error: config:7: DOM0_RAMDISK: the value is not UTF-8 text (byte 0xE9); save "
        "the config as UTF-8\n")


def test_non_utf8_environment_value_expanded_into_a_key_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / "config", GOOD + 'XEN_CMD="console=dtuart $EXTRA"\n')
    # os.environ keeps undecodable bytes as surrogates; subprocess passes the bytes on.
    assert refused(tmp_path, "config", env={"EXTRA": "caf\udce9"}) == (
        "ibtasks: error: config:6: XEN_CMD: the value is not UTF-8 text (byte 0xE9); save the "
        "config as UTF-8\n")


def test_yaml_with_latin1_bytes_names_the_line(tmp_path: Path) -> None:
    write(tmp_path / "config.yaml", b"XEN: xen\n# f\xfcr\n")
    assert refused(tmp_path, "config.yaml") == (
        "ibtasks: error: config.yaml:2: not UTF-8 text (byte 0xFC); save the YAML config as "
        "UTF-8\n")


def test_yaml_with_a_control_character_names_the_line(tmp_path: Path) -> None:
    write(tmp_path / "config.yaml", b"XEN: xen\nDOM0_CMD: a\x01b\n")
    assert refused(tmp_path, "config.yaml") == (
        "ibtasks: error: config.yaml:2: not valid YAML: character #x0001 is not allowed\n")


def test_hostile_inputs_also_fail_cleanly_for_disk_image(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "config")
    result = run_ibtasks("disk-image", "-c", "config", "-d", ".", "-t", "sd", "-o", "disk.img",
                         cwd=tmp_path)
    assert (result.returncode, result.stderr) == (
        1, "ibtasks: error: config file config is a FIFO (named pipe), not a regular file\n")
    assert not (tmp_path / "disk.img").exists()
