"""The cache keys are derived from what the planners receive, not kept by hand.

For every leaf value of a `Config` (each field, into nested dataclasses and the first element of
each tuple), a changed value either changes the key of a whole-config task (ib_dtb,
ib_boot_source, ib_fit) or leaves that task's view unchanged, so the planner, which receives
the view, cannot read it. Places (`where`, `source`) never change a key. The base config below
is built directly (no files are read while keys are computed) with every optional value set,
so that no leaf is left out; a new field of a new type fails `changed` until it gets one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ibtasks.config.boot_options import BootOptions
from ibtasks.config.domu_props import DomUProps, SharedMem, StaticEvtchn
from ibtasks.config.fit_settings import FitSettings
from ibtasks.config.model import Config, DomU
from ibtasks.config.reader import Binary
from ibtasks.config.xen_props import CpuPool, XenProps
from ibtasks.tasks.boot import boot_tasks
from ibtasks.tasks.task_inputs import dtb_view, fit_view, is_place, key_payload, script_view

ROOT = Path("inputs")


def binary(key: str, path: str, line: int) -> Binary:
    return Binary(key, path, f"config:{line}")


def full_config() -> Config:
    """A config with every field set to a value that is not its default."""
    props = DomUProps(
        enhanced="enabled", vpl011=False, static_mem=((0x50000000, 0x10000000),),
        direct_map=True, shared_mem=(SharedMem("shm1", 0x60000000, 0x70000000, 0x1000),),
        nr_spis=4, grant_ver=2, grant_frames=8, maptrack_frames=16, caps=1, domid=5,
        colors="0-3", cpupool=0, static_evtchns=(StaticEvtchn(10, 1, 11),),
        vcpu_hard_affinity=((0, "0-1"),), passthrough_paths=("/axi/serial@ff010000",),
        passthrough_prop="enabled", trap_unmap=1, passthrough_where="config:30")
    domu = DomU(0, binary("DOMU_KERNEL[0]", "d1/Image", 10), "console=ttyAMA0 quiet",
                binary("DOMU_RAMDISK[0]", "d1/initrd", 11),
                binary("DOMU_PASSTHROUGH_DTB[0]", "d1/pt.dtb", 12), 256, 2, False, None,
                cmd_given="console=ttyAMA0 quiet", props=props, driver_domain=True)
    boot = BootOptions(
        boot_cmd="booti", append_extra_cmds=binary("APPEND_EXTRA_CMDS", "extra.txt", 20),
        print_chosen=True, xen_load="tftpb", dom0_load="load mmc 0:1",
        domu_load=((0, "load mmc 0:2"),), prepend_path="boot", calc=False,
        xen_policy=binary("XEN_POLICY", "xenpolicy", 21),
        bitstream=binary("BITSTREAM", "fpga.bit", 22),
        dt_overlays=(binary("DT_OVERLAY[0]", "o.dtbo", 23),), linux_cmd="console=ttyPS0",
        linux_ramdisk=binary("LINUX_RAMDISK", "linux.cpio", 24))
    return Config(
        source="config", root_dir=ROOT, output_dir=ROOT / "out", load_cmd="tftpb",
        memory_start=0x40000000, memory_end=0x80000000,
        host_dtb=binary("DEVICE_TREE", "mpsoc.dtb", 3), xen=binary("XEN", "xen", 4),
        xen_cmd="console=dtuart", dom0_kernel=binary("DOM0_KERNEL", "Image", 5),
        dom0_cmd="console=hvc0", dom0_ramdisk=binary("DOM0_RAMDISK", "initrd", 6),
        dom0_rootfs=binary("DOM0_ROOTFS", "rootfs.tar", 7), domus=(domu,),
        uboot_source="boot.source", uboot_script="boot.scr", fdtedit="boot.dtb",
        preedited_dtb=True, boot_fs="ext4", warnings=("a warning",), environ_used=("HOME",),
        strict=True, partition_table="dos", boot_partition_mib=64,
        boot_aux_files=(binary("BOOT_AUX_FILE[0]", "BOOT.BIN", 8),),
        fit=FitSettings("boot.fit", ROOT / "keys", "dev", ROOT / "u-boot.dtb", "config:9"),
        xen_props=XenProps(((0x30000000, 0x1000000),), "config:25", "0-1", "2-3",
                           (CpuPool(0, ("cpu@0", "cpu@1"), "null", "config:26"),)),
        boot=boot)


# Values a field may hold that the base config leaves None (a domU booted by Xen has no rootfs).
SAMPLES: dict[str, Any] = {"rootfs": binary("DOMU_ROOTFS[0]", "rootfs-domU.tar", 13)}


def changed(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    """(leaf path, a copy of `value` with that leaf changed) for every leaf of `value`."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            for leaf, new in changed(getattr(value, f.name), f"{path}.{f.name}".lstrip(".")):
                yield leaf, dataclasses.replace(value, **{f.name: new})
    elif isinstance(value, tuple):
        assert value, f"{path}: give it an element in full_config()"
        for leaf, new in changed(value[0], f"{path}[0]"):
            yield leaf, (new, *value[1:])
    elif isinstance(value, bool):
        yield path, not value
    elif isinstance(value, int):
        yield path, value + 0x200000
    elif isinstance(value, str):
        yield path, value + "-changed"
    elif isinstance(value, Path):
        yield path, value / "changed"
    elif value is None:
        name = path.rpartition(".")[2]
        assert name in SAMPLES, f"{path}: None in full_config(); give it a value or a SAMPLE"
        yield path, SAMPLES[name]
    else:
        raise AssertionError(f"{path}: no change known for {type(value).__name__}")


def leaf_name(path: str) -> str:
    return path.rpartition(".")[2].partition("[")[0]


VIEWS: dict[str, Callable[[Config], Config]] = {
    "ib_dtb": dtb_view, "ib_boot_source": script_view, "ib_fit": fit_view}


def key(view: Callable[[Config], Config], config: Config) -> Any:
    return key_payload(view(config), config.root_dir)


def file_deps(config: Config, task: str) -> list[str]:
    found = [t for t in boot_tasks(config) if t["basename"] == task]
    return [dep for t in found for dep in t["file_dep"]]


@pytest.mark.parametrize("task", sorted(VIEWS))
def test_every_config_value_changes_the_key_or_is_blanked_in_the_view(task: str) -> None:
    view = VIEWS[task]
    base = full_config()
    keyed, blanked = set(), set()
    for leaf, config in changed(base, ""):
        if is_place(leaf_name(leaf)):
            assert key(view, config) == key(view, base), f"{leaf}: a place changed the key"
        elif key(view, config) != key(view, base):
            keyed.add(leaf)
        elif view(config) == view(base):
            blanked.add(leaf)
        elif leaf == "root_dir":
            # The -d directory is the anchor of every keyed path; the files' places are deps.
            assert file_deps(config, task) != file_deps(base, task)
        else:
            pytest.fail(f"{task}: {leaf} reaches the planner but not the key")
    assert keyed and blanked
    assert keyed.isdisjoint(blanked)


def test_the_views_key_on_what_each_planner_reads_and_blank_the_rest() -> None:
    leaves = {leaf: config for leaf, config in changed(full_config(), "")}
    base = full_config()

    def keys_on(task: str, leaf: str) -> bool:
        return key(VIEWS[task], leaves[leaf]) != key(VIEWS[task], base)

    assert keys_on("ib_dtb", "xen_cmd") and keys_on("ib_dtb", "domus[0].props.nr_spis")
    assert not keys_on("ib_dtb", "load_cmd") and not keys_on("ib_dtb", "boot.print_chosen")
    assert keys_on("ib_boot_source", "load_cmd") and keys_on("ib_boot_source", "fdtedit")
    assert not keys_on("ib_boot_source", "domus[0].driver_domain")
    assert not keys_on("ib_boot_source", "fit.name") and keys_on("ib_fit", "fit.name")
    assert keys_on("ib_fit", "fit.key_hint") and not keys_on("ib_fit", "xen_cmd")
    for task in VIEWS:
        assert not keys_on(task, "partition_table") and not keys_on(task, "strict")
        assert not keys_on(task, "host_dtb.where") and not keys_on(task, "source")


def test_the_key_holds_paths_relative_to_the_input_directory() -> None:
    base = full_config()
    payload = key(script_view, base)
    assert payload["output_dir"] == "out" and payload["root_dir"] == "."
    assert payload["xen"] == {"key": "XEN", "path": "xen"}
    moved = dataclasses.replace(base, root_dir=Path("/elsewhere/inputs"),
                                output_dir=Path("/elsewhere/inputs/out"))
    assert key(script_view, moved) == payload


def test_each_action_receives_the_value_its_task_keys_on() -> None:
    base = dataclasses.replace(full_config(), fit=None)
    for task in boot_tasks(base):
        args = task["actions"][0][1]
        planned = args[1]  # run_step(action, planned input, ...)
        payload = task["uptodate"][0].config["input"]
        assert key_payload(planned, base.root_dir) == payload, task["name"]
        if task["basename"] in VIEWS:
            assert planned == VIEWS[task["basename"]](base)
