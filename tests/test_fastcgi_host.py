"""`bridge serve --protocol fastcgi`: the FastCGI host over real sockets, driven by our own codec.

The real web servers (nginx, Apache, lighttpd) in front of it are in test_fastcgi_real_hosts.py;
here each protocol rule is checked precisely, byte for byte where it matters.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

import pytest
from server_helpers import port_of, running_server

from bridges.cgi_response import NEED_DATA as CGI_NEED_DATA
from bridges.cgi_response import BodyData, CGIResponseParser, ResponseHead
from bridges.fastcgi_protocol import (
    CONNECTION_CLOSED,
    NEED_DATA,
    AbortRequest,
    BeginRequest,
    EndRequest,
    FastCGIConnection,
    GetValues,
    GetValuesResult,
    Params,
    ProtocolStatus,
    Role,
    Stdin,
    Stdout,
    UnknownType,
)

pytestmark = pytest.mark.timeout(30)


def nginx_params(uri: str = "/x?a=1", method: str = "GET", **extra: str) -> dict[bytes, bytes]:
    """PARAMS as nginx's fastcgi_params sends them (SCRIPT_NAME is the whole URI)."""
    path, _, query = uri.partition("?")
    params = {
        "QUERY_STRING": query,
        "REQUEST_METHOD": method,
        "CONTENT_TYPE": "",
        "CONTENT_LENGTH": "",
        "SCRIPT_NAME": path,
        "REQUEST_URI": uri,
        "DOCUMENT_URI": path,
        "DOCUMENT_ROOT": "/srv",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REQUEST_SCHEME": "http",
        "GATEWAY_INTERFACE": "CGI/1.1",
        "SERVER_SOFTWARE": "nginx/1.22.1",
        "REMOTE_ADDR": "192.0.2.7",
        "REMOTE_PORT": "40000",
        "SERVER_ADDR": "127.0.0.1",
        "SERVER_PORT": "8080",
        "SERVER_NAME": "example.test",
        "HTTP_HOST": "example.test:8080",
        **extra,
    }
    return {name.encode(): value.encode() for name, value in params.items()}


class Client:
    """A FastCGI 'web server' end over a real socket."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.fcgi = FastCGIConnection("webserver")
        self.closed = False

    def send(self, *events: Any) -> None:
        self.sock.sendall(b"".join(self.fcgi.send(event) for event in events))

    def events_until(self, done: Any) -> list[Any]:
        events: list[Any] = []
        while True:
            event = self.fcgi.next_event()
            if event is NEED_DATA:
                data = self.sock.recv(65536)
                self.fcgi.receive_data(data)
                if not data:
                    self.closed = True
                continue
            if event is CONNECTION_CLOSED:
                return events
            events.append(event)
            if done(event):
                return events

    def request(
        self, request_id: int, params: dict[bytes, bytes], body: bytes = b"", keep: bool = True
    ) -> tuple[ResponseHead, bytes, EndRequest]:
        self.send(
            BeginRequest(request_id, Role.RESPONDER, keep),
            Params(request_id, params),
            Stdin(request_id, body, end=True),
        )
        events = self.events_until(lambda e: isinstance(e, EndRequest) and e.request_id == request_id)
        stdout = b"".join(e.data for e in events if isinstance(e, Stdout) and e.request_id == request_id)
        end = events[-1]
        assert isinstance(end, EndRequest)
        return (*parse_cgi(stdout), end)

    def is_closed_by_peer(self) -> bool:
        self.sock.settimeout(2)
        try:
            return self.sock.recv(1) == b""
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()


def parse_cgi(stdout: bytes) -> tuple[ResponseHead, bytes]:
    parser = CGIResponseParser()
    parser.receive_data(stdout)
    parser.receive_data(b"")
    head = parser.next_event()
    assert isinstance(head, ResponseHead)
    body = b""
    while (event := parser.next_event()) is not CGI_NEED_DATA:
        if isinstance(event, BodyData):
            body += event.data
    return head, body


async def probe(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    headers = dict(scope["headers"])
    text = (
        f"{scope['method']}|{scope['root_path']}|{scope['path']}|{scope['query_string'].decode()}|"
        f"{scope['raw_path'].decode()}|{scope['client']}|{scope['scheme']}|{len(body)}|"
        f"{headers.get(b'host', b'').decode()}|{b'proxy' in headers}|{b'transfer-encoding' in headers}"
    )
    if scope["path"].endswith("/big"):
        chunk = b"z" * 100_000
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(10):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    if scope["path"].endswith("/boom"):
        raise RuntimeError("probe failure")
    await send(
        {
            "type": "http.response.start",
            "status": 201,
            "headers": [(b"content-type", b"text/plain"), (b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")],
        }
    )
    await send({"type": "http.response.body", "body": text.encode()})


@pytest.fixture
def host() -> Any:
    with running_server(probe, protocol="fastcgi", lifespan="off") as server:
        yield port_of(server)


def test_request_through_nginx_style_params(host: int) -> None:
    client = Client(host)
    params = nginx_params("/a%20b/c?x=1&y=%C3%A9", "POST", CONTENT_LENGTH="5", HTTP_PROXY="http://evil/")
    head, body, end = client.request(1, params, b"hello")
    assert head.status == 201
    assert head.headers == [
        (b"content-type", b"text/plain"),
        (b"set-cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
    ]
    assert body.decode() == (
        "POST||/a b/c|x=1&y=%C3%A9|/a%20b/c|('192.0.2.7', 40000)|http|5|example.test:8080|False|False"
    )
    assert end == EndRequest(1, 0, ProtocolStatus.REQUEST_COMPLETE)
    client.close()


def test_keep_conn_serves_several_requests_and_plain_closes(host: int) -> None:
    client = Client(host)
    for request_id in (1, 2, 3):
        head, body, _ = client.request(request_id, nginx_params(f"/n{request_id}"))
        assert body.split(b"|")[2] == f"/n{request_id}".encode()
    assert not client.is_closed_by_peer()
    client.close()
    once = Client(host)
    once.request(7, nginx_params("/once"), keep=False)
    assert once.is_closed_by_peer(), "without FCGI_KEEP_CONN the application closes the connection"
    once.close()


def test_streamed_chunked_upload_has_no_length_and_no_transfer_encoding(host: int) -> None:
    client = Client(host)
    params = nginx_params("/up", "POST", HTTP_TRANSFER_ENCODING="chunked")
    client.send(BeginRequest(1, Role.RESPONDER, True), Params(1, params))
    for _ in range(20):
        client.send(Stdin(1, b"q" * 10_000))
    client.send(Stdin(1, b"", end=True))
    events = client.events_until(lambda e: isinstance(e, EndRequest))
    head, body = parse_cgi(b"".join(e.data for e in events if isinstance(e, Stdout)))
    fields = body.decode().split("|")
    assert fields[7] == "200000" and fields[10] == "False"
    client.close()


def test_large_response_is_split_into_records(host: int) -> None:
    client = Client(host)
    client.send(BeginRequest(1, Role.RESPONDER, True), Params(1, nginx_params("/big")), Stdin(1, end=True))
    events = client.events_until(lambda e: isinstance(e, EndRequest))
    records = [e for e in events if isinstance(e, Stdout) and e.data]
    assert all(len(e.data) <= 65535 for e in records) and len(records) >= 16
    head, body = parse_cgi(b"".join(e.data for e in records))
    assert head.status == 200 and body == b"z" * 1_000_000
    client.close()


def test_app_error_before_start_is_a_500_with_app_status(host: int) -> None:
    client = Client(host)
    head, body, end = client.request(1, nginx_params("/boom"))
    assert head.status == 500 and end.app_status == 1
    client.close()


def test_get_values_is_answered_honestly(host: int) -> None:
    client = Client(host)
    client.send(GetValues((b"FCGI_MPXS_CONNS", b"FCGI_MAX_REQS", b"FCGI_MAX_CONNS", b"NO_SUCH_NAME")))
    (result,) = client.events_until(lambda e: isinstance(e, GetValuesResult))
    assert result.values[b"FCGI_MPXS_CONNS"] == b"0"
    assert int(result.values[b"FCGI_MAX_REQS"]) > 0 and int(result.values[b"FCGI_MAX_CONNS"]) > 0
    assert b"NO_SUCH_NAME" not in result.values
    client.close()


def test_unknown_record_type_gets_unknown_type(host: int) -> None:
    client = Client(host)
    client.sock.sendall(bytes([1, 42, 0, 0, 0, 0, 0, 0]))
    (answer,) = client.events_until(lambda e: isinstance(e, UnknownType))
    assert answer.record_type == 42
    head, _, _ = client.request(1, nginx_params("/still-fine"))
    assert head.status == 201
    client.close()


def test_second_request_without_multiplexing_is_refused(host: int) -> None:
    client = Client(host)
    client.send(BeginRequest(1, Role.RESPONDER, True), BeginRequest(2, Role.RESPONDER, True))
    (refusal,) = client.events_until(lambda e: isinstance(e, EndRequest))
    assert refusal == EndRequest(2, 0, ProtocolStatus.CANT_MPX_CONN)
    client.close()


def test_multiplexing_when_enabled() -> None:
    with running_server(probe, protocol="fastcgi", lifespan="off", fastcgi_multiplex=True) as server:
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
            assert parse_cgi(stdout)[1].split(b"|")[2] == path
        client.close()


def test_abort_request_reaches_the_app_as_disconnect() -> None:
    seen: list[Any] = []
    done = threading.Event()

    async def waiting_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        seen.append(await receive())
        try:
            await asyncio.sleep(0.05)
            await send({"type": "http.response.body", "body": b"more", "more_body": True})
        except OSError as exc:
            seen.append(exc)
        done.set()

    with running_server(waiting_app, protocol="fastcgi", lifespan="off") as server:
        client = Client(port_of(server))
        client.send(BeginRequest(1, Role.RESPONDER, True), Params(1, nginx_params("/")), Stdin(1, end=True))
        client.events_until(lambda e: isinstance(e, Stdout) and e.data)
        client.send(AbortRequest(1))
        (end,) = [
            e for e in client.events_until(lambda e: isinstance(e, EndRequest)) if isinstance(e, EndRequest)
        ]
        assert done.wait(5)
        assert seen[0] == {"type": "http.disconnect"} and isinstance(seen[1], OSError)
        assert end.request_id == 1
        client.close()


def test_wsgi_app_over_fastcgi_with_root_path() -> None:
    def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"{environ['SCRIPT_NAME']}|{environ['PATH_INFO']}".encode()]

    with running_server(wsgi_app, protocol="fastcgi", root_path="/mount") as server:
        client = Client(port_of(server))
        head, body, _ = client.request(1, nginx_params("/mount/page"))
        assert (head.status, body) == (200, b"/mount|/page")
        client.close()


def test_shutdown_closes_idle_keep_alive_connections_promptly() -> None:
    """flup hangs on SIGTERM while a web server keeps a connection open; we close it and stop."""
    import time

    with running_server(probe, protocol="fastcgi", lifespan="off", timeout_graceful_shutdown=30) as server:
        client = Client(port_of(server))
        client.request(1, nginx_params("/before-shutdown"))
        start = time.monotonic()
        server.request_exit()
        assert client.is_closed_by_peer(), "the idle keep-alive connection must be closed"
        closed_after = time.monotonic() - start
        client.close()
    assert closed_after < 2.0, f"took {closed_after:.1f}s (the graceful timeout is 30s)"


def test_shutdown_lets_a_request_in_progress_finish() -> None:
    release = threading.Event()

    async def slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await asyncio.get_running_loop().run_in_executor(None, release.wait, 10)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"finished"})

    with running_server(slow, protocol="fastcgi", lifespan="off") as server:
        client = Client(port_of(server))
        client.send(BeginRequest(1, Role.RESPONDER, True), Params(1, nginx_params("/")), Stdin(1, end=True))
        server.request_exit()
        release.set()
        events = client.events_until(lambda e: isinstance(e, EndRequest))
        assert parse_cgi(b"".join(e.data for e in events if isinstance(e, Stdout)))[1] == b"finished"
        assert client.is_closed_by_peer()
        client.close()
