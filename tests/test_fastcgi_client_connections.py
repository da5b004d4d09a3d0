"""FastCGIToASGI's connections: kept and reused, expired when idle, retried when stale, and read
with backpressure (a slow client slows the responder; nothing piles up in memory)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import pytest
from asgi_helpers import http_scope, run

from bridges.fastcgi_client import FastCGIToASGI
from bridges.fastcgi_protocol import (
    CONNECTION_CLOSED,
    NEED_DATA,
    BeginRequest,
    EndRequest,
    FastCGIConnection,
    Params,
    Stdin,
    Stdout,
)

pytestmark = pytest.mark.timeout(60)

HELLO = b"Content-Type: text/plain\r\n\r\nhello"


class Responder:
    """A FastCGI application on a real socket: any number of connections, one thread each.

    `answer(codec, request_id, conn)` answers a request once its STDIN has ended. Every event
    received is recorded with the number of the connection it came on.
    """

    def __init__(self, answer: Any = None, close_after: int | None = None) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.answer = answer or self.hello
        self.close_after = close_after  # Close each connection after this many requests.
        self.events: list[tuple[int, Any]] = []
        self.first_reads: list[bytes] = []
        self.connections = 0
        self.closed_by_peer: list[int] = []
        threading.Thread(target=self.accept_loop, daemon=True).start()

    @staticmethod
    def hello(codec: FastCGIConnection, request_id: int, conn: socket.socket) -> None:
        conn.sendall(codec.send(Stdout(request_id, HELLO, end=True)) + codec.send(EndRequest(request_id)))

    def accept_loop(self) -> None:
        self.listener.settimeout(30)
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            number = self.connections
            threading.Thread(target=self.serve, args=(conn, number), daemon=True).start()

    def serve(self, conn: socket.socket, number: int) -> None:
        codec = FastCGIConnection("application")
        answered = 0
        conn.settimeout(30)
        first = True
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if first:
                    self.first_reads.append(data)
                    first = False
                if not data:
                    self.closed_by_peer.append(number)
                    return
                codec.receive_data(data)
                while (event := codec.next_event()) not in (NEED_DATA, CONNECTION_CLOSED):
                    self.events.append((number, event))
                    if isinstance(event, Stdin) and event.end:
                        self.answer(codec, event.request_id, conn)
                        answered += 1
                        if self.close_after is not None and answered >= self.close_after:
                            return

    def close(self) -> None:
        self.listener.close()


async def get(app: Any, path: str = "/x.php", *, slow: float = 0.0) -> tuple[int, bytes]:
    status = 0
    body = bytearray()

    async def receive() -> dict[str, Any]:
        raise AssertionError("receive() called for a request without a body")

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        else:
            body.extend(message.get("body", b""))
            if slow:
                await asyncio.sleep(slow)

    await app(http_scope(path), receive, send)
    return status, bytes(body)


def test_kept_connection_is_reused_and_expires_when_idle() -> None:
    responder = Responder()
    app = FastCGIToASGI(f"127.0.0.1:{responder.port}", keep_conn=True, idle_timeout=0.3)

    async def scenario() -> None:
        for _ in range(3):
            assert await get(app) == (200, b"hello")
        assert len(app._idle) == 1
        await asyncio.sleep(0.8)
        assert len(app._idle) == 0  # Expired: it no longer holds one of the responder's workers.

    run(scenario(), timeout=20)
    assert responder.connections == 1
    begins = [event for _, event in responder.events if isinstance(event, BeginRequest)]
    assert len(begins) == 3 and all(begin.keep_conn for begin in begins)
    deadline = time.monotonic() + 5
    while not responder.closed_by_peer and time.monotonic() < deadline:
        time.sleep(0.02)
    assert responder.closed_by_peer == [1]
    responder.close()


def test_without_keep_conn_each_request_has_its_own_connection() -> None:
    responder = Responder()
    app = FastCGIToASGI(f"127.0.0.1:{responder.port}")

    async def scenario() -> None:
        for _ in range(3):
            assert await get(app) == (200, b"hello")
        assert len(app._idle) == 0

    run(scenario(), timeout=20)
    assert responder.connections == 3
    assert not any(event.keep_conn for _, event in responder.events if isinstance(event, BeginRequest))
    responder.close()


def test_a_request_without_a_body_is_sent_in_one_write() -> None:
    """BEGIN_REQUEST, PARAMS and the end of STDIN leave together, and receive() is never awaited."""
    responder = Responder()
    app = FastCGIToASGI(f"127.0.0.1:{responder.port}")
    assert run(get(app), timeout=20) == (200, b"hello")
    first = FastCGIConnection("application")
    first.receive_data(responder.first_reads[0])
    kinds = []
    while (event := first.next_event()) is not NEED_DATA:
        kinds.append(type(event).__name__)
    assert kinds[0] == "BeginRequest" and kinds[-1] == "Stdin" and "Params" in kinds
    responder.close()


def test_stale_kept_connection_is_retried_on_a_new_one() -> None:
    responder = Responder(close_after=1)  # Closes every connection after one answer.
    app = FastCGIToASGI(f"127.0.0.1:{responder.port}", keep_conn=True)

    async def scenario() -> None:
        assert await get(app) == (200, b"hello")
        await asyncio.sleep(0.2)  # The responder has closed the kept connection by now.
        assert await get(app) == (200, b"hello")

    run(scenario(), timeout=20)
    assert responder.connections == 2
    responder.close()


def test_a_slow_client_slows_the_responder_down() -> None:
    """Reading pauses while the client is behind: the responder's send blocks, memory stays flat."""
    sent = [0]
    total = 64 * 1024 * 1024

    def flood(codec: FastCGIConnection, request_id: int, conn: socket.socket) -> None:
        conn.sendall(codec.send(Stdout(request_id, HELLO)))
        chunk = codec.send(Stdout(request_id, b"x" * 65000))
        try:
            while sent[0] < total:
                conn.sendall(chunk)
                sent[0] += 65000
        except OSError:
            return

    responder = Responder(flood)
    app = FastCGIToASGI(f"127.0.0.1:{responder.port}", read_timeout=30)
    seen: list[int] = []

    async def scenario() -> None:
        async def receive() -> dict[str, Any]:
            await asyncio.Event().wait()
            return {}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body":
                seen.append(len(message.get("body", b"")))
                if sum(seen) > 1024 * 1024:
                    await asyncio.sleep(1.0)  # The client stops reading for a second...
                    raise OSError("...and goes away")

        await app(http_scope("/x.php"), receive, send)

    run(scenario(), timeout=30)
    # Only what fits in the socket buffers and our pause threshold left the responder: far from all.
    assert sent[0] < 16 * 1024 * 1024, f"the responder sent {sent[0]} bytes to a client that read 1 MiB"
    responder.close()


def test_params_reach_the_responder_whole() -> None:
    responder = Responder()
    app = FastCGIToASGI(f"127.0.0.1:{responder.port}", document_root="/srv/www", params={"APP_ENV": "t"})
    assert run(get(app, "/dir/page.php/extra"), timeout=20) == (200, b"hello")
    params = next(event.params for _, event in responder.events if isinstance(event, Params))
    assert params[b"SCRIPT_FILENAME"] == b"/srv/www/dir/page.php"
    assert params[b"PATH_INFO"] == b"/extra"
    assert params[b"APP_ENV"] == b"t"
    responder.close()


def test_the_last_chunk_leaves_with_the_end_of_the_response() -> None:
    responder = Responder()
    app = FastCGIToASGI(f"127.0.0.1:{responder.port}")
    messages: list[dict[str, Any]] = []

    async def scenario() -> None:
        async def receive() -> dict[str, Any]:
            raise AssertionError("no body to read")

        async def send(message: dict[str, Any]) -> None:
            messages.append(message)

        await app(http_scope("/x.php"), receive, send)

    run(scenario(), timeout=20)
    assert [m["type"] for m in messages] == ["http.response.start", "http.response.body"]
    assert messages[1]["body"] == b"hello" and messages[1]["more_body"] is False
    responder.close()


def test_requests_beyond_max_connections_wait_their_turn_and_cancelled_ones_free_their_slot() -> None:
    lock = threading.Lock()
    state = {"now": 0, "most": 0}

    def slow(codec: FastCGIConnection, request_id: int, conn: socket.socket) -> None:
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        time.sleep(0.05)
        with lock:
            state["now"] -= 1
        Responder.hello(codec, request_id, conn)

    responder = Responder(slow)
    app = FastCGIToASGI(f"127.0.0.1:{responder.port}", max_connections=3)

    async def scenario() -> list[Any]:
        doomed = [asyncio.ensure_future(get(app)) for _ in range(5)]
        await asyncio.sleep(0.01)
        for task in doomed[3:]:  # Two that wait for a slot give up.
            task.cancel()
        results = await asyncio.gather(*(get(app) for _ in range(12)), *doomed, return_exceptions=True)
        assert app._busy == 0 and not app._queue  # Every slot came back.
        return results

    results = run(scenario(), timeout=30)
    answered = [r for r in results if r == (200, b"hello")]
    cancelled = [r for r in results if isinstance(r, asyncio.CancelledError)]
    assert len(answered) == 15 and len(cancelled) == 2
    assert state["most"] <= 3
    responder.close()
