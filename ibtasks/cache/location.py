"""Where the cache is: `oci://HOST[:PORT]/REPOSITORY`, from `--cache` or IBTASKS_CACHE."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ibtasks.errors import UserError

CACHE_ENV = "IBTASKS_CACHE"
READ_ONLY_ENV = "IBTASKS_CACHE_READ_ONLY"
# The distribution spec's repository name: path components of [a-z0-9] joined by . _ __ or -.
COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
REPOSITORY = re.compile(f"{COMPONENT}(?:/{COMPONENT})*")
HOST = re.compile(r"[A-Za-z0-9.-]+(?::[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](?::[0-9]{1,5})?")
LOOPBACK = ("localhost", "127.", "[::1]")
YES = ("1", "y", "yes", "true", "on")


@dataclass(frozen=True)
class CacheLocation:
    """A registry repository holding cache entries: `host` (with its port), `repository`
    (`team/ibtasks-cache`), the URL scheme (`https`; plain `http` for a loopback host, as
    Docker treats 127.0.0.0/8 as an insecure registry) and whether this build may upload."""

    host: str
    repository: str
    scheme: str = "https"
    read_only: bool = False

    def url(self) -> str:
        """The `oci://` form, for messages."""
        return f"oci://{self.host}/{self.repository}"


def parse_cache_location(text: str, where: str, read_only: bool = False) -> CacheLocation:
    """`oci://HOST[:PORT]/REPOSITORY` as a CacheLocation; `where` names the flag or variable.

    Raises UserError `<where>: ...` for another scheme, a missing repository or a repository
    name the OCI distribution spec does not allow (upper case, empty components).
    """
    if not text.startswith("oci://"):
        raise UserError(f"{where}: {text!r}: expected oci://HOST[:PORT]/REPOSITORY")
    host, _, repository = text.removeprefix("oci://").partition("/")
    repository = repository.rstrip("/")
    if not HOST.fullmatch(host):
        raise UserError(f"{where}: {text!r}: {host!r} is not a registry host[:port]")
    if not repository or not REPOSITORY.fullmatch(repository):
        raise UserError(f"{where}: {text!r}: {repository!r} is not a repository name "
                        "(lower-case letters, digits, and . _ - / between them)")
    scheme = "http" if host.startswith(LOOPBACK) else "https"
    return CacheLocation(host, repository, scheme, read_only)


def cache_location(flag: str | None, read_only_flag: bool, environ: Mapping[str, str],
                   key: tuple[str, str] | None = None,
                   key_read_only: bool | None = None) -> CacheLocation | None:
    """The cache of a command: `--cache` wins over the config's CACHE key (`key`: its text
    and its place, `config:12`), and the key over IBTASKS_CACHE; read-only with
    `--cache-read-only`, else as the CACHE_READ_ONLY key says (`key_read_only`, None when
    the config leaves it out), else with IBTASKS_CACHE_READ_ONLY=1/y/yes/true/on. None when
    none names a cache. Raises UserError for a malformed location, naming the flag, the
    variable, or the config's file and line and the key."""
    if read_only_flag:
        read_only = True
    elif key_read_only is not None:
        read_only = key_read_only
    else:
        read_only = environ.get(READ_ONLY_ENV, "").strip().lower() in YES
    if flag:
        return parse_cache_location(flag, "--cache", read_only)
    if key is not None and key[0].strip():
        text, where = key
        try:
            return parse_cache_location(text.strip(), "CACHE", read_only)
        except UserError as exc:
            raise UserError(exc.message, where) from None
    if environ.get(CACHE_ENV):
        return parse_cache_location(environ[CACHE_ENV], CACHE_ENV, read_only)
    return None
