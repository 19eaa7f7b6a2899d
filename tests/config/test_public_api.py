"""The public API (`import ibtasks`): cheap to import, a config from a file or a mapping, the
boot and disk task generators and the doit config, as an embedding dodo.py uses them."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import ibtasks
from ibtasks.config.model import Options
from ibtasks.tasks.task_inputs import key_payload
from tests.chaintools import fat_file
from tests.conftest import REPO
from tests.small_configs import BASE, DISK, write_config


def test_importing_the_package_loads_neither_doit_nor_the_config_code() -> None:
    code = "import sys, ibtasks; print(sorted(sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                            text=True).stdout
    names = ast.literal_eval(loaded)
    assert not [n for n in names if n == "doit" or n.startswith("doit.")]
    assert [n for n in names if n.startswith("ibtasks")] == ["ibtasks"]


def test_every_public_name_resolves_and_an_unknown_one_is_an_attribute_error() -> None:
    for name in ibtasks.__all__:
        assert getattr(ibtasks, name) is not None
        assert name in dir(ibtasks)
    assert ibtasks.Options is Options
    assert ibtasks.BOOT_TASKS == ("ib_check", "ib_layout", "ib_dtb", "ib_boot_source",
                                  "ib_boot_scr")
    with pytest.raises(AttributeError, match="no attribute 'boot_task'"):
        ibtasks.boot_task  # noqa: B018


def bash_mapping(text: str) -> dict[str, str]:
    """`KEY="value"` lines as a mapping of the bash form's keys."""
    return {line.partition("=")[0]: line.partition("=")[2].strip('"')
            for line in text.splitlines() if "=" in line}


def test_a_mapping_in_either_key_form_is_the_config_its_file_is(seed_inputs: Path) -> None:
    options = Options(root_dir=seed_inputs, load_cmd="tftpb")
    from_file = ibtasks.load_config(write_config(seed_inputs), options)
    written = bash_mapping(BASE)
    as_tuples = {(k.partition("[")[0], int(k[k.index("[") + 1:-1]) if "[" in k else None): v
                 for k, v in written.items()}
    for values in (written, as_tuples):
        config = ibtasks.config_from_mapping(values, options, source="dodo.py")
        assert key_payload(config, seed_inputs) == key_payload(from_file, seed_inputs)
        assert config.domus[0].kernel is not None
        assert config.domus[0].kernel.where == "dodo.py"


def test_directories_given_as_strings_are_the_same_config(seed_inputs: Path,
                                                          tmp_path: Path) -> None:
    as_paths = Options(root_dir=seed_inputs, output_dir=tmp_path, load_cmd="tftpb")
    as_text = Options(root_dir=str(seed_inputs), output_dir=str(tmp_path), load_cmd="tftpb")
    assert as_text == as_paths
    config = ibtasks.load_config(str(write_config(seed_inputs)), as_text)
    assert (config.root_dir, config.output_dir) == (seed_inputs, tmp_path)
    assert list(ibtasks.boot_tasks(config))


def test_numbers_and_flags_are_written_as_a_config_line_would_hold_them(
        seed_inputs: Path) -> None:
    values = {**bash_mapping(BASE), "NUM_DOMUS": 1, "DOMU_MEM[0]": 256, "DOMU_NOBOOT": True,
              "MEMORY_START": 0x40000000}
    config = ibtasks.config_from_mapping(values, Options(root_dir=seed_inputs, load_cmd="tftpb"))
    assert (config.memory_start, config.domus[0].mem_mib) == (0x40000000, 256)
    assert config.domus[0].noboot  # DOMU_NOBOOT alone is index 0, as bash reads ARRAY=value


@pytest.mark.parametrize(("extra", "message"), [
    ({("DOMU_KERNEL", 0): "zynqmp-dom1/Image-domU"},
     "dodo.py: DOMU_KERNEL[0]: given twice, as 'DOMU_KERNEL[0]' and ('DOMU_KERNEL', 0)"),
    ({"DOMU KERNEL[0]": "x"},
     "dodo.py: 'DOMU KERNEL[0]': not a config key; write 'NAME', 'NAME[index]' or "
     "(NAME, index or None)"),
    ({("DOMU_KERNEL", -1): "x"},
     "dodo.py: ('DOMU_KERNEL', -1): not a config key; write 'NAME', 'NAME[index]' or "
     "(NAME, index or None)"),
    ({"XEN_CMD": ["console=dtuart"]},
     "dodo.py: XEN_CMD: expected text, a number, a flag or a path, got list"),
    ({"LOPPER_PATH": "lopper"},
     "dodo.py: LOPPER_PATH: this upstream ImageBuilder key is not supported by ibtasks; "
     "remove it or use ImageBuilder itself"),
])
def test_a_mapping_with_a_bad_key_or_value_is_an_error_naming_it(
        seed_inputs: Path, extra: dict[object, object], message: str) -> None:
    values = {**bash_mapping(BASE), **extra}
    with pytest.raises(ibtasks.UserError) as info:
        ibtasks.config_from_mapping(values,  # type: ignore[arg-type]
                                    Options(root_dir=seed_inputs, load_cmd="tftpb"),
                                    source="dodo.py")
    assert str(info.value) == message


def test_an_unknown_key_in_a_mapping_is_a_warning_and_strict_makes_it_an_error(
        seed_inputs: Path) -> None:
    values = {**bash_mapping(BASE), "DOMU_KERNAL[0]": "x"}
    config = ibtasks.config_from_mapping(values, Options(root_dir=seed_inputs, load_cmd="tftpb"),
                                         source="dodo.py")
    warning = "dodo.py: DOMU_KERNAL[0]: unknown key, ignored; did you mean DOMU_KERNEL?"
    assert warning in config.warnings
    with pytest.raises(ibtasks.UserError) as info:
        ibtasks.config_from_mapping({**values, "STRICT": True},
                                    Options(root_dir=seed_inputs, load_cmd="tftpb"),
                                    source="dodo.py")
    assert str(info.value) == warning


DODO = """\
from pathlib import Path

import ibtasks

HERE = Path(__file__).parent
config = ibtasks.load_config(HERE / "config", ibtasks.Options(root_dir=HERE, load_cmd="sd"))
DOIT_CONFIG = ibtasks.doit_config(HERE / ".ibtasks")


def task_disk():
    yield from ibtasks.boot_tasks(config)
    yield from ibtasks.disk_tasks(config, HERE / "disk.img", slack_mib=8)
"""


def test_an_embedding_dodo_builds_the_disk_image_through_the_api(seed_inputs: Path) -> None:
    write_config(seed_inputs, DISK)
    (seed_inputs / "dodo.py").write_text(DODO)
    run = subprocess.run([sys.executable, "-m", "doit", "-f", str(seed_inputs / "dodo.py")],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    table = json.loads(subprocess.run(["sfdisk", "--json", str(seed_inputs / "disk.img")],
                                      check=True, capture_output=True, text=True).stdout)
    assert [p["name"] for p in table["partitiontable"]["partitions"]] == ["Linux1", "Linux2",
                                                                         "Linux3"]
    disk = seed_inputs / "disk.img"
    assert fat_file(disk, "boot.scr") == (seed_inputs / "boot.scr").read_bytes()
    again = subprocess.run([sys.executable, "-m", "doit", "-f", str(seed_inputs / "dodo.py"),
                            "--reporter", "json"], capture_output=True, text=True)
    report = json.loads(again.stdout)
    assert [t["name"] for t in report["tasks"] if t["result"] == "success"
            and t["name"] not in ("ib_check", "ib_partition", "disk")] == []


def test_disk_tasks_refuse_a_boot_file_outside_the_input_directory_at_once(
        seed_inputs: Path, tmp_path: Path) -> None:
    (tmp_path / "outside-xen").write_bytes((seed_inputs / "xen").read_bytes())
    write_config(seed_inputs, DISK.replace('XEN="xen"', f'XEN="{tmp_path}/outside-xen"'))
    config = ibtasks.load_config(seed_inputs / "config",
                                 Options(root_dir=seed_inputs, load_cmd="sd"))
    with pytest.raises(ibtasks.UserError) as info:
        ibtasks.disk_tasks(config, seed_inputs / "disk.img")
    assert str(info.value) == (
        f"{seed_inputs}/config:4: XEN: {tmp_path}/outside-xen is outside -d ({seed_inputs}); "
        "the boot partition holds each file at its path under -d, so put it there")


def test_the_embed_example_imports_ibtasks_only_from_the_top_level_package() -> None:
    source = (REPO / "examples" / "embed" / "dodo.py").read_text()
    tree = ast.parse(source)
    ours = [node for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom)
            and any(name.split(".")[0] == "ibtasks" for name in
                    ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""]))]
    assert ours
    for node in ours:
        if isinstance(node, ast.Import):
            assert [a.name for a in node.names] == ["ibtasks"], ast.unparse(node)
        else:
            assert node.module == "ibtasks", ast.unparse(node)
    # No sys.path edits: doit puts the dodo's folder on sys.path (for make_inputs).
    assert not [node for node in ast.walk(tree) if isinstance(node, ast.Attribute)
                and node.attr == "path" and isinstance(node.value, ast.Name)
                and node.value.id == "sys"]
