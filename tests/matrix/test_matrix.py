"""The interface matrix, end to end: every app kind (row) under every host kind (column).

4 app kinds x 5 host kinds = 20 cells (the WSGI-server column runs twice: gunicorn's sync worker
and wsgiref). Each cell is built with bridges' public API or CLI only (matrix_hosts.py) and gets
the same rules (RULES), one test each. A rule a cell cannot hold is declared in NOT_APPLICABLE
with the reason, and the limitation itself is checked, so the declaration cannot go stale.
The session prints the table at the end (conftest.py); docs/matrix.md is that table from a full run
(`python tests/matrix/render.py` regenerates it).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from matrix_hosts import COLUMN_OF, ROWS, RUNS, STARTERS, Cell, Site, site
from matrix_probes import BLOCK, BLOCKS, STREAM_SIZE, TIMED_OUT_BLOCK
from websockets.sync.client import connect

RULES = ("echo", "status", "cookies", "unicode", "chunked", "stream", "websocket")
RULE_TITLES = {
    "echo": "POST: method, root_path, route, query, headers, body length and SHA-256",
    "status": "201, 404 and 500 from the app",
    "cookies": "two Set-Cookie headers arrive as two",
    "unicode": "non-ASCII path (percent-encoded UTF-8) decoded once",
    "chunked": "chunked upload (300 kB, no Content-Length) reaches the app whole",
    "stream": "5 MiB response, written in 64 KiB pieces, reaches the client as it is written",
    "websocket": "WebSocket: echo where the host and app both speak it, else a clean refusal",
}

# Where a WebSocket can work at all: an ASGI app on an ASGI-capable host.
WEBSOCKET_CELLS = {("built-in", "asgi"), ("uvicorn", "asgi")}

# (run, row or "*", rule) -> why the rule cannot hold there. Each one's limitation is checked.
NOT_APPLICABLE: dict[tuple[str, str, str], str] = {
    ("wsgiref", "*", "chunked"): (
        "wsgiref does not decode a chunked request body: the app gets neither CONTENT_LENGTH nor "
        "wsgi.input_terminated, so by PEP 3333 it has no body (checked: the app sees 0 bytes)"
    ),
}

CHUNKED_BODY = random.Random(6).randbytes(300_000)
ECHO_BODY = random.Random(7).randbytes(100_000)
ECHO_QUERY = "q=caf%C3%A9&x=a+b&y=1%2B1"
ECHO_HEADERS = {"X-Probe": "probe-value", "Content-Type": "text/plain; charset=utf-8", "Cookie": "k=v; k2=v2"}
UNICODE_TARGET, UNICODE_ROUTE = "/caf%C3%A9/%E2%9C%93%20x", "/café/✓ x"


def not_applicable(cell: Cell, rule: str) -> str | None:
    return NOT_APPLICABLE.get((cell.run, cell.row, rule)) or NOT_APPLICABLE.get((cell.run, "*", rule))


# ---- hosts: each started once (module scope) -----------------------------------------------------


@pytest.fixture(scope="module")
def matrix_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with site(tmp_path_factory.mktemp("matrix")) as started:
        yield started


@pytest.fixture(scope="module")
def hosts(matrix_site: Site) -> Iterator[Callable[[str], dict[str, Cell]]]:
    """`hosts(run)` starts that run's four hosts on first use; all stop when the module is done."""
    started: dict[str, dict[str, Cell]] = {}
    failed: dict[str, BaseException] = {}  # A host that did not start is not tried again.
    with contextlib.ExitStack() as stack:

        def get(run: str) -> dict[str, Cell]:
            if run in failed:
                raise failed[run]
            if run not in started:
                try:
                    started[run] = STARTERS[run](stack, matrix_site)
                except BaseException as exc:
                    failed[run] = exc
                    raise
            return started[run]

        yield get


# ---- the rules ----------------------------------------------------------------------------------


def client(cell: Cell, timeout: float = 15) -> httpx.Client:
    return httpx.Client(base_url=cell.base, timeout=timeout)


def explain(cell: Cell, response: httpx.Response) -> str:
    return f"{response.status_code} {response.content[:300]!r}\n{cell.log_tail()}"


def seen(cell: Cell, response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, explain(cell, response)
    answer: dict[str, Any] = json.loads(response.content)
    assert answer["interface"] == cell.interface, f"the wrong app answered: {answer}"
    return answer


def check_echo(cell: Cell, note: Callable[[str], None]) -> None:
    with client(cell) as http:
        response = http.post(f"/echo/a?{ECHO_QUERY}", content=ECHO_BODY, headers=ECHO_HEADERS)
    answer = seen(cell, response)
    got = {key: answer[key] for key in ("method", "root_path", "route", "path", "query")}
    expected = {
        "method": "POST",
        "root_path": cell.mount,
        "route": "/echo/a",
        "path": cell.mount + "/echo/a",
        "query": ECHO_QUERY,
    }
    wrong = [f"{key} {got[key]!r} (not {value!r})" for key, value in expected.items() if got[key] != value]
    assert not wrong, "the app saw " + ", ".join(wrong)
    headers = {
        "host": cell.url.removeprefix("http://"),
        "x-probe": "probe-value",
        "content-type": "text/plain; charset=utf-8",
        "cookie": "k=v; k2=v2",
    }
    assert answer["headers"] == headers, f"the app saw headers {answer['headers']}"
    body = (answer["body_length"], answer["body_sha256"])
    expected_body = (len(ECHO_BODY), hashlib.sha256(ECHO_BODY).hexdigest())
    assert body == expected_body, f"the app saw {body[0]} bytes of {len(ECHO_BODY)}, or other bytes"


def check_status(cell: Cell, note: Callable[[str], None]) -> None:
    with client(cell) as http:
        for status in (201, 404, 500):
            response = http.get(f"/status/{status}")
            got = (response.status_code, response.content)
            assert got == (status, b"status %d\n" % status), (
                f"asked for {status}, got {explain(cell, response)}"
            )


def check_cookies(cell: Cell, note: Callable[[str], None]) -> None:
    with client(cell) as http:
        response = http.get("/cookies")
    assert response.status_code == 200, explain(cell, response)
    cookies = [value for name, value in response.headers.raw if name.lower() == b"set-cookie"]
    assert cookies == [b"a=1; Path=/", b"b=2; Path=/; HttpOnly"], f"Set-Cookie headers: {cookies}"


def check_unicode(cell: Cell, note: Callable[[str], None]) -> None:
    with client(cell) as http:
        answer = seen(cell, http.get(f"{UNICODE_TARGET}?q=%C3%A9"))
    expected = {"method": "GET", "route": UNICODE_ROUTE, "root_path": cell.mount, "query": "q=%C3%A9"}
    wrong = [
        f"{key} {answer[key]!r} (not {value!r})" for key, value in expected.items() if answer[key] != value
    ]
    assert not wrong, "the app saw " + ", ".join(wrong)


def check_chunked(cell: Cell, note: Callable[[str], None]) -> None:
    def parts() -> Iterator[bytes]:
        for start in range(0, len(CHUNKED_BODY), 30_000):
            yield CHUNKED_BODY[start : start + 30_000]

    with client(cell) as http:
        answer = seen(cell, http.put("/upload", content=parts()))
    assert (answer["method"], answer["route"]) == ("PUT", "/upload"), answer
    body = (answer["body_length"], answer["body_sha256"])
    assert body == (len(CHUNKED_BODY), hashlib.sha256(CHUNKED_BODY).hexdigest()), (
        f"the app saw {answer['body_length']} of {len(CHUNKED_BODY)} bytes"
    )


def check_chunked_not_decoded(cell: Cell, note: Callable[[str], None]) -> None:
    """wsgiref's limitation: the app gets no body (or wsgiref drops the connection)."""
    try:
        with client(cell) as http:
            answer = seen(cell, http.put("/upload", content=iter([CHUNKED_BODY[:30_000]] * 2)))
    except httpx.TransportError as exc:  # wsgiref closed with the body unread
        note(f"connection dropped ({type(exc).__name__})")
        return
    assert answer["body_length"] == 0, "wsgiref passed a chunked body on: update NOT_APPLICABLE"


def check_stream(cell: Cell, note: Callable[[str], None], gates: Path) -> None:
    token = f"{cell.run}-{cell.row}-{uuid.uuid4().hex}"
    received = bytearray()
    with client(cell, timeout=30) as http, http.stream("GET", f"/stream?gate={token}") as response:
        assert response.status_code == 200, explain(cell, response)
        for data in response.iter_raw():
            if not received:
                (gates / token).touch()  # The first bytes are here: let the app write the rest.
            received += data
    assert len(received) == STREAM_SIZE, f"{len(received)} of {STREAM_SIZE} bytes"
    if received == BLOCK + TIMED_OUT_BLOCK * (BLOCKS - 1):
        raise AssertionError(
            "buffered: the first 64 KiB reached the client only after the app gave up waiting"
        )
    assert received == BLOCK * BLOCKS, "the body differs"


def check_websocket(cell: Cell, note: Callable[[str], None]) -> None:
    url = "ws" + cell.base.removeprefix("http") + "/ws"
    if (cell.run, cell.row) in WEBSOCKET_CELLS:
        with connect(url, open_timeout=10, close_timeout=5) as ws:
            ws.send("hello")
            assert ws.recv(timeout=10) == "echo:hello"
        note("echo")
        return
    # A refusal is any complete HTTP response but 101 (wsgiref's is HTTP/1.0, which WebSocket
    # clients will not even parse): read it off the socket.
    host, port = cell.url.removeprefix("http://").split(":")
    handshake = (
        f"GET {cell.mount}/ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(handshake.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            data = sock.recv(65536)
            assert data, f"the connection closed without a response: {head!r}"
            head += data
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    version, status = status_line.split(" ")[:2]
    assert version.startswith("HTTP/1.") and status.isdigit(), f"not an HTTP response: {status_line!r}"
    assert status != "101", "the upgrade was accepted"
    assert int(status) < 500, f"refused with {status_line!r}: not a clean refusal"
    note(f"refused {status}")
    with client(cell) as http:  # The host is still serving.
        assert http.get("/status/201").status_code == 201


CHECKS: dict[str, Callable[..., None]] = {
    "echo": check_echo,
    "status": check_status,
    "cookies": check_cookies,
    "unicode": check_unicode,
    "chunked": check_chunked,
    "stream": check_stream,
    "websocket": check_websocket,
}
LIMITATION_CHECKS: dict[str, Callable[..., None]] = {"chunked": check_chunked_not_decoded}


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("run", "row", "rule"),
    [
        pytest.param(run, row, rule, id=f"{run}-{row}-{rule}")
        for run in RUNS
        for row in ROWS
        for rule in RULES
    ],
)
def test_cell(
    run: str,
    row: str,
    rule: str,
    hosts: Callable[[str], dict[str, Cell]],
    matrix_site: Site,
    request: pytest.FixtureRequest,
) -> None:
    matrix_site.require(row)
    cell = hosts(run)[row]
    record: dict[str, Any] = {
        "column": COLUMN_OF[run],
        "commands": cell.commands,
        "setup": cell.setup,
        "shared": matrix_site.shared,
        "notes": [],
    }
    request.node.user_properties.append(("matrix", record))
    note = record["notes"].append
    reason = not_applicable(cell, rule)
    extra = {"gates": matrix_site.gates} if rule == "stream" else {}
    if reason is not None:
        record["not_applicable"] = reason
        LIMITATION_CHECKS[rule](cell, note, **extra)
        return
    CHECKS[rule](cell, note, **extra)
    for process in cell.processes:
        assert process.poll() is None, f"{process.args!r} exited\n{cell.log_tail()}"
