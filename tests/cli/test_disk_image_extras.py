"""disk-image's upstream extras end to end, as an ordinary user: DOS tables, -a, boot aux files,
and xl configs with passthrough and driver domains.

Checked with the real tools: sfdisk --json (label, types, boot flag), fsck.fat -n and mtools
for the boot partition, e2fsck -fn and debugfs for dom0's rootfs.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ibtasks.config.build import build_config
from ibtasks.config.loader import raw_from_bash
from ibtasks.config.model import Options
from ibtasks.config.yaml_reader import read_yaml_config
from ibtasks.errors import UserError
from ibtasks.formats.disk_image import power_of_two_mib
from tests.cli.test_disk_image import CONFIG, extract, make_rootfs
from tests.cli.test_disk_image import disk_image as tasks_run
from tests.conftest import run_ibtasks
from tests.unprivileged import run_as_user, unprivileged_python, user_tmp_dir

GOLDEN_DTS = (Path(__file__).parent.parent / "goldens" / "upstream" / "passthrough-xl"
              / "partial.dts")
EXTRAS = """\
PARTITION_TABLE=dos
NUM_BOOT_AUX_FILE=2
BOOT_AUX_FILE[0]=BOOT.BIN
BOOT_AUX_FILE[1]=firmware/pmufw.elf
DOMU_PASSTHROUGH_DTB[1]=passthrough/partial.dtb
DOMU_DRIVER_DOMAIN[1]=y
"""
SECTOR = 512


def make_inputs(master: Path, tmp: Path, config: str) -> Path:
    work = tmp / "inputs"
    shutil.copytree(master, work)
    (work / "config").write_text(config)
    make_rootfs(work / "rootfs-dom0.cpio.gz", b"dom0\n")
    make_rootfs(work / "rootfs-domU.tar.gz", b"domU2\n")
    (work / "BOOT.BIN").write_bytes(b"boot.bin " * 1000)
    (work / "firmware").mkdir()
    (work / "firmware" / "pmufw.elf").write_bytes(b"\x7fELF pmufw")
    (work / "passthrough").mkdir()
    subprocess.run(["dtc", "-q", "-I", "dts", "-O", "dtb", "-o",
                    str(work / "passthrough" / "partial.dtb"), str(GOLDEN_DTS)], check=True)
    subprocess.run(["chmod", "-R", "a+rwX", str(tmp)], check=True)
    return work


@pytest.fixture
def dos_inputs(seed_inputs_master: Path) -> Iterator[Path]:
    with user_tmp_dir() as tmp:
        yield make_inputs(seed_inputs_master, tmp, CONFIG + EXTRAS)


def disk_image(inputs: Path, *extra: str) -> None:
    result = run_as_user([unprivileged_python(), "-m", "ibtasks", "disk-image", "-c", "config",
                          "-d", ".", "-t", "scsi", "-o", "disk.img", *extra], cwd=inputs)
    assert result.returncode == 0, result.stderr


def table(disk: Path) -> dict[str, object]:
    out = subprocess.run(["sfdisk", "--json", str(disk)], check=True, capture_output=True).stdout
    return json.loads(out)["partitiontable"]  # type: ignore[no-any-return]


def debugfs(image: Path, request: str) -> bytes:
    return subprocess.run(["debugfs", "-R", request, str(image)], check=True,
                          capture_output=True).stdout


def test_a_dos_disk_has_a_bootable_fat_partition_then_primary_linux_partitions(
        dos_inputs: Path, tmp_path: Path) -> None:
    disk_image(dos_inputs)
    layout = table(dos_inputs / "disk.img")
    assert layout["label"] == "dos"
    parts = layout["partitions"]
    assert isinstance(parts, list)
    # The boot files are a few KiB: FAT16 (type e), as mkfs.fat would choose for this size.
    assert [(p["type"], p.get("bootable", False)) for p in parts] == [
        ("e", True), ("83", False), ("83", False)]
    assert [p["node"][-1] for p in parts] == ["1", "2", "3"]  # primary: dom0 is sda2
    assert parts[1]["start"] == 2048  # the boot partition lies after the rootfs partitions
    boot = extract(dos_inputs / "disk.img", parts[0], tmp_path / "boot.vfat")
    subprocess.run(["fsck.fat", "-n", str(boot)], check=True, capture_output=True)
    for name in ("BOOT.BIN", "firmware/pmufw.elf", "passthrough/partial.dtb", "boot.scr"):
        copied = subprocess.run(["mtype", "-i", str(boot), f"::/{name}"], check=True,
                                capture_output=True).stdout
        assert copied == (dos_inputs / name).read_bytes()
    dom0 = extract(dos_inputs / "disk.img", parts[1], tmp_path / "dom0.ext4")
    subprocess.run(["e2fsck", "-fn", str(dom0)], check=True, capture_output=True)
    assert debugfs(dom0, "cat /etc/xen/domU1.cfg").decode() == (
        'name="domU1"\nmemory=512\nvcpus=1\ndriver_domain=1\n# mount /dev/sda1 /boot\n'
        'kernel="/boot/zynqmp-dom1/Image-domU"\nextra="console=hvc0 root=/dev/ram0"\n'
        'device_tree="/etc/xen/partial.dtb"\n'
        'iomem = [ "0xFF010,1", "0xFF0E0,1", "0xFD0C0,12@0x90000", "0xFD500,1" ]\n'
        'dtdev = [ "/axi/serial@ff010000", "/axi/ethernet@ff0e0000" ]\n'
        "irqs = [ 54,95,95,156 ]\n")
    assert debugfs(dom0, "cat /etc/xen/partial.dtb") == \
        (dos_inputs / "passthrough" / "partial.dtb").read_bytes()
    # domU2 (rootfs, not NOBOOT) has no passthrough DTB: its config is unchanged.
    assert b"device_tree" not in debugfs(dom0, "cat /etc/xen/domU2.cfg")


def test_a_boot_partition_over_512_mib_is_fat32_typed_c(seed_inputs_master: Path,
                                                        tmp_path: Path) -> None:
    with user_tmp_dir() as tmp:
        inputs = make_inputs(seed_inputs_master, tmp, CONFIG + EXTRAS)
        with open(inputs / "BOOT.BIN", "r+b") as aux:  # sparse: cheap to copy
            aux.truncate(520 << 20)
        disk_image(inputs)
        parts = table(inputs / "disk.img")["partitions"]
        assert isinstance(parts, list)
        assert (parts[0]["type"], parts[0]["bootable"]) == ("c", True)
        boot = extract(inputs / "disk.img", parts[0], tmp_path / "boot.vfat")
        check = subprocess.run(["fsck.fat", "-n", "-v", str(boot)], check=True,
                               capture_output=True, text=True).stdout
        assert "2 FATs, 32 bit entries" in check


def test_dash_a_rounds_the_disk_up_to_a_power_of_two_mib(seed_inputs_master: Path) -> None:
    sizes = {}
    for flags in ((), ("-a",)):
        with user_tmp_dir() as tmp:
            inputs = make_inputs(seed_inputs_master, tmp, CONFIG + "NUM_BOOT_AUX_FILE=0\n")
            disk_image(inputs, *flags)
            disk = inputs / "disk.img"
            sizes[flags] = disk.stat().st_size
            # GPT: sfdisk finds the backup header at the end of the larger disk.
            assert table(disk)["lastlba"] == sizes[flags] // SECTOR - 34
    plain, aligned = sizes[()], sizes[("-a",)]
    assert plain % (1 << 20) == 0 and (plain >> 20) & ((plain >> 20) - 1) != 0  # not one already
    assert aligned == power_of_two_mib(plain) and aligned >> 20 == 1 << (plain >> 20).bit_length()


def test_switching_the_table_to_dos_gives_a_fresh_dos_builds_bytes(
        dos_inputs: Path) -> None:
    disk_image(dos_inputs, "--table", "gpt")
    assert table(dos_inputs / "disk.img")["label"] == "gpt"
    disk_image(dos_inputs)
    switched = hashlib.sha256((dos_inputs / "disk.img").read_bytes()).hexdigest()
    assert table(dos_inputs / "disk.img")["label"] == "dos"
    for name in ("disk.img", "disk.img.parts.json"):
        (dos_inputs / name).unlink()
    shutil.rmtree(dos_inputs / ".ibtasks")
    disk_image(dos_inputs)
    assert hashlib.sha256((dos_inputs / "disk.img").read_bytes()).hexdigest() == switched


def test_two_dos_builds_in_two_directories_give_identical_disks(
        seed_inputs_master: Path) -> None:
    digests = []
    for _ in range(2):
        with user_tmp_dir() as tmp:
            inputs = make_inputs(seed_inputs_master, tmp, CONFIG + EXTRAS)
            disk_image(inputs, "-a")
            digests.append(hashlib.sha256((inputs / "disk.img").read_bytes()).hexdigest())
    assert digests[0] == digests[1]


def fail(inputs: Path, config: str, *flags: str) -> str:
    (inputs / "config").write_text(config)
    result = run_ibtasks("disk-image", "-c", "config", "-d", ".", "-t", "scsi", "-o",
                         "disk.img", *flags, cwd=inputs)
    assert result.returncode == 1
    assert not (inputs / "disk.img").exists()
    assert not (inputs / "boot.scr").exists()
    return result.stderr


@pytest.fixture
def root_inputs(seed_inputs_master: Path, tmp_path: Path) -> Path:
    return make_inputs(seed_inputs_master, tmp_path, CONFIG)


def test_a_missing_aux_file_is_one_line_naming_key_and_line(root_inputs: Path) -> None:
    (root_inputs / "BOOT.BIN").unlink()
    assert fail(root_inputs, CONFIG + EXTRAS) == (
        "ibtasks: error: config:23: BOOT_AUX_FILE[0]: BOOT.BIN does not exist "
        f"(looked in {'.'})\n")


def test_an_unset_aux_file_below_the_count_is_refused(root_inputs: Path) -> None:
    assert fail(root_inputs, CONFIG + "NUM_BOOT_AUX_FILE=2\nBOOT_AUX_FILE[0]=BOOT.BIN\n") == (
        "ibtasks: error: config:21: BOOT_AUX_FILE[1] is not set (NUM_BOOT_AUX_FILE is 2)\n")


def test_five_partitions_do_not_fit_a_dos_table(root_inputs: Path) -> None:
    config = CONFIG + "DOMU_ROOTFS[0]=rootfs-domU.tar.gz\nDOMU_ROOTFS[3]=rootfs-domU.tar.gz\n"
    assert fail(root_inputs, config + "PARTITION_TABLE=dos\n") == (
        "ibtasks: error: config:23: PARTITION_TABLE=dos: 5 partitions (boot and 4 rootfs) do "
        "not fit a DOS table's 4 primary partitions; use a GPT (--table gpt)\n")
    assert fail(root_inputs, config, "--table", "dos") == (
        "ibtasks: error: --table dos: 5 partitions (boot and 4 rootfs) do not fit a DOS "
        "table's 4 primary partitions; use a GPT (--table gpt)\n")


def test_gpt_yes_contradicts_a_dos_table(root_inputs: Path) -> None:
    assert fail(root_inputs, CONFIG + "PARTITION_TABLE=dos\nGPT=y\n") == (
        "ibtasks: error: config:22: GPT: set together with PARTITION_TABLE=dos; remove one of "
        "them\n")


def test_an_unknown_table_is_refused(root_inputs: Path) -> None:
    assert fail(root_inputs, CONFIG + "PARTITION_TABLE=mbr\n") == (
        "ibtasks: error: config:21: PARTITION_TABLE: expected gpt or dos, got 'mbr'\n")


def test_two_passthrough_dtbs_of_one_name_are_refused(root_inputs: Path) -> None:
    other = root_inputs / "other"
    other.mkdir()
    (other / "partial.dtb").write_bytes(
        subprocess.run(["dtc", "-q", "-I", "dts", "-O", "dtb"], input=b"/dts-v1/;\n/ { };\n",
                       check=True, capture_output=True).stdout)
    config = (CONFIG + "DOMU_PASSTHROUGH_DTB[1]=passthrough/partial.dtb\n"
              "DOMU_PASSTHROUGH_DTB[2]=other/partial.dtb\n")
    assert fail(root_inputs, config) == (
        "ibtasks: error: config:22: DOMU_PASSTHROUGH_DTB[2]: other/partial.dtb and "
        "passthrough/partial.dtb would both be /etc/xen/partial.dtb in dom0's rootfs; give them "
        "different file names\n")


def test_a_bad_partial_dtb_is_refused_before_anything_is_built(root_inputs: Path) -> None:
    (root_inputs / "bad.dtb").write_bytes(b"not a dtb")
    assert fail(root_inputs, CONFIG + "DOMU_PASSTHROUGH_DTB[1]=bad.dtb\n") == (
        "ibtasks: error: config:21: DOMU_PASSTHROUGH_DTB[1]: not a flattened device tree "
        "(starts with 6e6f7420, expected magic d00dfeed)\n")
    assert not (root_inputs / ".ibtasks" / "boot.vfat").exists()


def test_upstreams_gpt_switch_alone_keeps_the_default_gpt(root_inputs: Path) -> None:
    raw = raw_from_bash(CONFIG + "GPT=y\n", "config", {})
    config = build_config(raw, Options(root_dir=root_inputs, load_cmd="load scsi 0:1"))
    assert config.partition_table == "gpt"
    assert build_config(raw, Options(root_dir=root_inputs, load_cmd="load scsi 0:1",
                                     partition_table="dos")).partition_table == "dos"


YAML = """\
MEMORY_START: 0x40000000
MEMORY_END: 0x50000000
DEVICE_TREE: mpsoc.dtb
XEN: xen
DOM0_KERNEL: Image-dom0
PARTITION_TABLE: dos
BOOT_AUX_FILE:
  - BOOT.BIN
  - firmware/pmufw.elf
DOMUS:
  - KERNEL: zynqmp-dom1/Image-domU
    NOBOOT: y
    DRIVER_DOMAIN: y
"""


def test_a_yaml_config_lists_aux_files_and_sets_their_count(root_inputs: Path) -> None:
    raw = read_yaml_config(YAML, "config.yaml")
    assert raw.warnings == ()
    config = build_config(raw, Options(root_dir=root_inputs, load_cmd="load scsi 0:1"))
    assert [(b.key, b.path, b.where) for b in config.boot_aux_files] == [
        ("BOOT_AUX_FILE[0]", "BOOT.BIN", "config.yaml:8"),
        ("BOOT_AUX_FILE[1]", "firmware/pmufw.elf", "config.yaml:9")]
    assert config.partition_table == "dos"
    assert len(config.domus) == 1 and config.domus[0].driver_domain


def test_a_yaml_aux_count_that_disagrees_with_the_list_is_refused() -> None:
    with pytest.raises(UserError) as info:
        read_yaml_config(YAML + "NUM_BOOT_AUX_FILE: 3\n", "config.yaml")
    assert str(info.value) == ("config.yaml:14: NUM_BOOT_AUX_FILE is 3 but BOOT_AUX_FILE lists "
                               "2; leave NUM_BOOT_AUX_FILE out")


def test_an_aux_file_change_rebuilds_the_boot_partition_only(dos_inputs: Path) -> None:
    assert "ib_partition:boot" in tasks_run(dos_inputs)
    assert tasks_run(dos_inputs) == set()
    (dos_inputs / "firmware" / "pmufw.elf").write_bytes(b"\x7fELF pmufw v2")
    assert {t for t in tasks_run(dos_inputs) if t.startswith(("ib_partition", "ib_disk"))} == \
        {"ib_partition:boot", "ib_disk"}


def test_adding_dash_a_to_a_dos_disk_gives_a_fresh_builds_bytes(dos_inputs: Path) -> None:
    disk_image(dos_inputs)
    plain = (dos_inputs / "disk.img").stat().st_size
    disk_image(dos_inputs, "-a")
    grown = dos_inputs / "disk.img"
    assert grown.stat().st_size == power_of_two_mib(plain) > plain
    updated = hashlib.sha256(grown.read_bytes()).hexdigest()
    for name in ("disk.img", "disk.img.parts.json"):
        (dos_inputs / name).unlink()
    shutil.rmtree(dos_inputs / ".ibtasks")
    disk_image(dos_inputs, "-a")
    assert hashlib.sha256(grown.read_bytes()).hexdigest() == updated
