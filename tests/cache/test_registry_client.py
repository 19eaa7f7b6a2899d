"""The registry client against a real registry: uploads in bounded memory, no blob sent twice,
a download checked against its digest."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ibtasks.cache.location import parse_cache_location
from ibtasks.cache.registry import CacheError, Registry
from tests.oci_registry import LocalRegistry

REPO = Path(__file__).resolve().parents[2]
PUSH = """
import hashlib, resource, sys
from ibtasks.cache.location import parse_cache_location
from ibtasks.cache.registry import Registry
path, url = sys.argv[1], sys.argv[2]
digest = hashlib.file_digest(open(path, "rb"), "sha256").hexdigest()
registry = Registry(parse_cache_location(url, "--cache"), {})
registry.has_blob("sha256:" + "0" * 64)  # requests and its connection pool are loaded
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with open(path, "rb") as source:
    sent = registry.push_blob(source, "sha256:" + digest, 96 << 20)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(sent, (after - before) * 1024)
"""


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[LocalRegistry]:
    storage = tmp_path / "registry"
    storage.mkdir()
    server = LocalRegistry(storage).start()
    yield server
    server.stop()


def test_a_96_mib_upload_grows_peak_memory_by_less_than_a_third_of_it(
        tmp_path: Path, registry: LocalRegistry) -> None:
    blob = tmp_path / "big.bin"
    with open(blob, "wb") as out:
        for _ in range(96):
            out.write(os.urandom(1 << 20))
    done = subprocess.run([sys.executable, "-c", PUSH, str(blob), registry.url()], cwd=REPO,
                          capture_output=True, text=True, check=True)
    sent, growth = map(int, done.stdout.split())
    assert sent == 96 << 20
    assert growth < 32 << 20, f"peak memory grew by {growth} bytes"


def test_a_blob_the_registry_has_is_not_sent_again(registry: LocalRegistry) -> None:
    client = Registry(parse_cache_location(registry.url(), "--cache"), {})
    data = b"partition bytes" * 1000
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert client.push_blob(io.BytesIO(data), digest, len(data)) == len(data)
    assert client.push_blob(io.BytesIO(data), digest, len(data)) == 0
    assert client.uploaded == len(data)
    assert registry.blob_file(digest).read_bytes() == data


def test_a_blob_whose_bytes_do_not_match_its_digest_is_refused(registry: LocalRegistry) -> None:
    client = Registry(parse_cache_location(registry.url(), "--cache"), {})
    data = b"x" * 5000
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    client.push_blob(io.BytesIO(data), digest, len(data))
    registry.blob_file(digest).write_bytes(b"y" * 5000)  # the store rots
    out = io.BytesIO()
    with pytest.raises(CacheError, match="is corrupt in the registry"):
        client.pull_blob(digest, len(data), out)
    # The registry itself refuses an upload whose bytes are not the digest it is named by.
    with pytest.raises(CacheError, match="HTTP 400"):
        client.push_blob(io.BytesIO(b"z" * 10), "sha256:" + "1" * 64, 10)
