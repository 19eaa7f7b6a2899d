"""Each task keys on exactly what its planner reads: a changed value reruns the tasks whose
planner reads it and no other. What ran is doit's own JSON report (`-- run --reporter json`).

Values the boot views blank (`tasks.task_inputs`), such as DOMU_DRIVER_DOMAIN, BOOT_AUX_FILE or
PARTITION_TABLE, rerun only disk tasks; values only the layout reads (STRICT) only ib_layout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.chaintools import disk_image, ran, script_gen
from tests.conftest import run_ibtasks
from tests.small_configs import BASE, DISK, write_config

SCRIPT = {"ib_boot_source", "ib_boot_scr"}


def rebuilt_after(inputs: Path, text: str, change: tuple[str, str], *flags: str) -> set[str]:
    """Build with config `text`, then with `change` (old, new) made to it; what ran second."""
    config = write_config(inputs, text)
    script_gen(inputs, *flags)
    assert script_gen(inputs, *flags) == set()
    old, new = change
    assert old in text
    config.write_text(text.replace(old, new))
    return script_gen(inputs, *flags)


def test_boot_cmd_reruns_the_host_kernel_check_and_the_script_not_the_dtb(
        seed_inputs: Path) -> None:
    # The check of XEN keys on BOOT_CMD (can it start Xen?); its record stays the same.
    ran_now = rebuilt_after(seed_inputs, BASE, ('XEN="xen"', 'XEN="xen"\nBOOT_CMD=none'),
                            "-t", "tftp")
    assert ran_now == {"ib_check:XEN"} | SCRIPT
    assert (seed_inputs / "boot.source").read_text().splitlines()[-1].startswith(
        "setenv host_fdt_addr")


def test_strict_reruns_only_the_layout(seed_inputs: Path) -> None:
    assert rebuilt_after(seed_inputs, BASE, ('XEN="xen"', 'XEN="xen"\nSTRICT=y'),
                         "-t", "tftp") == {"ib_layout"}


def test_a_domu_memory_size_reruns_the_dtb_and_the_script_not_the_layout(
        seed_inputs: Path) -> None:
    ran_now = rebuilt_after(seed_inputs, BASE, ("NUM_DOMUS=1", "NUM_DOMUS=1\nDOMU_MEM[0]=256"),
                            "-t", "tftp")
    assert ran_now == {"ib_dtb"} | SCRIPT
    memory = subprocess.run(["fdtget", "-t", "x", str(seed_inputs / "boot.dtb"),
                             "/chosen/domU0", "memory"], check=True, capture_output=True,
                            text=True).stdout.split()
    assert [int(c, 16) for c in memory] == [0, 256 * 1024]


def test_a_printed_chosen_node_reruns_only_the_script(seed_inputs: Path) -> None:
    ran_now = rebuilt_after(seed_inputs, BASE, ('XEN="xen"', 'XEN="xen"\nDBG_FDT_PRINT_CHOSEN=y'),
                            "-t", "tftp")
    assert ran_now == SCRIPT
    assert "fdt print /chosen" in (seed_inputs / "boot.source").read_text()


def test_another_load_command_reruns_only_the_script(seed_inputs: Path) -> None:
    write_config(seed_inputs)
    script_gen(seed_inputs, "-t", "tftp")
    assert script_gen(seed_inputs, "-t", "load mmc 0:1") == SCRIPT
    assert "load mmc 0:1 0x" in (seed_inputs / "boot.source").read_text()


def epoch_build(inputs: Path, epoch: str, *flags: str) -> set[str]:
    result = run_ibtasks("uboot-script-gen", "-c", "config", "-d", ".", "-t", "tftp", *flags,
                         "--", "run", "--reporter", "json", cwd=inputs,
                         env={**os.environ, "SOURCE_DATE_EPOCH": epoch})
    return ran(result)


def test_a_new_timestamp_reruns_only_the_fit(seed_inputs: Path) -> None:
    write_config(seed_inputs)
    epoch_build(seed_inputs, "1000", "-f")
    assert epoch_build(seed_inputs, "1000", "-f") == set()
    assert epoch_build(seed_inputs, "2000", "-f") == {"ib_fit"}
    listing = subprocess.run(["dumpimage", "-l", str(seed_inputs / "boot.fit")], check=True,
                             capture_output=True, text=True,
                             env={**os.environ, "TZ": "UTC"}).stdout
    # 2000 s after the epoch, as dumpimage prints the FIT's timestamp (UTC).
    assert listing.splitlines()[1].split(None, 1)[1].strip() == "Thu Jan  1 00:33:20 1970"


def test_a_new_timestamp_reruns_the_script_image_and_bootms_uimage_only(
        seed_inputs: Path) -> None:
    write_config(seed_inputs, BASE + "BOOT_CMD=bootm\n")
    epoch_build(seed_inputs, "1000")
    assert epoch_build(seed_inputs, "2000") == {"ib_boot_scr", "ib_xen_uimage"}
    stamp = (seed_inputs / "xen.ub").read_bytes()[8:12]
    assert int.from_bytes(stamp, "big") == 2000


# ---- disk tasks --------------------------------------------------------------------------------

def disk_rebuilt_after(inputs: Path, change: tuple[str, str], *flags: str) -> set[str]:
    config = write_config(inputs, DISK)
    assert ran(disk_image(inputs, "-t", "sd", "-o", "disk.img", *flags))
    assert ran(disk_image(inputs, "-t", "sd", "-o", "disk.img", *flags)) == set()
    old, new = change
    config.write_text(DISK.replace(old, new))
    return ran(disk_image(inputs, "-t", "sd", "-o", "disk.img", *flags))


def test_a_driver_domain_reruns_only_dom0s_partition_and_the_disk(seed_inputs: Path) -> None:
    # The xl config of domU1 lives in dom0's root filesystem; no boot file reads it.
    ran_now = disk_rebuilt_after(seed_inputs, ("NUM_DOMUS=2",
                                               "NUM_DOMUS=2\nDOMU_DRIVER_DOMAIN[1]=1"))
    assert ran_now == {"ib_partition:dom0", "ib_disk", "ib_bmap"}
    (seed_inputs / "domU1.cfg").unlink(missing_ok=True)
    subprocess.run(["debugfs", "-R", "dump /etc/xen/domU1.cfg " + str(seed_inputs / "domU1.cfg"),
                    str(seed_inputs / ".ibtasks" / "dom0.ext4")], check=True,
                   capture_output=True)
    assert "driver_domain=1" in (seed_inputs / "domU1.cfg").read_text().splitlines()


def test_a_boot_aux_file_reruns_only_the_boot_partition_and_the_disk(seed_inputs: Path) -> None:
    (seed_inputs / "BOOT.BIN").write_bytes(b"1234")
    ran_now = disk_rebuilt_after(seed_inputs, ("NUM_DOMUS=2", "NUM_DOMUS=2\nNUM_BOOT_AUX_FILE=1\n"
                                               "BOOT_AUX_FILE[0]=BOOT.BIN"))
    assert ran_now == {"ib_partition:boot", "ib_disk", "ib_bmap"}


def test_a_dos_table_reruns_only_the_disk(seed_inputs: Path) -> None:
    ran_now = disk_rebuilt_after(seed_inputs, ("NUM_DOMUS=2", "NUM_DOMUS=2\nPARTITION_TABLE=dos"))
    assert ran_now == {"ib_disk", "ib_bmap"}
    table = subprocess.run(["sfdisk", "--dump", str(seed_inputs / "disk.img")], check=True,
                           capture_output=True, text=True).stdout
    assert "label: dos" in table


def test_more_rootfs_slack_reruns_the_rootfs_partitions_and_the_disk(seed_inputs: Path) -> None:
    write_config(seed_inputs, DISK)
    ran(disk_image(seed_inputs, "-t", "sd", "-o", "disk.img"))
    ran_now = ran(disk_image(seed_inputs, "-t", "sd", "-o", "disk.img", "-s", "64"))
    assert ran_now == {"ib_partition:dom0", "ib_partition:domU1", "ib_disk", "ib_bmap"}



def test_a_renamed_domu_kernel_reruns_the_boot_partition_but_no_rootfs_partition(
    seed_inputs: Path,
) -> None:
    shutil.copytree(seed_inputs / "zynqmp-dom1", seed_inputs / "zynqmp-dom1-v2")
    ran_now = disk_rebuilt_after(seed_inputs, ("zynqmp-dom1/", "zynqmp-dom1-v2/"))
    assert {n for n in ran_now if n.startswith(("ib_partition", "ib_disk"))} == {
        "ib_partition:boot", "ib_disk"}


def test_a_renamed_dom0_kernel_reruns_the_boot_partition_but_no_rootfs_partition(
    seed_inputs: Path,
) -> None:
    shutil.copy(seed_inputs / "Image-dom0", seed_inputs / "Image-dom0-6.1")
    ran_now = disk_rebuilt_after(seed_inputs, ('"Image-dom0"', '"Image-dom0-6.1"'))
    assert {n for n in ran_now if n.startswith(("ib_partition", "ib_disk"))} == {
        "ib_partition:boot", "ib_disk"}


def test_a_grown_kernel_reruns_the_boot_partition_but_no_rootfs_partition(
    seed_inputs: Path,
) -> None:
    write_config(seed_inputs, DISK)
    assert ran(disk_image(seed_inputs, "-t", "sd", "-o", "disk.img"))
    with open(seed_inputs / "Image-dom0", "ab") as kernel:
        kernel.write(b"\0" * (1 << 20))
    ran_now = ran(disk_image(seed_inputs, "-t", "sd", "-o", "disk.img"))
    assert {n for n in ran_now if n.startswith(("ib_partition", "ib_disk"))} == {
        "ib_partition:boot", "ib_disk"}


def test_one_changed_archive_reruns_its_partition_only(seed_inputs: Path) -> None:
    write_config(seed_inputs, DISK)
    assert ran(disk_image(seed_inputs, "-t", "sd", "-o", "disk.img"))
    archive = seed_inputs / "rootfs-domU.tar.gz"
    subprocess.run(["sh", "-c", f"gzip -dc {archive} > x.tar && mkdir -p n && echo new > n/f && "
                    f"tar -rf x.tar n/f && gzip -nc x.tar > {archive} && rm -r x.tar n"],
                   cwd=seed_inputs, check=True)
    ran_now = ran(disk_image(seed_inputs, "-t", "sd", "-o", "disk.img"))
    assert ran_now == {"ib_partition:domU1", "ib_disk", "ib_bmap"}
