"""Registry credentials from the usual places: environment variables, then Docker's
config.json (`docker login`, also written by GitLab's and GitHub's login actions)."""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from pathlib import Path

USERNAME_ENV = "IBTASKS_CACHE_USERNAME"
PASSWORD_ENV = "IBTASKS_CACHE_PASSWORD"


def docker_config_path(environ: Mapping[str, str]) -> Path:
    """Docker's client config: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`."""
    if environ.get("DOCKER_CONFIG"):
        return Path(environ["DOCKER_CONFIG"]) / "config.json"
    return Path(environ.get("HOME", os.path.expanduser("~"))) / ".docker" / "config.json"


def registry_credentials(host: str, environ: Mapping[str, str]) -> tuple[str, str] | None:
    """(username, password) for registry `host` (with its port): IBTASKS_CACHE_USERNAME and
    IBTASKS_CACHE_PASSWORD when both are set, else the `auths` entry of Docker's config.json
    for `host` (keyed `host`, `https://host` or `http://host`; its `auth` is base64 of
    `user:password`, as `docker login` writes it). None when there are none: the registry
    is then asked anonymously. Credential helpers (`credsStore`) are not run."""
    user, password = environ.get(USERNAME_ENV), environ.get(PASSWORD_ENV)
    if user and password:
        return user, password
    try:
        data = json.loads(docker_config_path(environ).read_text())
    except (OSError, ValueError):
        return None
    auths = data.get("auths") if isinstance(data, dict) else None
    if not isinstance(auths, dict):
        return None
    for name in (host, f"https://{host}", f"http://{host}", f"https://{host}/v1/"):
        entry = auths.get(name)
        if isinstance(entry, dict):
            found = _entry_credentials(entry)
            if found is not None:
                return found
    return None


def _entry_credentials(entry: Mapping[str, object]) -> tuple[str, str] | None:
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            user, sep, password = base64.b64decode(auth).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return (user, password) if sep else None
    name, secret = entry.get("username"), entry.get("password")
    if isinstance(name, str) and isinstance(secret, str):
        return name, secret
    return None
