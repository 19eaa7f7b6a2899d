"""Every shell and Python block of README.md runs as pasted, in a fresh clone of the checkout.

The fenced blocks are read in order and run one after another, as a user pastes them into one
shell: the working directory carries over from block to block, and after the quick start the
blocks see its activated virtual environment. HTML comments just above a block say what it
promises or why it is not run:

    <!-- readme-test: creates PATH... -->      files the block makes (relative to where it starts)
    <!-- readme-test: prints "TEXT" -->        a line part the block prints (stdout or stderr)
    <!-- readme-test: file NAME -->            the block is a file's content, written to NAME
    <!-- readme-test: skip (REASON) -->        not run in CI, for the reason given

Blocks that show output or configs use another fence language (`text`, `json`, `yaml`).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import REPO, run_ibtasks
from tests.inputs import write_inputs

RUN_LANGUAGES = frozenset({"sh", "bash", "shell", "console", "python"})
SHOWN_LANGUAGES = frozenset({"text", "json", "yaml"})
MAX_SKIPPED = 6
FENCE = re.compile(r"^(?P<indent>\s*)```(?P<language>[^`\s]*)\s*$")
DIRECTIVE = re.compile(r"^\s*<!-- readme-test: (?P<body>.*?) -->\s*$")
SKIP = re.compile(r"^skip \((?P<reason>[^)]+)\)$")
PRINTS = re.compile(r'^prints "(?P<text>.+)"$')
BLOCK_TIMEOUT = 1200  # seconds: the quick start's pip install on a cold cache


@dataclass(frozen=True)
class Block:
    """One fenced block: the line its fence opens on, its language, its text and the
    `readme-test` directives written just above it."""

    line: int
    language: str
    text: str
    directives: tuple[str, ...] = ()

    @property
    def skip_reason(self) -> str | None:
        """The reason of a `skip (...)` directive, or None."""
        for directive in self.directives:
            if match := SKIP.match(directive):
                return match["reason"].strip()
        return None

    @property
    def file_name(self) -> str | None:
        """The file a `file NAME` directive writes the block to, or None."""
        names = [d.removeprefix("file ").strip() for d in self.directives if d.startswith("file ")]
        return names[0] if names else None

    @property
    def creates(self) -> list[str]:
        """Paths the block promises to make."""
        return [path for d in self.directives if d.startswith("creates ")
                for path in d.removeprefix("creates ").split()]

    @property
    def prints(self) -> list[str]:
        """Texts the block promises to print."""
        return [m["text"] for d in self.directives if (m := PRINTS.match(d))]


def read_blocks(markdown: str) -> list[Block]:
    """The fenced blocks of `markdown`, in order; a fence that is never closed is a ValueError."""
    lines = markdown.split("\n")
    blocks = []
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        directives: list[str] = []
        above = index - 1
        while above >= 0 and (directive := DIRECTIVE.match(lines[above])):
            directives.insert(0, directive["body"].strip())
            above -= 1
        indent = opening["indent"]
        body = []
        end = index + 1
        while end < len(lines) and lines[end].strip() != "```":
            body.append(lines[end].removeprefix(indent))
            end += 1
        if end == len(lines):
            raise ValueError(f"README.md:{index + 1}: fence never closed")
        blocks.append(Block(index + 1, opening["language"], "\n".join(body) + "\n",
                            tuple(directives)))
        index = end + 1
    return blocks


def problems_of(block: Block) -> list[str]:
    """What keeps `block` from being checked: no language, an unknown one, or a runnable block
    that neither promises anything nor says why it is skipped."""
    where = f"README.md:{block.line}"
    if not block.language:
        return [f"{where}: a fence without a language (`sh`/`python` are run, `text` is not)"]
    if block.language not in RUN_LANGUAGES | SHOWN_LANGUAGES:
        return [f"{where}: unknown fence language {block.language!r}"]
    if block.language in SHOWN_LANGUAGES:
        return []
    bad = [d for d in block.directives if d.startswith("skip") and not SKIP.match(d)]
    if bad:
        return [f"{where}: a skip needs its reason in parentheses: {bad[0]!r}"]
    if block.skip_reason is None and not (block.file_name or block.creates or block.prints):
        return [f"{where}: a run block must promise something (creates, prints) or be a file"]
    return []


@dataclass
class Outcome:
    """What running one block did: its exit status, output and the folder it ended in."""

    status: int
    output: str
    cwd: Path
    problems: list[str] = field(default_factory=list)


def shell_script(block: Block) -> str:
    """The commands of a shell block (a `console` block's `$ ` lines, prompt removed)."""
    if block.language != "console":
        return block.text
    return "\n".join(line[2:] for line in block.text.splitlines() if line.startswith("$ "))


def run_block(block: Block, cwd: Path, env: dict[str, str],
              login: Sequence[str] = ()) -> Outcome:
    """Run `block` in `cwd` as pasted (bash stops at the first failing command), then check its
    promises; the returned outcome's cwd is where the block's shell ended. `login` is a command
    prefix that runs the block as another user (tests.unprivileged.login_as)."""
    if block.file_name:
        (cwd / block.file_name).write_text(block.text)
        return Outcome(0, "", cwd)
    where_file = cwd / f".readme-test-cwd-{block.line}"
    if block.language == "python":
        command = [env.get("READMETEST_PYTHON", "python3"), "-c", block.text]
    else:
        # The status of the block's last command is the block's: bash -e goes on after a
        # failure inside an `a && b` chain, leaving it only in $?, as a pasted chain does.
        script = (f"{shell_script(block)}\nreadme_test_status=$?\n"
                  f"pwd > {shlex.quote(str(where_file))}\nexit $readme_test_status\n")
        command = ["bash", "-e", "-o", "pipefail", "-c", script]
    done = subprocess.run([*login, *command], cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=BLOCK_TIMEOUT,
                          check=False)
    ended = Path(where_file.read_text().strip()) if where_file.exists() else cwd
    where_file.unlink(missing_ok=True)
    outcome = Outcome(done.returncode, done.stdout, ended)
    if done.returncode != 0:
        outcome.problems.append(f"README.md:{block.line}: exit status {done.returncode}")
    outcome.problems += [f"README.md:{block.line}: did not create {path}"
                         for path in block.creates if not (cwd / path).exists()]
    outcome.problems += [f"README.md:{block.line}: did not print {text!r}"
                         for text in block.prints if text not in done.stdout]
    return outcome


def run_blocks(blocks: list[Block], cwd: Path, env: dict[str, str],
               login: Sequence[str] = ()) -> dict[int, Outcome]:
    """Run every runnable, unskipped block in order, by its line (each with the command prefix
    `login`, see run_block); after a failure the rest are reported as not run."""
    outcomes: dict[int, Outcome] = {}
    failed: int | None = None
    for block in blocks:
        if block.language not in RUN_LANGUAGES or block.skip_reason is not None:
            continue
        if failed is not None:
            outcomes[block.line] = Outcome(-1, "", cwd, [
                f"README.md:{block.line}: not run, README.md:{failed} failed before it"])
            continue
        outcome = run_block(block, cwd, env, login)
        outcomes[block.line] = outcome
        cwd = outcome.cwd
        if outcome.problems:
            failed = block.line
        venv = cwd / ".venv" / "bin"
        if venv.is_dir() and "VIRTUAL_ENV" not in env:
            # What `. .venv/bin/activate` leaves in the user's shell for the blocks after it.
            env = env | {"VIRTUAL_ENV": str(venv.parent), "PATH": f"{venv}:{env['PATH']}",
                         "READMETEST_PYTHON": str(venv / "python")}
    return outcomes


def user_environment() -> dict[str, str]:
    """The environment a user's shell would have: ours without this test run's venv or any
    ibtasks setting."""
    keep = {k: v for k, v in os.environ.items()
            if k not in ("VIRTUAL_ENV", "LOAD_CMD", "PYTHONPATH")
            and not k.startswith(("IBTASKS_", "PYTEST_"))}
    keep["PATH"] = ":".join(p for p in keep.get("PATH", "/usr/bin:/bin").split(":")
                            if not p.startswith(str(REPO)) and "/.venv/" not in p)
    return keep


def clone_checkout(destination: Path) -> Path:
    """A `git clone` of this checkout with its uncommitted changes to tracked files applied:
    what a user of this revision gets."""
    subprocess.run(["git", "clone", "-q", str(REPO), str(destination)], check=True)
    diff = subprocess.run(["git", "-C", str(REPO), "diff", "HEAD", "--binary"], check=True,
                          stdout=subprocess.PIPE).stdout
    if diff:
        subprocess.run(["git", "-C", str(destination), "apply", "--whitespace=nowarn"],
                       input=diff, check=True)
    return destination


README_BLOCKS = read_blocks((REPO / "README.md").read_text())
RUN_BLOCKS = [b for b in README_BLOCKS
              if b.language in RUN_LANGUAGES and b.skip_reason is None]


@pytest.fixture(scope="module")
def readme_outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Outcome]:
    """Every run block of the clone's README.md, run in order in the clone."""
    clone = clone_checkout(tmp_path_factory.mktemp("readme") / "ibtasks")
    blocks = read_blocks((clone / "README.md").read_text())
    return run_blocks(blocks, clone, user_environment())


@pytest.mark.parametrize("block", RUN_BLOCKS, ids=lambda b: f"line-{b.line}")
def test_readme_block_runs_as_pasted_and_keeps_its_promise(
        block: Block, readme_outcomes: dict[int, Outcome]) -> None:
    outcome = readme_outcomes[block.line]
    assert not outcome.problems, "\n".join(outcome.problems) + "\n" + outcome.output[-3000:]


def test_every_readme_block_is_run_or_shown_or_skipped_with_a_reason() -> None:
    problems = [p for block in README_BLOCKS for p in problems_of(block)]
    assert not problems, "\n".join(problems)
    skipped = [b for b in README_BLOCKS if b.skip_reason is not None]
    assert len(skipped) <= MAX_SKIPPED, [f"line {b.line}: {b.skip_reason}" for b in skipped]
    assert len(RUN_BLOCKS) >= 8


def test_a_fence_without_a_language_or_with_an_unknown_one_is_reported() -> None:
    blocks = read_blocks("a\n```\nls\n```\n\n```zsh\nls\n```\n\n```text\nout\n```\n")
    assert [p for b in blocks for p in problems_of(b)] == [
        "README.md:2: a fence without a language (`sh`/`python` are run, `text` is not)",
        "README.md:6: unknown fence language 'zsh'"]


def test_a_run_block_without_a_promise_or_with_a_skip_without_reason_is_reported() -> None:
    markdown = ("```sh\ntrue\n```\n<!-- readme-test: skip -->\n```sh\ntrue\n```\n"
                "<!-- readme-test: skip (boots for an hour) -->\n```sh\ntrue\n```\n"
                '<!-- readme-test: prints "x" -->\n```python\nprint("x")\n```\n')
    blocks = read_blocks(markdown)
    assert [p for b in blocks for p in problems_of(b)] == [
        "README.md:1: a run block must promise something (creates, prints) or be a file",
        "README.md:5: a skip needs its reason in parentheses: 'skip'"]
    assert blocks[2].skip_reason == "boots for an hour"


def test_blocks_run_in_order_in_the_folder_the_last_one_left(tmp_path: Path) -> None:
    markdown = ("<!-- readme-test: creates sub/made -->\n"
                "```sh\nmkdir sub\ncd sub\ntouch made\n```\n"
                "<!-- readme-test: file notes.py -->\n```python\nprint('from a file')\n```\n"
                '<!-- readme-test: prints "from a file" -->\n```sh\npython3 notes.py\n```\n')
    outcomes = run_blocks(read_blocks(markdown), tmp_path, user_environment())
    assert [o.problems for o in outcomes.values()] == [[], [], []]
    assert (tmp_path / "sub" / "notes.py").read_text() == "print('from a file')\n"


def test_a_failing_block_or_a_broken_promise_is_reported_and_stops_the_rest(
        tmp_path: Path) -> None:
    markdown = ('<!-- readme-test: prints "hello" -->\n<!-- readme-test: creates out -->\n'
                "```sh\necho hullo\n```\n"
                '<!-- readme-test: prints "x" -->\n```sh\nfalse\necho x\n```\n')
    outcomes = run_blocks(read_blocks(markdown), tmp_path, user_environment())
    assert outcomes[3].problems == ["README.md:3: did not create out",
                                    "README.md:3: did not print 'hello'"]
    assert outcomes[7].problems == ["README.md:7: not run, README.md:3 failed before it"]
    alone = run_blocks(read_blocks('<!-- readme-test: prints "x" -->\n```sh\nfalse\necho x\n```\n'),
                       tmp_path, user_environment())
    assert alone[2].problems == ["README.md:2: exit status 1", "README.md:2: did not print 'x'"]


def test_a_block_whose_command_chain_fails_midway_fails_with_the_chains_status(
        tmp_path: Path) -> None:
    markdown = ('<!-- readme-test: prints "x" -->\n```sh\ncd / &&\n(exit 3) &&   # no\n'
                'echo x\n```\n<!-- readme-test: prints "y" -->\n```sh\nfalse || echo y\n```\n')
    outcomes = run_blocks(read_blocks(markdown), tmp_path, user_environment())
    assert outcomes[2].problems == ["README.md:2: exit status 3", "README.md:2: did not print 'x'"]
    assert outcomes[2].cwd == Path("/")
    handled = run_blocks(read_blocks(markdown)[1:], tmp_path, user_environment())
    assert handled[8].problems == []


def test_the_readme_json_example_has_the_shape_of_a_real_disk_image_result(
        tmp_path: Path) -> None:
    example = json.loads(next(b for b in README_BLOCKS if b.language == "json").text)
    write_inputs(tmp_path)
    (tmp_path / "config").write_text(
        "MEMORY_START=0x40000000\nMEMORY_END=0xC0000000\nDEVICE_TREE=mpsoc.dtb\nXEN=xen\n"
        "DOM0_KERNEL=Image-dom0\nDOM0_RAMDISK=dom0-ramdisk.cpio\nNUM_DOMUS=1\n"
        "DOMU_KERNEL[0]=zynqmp-dom1/Image-domU\nDOMU_ROOTFS[0]=rootfs-domU.tar.gz\n")
    args = ("disk-image", "-c", "config", "-d", ".", "-t", "sd", "-o", "disk.img", "--json")
    assert run_ibtasks(*args, cwd=tmp_path).returncode == 0
    # A second build after a kernel change, so that some tasks run and some are up to date.
    with (tmp_path / "Image-dom0").open("ab") as kernel:
        kernel.write(b"+")
    done = run_ibtasks(*args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    real = json.loads(done.stdout)

    def shape(value: object) -> object:
        if isinstance(value, dict):
            return {key: shape(item) for key, item in value.items()}
        if isinstance(value, list):
            return shape(value[0]) if value else []
        return type(value).__name__

    assert shape(example) == shape(real)
