"""The shared cache logs in to a registry that asks for Basic auth (Debian's docker-registry
with an htpasswd file of bcrypt entries, made by `htpasswd -B`): with credentials from the
environment or from Docker's config.json a second runner gets every partition from the cache;
a wrong password is a cache warning for each cached task, and the build still succeeds."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.oci_registry import LocalRegistry
from tests.tasks.test_shared_cache import (  # noqa: F401
    WARNING,
    build_disk,
    ext4_builds,
    inputs,
    mkfs_log,
    runner,
)

USER, PASSWORD = "ci-runner", "s3cret-Pass"


@pytest.fixture
def locked_registry(tmp_path: Path) -> Iterator[LocalRegistry]:
    storage = tmp_path / "registry"
    storage.mkdir()
    htpasswd = tmp_path / "htpasswd"
    subprocess.run(["htpasswd", "-B", "-b", "-c", str(htpasswd), USER, PASSWORD],
                   check=True, capture_output=True)
    assert htpasswd.read_text().startswith(f"{USER}:$2y$")  # bcrypt, as the registry needs
    server = LocalRegistry(storage, htpasswd=htpasswd, credentials=(USER, PASSWORD)).start()
    yield server
    server.stop()


def build_twice(inputs: Path, tmp_path: Path, registry: LocalRegistry,  # noqa: F811
                mkfs_log: Path) -> str:  # noqa: F811
    """Runner A builds, then runner B (a fresh folder) gets every partition from the cache;
    both builds' stderr."""
    first = build_disk(runner(inputs, tmp_path, "runner-a"), mkfs_log, "--cache",
                       registry.url())
    assert ext4_builds(mkfs_log) == ["dom0.ext4", "domU1.ext4"]
    second = build_disk(runner(inputs, tmp_path, "runner-b"), mkfs_log, "--cache",
                        registry.url())
    assert ext4_builds(mkfs_log) == []
    return first.stderr + second.stderr


def test_a_registry_asking_for_basic_auth_is_answered_from_the_environment(
        inputs: Path, tmp_path: Path, locked_registry: LocalRegistry,  # noqa: F811
        mkfs_log: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.docker/config.json either
    monkeypatch.setenv("IBTASKS_CACHE_USERNAME", USER)
    monkeypatch.setenv("IBTASKS_CACHE_PASSWORD", PASSWORD)
    assert WARNING not in build_twice(inputs, tmp_path, locked_registry, mkfs_log)
    assert len(locked_registry.tags()) == 3


def test_a_registry_asking_for_basic_auth_is_answered_from_dockers_config_json(
        inputs: Path, tmp_path: Path, locked_registry: LocalRegistry,  # noqa: F811
        mkfs_log: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.delenv("IBTASKS_CACHE_USERNAME", raising=False)
    monkeypatch.delenv("IBTASKS_CACHE_PASSWORD", raising=False)
    docker = tmp_path / "docker"
    docker.mkdir()
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (docker / "config.json").write_text(json.dumps(
        {"auths": {locked_registry.host: {"auth": auth}}}))  # as `docker login` writes it
    monkeypatch.setenv("DOCKER_CONFIG", str(docker))
    assert WARNING not in build_twice(inputs, tmp_path, locked_registry, mkfs_log)
    assert len(locked_registry.tags()) == 3


def test_a_wrong_password_is_one_warning_per_cached_task_and_the_build_succeeds(
        inputs: Path, tmp_path: Path, locked_registry: LocalRegistry,  # noqa: F811
        mkfs_log: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("IBTASKS_CACHE_USERNAME", USER)
    monkeypatch.setenv("IBTASKS_CACHE_PASSWORD", "wrong")
    a = runner(inputs, tmp_path, "runner-a")
    done = build_disk(a, mkfs_log, "--cache", locked_registry.url())
    lines = [line for line in done.stderr.splitlines() if line.startswith(WARNING)]
    assert sorted(line.split(": ")[3] for line in lines) == [
        "ib_partition:boot", "ib_partition:dom0", "ib_partition:domU1"]
    assert all("HTTP 401" in line and line.endswith("; building it") for line in lines)
    assert "Traceback" not in done.stderr
    assert ext4_builds(mkfs_log) == ["dom0.ext4", "domU1.ext4"]
    assert locked_registry.tags() == []  # nothing was uploaded
    subprocess.run(["sfdisk", "--json", str(a / "disk.img")], check=True, capture_output=True)
