"""The README's key reference is generated from the settings table and must stay in sync."""

from __future__ import annotations

from ibtasks.config.settings import render_key_reference
from tests.conftest import REPO


def test_readme_key_reference_matches_the_settings_table() -> None:
    text = (REPO / "README.md").read_text()
    table = text.split("<!-- keys:begin -->\n")[1].split("<!-- keys:end -->")[0]
    assert table == render_key_reference(), (
        "README.md's key reference is stale: paste the output of "
        "`python -c 'from ibtasks.config.settings import render_key_reference as r; "
        "print(r(), end=\"\")'`"
    )


def test_readme_gives_the_test_command_that_ci_runs() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    assert ".venv/bin/python -m pytest\n" in (REPO / "README.md").read_text()
    assert ci.rstrip().endswith(".venv/bin/python -m pytest")
