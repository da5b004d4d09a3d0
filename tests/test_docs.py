"""The documentation site: `mkdocs build --strict` passes, and the generated pages are current.

mkdocs.yml makes every broken link, missing anchor and page left out of the nav a warning, and
`--strict` makes a warning fail the build. docs/cli.md is generated from the `bridge` parser by
scripts/gen_cli_reference.py; docs/api.md is rendered from the docstrings by mkdocstrings and
must name every public name.
"""

from __future__ import annotations

import argparse
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

import bridges

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _require(module: str) -> None:
    """Skip without the docs tools, except under CI, where the `test` extra installs them."""
    try:
        __import__(module)
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"{module} is not installed (pip install -e '.[docs]')")


def test_site_builds_strictly(tmp_path: Path) -> None:
    _require("mkdocs")
    _require("mkdocstrings_handlers.python")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "-f",
            str(ROOT / "mkdocs.yml"),
            "-d",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    assert (tmp_path / "index.html").is_file()
    api = (tmp_path / "api" / "index.html").read_text(encoding="utf-8")
    for name in bridges.__all__:
        assert f'id="bridges.{name}"' in api, f"the API page has no entry for bridges.{name}"


def test_cli_reference_is_current() -> None:
    render = runpy.run_path(str(ROOT / "scripts" / "gen_cli_reference.py"))["render"]
    current = (DOCS / "cli.md").read_text(encoding="utf-8")
    assert current == render(), "docs/cli.md is stale: run .venv/bin/python scripts/gen_cli_reference.py"


def test_cli_reference_lists_every_option() -> None:
    from bridges.cli import build_parser

    page = (DOCS / "cli.md").read_text(encoding="utf-8")
    parser = build_parser()
    subcommands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, subparser in subcommands.choices.items():
        assert f"## `bridge {name}`" in page
        for action in subparser._actions:
            for option in action.option_strings:
                assert f"`{option}" in page, f"docs/cli.md does not list bridge {name} {option}"
    assert "usage: bridge cgi TARGET" in page


def test_api_reference_names_every_public_name_once() -> None:
    page = (DOCS / "api.md").read_text(encoding="utf-8")
    documented = re.findall(r"^::: bridges\.(\S+)\s*$", page, flags=re.MULTILINE)
    assert sorted(documented) == sorted(bridges.__all__), (
        "docs/api.md must have one ::: entry per name in __all__"
    )


@pytest.mark.parametrize("name", [name for name in bridges.__all__ if name != "__version__"])
def test_every_public_name_has_a_docstring(name: str) -> None:
    doc = getattr(bridges, name).__doc__
    assert doc and doc.strip(), f"bridges.{name} has no docstring, so the API page would show none"


def test_every_page_is_in_the_nav() -> None:
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for page in sorted(DOCS.glob("*.md")):
        assert re.search(rf":\s*{re.escape(page.name)}\s*$", nav, flags=re.MULTILINE), (
            f"{page.name} is not in the nav"
        )
