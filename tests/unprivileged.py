"""Run test commands as an ordinary user, because sessions and CI run as root and root hides a
missing rootless step (a chown, a mknod) that users' builds would hit.

`run_as_user` drops to the user named by IBTASKS_TEST_USER (default `ibtest`) with setpriv when
we are root; `unprivileged_python` gives a Python that user can run, with ibtasks importable:
IBTASKS_TEST_PYTHON if CI provides one, else a virtual environment made once under /tmp from
/usr/bin/python3 (root's own Python lives under /root, which other users cannot enter).
`sudo_user` is the other ordinary user, `ibsudo`, that has password-less sudo (the README's
quick start is run as it); `ibtest` must have no sudo rights.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# Needed by the code the user runs but not (yet) in pyproject.toml's dependencies.
EXTRA_PACKAGES = ("libarchive-c>=5",)
BASE_PYTHON = "/usr/bin/python3"
USER_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
SUDO_USER = "ibsudo"
# Where sudo logs the sudo user's commands (the drop-in /etc/sudoers.d/ibtasks-ci of .ci/run).
SUDO_LOG = Path("/var/log/sudo-ibtasks-ci.log")
SUDO_SETUP = (
    "as root: apt-get install -y sudo; useradd -m ibsudo; and the /etc/sudoers.d/ibtasks-ci "
    "drop-in of .ci/run (`ibsudo ALL=(ALL:ALL) NOPASSWD: ALL` and "
    f"`Defaults:ibsudo logfile={SUDO_LOG}, loglinelen=0`)"
)


def test_user() -> str:
    """The name of the unprivileged user the tests run as."""
    return os.environ.get("IBTASKS_TEST_USER", "ibtest")


def _user_entry() -> pwd.struct_passwd:
    name = test_user()
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pytest.fail(
            f"test user {name!r} does not exist: run `useradd -m {name}` as root "
            "(.ci/run creates it), or set IBTASKS_TEST_USER to an existing ordinary user",
            pytrace=False,
        )


def _user_home(user: pwd.struct_passwd) -> str:
    """A HOME the user can write: theirs if it exists and is theirs, else a private tmp dir."""
    home = user.pw_dir
    try:
        if os.stat(home).st_uid == user.pw_uid:
            return home
    except OSError:
        pass
    fallback = Path(tempfile.gettempdir()) / f"ibtasks-home-{user.pw_name}"
    fallback.mkdir(mode=0o700, exist_ok=True)
    os.chown(fallback, user.pw_uid, user.pw_gid)
    return str(fallback)


def login_as(user: pwd.struct_passwd) -> tuple[list[str], dict[str, str]]:
    """The command prefix (setpriv, from root) and the small clean environment (PATH with the
    sbin directories, LC_ALL, the user's HOME, USER, LOGNAME) that run a command as `user`."""
    uid, gid = str(user.pw_uid), str(user.pw_gid)
    prefix = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"]
    env = {"PATH": USER_PATH, "LC_ALL": "C.UTF-8", "HOME": _user_home(user),
           "USER": user.pw_name, "LOGNAME": user.pw_name}
    return prefix, env


def run_as_user(
    argv: Sequence[str | os.PathLike[str]],
    cwd: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `argv` in `cwd`, as the test user when we are root, capturing text output.

    `env` is added to a small clean environment (PATH with the sbin directories, LC_ALL).
    """
    full_env = {"PATH": USER_PATH, "LC_ALL": "C.UTF-8", "HOME": os.environ.get("HOME", "/tmp")}
    command = [os.fspath(a) for a in argv]
    if os.geteuid() == 0:
        prefix, full_env = login_as(_user_entry())
        command = [*prefix, *command]
    full_env.update(env or {})
    return subprocess.run(
        command, cwd=cwd, env=full_env, capture_output=True, text=True, check=False
    )


def _requirements() -> list[str]:
    """The project's runtime dependencies from pyproject.toml, plus EXTRA_PACKAGES."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return sorted({*project.get("dependencies", []), *EXTRA_PACKAGES})


def _venv_site_packages(venv: Path) -> Path:
    """site-packages of a venv made from BASE_PYTHON (same version as reported by it)."""
    out = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import sysconfig; print(sysconfig.get_path('purelib'))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(out.stdout.strip())


def _make_venv(target: Path, requirements: list[str]) -> None:
    """Make the venv in a temporary sibling and rename it: concurrent runs never see half of one."""
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=target.name + ".tmp-"))
    try:
        subprocess.run([BASE_PYTHON, "-m", "venv", str(staging)], check=True, capture_output=True)
        pip = [str(staging / "bin" / "python"), "-m", "pip", "install", "-q", *requirements]
        done = subprocess.run(pip, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            pytest.fail(
                f"cannot install {requirements} into {staging}:\n{done.stderr}", pytrace=False
            )
        # ibtasks itself comes from this checkout, so the venv never holds a stale copy.
        (_venv_site_packages(staging) / "ibtasks-checkout.pth").write_text(f"{REPO}\n")
        os.chmod(staging, 0o755)
        try:
            os.rename(staging, target)
        except OSError:
            if not target.exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def unprivileged_python() -> Path:
    """A Python the test user can run, with ibtasks (from this checkout) and its deps importable."""
    given = os.environ.get("IBTASKS_TEST_PYTHON")
    if given:
        python = Path(given)
    elif os.geteuid() != 0:
        python = Path(sys.executable)
    else:
        requirements = _requirements()
        tag = hashlib.sha256(repr((str(REPO), requirements)).encode()).hexdigest()[:12]
        venv = Path(tempfile.gettempdir()) / f"ibtasks-test-venv-{tag}"
        if not (venv / "bin" / "python").exists():
            _make_venv(venv, requirements)
        python = venv / "bin" / "python"
    probe = run_as_user([python, "-c", "import ibtasks"], cwd="/")
    if probe.returncode != 0:
        pytest.fail(
            f"{python} cannot import ibtasks as user {test_user()!r}: {probe.stderr.strip()}\n"
            f"(the checkout {REPO} and its parent directories must be readable by that user)",
            pytrace=False,
        )
    return python


def user_writable_dir(path: Path) -> Path:
    """Make `path` (a pytest tmp dir) writable by the test user and its parents traversable."""
    path.chmod(0o777)
    for parent in path.parents:
        if parent == Path(parent.anchor):
            break
        mode = parent.stat().st_mode
        if mode & 0o001 == 0:
            parent.chmod(mode | 0o001)
    return path


@contextmanager
def user_tmp_dir(prefix: str = "ibtasks-test-") -> Iterator[Path]:
    """A fresh directory under /tmp that the test user can write, removed afterwards.

    Safer than `user_writable_dir(tmp_path)`: every new pytest session (another test run on the
    same machine) resets /tmp/pytest-of-<user> to mode 0700, which locks the test user out.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def require_sudo() -> None:
    """Fail the test with how to set things up unless we are root and sudo is installed."""
    if os.geteuid() != 0:
        pytest.fail("the sudo tests switch users: run them as root", pytrace=False)
    if shutil.which("sudo") is None:
        pytest.fail(f"sudo is not installed: {SUDO_SETUP}", pytrace=False)


def sudo_user() -> pwd.struct_passwd:
    """The ordinary user `ibsudo` whose sudo runs any command without a password and logs it to
    SUDO_LOG, as .ci/run sets it up; the test fails with how to make it when we are not root,
    sudo is not installed, the user is missing or sudo does not serve it that way."""
    require_sudo()
    try:
        user = pwd.getpwnam(SUDO_USER)
    except KeyError:
        pytest.fail(f"sudo user {SUDO_USER!r} does not exist: {SUDO_SETUP}", pytrace=False)
    prefix, env = login_as(user)
    probe = f"sudo probe {os.getpid()} {os.urandom(4).hex()}"
    done = subprocess.run([*prefix, "sudo", "-n", "/usr/bin/true", probe], cwd="/", env=env,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        reason = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        pytest.fail(f"{SUDO_USER!r} cannot run sudo without a password ({reason[0]}): "
                    f"{SUDO_SETUP}", pytrace=False)
    if probe not in sudo_log_since(0):
        pytest.fail(f"sudo does not log {SUDO_USER!r}'s commands to {SUDO_LOG}: {SUDO_SETUP}",
                    pytrace=False)
    return user


def sudo_log_size() -> int:
    """The size of SUDO_LOG in bytes now (0 if it does not exist yet)."""
    try:
        return SUDO_LOG.stat().st_size
    except FileNotFoundError:
        return 0


def sudo_log_since(start: int) -> str:
    """What sudo logged to SUDO_LOG after byte `start` (see sudo_log_size)."""
    try:
        with SUDO_LOG.open("rb") as log:
            log.seek(start)
            return log.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
