"""xl passthrough lines from partial device trees compiled with dtc, and driver domains.

The golden lines of tests/goldens/upstream/passthrough-xl were made by running upstream's
update_domU_cfg on the same DTB (see its README); the other expectations are computed by hand
from the cells in each test's source (frame number = address >> 12, irq = SPI + 32).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ibtasks.errors import UserError
from ibtasks.plan.passthrough import read_passthrough
from ibtasks.plan.xl_configs import XlDomU, render_xl_config

GOLDEN = Path(__file__).parent.parent / "goldens" / "upstream" / "passthrough-xl"


def compile_dts(text: str, tmp_path: Path) -> bytes:
    source = tmp_path / "partial.dts"
    source.write_text(text)
    return subprocess.run(["dtc", "-q", "-I", "dts", "-O", "dtb", str(source)], check=True,
                          capture_output=True).stdout


def partial(devices: str, cells: str = "#address-cells = <2>; #size-cells = <2>;") -> str:
    return ("/dts-v1/;\n/ {\n #address-cells = <2>;\n #size-cells = <2>;\n"
            f" passthrough {{\n  compatible = \"simple-bus\";\n  ranges;\n  {cells}\n"
            f"{devices}\n }};\n}};\n")


def test_iomem_dtdev_and_irqs_equal_upstreams_lines(tmp_path: Path) -> None:
    dtb = compile_dts((GOLDEN / "partial.dts").read_text(), tmp_path)
    lines = read_passthrough(dtb, "partial.dtb", "DOMU_PASSTHROUGH_DTB[1]").xl_lines()
    assert lines[0] == 'device_tree="/etc/xen/partial.dtb"'
    assert "\n".join(lines[1:]) + "\n" == (GOLDEN / "upstream-lines.txt").read_text()


def test_an_xl_config_with_passthrough_and_a_driver_domain_has_upstreams_line_order(
        tmp_path: Path) -> None:
    dtb = compile_dts(partial(
        '  uart@9000000 { xen,reg = <0x0 0x9000000 0x0 0x1000 0x0 0x9000000>;'
        ' xen,path = "/pl011@9000000"; interrupts = <0 1 4>; };'), tmp_path)
    domu = XlDomU(index=1, kernel="dom1/Image", ramdisk=None, memory_mib=256, vcpus=2,
                  cmd=None, noboot=True, rootfs_partition=3, driver_domain=True,
                  passthrough=read_passthrough(dtb, "uart.dtb", "x"))
    assert render_xl_config(domu, "load virtio 0:1") == (
        'name="domU1"\n'
        "memory=256\n"
        "vcpus=2\n"
        "driver_domain=1\n"
        "# mount /dev/vda1 /boot\n"
        'kernel="/boot/dom1/Image"\n'
        'extra="console=hvc0 root=/dev/xvda"\n'
        'disk=["/dev/vda3,,xvda"]\n'
        'device_tree="/etc/xen/uart.dtb"\n'
        'iomem = [ "0x9000,1" ]\n'
        'dtdev = [ "/pl011@9000000" ]\n'
        "irqs = [ 33 ]\n"
    )


def test_addresses_above_4_gib_keep_their_high_cell(tmp_path: Path) -> None:
    # Upstream reads only the low cell and masks the frame number to 20 bits: 0x0,1@0x0 here.
    dtb = compile_dts(partial(
        "  mem@800000000 { xen,reg = <0x8 0x0 0x0 0x200000 0x0 0x80000000>; };"), tmp_path)
    assert read_passthrough(dtb, "p.dtb", "x").iomem == ("0x800000,200@0x80000",)


def test_one_address_cell_and_one_size_cell_are_read_as_declared(tmp_path: Path) -> None:
    dtb = compile_dts(partial("  dev@ff000000 { xen,reg = <0xff000000 0x3000 0xff000000>; };",
                              "#address-cells = <1>; #size-cells = <1>;"), tmp_path)
    assert read_passthrough(dtb, "p.dtb", "x").iomem == ("0xFF000,3",)


def test_a_device_without_iommu_gets_no_dtdev_and_empty_lists_are_left_out(
        tmp_path: Path) -> None:
    dtb = compile_dts(partial(
        '  dma@fd500000 { xen,reg = <0x0 0xfd500000 0x0 0x1000 0x0 0xfd500000>;'
        ' xen,path = "/axi/dma@fd500000"; xen,force-assign-without-iommu; };'), tmp_path)
    assert read_passthrough(dtb, "p.dtb", "x").xl_lines() == [
        'device_tree="/etc/xen/p.dtb"', 'iomem = [ "0xFD500,1" ]']


@pytest.mark.parametrize(("device", "message"), [
    ("  d { xen,reg = <0x0 0x9000800 0x0 0x1000 0x0 0x9000800>; };",
     "DOMU_PASSTHROUGH_DTB[0]: /passthrough/d: xen,reg <0x9000800 0x1000 0x9000800> is not "
     "whole 4 KiB pages, which is all xl's iomem can map"),
    ("  d { xen,reg = <0x0 0x9000000 0x0 0x1000>; };",
     "DOMU_PASSTHROUGH_DTB[0]: /passthrough/d: xen,reg has 16 bytes, not a multiple of 2+2+2 "
     "cells"),
    ("  d { interrupts = <1 9 4>; };",
     "DOMU_PASSTHROUGH_DTB[0]: /passthrough/d: interrupt <1 9 ...> is not a shared peripheral "
     "interrupt (type 0); only SPIs can be assigned"),
    ("  d { interrupts = <0 9>; };",
     "DOMU_PASSTHROUGH_DTB[0]: /passthrough/d: interrupts has 2 cells, expected GIC triplets "
     "<type number flags>"),
    ('  d { xen,path = "serial0"; };',
     "DOMU_PASSTHROUGH_DTB[0]: /passthrough/d: xen,path 'serial0' is not a device-tree path"),
])
def test_what_xl_cannot_express_is_refused(device: str, message: str, tmp_path: Path) -> None:
    dtb = compile_dts(partial(device), tmp_path)
    with pytest.raises(UserError) as info:
        read_passthrough(dtb, "p.dtb", "DOMU_PASSTHROUGH_DTB[0]")
    assert str(info.value) == message


def test_a_partial_dtb_without_passthrough_node_is_refused(tmp_path: Path) -> None:
    dtb = compile_dts("/dts-v1/;\n/ { model = \"x\"; };\n", tmp_path)
    with pytest.raises(UserError) as info:
        read_passthrough(dtb, "p.dtb", "config:9: DOMU_PASSTHROUGH_DTB[2]")
    assert str(info.value) == ("config:9: DOMU_PASSTHROUGH_DTB[2]: the partial device tree has "
                               "no /passthrough node")


def test_a_file_that_is_no_dtb_is_refused() -> None:
    with pytest.raises(UserError, match="not a flattened device tree"):
        read_passthrough(b"hello", "p.dtb", "DOMU_PASSTHROUGH_DTB[0]")
