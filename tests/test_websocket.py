"""WebSocket on the built-in server, driven by the `websockets` client library over real sockets."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import websockets
from server_helpers import port_of, raw_request, running_server, status_of

pytestmark = pytest.mark.timeout(30)

events: list[Any] = []


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "websocket":
        return
    assert (await receive())["type"] == "websocket.connect"
    path = scope["path"]
    if path == "/deny":
        await send({"type": "websocket.close"})
        return
    if path == "/custom-deny":
        await send(
            {
                "type": "websocket.http.response.start",
                "status": 401,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        await send({"type": "websocket.http.response.body", "body": b"who are you?"})
        return
    if path == "/crash":
        raise RuntimeError("before accept")
    offered = scope["subprotocols"]
    await send({"type": "websocket.accept", "subprotocol": "chat" if "chat" in offered else None})
    if path == "/bye":
        await send({"type": "websocket.close", "code": 4000, "reason": "bye"})
        return
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            events.append(message)
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": "echo:" + message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"][::-1]})


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 20))


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_text_binary_ping_and_subprotocol(http: str) -> None:
    async def client(port: int) -> None:
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws", subprotocols=["chat"]) as ws:
            assert ws.subprotocol == "chat"
            await ws.send("hello")
            assert await ws.recv() == "echo:hello"
            await ws.send(b"\x00\x01\x02")
            assert await ws.recv() == b"\x02\x01\x00"
            await asyncio.wait_for(await ws.ping(), 5)
            big = "é" * 100_000
            await ws.send(big)
            assert await ws.recv() == "echo:" + big

    events.clear()
    with running_server(echo, http=http) as server:
        run(client(port_of(server)))
    assert events and events[0]["type"] == "websocket.disconnect" and events[0]["code"] == 1000


def test_server_close_code_reaches_the_client() -> None:
    async def client(port: int) -> None:
        async with websockets.connect(f"ws://127.0.0.1:{port}/bye") as ws:
            with pytest.raises(websockets.ConnectionClosed) as info:
                await ws.recv()
            assert info.value.rcvd is not None
            assert (info.value.rcvd.code, info.value.rcvd.reason) == (4000, "bye")

    with running_server(echo) as server:
        run(client(port_of(server)))


def test_message_over_the_limit_closes_with_1009() -> None:
    async def client(port: int) -> None:
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws") as ws:
            await ws.send("x" * 2000)
            with pytest.raises(websockets.ConnectionClosed) as info:
                await ws.recv()
            assert info.value.rcvd is not None and info.value.rcvd.code == 1009

    with running_server(echo, ws_max_size=1000) as server:
        run(client(port_of(server)))


UPGRADE = (
    b"GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def test_refusals_are_http_responses() -> None:
    with running_server(echo) as server:
        port = port_of(server)
        assert status_of(raw_request(port, UPGRADE % b"/deny")) == 403
        custom = raw_request(port, UPGRADE % b"/custom-deny")
        assert status_of(custom) == 401 and custom.endswith(b"who are you?\r\n0\r\n\r\n")
        assert status_of(raw_request(port, UPGRADE % b"/crash")) == 500


def test_handshake_answer_is_rfc6455() -> None:
    with running_server(echo) as server:
        response = raw_request(port_of(server), UPGRADE % b"/ws", timeout=1)
    assert status_of(response) == 101
    # RFC 6455 section 1.3's worked example.
    assert b"sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in response


def test_wsgi_apps_refuse_websocket_cleanly() -> None:
    def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [b"plain"]

    with running_server(wsgi_app, mode="wsgi") as server:
        assert status_of(raw_request(port_of(server), UPGRADE % b"/ws")) == 403
