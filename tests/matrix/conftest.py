"""The matrix's table: each test's outcome is kept, and the table is printed at the end of the run,
written to the pytest tmp dir (matrix.md, matrix.json), and with `--matrix-docs PATH` written
there as the docs page (`python tests/matrix/render.py` does that for docs/matrix.md)."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

# tests/conftest.py and this file are both imported as the module `conftest` (neither directory
# is a package). Loading this one drops the other from sys.modules, and the suite's modules do
# `from conftest import find_binary`: give them (and ours) the same function from here.
_spec = importlib.util.spec_from_file_location(
    "_tests_conftest", Path(__file__).parent.parent / "conftest.py"
)
assert _spec is not None and _spec.loader is not None
_shared = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_shared)
find_binary = _shared.find_binary
SEARCH_PATH = _shared.SEARCH_PATH

from render import render_document, render_tables  # noqa: E402  (tests/matrix is on sys.path)

RESULTS: dict[str, dict[str, Any]] = {}  # test id -> outcome, notes, commands
SECONDS = [0.0]  # the matrix tests' time: setup (host start-up), call and teardown


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--matrix-docs",
        metavar="PATH",
        default=None,
        help="after a full run of tests/matrix, write the matrix page (docs/matrix.md) to PATH",
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    callspec = getattr(item, "callspec", None)
    if callspec is None or "rule" not in callspec.params:
        return
    SECONDS[0] += report.duration
    if report.when == "call" or (report.when == "setup" and not report.passed):
        record = dict(next((value for key, value in item.user_properties if key == "matrix"), {}))
        record.update(callspec.params)
        record["outcome"] = report.outcome
        if report.failed and call.excinfo is not None:
            message = str(call.excinfo.value).strip().splitlines()
            record["error"] = (message[0] if message else call.excinfo.typename)[:160]
        elif report.skipped and isinstance(report.longrepr, tuple):
            record["error"] = str(report.longrepr[2]).removeprefix("Skipped: ")
        RESULTS[item.nodeid] = record


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if not RESULTS:
        return
    results = list(RESULTS.values())
    elapsed = SECONDS[0]
    tables = render_tables(results)
    terminalreporter.section("interface matrix")
    terminalreporter.write_line(tables)
    terminalreporter.write_line(f"({len(results)} cell rules in {elapsed:.0f} s)")
    basetemp = config._tmp_path_factory.getbasetemp()  # type: ignore[attr-defined]
    (basetemp / "matrix.md").write_text(tables + "\n", encoding="utf-8")
    (basetemp / "matrix.json").write_text(json.dumps(results, indent=1, ensure_ascii=False), encoding="utf-8")
    terminalreporter.write_line(f"table written to {basetemp / 'matrix.md'}")
    docs = config.getoption("--matrix-docs", default=None)
    if docs:
        from matrix_hosts import ROWS, RUNS
        from test_matrix import RULES

        if len(results) != len(RULES) * len(ROWS) * len(RUNS):
            terminalreporter.write_line(
                f"--matrix-docs: not a full run ({len(results)} results): {docs} not written"
            )
            return
        now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        Path(docs).write_text(render_document(results, now, elapsed), encoding="utf-8")
        terminalreporter.write_line(f"matrix page written to {docs}")
