"""One DTB model for every device tree ibtasks reads or writes (ibtasks/formats/dtb/).

The rule: the board's DTB, domU partial DTBs and FIT images all go through `formats.dtb.tree`,
which reads FDT_NOP tags as libfdt does, keeps each tree's memreserve entries to itself (the
`fdt` package shares one list between parses), and writes FITs byte for byte as the former
hand-written FIT writer did (tests/goldens/fit-bytes/, made before the merge, see its README).
Checked with dtc, fdtget and dumpimage.
"""

from __future__ import annotations

import struct
import subprocess
from dataclasses import replace
from pathlib import Path

import fdt
import pytest

from ibtasks.errors import UserError
from ibtasks.formats.dtb.edits import Cells, MakeNode, SetProp, Strings, apply_edits
from ibtasks.formats.dtb.facts import check_host_dtb, read_dt_facts, read_reserved_regions
from ibtasks.formats.fit import build_fit, parse_fit
from ibtasks.plan.passthrough import read_passthrough
from tests.conftest import REPO
from tests.fit_cases import CASES

GOLDENS = REPO / "tests" / "goldens" / "fit-bytes"
NOP = struct.pack(">I", 4)

BOARD_DTS = """/dts-v1/;
/memreserve/ %(reserve)s;
/ {
    #address-cells = <2>;
    #size-cells = <2>;
    chosen { };
    cpus {
        #address-cells = <1>;
        #size-cells = <0>;
        cpu0: cpu@0 { device_type = "cpu"; reg = <0>; };
        cpu@1 { device_type = "cpu"; reg = <1>; };
    };
    memory@40000000 {
        device_type = "memory";
        reg = <0x0 0x40000000 0x0 0x40000000>;
    };
    serial@9000000 { interrupt-parent = <&cpu0>; };
};
"""

PARTIAL_DTS = """/dts-v1/;
/ {
    #address-cells = <2>;
    #size-cells = <1>;
    passthrough {
        #address-cells = <2>;
        #size-cells = <1>;
        ethernet@ff0e0000 {
            xen,reg = <0x0 0xff0e0000 0x1000 0x0 0xff0e0000>;
            xen,path = "/amba/ethernet@ff0e0000";
            interrupts = <0 63 4>;
        };
    };
};
"""

EDITS = (
    SetProp("/chosen", "xen,xen-bootargs", Strings(("console=dtuart",))),
    MakeNode("/chosen", "dom0@40800000"),
    SetProp("/chosen/dom0@40800000", "reg", Cells((0, 0x40800000, 0, 0x100000))),
)


def run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def compile_dts(tmp_path: Path, text: str, name: str = "board") -> bytes:
    (tmp_path / f"{name}.dts").write_text(text)
    out = tmp_path / f"{name}.dtb"
    run("dtc", "-q", "-I", "dts", "-O", "dtb", "-o", str(out), str(tmp_path / f"{name}.dts"))
    return out.read_bytes()


def decompile(tmp_path: Path, blob: bytes, name: str) -> str:
    path = tmp_path / f"{name}.dtb"
    path.write_bytes(blob)
    return run("dtc", "-q", "-I", "dtb", "-O", "dts", str(path))


def with_nops(blob: bytes, count: int = 3) -> bytes:
    """`blob` with `count` FDT_NOP tags after the root's FDT_BEGIN_NODE and before every
    FDT_END_NODE of the root's children; the header's offsets and sizes moved to match."""
    header = list(struct.unpack_from(">10I", blob))
    off_struct, off_strings, size_struct = header[2], header[3], header[9]
    block = blob[off_struct:off_struct + size_struct]
    # The root is FDT_BEGIN_NODE + one zero word (an empty name): NOPs follow it.
    block = block[:8] + NOP * count + block[8:]
    grown = len(NOP) * count
    header[1] += grown  # totalsize
    header[3] += grown if off_strings > off_struct else 0  # off_dt_strings
    header[9] += grown  # size_dt_struct
    return (struct.pack(">10I", *header) + blob[40:off_struct] + block
            + blob[off_struct + size_struct:])


# --- FIT images -----------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_fit_bytes_equal_those_of_the_former_fit_writer(case: str, tmp_path: Path) -> None:
    ours = build_fit(CASES[case]())
    assert ours == (GOLDENS / f"{case}.itb").read_bytes()
    path = tmp_path / f"{case}.itb"
    path.write_bytes(ours)
    listing = subprocess.run(["dumpimage", "-l", str(path)], check=True, capture_output=True,
                             text=True, env={"TZ": "UTC", "PATH": "/usr/bin:/bin"}).stdout
    assert listing == (GOLDENS / f"{case}.dumpimage-l").read_text()


@pytest.mark.parametrize("case", sorted(CASES))
def test_parsing_a_built_fit_gives_back_every_image_and_configuration(case: str) -> None:
    fit = CASES[case]()
    assert parse_fit(build_fit(fit), case) == fit


def test_a_fit_with_nop_tags_is_parsed_as_dumpimage_lists_it(tmp_path: Path) -> None:
    fit = CASES["every-type"]()
    plain, noppy = tmp_path / "plain.itb", tmp_path / "nop.itb"
    plain.write_bytes(build_fit(fit))
    noppy.write_bytes(with_nops(plain.read_bytes()))
    assert noppy.read_bytes() != plain.read_bytes()
    with pytest.raises(Exception, match="Unknown Tag: 4"):
        fdt.parse_dtb(noppy.read_bytes())  # why the model parses blobs itself
    assert run("dumpimage", "-l", str(noppy)) == run("dumpimage", "-l", str(plain))
    assert parse_fit(noppy.read_bytes(), "nop.itb") == fit


def test_a_fit_image_of_40_mib_keeps_its_data_byte_for_byte(tmp_path: Path) -> None:
    kernel = bytes(range(256)) * (40 * 1024 * 4)  # 40 MiB
    fit = CASES["above-4-gib"]()
    big = replace(fit, images=(replace(fit.images[0], data=kernel), *fit.images[1:]))
    path = tmp_path / "big.itb"
    path.write_bytes(build_fit(big))
    run("dumpimage", "-T", "flat_dt", "-p", "0", "-o", str(tmp_path / "kernel"), str(path))
    assert (tmp_path / "kernel").read_bytes() == kernel
    assert parse_fit(path.read_bytes()) == big


# --- DTBs with FDT_NOP tags -----------------------------------------------------------------


def test_facts_of_a_dtb_with_nop_tags_are_those_fdtget_reads(tmp_path: Path) -> None:
    board = compile_dts(tmp_path, BOARD_DTS % {"reserve": "0x1000 0x2000"})
    noppy = tmp_path / "nop.dtb"
    noppy.write_bytes(with_nops(board))
    facts = read_dt_facts(noppy.read_bytes(), "nop.dtb", ("/serial@9000000", "/missing"))
    assert facts == read_dt_facts(board, "board.dtb", ("/serial@9000000", "/missing"))
    phandle = int(run("fdtget", "-t", "x", str(noppy), "/cpus/cpu@0", "phandle"), 16)
    assert facts.phandles == (phandle,)
    assert facts.cpus == {"cpu@0": phandle, "cpu@1": None}
    assert facts.nodes == {"/serial@9000000": True, "/missing": False}
    assert run("fdtget", "-t", "x", str(noppy), "/memory@40000000", "reg").split() == [
        "0", "40000000", "0", "40000000"]
    assert facts.memory == ((0x40000000, 0x40000000),)
    assert read_reserved_regions(noppy.read_bytes(), "nop.dtb") == [(0x1000, 0x2000)]


def test_a_dtb_with_nop_tags_is_edited_as_fdtput_edits_it(tmp_path: Path) -> None:
    noppy = tmp_path / "nop.dtb"
    noppy.write_bytes(with_nops(compile_dts(tmp_path, BOARD_DTS % {"reserve": "0x1000 0x2000"})))
    ours = apply_edits(noppy.read_bytes(), EDITS, "nop.dtb")
    run("fdtput", "-t", "s", str(noppy), "/chosen", "xen,xen-bootargs", "console=dtuart")
    run("fdtput", "-c", str(noppy), "/chosen/dom0@40800000")
    run("fdtput", "-t", "x", str(noppy), "/chosen/dom0@40800000", "reg",
        "0", "40800000", "0", "100000")
    assert decompile(tmp_path, ours, "ours") == decompile(tmp_path, noppy.read_bytes(), "theirs")


def test_a_partial_dtb_and_an_overlay_with_nop_tags_are_read_as_without(tmp_path: Path) -> None:
    partial = compile_dts(tmp_path, PARTIAL_DTS, "partial")
    assert (read_passthrough(with_nops(partial), "partial.dtb", "DOMU_PASSTHROUGH_DTB[0]")
            == read_passthrough(partial, "partial.dtb", "DOMU_PASSTHROUGH_DTB[0]"))
    overlay = compile_dts(tmp_path, "/dts-v1/;\n/plugin/;\n&{/} { extra { }; };\n", "overlay")
    with pytest.raises(UserError) as error:
        check_host_dtb(with_nops(overlay), "DEVICE_TREE", "overlay.dtbo")
    assert str(error.value).startswith(
        "DEVICE_TREE: overlay.dtbo is a DT overlay (it has /fragment@0), not a board's DTB")


# --- memreserve entries ---------------------------------------------------------------------


def test_three_dtbs_edited_in_one_process_keep_their_own_memreserve_entries(
        tmp_path: Path) -> None:
    reserves = ("0x1000 0x2000", "0x48000000 0x100000", "0x880000000 0x200000")
    boards = [compile_dts(tmp_path, BOARD_DTS % {"reserve": r}, f"board{n}")
              for n, r in enumerate(reserves)]
    fdt.parse_dtb(boards[0])  # fills the fdt package's shared list, as any caller may have
    for n, (board, reserve) in enumerate(zip(boards, reserves, strict=True)):
        address, size = (int(word, 16) for word in reserve.split())
        assert read_reserved_regions(board, f"board{n}") == [(address, size)]
        text = decompile(tmp_path, apply_edits(board, EDITS, f"board{n}"), f"out{n}")
        assert [line for line in text.splitlines() if line.startswith("/memreserve/")] == [
            f"/memreserve/\t{address:#018x} {size:#018x};"]
