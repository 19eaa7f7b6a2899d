"""Helper processes that die with their build: fakeroot, its faked daemon, mkfs, debugfs.

A build killed with SIGKILL (alone or with its process group) runs no cleanup, and `fakeroot`
starts `faked` as a daemon in its own session, so it outlived every killed build. Here each helper
is our child with the kernel's parent-death signal set (prctl PR_SET_PDEATHSIG), and we start
faked ourselves in the foreground and hand it to fakeroot (`fakeroot --faked 'echo KEY:PID'`,
the hook fakeroot offers for another faked), so it ends when the build that started it ends.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager

PR_SET_PDEATHSIG = 1  # linux/prctl.h
_LIBC = ctypes.CDLL(None, use_errno=True)


def die_with_parent(sig: int = signal.SIGKILL) -> Callable[[], None]:
    """A `preexec_fn` that makes the child receive `sig` when this process dies.

    The parent may die between fork and prctl; the child then sees another parent and exits.
    """
    parent = os.getpid()

    def arm() -> None:
        _LIBC.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return arm


def die_with_parent_now(sig: int = signal.SIGKILL) -> None:
    """Make this process receive `sig` when its parent dies (for a child that is Python)."""
    parent = os.getppid()
    _LIBC.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    if os.getppid() != parent or parent == 1:
        os._exit(1)


@contextmanager
def faked_session(faked: str) -> Iterator[str]:
    """Run `faked --foreground` as our child for the `with` block; yield fakeroot's `--faked`
    value that makes fakeroot use it instead of starting a daemon of its own.

    faked gets SIGTERM (which makes it release its SysV IPC objects) if we die. Raises OSError
    when faked cannot be started or does not print its `KEY:PID` line.
    """
    proc = subprocess.Popen([faked, "--foreground"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            preexec_fn=die_with_parent(signal.SIGTERM))
    try:
        line = proc.stdout.readline() if proc.stdout is not None else ""
        key, _, _ = line.strip().partition(":")
        if not key.isdigit():
            raise OSError(f"{faked} did not start (no KEY:PID line)")
        yield f"echo {key}:{proc.pid}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
