"""One build per directory at a time: an advisory `flock` on a lock file in the state folder.

Two builds of one directory would otherwise read each other's half-written doit state, clean up
each other's outputs and write one FAT image from two processes. A build holds an exclusive lock
for its whole run (config check, tasks, cleanup); a second build waits, saying so on stderr, up
to `IBTASKS_LOCK_TIMEOUT` seconds (default 600), then fails with one line. The no-op fast path
takes the lock shared and without waiting (see `try_shared_lock`), so it never replays a stamp
while a build is rewriting what the stamp describes. The kernel drops a lock when its holder
dies, so a killed build never leaves a stale lock behind. Standard library only: the fast path
imports it.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from contextlib import ExitStack
from types import TracebackType

LOCK_NAME = "lock"  # in the state folder, .ibtasks/lock
WORK_LOCK_NAME = ".ibtasks-lock"  # in a disk-image -w folder other than the state folder
TIMEOUT_VARIABLE = "IBTASKS_LOCK_TIMEOUT"
DEFAULT_TIMEOUT_S = 600.0
POLL_S = 0.05
QUIET_WAIT_S = 0.2  # a fast-path reader holds the lock shared for a few ms: do not announce it


class LockTimeout(Exception):
    """The lock stayed held by another build past the timeout (the CLI makes it a UserError)."""


def lock_timeout(environ: os._Environ[str] | dict[str, str]) -> float:
    """Seconds to wait for another build, from IBTASKS_LOCK_TIMEOUT (default 600; 0: do not wait).

    Raises ValueError naming the variable when it is not a number of seconds >= 0.
    """
    text = environ.get(TIMEOUT_VARIABLE, "").strip()
    if not text:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also NaN
        raise ValueError(f"{TIMEOUT_VARIABLE}: expected seconds (0 or more), got '{text}'")
    return value


def _holder(fd: int) -> str:
    """Who holds the lock: `another build (pid N)` when a live build wrote its pid into the lock
    file, else `another process` (a build that has not written it yet, a no-op reading under a
    shared lock, or a user's own flock)."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    if text.isdigit():
        try:
            os.kill(int(text), 0)
            return f"another build (pid {text})"
        except PermissionError:
            return f"another build (pid {text})"
        except OSError:
            pass
    return "another process"


class BuildLock:
    """An exclusive flock on `path` held while the `with` block runs.

    `label` names the directory in the wait message (`ibtasks: waiting: another build (pid N)
    holds the lock of DIR`) and in the timeout error; `timeout_s` bounds the wait. Raises
    OSError when the lock file cannot be created and LockTimeout when the wait times out.
    """

    def __init__(self, path: str, label: str, timeout_s: float) -> None:
        self.path = path
        self.label = label
        self.timeout_s = timeout_s
        self.fd = -1

    def __enter__(self) -> BuildLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            self._acquire(fd)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        return self

    def _acquire(self, fd: int) -> None:
        start = time.monotonic()
        announced = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                pass
            waited = time.monotonic() - start
            if waited >= self.timeout_s:
                raise LockTimeout(
                    f"{self.label}: {_holder(fd)} still holds "
                    f"{self.path} after {self.timeout_s:g} s; set {TIMEOUT_VARIABLE} "
                    "to wait longer"
                )
            if not announced and waited >= min(QUIET_WAIT_S, self.timeout_s):
                sys.stderr.write(
                    f"ibtasks: waiting: {_holder(fd)} holds the lock of {self.label}\n"
                )
                sys.stderr.flush()
                announced = True
            time.sleep(POLL_S)

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self.fd >= 0:
            try:
                os.ftruncate(self.fd, 0)  # no stale pid for the next waiter to name
            except OSError:
                pass
            os.close(self.fd)  # closing the descriptor releases the flock
            self.fd = -1


def hold_locks(locks: list[BuildLock]) -> ExitStack:
    """Enter every lock in order of its path (so two builds never wait on each other in a
    circle); leaving the returned stack releases them."""
    stack = ExitStack()
    try:
        for lock in sorted(locks, key=lambda lock: os.path.realpath(lock.path)):
            stack.enter_context(lock)
    except BaseException:
        stack.close()
        raise
    return stack


def try_shared_lock(path: str) -> int | None:
    """A descriptor holding `path` locked shared, or None if a build holds it (or no build has
    made it yet). Close the descriptor to release it. For the no-op fast path: never waits."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd
