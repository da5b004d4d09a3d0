"""WSGI apps over FastCGI: the direct path (a thread per connection) against the path through
WSGIToASGI (`--fastcgi-wsgi asgi`), byte for byte, and the direct path's own rules: kept and
closed connections, streamed bodies, errors, aborts, many connections, shutdown, no leaked threads.
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from server_helpers import port_of, running_server
from test_fastcgi_host import Client, nginx_params, parse_cgi

from bridges.fastcgi_protocol import (
    AbortRequest,
    BeginRequest,
    EndRequest,
    GetValues,
    GetValuesResult,
    Params,
    ProtocolStatus,
    Role,
    Stdin,
    Stdout,
    UnknownType,
)

pytestmark = pytest.mark.timeout(60)

PATHS = ["auto", "direct", "asgi"]
closed_results: list[str] = []


class _Closing:
    """A response iterable with close(), as PEP 3333 requires servers to call."""

    def __init__(self, chunks: list[bytes], name: str) -> None:
        self.chunks = chunks
        self.name = name

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.chunks)

    def close(self) -> None:
        closed_results.append(self.name)


def probe(environ: dict[str, Any], start_response: Any) -> Any:
    path = environ["PATH_INFO"]
    if path.endswith("/boom"):
        raise RuntimeError("probe failure before start_response")
    if path.endswith("/oserror"):
        open("/nonexistent/bridges-test-file")  # noqa: SIM115  # An app's OSError is a 500, not a lost connection.
    if path.endswith("/boom-late"):
        start_response("200 OK", [("Content-Type", "text/plain")])

        def late() -> Iterator[bytes]:
            yield b"x" * 100_000
            raise RuntimeError("probe failure mid-response")

        return late()
    if path.endswith("/big"):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return (bytes([65 + i]) * 100_000 for i in range(10))
    if path.endswith("/cl"):
        start_response("200 OK", [("Content-Length", "5")])
        return [b"12345", b"67890"]
    if path.endswith("/write"):
        write = start_response("202 Accepted", [("X-Write", "yes")])
        write(b"written-")
        return [b"returned"]
    if path.endswith("/bare-status"):
        start_response("204", [])
        return []
    # Read the body in a mix of ways: readline, fixed sizes, then the rest.
    stream = environ["wsgi.input"]
    first_line = stream.readline()
    rest = [first_line]
    while chunk := stream.read(7_777):
        rest.append(chunk)
    body = b"".join(rest)
    keys = sorted(k for k in environ if k.isupper() or k.startswith("wsgi.url"))
    listing = "\n".join(f"{k}={environ[k]}" for k in keys)
    text = f"{listing}\nbody={len(body)}:{hashlib.sha256(body).hexdigest()}\nfirst={len(first_line)}"
    headers = [("Content-Type", "text/plain"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]
    start_response("201 Created", headers)
    return _Closing([text.encode()], path)


def serve(path: str, **options: Any) -> Any:
    options.setdefault("lifespan", "off")
    return running_server(probe, protocol="fastcgi", mode="wsgi", fastcgi_wsgi=path, **options)


def exchange(port: int, params: dict[bytes, bytes], body: bytes = b"", keep: bool = True) -> Any:
    client = Client(port)
    try:
        return client.request(1, params, body, keep)
    finally:
        client.close()


PARAM_CASES = {
    "nginx GET": nginx_params("/a%20b/c?x=1&y=%C3%A9"),
    "nginx POST": nginx_params("/form", "POST", CONTENT_LENGTH="11", CONTENT_TYPE="text/plain"),
    "chunked upload": nginx_params("/up", "POST", HTTP_TRANSFER_ENCODING="chunked"),
    "httpoxy": nginx_params("/p", HTTP_PROXY="http://evil.example/"),
    "lighttpd mount": {
        **nginx_params("/app/page/x"),
        b"SCRIPT_NAME": b"/app",
        b"PATH_INFO": b"/page/x",
        b"REQUEST_URI": b"/app/page/x",
    },
    "apache proxy": {
        **nginx_params("/site/a"),
        b"SCRIPT_FILENAME": b"proxy:fcgi://127.0.0.1:9000/srv/site/a",
        b"SCRIPT_NAME": b"/site",
        b"PATH_INFO": b"/a",
    },
    "no server name": {**nginx_params("/n"), b"SERVER_NAME": b""},
}


@pytest.mark.parametrize("case", sorted(PARAM_CASES))
def test_direct_path_answers_exactly_as_the_asgi_path(case: str) -> None:
    posting = PARAM_CASES[case][b"REQUEST_METHOD"] == b"POST"
    body = b"first line\n" + bytes(range(256)) * 40 if posting else b""
    params = dict(PARAM_CASES[case])
    if params.get(b"CONTENT_LENGTH") == b"11":
        params[b"CONTENT_LENGTH"] = str(len(body)).encode()
    answers = {}
    for path in PATHS:
        with serve(path) as server:
            head, out, end = exchange(port_of(server), params, body)
        answers[path] = (head.status, head.headers, out, end)
    assert answers["direct"] == answers["asgi"] == answers["auto"]
    status, headers, out, end = answers["direct"]
    assert status == 201 and end == EndRequest(1, 0, ProtocolStatus.REQUEST_COMPLETE)
    assert (b"set-cookie", b"a=1") in headers and (b"set-cookie", b"b=2") in headers
    assert b"HTTP_PROXY" not in out and b"HTTP_TRANSFER_ENCODING" not in out
    assert f"body={len(body)}:{hashlib.sha256(body).hexdigest()}".encode() in out


@pytest.mark.parametrize("route", ["/big", "/cl", "/write", "/bare-status", "/boom", "/oserror"])
def test_responses_match_between_the_paths(route: str) -> None:
    answers = {}
    statuses = {}
    for path in PATHS:
        with serve(path) as server:
            head, out, end = exchange(port_of(server), nginx_params(route))
        answers[path] = (head.status, head.headers, out)
        statuses[path] = end.app_status
    assert answers["direct"] == answers["asgi"] == answers["auto"]
    expected = {"/big": 200, "/cl": 200, "/write": 202, "/bare-status": 204, "/boom": 500, "/oserror": 500}[
        route
    ]
    assert answers["direct"][0] == expected
    if route == "/cl":
        assert answers["direct"][2] == b"12345"  # Nothing past Content-Length.
    if route == "/big":
        assert answers["direct"][2] == b"".join(bytes([65 + i]) * 100_000 for i in range(10))
    # The direct path reports an app failure in END_REQUEST's appStatus too (WSGIToASGI cannot).
    assert statuses["direct"] == (1 if route in ("/boom", "/oserror") else 0)


@pytest.mark.parametrize("path", ["auto", "direct"])
def test_kept_connection_serves_requests_in_turn_and_a_plain_one_closes(path: str) -> None:
    with serve(path) as server:
        port = port_of(server)
        client = Client(port)
        for request_id in (1, 2, 3):
            head, out, _ = client.request(request_id, nginx_params(f"/n{request_id}"))
            assert f"PATH_INFO=/n{request_id}\n".encode() in out
        assert not client.is_closed_by_peer()
        client.close()
        once = Client(port)
        once.request(7, nginx_params("/once"), keep=False)
        assert once.is_closed_by_peer(), "without FCGI_KEEP_CONN the application closes the connection"
        once.close()


def test_streamed_upload_of_5_mb_in_small_records() -> None:
    payload = bytes(range(256)) * 20_480  # 5 MiB
    with serve("direct") as server:
        client = Client(port_of(server))
        params = nginx_params("/up", "POST", CONTENT_LENGTH=str(len(payload)))
        client.send(BeginRequest(1, Role.RESPONDER, True), Params(1, params))
        for start in range(0, len(payload), 30_000):
            client.send(Stdin(1, payload[start : start + 30_000]))
        client.send(Stdin(1, b"", end=True))
        events = client.events_until(lambda e: isinstance(e, EndRequest))
        _, out = parse_cgi(b"".join(e.data for e in events if isinstance(e, Stdout)))
        assert f"body={len(payload)}:{hashlib.sha256(payload).hexdigest()}".encode() in out
        client.close()


def test_error_after_output_cuts_the_connection() -> None:
    with serve("direct") as server:
        client = Client(port_of(server))
        params = nginx_params("/boom-late")
        client.send(BeginRequest(1, Role.RESPONDER, True), Params(1, params), Stdin(1, end=True))
        events = client.events_until(lambda e: isinstance(e, EndRequest))
        assert client.closed and not any(isinstance(e, EndRequest) for e in events)
        client.close()
        # The server goes on serving.
        head, _, _ = exchange(port_of(server), nginx_params("/after"))
        assert head.status == 201


def test_close_is_called_on_the_response() -> None:
    closed_results.clear()
    with serve("direct") as server:
        exchange(port_of(server), nginx_params("/closing"))
    assert closed_results == ["/closing"]


def test_management_records() -> None:
    with serve("direct") as server:
        client = Client(port_of(server))
        client.send(GetValues((b"FCGI_MPXS_CONNS", b"FCGI_MAX_CONNS", b"FCGI_MAX_REQS", b"OTHER")))
        (result,) = client.events_until(lambda e: isinstance(e, GetValuesResult))
        assert result.values[b"FCGI_MPXS_CONNS"] == b"0"
        assert int(result.values[b"FCGI_MAX_CONNS"]) > 0 and b"OTHER" not in result.values
        client.sock.sendall(bytes([1, 42, 0, 0, 0, 0, 0, 0]))
        (answer,) = client.events_until(lambda e: isinstance(e, UnknownType))
        assert answer.record_type == 42
        head, _, _ = client.request(1, nginx_params("/still-fine"))
        assert head.status == 201
        client.close()


def test_abort_while_the_app_reads_its_body_closes_the_connection() -> None:
    with serve("direct") as server:
        client = Client(port_of(server))
        params = nginx_params("/up", "POST", CONTENT_LENGTH="1000000")
        client.send(BeginRequest(1, Role.RESPONDER, True), Params(1, params), Stdin(1, b"a" * 1000))
        time.sleep(0.2)
        client.send(AbortRequest(1))
        assert client.is_closed_by_peer()
        client.close()
        head, _, _ = exchange(port_of(server), nginx_params("/after-abort"))
        assert head.status == 201


def test_a_protocol_violation_closes_only_that_connection() -> None:
    with serve("direct") as server:
        bad = socket.create_connection(("127.0.0.1", port_of(server)), timeout=5)
        bad.sendall(bytes([9, 1, 0, 1, 0, 8, 0, 0]) + b"\0" * 8)  # FastCGI version 9.
        assert bad.recv(100) == b""
        bad.close()
        head, _, _ = exchange(port_of(server), nginx_params("/fine"))
        assert head.status == 201


def bridges_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "bridges-fastcgi"]


@pytest.mark.parametrize("path", ["auto", "direct"])
def test_many_kept_connections_are_all_served_and_no_thread_is_left_after_stop(path: str) -> None:
    """nginx's keepalive cache holds connections idle: none may wait behind busy threads.
    "direct" gives each its own thread; "auto" hands each to the event loop."""
    with serve(path) as server:
        port = port_of(server)
        clients = [Client(port) for _ in range(100)]
        for number, client in enumerate(clients):  # Each stays open and idle after its request.
            head, out, _ = client.request(1, nginx_params(f"/c{number}"))
            assert head.status == 201 and f"PATH_INFO=/c{number}\n".encode() in out
        for number, client in enumerate(clients):  # Then each is used again.
            head, _, _ = client.request(2, nginx_params(f"/again{number}"))
            assert head.status == 201
        if path == "direct":
            assert len(bridges_threads()) >= 100
        else:
            assert len(bridges_threads()) <= 20, "kept connections must not hold direct threads"
        for client in clients:
            client.close()
    deadline = time.monotonic() + 10
    while bridges_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert bridges_threads() == []


@pytest.mark.parametrize("path", ["auto", "direct"])
def test_shutdown_closes_idle_connections_and_finishes_running_requests(path: str) -> None:
    release = threading.Event()
    started = threading.Event()

    def slow(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ["PATH_INFO"] == "/slow":
            started.set()
            release.wait(10)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"finished"]

    with running_server(
        slow, protocol="fastcgi", mode="wsgi", lifespan="off", timeout_graceful_shutdown=30, fastcgi_wsgi=path
    ) as server:
        port = port_of(server)
        idle = Client(port)
        idle.request(1, nginx_params("/quick"))
        busy = Client(port)
        busy.send(BeginRequest(1, Role.RESPONDER, True), Params(1, nginx_params("/slow")), Stdin(1, end=True))
        assert started.wait(5)
        begun = time.monotonic()
        server.request_exit()
        assert idle.is_closed_by_peer(), "the idle kept connection must be closed at once"
        assert time.monotonic() - begun < 3
        release.set()
        events = busy.events_until(lambda e: isinstance(e, EndRequest))
        assert parse_cgi(b"".join(e.data for e in events if isinstance(e, Stdout)))[1] == b"finished"
        assert busy.is_closed_by_peer()
        idle.close()
        busy.close()
    assert bridges_threads() == []


def test_multiplexing_takes_the_asgi_path() -> None:
    options = {"protocol": "fastcgi", "mode": "wsgi", "lifespan": "off", "fastcgi_multiplex": True}
    with running_server(probe, **options) as server:
        client = Client(port_of(server))
        client.send(
            BeginRequest(1, Role.RESPONDER, True),
            BeginRequest(2, Role.RESPONDER, True),
            Params(2, nginx_params("/two")),
            Params(1, nginx_params("/one")),
            Stdin(2, end=True),
            Stdin(1, end=True),
        )
        events = client.events_until(lambda e: isinstance(e, EndRequest) and len(client.fcgi.requests) == 0)
        for request_id, path in ((1, b"/one"), (2, b"/two")):
            stdout = b"".join(e.data for e in events if isinstance(e, Stdout) and e.request_id == request_id)
            assert b"PATH_INFO=" + path + b"\n" in parse_cgi(stdout)[1]
        client.close()
        assert bridges_threads() == []


def test_auto_serves_one_request_connections_on_threads_and_kept_ones_on_the_loop() -> None:
    seen: list[str] = []

    def where(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append(threading.current_thread().name)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    with running_server(where, protocol="fastcgi", mode="wsgi", lifespan="off") as server:
        port = port_of(server)
        exchange(port, nginx_params("/once"), keep=False)
        kept = Client(port)
        for request_id in (1, 2):
            head, body, _ = kept.request(request_id, nginx_params(f"/kept{request_id}"))
            assert (head.status, body) == (200, b"ok")
        kept.close()
    assert seen[0] == "bridges-fastcgi"  # The accepting thread ran it.
    assert seen[1:] and all(name.startswith("bridges-wsgi") for name in seen[1:]), seen  # WSGIToASGI's pool.


def test_a_kept_connection_sending_get_values_first_stays_on_its_thread() -> None:
    with serve("auto") as server:
        client = Client(port_of(server))
        client.send(GetValues((b"FCGI_MPXS_CONNS",)))
        (result,) = client.events_until(lambda e: isinstance(e, GetValuesResult))
        assert result.values == {b"FCGI_MPXS_CONNS": b"0"}
        for request_id in (1, 2):
            head, _, _ = client.request(request_id, nginx_params("/after-values"))
            assert head.status == 201
        client.close()
