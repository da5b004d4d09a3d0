"""WSGIToASGI conformance: PEP 3333 for the WSGI app, ASGI message order for the server.

Every app here is wrapped in `wsgiref.validate.validator` where the rule allows, so both our
environ and our use of the iterable are checked by the standard library's own validator.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any
from wsgiref.validate import validator

import pytest
from asgi_helpers import BodySource, ResponseChecker, call_asgi, http_scope, run

from bridges import ClientDisconnected, FileWrapper, WSGIToASGI

pytestmark = pytest.mark.timeout(30)


def hello_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "12")])
    return [b"Hello, world"]


class Tracked:
    """A response iterable that records whether close() was called and how far it got."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.closed = threading.Event()
        self.produced = 0

    def __iter__(self) -> Tracked:
        return self

    def __next__(self) -> bytes:
        chunk = next(self.chunks)
        self.produced += 1
        return chunk

    def close(self) -> None:
        self.closed.set()


def test_hello_under_wsgiref_validator() -> None:
    response = run(call_asgi(WSGIToASGI(validator(hello_app))))
    assert response.status == 200
    assert (b"content-length", b"12") in [(n.lower(), v) for n, v in response.headers]
    assert response.body == b"Hello, world"


def test_one_element_list_is_sent_as_one_final_message() -> None:
    response = run(call_asgi(WSGIToASGI(hello_app)))
    assert [m["type"] for m in response.messages] == ["http.response.start", "http.response.body"]
    assert response.messages[1]["more_body"] is False


@pytest.mark.parametrize("style", ["read", "read_n", "readline", "readlines", "iterate"])
def test_request_body_reading_styles(style: str) -> None:
    lines = [b"first line\n", b"second\n", b"x" * 70000 + b"\n", b"no newline at end"]
    payload = b"".join(lines)

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        stream = environ["wsgi.input"]
        if style == "read":
            got = stream.read()
        elif style == "read_n":
            parts = []
            while part := stream.read(1000):
                assert len(part) <= 1000
                parts.append(part)
            got = b"".join(parts)
        elif style == "readline":
            got_lines = []
            while line := stream.readline():
                got_lines.append(line)
            assert got_lines == lines
            got = b"".join(got_lines)
        elif style == "readlines":
            got = b"".join(stream.readlines())
        else:
            got = b"".join(stream)
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [got]

    # Split the body at awkward places: mid-line, and in many small messages.
    chunks = [payload[i : i + 4096] for i in range(0, len(payload), 4096)]
    # wsgiref's validator (strict PEP 333) forbids read() without a size, which PEP 3333 allows.
    wrapped = app if style == "read" else validator(app)
    response = run(call_asgi(WSGIToASGI(wrapped), http_scope(method="POST"), chunks))
    assert response.body == payload


def test_readline_with_limit_and_read_zero() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        stream = environ["wsgi.input"]
        parts = [stream.read(0), stream.readline(3), stream.readline(), stream.read()]
        start_response("200 OK", [])
        return [b"|".join(parts)]

    response = run(call_asgi(WSGIToASGI(app), http_scope(method="POST"), [b"abcdef\n", b"tail"]))
    assert response.body == b"|abc|def\n|tail"


def test_chunked_upload_without_content_length_reads_in_full() -> None:
    """The Werkzeug/Flask case: no CONTENT_LENGTH, the body arrives in many messages."""
    flask = pytest.importorskip("flask")
    flask_app = flask.Flask(__name__)

    @flask_app.post("/upload")
    def upload() -> str:
        return str(len(flask.request.get_data()))

    chunks = [b"z" * 1000] * 50
    scope = http_scope("/upload", method="POST", headers=[(b"transfer-encoding", b"chunked")])
    response = run(call_asgi(WSGIToASGI(flask_app), scope, chunks))
    assert response.status == 200
    assert response.body == b"50000"


def test_headers_wait_for_first_non_empty_chunk_so_an_error_before_it_is_a_500() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b""
        raise RuntimeError("boom before any body")

    response = run(call_asgi(WSGIToASGI(app)))
    assert response.status == 500
    assert response.body == b"Internal Server Error"


def test_exc_info_replaces_headers_before_they_are_sent() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-First", "1")])
        try:
            raise ValueError("changed my mind")
        except ValueError:
            start_response(
                "503 Service Unavailable", [("Content-Type", "text/plain"), ("X-Second", "2")], sys.exc_info()
            )
        return [b"sorry"]

    response = run(call_asgi(WSGIToASGI(validator(app))))
    assert response.status == 503
    assert response.headers == [(b"content-type", b"text/plain"), (b"x-second", b"2")]
    assert response.body == b"sorry"


def test_exc_info_after_headers_sent_reraises_and_cuts_the_response(caplog: Any) -> None:
    seen: list[BaseException] = []

    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield b"part one"
        try:
            raise ValueError("late failure")
        except ValueError:
            try:
                start_response("500 Internal Server Error", [], sys.exc_info())
            except ValueError as exc:
                seen.append(exc)
                raise

    checker = ResponseChecker()
    with caplog.at_level(logging.ERROR, logger="bridges.wsgi"), pytest.raises(ValueError):
        run(WSGIToASGI(app)(http_scope(), BodySource(), checker))
    assert seen and str(seen[0]) == "late failure"
    assert checker.status == 200
    assert checker.body == b"part one"
    assert not checker.complete, "a failed response must be cut, never completed"
    assert "cutting the response" in caplog.text


def test_start_response_twice_without_exc_info_is_an_error() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        start_response("201 Created", [])
        return [b"never"]

    response = run(call_asgi(WSGIToASGI(app)))
    assert response.status == 500


@pytest.mark.parametrize(
    "status, headers",
    [("OK", []), ("2000 Big", []), ("200 OK", [("Bad Name", "x")]), ("200 OK", [("X-Inject", "a\r\nb")])],
)
def test_invalid_status_or_headers_give_500(status: str, headers: list[tuple[str, str]]) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response(status, headers)
        return [b"body"]

    response = run(call_asgi(WSGIToASGI(app)))
    assert response.status == 500


def test_write_callable() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written ")
        write(b"directly, ")
        yield b"then yielded"

    response = run(call_asgi(WSGIToASGI(validator(app))))
    assert response.body == b"written directly, then yielded"


def test_never_more_than_declared_content_length(caplog: Any) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Length", "5")])
        return [b"12345", b"6789"]

    with caplog.at_level(logging.ERROR, logger="bridges.wsgi"):
        response = run(call_asgi(WSGIToASGI(app)))
    assert response.body == b"12345"
    assert "Content-Length" in caplog.text


def test_close_called_on_success_error_and_disconnect() -> None:
    ok = Tracked(iter([b"a", b"b"]))

    def exploding() -> Iterator[bytes]:
        yield b"a"
        raise RuntimeError("mid-stream failure")

    failing = Tracked(exploding())

    def make(tracked: Tracked) -> Any:
        def app(environ: dict[str, Any], start_response: Any) -> Tracked:
            start_response("200 OK", [])
            return tracked

        return app

    run(call_asgi(WSGIToASGI(make(ok))))
    assert ok.closed.is_set()

    def failing_app(environ: dict[str, Any], start_response: Any) -> Tracked:
        start_response("200 OK", [])
        return failing

    with pytest.raises(RuntimeError, match="mid-stream failure"):
        run(call_asgi(WSGIToASGI(failing_app)))
    assert failing.closed.is_set()

    endless = Tracked(iter(lambda: b"x" * 1024, None))

    async def refusing_send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            raise OSError("client went away")

    run(WSGIToASGI(make(endless))(http_scope(), BodySource(), refusing_send))
    assert endless.closed.wait(5)


def test_app_exception_before_start_gives_500_and_is_logged(caplog: Any) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        raise KeyError("missing")

    with caplog.at_level(logging.ERROR, logger="bridges.wsgi"):
        response = run(call_asgi(WSGIToASGI(app)))
    assert response.status == 500
    assert response.messages[-1]["more_body"] is False
    assert "KeyError" in caplog.text


def test_app_returning_without_start_response_gives_500() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        return [b"no headers"]

    assert run(call_asgi(WSGIToASGI(app))).status == 500


def test_wsgi_errors_go_to_logging(caplog: Any) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        environ["wsgi.errors"].write("something odd\nsecond ")
        environ["wsgi.errors"].write("line\n")
        start_response("200 OK", [])
        return []

    with caplog.at_level(logging.ERROR, logger="bridges.wsgi"):
        run(call_asgi(WSGIToASGI(app)))
    assert [r.getMessage() for r in caplog.records] == ["something odd", "second line"]


def test_file_wrapper_is_sent_as_pathsend_when_offered(tmp_path: Any) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(b"0123456789" * 1000)

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        start_response("200 OK", [("Content-Length", "10000")])
        return environ["wsgi.file_wrapper"](open(path, "rb"), 4096)

    offered = http_scope(extensions={"http.response.pathsend": {}})
    response = run(call_asgi(WSGIToASGI(app), offered))
    assert [m["type"] for m in response.messages] == ["http.response.start", "http.response.pathsend"]
    assert response.messages[1]["path"] == str(path)

    plain = run(call_asgi(WSGIToASGI(app)))
    assert plain.body == path.read_bytes()
    assert FileWrapper is WSGIToASGI(app).make_environ.__globals__["FileWrapper"]


def test_response_window_bounds_how_far_the_app_runs_ahead() -> None:
    chunk = b"x" * 65536
    window = 4 * 65536
    produced: list[int] = []

    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])
        for i in range(200):
            produced.append(i)
            yield chunk

    sent = 0
    max_ahead = 0

    async def slow_send(message: dict[str, Any]) -> None:
        nonlocal sent, max_ahead
        if message["type"] == "http.response.body" and message["body"]:
            await asyncio.sleep(0.001)
            sent += 1
            max_ahead = max(max_ahead, len(produced) - sent)

    run(WSGIToASGI(app, window=window)(http_scope(), BodySource(), slow_send))
    assert sent == 200
    # The window holds 4 chunks; one more may be in the app's hands.
    assert max_ahead <= window // len(chunk) + 2, max_ahead


def test_request_window_bounds_read_ahead() -> None:
    source = BodySource([b"y" * 16384] * 200)
    read_so_far = 0
    max_unread = 0
    done = threading.Event()

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        nonlocal read_so_far, max_unread
        while True:
            time.sleep(0.0005)
            part = environ["wsgi.input"].read(16384)
            if not part:
                break
            read_so_far += len(part)
            max_unread = max(max_unread, source.handed_out - read_so_far)
        done.set()
        start_response("200 OK", [])
        return [str(read_so_far).encode()]

    response = run(call_asgi_with(WSGIToASGI(app, window=65536), http_scope(method="POST"), source))
    assert response.body == str(200 * 16384).encode()
    assert max_unread <= 65536 + 16384, max_unread


async def _call_with(app: Any, scope: dict[str, Any], source: BodySource) -> ResponseChecker:
    checker = ResponseChecker()
    await app(scope, source, checker)
    return checker


def call_asgi_with(app: Any, scope: dict[str, Any], source: BodySource) -> Any:
    return _call_with(app, scope, source)


def test_disconnect_while_reading_body_raises_in_the_app() -> None:
    raised: list[BaseException] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        try:
            environ["wsgi.input"].read()
        except OSError as exc:
            raised.append(exc)
            raise
        start_response("200 OK", [])
        return [b"unreachable"]

    class Dropping(BodySource):
        async def __call__(self) -> dict[str, Any]:
            self.calls += 1
            if self.calls == 1:
                return {"type": "http.request", "body": b"partial", "more_body": True}
            return {"type": "http.disconnect"}

    checker = ResponseChecker()
    run(WSGIToASGI(app)(http_scope(method="POST"), Dropping(), checker))
    assert raised and isinstance(raised[0], ClientDisconnected)
    assert checker.messages == []  # Nobody to answer.


def test_disconnect_between_chunks_stops_a_stream_even_if_send_succeeds() -> None:
    """An older server's send() silently drops data after a disconnect: receive() tells us."""
    endless = Tracked(iter(lambda: b"x" * 1024, None))

    def app(environ: dict[str, Any], start_response: Any) -> Tracked:
        start_response("200 OK", [])
        return endless

    gone = asyncio.Event()
    sent = 0

    async def receive() -> dict[str, Any]:
        if not hasattr(receive, "first"):
            receive.first = True  # type: ignore[attr-defined]
            return {"type": "http.request", "body": b"", "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal sent
        sent += 1
        if sent == 5:
            gone.set()
        await asyncio.sleep(0)

    run(WSGIToASGI(app)(http_scope(), receive, send))
    assert endless.closed.wait(5)
    assert sent < 5 + 300  # Stopped soon after the disconnect, not after an endless stream.


def test_aborted_streams_never_exhaust_the_pool() -> None:
    """a2wsgi 1.10.10 hangs after 10 aborted streaming downloads; we serve the next request."""
    iterables: list[Tracked] = []

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        if environ["PATH_INFO"] == "/hello":
            return hello_app(environ, start_response)
        start_response("200 OK", [])
        tracked = Tracked(iter(lambda: b"x" * 65536, None))
        iterables.append(tracked)
        return tracked

    adapter = WSGIToASGI(app, threads=4)

    async def scenario() -> ResponseChecker:
        for _ in range(1000):
            count = 0

            async def aborting_send(message: dict[str, Any]) -> None:
                nonlocal count
                count += 1
                if count > 3:
                    raise OSError("connection reset")

            await adapter(http_scope("/stream"), BodySource(), aborting_send)
        return await call_asgi(adapter, http_scope("/hello"))

    response = run(scenario(), timeout=60)
    assert response.body == b"Hello, world"
    assert len(iterables) == 1000
    assert all(t.closed.wait(5) for t in iterables)
    assert adapter.pool.thread_count <= 4


def test_thread_pool_is_bounded_and_queues_in_order() -> None:
    running = 0
    peak = 0
    lock = threading.Lock()

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.02)
        with lock:
            running -= 1
        start_response("200 OK", [])
        return [environ["PATH_INFO"].encode()]

    adapter = WSGIToASGI(app, threads=3)

    async def many() -> list[ResponseChecker]:
        return list(await asyncio.gather(*(call_asgi(adapter, http_scope(f"/{i}")) for i in range(12))))

    responses = run(many())
    assert [r.body for r in responses] == [f"/{i}".encode() for i in range(12)]
    assert peak == 3
    assert adapter.pool.thread_count == 3


def test_expect_100_continue_defers_reading_until_the_app_reads() -> None:
    source = BodySource([b"payload"])

    def ignoring_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("417 Expectation Failed", [])
        return [b"no thanks"]

    scope = http_scope(method="POST", headers=[(b"expect", b"100-continue")])
    checker = ResponseChecker()
    run(WSGIToASGI(ignoring_app)(scope, source, checker))
    assert checker.status == 417
    assert source.calls == 0, "receive() must not be called when the app never reads the body"

    def reading_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [environ["wsgi.input"].read()]

    source = BodySource([b"payload"])
    checker = ResponseChecker()
    run(WSGIToASGI(reading_app)(scope, source, checker))
    assert checker.body == b"payload"


def test_client_gone_before_the_app_starts_skips_the_app() -> None:
    called = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        called.append(True)
        return []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    checker = ResponseChecker()
    run(WSGIToASGI(app)(http_scope(), receive, checker))
    assert called == [] and checker.messages == []


def test_cancelled_request_stops_the_app() -> None:
    endless = Tracked(iter(lambda: b"x" * 65536, None))

    def app(environ: dict[str, Any], start_response: Any) -> Tracked:
        start_response("200 OK", [])
        return endless

    async def never_send(message: dict[str, Any]) -> None:
        await asyncio.Event().wait()

    async def scenario() -> None:
        task = asyncio.ensure_future(WSGIToASGI(app)(http_scope(), BodySource(), never_send))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(scenario())
    assert endless.closed.wait(5)


def test_lifespan_is_acknowledged() -> None:
    sent: list[dict[str, Any]] = []
    incoming = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

    async def receive() -> dict[str, Any]:
        return next(incoming)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    run(WSGIToASGI(hello_app)({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send))
    assert sent == [{"type": "lifespan.startup.complete"}, {"type": "lifespan.shutdown.complete"}]


def test_websocket_is_refused_cleanly() -> None:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {**http_scope(), "type": "websocket", "scheme": "ws"}
    run(WSGIToASGI(hello_app)(scope, receive, send))
    assert sent == [{"type": "websocket.close", "code": 1000}]
