"""Run a command with its stdout on a pseudo-terminal, as a user's terminal is, and collect
what it drew there (escape codes included)."""

from __future__ import annotations

import os
import pty
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path


def run_on_terminal(argv: Sequence[str], cwd: Path, env: Mapping[str, str],
                    timeout: float = 120) -> str:
    """Everything `argv` wrote to its terminal (stdout; stderr is a pipe, not read), decoded;
    the command must exit 0 within `timeout` seconds of closing the terminal."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(list(argv), cwd=cwd, stdout=follower, stderr=subprocess.PIPE,
                               env=dict(env))
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    assert process.wait(timeout=timeout) == 0
    os.close(leader)
    return b"".join(chunks).decode(errors="replace")
