"""Cache keys: the sha256 of a canonical JSON document naming everything a task's bytes
depend on, so the same inputs give the same key on any machine, at any path."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

KEY_FORMAT = 1  # raised when the document's shape changes: every older entry then misses


def key_document(kind: str, version: str, tools: Mapping[str, str], payload: Any,
                 files: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """The key document of one task run: `kind` (the task's name, `ib_partition:dom0`),
    ibtasks' `version`, the external tools' versions (`{"e2fsprogs": "1.47.0"}`), the
    task's frozen input as JSON (`payload`, paths relative to the -d directory) and each
    input file as (path relative to -d, sha256 of its content)."""
    return {"format": KEY_FORMAT, "kind": kind, "ibtasks": version, "tools": dict(tools),
            "input": payload, "files": [list(pair) for pair in files]}


def canonical_json(document: Any) -> bytes:
    """RFC 8785-style canonical form for our documents (sorted keys, no blanks, UTF-8);
    they hold only strings, integers, booleans, None, lists and objects."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, allow_nan=False).encode()


def cache_key(document: Any) -> str:
    """The cache key of a key document: sha256 of its canonical JSON, 64 hex digits (also
    the entry's tag in the registry, which allows up to 128 of [A-Za-z0-9_.-])."""
    return hashlib.sha256(canonical_json(document)).hexdigest()
