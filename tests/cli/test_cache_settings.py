"""The shared cache from the config: `CACHE=oci://...` and `CACHE_READ_ONLY=y` rows of the
settings table; `--cache`/`--cache-read-only` win over them, and they over IBTASKS_CACHE and
IBTASKS_CACHE_READ_ONLY. A bad location in the config is one line naming its file, line and
key. Checked against a real registry (docker-registry on 127.0.0.1) through its tags."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ibtasks.cache.location import CacheLocation, cache_location
from tests.conftest import run_ibtasks
from tests.oci_registry import LocalRegistry, free_port
from tests.tasks.test_shared_cache import CONFIG, WARNING, make_rootfs

DEAD = "oci://127.0.0.1:{port}/ci/nothing-listens"


@pytest.fixture(autouse=True)
def archives(seed_inputs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The config's rootfs archives, and no cache setting from the test's own environment."""
    for name in ("IBTASKS_CACHE", "IBTASKS_CACHE_READ_ONLY"):
        monkeypatch.delenv(name, raising=False)
    make_rootfs(seed_inputs / "rootfs-dom0.tar.gz", b"dom0\n", filler=16)
    make_rootfs(seed_inputs / "rootfs-domU.tar.gz", b"domU\n", filler=16)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[LocalRegistry]:
    storage = tmp_path / "registry"
    storage.mkdir()
    server = LocalRegistry(storage).start()
    yield server
    server.stop()


def fit_build(inputs: Path, config_lines: str, *flags: str,
              env: dict[str, str] | None = None) -> str:
    """`uboot-script-gen -f` (one cached task, the FIT) with `config_lines` added to the
    config and `env` added to the environment; its stderr."""
    (inputs / "config").write_text(CONFIG + config_lines)
    done = run_ibtasks("uboot-script-gen", "-c", "config", "-d", ".", "-t", "sd", "-f", *flags,
                       cwd=inputs, env=env)
    assert done.returncode == 0, done.stderr
    return done.stderr


def dead() -> str:
    return DEAD.format(port=free_port())


def test_the_flag_wins_over_the_key_and_the_key_over_the_environment() -> None:
    environ = {"IBTASKS_CACHE": "oci://env.example/c", "IBTASKS_CACHE_READ_ONLY": "1"}
    key = ("oci://key.example/c", "config:3")
    assert cache_location("oci://flag.example/c", False, environ, key, False) == \
        CacheLocation("flag.example", "c", "https", False)
    assert cache_location(None, False, environ, key, None) == \
        CacheLocation("key.example", "c", "https", True)
    assert cache_location(None, True, environ, key, False) == \
        CacheLocation("key.example", "c", "https", True)
    assert cache_location(None, False, environ, None, None) == \
        CacheLocation("env.example", "c", "https", True)
    assert cache_location(None, False, {}, ("  ", "config:3"), True) is None


def test_a_cache_key_in_the_config_fills_the_registry(seed_inputs: Path,
                                                      registry: LocalRegistry) -> None:
    stderr = fit_build(seed_inputs, f"CACHE={registry.url()}\n",
                       env={"IBTASKS_CACHE": dead()})
    assert WARNING not in stderr  # the key won over the variable's dead registry
    assert len(registry.tags()) == 1


def test_the_cache_flag_wins_over_the_key(seed_inputs: Path, registry: LocalRegistry) -> None:
    stderr = fit_build(seed_inputs, f"CACHE={dead()}\n", "--cache", registry.url())
    assert WARNING not in stderr
    assert len(registry.tags()) == 1


def test_cache_read_only_in_the_config_uploads_nothing(seed_inputs: Path,
                                                       registry: LocalRegistry) -> None:
    fit_build(seed_inputs, f"CACHE={registry.url()}\nCACHE_READ_ONLY=y\n")
    assert registry.tags() == []


def test_cache_read_only_unset_in_the_config_wins_over_the_environment(
        seed_inputs: Path, registry: LocalRegistry) -> None:
    fit_build(seed_inputs, f"CACHE={registry.url()}\nCACHE_READ_ONLY=n\n",
              env={"IBTASKS_CACHE_READ_ONLY": "1"})
    assert len(registry.tags()) == 1


def test_the_read_only_flag_wins_over_the_key(seed_inputs: Path,
                                              registry: LocalRegistry) -> None:
    fit_build(seed_inputs, f"CACHE={registry.url()}\nCACHE_READ_ONLY=n\n", "--cache-read-only")
    assert registry.tags() == []


@pytest.mark.parametrize(("value", "message"), [
    ("http://127.0.0.1:5000/ci/cache",
     "'http://127.0.0.1:5000/ci/cache': expected oci://HOST[:PORT]/REPOSITORY"),
    ("oci://ghcr.io/Acme/Cache",
     "'oci://ghcr.io/Acme/Cache': 'Acme/Cache' is not a repository name (lower-case letters, "
     "digits, and . _ - / between them)"),
    ("oci://ghcr.io",
     "'oci://ghcr.io': '' is not a repository name (lower-case letters, digits, and . _ - / "
     "between them)"),
])
def test_a_bad_cache_location_in_the_config_is_one_line_naming_file_line_and_key(
        seed_inputs: Path, value: str, message: str) -> None:
    (seed_inputs / "config").write_text(CONFIG + f"CACHE={value}\n")
    done = run_ibtasks("uboot-script-gen", "-c", "config", "-d", ".", "-t", "sd", "-f",
                       cwd=seed_inputs)
    assert done.returncode == 1
    line = CONFIG.count("\n") + 1
    assert done.stderr == f"ibtasks: error: config:{line}: CACHE: {message}\n"
    assert not (seed_inputs / "boot.fit").exists()
    assert not (seed_inputs / "boot.scr").exists()


def test_naming_another_cache_in_the_config_reruns_no_task(seed_inputs: Path,
                                                           registry: LocalRegistry) -> None:
    fit_build(seed_inputs, f"CACHE={registry.url()}\n")
    fit = (seed_inputs / "boot.fit").stat()
    (seed_inputs / "config").write_text(CONFIG + f"CACHE={dead()}\n")
    done = run_ibtasks("uboot-script-gen", "-c", "config", "-d", ".", "-t", "sd", "-f", "-v",
                       cwd=seed_inputs)
    assert done.returncode == 0, done.stderr
    assert "ibtasks: running" not in done.stderr and WARNING not in done.stderr
    assert (seed_inputs / "boot.fit").stat().st_mtime_ns == fit.st_mtime_ns
