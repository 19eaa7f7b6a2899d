"""The README's quick start run for real by ordinary users on a Debian 12 machine: one with
password-less sudo (`ibsudo`), whose apt-get commands go through sudo and who gets a virtual
environment of its own from Debian's Python, and one without sudo rights (`ibtest`), for whom the
block stops at its first sudo line. Root's run is test_readme_blocks.py's.
"""

from __future__ import annotations

import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.cli.test_readme_blocks import Block, clone_checkout, read_blocks, run_block, run_blocks
from tests.unprivileged import (
    login_as,
    require_sudo,
    sudo_log_since,
    sudo_log_size,
    sudo_user,
)
from tests.unprivileged import (
    test_user as ordinary_user_name,
)


def quick_start(clone: Path) -> Block:
    """The quick-start block of the clone's README.md (the one that makes the venv)."""
    return next(b for b in read_blocks((clone / "README.md").read_text())
                if "/usr/bin/python3 -m venv .venv" in b.text)


def sudo_commands(block: Block) -> list[str]:
    """The commands `block` runs through `$SUDO`, as sudo logs them (full path, arguments)."""
    return ["/usr/bin/" + line.removeprefix("$SUDO ").strip().removesuffix("&&").strip()
            for line in block.text.splitlines() if line.startswith("$SUDO ")]


@contextmanager
def clone_owned_by(user: pwd.struct_passwd) -> Iterator[Path]:
    """A clone of the checkout in a new folder of `user`'s home, owned by `user`; removed after."""
    _, env = login_as(user)
    folder = Path(tempfile.mkdtemp(prefix="ibtasks-quick-start-", dir=env["HOME"]))
    try:
        clone = clone_checkout(folder / "ibtasks")
        subprocess.run(["chown", "-R", f"{user.pw_uid}:{user.pw_gid}", str(folder)], check=True)
        yield clone
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def pyvenv_settings(venv: Path) -> dict[str, str]:
    """The `key = value` lines of a venv's pyvenv.cfg."""
    pairs = (line.split(" = ", 1) for line in (venv / "pyvenv.cfg").read_text().splitlines())
    return {pair[0].strip(): pair[1].strip() for pair in pairs if len(pair) == 2}


def test_the_quick_start_run_by_a_user_with_sudo_installs_through_sudo_into_a_venv_of_its_own(
) -> None:
    user = sudo_user()
    login, env = login_as(user)
    with clone_owned_by(user) as clone:
        block = quick_start(clone)
        log_start = sudo_log_size()
        outcome = run_blocks([block], clone, env, login)[block.line]
        assert not outcome.problems, "\n".join(outcome.problems) + "\n" + outcome.output[-3000:]
        assert "usage: ibtasks" in outcome.output

        # apt-get ran as root through the user's sudo, from the clone, exactly as the block says.
        logged = [line for line in sudo_log_since(log_start).splitlines()
                  if f" : {user.pw_name} : " in line and f"PWD={clone.resolve()} ;" in line]
        assert [line.split("COMMAND=", 1)[1] for line in logged] == sudo_commands(block)
        assert all(" ; USER=root ; " in line for line in logged), logged
        assert sudo_commands(block)[0] == "/usr/bin/apt-get update"
        assert sudo_commands(block)[1].startswith("/usr/bin/apt-get install -y python3-venv ")

        # The venv is the user's, made from Debian's Python, not from root's or PATH's python3.
        venv = clone / ".venv"
        assert venv.stat().st_uid == user.pw_uid
        assert (venv / "bin" / "ibtasks").stat().st_uid == user.pw_uid
        settings = pyvenv_settings(venv)
        assert settings["home"] == "/usr/bin"
        assert settings["command"] == f"/usr/bin/python3 -m venv {venv}"

        # Its ibtasks runs for that user, from the clone (the editable install).
        ran = subprocess.run([*login, str(venv / "bin" / "ibtasks"), "--help"], cwd=clone,
                             env=env, capture_output=True, text=True, check=False)
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout.startswith("usage: ibtasks")
        where = subprocess.run(
            [*login, str(venv / "bin" / "python"), "-c", "import ibtasks; print(ibtasks.__file__)"],
            cwd="/", env=env, capture_output=True, text=True, check=False)
        assert where.stdout.strip() == str(clone / "ibtasks" / "__init__.py"), where.stderr


@pytest.mark.parametrize("shell", ["pasted", "runner"])
def test_the_quick_start_run_by_a_user_without_sudo_rights_stops_at_its_first_sudo_line(
        shell: str) -> None:
    """`pasted`: the lines fed to a bash that goes on after a failing command, as an interactive
    shell does; `runner`: the README runner's `bash -e`. Either way nothing after sudo runs."""
    require_sudo()
    user = pwd.getpwnam(ordinary_user_name())
    rights = subprocess.run(["sudo", "-n", "-l", "-U", user.pw_name], capture_output=True,
                            text=True, check=False)
    assert f"User {user.pw_name} is not allowed to run sudo" in rights.stdout, (
        f"{user.pw_name!r} must stay an ordinary user without sudo rights: {rights.stdout}")
    login, env = login_as(user)
    # A new session: no terminal for sudo to ask a password on, whoever runs the tests.
    login = [*login, "setsid", "--wait"]
    with clone_owned_by(user) as clone:
        block = quick_start(clone)
        if shell == "pasted":
            done = subprocess.run([*login, "bash", "-s"], input=block.text, cwd=clone, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  timeout=300, check=False)
            status, output = done.returncode, done.stdout
        else:
            outcome = run_block(block, clone, env, login)
            status, output = outcome.status, outcome.output
        assert status == 1, output
        assert output.splitlines() == [
            "sudo: a terminal is required to read the password; either use the -S option to "
            "read from standard input or configure an askpass helper",
            "sudo: a password is required"]
        assert not (clone / ".venv").exists()
