"""Real arm64 binaries (Xen, Linux, busybox) from Debian, fetched once into a shared cache.

`apt-get download` runs with private apt state (lists and caches inside the cache directory) so
the host's own architecture setup is never touched. The files land under fixed names with a
manifest, so doit tasks can depend on them and a second run needs no network.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ibtasks.errors import UserError
from ibtasks.fsutil import write_atomic

ARCH = "arm64"
# The metapackages name today's Xen and Linux; we take the packages they depend on.
XEN_META = "xen-system-arm64"
LINUX_META = "linux-image-arm64"
BUSYBOX = "busybox-static"


@dataclass(frozen=True)
class Binaries:
    """The extracted files under fixed names, and the package versions they came from."""

    xen: Path
    kernel: Path
    busybox: Path
    packages: dict[str, str]


def cache_root() -> Path:
    """The download cache shared by the example and the tests (`IBTASKS_CACHE`)."""
    configured = os.environ.get("IBTASKS_CACHE")
    if configured:
        return Path(configured)
    return Path.home() / ".cache" / "ibtasks"


def binaries_dir(cache: Path) -> Path:
    return cache / "debian-arm64"


def expected_binaries(cache: Path) -> Binaries:
    """Where the files are once fetched (their names do not depend on the versions)."""
    base = binaries_dir(cache) / "files"
    return Binaries(
        xen=base / "xen", kernel=base / "Image", busybox=base / "busybox", packages={}
    )


def _manifest(cache: Path) -> Path:
    return binaries_dir(cache) / "manifest.json"


def load_binaries(cache: Path) -> Binaries | None:
    """The cached binaries, or None when any piece is missing."""
    try:
        packages = json.loads(_manifest(cache).read_text())["packages"]
    except (OSError, ValueError, KeyError):
        return None
    found = expected_binaries(cache)
    if not all(path.is_file() for path in (found.xen, found.kernel, found.busybox)):
        return None
    return Binaries(found.xen, found.kernel, found.busybox, dict(packages))


def _apt_options(state: Path) -> list[str]:
    options = [
        f"-oAPT::Architecture={ARCH}",
        f"-oAPT::Architectures={ARCH}",
        f"-oDir::State::Lists={state / 'lists'}",
        f"-oDir::Cache={state / 'cache'}",
    ]
    if os.geteuid() == 0:
        # As root apt drops to the _apt user, who cannot write into our cache directory.
        options.append("-oAPT::Sandbox::User=root")
    return options


def _run(argv: list[str], cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise UserError(f"{argv[0]} not found: this example needs a Debian-like host") from exc
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise UserError(f"{' '.join(argv[:2])} failed (status {done.returncode}):\n{tail}")
    return done.stdout


def _dependency(options: list[str], meta: str, prefix: str) -> str:
    """The package `meta` depends on whose name starts with `prefix`."""
    text = _run(["apt-cache", *options, "depends", meta])
    for line in text.splitlines():
        kind, _, name = line.strip().partition(": ")
        if kind == "Depends" and name.startswith(prefix):
            return name
    raise UserError(f"{meta} depends on no {prefix}* package (apt-cache depends {meta})")


def _extract(deb: Path, pick: Callable[[str], bool], out: Path) -> str:
    """Copy the one member of `deb`'s data that `pick` accepts to `out`; return its name."""
    with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE) as proc:
        if proc.stdout is None:
            raise RuntimeError("dpkg-deb must write to a pipe")
        with tarfile.open(fileobj=proc.stdout, mode="r|") as archive:
            for member in archive:
                if member.isfile() and pick(member.name):
                    data = archive.extractfile(member)
                    if data is None:
                        break
                    write_atomic(out, data.read())
                    proc.stdout.read()
                    return member.name
    raise UserError(f"{deb.name} holds no file this example can use")


def fetch_binaries(cache: Path, say: Callable[[str], None] = print) -> Binaries:
    """The cached binaries, downloading and extracting them first if needed."""
    existing = load_binaries(cache)
    if existing is not None:
        return existing
    base = binaries_dir(cache)
    (base / "apt" / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (base / "apt" / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    debs = base / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    # Tests and the example may fetch at the same time: one downloads, the other waits.
    with (base / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        existing = load_binaries(cache)
        if existing is not None:
            return existing
        options = _apt_options(base / "apt")
        say(f"fetch: apt-get update (private {ARCH} lists in {base / 'apt'})")
        _run(["apt-get", *options, "update"])
        xen_pkg = _dependency(options, XEN_META, "xen-hypervisor-")
        linux_pkg = _dependency(options, LINUX_META, "linux-image-")
        names = [xen_pkg, linux_pkg, BUSYBOX]
        say(f"fetch: apt-get download {' '.join(names)}")
        for old in debs.glob("*.deb"):
            old.unlink()
        _run(["apt-get", *options, "download", *names], cwd=debs)
        wanted = expected_binaries(cache)
        packages: dict[str, str] = {}
        for deb in sorted(debs.glob("*.deb")):
            fields = _run(["dpkg-deb", "-W", "--showformat=${Package} ${Version}", str(deb)])
            name, version = fields.split()
            packages[name] = version
            if name == xen_pkg:
                # /boot/xen-4.17-arm64 is booti-able; the .efi and .config beside it are not it.
                member = _extract(deb, _is_xen, wanted.xen)
            elif name == linux_pkg:
                member = _extract(deb, lambda n: n.startswith("./boot/vmlinuz-"), wanted.kernel)
            else:
                member = _extract(deb, lambda n: n == "./bin/busybox", wanted.busybox)
            say(f"fetch: {name} {version}: {member}")
        manifest = {"packages": packages}
        write_atomic(_manifest(cache), (json.dumps(manifest, indent=1) + "\n").encode())
        for deb in debs.glob("*.deb"):
            deb.unlink()  # everything needed is extracted; the packages are 60 MB
        found = load_binaries(cache)
        if found is None:
            raise UserError(f"fetched packages but {base / 'files'} is incomplete")
        return found


def _is_xen(name: str) -> bool:
    stem = name.rsplit("/", 1)[-1]
    return name.startswith("./boot/xen-") and stem.endswith(f"-{ARCH}")


def copy_into(source: Path, target: Path) -> None:
    """Put a cached binary into a build directory (a hard link when possible: they are big)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
