"""The external programs ibtasks runs, each found, version-checked and run in this one place.

As binman's `bintool`: one `Tool` per program names its Debian package, so a missing program is
one line saying what to install; `run_tool` runs it as our child that dies with the build
(ibtasks.lifetime), keeps its output bounded, and turns a failure into one line naming our input
and the program's last stderr line. No other module looks a program up or starts a process.
"""

from __future__ import annotations

import os
import re
import selectors
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ibtasks.errors import UserError
from ibtasks.lifetime import die_with_parent

SBIN_DIRS = ("/usr/sbin", "/sbin")  # e2fsprogs' home; an ordinary user's PATH often lacks them
MAX_STDOUT = 64 << 20  # bytes of a tool's stdout we keep (dumpe2fs of a large rootfs: < 1 MiB)
STDERR_TAIL = 64 << 10  # bytes of a tool's stderr we keep, the last ones
MKE2FS_READS_TARBALL = (1, 47, 1)  # e2fsprogs release whose `mke2fs -d` takes a tar archive


@dataclass(frozen=True)
class Tool:
    """An external program: the command name looked up and the Debian package that has it."""

    name: str
    package: str


MKFS_EXT4 = Tool("mkfs.ext4", "e2fsprogs")
MKE2FS = Tool("mke2fs", "e2fsprogs")
DUMPE2FS = Tool("dumpe2fs", "e2fsprogs")
DEBUGFS = Tool("debugfs", "e2fsprogs")
FAKEROOT_SYSV = Tool("fakeroot-sysv", "fakeroot")
FAKED_SYSV = Tool("faked-sysv", "fakeroot")
FAKEROOT = Tool("fakeroot", "fakeroot")
FAKED = Tool("faked", "fakeroot")
FDTOVERLAY = Tool("fdtoverlay", "device-tree-compiler")
MKIMAGE = Tool("mkimage", "u-boot-tools")
FDTPUT = Tool("fdtput", "device-tree-compiler")
DTC = Tool("dtc", "device-tree-compiler")

# Debian packages of QEMU's system emulators, by target (`qemu-system-<target>`).
QEMU_PACKAGES = {"aarch64": "qemu-system-arm", "arm": "qemu-system-arm",
                 "x86_64": "qemu-system-x86", "i386": "qemu-system-x86"}


@dataclass(frozen=True)
class ToolRun:
    """A finished run: exit status, stdout (whole, up to MAX_STDOUT) and stderr's last bytes."""

    returncode: int
    stdout: str
    stderr: str

    def last_stderr_line(self) -> str:
        """The last non-blank line of stderr (of stdout if stderr is empty), or the exit status."""
        for text in (self.stderr, self.stdout):
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            if lines:
                return lines[-1]
        return f"exit status {self.returncode}"


def qemu_tool(command: str) -> Tool:
    """The Tool of a QEMU system emulator command such as `qemu-system-aarch64`."""
    target = command.rpartition("/")[2].removeprefix("qemu-system-")
    return Tool(command, QEMU_PACKAGES.get(target, "qemu-system"))


def search_path() -> str:
    """Where tools are looked up: PATH, then /usr/sbin and /sbin (as `mkfs` users expect)."""
    path = os.environ.get("PATH", os.defpath)
    return os.pathsep.join([path, *SBIN_DIRS])


def find_tool(tool: Tool) -> str:
    """The path of `tool`'s program: a name is looked up in `search_path()`, a path is checked.

    Raises UserError `<name> not found: install <package> (apt-get install <package>)`.
    """
    found = shutil.which(tool.name, path=search_path())
    if found is None:
        raise UserError(f"{tool.name} not found: install {tool.package} "
                        f"(apt-get install {tool.package})")
    return found


def find_first(*tools: Tool) -> str:
    """The path of the first of `tools` that is installed; UserError naming the last if none."""
    for tool in tools[:-1]:
        try:
            return find_tool(tool)
        except UserError:
            continue
    return find_tool(tools[-1])


def fakeroot_pair() -> tuple[str, str]:
    """fakeroot and the faked it pairs with: Debian's `-sysv` pair, else the plain names.

    The two must match (a `fakeroot-tcp` talks to `faked-tcp` only). Raises UserError naming
    the fakeroot package when neither pair is installed.
    """
    try:
        return find_tool(FAKEROOT_SYSV), find_tool(FAKED_SYSV)
    except UserError:
        return find_tool(FAKEROOT), find_tool(FAKED)


def run_tool(argv: Sequence[str], failure: str, where: str | None = None, *,
             env: Mapping[str, str] | None = None, check: bool = True,
             timeout: float | None = None) -> ToolRun:
    """Run `argv` (argv[0] from `find_tool`) to the end, as our child that dies with us.

    stdin is /dev/null; stdout is kept up to MAX_STDOUT bytes, stderr's last STDERR_TAIL bytes.
    With `check`, a non-zero exit raises UserError `<failure>: <last stderr line>` at `where`
    (so `failure` names our input: `mkfs.ext4 failed on rootfs.tar`). A run past `timeout`
    seconds or past MAX_STDOUT is killed and raises UserError whatever `check` says.
    """
    proc = _start(argv, env, subprocess.DEVNULL, subprocess.PIPE, subprocess.PIPE)
    try:
        out, err, why = _collect(proc, timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    if why:
        raise UserError(f"{failure}: {why}", where)
    done = ToolRun(proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"))
    if check and done.returncode != 0:
        raise UserError(f"{failure}: {done.last_stderr_line()}", where)
    return done


def _collect(proc: subprocess.Popen[bytes], timeout: float | None) -> tuple[bytes, bytes, str]:
    """Read both pipes to their end: (stdout, stderr's tail, why the run was cut short or '')."""
    out, err = bytearray(), bytearray()
    deadline = None if timeout is None else time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        for stream, buffer in ((proc.stdout, out), (proc.stderr, err)):
            if stream is not None:
                selector.register(stream, selectors.EVENT_READ, buffer)
        while selector.get_map():
            wait = None if deadline is None else deadline - time.monotonic()
            if wait is not None and wait <= 0:
                return bytes(out), bytes(err), f"no result after {timeout:g} s"
            for key, _ in selector.select(wait):
                data = os.read(key.fd, 65536)
                if not data:
                    selector.unregister(key.fileobj)
                    continue
                key.data.extend(data)
                if key.data is err and len(err) > STDERR_TAIL:
                    del err[: len(err) - STDERR_TAIL]
                if len(out) > MAX_STDOUT:
                    return bytes(out), bytes(err), f"more than {MAX_STDOUT} bytes of output"
    return bytes(out), bytes(err), ""


def start_interactive(argv: Sequence[str]) -> subprocess.Popen[bytes]:
    """Start `argv` with stdin and stdout as pipes and stderr merged into stdout, as our child
    that gets SIGKILL when we die (for QEMU, whose console we watch and type into).

    Raises UserError when argv[0] cannot be executed.
    """
    return _start(argv, None, subprocess.PIPE, subprocess.PIPE, subprocess.STDOUT)


def _start(argv: Sequence[str], env: Mapping[str, str] | None, stdin: int, stdout: int,
           stderr: int) -> subprocess.Popen[bytes]:
    try:
        return subprocess.Popen(list(argv), env=None if env is None else dict(env),
                                stdin=stdin, stdout=stdout, stderr=stderr,
                                preexec_fn=die_with_parent())
    except OSError as exc:
        raise UserError(f"cannot run {argv[0]}: {exc.strerror}") from exc


Process = subprocess.Popen  # the type `start_interactive` returns, for modules that hold one


def parse_e2fsprogs_version(banner: str) -> tuple[int, ...]:
    """The release in an e2fsprogs banner (`mke2fs 1.47.0 (5-Feb-2023)` -> (1, 47, 0)).

    Raises UserError when the text holds no such line.
    """
    match = re.search(r"^\S+ (\d+(?:\.\d+)+)", banner, re.MULTILINE)
    if match is None:
        raise UserError(f"cannot read an e2fsprogs version from {banner.strip()[:80]!r}")
    return tuple(int(part) for part in match.group(1).split("."))


def mke2fs_version() -> tuple[int, ...]:
    """The installed mke2fs's release, from `mke2fs -V` (which prints it on stderr)."""
    done = run_tool([find_tool(MKE2FS), "-V"], "mke2fs -V failed")
    return parse_e2fsprogs_version(done.stderr + done.stdout)


def mke2fs_reads_tarball(version: tuple[int, ...]) -> bool:
    """Whether `mke2fs -d` of this release takes a tar archive (e2fsprogs 1.47.1 and later;
    1.47.0, Debian 12's, reads only a directory)."""
    return version >= MKE2FS_READS_TARBALL


def mkimage_signs(usage: str) -> bool:
    """Whether a mkimage whose usage text (`mkimage -h`) is `usage` can sign FITs.

    U-Boot's tools/mkimage.c prints `Signing / verified boot options: [-k keydir] ...` when
    built with CONFIG_FIT_SIGNATURE, else `Signing / verified boot not supported`.
    """
    return "Signing / verified boot options" in usage


def find_signing_mkimage(where: str | None = None) -> str:
    """The path of a mkimage that can sign FITs; UserError at `where` naming u-boot-tools when
    mkimage is missing or was built without FIT signing."""
    mkimage = find_tool(MKIMAGE)
    usage = run_tool([mkimage, "-h"], "mkimage -h failed", where, check=False)
    if not mkimage_signs(usage.stderr + usage.stdout):
        raise UserError(f"{mkimage} cannot sign FITs (built without FIT signature support): "
                        f"install {MKIMAGE.package} (apt-get install {MKIMAGE.package})", where)
    return mkimage


def mkimage_version() -> str:
    """The installed mkimage's version text (`mkimage version 2023.01+dfsg-2`, from `-V`)."""
    done = run_tool([find_tool(MKIMAGE), "-V"], "mkimage -V failed")
    return (done.stdout + done.stderr).strip().splitlines()[0] if done.stdout + done.stderr \
        else "unknown"
