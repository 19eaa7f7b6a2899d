"""Real arm64 binaries (Xen, Linux, busybox) from Debian, fetched once into a shared cache.

`apt-get download` runs with private apt state (lists and caches inside the cache directory) so
the host's own architecture setup is never touched. The files land under fixed names with a
manifest, so doit tasks can depend on them and a second run needs no network. Beside them the
cache keeps the few kernel modules dom0 needs to mount a disk partition (Debian builds
virtio_blk, ahci and ext4 as modules), with their load order.
"""

from __future__ import annotations

import fcntl
import json
import lzma
import os
import shutil
import struct
import subprocess
import tarfile
from collections.abc import Callable, Iterator, Sequence
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
        linux_debs = sorted(debs.glob(f"{linux_pkg}_*.deb"))
        if linux_debs:
            # The modules come from the same package now, while it is here.
            _extract_modules(linux_debs[0], modules_dir(cache), say)
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


# Drivers dom0 needs to mount its rootfs partition from a virtio-blk (mmio or pci) or AHCI disk:
# Debian's kernel has them as modules (virtio and virtio_ring are built in).
ROOTFS_MODULES = ("virtio_mmio", "virtio_pci", "virtio_blk", "ahci", "sd_mod", "ext4")


@dataclass(frozen=True)
class KernelModule:
    """What a module's `.modinfo` section says about loading it."""

    name: str
    member: str
    depends: tuple[str, ...]
    softdeps: tuple[str, ...]
    aliases: tuple[str, ...]


@dataclass(frozen=True)
class Modules:
    """The cached modules: `directory/<name>.ko` for each name of `order` (load in that order)."""

    directory: Path
    order: tuple[str, ...]
    release: str

    def path(self, name: str) -> Path:
        return self.directory / f"{name}.ko"


def modules_dir(cache: Path) -> Path:
    return binaries_dir(cache) / "modules"


def _module_name(text: str) -> str:
    """modprobe treats `-` and `_` in module names alike; we use `_`."""
    return text.replace("-", "_")


def read_modinfo(elf: bytes, where: str) -> list[str]:
    """The `key=value` strings of a little-endian ELF64 module's `.modinfo` section."""
    if elf[:6] != b"\x7fELF\x02\x01":
        raise UserError(f"{where}: not a little-endian 64-bit ELF module")
    (section_offset,) = struct.unpack_from("<Q", elf, 0x28)
    entry_size, count, names_index = struct.unpack_from("<HHH", elf, 0x3A)
    sections = [
        struct.unpack_from("<I4xQ8xQQ", elf, section_offset + i * entry_size) for i in range(count)
    ]
    names_offset = sections[names_index][2]
    for name_at, _flags, offset, size in sections:
        start = names_offset + name_at
        if elf[start : elf.index(b"\0", start)] == b".modinfo":
            return [item.decode() for item in elf[offset : offset + size].split(b"\0") if item]
    raise UserError(f"{where}: no .modinfo section")


def parse_module(member: str, data: bytes) -> KernelModule:
    """The load facts of the module `member` (a .ko, or .ko.xz which we decompress)."""
    if member.endswith(".xz"):
        data = lzma.decompress(data)
    fields: dict[str, list[str]] = {}
    for item in read_modinfo(data, member):
        key, _, value = item.partition("=")
        fields.setdefault(key, []).append(value)
    stem = member.rsplit("/", 1)[-1].split(".ko")[0]
    depends = [d for value in fields.get("depends", []) for d in value.split(",") if d]
    # `softdep=pre: a b post: c`: only the `pre:` names must be there before this one loads.
    softdeps: list[str] = []
    for value in fields.get("softdep", []):
        words, keep = value.split(), False
        for word in words:
            if word.endswith(":"):
                keep = word == "pre:"
            elif keep:
                softdeps.append(word)
    return KernelModule(
        name=_module_name(fields.get("name", [stem])[0]),
        member=member,
        depends=tuple(_module_name(d) for d in depends),
        softdeps=tuple(softdeps),
        aliases=tuple(fields.get("alias", [])),
    )


def load_order(modules: dict[str, KernelModule], wanted: Sequence[str]) -> list[str]:
    """`wanted` and everything they need, each after what it needs (depends and pre-softdeps).

    A softdep names a module or an alias (`crypto-crc32c`); an alias several modules provide
    resolves to the `_generic` one (it needs no CPU feature), else the first by name.
    """
    providers: dict[str, list[str]] = {}
    for module in modules.values():
        for alias in module.aliases:
            providers.setdefault(alias, []).append(module.name)

    def resolve(name: str, needed_by: str) -> str:
        if _module_name(name) in modules:
            return _module_name(name)
        candidates = sorted(providers.get(name, []))
        if not candidates:
            raise UserError(f"kernel module {needed_by} needs {name}, which no module provides")
        generic = [c for c in candidates if c.endswith("_generic")]
        return (generic or candidates)[0]

    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order:
            return
        if name in visiting:
            raise UserError(f"kernel modules depend on each other in a cycle through {name}")
        visiting.add(name)
        module = modules[name]
        for dependency in (*module.softdeps, *module.depends):
            visit(resolve(dependency, name))
        visiting.discard(name)
        order.append(name)

    for name in wanted:
        visit(resolve(name, "the wanted list"))
    return order


def _package_members(deb: Path) -> Iterator[tuple[tarfile.TarInfo, tarfile.TarFile]]:
    """The regular files of `deb`'s data, streamed."""
    with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE) as proc:
        if proc.stdout is None:
            raise RuntimeError("dpkg-deb must write to a pipe")
        with tarfile.open(fileobj=proc.stdout, mode="r|") as archive:
            for member in archive:
                if member.isfile():
                    yield member, archive
            proc.stdout.read()


def _is_module(name: str) -> bool:
    return name.startswith("./lib/modules/") and name.endswith((".ko", ".ko.xz"))


def _extract_modules(deb: Path, out: Path, say: Callable[[str], None]) -> Modules:
    """Keep ROOTFS_MODULES and their dependencies from the kernel package `deb` in `out`.

    Debian's package ships no modules.dep (depmod writes it at install time), so the
    dependencies come from each module's `.modinfo` (`depends=`, `softdep=`), which is what
    depmod and modprobe read too. Two passes over the package: one to learn, one to copy.
    """
    known: dict[str, KernelModule] = {}
    for member, archive in _package_members(deb):
        data = archive.extractfile(member)
        if _is_module(member.name) and data is not None:
            module = parse_module(member.name, data.read())
            known.setdefault(module.name, module)
    if not known:
        raise UserError(f"{deb.name} holds no kernel modules")
    order = load_order(known, ROOTFS_MODULES)
    members = {known[name].member: name for name in order}
    release = next(iter(members)).split("/")[3]
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.ko"):
        old.unlink()
    for member, archive in _package_members(deb):
        data = archive.extractfile(member)
        if member.name in members and data is not None:
            raw = data.read()
            if member.name.endswith(".xz"):
                raw = lzma.decompress(raw)  # busybox insmod may not read xz
            write_atomic(out / f"{members[member.name]}.ko", raw)
    listing = {"release": release, "order": order}
    write_atomic(out / "order.json", (json.dumps(listing, indent=1) + "\n").encode())
    say(f"fetch: kernel modules for the rootfs disk: {' '.join(order)}")
    found = load_modules(Path(out))
    if found is None:
        raise UserError(f"extracted kernel modules but {out} is incomplete")
    return found


def load_modules(directory: Path) -> Modules | None:
    """The modules cached in `directory`, or None when any is missing."""
    try:
        listing = json.loads((directory / "order.json").read_text())
        found = Modules(directory, tuple(listing["order"]), str(listing["release"]))
    except (OSError, ValueError, KeyError):
        return None
    if not all(found.path(name).is_file() for name in found.order):
        return None
    return found


def fetch_modules(cache: Path, say: Callable[[str], None] = print) -> Modules:
    """The rootfs modules of the cached kernel, downloading its package again if needed."""
    binaries = fetch_binaries(cache, say)
    existing = load_modules(modules_dir(cache))
    if existing is not None:
        return existing
    base = binaries_dir(cache)
    with (base / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        existing = load_modules(modules_dir(cache))
        if existing is not None:
            return existing
        linux = [name for name in binaries.packages if name.startswith("linux-image-")]
        if not linux:
            raise UserError(f"{_manifest(cache)} names no linux-image package")
        name, version = linux[0], binaries.packages[linux[0]]
        debs = base / "debs"
        debs.mkdir(parents=True, exist_ok=True)
        found = sorted(debs.glob(f"{name}_*.deb"))
        if not found:
            # The modules must match the cached kernel exactly: the same package version.
            options = _apt_options(base / "apt")
            say(f"fetch: apt-get download {name}={version} (for its modules)")
            try:
                _run(["apt-get", *options, "download", f"{name}={version}"], cwd=debs)
            except UserError:
                _run(["apt-get", *options, "update"])
                _run(["apt-get", *options, "download", f"{name}={version}"], cwd=debs)
            found = sorted(debs.glob(f"{name}_*.deb"))
        if not found:
            raise UserError(f"apt-get download {name}={version} left no package in {debs}")
        modules = _extract_modules(found[0], modules_dir(cache), say)
        for deb in found:
            deb.unlink()
        return modules
