"""The offline DTB edits against libfdt's own tools: `fdtput` on a copy must give the same tree.

Inputs are tiny trees compiled with `dtc`; outputs are compared as `dtc -I dtb -O dts` text (order
included) and read back with `fdtget`.
"""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import fdt
import pytest

from ibtasks.errors import UserError
from ibtasks.formats.dtb.edits import (
    Cells,
    DtEdit,
    Flag,
    MakeNode,
    SetProp,
    Strings,
    apply_edits,
    reg_cells,
)
from ibtasks.formats.dtb.facts import read_reserved_regions
from ibtasks.formats.dtb.tree import check_dtb

SOURCE = "DEVICE_TREE (board.dtb)"

BOARD_DTS = """/dts-v1/;
/memreserve/ 0x1000 0x2000;
/ {
    #address-cells = <2>;
    #size-cells = <2>;
    compatible = "test,board";
    chosen {
        bootargs = "console=ttyAMA0";
        stdout-path = "/pl011@9000000";
    };
    memory@40000000 {
        device_type = "memory";
        reg = <0x0 0x40000000 0x0 0x40000000>;
    };
};
"""

# What ibtasks makes for Xen, a dom0 and one domU, plus a replaced property and a flag.
XEN_EDITS: tuple[DtEdit, ...] = (
    SetProp("/chosen", "#address-cells", Cells((2,))),
    SetProp("/chosen", "#size-cells", Cells((2,))),
    SetProp("/chosen", "xen,xen-bootargs", Strings(("console=dtuart dtuart=serial0 dom0_mem=1G",))),
    MakeNode("/chosen", "dom0@40800000"),
    SetProp(
        "/chosen/dom0@40800000",
        "compatible",
        Strings(("xen,linux-zimage", "xen,multiboot-module", "multiboot,module")),
    ),
    SetProp("/chosen/dom0@40800000", "reg", reg_cells(0x40800000, 0x1000000)),
    SetProp("/chosen", "xen,dom0-bootargs", Strings(("console=hvc0 root=/dev/ram0",))),
    MakeNode("/chosen", "domU0"),
    SetProp("/chosen/domU0", "compatible", Strings(("xen,domain",))),
    SetProp("/chosen/domU0", "#address-cells", Cells((2,))),
    SetProp("/chosen/domU0", "#size-cells", Cells((2,))),
    SetProp("/chosen/domU0", "memory", Cells((0, 0x80000))),
    SetProp("/chosen/domU0", "cpus", Cells((1,))),
    MakeNode("/chosen/domU0", "module@41000000"),
    SetProp(
        "/chosen/domU0/module@41000000",
        "compatible",
        Strings(("multiboot,kernel", "multiboot,module")),
    ),
    SetProp("/chosen/domU0/module@41000000", "reg", reg_cells(0x8_41000000, 0x1_00400000)),
    SetProp("/chosen/domU0/module@41000000", "bootargs", Strings(("console=ttyAMA0",))),
    MakeNode("/chosen", "domU1"),
    SetProp("/chosen", "bootargs", Strings(("replaced",))),
    SetProp("/chosen/domU0", "direct-map", Flag()),
)


def compile_dts(tmp_path: Path, text: str, *options: str, name: str = "in") -> bytes:
    (tmp_path / f"{name}.dts").write_text(text)
    out = tmp_path / f"{name}.dtb"
    run(
        "dtc",
        "-q",
        *options,
        "-I",
        "dts",
        "-O",
        "dtb",
        "-o",
        str(out),
        str(tmp_path / f"{name}.dts"),
    )
    return out.read_bytes()


def decompile(tmp_path: Path, blob: bytes, name: str) -> str:
    path = tmp_path / f"{name}.dtb"
    path.write_bytes(blob)
    return run("dtc", "-q", "-I", "dtb", "-O", "dts", str(path))


def run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def fdtput_edits(path: Path, edits: tuple[DtEdit, ...]) -> None:
    """The same edits made by libfdt itself, one fdtput call each."""
    for edit in edits:
        if isinstance(edit, MakeNode):
            run("fdtput", "-c", str(path), edit.path)
        elif isinstance(edit.value, Strings):
            run("fdtput", "-t", "s", str(path), edit.node, edit.name, *edit.value.items)
        elif isinstance(edit.value, Cells):
            cells = [f"{cell:x}" for cell in edit.value.items]
            run("fdtput", "-t", "x", str(path), edit.node, edit.name, *cells)
        else:  # fdtput with no value writes an empty property
            run("fdtput", str(path), edit.node, edit.name)


def blocks(blob: bytes) -> tuple[bytes, bytes, bytes]:
    """The memory reservation, structure and strings blocks named by a DTB header."""
    _, _, off_struct, off_strings, off_rsv, _, _, _, size_strings, size_struct = struct.unpack(
        ">10I", blob[:40]
    )
    return (
        blob[off_rsv:off_struct],
        blob[off_struct : off_struct + size_struct],
        blob[off_strings : off_strings + size_strings],
    )


def zero_padding(block: bytes) -> bytes:
    """A structure block with the alignment bytes after names and values zeroed.

    libfdt leaves whatever was in memory there (fdtput's output holds stray bytes), so only
    the meaningful bytes can be compared.
    """
    out = bytearray(block)
    at = 0
    while at < len(block):
        tag = struct.unpack_from(">I", block, at)[0]
        at += 4
        if tag == 1:  # FDT_BEGIN_NODE: name, NUL, padding
            end = block.index(b"\0", at) + 1
        elif tag == 3:  # FDT_PROP: length, name offset, value, padding
            end = at + 8 + struct.unpack_from(">I", block, at)[0]
        else:
            continue
        aligned = (end + 3) & ~3
        out[end:aligned] = bytes(aligned - end)
        at = aligned
    return bytes(out)


def nop_out_property(blob: bytes, value: bytes) -> bytes:
    """Overwrite the 4-byte property holding `value` with FDT_NOP tags, as fdt_nop_property does."""
    at = blob.index(value) - 12
    assert struct.unpack_from(">II", blob, at) == (3, 4)  # test setup: FDT_PROP, len 4
    return blob[:at] + struct.pack(">IIII", 4, 4, 4, 4) + blob[at + 16 :]


# --- edits against fdtput -------------------------------------------------------------------


def test_edits_give_the_same_tree_as_fdtput_in_the_same_order(tmp_path: Path) -> None:
    board = compile_dts(tmp_path, BOARD_DTS)
    ours = apply_edits(board, XEN_EDITS, SOURCE)
    theirs = tmp_path / "fdtput.dtb"
    theirs.write_bytes(board)
    fdtput_edits(theirs, XEN_EDITS)
    assert decompile(tmp_path, ours, "ours") == decompile(tmp_path, theirs.read_bytes(), "theirs")


def test_edits_give_fdtputs_blocks_byte_for_byte_but_for_padding(tmp_path: Path) -> None:
    board = compile_dts(tmp_path, BOARD_DTS)
    theirs = tmp_path / "fdtput.dtb"
    theirs.write_bytes(board)
    fdtput_edits(theirs, XEN_EDITS)
    ours_rsv, ours_struct, ours_strings = blocks(apply_edits(board, XEN_EDITS, SOURCE))
    rsv, struct_block, strings = blocks(theirs.read_bytes())
    assert (ours_rsv, ours_strings) == (rsv, strings)
    assert ours_struct == zero_padding(struct_block)


def test_new_nodes_come_first_and_replaced_property_stays_in_place(tmp_path: Path) -> None:
    out = tmp_path / "out.dtb"
    out.write_bytes(apply_edits(compile_dts(tmp_path, BOARD_DTS), XEN_EDITS, SOURCE))
    assert run("fdtget", "-l", str(out), "/chosen").split() == ["domU1", "domU0", "dom0@40800000"]
    assert run("fdtget", "-p", str(out), "/chosen").split() == [
        "xen,dom0-bootargs",
        "xen,xen-bootargs",
        "#size-cells",
        "#address-cells",
        "bootargs",
        "stdout-path",
    ]
    assert run("fdtget", str(out), "/chosen", "bootargs") == "replaced\n"


def test_values_read_back_with_fdtget(tmp_path: Path) -> None:
    out = tmp_path / "out.dtb"
    out.write_bytes(apply_edits(compile_dts(tmp_path, BOARD_DTS), XEN_EDITS, SOURCE))
    module = "/chosen/domU0/module@41000000"
    assert run("fdtget", "-t", "x", str(out), module, "reg") == "8 41000000 1 400000\n"
    assert run("fdtget", str(out), module, "compatible") == "multiboot,kernel multiboot,module\n"
    assert run("fdtget", "-t", "x", str(out), "/chosen/domU0", "memory") == "0 80000\n"
    assert run("fdtget", "-t", "bx", str(out), "/chosen/domU0", "direct-map") == "\n"
    assert run("fdtget", str(out), "/chosen", "xen,xen-bootargs") == (
        "console=dtuart dtuart=serial0 dom0_mem=1G\n"
    )


def test_memreserve_boot_cpuid_and_version_are_kept(tmp_path: Path) -> None:
    board = compile_dts(tmp_path, BOARD_DTS, "-b", "3")
    out = apply_edits(board, XEN_EDITS, SOURCE)
    assert blocks(out)[0] == blocks(board)[0]  # the 0x1000+0x2000 entry and the terminator
    assert struct.unpack(">IIII", out[16:32]) == struct.unpack(">IIII", board[16:32])
    assert struct.unpack_from(">I", out, 28) == (3,)
    assert decompile(tmp_path, out, "out").startswith(
        "/dts-v1/;\n\n/memreserve/\t0x0000000000001000 0x0000000000002000;\n/ {"
    )


def test_version_16_input_stays_version_16_and_dtc_reads_it(tmp_path: Path) -> None:
    board = compile_dts(tmp_path, BOARD_DTS, "-V", "16")
    out = apply_edits(board, XEN_EDITS, SOURCE)
    assert struct.unpack_from(">II", out, 20) == (16, 16)
    modern = apply_edits(compile_dts(tmp_path, BOARD_DTS, name="v17"), XEN_EDITS, SOURCE)
    assert decompile(tmp_path, out, "v16out") == decompile(tmp_path, modern, "v17out")


def test_an_unchanged_tree_is_written_back_byte_for_byte(tmp_path: Path) -> None:
    board = compile_dts(tmp_path, BOARD_DTS)
    assert apply_edits(board, (), SOURCE) == board


# --- the fdt package's bugs -----------------------------------------------------------------


def test_parsing_three_dtbs_does_not_grow_memreserve_entries(tmp_path: Path) -> None:
    board = compile_dts(tmp_path, BOARD_DTS)
    fdt.parse_dtb(board)  # fills fdt's shared default list, as any other caller may have
    for attempt in range(3):
        assert read_reserved_regions(board, SOURCE) == [(0x1000, 0x2000)]
        text = decompile(tmp_path, apply_edits(board, XEN_EDITS, SOURCE), f"out{attempt}")
        assert text.count("/memreserve/") == 1


def test_dtb_with_nop_tags_is_read_and_edited_like_fdtput_does(tmp_path: Path) -> None:
    dts = BOARD_DTS.replace('compatible = "test,board";', "junk = <0xdeadbeef>;")
    board = nop_out_property(compile_dts(tmp_path, dts), b"\xde\xad\xbe\xef")
    noppy = tmp_path / "nop.dtb"
    noppy.write_bytes(board)
    assert "junk" not in run("fdtget", "-p", str(noppy), "/")
    with pytest.raises(Exception, match="Unknown Tag: 4"):
        fdt.parse_dtb(board)  # why we parse it ourselves
    check_dtb(board, SOURCE)
    assert read_reserved_regions(board, SOURCE) == [(0x1000, 0x2000)]
    fdtput_edits(noppy, XEN_EDITS)
    ours = apply_edits(board, XEN_EDITS, SOURCE)
    assert decompile(tmp_path, ours, "ours") == decompile(tmp_path, noppy.read_bytes(), "theirs")
    assert run("fdtget", str(tmp_path / "ours.dtb"), "/memory@40000000", "device_type") == (
        "memory\n"
    )


# --- reserved regions -----------------------------------------------------------------------

RESERVED_DTS = """/dts-v1/;
/memreserve/ 0x48000000 0x100000;
/ {
    #address-cells = <2>;
    #size-cells = <2>;
    reserved-memory {
        #address-cells = <%(ac)d>;
        #size-cells = <%(sc)d>;
        ranges;
        firmware@%(fw_at)s {
            reg = <%(fw)s>;
            no-map;
        };
        carveout@%(co_at)s {
            reg = <%(co)s>;
        };
        pool {
            compatible = "shared-dma-pool";
            size = <%(pool)s>;
        };
    };
};
"""


def test_reserved_regions_with_one_cell_each_are_read_with_memreserve(tmp_path: Path) -> None:
    dts = RESERVED_DTS % dict(
        ac=1,
        sc=1,
        fw_at="50000000",
        fw="0x50000000 0x200000",
        co_at="60000000",
        co="0x60000000 0x1000 0x61000000 0x2000",
        pool="0x400000",
    )
    board = tmp_path / "in.dtb"
    board.write_bytes(compile_dts(tmp_path, dts))
    assert run("fdtget", "-t", "x", str(board), "/reserved-memory/carveout@60000000", "reg") == (
        "60000000 1000 61000000 2000\n"
    )
    assert read_reserved_regions(board.read_bytes(), SOURCE) == [
        (0x48000000, 0x100000),
        (0x50000000, 0x200000),
        (0x60000000, 0x1000),
        (0x61000000, 0x2000),
    ]


def test_reserved_regions_with_two_cells_hold_64_bit_values(tmp_path: Path) -> None:
    dts = RESERVED_DTS % dict(
        ac=2,
        sc=2,
        fw_at="880000000",
        fw="0x8 0x80000000 0x1 0x0",
        co_at="30000000",
        co="0x0 0x30000000 0x0 0x10000",
        pool="0x0 0x400000",
    )
    board = tmp_path / "in.dtb"
    board.write_bytes(compile_dts(tmp_path, dts))
    assert run("fdtget", "-t", "x", str(board), "/reserved-memory/firmware@880000000", "reg") == (
        "8 80000000 1 0\n"
    )
    assert read_reserved_regions(board.read_bytes(), SOURCE) == [
        (0x30000000, 0x10000),
        (0x48000000, 0x100000),
        (0x8_80000000, 0x1_00000000),
    ]


def test_reserved_memory_without_cells_uses_the_roots_then_two_and_one(tmp_path: Path) -> None:
    roots = """/dts-v1/;
/ {
    #address-cells = <1>;
    #size-cells = <1>;
    reserved-memory { ranges; r@100 { reg = <0x100 0x10>; }; };
};
"""
    assert read_reserved_regions(compile_dts(tmp_path, roots), SOURCE) == [(0x100, 0x10)]
    defaults = """/dts-v1/;
/ {
    reserved-memory { r@100 { reg = <0x0 0x100 0x10>; }; };
};
"""
    assert read_reserved_regions(compile_dts(tmp_path, defaults, name="d"), SOURCE) == [
        (0x100, 0x10)
    ]


def test_a_tree_without_reserved_memory_has_only_its_memreserve_entries(tmp_path: Path) -> None:
    assert read_reserved_regions(compile_dts(tmp_path, BOARD_DTS), SOURCE) == [(0x1000, 0x2000)]


def test_reserved_reg_of_the_wrong_length_is_rejected(tmp_path: Path) -> None:
    dts = """/dts-v1/;
/ {
    reserved-memory { #address-cells = <2>; #size-cells = <2>; r@100 { reg = <0x0 0x100 0x10>; }; };
};
"""
    with pytest.raises(UserError) as error:
        read_reserved_regions(compile_dts(tmp_path, dts), SOURCE)
    assert str(error.value) == (
        "DEVICE_TREE (board.dtb): /reserved-memory/r@100: reg has 12 bytes, "
        "not a multiple of 2+2 cells"
    )


# --- errors ---------------------------------------------------------------------------------


def error_of(board: bytes, edits: tuple[DtEdit, ...]) -> str:
    with pytest.raises(UserError) as error:
        apply_edits(board, edits, SOURCE)
    return str(error.value)


def test_setting_a_property_of_a_missing_node_is_rejected(tmp_path: Path) -> None:
    board = compile_dts(tmp_path, BOARD_DTS)
    assert error_of(board, (SetProp("/chosen/domU9", "cpus", Cells((1,))),)) == (
        "DEVICE_TREE (board.dtb): cannot apply 'fdt set /chosen/domU9 cpus': "
        "node /chosen/domU9 does not exist"
    )


def test_making_a_node_under_a_missing_parent_is_rejected(tmp_path: Path) -> None:
    board = compile_dts(tmp_path, BOARD_DTS)
    assert error_of(board, (MakeNode("/chosen/domU0", "module@41000000"),)) == (
        "DEVICE_TREE (board.dtb): cannot apply 'fdt mknod /chosen/domU0 module@41000000': "
        "node /chosen/domU0 does not exist"
    )


def test_making_a_node_that_exists_is_rejected_as_fdtput_does(tmp_path: Path) -> None:
    board = tmp_path / "in.dtb"
    board.write_bytes(compile_dts(tmp_path, BOARD_DTS))
    assert error_of(board.read_bytes(), (MakeNode("/", "chosen"),)) == (
        "DEVICE_TREE (board.dtb): cannot apply 'fdt mknod / chosen': / already has a node "
        "chosen (libfdt: FDT_ERR_EXISTS); remove it from the device tree"
    )
    fdtput = subprocess.run(
        ["fdtput", "-c", str(board), "/chosen"], capture_output=True, text=True, check=False
    )
    assert fdtput.returncode != 0 and "FDT_ERR_EXISTS" in fdtput.stderr


def test_making_a_node_whose_name_matches_without_unit_address_is_rejected(tmp_path: Path) -> None:
    # libfdt matches `memory` against `memory@40000000`, so U-Boot's mknod fails there too.
    board = tmp_path / "in.dtb"
    board.write_bytes(compile_dts(tmp_path, BOARD_DTS))
    assert error_of(board.read_bytes(), (MakeNode("/", "memory"),)) == (
        "DEVICE_TREE (board.dtb): cannot apply 'fdt mknod / memory': / already has a node "
        "memory@40000000 (libfdt: FDT_ERR_EXISTS); remove it from the device tree"
    )
    fdtput = subprocess.run(
        ["fdtput", "-c", str(board), "/memory"], capture_output=True, text=True, check=False
    )
    assert fdtput.returncode != 0 and "FDT_ERR_EXISTS" in fdtput.stderr


def test_a_file_that_is_not_a_dtb_is_rejected() -> None:
    with pytest.raises(UserError) as error:
        check_dtb(b"\x7fELF\x02\x01\x01" + bytes(64), SOURCE)
    assert str(error.value) == (
        "DEVICE_TREE (board.dtb): not a flattened device tree "
        "(starts with 7f454c46, expected magic d00dfeed)"
    )


def test_a_truncated_dtb_is_rejected_as_dtc_rejects_it(tmp_path: Path) -> None:
    board = compile_dts(tmp_path, BOARD_DTS)
    cut = tmp_path / "cut.dtb"
    cut.write_bytes(board[:-8])
    with pytest.raises(UserError) as error:
        check_dtb(cut.read_bytes(), SOURCE)
    assert str(error.value) == (
        f"DEVICE_TREE (board.dtb): truncated device tree: its header says {len(board):#x} "
        f"({len(board)}) bytes, the file has {len(board) - 8:#x} ({len(board) - 8})"
    )
    dtc = subprocess.run(["dtc", "-I", "dtb", "-O", "dts", str(cut)], capture_output=True)
    assert dtc.returncode != 0


def test_an_unknown_tag_is_rejected_as_corrupt(tmp_path: Path) -> None:
    dts = BOARD_DTS.replace('compatible = "test,board";', "junk = <0xdeadbeef>;")
    board = compile_dts(tmp_path, dts)
    at = board.index(b"\xde\xad\xbe\xef") - 12
    broken = board[:at] + struct.pack(">I", 7) + board[at + 4 :]
    off_struct = struct.unpack_from(">I", board, 8)[0]
    with pytest.raises(UserError) as error:
        check_dtb(broken, SOURCE)
    assert str(error.value) == (
        "DEVICE_TREE (board.dtb): corrupt device tree: "
        f"unknown tag 0x7 at {at - off_struct:#x} of the structure block"
    )


def test_every_truncation_and_byte_flip_gives_a_user_error_or_a_tree(tmp_path: Path) -> None:
    board = compile_dts(tmp_path, BOARD_DTS)
    damaged = [board[:length] for length in range(len(board))]
    damaged += [
        board[:at] + bytes([board[at] ^ 0xFF]) + board[at + 1 :] for at in range(len(board))
    ]
    for blob in damaged:
        try:
            apply_edits(blob, XEN_EDITS, SOURCE)
            read_reserved_regions(blob, SOURCE)
        except UserError as error:
            assert str(error).startswith(f"{SOURCE}: ") and "\n" not in str(error)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            SetProp("chosen", "cpus", Cells((1,))),
            "cannot apply 'fdt set chosen cpus': chosen is not an absolute path",
        ),
        (
            MakeNode("/chosen", "a/b"),
            "cannot apply 'fdt mknod /chosen a/b': invalid node name 'a/b'",
        ),
        (
            SetProp("/chosen", "bad\x01name", Flag()),
            "cannot apply 'fdt set /chosen bad\x01name': invalid property name 'bad\\x01name'",
        ),
        (
            SetProp("/chosen", "bootargs", Strings(("a\0b",))),
            "cannot apply 'fdt set /chosen bootargs': a string holds a NUL byte",
        ),
    ],
)
def test_edits_that_libfdt_could_not_express_are_rejected(
    tmp_path: Path, edit: DtEdit, message: str
) -> None:
    assert error_of(compile_dts(tmp_path, BOARD_DTS), (edit,)) == f"{SOURCE}: {message}"


def test_a_dtb_older_than_version_16_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(UserError) as error:
        check_dtb(compile_dts(tmp_path, BOARD_DTS, "-V", "3"), SOURCE)
    assert str(error.value) == (
        f"{SOURCE}: device tree version 3 (last compatible 1) is not supported; "
        "recompile it with dtc (version 17)"
    )


def test_a_dtb_shorter_than_its_header_is_rejected() -> None:
    with pytest.raises(UserError) as error:
        check_dtb(bytes.fromhex("d00dfeed00000100"), SOURCE)
    assert str(error.value) == f"{SOURCE}: truncated device tree: 8 bytes, shorter than its header"


def test_qemu_virt_dtb_is_edited_like_fdtput_does(tmp_path: Path) -> None:
    # A realistic tree (phandles, interrupts, 1 MiB of free space) that QEMU writes in 40 ms.
    virt = tmp_path / "virt.dtb"
    machine = f"virt,gic-version=3,virtualization=on,dumpdtb={virt}"
    # No NIC: its option ROM (efi-virtio.rom, package ipxe-qemu) is not installed by .ci/run.
    run("qemu-system-aarch64", "-machine", machine, "-cpu", "cortex-a57", "-m", "1024",
        "-nic", "none")
    board = virt.read_bytes()
    ours = apply_edits(board, XEN_EDITS, SOURCE)
    fdtput_edits(virt, XEN_EDITS)
    ours_rsv, ours_struct, ours_strings = blocks(ours)
    rsv, struct_block, strings = blocks(virt.read_bytes())
    assert (ours_rsv, ours_strings, ours_struct) == (rsv, strings, zero_padding(struct_block))
    assert decompile(tmp_path, ours, "ours") == decompile(tmp_path, virt.read_bytes(), "theirs")
