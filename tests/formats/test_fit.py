"""FIT images (`-f`, FIT, FIT_ENC_KEY_DIR, FIT_ENC_UB_DTB): the format against mkimage and
dumpimage, the CLI's outputs on the seed goldens' inputs, every error, and signing with a key
made by openssl in the test.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from ibtasks.errors import UserError
from ibtasks.formats.dtb.tree import child_node, node_prop, parse_dtb
from ibtasks.formats.fit import SIGN_ALGO, Fit, FitConfig, FitImage, Signature, build_fit, parse_fit
from tests.conftest import run_ibtasks

EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}
CONFIG = """\
MEMORY_START=0x40000000
MEMORY_END=0x50000000
DEVICE_TREE=mpsoc.dtb
XEN=xen
DOM0_KERNEL=Image-dom0
DOM0_RAMDISK=dom0-ramdisk.cpio
NUM_DOMUS=2
DOMU_KERNEL[0]=zynqmp-dom1/Image-domU
DOMU_RAMDISK[0]=zynqmp-dom1/domU-ramdisk.cpio
DOMU_PASSTHROUGH_DTB[0]=zynqmp-dom1/passthrough-example-part.dtb
DOMU_KERNEL[1]=zynqmp-dom2/Image-domU
"""
# key -> (FIT image name, input file) for CONFIG
IMAGES = {
    "host_fdt": "boot.dtb",  # the edited DTB, not mpsoc.dtb
    "host_kernel": "xen",
    "dom0_linux": "Image-dom0",
    "dom0_ramdisk": "dom0-ramdisk.cpio",
    "domU0_kernel": "zynqmp-dom1/Image-domU",
    "domU0_ramdisk": "zynqmp-dom1/domU-ramdisk.cpio",
    "domU0_fdt": "zynqmp-dom1/passthrough-example-part.dtb",
    "domU1_kernel": "zynqmp-dom2/Image-domU",
    "boot_scr": "boot.source",
}


def tiny_fit(**image_changes: object) -> Fit:
    kernel = FitImage("host_kernel", "xen kernel", b"1234", "kernel", 0x40200000, os="linux",
                      entry=0x40200000)
    kernel = FitImage(**{**kernel.__dict__, **image_changes})  # type: ignore[arg-type]
    return Fit("tiny", 1700000000, (
        kernel,
        FitImage("host_fdt", "xen fdt", b"\xd0\x0d\xfe\xed5678", "flat_dt", 0x40400000,
                 hashes=("crc32",)),
        FitImage("boot_scr", "script", b"booti\n", "script", 0x40000000, arch=None,
                 entry=0x40000000, hashes=("sha1",)),
    ), (FitConfig("config", "c", kernel="host_kernel", fdt=("host_fdt",),
                  loadables=("boot_scr",)),), "config")


def dumpimage_list(path: Path) -> str:
    return subprocess.run(["dumpimage", "-l", str(path)], check=True, capture_output=True,
                          text=True).stdout


def listed_images(listing: str) -> dict[str, dict[str, str]]:
    """`dumpimage -l` as {image name: {field: value}} (the first of repeated fields)."""
    images: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in listing.splitlines():
        match = re.match(r" Image \d+ \((.*)\)$", line)
        if match:
            current = images.setdefault(match.group(1), {})
        elif line.startswith(" ") and not line.startswith("  ") and current is not None:
            current = None
        elif current is not None and ":" in line:
            field, _, value = line.strip().partition(":")
            current.setdefault(field, value.strip())
    return images


def render_its(fit: Fit, data_dir: Path) -> str:
    """The .its a user would write for `fit` (data in files), for mkimage to compare with."""
    out = ["/dts-v1/;", "/ {", f'description = "{fit.description}";',
           "#address-cells = <1>;", "images {"]
    for image in fit.images:
        (data_dir / image.name).write_bytes(image.data)
        out += [f"{image.name} {{", f'description = "{image.description}";',
                f'data = /incbin/("{data_dir / image.name}");', f'type = "{image.type}";']
        out += [f'arch = "{image.arch}";'] if image.arch else []
        out += [f'os = "{image.os}";'] if image.os else []
        out += ['compression = "none";', f"load = <{image.load:#x}>;"]
        out += [f"entry = <{image.entry:#x}>;"] if image.entry is not None else []
        for n, algo in enumerate(image.hashes, 1):
            name = f"hash-{n}" if len(image.hashes) > 1 else "hash"
            out.append(f'{name} {{ algo = "{algo}"; }};')
        out.append("};")
    out += ["};", "configurations {", f'default = "{fit.default}";']
    for config in fit.configs:
        fdt = ", ".join(f'"{x}"' for x in config.fdt)
        loadables = ", ".join(f'"{x}"' for x in config.loadables)
        out += [f"{config.name} {{", f'description = "{config.description}";',
                f'kernel = "{config.kernel}";', f"fdt = {fdt};", f"loadables = {loadables};",
                "};"]
    return "\n".join([*out, "};", "};", ""])


def dts(path: Path) -> str:
    return subprocess.run(["dtc", "-q", "-I", "dtb", "-O", "dts", str(path)], check=True,
                          capture_output=True, text=True).stdout


def build(inputs: Path, *args: str, config: str = CONFIG,
          env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    (inputs / "config").write_text(config)
    return run_ibtasks("uboot-script-gen", "-c", "config", "-d", ".", "-t", "tftp", *args,
                       cwd=inputs, env=env or EPOCH)


# --- the format ---------------------------------------------------------------------------


def test_parse_of_build_gives_back_the_same_fit() -> None:
    fit = tiny_fit(signature=Signature(SIGN_ALGO, "dev"))
    assert parse_fit(build_fit(fit)) == fit


def test_our_fit_is_what_mkimage_makes_of_the_same_its(tmp_path: Path) -> None:
    fit = tiny_fit()
    ours = tmp_path / "ours.fit"
    ours.write_bytes(build_fit(fit))
    its = tmp_path / "same.its"
    its.write_text(render_its(fit, tmp_path))
    theirs = tmp_path / "mkimage.fit"
    subprocess.run(["mkimage", "-q", "-f", str(its), str(theirs)], check=True,
                   capture_output=True, env={"SOURCE_DATE_EPOCH": "1700000000", "PATH": "/usr/bin"})
    assert dts(ours) == dts(theirs)
    assert parse_fit(theirs.read_bytes()) == fit
    assert dumpimage_list(ours) == dumpimage_list(theirs)


def test_fit_with_a_load_address_above_4_gib_uses_two_address_cells(tmp_path: Path) -> None:
    fit = tiny_fit(load=0x880200000, entry=0x880200000)
    path = tmp_path / "high.fit"
    path.write_bytes(build_fit(fit))
    kernel = listed_images(dumpimage_list(path))["host_kernel"]
    assert kernel["Load Address"] == "0x880200000"
    assert kernel["Entry Point"] == "0x880200000"
    root = parse_dtb(path.read_bytes(), "high.fit")[0].root
    assert node_prop(root, "#address-cells") == b"\0\0\0\2"
    assert parse_fit(path.read_bytes()) == fit


def test_fit_whose_image_data_changed_is_rejected_when_parsed() -> None:
    blob = bytearray(build_fit(tiny_fit()))
    at = blob.index(b"1234")
    blob[at:at + 4] = b"1235"
    with pytest.raises(UserError) as error:
        parse_fit(bytes(blob), "boot.fit")
    assert str(error.value) == "boot.fit: FIT image host_kernel: crc32 hash mismatch"


# --- the CLI ------------------------------------------------------------------------------


def test_dash_f_writes_boot_fit_instead_of_boot_scr_and_prints_upstreams_message(
        seed_inputs: Path) -> None:
    result = build(seed_inputs, "-f")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout == (
        "Generated uboot FIT image boot.fit, to be loaded at or after address 0x41e00000:\n"
        "tftpb 0x41e00000 boot.fit; source 0x41e00000:boot_scr\n")
    assert (seed_inputs / "boot.fit").is_file()
    assert not (seed_inputs / "boot.scr").exists()


def test_fit_script_extracts_every_binary_and_has_no_fdt_commands(seed_inputs: Path) -> None:
    build(seed_inputs, "-f")
    assert (seed_inputs / "boot.source").read_text() == (
        "fit_addr=$fileaddr\n"
        "imxtract $fit_addr host_kernel 0x40400000\n"
        "imxtract $fit_addr dom0_linux 0x40800000\n"
        "imxtract $fit_addr dom0_ramdisk 0x40E00000\n"
        "imxtract $fit_addr domU0_kernel 0x41000000\n"
        "imxtract $fit_addr domU0_ramdisk 0x41400000\n"
        "imxtract $fit_addr domU0_fdt 0x41600000\n"
        "imxtract $fit_addr domU1_kernel 0x41800000\n"
        "imxtract $fit_addr host_fdt 0x41C00000\n"
        "setenv fdt_high 0xffffffffffffffff\n"
        "booti 0x40400000 - 0x41C00000\n")


def test_dumpimage_lists_every_image_with_its_type_arch_and_load_address(
        seed_inputs: Path) -> None:
    build(seed_inputs, "-f")
    images = listed_images(dumpimage_list(seed_inputs / "boot.fit"))
    assert list(images) == list(IMAGES)
    script = (seed_inputs / "boot.source").read_text()
    loads = dict(re.findall(r"imxtract \$fit_addr (\S+) (0x[0-9A-F]+)", script))
    for name, fields in images.items():
        if name == "boot_scr":
            assert fields["Type"] == "Script"
            assert "Architecture" not in fields
            continue
        assert int(fields["Load Address"], 16) == int(loads[name], 16)
        assert fields["Architecture"] == "AArch64"
        assert fields["Compression"] == "uncompressed"
    types = {n: f["Type"] for n, f in images.items()}
    assert types == {
        "host_fdt": "Flat Device Tree", "host_kernel": "Kernel Image",
        "dom0_linux": "Kernel Image", "dom0_ramdisk": "RAMDisk Image",
        "domU0_kernel": "Kernel Image", "domU0_ramdisk": "RAMDisk Image",
        "domU0_fdt": "Flat Device Tree", "domU1_kernel": "Kernel Image", "boot_scr": "Script"}
    assert images["host_kernel"]["Entry Point"] == "0x40400000"
    listing = dumpimage_list(seed_inputs / "boot.fit")
    assert listing.count("Hash algo:    crc32") == listing.count("Hash algo:    sha1") == 9
    assert "Default Configuration: 'config'" in listing


def test_extracting_each_image_with_dumpimage_gives_its_input_bytes(seed_inputs: Path,
                                                                    tmp_path: Path) -> None:
    build(seed_inputs, "-f")
    for index, (name, source) in enumerate(IMAGES.items()):
        out = tmp_path / name
        subprocess.run(["dumpimage", "-T", "flat_dt", "-p", str(index), "-o", str(out),
                        str(seed_inputs / "boot.fit")], check=True, capture_output=True)
        assert out.read_bytes() == (seed_inputs / source).read_bytes(), name


def test_fit_holds_the_dtb_with_the_chosen_edits(seed_inputs: Path) -> None:
    build(seed_inputs, "-f")
    fit = parse_fit((seed_inputs / "boot.fit").read_bytes())
    dtb = seed_inputs / "extracted.dtb"
    dtb.write_bytes(fit.image("host_fdt").data)
    got = subprocess.run(["fdtget", "-t", "x", str(dtb), "/chosen/dom0@40800000", "reg"],
                         check=True, capture_output=True, text=True).stdout.split()
    assert got[:2] == ["0", "40800000"]
    assert fit.configs[0].kernel == "host_kernel" and fit.configs[0].fdt == ("host_fdt",)
    assert fit.configs[0].loadables == ("dom0_linux", "dom0_ramdisk", "domU0_kernel",
                                        "domU0_ramdisk", "domU0_fdt", "domU1_kernel")


def test_fit_key_in_the_config_names_the_image_without_dash_f(seed_inputs: Path) -> None:
    result = build(seed_inputs, config=CONFIG + "FIT=images/system.fit\n")
    assert result.returncode == 0, result.stderr
    assert "Generated uboot FIT image images/system.fit," in result.stdout
    assert parse_fit((seed_inputs / "images" / "system.fit").read_bytes()).images


def test_dash_o_names_the_fit_after_the_output_name(seed_inputs: Path) -> None:
    result = build(seed_inputs, "-f", "-o", "bootscript")
    assert result.returncode == 0, result.stderr
    assert (seed_inputs / "bootscript.fit").is_file()
    assert "bootscript.fit; source " in result.stdout


def test_fit_bytes_depend_only_on_inputs_and_source_date_epoch(seed_inputs: Path,
                                                              tmp_path: Path) -> None:
    other = tmp_path / "other"
    subprocess.run(["cp", "-a", str(seed_inputs), str(other)], check=True)
    build(seed_inputs, "-f")
    build(other, "-f")
    first = (seed_inputs / "boot.fit").read_bytes()
    assert first == (other / "boot.fit").read_bytes()
    build(other, "-f", env={"SOURCE_DATE_EPOCH": "1700000001"})
    assert parse_fit((other / "boot.fit").read_bytes()).timestamp == 1700000001
    assert parse_fit(first).timestamp == 1700000000


def test_a_changed_kernel_reaches_the_fit(seed_inputs: Path) -> None:
    build(seed_inputs, "-f")
    kernel = seed_inputs / "zynqmp-dom2" / "Image-domU"
    kernel.write_bytes(kernel.read_bytes()[:-4] + b"new!")
    assert build(seed_inputs, "-f").returncode == 0
    fit = parse_fit((seed_inputs / "boot.fit").read_bytes())
    assert fit.image("domU1_kernel").data.endswith(b"new!")


def test_fit_that_ends_above_memory_end_is_rejected(seed_inputs: Path) -> None:
    config = CONFIG.replace("MEMORY_END=0x50000000", "MEMORY_END=0x42A00000")
    result = build(seed_inputs, "-f", config=config)
    assert result.returncode == 1
    assert result.stderr == (
        "ibtasks: error: MEMORY_END: not enough memory for the FIT image boot.fit: loaded at "
        "0x41e00000 it ends at 0x42cc7bd6, above MEMORY_END 0x42a00000 (0x2c7bd6 (2915286) "
        "bytes short)\n")
    assert not (seed_inputs / "boot.fit").exists()


# --- signing ------------------------------------------------------------------------------


@pytest.fixture
def keys(seed_inputs: Path) -> Path:
    """An RSA-2048 key and self-signed certificate, keys/dev.key and keys/dev.crt."""
    directory = seed_inputs / "keys"
    directory.mkdir()
    subprocess.run(["openssl", "req", "-batch", "-newkey", "rsa:2048", "-nodes", "-x509",
                    "-subj", "/CN=dev", "-keyout", str(directory / "dev.key"),
                    "-out", str(directory / "dev.crt")], check=True, capture_output=True)
    subprocess.run(["dtc", "-I", "dts", "-O", "dtb", "-o", str(seed_inputs / "u-boot.dtb")],
                   input=b"/dts-v1/; / { };", check=True)
    return directory


def verify_with_openssl(data: bytes, signature: bytes, cert: Path, tmp: Path) -> bool:
    (tmp / "data").write_bytes(data)
    (tmp / "sig").write_bytes(signature)
    pub = subprocess.run(["openssl", "x509", "-pubkey", "-noout", "-in", str(cert)],
                         check=True, capture_output=True).stdout
    (tmp / "pub.pem").write_bytes(pub)
    return subprocess.run(["openssl", "dgst", "-sha1", "-verify", str(tmp / "pub.pem"),
                           "-signature", str(tmp / "sig"), str(tmp / "data")],
                          capture_output=True).returncode == 0


def test_dash_k_signs_every_image_so_that_openssl_verifies_it(seed_inputs: Path, keys: Path,
                                                              tmp_path: Path) -> None:
    result = build(seed_inputs, "-f", "-k", "keys/dev", "-u", "u-boot.dtb")
    assert result.returncode == 0, result.stderr
    listing = dumpimage_list(seed_inputs / "boot.fit")
    assert listing.count("Sign algo:    sha1,rsa2048:dev") == len(IMAGES)
    root = parse_dtb((seed_inputs / "boot.fit").read_bytes(), "boot.fit")[0].root
    images = child_node(root, "images")
    assert images is not None
    for node in images.nodes:
        signature = child_node(node, "signature")
        assert signature is not None and node_prop(signature, "value") is not None, node.name
        value, data = node_prop(signature, "value"), node_prop(node, "data")
        assert value is not None and data is not None
        assert verify_with_openssl(data, value, keys / "dev.crt", tmp_path), node.name
        assert not verify_with_openssl(data + b"x", value, keys / "dev.crt", tmp_path)
    key_node = ["fdtget", str(seed_inputs / "u-boot.dtb"), "/signature/key-dev"]
    assert subprocess.run([*key_node, "required"], capture_output=True, text=True,
                          check=True).stdout.strip() == "image"
    assert subprocess.run([*key_node, "algo"], capture_output=True, text=True,
                          check=True).stdout.strip() == "sha1,rsa2048"


def test_signed_fit_is_reproducible(seed_inputs: Path, keys: Path) -> None:
    build(seed_inputs, "-f", config=CONFIG + "FIT_ENC_KEY_DIR=keys/dev\n")
    first = (seed_inputs / "boot.fit").read_bytes()
    (seed_inputs / "boot.fit").unlink()
    build(seed_inputs, "-f", config=CONFIG + "FIT_ENC_KEY_DIR=keys/dev\n")
    assert (seed_inputs / "boot.fit").read_bytes() == first
    assert parse_fit(first).image("host_kernel").signature == Signature(SIGN_ALGO, "dev")


def test_a_replaced_u_boot_dtb_gets_the_key_again(seed_inputs: Path, keys: Path) -> None:
    assert build(seed_inputs, "-f", "-k", "keys/dev", "-u", "u-boot.dtb").returncode == 0
    subprocess.run(["dtc", "-I", "dts", "-O", "dtb", "-o", str(seed_inputs / "u-boot.dtb")],
                   input=b"/dts-v1/; / { model = \"new\"; };", check=True)
    assert build(seed_inputs, "-f", "-k", "keys/dev", "-u", "u-boot.dtb").returncode == 0
    assert "key-dev" in dts(seed_inputs / "u-boot.dtb")


def test_a_failed_signing_leaves_the_users_u_boot_dtb_untouched(seed_inputs: Path,
                                                                 keys: Path) -> None:
    before = (seed_inputs / "u-boot.dtb").read_bytes()
    (keys / "dev.key").write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n")
    result = build(seed_inputs, "-f", "-k", "keys/dev", "-u", "u-boot.dtb")
    assert result.returncode == 1
    assert result.stderr.startswith("ibtasks: error: ") and "could not sign boot.fit" in \
        result.stderr
    assert (seed_inputs / "u-boot.dtb").read_bytes() == before
    assert [p.name for p in seed_inputs.iterdir() if ".ibtmp-" in p.name] == []
    assert not (seed_inputs / "boot.fit").exists()


@pytest.mark.parametrize(("extra", "args", "message"), [
    ("FIT_ENC_UB_DTB=u-boot.dtb\n", ("-f",),
     "config:12: FIT_ENC_UB_DTB: signing needs the key: set FIT_ENC_KEY_DIR=KEY_DIR/HINT or "
     "pass -k KEY_DIR/HINT"),
    ("FIT_ENC_KEY_DIR=dev\n", ("-f",),
     "config:12: FIT_ENC_KEY_DIR: expected KEY_DIR/HINT (KEY_DIR holding HINT.key and "
     "HINT.crt), got 'dev'"),
    ("", ("-f", "-k", "keys/other"),
     "-k: FIT_ENC_KEY_DIR: keys/other.key does not exist (looked in .)"),
    ("FIT_ENC_KEY_DIR=keys/dev\nFIT_ENC_UB_DTB=missing.dtb\n", ("-f",),
     "config:13: FIT_ENC_UB_DTB: missing.dtb does not exist (looked in .)"),
])
def test_bad_signing_settings_are_rejected(seed_inputs: Path, keys: Path, extra: str,
                                           args: tuple[str, ...], message: str) -> None:
    result = build(seed_inputs, *args, config=CONFIG + extra)
    assert result.returncode == 1
    assert result.stderr == f"ibtasks: error: {message}\n"
    assert not (seed_inputs / "boot.fit").exists()


def test_a_bad_config_removes_the_fit_of_an_earlier_build(seed_inputs: Path) -> None:
    assert build(seed_inputs, "-f").returncode == 0
    result = build(seed_inputs, "-f", config=CONFIG + "DOMU_MEM[1]=lots\n")
    assert result.returncode == 1
    assert result.stderr == ("ibtasks: error: config:12: DOMU_MEM[1]: expected a whole number "
                             "of MiB, got 'lots'\n")
    assert not (seed_inputs / "boot.fit").exists()


def test_a_signing_key_without_a_fit_is_ignored_with_a_warning(seed_inputs: Path,
                                                               keys: Path) -> None:
    result = build(seed_inputs, config=CONFIG + "FIT_ENC_KEY_DIR=keys/dev\n")
    assert result.returncode == 0
    assert result.stderr == ("ibtasks: warning: FIT_ENC_KEY_DIR: ignored: no FIT is built "
                             "(pass -f or set FIT)\n")
    assert (seed_inputs / "boot.scr").is_file()
    assert not (seed_inputs / "boot.fit").exists()
