"""The no-op fast path of disk-image: a repeated command line replays after a few stat calls,
without importing doit, and any change (an input, an output, a flag, a variable) falls through
to the full build. Whether doit ran is read from `sys.modules` after the command.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.small_configs import DISK, write_config

# Run the CLI in-process and say whether doit was imported (the full path always imports it).
PROBE = ("import sys; from ibtasks.cli.entry import main; sys.argv = ['ibtasks', *sys.argv[1:]]; "
         "code = main(); print('DOIT' if 'doit' in sys.modules else 'FAST'); sys.exit(code)")


def disk(inputs: Path, *flags: str, env: dict[str, str] | None = None) -> str:
    """disk-image FLAGS in `inputs`; 'DOIT' or 'FAST' (whether doit was imported)."""
    full_env = {k: v for k, v in os.environ.items() if k != "LOAD_CMD"} | (env or {})
    done = subprocess.run([sys.executable, "-c", PROBE, "disk-image", "-c", "config", "-d", ".",
                           "-t", "sd", "-o", "disk.img", *flags], cwd=inputs, env=full_env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_a_repeated_disk_image_replays_without_doit(seed_inputs: Path) -> None:
    write_config(seed_inputs, DISK)
    assert disk(seed_inputs) == "DOIT"
    assert list((seed_inputs / ".ibtasks").glob("last-run-*.json"))
    image = (seed_inputs / "disk.img").read_bytes()
    assert disk(seed_inputs) == "FAST"
    assert disk(seed_inputs) == "FAST"
    assert (seed_inputs / "disk.img").read_bytes() == image


def test_a_changed_archive_kernel_or_deleted_partition_image_is_rebuilt(seed_inputs: Path) -> None:
    write_config(seed_inputs, DISK)
    disk(seed_inputs)
    archive = seed_inputs / "rootfs-domU.tar.gz"
    archive.write_bytes(archive.read_bytes())  # same bytes, new mtime: doit decides
    assert disk(seed_inputs) == "DOIT"
    assert disk(seed_inputs) == "FAST"
    kernel = seed_inputs / "Image-dom0"
    kernel.write_bytes(kernel.read_bytes() + b"\0" * 4096)
    assert disk(seed_inputs) == "DOIT"
    (seed_inputs / ".ibtasks" / "dom0.ext4").unlink()
    assert disk(seed_inputs) == "DOIT"
    assert (seed_inputs / ".ibtasks" / "dom0.ext4").is_file()


def test_other_flags_or_variables_do_not_replay(seed_inputs: Path) -> None:
    write_config(seed_inputs, DISK)
    disk(seed_inputs)
    assert disk(seed_inputs, "-s", "64") == "DOIT"
    assert disk(seed_inputs, "-s", "64") == "FAST"
    assert disk(seed_inputs) == "DOIT"  # the disk of -s 128 was replaced by -s 64's
    assert disk(seed_inputs, env={"SOURCE_DATE_EPOCH": "1700000000"}) == "DOIT"
    assert disk(seed_inputs, env={"IBTASKS_EXT4_PATH": "archive"}) == "DOIT"


def test_a_deleted_disk_image_is_rebuilt(seed_inputs: Path) -> None:
    write_config(seed_inputs, DISK)
    disk(seed_inputs)
    (seed_inputs / "disk.img").unlink()
    assert disk(seed_inputs) == "DOIT"
    assert (seed_inputs / "disk.img").is_file()


def test_the_disk_fast_path_knows_every_disk_image_option_that_takes_a_value() -> None:
    from ibtasks.cli.arguments import build_parser
    from ibtasks.cli.fast_path import DISK_VALUE_FLAGS

    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command")
    command = commands.choices["disk-image"]  # type: ignore[index]
    takes_value = {flag for action in command._actions if action.option_strings
                   and action.nargs != 0 for flag in action.option_strings}
    assert takes_value - {"-w"} == DISK_VALUE_FLAGS  # -w never takes the fast path
