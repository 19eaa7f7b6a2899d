"""An input the user cannot reach is one line naming the key or flag, the path and the OS reason,
never a traceback. Run as the unprivileged test user (tests/unprivileged.py): root reaches all.

The catalogue (tests/cli/must_fail/) holds -d in a mode-700 directory of another user and domU
kernels in mode-644 and mode-000 directories; these are the cases it cannot set up.
"""

from __future__ import annotations

import os
import pwd
import shutil
from pathlib import Path

from tests import unprivileged
from tests.unprivileged import run_as_user, unprivileged_python, user_tmp_dir

CONFIG = """\
MEMORY_START=0x40000000
MEMORY_END=0x50000000
DEVICE_TREE=mpsoc.dtb
XEN=xen
DOM0_KERNEL=Image-dom0
"""


def _user_copy(seed_inputs: Path, target: Path) -> Path:
    """The seed inputs and the config in `target`, owned by the test user when we are root."""
    shutil.copytree(seed_inputs, target)
    (target / "config").write_text(CONFIG)
    if os.geteuid() == 0:
        uid = pwd.getpwnam(unprivileged.test_user()).pw_uid
        for path in [target, *target.rglob("*")]:
            os.chown(path, uid, uid, follow_symlinks=False)
    return target


def test_current_directory_that_its_owner_made_unsearchable_is_one_line(
        seed_inputs: Path) -> None:
    python = unprivileged_python()
    with user_tmp_dir() as top:
        work = _user_copy(seed_inputs, top / "work")
        result = run_as_user(["sh", "-c", f"cd work && chmod 600 . && exec {python} -m ibtasks "
                              "uboot-script-gen -c config -d . -t tftp"], cwd=top)
        work.chmod(0o700)
    assert (result.returncode, result.stderr) == (
        1, "ibtasks: error: -d .: cannot reach it: Permission denied\n")


def test_input_directory_below_an_unsearchable_one_is_one_line(seed_inputs: Path) -> None:
    python = unprivileged_python()
    with user_tmp_dir() as top:
        _user_copy(seed_inputs, top / "outer" / "work")
        (top / "outer").chmod(0o711)
        (top / "config").write_text(CONFIG)
        (top / "outer").chmod(0o600)  # root owns it: the user may not pass through
        result = run_as_user([python, "-m", "ibtasks", "uboot-script-gen", "-c", "config", "-d",
                              "outer/work", "-t", "tftp"], cwd=top)
        (top / "outer").chmod(0o700)
    assert (result.returncode, result.stderr) == (
        1, "ibtasks: error: -d outer/work: cannot reach it: Permission denied\n")


def test_dom0_kernel_behind_a_symlink_loop_is_one_line(seed_inputs: Path) -> None:
    python = unprivileged_python()
    with user_tmp_dir() as top:
        work = _user_copy(seed_inputs, top / "work")
        (work / "loop").symlink_to("loop")
        (work / "config").write_text(CONFIG.replace("Image-dom0", "loop/Image-dom0"))
        result = run_as_user([python, "-m", "ibtasks", "uboot-script-gen", "-c", "config", "-d",
                              ".", "-t", "tftp"], cwd=work)
    assert (result.returncode, result.stderr) == (1, (
        "ibtasks: error: config:5: DOM0_KERNEL: cannot reach loop/Image-dom0: Too many levels "
        "of symbolic links (looked in .)\n"))
