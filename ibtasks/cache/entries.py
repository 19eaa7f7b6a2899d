"""Cache entries as ORAS artifacts: one OCI image manifest per key, tagged with the key.

    artifactType  application/vnd.ibtasks.cache.v1
    config        the key document (canonical JSON, mediaType ...cache.key.v1+json), so two
                  entries can be compared to see why their keys differ
    layers        the task's output files in target order, each mediaType ...cache.output.v1
                  with `org.opencontainers.image.title` = the file's name

Blobs go up first, the manifest last, so a reader never sees an entry whose files are missing
(the registry refuses such a manifest). A hit lands every output through a temporary beside it
(ibtasks.fsutil) after its sha256 was checked: a corrupt download never lands.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ibtasks.cache.keys import canonical_json
from ibtasks.cache.registry import OCI_MANIFEST, CacheError, Registry
from ibtasks.fsutil import file_sha256, make_temp_beside

ARTIFACT_TYPE = "application/vnd.ibtasks.cache.v1"
KEY_MEDIA_TYPE = "application/vnd.ibtasks.cache.key.v1+json"
OUTPUT_MEDIA_TYPE = "application/vnd.ibtasks.cache.output.v1"
TITLE = "org.opencontainers.image.title"


def entry_manifest(key_blob: bytes, outputs: Sequence[tuple[str, str, int]]) -> bytes:
    """The manifest of an entry: the key document's bytes and each output as (title, sha256
    hex, size in bytes)."""
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": {"mediaType": KEY_MEDIA_TYPE, "size": len(key_blob),
                   "digest": "sha256:" + hashlib.sha256(key_blob).hexdigest()},
        "layers": [{"mediaType": OUTPUT_MEDIA_TYPE, "digest": f"sha256:{digest}",
                    "size": size, "annotations": {TITLE: title}}
                   for title, digest, size in outputs],
    }
    return canonical_json(manifest)


def entry_layers(manifest: dict[str, Any], titles: Sequence[str]) -> list[tuple[str, int]]:
    """(digest, size) of each output of an entry, checked against the titles expected (the
    outputs' names, in order). Raises CacheError for an entry of another shape."""
    layers = manifest.get("layers")
    if manifest.get("artifactType") != ARTIFACT_TYPE or not isinstance(layers, list) \
            or len(layers) != len(titles):
        raise CacheError("the entry is not an ibtasks cache entry for these outputs")
    found: list[tuple[str, int]] = []
    for layer, title in zip(layers, titles, strict=True):
        if not isinstance(layer, dict):
            raise CacheError("the entry has a malformed layer")
        digest, size = layer.get("digest"), layer.get("size")
        annotations = layer.get("annotations") or {}
        if not isinstance(digest, str) or not digest.startswith("sha256:") \
                or not isinstance(size, int) or size < 0 \
                or not isinstance(annotations, dict) or annotations.get(TITLE) != title:
            raise CacheError(f"the entry's layer for {title} is malformed")
        found.append((digest, size))
    return found


def fetch_entry(registry: Registry, key: str, outputs: Sequence[str]) -> bool:
    """Land the outputs of entry `key` at the paths `outputs`, each replaced atomically once
    every one was downloaded and verified. False when the registry has no such entry.

    Raises CacheError (nothing landed) when it cannot be read or a blob is corrupt."""
    manifest = registry.get_manifest(key)
    if manifest is None:
        return False
    layers = entry_layers(manifest, [Path(p).name for p in outputs])
    temps: list[Path] = []
    try:
        for (digest, size), target in zip(layers, outputs, strict=True):
            fd, temp = make_temp_beside(target)
            temps.append(temp)
            with os.fdopen(fd, "wb") as out:
                registry.pull_blob(digest, size, out)
        for temp, target in zip(temps, outputs, strict=True):
            os.chmod(temp, 0o644)
            os.replace(temp, target)
    except OSError as exc:
        raise CacheError(f"cannot write {exc.filename or 'an output'}: {exc.strerror}") from exc
    finally:
        for temp in temps:
            temp.unlink(missing_ok=True)
    return True


def store_entry(registry: Registry, key: str, document: Any, outputs: Sequence[str]) -> int:
    """Upload the outputs (blobs the registry lacks only, in chunks), the key document, then
    the manifest tagged `key`. Returns the blob bytes sent. Raises CacheError."""
    described: list[tuple[str, str, int]] = []
    sent = 0
    try:
        for path in outputs:
            digest = file_sha256(path)
            with open(path, "rb") as source:
                size = os.fstat(source.fileno()).st_size
                sent += registry.push_blob(source, f"sha256:{digest}", size)
            described.append((Path(path).name, digest, size))
    except OSError as exc:
        raise CacheError(f"cannot read {exc.filename or 'an output'}: {exc.strerror}") from exc
    key_blob = json.dumps(document, indent=1, sort_keys=True).encode()
    key_digest = "sha256:" + hashlib.sha256(key_blob).hexdigest()
    sent += registry.push_blob(io.BytesIO(key_blob), key_digest, len(key_blob))
    registry.put_manifest(key, entry_manifest(key_blob, described))
    return sent
