"""Render the matrix's results as tables, and regenerate docs/matrix.md.

`python tests/matrix/render.py` runs the matrix (`pytest tests/matrix --matrix-docs docs/matrix.md`)
and writes docs/matrix.md from that run. Extra arguments go to pytest. The tables are built by
the functions below, which conftest.py also calls to print the table at the end of every run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
COMMAND = ".venv/bin/python -m pytest tests/matrix -q"

if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

# What is known about a failing (row, rule), added to its note while it fails.
DIAGNOSES = {
    ("cgi", "unicode"): (
        "bridges bug: CGIToASGI hands the script its CGI variables as PEP 3333 strings (bytes "
        "as latin-1) in a str environment, which Python encodes as UTF-8, so a non-ASCII "
        "PATH_INFO reaches the script UTF-8-encoded twice"
    ),
    ("fastcgi", "chunked"): (
        "bridges bug: FastCGIToASGI forwards a body that has no length without CONTENT_LENGTH, and "
        "php-fpm reads CONTENT_LENGTH bytes, so none (nginx and lighttpd buffer the upload and "
        "declare its length: those cells pass)"
    ),
}


def _model() -> tuple[Any, Any]:
    import matrix_hosts
    import test_matrix

    return matrix_hosts, test_matrix


def _by_cell(results: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, dict[str, Any]]]:
    cells: dict[tuple[str, str], dict[str, dict[str, Any]]] = defaultdict(dict)
    for record in results:
        cells[record["run"], record["row"]][record["rule"]] = record
    return cells


class _Footnotes:
    def __init__(self) -> None:
        self.texts: list[str] = []

    def mark(self, text: str) -> str:
        if text not in self.texts:
            self.texts.append(text)
        return f"[{self.texts.index(text) + 1}]"


def _failure(record: dict[str, Any]) -> str:
    error = record.get("error", "failed")
    diagnosis = DIAGNOSES.get((record["row"], record["rule"]))
    return f"{error} ({diagnosis})" if diagnosis else error


def _symbol(record: dict[str, Any] | None, footnotes: _Footnotes) -> str:
    if record is None:
        return "not run"
    notes = " ".join(record.get("notes", []))
    if record["outcome"] == "failed":
        return "**FAIL**" + footnotes.mark(_failure(record))
    if record["outcome"] == "skipped":
        return "skip" + footnotes.mark(record.get("error", "skipped"))
    if "not_applicable" in record:
        return "n/a" + footnotes.mark(record["not_applicable"])
    return "✓" + (f" {notes}" if notes else "")


def _summary(rules: dict[str, dict[str, Any]], all_rules: tuple[str, ...], footnotes: _Footnotes) -> str:
    """One run of one cell, in a few words: pass / FAIL: rules; n/a rules; the WebSocket outcome."""
    missing = [rule for rule in all_rules if rule not in rules]
    failed = [rule for rule in all_rules if rule in rules and rules[rule]["outcome"] == "failed"]
    skipped = [rule for rule in all_rules if rule in rules and rules[rule]["outcome"] == "skipped"]
    na = [rule for rule in all_rules if rule in rules and "not_applicable" in rules[rule]]
    parts = []
    if failed:
        parts.append("**FAIL** " + ", ".join(rule + footnotes.mark(_failure(rules[rule])) for rule in failed))
    elif skipped:
        parts.append(
            "skip " + ", ".join(rule + footnotes.mark(rules[rule].get("error", "")) for rule in skipped)
        )
    elif missing:
        parts.append(f"{len(all_rules) - len(missing)}/{len(all_rules)} run")
    else:
        parts.append("pass")
    parts += [f"{rule} n/a{footnotes.mark(rules[rule]['not_applicable'])}" for rule in na]
    websocket = rules.get("websocket")
    if websocket and websocket["outcome"] == "passed" and websocket.get("notes"):
        parts.append("ws " + " ".join(websocket["notes"]))
    return "; ".join(parts)


def render_tables(results: list[dict[str, Any]], detail: bool = True) -> str:
    """The 4 x 5 table (and the per-rule table), with numbered reasons and failures below."""
    hosts, tests = _model()
    cells = _by_cell(results)
    footnotes = _Footnotes()
    columns = list(hosts.COLUMNS)
    lines = [
        "| app ↓ / host → | " + " | ".join(hosts.COLUMN_TITLES[column] for column in columns) + " |",
        "| --- | " + " | ".join("---" for _ in columns) + " |",
    ]
    for row in hosts.ROWS:
        entries = []
        for column in columns:
            runs = hosts.COLUMNS[column]
            texts = []
            for run in runs:
                text = _summary(cells.get((run, row), {}), tests.RULES, footnotes)
                texts.append(f"{run}: {text}" if len(runs) > 1 else text)
            entries.append("<br>".join(texts))
        lines.append(f"| {hosts.ROW_TITLES[row]} | " + " | ".join(entries) + " |")
    if detail:
        lines += ["", "| cell (host / app) | " + " | ".join(tests.RULES) + " |"]
        lines.append("| --- | " + " | ".join("---" for _ in tests.RULES) + " |")
        for run in hosts.RUNS:
            for row in hosts.ROWS:
                rules = cells.get((run, row), {})
                symbols = [_symbol(rules.get(rule), footnotes) for rule in tests.RULES]
                lines.append(f"| {run} / {row} | " + " | ".join(symbols) + " |")
    if footnotes.texts:
        lines.append("")
        lines += [f"- [{number}] {text}" for number, text in enumerate(footnotes.texts, 1)]
    return "\n".join(lines)


def _blocks(items: list[tuple[str, str]]) -> list[str]:
    return [
        (f"`{label}`:\n\n" if label else "") + "```\n" + text.rstrip("\n") + "\n```\n"
        for label, text in items
    ]


def _commands(results: list[dict[str, Any]]) -> str:
    hosts, _ = _model()
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    shared: list[tuple[str, str]] = []
    for record in results:
        cells.setdefault((record["run"], record["row"]), record)
        shared = shared or record.get("shared", [])
    out = []
    if shared:
        out += ["### php-fpm (every FastCGI-responder cell)\n", *_blocks(shared)]
    for column, runs in hosts.COLUMNS.items():
        out.append(f"### {hosts.COLUMN_TITLES[column]}\n")
        for run in runs:
            setup = next((cells[run, row].get("setup") for row in hosts.ROWS if (run, row) in cells), None)
            if setup:
                out += [f"{run}, shared by its four cells:\n", *_blocks(setup)]
            for row in hosts.ROWS:
                if (run, row) in cells:
                    out.append(f"**{hosts.ROW_TITLES[row]} on {run}**\n")
                    out += _blocks(cells[run, row].get("commands", []))
    return "\n".join(out)


def _adapters() -> str:
    from matrix_probes import ADAPTERS

    placeholders = {
        "@CGI_SCRIPT@": "'$APPS/cgi/probe.pl'",
        "@PHP_FPM@": "'unix:$RUN/php-fpm.sock'",
        "@DOCROOT@": "'$APPS/php'",
    }
    out = []
    for name, source in ADAPTERS.items():
        for placeholder, value in placeholders.items():
            source = source.replace(placeholder, value)
        out.append(f"`$APPS/{name}`:\n\n```python\n{source.rstrip()}\n```\n")
    return "\n".join(out)


def render_document(results: list[dict[str, Any]], date: str, elapsed: float) -> str:
    _, tests = _model()
    rules = "\n".join(f"- `{rule}`: {tests.RULE_TITLES[rule]}" for rule in tests.RULES)
    return f"""\
# The interface matrix, tested

Every app kind runs under every host kind (the README's matrix). `tests/matrix/` starts each
cell for real, sends every cell the same requests and checks the answers with the same rules;
this page is the table from a full run.

- Run on {date}: {len(results)} results (20 cells, 24 host runs, 7 rules) in {elapsed:.0f} s on
  a 2-core machine, with `{COMMAND}`.
- Regenerate this page with `.venv/bin/python tests/matrix/render.py` (it runs that command with
  `--matrix-docs docs/matrix.md`; more arguments go to pytest). Every run prints the same table
  at its end and writes it to the pytest tmp dir (`matrix.md`, and `matrix.json` with every result).
- Without nginx, lighttpd, php-fpm or perl, the cells that need them skip locally; under `CI=true`
  they fail (`find_binary` in tests/conftest.py).

## The table

"pass" means every rule held. "n/a" names a rule the cell cannot hold, with the reason; the
limitation itself is checked, so the note cannot go stale. **FAIL** quotes the assertion.
"ws echo": the WebSocket was accepted and echoed. "ws refused NNN": the handshake was answered
with that status and no upgrade, and the host went on serving. 403 is a server (bridges or
uvicorn) refusing on the app's behalf: the adapter closes the WebSocket before accepting it.
200 is a host with no WebSocket support (a WSGI server, nginx over FastCGI, a CGI host) passing
the request on as a plain GET, which the app answers.

{render_tables(results)}

## The rules

One probe per app kind, all answering the same routes the same way (`tests/matrix/matrix_probes.py`):
the ASGI and WSGI probes in Python, the CGI program in Perl (core modules only), the FastCGI
responder a PHP script run by php-fpm. Every cell gets every rule:

{rules}

The mount point differs by host and is part of what is checked: the app must see it as
`root_path` (ASGI) or `SCRIPT_NAME` (WSGI, CGI, PHP) and route on the rest. It is empty, except
`/probe.php` for php-fpm (its SCRIPT_NAME; the route is PATH_INFO) and `/cgi-bin/<row>.cgi` under
the CGI host (plus `/probe.php` for php-fpm).

Streaming is checked without timing: after its first 64 KiB the probe waits (10 s at most) for a
file the client creates when the first bytes reach it; if they never do, the probe writes `!`
blocks for the rest, and the client sees the buffering in the body.

## How each cell is built

Only bridges' public API and CLI. `$APPS` holds the probes and the modules below, `$RUN` the
hosts' sockets, configurations and logs (both in the pytest tmp dir), `$PYTHON` is the venv's
python; `PORT` is a free port on 127.0.0.1.

- **WSGI server column**: one column, two runs: gunicorn's sync worker (the usual production
  WSGI server) and `wsgiref.simple_server` (the stdlib reference; it has no command line that
  takes an app, hence `wsgiref_host.py`). They differ where WSGI leaves room (chunked request
  bodies), so each is tested on its own; the cell passes when both do.
- **nginx column**: nginx, with its defaults (request and response buffered), `fastcgi_pass`es
  to `bridge serve --protocol fastcgi` on a unix socket, which serves the app in its row's mode
  (`--mode cgi` for the Perl program, `--mode fastcgi` in front of php-fpm). One nginx, one
  `server` (port) per row.
- **CGI host column**: lighttpd `mod_cgi` runs `cgi-bin/<row>.cgi`. The ASGI row is a script
  calling `run_cgi(app)`, the WSGI row `bridge cgi` in a shell wrapper. A CGI program would run
  natively there, so the CGI row wraps it instead, `run_cgi(CGIToASGI(probe.pl))`, which tests
  bridges in both directions in one process; the php-fpm row is `run_cgi(FastCGIToASGI(...))`.
  lighttpd buffers a CGI program's whole response before sending any of it unless
  `server.stream-response-body` is 1 or 2; its default (0) fails the `stream` rule ("buffered"),
  so the configuration sets 1.
- One php-fpm pool serves every FastCGI-responder cell.

The adapter modules:

{_adapters()}
The wsgiref runner, `$APPS/wsgiref_host.py`: `make_server("127.0.0.1", PORT, app).serve_forever()`.

{_commands(results)}"""


def main() -> int:
    docs = ROOT / "docs" / "matrix.md"
    command = [
        sys.executable,
        "-m",
        "pytest",
        "tests/matrix",
        "-q",
        "--matrix-docs",
        str(docs),
        *sys.argv[1:],
    ]
    print(" ".join(command), flush=True)
    return subprocess.call(command, cwd=ROOT, env=os.environ.copy())


if __name__ == "__main__":
    raise SystemExit(main())
