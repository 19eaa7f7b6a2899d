"""Write <case>.itb and <case>.dumpimage-l for every FIT of tests/fit_cases.py.

Run from the repository root: `.venv/bin/python tests/goldens/fit-bytes/make-goldens.py`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from ibtasks.formats.fit import build_fit  # noqa: E402
from tests.fit_cases import CASES  # noqa: E402

for name, make in CASES.items():
    itb = HERE / f"{name}.itb"
    itb.write_bytes(build_fit(make()))
    listing = subprocess.run(["dumpimage", "-l", str(itb)], check=True, capture_output=True,
                             text=True, env={"TZ": "UTC", "PATH": "/usr/bin:/bin"}).stdout
    (HERE / f"{name}.dumpimage-l").write_text(listing)
