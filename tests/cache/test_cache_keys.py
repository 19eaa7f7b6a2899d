"""Cache keys: the same bytes give the same key at any path; any input that changes the
bytes (a file's content, the frozen input, a tool's version, ibtasks' version) changes it."""

from __future__ import annotations

import json
from pathlib import Path

from ibtasks.cache.keys import cache_key, canonical_json, key_document
from ibtasks.tasks.cached_step import CachedStep
from ibtasks.tasks.disk import RootfsPartitionInput
from ibtasks.tasks.task_inputs import key_payload


def step_in(root: Path, archive: bytes, slack: int = 128) -> CachedStep:
    """The key of dom0's partition for a checkout at `root` holding `archive`."""
    (root / "fs").mkdir(parents=True, exist_ok=True)
    (root / "fs" / "rootfs.tar").write_bytes(archive)
    part = RootfsPartitionInput(root / "fs" / "rootfs.tar", "DOM0_ROOTFS", "vos_2", slack,
                                315532800, "disk.img\0boot.scr")
    return CachedStep("ib_partition:dom0", key_payload(part, root),
                      (("fs/rootfs.tar", str(root / "fs" / "rootfs.tar")),), ("dom0.ext4",))


def test_the_same_bytes_at_two_paths_give_the_same_key(tmp_path: Path) -> None:
    first = step_in(tmp_path / "runner-a" / "build", b"tar bytes")
    second = step_in(tmp_path / "elsewhere", b"tar bytes")
    assert cache_key(first.document()) == cache_key(second.document())
    assert "runner-a" not in canonical_json(first.document()).decode()


def test_one_changed_byte_of_an_input_file_changes_the_key(tmp_path: Path) -> None:
    first = step_in(tmp_path / "a", b"tar bytes")
    second = step_in(tmp_path / "b", b"tar bytez")
    assert cache_key(first.document()) != cache_key(second.document())


def test_a_changed_setting_of_the_frozen_input_changes_the_key(tmp_path: Path) -> None:
    assert cache_key(step_in(tmp_path / "a", b"x").document()) != \
        cache_key(step_in(tmp_path / "b", b"x", slack=64).document())


def test_the_key_holds_the_tool_versions_and_ibtasks_version() -> None:
    base = key_document("ib_fit", "0.1.0", {"mkimage": "mkimage version 2023.01"}, {}, [])
    assert cache_key(base) != cache_key(
        key_document("ib_fit", "0.1.0", {"mkimage": "mkimage version 2024.01"}, {}, []))
    assert cache_key(base) != cache_key(
        key_document("ib_fit", "0.2.0", {"mkimage": "mkimage version 2023.01"}, {}, []))


def test_the_key_is_the_sha256_of_the_canonical_document() -> None:
    document = key_document("ib_partition:boot", "0.1.0", {"pyfatfs": "1.1.0"},
                            {"b": 1, "a": [1, "x"]}, [("xen", "ab" * 32)])
    text = canonical_json(document)
    assert json.loads(text) == document
    assert b" " not in text and text.index(b'"files"') < text.index(b'"input"')
    import hashlib

    assert cache_key(document) == hashlib.sha256(text).hexdigest()
