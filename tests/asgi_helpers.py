"""Test helpers: drive ASGI apps in-process and check the ASGI messages they send.

`ResponseChecker` is the ASGI message-order checker: it wraps a `send` callable and fails the
test on any message an ASGI server would have to reject (HTTP: one `http.response.start` with an
int status and a list of (bytes, bytes) headers, then `http.response.body` messages with bytes
bodies, nothing after `more_body=False`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

Message = dict[str, Any]


def run(coro: Awaitable[Any], timeout: float = 10.0) -> Any:
    """Run a coroutine on a fresh event loop, failing after `timeout` seconds."""

    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def http_scope(
    path: str = "/",
    *,
    method: str = "GET",
    query_string: bytes = b"",
    headers: Iterable[tuple[bytes, bytes]] = (),
    root_path: str = "",
    extensions: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An ASGI HTTP scope as uvicorn would build it."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode("utf-8"),
        "query_string": query_string,
        "root_path": root_path,
        "headers": [(b"host", b"testserver"), *headers],
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 51000),
        "extensions": extensions or {},
    }


class ResponseChecker:
    """Wrap `send`: assert the app's HTTP messages are in ASGI order and well-formed."""

    def __init__(self, send: Callable[[Message], Awaitable[None]] | None = None) -> None:
        self._send = send
        self.messages: list[Message] = []
        self.started = False
        self.complete = False

    async def __call__(self, message: Message) -> None:
        kind = message["type"]
        assert not self.complete, f"{kind} sent after the response completed"
        if kind == "http.response.start":
            assert not self.started, "http.response.start sent twice"
            assert isinstance(message["status"], int) and 100 <= message["status"] <= 999
            for name, value in message.get("headers", []):
                assert isinstance(name, bytes) and isinstance(value, bytes), (name, value)
            self.started = True
        elif kind == "http.response.body":
            assert self.started, "http.response.body before http.response.start"
            assert isinstance(message.get("body", b""), bytes)
            self.complete = not message.get("more_body", False)
        elif kind == "http.response.pathsend":
            assert self.started, "http.response.pathsend before http.response.start"
            self.complete = True
        else:
            raise AssertionError(f"unexpected message {kind!r}")
        self.messages.append(message)
        if self._send is not None:
            await self._send(message)

    @property
    def status(self) -> int:
        return int(self.messages[0]["status"])

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        return list(self.messages[0]["headers"])

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages if m["type"] == "http.response.body")


@dataclass
class BodySource:
    """A `receive` callable: yields the given chunks (more_body until the last), then disconnect."""

    chunks: list[bytes] = field(default_factory=list)
    calls: int = 0
    handed_out: int = 0
    disconnect_forever: bool = False

    async def __call__(self) -> Message:
        self.calls += 1
        if self.calls <= max(len(self.chunks), 1):
            chunk = self.chunks[self.calls - 1] if self.chunks else b""
            self.handed_out += len(chunk)
            return {"type": "http.request", "body": chunk, "more_body": self.calls < len(self.chunks)}
        if not self.disconnect_forever:
            await asyncio.Event().wait()  # Like a server: nothing happens until the client leaves.
        return {"type": "http.disconnect"}


async def call_asgi(
    app: Callable[..., Awaitable[None]],
    scope: dict[str, Any] | None = None,
    body: list[bytes] | None = None,
) -> ResponseChecker:
    """Call an ASGI app once with a checked `send`; return the checker holding the response."""
    checker = ResponseChecker()
    await app(scope or http_scope(), BodySource(body or []), checker)
    return checker
