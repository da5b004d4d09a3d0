"""The built-in server over real sockets: HTTP/1.1 behaviour, timeouts, limits, lifespan, shutdown."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import httpx
import pytest
from server_helpers import port_of, raw_request, read_until_close, running_server, status_of, statuses

pytestmark = pytest.mark.timeout(30)

PARSERS = ["httptools", "h11"]


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    text = f"{scope['method']} {scope['path']} {scope['query_string'].decode()} {len(body)}"
    payload = text.encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(payload)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": payload})


async def streaming_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    for i in range(3):
        await send({"type": "http.response.body", "body": f"chunk{i};".encode(), "more_body": True})
    await send({"type": "http.response.body", "body": b""})


def hello_wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "12")])
    return [b"Hello, world"]


@pytest.mark.parametrize("http", PARSERS)
def test_get_post_and_chunked_upload(http: str) -> None:
    with running_server(echo_app, http=http) as server:
        base = f"http://127.0.0.1:{port_of(server)}"
        with httpx.Client(base_url=base, timeout=5) as client:
            assert client.get("/a%20b?x=1").text == "GET /a b x=1 0"
            assert client.post("/p", content=b"x" * 100_000).text == "POST /p  100000"

            def chunks() -> Any:
                yield b"abc"
                yield b"defg"

            assert client.post("/c", content=chunks()).text == "POST /c  7"


@pytest.mark.parametrize("http", PARSERS)
def test_keep_alive_and_pipelining_keep_order(http: str) -> None:
    with running_server(echo_app, http=http) as server:
        requests = (
            b"".join(f"GET /{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for i in range(5))
            + b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        response = raw_request(port_of(server), requests)
        assert statuses(response) == [200] * 6
        bodies = [part.split(b"\r\n\r\n", 1)[1][:20] for part in response.split(b"HTTP/1.1 ")[1:]]
        assert [b.split(b" ")[1] for b in bodies] == [b"/0", b"/1", b"/2", b"/3", b"/4", b"/last"]
        assert b"connection: close" in response.rsplit(b"HTTP/1.1 ", 1)[1]


@pytest.mark.parametrize("http", PARSERS)
def test_chunked_response_when_no_content_length(http: str) -> None:
    with running_server(streaming_app, http=http) as server:
        response = raw_request(port_of(server), b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        head, body = response.split(b"\r\n\r\n", 1)
        assert b"transfer-encoding: chunked" in head
        assert body == b"7\r\nchunk0;\r\n7\r\nchunk1;\r\n7\r\nchunk2;\r\n0\r\n\r\n"


def test_http10_without_length_closes_to_end_the_body() -> None:
    with running_server(streaming_app) as server:
        response = raw_request(port_of(server), b"GET / HTTP/1.0\r\n\r\n")
        head, body = response.split(b"\r\n\r\n", 1)
        assert b"transfer-encoding" not in head and b"connection: close" in head
        assert body == b"chunk0;chunk1;chunk2;"


def test_head_and_204_have_no_body() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        status = 204 if scope["path"] == "/empty" else 200
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"should not be sent"})

    with running_server(app) as server:
        port = port_of(server)
        head = raw_request(port, b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert head.endswith(b"\r\n\r\n") and status_of(head) == 200
        empty = raw_request(port, b"GET /empty HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert empty.endswith(b"\r\n\r\n") and status_of(empty) == 204
        assert b"transfer-encoding" not in empty


def test_date_and_server_headers() -> None:
    with running_server(echo_app) as server:
        response = httpx.get(f"http://127.0.0.1:{port_of(server)}/", timeout=5)
        assert response.headers["server"] == "bridges"
        assert response.headers["date"].endswith(" GMT")


def test_expect_100_continue_only_when_the_app_reads() -> None:
    async def refusing(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 413, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    with running_server(refusing) as server:
        with socket.create_connection(("127.0.0.1", port_of(server)), timeout=3) as sock:
            sock.sendall(head)
            first = sock.recv(65536)
        assert status_of(first) == 413 and b"100 Continue" not in first
    with running_server(echo_app) as server:
        with socket.create_connection(("127.0.0.1", port_of(server)), timeout=3) as sock:
            sock.sendall(head)
            interim = sock.recv(65536)
            assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
            sock.sendall(b"hello")
            final = sock.recv(65536)
        assert status_of(final) == 200 and final.endswith(b"POST /  5")


def test_app_exception_before_start_is_500_and_after_start_closes() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/late":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise RuntimeError("boom")

    with running_server(app) as server:
        port = port_of(server)
        early = raw_request(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status_of(early) == 500 and b"connection: close" in early
        late = raw_request(port, b"GET /late HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status_of(late) == 200
        assert not late.endswith(b"0\r\n\r\n"), "a failed response must be cut, not completed"


def test_disconnect_reaches_the_app_and_send_raises_oserror() -> None:
    seen: list[Any] = []
    done = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        seen.append(await receive())
        try:
            await asyncio.sleep(0.05)
            await send({"type": "http.response.body", "body": b"more", "more_body": True})
        except OSError as exc:
            seen.append(exc)
        done.set()

    with running_server(app) as server:
        with socket.create_connection(("127.0.0.1", port_of(server)), timeout=3) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            sock.recv(65536)
        assert done.wait(5)
    assert seen[0] == {"type": "http.disconnect"}
    assert isinstance(seen[1], OSError)


def test_header_read_timeout_closes_idle_and_trickling_clients() -> None:
    with running_server(echo_app, timeout_header_read=0.5) as server:
        port = port_of(server)
        start = time.monotonic()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as idle:
            assert read_until_close(idle, 5) == b""
        assert time.monotonic() - start < 3
        with socket.create_connection(("127.0.0.1", port), timeout=5) as trickler:
            start = time.monotonic()
            got = b""
            for byte in b"GET / HTTP/1.1\r\nHost: x\r\n":
                try:
                    trickler.sendall(bytes([byte]))
                except OSError:
                    break
                time.sleep(0.05)
                if time.monotonic() - start > 3:
                    break
            got = read_until_close(trickler, 3)
        assert status_of(got) == 408
        assert time.monotonic() - start < 4


def test_keep_alive_timeout_closes_an_idle_connection() -> None:
    with running_server(echo_app, timeout_keep_alive=0.3) as server:
        with socket.create_connection(("127.0.0.1", port_of(server)), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            start = time.monotonic()
            data = read_until_close(sock, 5)
            assert status_of(data) == 200
            assert time.monotonic() - start < 2


def test_body_limit_413_before_continue() -> None:
    with running_server(echo_app, max_body_bytes=10) as server:
        port = port_of(server)
        declared = raw_request(
            port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n"
        )
        assert status_of(declared) == 413 and b"100 Continue" not in declared
        chunked = raw_request(
            port,
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"6\r\nabcdef\r\n6\r\nghijkl\r\n0\r\n\r\n",
        )
        assert status_of(chunked) == 413


def test_limits_in_a_single_read() -> None:
    with running_server(echo_app, max_request_line_bytes=100, max_header_count=5) as server:
        port = port_of(server)
        long_line = b"GET /" + b"a" * 200 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        assert status_of(raw_request(port, long_line)) == 414
        many = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(10)) + b"\r\n"
        assert status_of(raw_request(port, many)) == 431


def test_limit_concurrency_answers_503() -> None:
    release = threading.Event()

    async def slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await asyncio.get_running_loop().run_in_executor(None, release.wait, 5)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    with running_server(slow, limit_concurrency=1) as server:
        port = port_of(server)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as first:
            first.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(0.2)
            second = raw_request(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert status_of(second) == 503
            release.set()
            assert status_of(first.recv(65536)) == 200


def test_lifespan_state_reaches_requests() -> None:
    events: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    scope["state"]["greeting"] = "hi"
                    events.append("startup")
                    await send({"type": "lifespan.startup.complete"})
                else:
                    events.append("shutdown")
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = scope["state"]["greeting"].encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    with running_server(app) as server:
        assert httpx.get(f"http://127.0.0.1:{port_of(server)}/", timeout=5).text == "hi"
        assert events == ["startup"]
    assert events == ["startup", "shutdown"]


def test_graceful_shutdown_lets_in_flight_requests_finish() -> None:
    started = threading.Event()

    async def slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        started.set()
        await asyncio.sleep(0.5)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
        await send({"type": "http.response.body", "body": b"done"})

    result: list[bytes] = []
    with running_server(slow, lifespan="off") as server:
        port = port_of(server)

        def client() -> None:
            result.append(raw_request(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", timeout=5))

        thread = threading.Thread(target=client)
        thread.start()
        assert started.wait(5)
        server.request_exit()
        thread.join(5)
        time.sleep(0.2)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
    assert result and result[0].endswith(b"done") and status_of(result[0]) == 200


def test_wsgi_mode_serves_a_wsgi_app() -> None:
    with running_server(hello_wsgi, mode="wsgi") as server:
        response = httpx.get(f"http://127.0.0.1:{port_of(server)}/", timeout=5)
        assert response.text == "Hello, world"


def test_auto_mode_detects_wsgi_and_asgi() -> None:
    for app, expected in ((hello_wsgi, "Hello, world"), (echo_app, "GET /  0")):
        with running_server(app) as server:
            assert httpx.get(f"http://127.0.0.1:{port_of(server)}/", timeout=5).text == expected


def test_root_path_is_prefixed_to_path() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = f"{scope['root_path']}|{scope['path']}".encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    with running_server(app, root_path="/mnt", lifespan="off") as server:
        assert httpx.get(f"http://127.0.0.1:{port_of(server)}/x", timeout=5).text == "/mnt|/mnt/x"


def test_proxy_headers_only_from_trusted_peers() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = f"{scope['client'][0]} {scope['scheme']}".encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    headers = {"X-Forwarded-For": "203.0.113.9, 127.0.0.1", "X-Forwarded-Proto": "https"}
    with running_server(app, proxy_headers=True, lifespan="off") as server:
        url = f"http://127.0.0.1:{port_of(server)}/"
        assert httpx.get(url, headers=headers, timeout=5).text == "203.0.113.9 https"
        forwarded = {"Forwarded": 'for="[2001:db8::1]:4711";proto=https'}
        assert httpx.get(url, headers=forwarded, timeout=5).text == "2001:db8::1 https"
    with running_server(app, proxy_headers=True, forwarded_allow_ips="10.0.0.1", lifespan="off") as server:
        url = f"http://127.0.0.1:{port_of(server)}/"
        assert httpx.get(url, headers=headers, timeout=5).text == "127.0.0.1 http"


def test_unix_socket(tmp_path: Any) -> None:
    path = str(tmp_path / "s.sock")
    with running_server(echo_app, uds=path, lifespan="off"):
        transport = httpx.HTTPTransport(uds=path)
        with httpx.Client(transport=transport, timeout=5) as client:
            assert client.get("http://localhost/u").text == "GET /u  0"


def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("::1 is not configured here")
    with running_server(echo_app, host="::1", lifespan="off") as server:
        assert httpx.get(f"http://[::1]:{port_of(server)}/", timeout=5).text == "GET /  0"


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_pathsend_serves_the_file(tmp_path: Any, loop: str) -> None:
    path = tmp_path / "big.bin"
    data = bytes(range(256)) * 8192  # 2 MiB
    path.write_bytes(data)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert "http.response.pathsend" in scope["extensions"]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.pathsend", "path": str(path)})

    with running_server(app, loop=loop, lifespan="off") as server:
        response = httpx.get(f"http://127.0.0.1:{port_of(server)}/", timeout=10)
        assert response.headers["content-length"] == str(len(data))
        assert response.content == data


def test_wsgi_file_wrapper_goes_out_through_pathsend(tmp_path: Any) -> None:
    path = tmp_path / "page.html"
    path.write_bytes(b"<h1>static</h1>" * 1000)

    def wsgi_app(environ: dict[str, Any], start_response: Any) -> Any:
        start_response("200 OK", [("Content-Type", "text/html")])
        return environ["wsgi.file_wrapper"](open(path, "rb"))

    with running_server(wsgi_app, mode="wsgi") as server:
        response = httpx.get(f"http://127.0.0.1:{port_of(server)}/", timeout=10)
        assert response.content == path.read_bytes()
        assert response.headers["content-length"] == str(path.stat().st_size)


def test_early_hints_are_sent_as_103() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.early_hint", "links": [b"</style.css>; rel=preload; as=style"]})
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"page"})

    with running_server(app, lifespan="off") as server:
        response = raw_request(port_of(server), b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    hint = b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload; as=style\r\n\r\n"
    assert response.startswith(hint)
    assert statuses(response) == [103, 200]
    assert response.endswith(b"page")


def test_trailers_when_the_client_accepts_them() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        trailers = "http.response.trailers" in scope["extensions"]
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"trailer", b"x-checksum")],
                "trailers": trailers,
            }
        )
        await send({"type": "http.response.body", "body": b"data"})
        if trailers:
            await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc")]})

    with running_server(app, lifespan="off") as server:
        port = port_of(server)
        with_te = raw_request(port, b"GET / HTTP/1.1\r\nHost: x\r\nTE: trailers\r\nConnection: close\r\n\r\n")
        assert with_te.endswith(b"4\r\ndata\r\n0\r\nx-checksum: abc\r\n\r\n")
        without = raw_request(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert without.endswith(b"\r\n\r\ndata") and b"content-length: 4" in without


@pytest.mark.parametrize(
    "name, value",
    [(b"x-evil", b"a\r\nset-cookie: injected=1"), (b"x-evil\r\nx-b", b"v"), (b"x-nul", b"a\x00b")],
)
def test_response_header_injection_is_a_500(name: bytes, value: bytes) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(name, value)]})
        await send({"type": "http.response.body", "body": b"x"})

    with running_server(app, lifespan="off") as server:
        response = raw_request(port_of(server), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status_of(response) == 500
    assert b"injected" not in response
