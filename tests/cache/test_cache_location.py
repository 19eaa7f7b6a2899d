"""Where the cache is (`--cache`, IBTASKS_CACHE) and whose credentials it is asked with
(IBTASKS_CACHE_USERNAME/PASSWORD, Docker's config.json)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from ibtasks.cache.credentials import registry_credentials
from ibtasks.cache.location import CacheLocation, cache_location, parse_cache_location
from ibtasks.errors import UserError


def test_a_registry_on_a_public_host_is_asked_over_https() -> None:
    assert parse_cache_location("oci://ghcr.io/acme/ibtasks-cache", "--cache") == \
        CacheLocation("ghcr.io", "acme/ibtasks-cache", "https", False)


def test_a_loopback_registry_is_asked_over_plain_http() -> None:
    assert parse_cache_location("oci://127.0.0.1:5000/ci/cache/", "--cache") == \
        CacheLocation("127.0.0.1:5000", "ci/cache", "http", False)


@pytest.mark.parametrize(("text", "message"), [
    ("https://ghcr.io/acme/cache",
     "--cache: 'https://ghcr.io/acme/cache': expected oci://HOST[:PORT]/REPOSITORY"),
    ("oci://ghcr.io", "--cache: 'oci://ghcr.io': '' is not a repository name "
     "(lower-case letters, digits, and . _ - / between them)"),
    ("oci://ghcr.io/Acme/Cache", "--cache: 'oci://ghcr.io/Acme/Cache': 'Acme/Cache' is not a "
     "repository name (lower-case letters, digits, and . _ - / between them)"),
    ("oci://gh cr.io/acme", "--cache: 'oci://gh cr.io/acme': 'gh cr.io' is not a registry "
     "host[:port]"),
])
def test_a_malformed_cache_location_is_one_error_naming_the_flag(text: str,
                                                                 message: str) -> None:
    with pytest.raises(UserError) as caught:
        parse_cache_location(text, "--cache")
    assert str(caught.value) == message


def test_the_flag_wins_over_the_environment_and_read_only_comes_from_either() -> None:
    environ = {"IBTASKS_CACHE": "oci://registry.gitlab.com/acme/cache",
               "IBTASKS_CACHE_READ_ONLY": "yes"}
    assert cache_location("oci://ghcr.io/acme/c", False, environ) == \
        CacheLocation("ghcr.io", "acme/c", "https", True)
    assert cache_location(None, False, environ) == \
        CacheLocation("registry.gitlab.com", "acme/cache", "https", True)
    assert cache_location(None, True, {}) is None
    with pytest.raises(UserError, match=r"^IBTASKS_CACHE: 'ghcr\.io/x'"):
        cache_location(None, False, {"IBTASKS_CACHE": "ghcr.io/x"})


def write_docker_config(folder: Path, auths: dict[str, object]) -> dict[str, str]:
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"auths": auths}))
    return {"DOCKER_CONFIG": str(folder)}


def test_credentials_come_from_docker_config_auth(tmp_path: Path) -> None:
    auth = base64.b64encode(b"gitlab-ci-token:s3cr:et").decode()
    environ = write_docker_config(tmp_path / "docker", {
        "registry.gitlab.com": {"auth": auth},
        "https://ghcr.io": {"auth": base64.b64encode(b"noseparator").decode()}})
    assert registry_credentials("registry.gitlab.com", environ) == ("gitlab-ci-token", "s3cr:et")
    assert registry_credentials("ghcr.io", environ) is None  # not user:password
    assert registry_credentials("quay.io", environ) is None


def test_the_environment_wins_over_docker_config(tmp_path: Path) -> None:
    environ = write_docker_config(tmp_path / "docker", {"ghcr.io": {"username": "octocat",
                                                                   "password": "old"}})
    assert registry_credentials("ghcr.io", environ) == ("octocat", "old")
    environ |= {"IBTASKS_CACHE_USERNAME": "ci", "IBTASKS_CACHE_PASSWORD": "token"}
    assert registry_credentials("ghcr.io", environ) == ("ci", "token")


def test_docker_config_is_found_in_home_and_an_unreadable_one_means_anonymous(
        tmp_path: Path) -> None:
    (tmp_path / ".docker").mkdir()
    (tmp_path / ".docker" / "config.json").write_text('{"auths": {"ghcr.io": {"auth": "'
                                                      + base64.b64encode(b"a:b").decode()
                                                      + '"}}}')
    assert registry_credentials("ghcr.io", {"HOME": str(tmp_path)}) == ("a", "b")
    (tmp_path / ".docker" / "config.json").write_text("{not json")
    assert registry_credentials("ghcr.io", {"HOME": str(tmp_path)}) is None
