"""What ibtasks wrote, so that a failed build removes only its own outputs, never a user's file.

After each successful build the record `.ibtasks/outputs.json` keeps, for every output path, the
file's identity (inode, size, mtime, ctime) and, up to DIGEST_LIMIT bytes, its SHA-256. A file
at an output path is ours when its identity is unchanged or its bytes have the recorded digest.

A build first sets aside every file at an output path that is not ours (renamed to
`.<name>.ibtasks-keep` beside it, noted in the journal `.ibtasks/set-aside.json` before the
rename): the tasks then see no file there and write the output from scratch. A successful build
drops the set-aside files; a failed one removes what it wrote and renames them back. A build
killed in between leaves the journal, and the next build (holding the lock, tasks.build_lock)
puts the user's files back first. Temporaries of killed builds are removed by name
(ibtasks.fsutil.TEMP_PATTERN) under the same lock.
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ibtasks.errors import UserError
from ibtasks.fsutil import file_sha256, is_temporary_name, remove_tree, write_atomic
from ibtasks.tasks.state_file import read_state

RECORD_NAME = "outputs.json"
JOURNAL_NAME = "set-aside.json"
KEEP_MARK = ".ibtasks-keep"
# Larger outputs (disk.img) are known by their identity alone: hashing a disk image after every
# in-place update would cost more than the update. Only a file we wrote can keep its identity
# (a user cannot set ctime), so the rule stays safe: such a file, once touched, counts as foreign.
DIGEST_LIMIT = 64 << 20


def _key(path: Path, base: str) -> str:
    """`path` relative to the state folder `base` (absolute): the record stays valid when the
    tree holding both is copied elsewhere, as a CI cache restore does."""
    return os.path.relpath(os.path.abspath(path), base)


def _path(key: str, base: str) -> Path:
    return Path(os.path.normpath(os.path.join(base, key)))


def _identity(st: os.stat_result) -> list[int]:
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def _valid_record(data: Any) -> bool:
    return isinstance(data, dict) and all(
        isinstance(v, dict) and isinstance(v.get("identity"), list) for v in data.values())


def _valid_journal(data: Any) -> bool:
    return (isinstance(data, dict) and isinstance(data.get("started_ns"), int)
            and isinstance(data.get("outputs"), list) and isinstance(data.get("set_aside"), dict))


def check_output_paths(paths: Iterable[Path]) -> None:
    """Refuse an output path that is a directory or lies under a file, before anything runs.

    Raises UserError naming the path (e.g. `-o boot` when `boot.scr` is a directory, or
    `-o notes.txt/disk.img`).
    """
    for path in paths:
        if path.is_dir():
            raise UserError(f"{path}: is a directory; an output must be a file path")
        ancestor = path.parent
        while not os.path.lexists(ancestor) and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        if os.path.lexists(ancestor) and not ancestor.is_dir():
            raise UserError(f"{path}: {ancestor} is not a directory")


def remove_stale_temporaries(directories: Iterable[Path]) -> None:
    """Remove temporaries that killed builds left in `directories`, recognised by their name
    alone (fsutil.TEMP_PATTERN: `.<target>.ibtmp-<random>`, which only ibtasks makes). Call it
    only while holding the build lock, or it would delete a running build's files."""
    seen: set[str] = set()
    for directory in directories:
        real = os.path.realpath(directory)
        if real in seen:
            continue
        seen.add(real)
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            if is_temporary_name(entry.name):
                if entry.is_dir(follow_symlinks=False):
                    remove_tree(entry.path)
                else:
                    Path(entry.path).unlink(missing_ok=True)


class OutputGuard:
    """The record of our outputs in `state_dir` and the foreign files one build set aside.

    Use: `heal()` first (under the build lock), then `remove_ours(paths)` for a build that fails
    before it starts, or `begin(paths)` and then `commit(paths)` or `abort(paths)`. Raises
    UserError when a file cannot be set aside, put back or removed.
    """

    def __init__(self, state_dir: Path) -> None:
        self.base = os.path.abspath(state_dir)
        self.record_path = state_dir / RECORD_NAME
        self.journal_path = state_dir / JOURNAL_NAME
        self.record: dict[str, dict[str, Any]] = read_state(self.record_path, _valid_record) or {}
        self.kept: dict[str, str] = {}  # output -> its set-aside foreign file, this build

    def is_ours(self, path: Path) -> bool:
        """Whether the file at `path` is one ibtasks wrote (identity, else digest, recorded)."""
        entry = self.record.get(_key(path, self.base))
        try:
            st = os.lstat(path)
        except OSError:
            return False
        if entry is None or not stat.S_ISREG(st.st_mode):
            return False
        if entry["identity"] == _identity(st):
            return True
        digest = entry.get("sha256")
        return (digest is not None and entry["identity"][1] == st.st_size
                and file_sha256(path) == digest)

    def heal(self) -> None:
        """Undo what a killed build left half done: remove the outputs it wrote, put the foreign
        files it set aside back."""
        journal = read_state(self.journal_path, _valid_journal)
        if journal is None:
            return
        kept = {str(k): str(v) for k, v in journal["set_aside"].items()}
        for output in journal["outputs"]:
            path = _path(output, self.base)
            try:
                st = os.lstat(path)
            except OSError:
                st = None
            if st is not None and output not in kept and not self.is_ours(path) \
                    and st.st_mtime_ns >= journal["started_ns"]:
                self._unlink(path)
        for output, backup in kept.items():
            if os.path.lexists(_path(backup, self.base)):
                self._rename(_path(backup, self.base), _path(output, self.base))
        self._unlink(self.journal_path)

    def recorded_sha256(self, path: Path) -> str | None:
        """The sha256 recorded for our output at `path` (after `commit`), computed now when the
        record has none (an output over DIGEST_LIMIT); None when it cannot be read."""
        entry = self.record.get(_key(path, self.base))
        if entry is not None and entry.get("sha256"):
            return str(entry["sha256"])
        try:
            return file_sha256(path)
        except OSError:
            return None

    def remove_ours(self, paths: Sequence[Path]) -> None:
        """Remove those of `paths` that hold our outputs (a build failed before it started);
        files that ibtasks did not write stay as they are."""
        changed = False
        for path in paths:
            if self.is_ours(path):
                self._unlink(path)
                changed |= self.record.pop(_key(path, self.base), None) is not None
        if changed:
            self._save()

    def begin(self, paths: Sequence[Path]) -> None:
        """Set aside every file at an output path that ibtasks did not write."""
        foreign = [p for p in paths if os.path.lexists(p) and not self.is_ours(p)]
        kept = {_key(p, self.base): _key(p.with_name(f".{p.name}{KEEP_MARK}"), self.base)
                for p in foreign}
        journal = {"started_ns": time.time_ns(), "outputs": [_key(p, self.base) for p in paths],
                   "set_aside": kept}
        write_atomic(self.journal_path, _json(journal))
        for output, backup in kept.items():
            self._rename(_path(output, self.base), _path(backup, self.base))
            self.kept[output] = backup

    def commit(self, paths: Sequence[Path]) -> None:
        """The build succeeded: record its outputs and drop the foreign files it replaced."""
        for path in paths:
            key = _key(path, self.base)
            try:
                st = os.lstat(path)
            except OSError:
                self.record.pop(key, None)
                continue
            old = self.record.get(key)
            if old is not None and old["identity"] == _identity(st):
                continue
            digest = file_sha256(path) if st.st_size <= DIGEST_LIMIT else None
            self.record[key] = {"identity": _identity(st), "sha256": digest}
        self._save()
        for backup in self.kept.values():
            self._unlink(_path(backup, self.base))
        self.kept = {}
        self._unlink(self.journal_path)

    def abort(self, paths: Sequence[Path]) -> None:
        """The build failed: remove the outputs (each is ours: foreign files were set aside)
        and put the foreign files back."""
        for path in paths:
            key = _key(path, self.base)
            if key in self.kept:
                self._rename(_path(self.kept.pop(key), self.base), path)
            elif os.path.lexists(path):
                self._unlink(path)
                self.record.pop(key, None)
        self._save()
        self._unlink(self.journal_path)

    def _save(self) -> None:
        write_atomic(self.record_path, _json(self.record))

    @staticmethod
    def _unlink(path: Path) -> None:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise UserError(f"cannot remove {path}: {exc.strerror}") from exc

    @staticmethod
    def _rename(source: Path, target: Path) -> None:
        try:
            os.replace(source, target)
        except OSError as exc:
            raise UserError(f"cannot rename {source} to {target}: {exc.strerror}") from exc


def _json(value: Any) -> bytes:
    return json.dumps(value, indent=1, sort_keys=True).encode()
