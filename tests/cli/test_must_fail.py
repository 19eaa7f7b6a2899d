"""The catalogue of mistakes users make, in the spirit of genimage's must-fail configs.

Each file in tests/cli/must_fail/ is one config a user could write (bash, or YAML for *.yaml) whose
leading comment lines say how it is run and what it must print:

    # What the user got wrong, in one sentence.
    # run: ibtasks uboot-script-gen -c config -d . -t tftp
    # stderr: ibtasks: error: config:9: DOMU_MEM[0]: expected a whole number of MiB, got '512M'
    # as: ibtest                (optional: run as the unprivileged test user, see unprivileged.py)
    # mkdir: out                (optional, repeatable: a directory to make before the run)
    # chmod: 000 mpsoc.dtb      (optional, repeatable: a mode to set before the run)

The case runs in a directory holding the seed goldens' synthetic inputs plus the broken ones of
`make_mistaken_inputs`, with the case file copied to the name after `-c` (so the line numbers in
the messages are the case file's own). The real CLI must exit 1, print exactly the `stderr` line
and nothing on stdout, leave every file the test put there unchanged, and add nothing outside
the `.ibtasks/` work directory: no boot.source, boot.scr, DTB or disk.img, no temporary file,
and no record that would let the next run replay a success. tests/cli/must_fail/README.md tells
how to add a case.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import re
import shlex
import shutil
import subprocess
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import run_ibtasks
from tests.unprivileged import run_as_user, unprivileged_python, user_tmp_dir

CASE_DIR = Path(__file__).resolve().parent / "must_fail"
EXIT_USER_ERROR = 1
WORK_DIR = ".ibtasks"
# Names a half-written output or a temporary file would have (fsutil, fat, disk, rootfs).
TEMPORARY_SUFFIXES = (".tmp", ".partial", ".debugfs")


@dataclass(frozen=True)
class Case:
    """One must-fail config: its file, the command line after `ibtasks`, the expected line."""

    path: Path
    summary: str
    argv: tuple[str, ...]
    stderr: str
    as_user: bool
    mkdirs: tuple[str, ...]
    chmods: tuple[tuple[int, str], ...]

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def subcommand(self) -> str:
        return self.argv[0]

    @property
    def config_name(self) -> str:
        """The name the case file gets in its directory: the argument of `-c`."""
        return self.argv[self.argv.index("-c") + 1]

    @property
    def syntax(self) -> str:
        return "yaml" if self.path.suffix in (".yaml", ".yml") else "bash"


def read_case(path: Path) -> Case:
    """Parse the leading comment lines of a case file; a malformed header fails collection."""
    header = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        header.append(line.removeprefix("#").strip())
    if not header or ":" in header[0].split()[0]:
        raise ValueError(f"{path}: the first line must say, in a sentence, what is wrong")
    fields: dict[str, list[str]] = {}
    for line in header[1:]:
        key, sep, value = line.partition(": ")
        if not sep or key not in ("run", "stderr", "as", "mkdir", "chmod"):
            raise ValueError(f"{path}: unknown header line {line!r}")
        fields.setdefault(key, []).append(value)
    run = shlex.split(fields["run"][0])
    if run[0] != "ibtasks" or "-c" not in run:
        raise ValueError(f"{path}: `run:` must be an ibtasks command line with -c")
    user = fields.get("as", [None])[0]
    if user not in (None, "ibtest"):
        raise ValueError(f"{path}: `as:` names the unprivileged test user, ibtest")
    chmods = tuple((int(mode, 8), target) for mode, target in
                   (value.split(maxsplit=1) for value in fields.get("chmod", [])))
    return Case(path, header[0], tuple(run[1:]), fields["stderr"][0] + "\n", user is not None,
                tuple(fields.get("mkdir", [])), chmods)


CASES = [read_case(path) for path in sorted(CASE_DIR.iterdir()) if path.name != "README.md"]

DTS_SOURCE = """\
/dts-v1/;

/ {
\tcompatible = "linux,dummy-virt";
\t#address-cells = <2>;
\t#size-cells = <2>;

\tchosen {
\t\tstdout-path = "/pl011@9000000";
\t};

\tmemory@40000000 {
\t\tdevice_type = "memory";
\t\treg = <0x0 0x40000000 0x0 0x80000000>;
\t};
};
"""


def _tar_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o755
    tar.addfile(info, io.BytesIO(data))


def make_mistaken_inputs(inputs: Path) -> None:
    """Beside the seed inputs: files of the wrong kind, and broken ones, that users pass.

    mpsoc.dts (the DTB's source), empty.dtb, truncated.dtb (mpsoc.dtb's first 100 bytes),
    dom0-ramdisk.ub (the ramdisk as a legacy uImage, made by mkimage), rootfs-truncated.cpio.gz
    (rootfs-dom0.cpio.gz cut to 300 bytes), rootfs-truncated.tar (cut inside bin/busybox) and
    rootfs.zip (a zip, which no rootfs reader takes).
    """
    (inputs / "mpsoc.dts").write_text(DTS_SOURCE)
    (inputs / "empty.dtb").write_bytes(b"")
    (inputs / "truncated.dtb").write_bytes((inputs / "mpsoc.dtb").read_bytes()[:100])
    subprocess.run(["mkimage", "-A", "arm64", "-T", "ramdisk", "-C", "none", "-n", "dom0",
                    "-d", "dom0-ramdisk.cpio", "dom0-ramdisk.ub"],
                   cwd=inputs, check=True, capture_output=True)
    gzipped = (inputs / "rootfs-dom0.cpio.gz").read_bytes()
    (inputs / "rootfs-truncated.cpio.gz").write_bytes(gzipped[:300])
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        _tar_member(tar, "etc/hostname", b"dom0\n")
        _tar_member(tar, "bin/busybox", bytes(range(256)) * 256)
    (inputs / "rootfs-truncated.tar").write_bytes(tar_bytes.getvalue()[:10240])
    with zipfile.ZipFile(inputs / "rootfs.zip", "w") as archive:
        archive.writestr("etc/hostname", "dom0\n")


def _link_tree(source: Path, target: Path) -> None:
    """Copy `source` to `target` as hard links (the inputs are large), or copies across devices."""
    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM):
                raise
            shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link, dirs_exist_ok=True)


@pytest.fixture(scope="session")
def mistaken_inputs(seed_inputs_master: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seed inputs and the broken ones, made once for the whole catalogue."""
    inputs = tmp_path_factory.mktemp("must-fail-inputs")
    _link_tree(seed_inputs_master, inputs)
    make_mistaken_inputs(inputs)
    return inputs


@pytest.fixture(scope="session")
def digests() -> dict[tuple[int, ...], str]:
    """SHA-256 of each input inode the cases share as hard links, hashed once per session.

    Keyed by device, inode, size, mtime and ctime: any write to the file changes its ctime, so
    a changed input is hashed again."""
    return {}


def snapshot(top: Path, digests: dict[tuple[int, ...], str]) -> dict[str, str]:
    """Every path under `top`: `dir`, a symlink's target, or a file's mode and SHA-256."""
    state = {}
    for path in sorted(top.rglob("*")):
        rel = path.relative_to(top).as_posix()
        if path.is_symlink():
            state[rel] = f"symlink {os.readlink(path)}"
        elif path.is_dir():
            state[rel] = "dir"
        else:
            info = path.stat()
            key = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
            if key not in digests:
                try:
                    with path.open("rb") as handle:
                        digests[key] = hashlib.file_digest(handle, "sha256").hexdigest()
                except PermissionError:  # a chmod 000 input, when the tests do not run as root
                    digests[key] = "unreadable " + " ".join(map(str, key))
            state[rel] = f"{info.st_mode:o} {digests[key]}"
    return state


def _set_mode(directory: Path, mode: int, target: str) -> None:
    """chmod one path of the case, first making a file its own copy (not a link to the inputs)."""
    path = directory / target
    if path.is_file():
        data = path.read_bytes()
        path.unlink()
        path.write_bytes(data)
    path.chmod(mode)


@contextlib.contextmanager
def case_directory(case: Case, inputs: Path, tmp_path: Path) -> Iterator[Path]:
    """A directory with the inputs and the case's config, writable by whoever runs the case."""
    with contextlib.ExitStack() as stack:
        directory = stack.enter_context(user_tmp_dir("ibtasks-must-fail-")) if case.as_user \
            else tmp_path / "case"
        _link_tree(inputs, directory)
        if case.as_user:
            directory.chmod(0o777)  # copytree gave it the mode of the (private) inputs directory
        shutil.copyfile(case.path, directory / case.config_name)
        for name in case.mkdirs:
            (directory / name).mkdir()
        for mode, target in case.chmods:
            _set_mode(directory, mode, target)
        yield directory


def run_case(case: Case, directory: Path) -> subprocess.CompletedProcess[str]:
    if case.as_user:
        return run_as_user([unprivileged_python(), "-m", "ibtasks", *case.argv], cwd=directory)
    return run_ibtasks(*case.argv, cwd=directory)


def left_behind(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """What the run added, removed or changed, less the work directory's own files (but never a
    temporary file or a no-op record there)."""
    changes = []
    for rel in sorted(before.keys() | after.keys()):
        if before.get(rel) == after.get(rel):
            continue
        name = rel.rsplit("/", 1)[-1]
        in_work_dir = rel == WORK_DIR or rel.startswith(f"{WORK_DIR}/")
        if (in_work_dir and rel not in before and not name.endswith(TEMPORARY_SUFFIXES)
                and not name.startswith("last-run-")):
            continue
        state = "added" if rel not in before else "removed" if rel not in after else "changed"
        changes.append(f"{rel} {state}")
    return changes


PROGRESS_LINE = re.compile(
    r"ibtasks: ib_(partition:\w+|disk|bmap): (writing|reading|read|running|done)[^\n]*")


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_config_that_must_fail_prints_its_one_line_error_and_leaves_nothing_behind(
        case: Case, mistaken_inputs: Path, tmp_path: Path,
        digests: dict[tuple[int, ...], str]) -> None:
    with case_directory(case, mistaken_inputs, tmp_path) as directory:
        before = snapshot(directory, digests)
        result = run_case(case, directory)
        after = snapshot(directory, digests)
    # disk-image reports each step as it starts and ends (cli.progress): the steps that began
    # before the error may be on stdout, nothing else; the error is the one stderr line.
    progress = [line for line in result.stdout.splitlines()
                if case.subcommand == "disk-image" and PROGRESS_LINE.fullmatch(line)]
    assert (result.returncode, result.stderr, result.stdout.splitlines()) == (
        EXIT_USER_ERROR, case.stderr, progress), case.summary
    assert left_behind(before, after) == []


def test_catalogue_covers_both_subcommands_both_syntaxes_and_an_unprivileged_user() -> None:
    assert len(CASES) >= 40
    assert {case.subcommand for case in CASES} == {"uboot-script-gen", "disk-image"}
    assert {case.syntax for case in CASES} == {"bash", "yaml"}
    assert any(case.as_user for case in CASES)
