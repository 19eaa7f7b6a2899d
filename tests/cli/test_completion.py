"""The script `-- tabcompletion` writes, sourced in real shells: bash (its function called as
bash's programmable completion calls it, COMP_WORDS/COMP_CWORD/COMP_LINE/COMP_POINT set) and
zsh (a TAB typed into an interactive zsh on a pseudo-terminal, through compinit and
bashcompinit, the matches read from compadd)."""

from __future__ import annotations

import os
import pty
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from doit.cmd_completion import TabCompletion
from doit.doit_cmd import DoitMain

from ibtasks.cli.arguments import build_parser
from ibtasks.cli.completion import subcommand_parsers
from tests.conftest import GOLDENS, run_ibtasks

SCRIPT = ["uboot-script-gen", "-c", "config", "-d", ".", "-t", "tftp"]
# The shells find `ibtasks` where the test's Python has it (the project's .venv/bin).
ENV = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
BASH_DRIVER = r"""
source "$1"; shift
spec=$(complete -p ibtasks); fn=${spec#*-F }; fn=${fn%% *}
COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); COMP_LINE=$LINE; COMP_POINT=${#LINE}
"$fn" ibtasks "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\n' "${COMPREPLY[@]}" > "$REPLIES"
"""


@pytest.fixture
def board(seed_inputs: Path) -> Path:
    """The seed inputs with the README's tftp config, as `config`."""
    shutil.copy(GOLDENS / "readme-tftp" / "config", seed_inputs / "config")
    return seed_inputs


def script(folder: Path, shell: str = "bash", *options: str) -> Path:
    """The completion script for `shell`, written by `-- tabcompletion` into the folder."""
    result = run_ibtasks(*SCRIPT, "--", "tabcompletion", "--shell", shell, *options, cwd=folder)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    path = folder.parent / f"ibtasks.{shell}"
    path.write_text(result.stdout)
    return path


def bash_complete(folder: Path, line: str, words: list[str] | None = None,
                  completion: Path | None = None) -> list[str]:
    """COMPREPLY for the command `line` typed up to its end (the cursor); `words` as bash splits
    them (default: at blanks, an empty word when the line ends in one). The function prints
    nothing (asserted)."""
    words = words if words is not None else line.split(" ")
    replies = folder.parent / "replies"
    done = subprocess.run(["bash", "-c", BASH_DRIVER, "driver",
                           str(completion or script(folder)), *words],
                          cwd=folder, env=ENV | {"LINE": line, "REPLIES": str(replies)},
                          capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    return [reply for reply in replies.read_text().splitlines() if reply]


def task_names(folder: Path, *command: str) -> list[str]:
    """What doit's `list --all --quiet` prints for this command line's graph."""
    listed = run_ibtasks(*command, "--", "list", "--all", "--quiet", cwd=folder)
    assert listed.returncode == 0, listed.stderr
    return sorted(line.strip() for line in listed.stdout.splitlines())


def test_subcommands_are_completed_from_a_prefix(board: Path) -> None:
    completion = script(board)
    assert bash_complete(board, "ibtasks d", completion=completion) == ["disk-image"]
    offered = bash_complete(board, "ibtasks ", completion=completion)
    assert set(subcommand_parsers(build_parser())) <= set(offered)
    assert {"uboot-script-gen", "disk-image", "run", "qemu-dtb", "--version"} <= set(offered)


def test_a_subcommands_flags_are_those_argparse_gives_it(board: Path) -> None:
    completion = script(board)
    assert bash_complete(board, "ibtasks disk-image --b", completion=completion) == [
        "--boot-fs", "--boot-size"]
    assert bash_complete(board, "ibtasks uboot-script-gen -c config --memory",
                         completion=completion) == ["--memory-map", "--memory-map-svg"]
    parser = subcommand_parsers(build_parser())["disk-image"]
    flags = {s for action in parser._actions for s in action.option_strings}
    assert set(bash_complete(board, "ibtasks disk-image -", completion=completion)) == \
        flags | {"--"}


def test_flags_taking_paths_are_completed_with_file_and_folder_names(board: Path) -> None:
    completion = script(board)
    assert bash_complete(board, "ibtasks uboot-script-gen -c con",
                         completion=completion) == ["config"]
    assert sorted(bash_complete(board, "ibtasks uboot-script-gen -c config -d zynqmp-dom",
                                completion=completion)) == [f"zynqmp-dom{n}" for n in range(1, 5)]
    assert bash_complete(board, "ibtasks disk-image -w zynqmp-dom1/",
                         completion=completion) == []  # a folder's files are not folders
    assert bash_complete(board, "ibtasks run -c zynqmp-dom1/Image",
                         completion=completion) == ["zynqmp-dom1/Image-domU"]


def test_flags_taking_other_values_offer_their_choices_or_nothing(board: Path) -> None:
    completion = script(board)
    assert bash_complete(board, "ibtasks disk-image --table ", completion=completion) == [
        "gpt", "dos"]
    assert bash_complete(board, "ibtasks disk-image --table=",
                         ["ibtasks", "disk-image", "--table", "="],
                         completion=completion) == ["gpt", "dos"]
    assert bash_complete(board, "ibtasks uboot-script-gen -t s", completion=completion) == [
        "sd", "scsi"]
    assert bash_complete(board, "ibtasks disk-image -j ", completion=completion) == []
    assert bash_complete(board, "ibtasks run --expect ", completion=completion) == []


def test_doit_commands_are_completed_after_the_double_dash(board: Path) -> None:
    completion = script(board)
    offered = bash_complete(board, "ibtasks " + " ".join(SCRIPT) + " -- ",
                            completion=completion)
    doits = set(DoitMain(config_filenames=()).get_cmds().to_dict())
    assert set(offered) == doits | {"auto"}
    assert {"run", "list", "info", "clean", "forget", "ignore", "reset-dep"} <= set(offered)
    assert bash_complete(board, "ibtasks " + " ".join(SCRIPT) + " -- res",
                         completion=completion) == ["reset-dep"]
    assert bash_complete(board, "ibtasks " + " ".join(SCRIPT) + " -- list --s",
                         completion=completion) == ["--status", "--sort"]


def test_forget_is_completed_with_the_task_names_of_this_command_lines_graph(
        board: Path) -> None:
    completion = script(board)
    offered = bash_complete(board, "ibtasks " + " ".join(SCRIPT) + " -- forget ",
                            completion=completion)
    assert sorted(offered) == task_names(board, *SCRIPT)
    assert "ib_check:DOMU_KERNEL[1]" in offered
    assert not any(name.startswith("ib_partition") for name in offered)
    # Another command line, another graph: a disk image with dom0's rootfs partition.
    (board / "rootfs.cfg").write_text((board / "config").read_text()
                                      + 'DOM0_ROOTFS="rootfs-dom0.cpio.gz"\n')
    disk = ["disk-image", "-c", "rootfs.cfg", "-d", ".", "-t", "sd", "-o", "disk.img"]
    offered = bash_complete(board, "ibtasks " + " ".join(disk) + " -- info ib_",
                            completion=completion)
    assert sorted(offered) == task_names(board, *disk)
    assert "ib_partition:dom0" in offered


def test_prefixed_task_names_complete_across_the_colon_bash_splits_at(board: Path) -> None:
    completion = script(board)
    line = "ibtasks " + " ".join(SCRIPT) + " -- forget ib_check:DOMU_K"
    words = ["ibtasks", *SCRIPT, "--", "forget", "ib_check", ":", "DOMU_K"]
    assert bash_complete(board, line, words, completion) == ["DOMU_KERNEL[0]", "DOMU_KERNEL[1]"]
    line = "ibtasks " + " ".join(SCRIPT) + " -- ignore ib_check:"
    words = ["ibtasks", *SCRIPT, "--", "ignore", "ib_check", ":"]
    offered = bash_complete(board, line, words, completion)
    # What readline puts after the ':' (it replaces the text after the last word break).
    assert "XEN" in offered and "DEVICE_TREE" in offered and len(offered) == 9
    # Several words: each one completed the same way.
    assert bash_complete(board, "ibtasks " + " ".join(SCRIPT) + " -- forget ib_dtb ib_l",
                         completion=completion) == ["ib_layout"]


@pytest.mark.parametrize("config, line", [
    ("NUM_DOMUS=2\nXEN=xen\nDOMU_KERNEL[0]=\"unterminated\n", "-c config -d . -t tftp"),
    ("XEN=missing-file\n", "-c config -d . -t tftp"),
    ("MEMORY_START=0x0\n", "-c config -t tftp"),  # no -d yet
    ("", "-c config -d no-such-folder -t tftp --json"),
])
def test_a_broken_or_incomplete_command_line_offers_nothing_quietly_and_fast(
        board: Path, config: str, line: str) -> None:
    completion = script(board)
    (board / "config").write_text(config)
    started = time.monotonic()
    assert bash_complete(board, f"ibtasks uboot-script-gen {line} -- forget ",
                         completion=completion) == []
    assert time.monotonic() - started < 2


def test_a_config_that_never_ends_offers_nothing_within_the_time_limit(board: Path) -> None:
    completion = script(board)
    (board / "config").unlink()
    os.mkfifo(board / "config")  # reading it blocks forever: nobody writes
    started = time.monotonic()
    assert bash_complete(board, "ibtasks " + " ".join(SCRIPT) + " -- forget ",
                         completion=completion) == []
    assert time.monotonic() - started < 6


def test_hardcoded_task_names_need_no_call_back(board: Path) -> None:
    completion = script(board, "bash", "--hardcode-tasks")
    (board / "config").write_text("broken=(\n")  # the graph can no longer be listed
    assert bash_complete(board, "ibtasks " + " ".join(SCRIPT) + " -- forget ib_b",
                         completion=completion) == ["ib_boot_scr", "ib_boot_source"]


def test_tabcompletion_takes_doits_options_and_refuses_others(board: Path) -> None:
    doits = {spelling for option in TabCompletion.cmd_options
             for spelling in (f"-{option['short']}", f"--{option['long']}")
             if spelling not in ("-", "--")}
    assert doits == {"-s", "--shell", "--hardcode-tasks"}
    for shell in ("bash", "zsh"):
        assert run_ibtasks(*SCRIPT, "--", "tabcompletion", "-s", shell,
                           cwd=board).stdout.startswith("#")
    refused = run_ibtasks(*SCRIPT, "--", "tabcompletion", "--shell", "fish", cwd=board)
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.startswith("ibtasks: error: -- tabcompletion: argument -s/--shell")
    assert not (board / ".ibtasks").exists()  # writing the script reads no config, builds nothing


ZSH_DRIVER = r"""
zmodload zsh/zpty
zpty shell 'zsh -f -i'
zpty -w shell "PS1='%% '; autoload -U compinit; compinit -u -D; source ${(q)1}"
record='local -a m; builtin compadd -O m "$@"; print -rl -- $m >>'${(q)2}
zpty -w shell "compadd() { $record; builtin compadd \"\$@\" }"
zpty -w shell 'print READY""MARK'
zpty -r shell output '*READYMARK*'
zpty -w -n shell "$3"$'\t\C-u'
zpty -w shell 'print END""MARK'
zpty -r shell output '*ENDMARK*'
zpty -d shell
"""


def zsh_complete(folder: Path, completion: Path, line: str) -> list[str]:
    """The matches zsh's completion system adds when TAB is typed after `line` in an
    interactive zsh that sourced `completion` (compadd wrapped to record them)."""
    matches = folder.parent / "zsh-matches"
    matches.unlink(missing_ok=True)
    done = subprocess.run(["zsh", "-f", "-c", ZSH_DRIVER, "driver", str(completion),
                           str(matches), line], cwd=folder, env=ENV, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return matches.read_text().splitlines() if matches.exists() else []


def test_zsh_completes_subcommands_files_and_task_names_through_bashcompinit(
        board: Path) -> None:
    completion = script(board, "zsh")
    assert zsh_complete(board, completion, "ibtasks disk-i") == ["disk-image"]
    assert zsh_complete(board, completion, "ibtasks disk-image -c con") == ["config"]
    assert zsh_complete(board, completion, "ibtasks disk-image --tab") == ["--table"]
    offered = zsh_complete(board, completion, "ibtasks " + " ".join(SCRIPT) + " -- forget ")
    assert sorted(offered) == task_names(board, *SCRIPT)
    assert zsh_complete(board, completion, "ibtasks " + " ".join(SCRIPT)
                        + " -- forget ib_check:DOMU_R") == [
        "ib_check:DOMU_RAMDISK[0]", "ib_check:DOMU_RAMDISK[1]"]
    (board / "config").write_text("XEN=missing\n")
    assert zsh_complete(board, completion, "ibtasks " + " ".join(SCRIPT) + " -- forget ") == []


def bash_tab(folder: Path, completion: Path, typed: str) -> str:
    """The command line an interactive bash (real readline, on a pseudo-terminal, the
    completion sourced) holds after `typed` and one TAB: a key bound with `bind -x` prints
    READLINE_LINE."""
    leader, follower = pty.openpty()
    shell = subprocess.Popen(["bash", "--norc", "--noprofile", "-i"], stdin=follower,
                             stdout=follower, stderr=follower, cwd=folder, start_new_session=True,
                             env=ENV | {"PS1": "$ ", "TERM": "dumb", "INPUTRC": "/dev/null"})
    os.close(follower)
    seen = b""

    def until(marker: bytes) -> bytes:
        nonlocal seen
        deadline = time.monotonic() + 30
        while marker not in seen:
            assert time.monotonic() < deadline, seen.decode(errors="replace")
            if select.select([leader], [], [], 0.5)[0]:
                seen += os.read(leader, 65536)
        found, seen = seen.split(marker, 1)
        return found

    try:
        os.write(leader, f". {completion}\n".encode())
        os.write(leader, b"bind -x '\"\\C-t\": printf \"\\n<<%s>>\\n\" \"$READLINE_LINE\"'\n")
        os.write(leader, b"echo READY''MARK\n")
        until(b"READYMARK")  # the echo's output (the line typed reads READY''MARK)
        os.write(leader, typed.encode() + b"\t\x14")
        until(b"<<")
        return until(b">>").decode()
    finally:
        os.write(leader, b"\x15exit\n")
        shell.wait(timeout=30)
        os.close(leader)


def test_readline_completes_the_rest_of_a_name_after_its_colon(board: Path) -> None:
    completion = script(board)
    disk = "ibtasks disk-image -c config -d . -t sd -o disk.img -- forget "
    assert bash_tab(board, completion, disk + "ib_partition:") == disk + "ib_partition:boot "
    script_line = "ibtasks " + " ".join(SCRIPT) + " -- forget "
    assert bash_tab(board, completion, script_line + "ib_check:X") == (
        script_line + "ib_check:XEN ")
    # Several names after the ':' (no common start): the line stays as typed, no `\:`.
    assert bash_tab(board, completion, script_line + "ib_check:") == (
        script_line + "ib_check:")
    assert bash_tab(board, completion, script_line + "ib_lay") == script_line + "ib_layout "
