"""doit's dependency state as a JSON file that is written atomically and heals when unreadable.

doit's own `json` backend rewrites its file in place: a build killed while writing, or a second
build writing at once, leaves it truncated, and every later build then stopped with doit's
"Invalid JSON data" traceback. This backend writes through a temporary file and a rename
(ibtasks.fsutil), and sets an unreadable file aside with one warning (tasks.state_file), so the
next build starts from a clean state. doit selects backends by name (DOIT_CONFIG `backend`) among
its own and its `BACKEND` plugins: `ibtasks.tasks.runner` registers this one as `ibtasks-json`
(also an entry point, `doit.BACKEND`, for a plain `doit` run of an embedding dodo.py).
"""

from __future__ import annotations

from typing import Any

from doit.dependency import JsonDB

from ibtasks.fsutil import write_atomic
from ibtasks.tasks.state_file import read_state

BACKEND_NAME = "ibtasks-json"
PLUGIN_LOCATION = "ibtasks.tasks.state_backend:AtomicJsonDB"


def _valid(data: Any) -> bool:
    """doit's layout: task name -> {dependency -> value}."""
    return isinstance(data, dict) and all(isinstance(v, dict) for v in data.values())


class AtomicJsonDB(JsonDB):  # type: ignore[misc]
    """doit's JsonDB with an atomic `dump` and a `_load` that sets an unreadable file aside."""

    desc = "JSON file written atomically; an unreadable one is set aside (ibtasks)"

    def _load(self) -> dict[str, Any]:
        data = read_state(self.name, _valid)
        return {} if data is None else dict(data)

    def dump(self) -> None:
        """Write the state file atomically (a killed build leaves the old one whole)."""
        write_atomic(self.name, self.codec.encode(self._db).encode())
