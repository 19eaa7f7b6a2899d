"""A doit run that touches only what ibtasks wrote: outputs are guarded (tasks.ownership)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ibtasks.tasks.ownership import OutputGuard


def run_guarded(guard: OutputGuard, paths: Sequence[Path], argv: Sequence[str],
                run: Any) -> int:
    """Run `run()` (a doit command) for outputs `paths`: with `run`, files ibtasks did not
    write are set aside first; success records the outputs, failure removes them and puts the
    set-aside files back (ibtasks.tasks.ownership)."""
    from ibtasks.tasks.ownership import check_output_paths

    if argv[0] != "run":
        return int(run())
    check_output_paths(paths)
    guard.begin(paths)
    try:
        code = int(run())
    except BaseException:
        guard.abort(paths)
        raise
    if code == 0:
        guard.commit(paths)
    else:
        guard.abort(paths)
    return code
