"""State that heals (tasks.state_file, tasks.state_backend) and builds that leave nothing
behind when killed (tasks.ownership, ibtasks.lifetime).

Rules: a state file that cannot be read is set aside as `<name>.corrupt` with one warning line
and the build succeeds with the same bytes; an unwritable state folder is one error line; a
build killed with SIGKILL leaves no faked running, and the next build removes the killed
build's temporaries and writes the bytes an uninterrupted build writes.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.integrity_inputs import ibtasks_argv, make_xen_inputs, one_error_line, run
from tests.unprivileged import run_as_user, unprivileged_python, user_tmp_dir

SCRIPT = ("uboot-script-gen", "-c", "config", "-d", ".", "-t", "sd")
DISK = ("disk-image", "-c", "config", "-d", ".", "-t", "sd", "-o", "disk.img")
OUTPUTS = ("boot.source", "boot.scr", "boot.dtb")


def state_file(state: Path, which: str) -> Path:
    if which == "check record":
        return sorted((state / "check").glob("*.json"))[0]
    if which == "stamp":
        return next(state.glob("last-run-*.json"))
    return state / which


@pytest.mark.parametrize("which", ["doit-deps.json", "digests.json", "layout.json",
                                   "check record", "outputs.json", "stamp"])
@pytest.mark.parametrize("damage", ["truncated", "garbled"])
def test_an_unreadable_state_file_is_set_aside_with_one_warning(
        tmp_path: Path, which: str, damage: str) -> None:
    inputs = make_xen_inputs(tmp_path / "in")
    first = run(inputs, *SCRIPT)
    assert first.returncode == 0, first.stderr
    expected = {name: (inputs / name).read_bytes() for name in OUTPUTS}
    path = state_file(inputs / ".ibtasks", which)
    text = path.read_bytes()
    path.write_bytes(text[: len(text) // 2] if damage == "truncated" else b'["garbled"]')
    # A changed input makes the build go past the no-op fast path and through doit.
    (inputs / "config").write_text((inputs / "config").read_text() + "\n")
    again = run(inputs, *SCRIPT)
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout
    warning = again.stderr.splitlines()
    place = path.relative_to(inputs)
    assert len(warning) == 1, again.stderr
    # State files are named by their absolute path (doit runs in the output folder).
    assert re.fullmatch(rf"ibtasks: warning: (\S*/)?{re.escape(str(place))}: unreadable \(.+\); "
                        rf"set aside as {re.escape(path.name)}\.corrupt, starting afresh",
                        warning[0]), warning[0]
    assert warning[0].endswith(f"set aside as {path.name}.corrupt, starting afresh")
    assert Path(f"{path}.corrupt").read_bytes() != text
    assert {name: (inputs / name).read_bytes() for name in OUTPUTS} == expected
    third = run(inputs, *SCRIPT)
    assert third.returncode == 0 and third.stderr == ""


def test_an_unwritable_state_folder_is_one_error_line() -> None:
    python = unprivileged_python()
    with user_tmp_dir() as tmp:
        inputs = make_xen_inputs(tmp / "in")
        (inputs / ".ibtasks").mkdir()
        subprocess.run(["chmod", "-R", "a+rwX", str(inputs)], check=True)
        (inputs / ".ibtasks").chmod(0o555)
        result = run_as_user([python, "-m", "ibtasks", *SCRIPT], cwd=inputs)
        assert one_error_line(result) == (
            "ibtasks: error: cannot lock .ibtasks/lock: Permission denied")
        assert not (inputs / "boot.scr").exists()


def descendants(pid: int) -> dict[int, str]:
    """pid -> command name of every process below `pid`, from /proc."""
    parents: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text()
        except OSError:
            continue
        name = fields[fields.index("(") + 1 : fields.rindex(")")]
        parents[int(entry.name)] = (int(fields[fields.rindex(")") + 2 :].split()[1]), name)
    found: dict[int, str] = {}
    frontier = {pid}
    while frontier:
        frontier = {p for p, (pp, _) in parents.items() if pp in frontier and p not in found}
        found.update({p: parents[p][1] for p in frontier})
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("whole_group", [True, False])
def test_a_killed_disk_image_build_leaves_no_faked_and_the_next_build_heals(
        tmp_path: Path, whole_group: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IBTASKS_EXT4_PATH", "extract")  # the path that runs fakeroot
    reference = make_xen_inputs(tmp_path / "reference", payload=64 << 20)
    inputs = tmp_path / "killed"
    shutil.copytree(reference, inputs)
    assert run(reference, *DISK).returncode == 0
    build = subprocess.Popen(ibtasks_argv(*DISK), cwd=inputs, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    fakeds: dict[int, str] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and build.poll() is None:
        fakeds = {p: n for p, n in descendants(build.pid).items() if n.startswith("faked")}
        if fakeds and list((inputs / ".ibtasks").glob(".*.ext4.ibtmp-*")):
            break
        time.sleep(0.02)
    assert fakeds, "no faked seen under the build"
    # Killed at once: faked and the rootfs tree exist now, and the stage takes a fraction of a
    # second, so any wait here could let it finish first.
    os.killpg(build.pid, signal.SIGKILL) if whole_group else build.kill()
    build.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(p) for p in fakeds):
        time.sleep(0.05)
    assert [p for p in fakeds if alive(p)] == []
    assert list((inputs / ".ibtasks").glob(".*.ibtmp-*")), os.listdir(inputs / ".ibtasks")

    healed = run(inputs, *DISK)
    assert healed.returncode == 0, healed.stderr
    assert [p.name for p in (inputs / ".ibtasks").iterdir() if ".ibtmp-" in p.name] == []
    for name in (*OUTPUTS, "disk.img"):
        assert (inputs / name).read_bytes() == (reference / name).read_bytes(), name


@pytest.mark.parametrize("whole_group", [True, False])
def test_a_killed_mke2fs_of_the_archive_path_leaves_nothing_running_and_the_next_build_heals(
        tmp_path: Path, whole_group: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IBTASKS_EXT4_PATH", "archive")
    reference = make_xen_inputs(tmp_path / "reference", payload=64 << 20)
    inputs = tmp_path / "killed"
    shutil.copytree(reference, inputs)
    assert run(reference, *DISK).returncode == 0
    build = subprocess.Popen(ibtasks_argv(*DISK), cwd=inputs, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tools: dict[int, str] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and build.poll() is None:
        tools = {p: n for p, n in descendants(build.pid).items()
                 if n in ("mke2fs", "mkfs.ext4")}
        if tools and list((inputs / ".ibtasks").glob(".*.ext4.ibtmp-*")):
            break
        time.sleep(0.005)
    assert tools, "no mke2fs seen under the build"
    os.killpg(build.pid, signal.SIGKILL) if whole_group else build.kill()
    build.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(p) for p in tools):
        time.sleep(0.05)
    assert [p for p in tools if alive(p)] == []
    healed = run(inputs, *DISK)
    assert healed.returncode == 0, healed.stderr
    assert [p.name for p in (inputs / ".ibtasks").iterdir() if ".ibtmp-" in p.name] == []
    for name in (*OUTPUTS, "disk.img"):
        assert (inputs / name).read_bytes() == (reference / name).read_bytes(), name


def large_board_dtb(path: Path, nodes: int) -> None:
    """The integrity DTB with `nodes` extra nodes in buses of 1,000 (dtc's parser takes no more
    siblings than that comfortably), so that a build spends a second or so in doit."""
    buses = []
    for b in range(0, nodes, 1000):
        children = "".join(f"        n{i} {{ reg = <{i}>; }};\n"
                           for i in range(b, min(b + 1000, nodes)))
        buses.append(f"    bus{b} {{\n        #address-cells = <1>;\n"
                     f"        #size-cells = <0>;\n{children}    }};\n")
    dts = ("/dts-v1/;\n/ {\n    #address-cells = <2>;\n    #size-cells = <2>;\n"
           "    chosen { };\n"
           "    memory@40000000 { device_type = \"memory\"; "
           "reg = <0x0 0x40000000 0x0 0x40000000>; };\n" + "".join(buses) + "};\n")
    subprocess.run(["dtc", "-q", "-I", "dts", "-O", "dtb", "-o", str(path), "-"], input=dts,
                   text=True, check=True)


def test_a_users_file_set_aside_by_a_killed_build_is_put_back_by_the_next_build(
        tmp_path: Path) -> None:
    inputs = make_xen_inputs(tmp_path / "in")
    large_board_dtb(inputs / "board.dtb", 20000)
    subprocess.run(["mkimage", "-q", "-A", "arm64", "-T", "script", "-C", "none", "-d",
                    str(inputs / "config"), str(inputs / "boot.scr")], check=True)
    users = (inputs / "boot.scr").read_bytes()
    build = subprocess.Popen(ibtasks_argv(*SCRIPT), cwd=inputs, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kept = inputs / ".boot.scr.ibtasks-keep"
    deadline = time.monotonic() + 60
    while not kept.exists() and build.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    assert kept.exists(), "the build never set the user's boot.scr aside"
    os.killpg(build.pid, signal.SIGKILL)
    build.wait()
    # The next build, here one that fails on its config, first puts the user's file back.
    (inputs / "xen").unlink()
    failed = run(inputs, *SCRIPT)
    assert one_error_line(failed).startswith("ibtasks: error: config:4: XEN: ")
    assert (inputs / "boot.scr").read_bytes() == users
    assert not kept.exists()
    assert not (inputs / ".ibtasks" / "set-aside.json").exists()
