"""`-s`: addresses computed by U-Boot at boot. The script is checked by running it through a
small evaluator of the U-Boot commands it uses (`setenv`, `setexpr` with + - * /, `${var}`,
loads that set `filesize`), then applying its `fdt` commands with the real fdtput: for inputs
whose loaded size is their file size, the result must equal the script made without `-s`.
"""

from __future__ import annotations

import operator
import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import run_ibtasks
from tests.fdtscript import apply_with_fdtput, dts_of

CONFIG = """\
MEMORY_START=0x40000000
MEMORY_END=0x80000000
DEVICE_TREE=mpsoc.dtb
XEN=xen
DOM0_KERNEL=Image-dom0
DOM0_RAMDISK=dom0-ramdisk.cpio
NUM_DOMUS=2
DOMU_KERNEL[0]=zynqmp-dom1/Image-domU
DOMU_RAMDISK[0]=zynqmp-dom1/domU-ramdisk.cpio
DOMU_PASSTHROUGH_DTB[0]=zynqmp-dom1/passthrough-example-part.dtb
DOMU_KERNEL[1]=zynqmp-dom2/Image-domU
DOMU_LOAD[1]=virtio
"""
OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.floordiv}


def evaluate(script: str, root: Path) -> list[str]:
    """What U-Boot runs for `script`: variables expanded, setexpr/setenv and loads executed."""
    env: dict[str, str] = {}
    ran = []
    for line in script.splitlines():
        words = re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], line).split()
        if words[0] == "setenv":
            env[words[1]] = words[2]
        elif words[0] == "setexpr":
            values = [int(w, 16) for w in words[2::2]]
            result = values[0]
            for op, value in zip(words[3::2], values[1:], strict=True):
                result = OPS[op](result, value)
            env[words[1]] = f"{result:x}"  # U-Boot: hex without 0x
        else:
            if words[0] in ("tftpb", "load"):
                env["filesize"] = f"{(root / words[-1]).stat().st_size:x}"
            ran.append(" ".join(words))
    return ran


LINUX = """\
MEMORY_START=0x40000000
MEMORY_END=0x80000000
DEVICE_TREE=mpsoc.dtb
LINUX=Image-dom0
LINUX_RAMDISK=dom0-ramdisk.cpio
"""


def generate(inputs: Path, *args: str, config: str = CONFIG) -> str:
    (inputs / "config").write_text(config)
    result = run_ibtasks("uboot-script-gen", "-c", "config", "-d", ".", "-t", "tftp", *args,
                         cwd=inputs)
    assert result.returncode == 0, result.stderr
    return (inputs / "boot.source").read_text()


@pytest.mark.parametrize(("config", "lines"), [(CONFIG, 9), (LINUX, 4)])
def test_script_computed_at_boot_means_what_the_precomputed_one_says(
        seed_inputs: Path, tmp_path: Path, config: str, lines: int) -> None:
    fixed = generate(seed_inputs, config=config)
    computed = evaluate(generate(seed_inputs, "-s", config=config), seed_inputs)

    def plain(lines: list[str]) -> list[str]:  # U-Boot's variables hold hex without 0x
        return [re.sub(r"\b0x", "", line.lower()) for line in lines
                if line.startswith(("tftpb", "load", "booti"))]

    assert plain(computed) == plain(fixed.splitlines())
    assert len(plain(computed)) == lines  # the loads and the boot line
    ours, theirs = tmp_path / "computed.dtb", tmp_path / "fixed.dtb"
    shutil.copy(seed_inputs / "mpsoc.dtb", ours)
    shutil.copy(seed_inputs / "mpsoc.dtb", theirs)
    apply_with_fdtput(ours, "\n".join(computed))
    apply_with_fdtput(theirs, fixed)
    assert dts_of(ours).lower() == dts_of(theirs).lower()


def test_files_need_not_exist_and_only_the_script_tasks_run(seed_inputs: Path) -> None:
    for name in ("xen", "Image-dom0", "mpsoc.dtb"):
        (seed_inputs / name).unlink()
    generate(seed_inputs, "-s")
    listing = run_ibtasks("uboot-script-gen", "-c", "config", "-d", ".", "-t", "tftp", "-s",
                          "--", "list", "--all", cwd=seed_inputs).stdout.split()
    assert [w for w in listing if w.startswith("ib_")] == ["ib_boot_scr", "ib_boot_source",
                                                          "ib_layout"]
    assert not (seed_inputs / "boot.dtb").exists()
    assert (seed_inputs / "boot.scr").is_file()


def test_computed_script_starts_one_slot_after_the_script(seed_inputs: Path) -> None:
    lines = generate(seed_inputs, "-s").splitlines()
    assert lines[:8] == [
        "setenv memaddr 0x40400000",
        "tftpb ${memaddr} xen",
        "setexpr xen_addr ${memaddr}",
        "setenv xen_size ${filesize}",
        "setexpr memaddr ${memaddr} + ${filesize}",
        "setexpr memaddr ${memaddr} + 0x1FFFFF",
        "setexpr memaddr ${memaddr} / 0x200000",
        "setexpr memaddr ${memaddr} * 0x200000",
    ]
    assert "load virtio 0:1 ${memaddr} zynqmp-dom2/Image-domU" in lines


def test_preedited_dtb_with_computed_addresses_is_rejected(seed_inputs: Path) -> None:
    (seed_inputs / "config").write_text(CONFIG)
    result = run_ibtasks("uboot-script-gen", "-c", "config", "-d", ".", "-t", "tftp", "-s",
                         "--preedited-dtb", cwd=seed_inputs)
    assert result.returncode == 1
    assert result.stderr == (
        "ibtasks: error: --preedited-dtb cannot be combined with -s: the edited DTB needs the "
        "load addresses, which -s leaves to U-Boot\n")
    assert not (seed_inputs / "boot.source").exists()


@pytest.mark.parametrize(("extra", "flags"), [("BOOT_CMD=bootm\n", False), ("", True)])
def test_embedders_learn_which_task_basenames_a_config_yields(seed_inputs: Path, extra: str,
                                                              flags: bool) -> None:
    from ibtasks.config.build import build_config
    from ibtasks.config.loader import read_config_file
    from ibtasks.config.model import Options
    from ibtasks.tasks.boot import boot_task_names, boot_tasks

    (seed_inputs / "config").write_text(CONFIG + extra)
    config = build_config(read_config_file(seed_inputs / "config"),
                          Options(root_dir=seed_inputs, load_cmd="tftpb", calc=flags))
    names = boot_task_names(config)
    assert set(names) == {t["basename"] for t in boot_tasks(config)}
    assert ("ib_xen_uimage" in names, "ib_dtb" in names) == (not flags, not flags)


def test_bootefi_with_computed_addresses_loads_xen_last(seed_inputs: Path) -> None:
    lines = generate(seed_inputs, "-s", config=CONFIG + "BOOT_CMD=bootefi\n").splitlines()
    loads = [line for line in lines if line.startswith(("tftpb", "load"))]
    assert loads[-1] == "tftpb ${memaddr} xen"
    assert lines[-1] == "bootefi ${xen_addr} ${device_tree_addr}"


def test_keys_that_need_the_dtb_are_rejected_with_computed_addresses(seed_inputs: Path) -> None:
    (seed_inputs / "config").write_text(CONFIG + 'XEN_STATIC_HEAP="0x50000000 0x1000000"\n')
    result = run_ibtasks("uboot-script-gen", "-c", "config", "-d", ".", "-t", "tftp", "-s",
                         cwd=seed_inputs)
    assert result.returncode == 1
    assert result.stderr == (
        "ibtasks: error: config:13: XEN_STATIC_HEAP: needs facts of the DTB (phandles, cell "
        "sizes, node paths), which -s does not read; drop -s\n")
