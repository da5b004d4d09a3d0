"""WebSocket connections for the built-in server: the RFC 6455 handshake, then wsproto for frames.

`HTTPProtocol` hands a connection here when a request asks to upgrade. The app gets an ASGI
`websocket` scope: `websocket.connect`, then `websocket.receive` messages until
`websocket.disconnect`. Before accepting it may refuse with `websocket.close` (the client gets a
403) or, through the `websocket.http.response` extension, with any HTTP response. Messages over
`ws_max_size` close the connection with 1009 (RFC 6455 section 7.4.1).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
from wsproto.utilities import generate_accept_token

from ._exceptions import ClientDisconnected, LocalProtocolError
from ._types import ASGIApp, Message, Scope
from .http_parsing import RequestHead

if TYPE_CHECKING:
    from .http11 import HTTPProtocol

__all__ = ["WebSocketSession", "is_websocket_upgrade"]

logger = logging.getLogger("bridges.websocket")


def is_websocket_upgrade(head: RequestHead) -> bool:
    """Whether a request asks for a WebSocket (RFC 6455 section 4.2.1)."""
    if head.upgrade != b"websocket" or head.method != "GET" or head.http_version != "1.1":
        return False
    return any(name == b"connection" and b"upgrade" in value.lower() for name, value in head.headers)


class WebSocketSession:
    """One WebSocket connection: the ASGI app's receive/send over a wsproto connection."""

    def __init__(self, protocol: HTTPProtocol, scope: Scope, head: RequestHead) -> None:
        self.protocol = protocol
        self.transport = protocol.transport
        self.scope = scope
        self.max_size = protocol.config.ws_max_size
        self.key = b""
        self.subprotocols: list[str] = []
        for name, value in head.headers:
            if name == b"sec-websocket-key":
                self.key = value.strip()
            elif name == b"sec-websocket-protocol":
                self.subprotocols += [p.strip() for p in value.decode("latin-1").split(",") if p.strip()]
        scope["subprotocols"] = self.subprotocols
        scope["extensions"] = {"websocket.http.response": {}}
        self.connection = Connection(ConnectionType.SERVER)
        self.incoming: deque[Message] = deque([{"type": "websocket.connect"}])
        self.waiter: asyncio.Future[None] | None = None
        self.accepted = False
        self.closed = False  # Our close was sent, or the connection is gone.
        self.denial_started = False
        self.denial_chunked = False
        self.fragments: list[Any] = []
        self.fragment_size = 0
        self.pending_data = b""

    def start(self, app: ASGIApp, tail: bytes) -> asyncio.Task[None]:
        self.pending_data = tail
        return self.protocol.loop.create_task(self.run(app))

    # ---- transport events --------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if not self.accepted:
            self.pending_data += data  # Frames before our 101 are held until we accept.
            return
        try:
            self.connection.receive_data(data)
        except Exception:  # wsproto raises on protocol violations: answer 1002 and close.
            self._fail(1002)
            return
        for event in self.connection.events():
            if isinstance(event, (TextMessage, BytesMessage)):
                self.fragment_size += len(event.data)
                if self.fragment_size > self.max_size:
                    self._fail(1009)
                    return
                self.fragments.append(event.data)
                if event.message_finished:
                    kind = "text" if isinstance(event, TextMessage) else "bytes"
                    joined = ("" if kind == "text" else b"").join(self.fragments)
                    self.fragments, self.fragment_size = [], 0
                    self._deliver({"type": "websocket.receive", kind: joined})
            elif isinstance(event, Ping):
                self._write(self.connection.send(event.response()))
            elif isinstance(event, CloseConnection):
                if self.connection.state is ConnectionState.REMOTE_CLOSING:
                    self._write(self.connection.send(event.response()))
                self._deliver({"type": "websocket.disconnect", "code": event.code, "reason": event.reason})
                self.closed = True
                self.protocol.close()

    def shutdown(self) -> None:
        """Server shutdown: close with 1012 (service restart) once accepted, else just close."""
        if self.accepted and not self.closed:
            self._fail(1012)
        elif not self.accepted:
            self.protocol.close()

    def connection_lost(self) -> None:
        if not self.closed:
            self.closed = True
            self._deliver({"type": "websocket.disconnect", "code": 1006})
        else:
            self._wake()

    def _fail(self, code: int) -> None:
        if not self.closed:
            try:
                self._write(self.connection.send(CloseConnection(code=code)))
            except Exception:
                pass
            self.closed = True
            self._deliver({"type": "websocket.disconnect", "code": code})
        self.protocol.close()

    def _deliver(self, message: Message) -> None:
        self.incoming.append(message)
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _write(self, data: bytes) -> None:
        transport = self.transport
        if data and transport is not None and not transport.is_closing():
            transport.write(data)

    # ---- the app -----------------------------------------------------------------------------

    async def run(self, app: ASGIApp) -> None:
        try:
            await app(self.scope, self.receive, self.send)
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                logger.error("Exception in ASGI application (websocket)", exc_info=exc)
            if not self.accepted and not self.denial_started:
                self._deny(500)
            elif self.accepted and not self.closed:
                self._fail(1011)
            if isinstance(exc, asyncio.CancelledError):
                raise
        else:
            if not self.accepted and not self.denial_started:
                self._deny(403)  # Returned without accepting: refuse the handshake.
            elif self.accepted and not self.closed:
                self._fail(1000)
        finally:
            self.protocol.close()

    async def receive(self) -> Message:
        while not self.incoming:
            if self.closed and not self.incoming:
                return {"type": "websocket.disconnect", "code": 1006}
            self.waiter = self.protocol.loop.create_future()
            await self.waiter
        return self.incoming.popleft()

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if not self.accepted and not self.denial_started:
            if kind == "websocket.accept":
                self._accept(message)
                return
            if kind == "websocket.close":
                self._deny(403)
                return
            if kind == "websocket.http.response.start":
                self._start_denial(message)
                return
            raise LocalProtocolError(f"{kind!r} sent before websocket.accept")
        if self.denial_started:
            if kind != "websocket.http.response.body":
                raise LocalProtocolError(f"{kind!r} sent during a denial response")
            self._denial_body(message)
            return
        if self.closed:
            raise ClientDisconnected("websocket closed")
        if kind == "websocket.send":
            text = message.get("text")
            if text is not None:
                self._write(self.connection.send(TextMessage(data=text)))
            else:
                self._write(self.connection.send(BytesMessage(data=message.get("bytes") or b"")))
            if self.protocol.writing_paused:
                await self.protocol.drain()
        elif kind == "websocket.close":
            code = message.get("code", 1000)
            self._write(self.connection.send(CloseConnection(code=code, reason=message.get("reason") or "")))
            self.closed = True
            self.protocol.close()
        else:
            raise LocalProtocolError(f"unexpected websocket message {kind!r}")

    def _accept(self, message: Message) -> None:
        from .http11 import DATE

        subprotocol = message.get("subprotocol")
        if subprotocol is not None and subprotocol not in self.subprotocols:
            raise LocalProtocolError(f"subprotocol {subprotocol!r} was not offered by the client")
        lines = [
            b"HTTP/1.1 101 Switching Protocols\r\n",
            b"upgrade: websocket\r\n",
            b"connection: Upgrade\r\n",
            b"sec-websocket-accept: " + generate_accept_token(self.key) + b"\r\n",
        ]
        if subprotocol:
            lines.append(b"sec-websocket-protocol: " + subprotocol.encode("latin-1") + b"\r\n")
        for name, value in message.get("headers", ()):
            if name.lower() not in (b"sec-websocket-protocol", b"sec-websocket-accept", b"upgrade"):
                lines.append(bytes(name) + b": " + bytes(value) + b"\r\n")
        lines += (b"server: bridges\r\n", DATE.get(), b"\r\n")
        self._write(b"".join(lines))
        self.accepted = True
        pending, self.pending_data = self.pending_data, b""
        if pending:
            self.data_received(pending)

    def _deny(self, status: int) -> None:
        from .http11 import error_response

        self.denial_started = True
        self._write(error_response(status))
        self.closed = True
        self.protocol.close()

    def _start_denial(self, message: Message) -> None:
        from .http11 import DATE, status_line

        self.denial_started = True
        headers = list(message.get("headers", ()))
        has_length = any(name.lower() == b"content-length" for name, _ in headers)
        self.denial_chunked = not has_length
        lines = [status_line(message["status"])]
        lines += [bytes(name) + b": " + bytes(value) + b"\r\n" for name, value in headers]
        if self.denial_chunked:
            lines.append(b"transfer-encoding: chunked\r\n")
        lines += (b"connection: close\r\n", DATE.get(), b"\r\n")
        self._write(b"".join(lines))

    def _denial_body(self, message: Message) -> None:
        body = message.get("body", b"")
        more = message.get("more_body", False)
        if self.denial_chunked:
            out = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + (b"" if more else b"0\r\n\r\n")
        else:
            out = body
        self._write(out)
        if not more:
            self.closed = True
            self.protocol.close()
