"""External tools (ibtasks/tools.py): one place finds, version-checks and runs them.

Rules:
- only tools.py and lifetime.py start processes or look programs up (checked with `ast`);
- a missing tool is one line naming its Debian package, exit 1, no traceback, no output left:
  the CLI is run in a mount namespace where /usr/sbin is empty and PATH is a folder of links to
  every other program, so the tool is really absent (the real tools run for everything else);
- a tool that fails is one line naming our input and the tool's last stderr line;
- versions are read from the real tools' banners; decisions are checked on real release strings.
"""

from __future__ import annotations

import ast
import io
import os
import re
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ibtasks.errors import UserError
from ibtasks.qemu.machine import Machine, dump_dtb
from ibtasks.tools import (
    MKE2FS,
    Tool,
    find_tool,
    mke2fs_reads_tarball,
    mke2fs_version,
    mkimage_signs,
    parse_e2fsprogs_version,
    run_tool,
)

REPO = Path(__file__).resolve().parent.parent
ALLOWED = {"ibtasks/tools.py", "ibtasks/lifetime.py"}
# Calls that start a process or look a program up, by the module they come from.
PROCESS_CALLS = {
    "os": {"system", "popen", "spawnl", "spawnlp", "spawnv", "spawnvp", "execv", "execvp",
           "execve", "execl", "execlp", "posix_spawn", "posix_spawnp", "fork"},
    "shutil": {"which"},
    "asyncio": {"create_subprocess_exec", "create_subprocess_shell"},
}
EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}
Runner = Callable[..., "subprocess.CompletedProcess[str]"]
SCRIPT = """\
MEMORY_START=0x40000000
MEMORY_END=0x80000000
DEVICE_TREE=mpsoc.dtb
XEN=xen
DOM0_KERNEL=Image-dom0
"""


def process_starts(root: Path) -> list[str]:
    """`file:line: what` for each process start or program lookup outside tools and lifetime."""
    found = []
    for path in sorted((root / "ibtasks").rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel in ALLOWED:
            continue
        for node in ast.walk(ast.parse(path.read_text(), rel)):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
                if "subprocess" in names:
                    found.append(f"{rel}:{node.lineno}: import subprocess")
            elif isinstance(node, ast.ImportFrom) and node.module is not None:
                if node.module == "subprocess":
                    found.append(f"{rel}:{node.lineno}: from subprocess import")
                banned = PROCESS_CALLS.get(node.module, set())
                for alias in node.names:
                    if alias.name in banned:
                        found.append(f"{rel}:{node.lineno}: from {node.module} import "
                                     f"{alias.name}")
            elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                  and node.attr in PROCESS_CALLS.get(node.value.id, set())):
                found.append(f"{rel}:{node.lineno}: {node.value.id}.{node.attr}")
    return sorted(found, key=lambda item: (item.split(":")[0], int(item.split(":")[1])))


def test_only_tools_and_lifetime_start_processes_or_look_programs_up() -> None:
    assert process_starts(REPO) == []


def test_the_process_check_catches_each_way_of_starting_a_program(tmp_path: Path) -> None:
    package = tmp_path / "ibtasks" / "formats"
    package.mkdir(parents=True)
    (package / "a.py").write_text("import subprocess\nimport shutil\nshutil.which('x')\n")
    (package / "b.py").write_text("import os\nos.system('x')\nfrom shutil import which\n")
    (package / "c.py").write_text("from subprocess import run\n")
    assert process_starts(tmp_path) == [
        "ibtasks/formats/a.py:1: import subprocess",
        "ibtasks/formats/a.py:3: shutil.which",
        "ibtasks/formats/b.py:2: os.system",
        "ibtasks/formats/b.py:3: from shutil import which",
        "ibtasks/formats/c.py:1: from subprocess import",
    ]


# ---- missing tools, through the CLI ------------------------------------------------------------


@pytest.fixture
def path_without(tmp_path: Path) -> Iterator[Runner]:
    """Run a command where the named programs are missing: PATH is a folder of links to the
    rest of /usr/bin, and in a mount namespace of the run each of them in /usr/sbin (which
    ibtasks searches after PATH) is covered by an empty, non-executable file."""

    def run(hidden: set[str], argv: list[str], cwd: Path,
            extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        bin_dir = tmp_path / f"bin-{len(list(tmp_path.glob('bin-*')))}"
        bin_dir.mkdir()
        for entry in Path("/usr/bin").iterdir():
            if entry.name not in hidden:
                (bin_dir / entry.name).symlink_to(entry)
        blank = tmp_path / "blank"
        blank.write_bytes(b"")
        blank.chmod(0o644)
        covers = [f"/usr/sbin/{name}" for name in sorted(hidden)
                  if os.path.lexists(f"/usr/sbin/{name}")]
        hide = "".join(f'mount --bind "$0" {path} && ' for path in covers) + 'exec "$@"'
        env = {**os.environ, **EPOCH, "PATH": str(bin_dir), **(extra_env or {})}
        env.pop("LOAD_CMD", None)
        # An ordinary user gets the mount namespace inside a user namespace of its own.
        unshare = ["/usr/bin/unshare", "--mount"] if os.geteuid() == 0 else [
            "/usr/bin/unshare", "--user", "--map-root-user", "--mount"]
        return subprocess.run([*unshare, "/bin/sh", "-c", hide, str(blank),
                               sys.executable, "-m", "ibtasks", *argv],
                              cwd=cwd, env=env, capture_output=True, text=True)

    yield run


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    return result.stderr


def leftovers(inputs: Path, before: set[str]) -> set[str]:
    """Files in `inputs` (outside the state folder) that were not there before the run."""
    return {p.name for p in inputs.iterdir() if p.name != ".ibtasks"} - before


def make_rootfs(path: Path) -> None:
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("etc/motd")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"hi\n"))


DISK_CONFIG = SCRIPT.replace("0x80000000", "0x50000000") + "DOM0_ROOTFS=rootfs.tar.gz\n"
DISK = ["disk-image", "-c", "config", "-d", ".", "-t", "scsi", "-o", "disk.img"]


FAKEROOT = {"fakeroot", "fakeroot-sysv", "fakeroot-tcp"}
FAKED = {"faked", "faked-sysv", "faked-tcp"}


# mkfs.ext4 is a link to mke2fs (e2fsprogs 1.47.2), which ibtasks asks for its version first.
# debugfs and fakeroot are needed by the extract path only (formats.rootfs).
@pytest.mark.parametrize(("hidden", "tool", "package", "path"), [
    ({"mkfs.ext4", "mke2fs"}, "mke2fs", "e2fsprogs", "archive"),
    ({"mkfs.ext4", "mke2fs"}, "mke2fs", "e2fsprogs", "extract"),
    ({"dumpe2fs"}, "dumpe2fs", "e2fsprogs", "archive"),
    ({"dumpe2fs"}, "dumpe2fs", "e2fsprogs", "extract"),
    ({"debugfs"}, "debugfs", "e2fsprogs", "extract"),
    (FAKEROOT, "fakeroot", "fakeroot", "extract"),
    (FAKED, "faked", "fakeroot", "extract"),
])
def test_disk_image_without_a_rootfs_tool_names_its_package(
        seed_inputs: Path, path_without: Runner,
        hidden: set[str], tool: str, package: str, path: str) -> None:
    (seed_inputs / "config").write_text(DISK_CONFIG)
    make_rootfs(seed_inputs / "rootfs.tar.gz")
    before = {p.name for p in seed_inputs.iterdir()}
    result = path_without(hidden, DISK, seed_inputs, {"IBTASKS_EXT4_PATH": path})
    assert one_error_line(result) == (
        f"ibtasks: error: {tool} not found: install {package} "
        f"(apt-get install {package})\n")
    assert leftovers(seed_inputs, before) == set()


def test_an_overlay_without_fdtoverlay_names_device_tree_compiler(
        seed_inputs: Path, path_without: Runner) -> None:
    subprocess.run(["dtc", "-q", "-I", "dts", "-O", "dtb", "-o", str(seed_inputs / "o.dtbo")],
                   input=b"/dts-v1/;\n/plugin/;\n/ { fragment@0 { target-path = \"/\"; "
                         b"__overlay__ { x = \"y\"; }; }; };\n", check=True)
    (seed_inputs / "config").write_text(SCRIPT + "NUM_DT_OVERLAY=1\nDT_OVERLAY[0]=o.dtbo\n")
    before = {p.name for p in seed_inputs.iterdir()}
    result = path_without({"fdtoverlay"}, ["uboot-script-gen", "-c", "config", "-d", ".",
                                            "-t", "tftp"], seed_inputs)
    assert one_error_line(result) == ("ibtasks: error: fdtoverlay not found: install "
                                      "device-tree-compiler (apt-get install "
                                      "device-tree-compiler)\n")
    assert leftovers(seed_inputs, before) == set()


def test_signing_without_mkimage_names_u_boot_tools(
        seed_inputs: Path, path_without: Runner) -> None:
    keys = seed_inputs / "keys"
    keys.mkdir()
    subprocess.run(["openssl", "req", "-batch", "-newkey", "rsa:2048", "-nodes", "-x509",
                    "-subj", "/CN=dev", "-keyout", str(keys / "dev.key"),
                    "-out", str(keys / "dev.crt")], check=True, capture_output=True)
    (seed_inputs / "config").write_text(SCRIPT)
    before = {p.name for p in seed_inputs.iterdir()}
    result = path_without({"mkimage"}, ["uboot-script-gen", "-c", "config", "-d", ".", "-t",
                                        "tftp", "-f", "-k", "keys/dev"],
                          seed_inputs)
    line = one_error_line(result)
    assert re.fullmatch(r"ibtasks: error: (.+: )?mkimage not found: install u-boot-tools "
                        r"\(apt-get install u-boot-tools\)\n", line), line
    assert leftovers(seed_inputs, before) == set()


def test_qemu_that_is_not_installed_is_named_with_its_package(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UserError) as caught:
        dump_dtb(Machine(qemu="qemu-system-aarch64"), tmp_path / "virt.dtb")
    assert str(caught.value) == ("qemu-system-aarch64 not found: install qemu-system-arm "
                                 "(apt-get install qemu-system-arm)")
    assert not (tmp_path / "virt.dtb").exists()


def test_a_tool_outside_path_is_found_in_usr_sbin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert find_tool(Tool("mkfs.ext4", "e2fsprogs")) == "/usr/sbin/mkfs.ext4"


# ---- failures ----------------------------------------------------------------------------------


def test_a_failing_tool_is_one_line_naming_our_input_and_its_last_stderr_line(
        tmp_path: Path) -> None:
    image = tmp_path / "not-ext4.img"
    image.write_bytes(b"\0" * 65536)
    with pytest.raises(UserError) as caught:
        run_tool([find_tool(Tool("dumpe2fs", "e2fsprogs")), "-h", str(image)],
                 f"dumpe2fs failed on {image.name}", "DOM0_ROOTFS")
    real = subprocess.run(["/usr/sbin/dumpe2fs", "-h", str(image)], capture_output=True,
                          text=True)
    last = [x.strip() for x in real.stderr.splitlines() if x.strip()][-1]
    assert str(caught.value) == f"DOM0_ROOTFS: dumpe2fs failed on not-ext4.img: {last}"
    assert "\n" not in str(caught.value)


def test_a_tool_past_its_timeout_is_killed_and_named(tmp_path: Path) -> None:
    with pytest.raises(UserError) as caught:
        run_tool([find_tool(Tool("sleep", "coreutils")), "30"], "sleep failed on x", timeout=0.5)
    assert str(caught.value) == "sleep failed on x: no result after 0.5 s"


def test_a_failing_overlay_names_the_key_and_the_overlay(seed_inputs: Path) -> None:
    subprocess.run(["dtc", "-q", "-I", "dts", "-O", "dtb", "-o", str(seed_inputs / "bad.dtbo")],
                   input=b"/dts-v1/;\n/plugin/;\n/ { fragment@0 { target-path = \"/nowhere\"; "
                         b"__overlay__ { x = \"y\"; }; }; };\n", check=True)
    (seed_inputs / "config").write_text(SCRIPT + "NUM_DT_OVERLAY=1\nDT_OVERLAY[0]=bad.dtbo\n")
    result = subprocess.run([sys.executable, "-m", "ibtasks", "uboot-script-gen", "-c", "config",
                             "-d", ".", "-t", "tftp"], cwd=seed_inputs, capture_output=True,
                            text=True, env={**os.environ, **EPOCH})
    real = subprocess.run(["fdtoverlay", "-i", "mpsoc.dtb", "-o", "/dev/null", "bad.dtbo"],
                          cwd=seed_inputs, capture_output=True, text=True)
    last = [x.strip() for x in real.stderr.splitlines() if x.strip()][-1]
    assert one_error_line(result) == (
        "ibtasks: error: DT_OVERLAY[0]: fdtoverlay cannot apply bad.dtbo to DEVICE_TREE "
        f"(mpsoc.dtb): {last}\n")


# ---- versions ----------------------------------------------------------------------------------


def debian_release(package: str) -> tuple[int, ...]:
    """The upstream release of an installed Debian package (`1.47.0-2` -> (1, 47, 0))."""
    version = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package],
                             capture_output=True, text=True, check=True).stdout
    upstream = version.split(":")[-1].split("-")[0].split("+")[0]
    return tuple(int(x) for x in upstream.split("."))


def test_the_installed_mke2fs_version_is_read_from_its_banner() -> None:
    banner = subprocess.run([find_tool(MKE2FS), "-V"], capture_output=True, text=True)
    assert parse_e2fsprogs_version(banner.stderr) == debian_release("e2fsprogs")
    assert mke2fs_version() == debian_release("e2fsprogs")


@pytest.mark.parametrize(("banner", "reads_tarball"), [
    ("mke2fs 1.46.2 (28-Feb-2021)\n\tUsing EXT2FS Library version 1.46.2\n", False),
    ("mke2fs 1.47.0 (5-Feb-2023)\n\tUsing EXT2FS Library version 1.47.0\n", False),
    ("mke2fs 1.47.1 (20-May-2024)\n\tUsing EXT2FS Library version 1.47.1\n", True),
    ("mke2fs 1.47.2 (1-Jan-2025)\n\tUsing EXT2FS Library version 1.47.2\n", True),
])
def test_mke2fs_reads_a_tarball_from_release_1_47_1(banner: str, reads_tarball: bool) -> None:
    assert mke2fs_reads_tarball(parse_e2fsprogs_version(banner)) is reads_tarball


def test_a_banner_without_a_version_is_an_error() -> None:
    with pytest.raises(UserError, match="cannot read an e2fsprogs version"):
        parse_e2fsprogs_version("mke2fs: command not found\n")


def test_the_installed_mkimage_can_sign() -> None:
    usage = subprocess.run(["mkimage", "-h"], capture_output=True, text=True)
    assert mkimage_signs(usage.stderr + usage.stdout)


@pytest.mark.parametrize("line", [
    # U-Boot before 2021 and after: what mkimage -h prints when built without signing.
    "Signing / verified boot not supported (CONFIG_FIT_SIGNATURE undefined)",
    "Signing / verified boot not supported (CONFIG_TOOLS_FIT_SIGNATURE undefined)",
])
def test_a_mkimage_built_without_signing_is_recognised(line: str) -> None:
    usage = subprocess.run(["mkimage", "-h"], capture_output=True, text=True).stderr
    signing = re.search(r"^Signing / verified boot options.*?(?=^\s*\S+ -V ==>)", usage,
                        re.MULTILINE | re.DOTALL)
    assert signing is not None  # the real usage text has the block this build would lack
    assert not mkimage_signs(usage.replace(signing.group(0), line + "\n"))


def test_the_archive_path_needs_neither_fakeroot_nor_debugfs(
        seed_inputs: Path, path_without: Runner) -> None:
    (seed_inputs / "config").write_text(DISK_CONFIG)
    make_rootfs(seed_inputs / "rootfs.tar.gz")
    result = path_without({"debugfs", *FAKEROOT, *FAKED}, DISK, seed_inputs,
                          {"IBTASKS_EXT4_PATH": "archive"})
    assert (result.returncode, result.stderr) == (0, "")
    assert (seed_inputs / "disk.img").is_file()
