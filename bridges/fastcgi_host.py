"""Serve an ASGI (or WSGI) app as a FastCGI responder: `bridge serve TARGET --protocol fastcgi`.

nginx (`fastcgi_pass`), Apache (`mod_proxy_fcgi`, `mod_fcgid`) or lighttpd connect to us; each
connection is a `FastCGIProtocol` around the sans-I/O `fastcgi_protocol.FastCGIConnection`.
A request's PARAMS become the ASGI scope through `translate.gateway_variables_to_scope` (with the
fix-ups real servers need), STDIN becomes `http.request` messages, and the app's response goes
back as a CGI response on STDOUT, then END_REQUEST. Without FCGI_KEEP_CONN the connection is
closed after END_REQUEST, as nginx's default expects.
"""

from __future__ import annotations

import logging
import resource
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._connection import StreamProtocol, start_eagerly
from ._exceptions import ClientDisconnected, LocalProtocolError
from ._types import ASGIApp, Message, Scope
from .fastcgi_protocol import (
    CONNECTION_CLOSED,
    NEED_DATA,
    AbortRequest,
    BeginRequest,
    Data,
    EndRequest,
    FastCGIConnection,
    FastCGIProtocolError,
    GetValues,
    GetValuesResult,
    Params,
    Role,
    Stdin,
    Stdout,
    UnknownType,
)
from .http11 import status_line
from .translate import gateway_variables_to_scope

if TYPE_CHECKING:
    from .server import ServerState

__all__ = ["FastCGIProtocol"]

logger = logging.getLogger("bridges.fastcgi")
access_logger = logging.getLogger("bridges.access")

HIGH_WATER = 64 * 1024


def _fd_limit() -> int:
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        return 1024
    return soft if soft > 0 else 1024


class FastCGIProtocol(StreamProtocol):
    """One connection from a web server."""

    def __init__(self, state: ServerState, app: ASGIApp, initial_data: bytes = b"") -> None:
        super().__init__(state)
        self.initial_data = initial_data  # Read by the direct WSGI host before it handed us the socket.
        self.config = state.config
        self.app = app
        self.connection = FastCGIConnection(
            "application",
            multiplex=self.config.fastcgi_multiplex,
            max_params_bytes=self.config.max_header_bytes,
        )
        self.requests: dict[int, FastCGIRequest] = {}
        self.keep_conn = True
        self.closing = False  # Close once the requests in progress are done (shutdown).
        self.deadline = 0.0  # No idle deadline: the web server manages its connections.
        self.on_deadline: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.state.connections.add(self)
        if self.initial_data:
            data, self.initial_data = self.initial_data, b""
            self._feed(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.state.connections.discard(self)
        for request in list(self.requests.values()):
            request.on_disconnect()
        self.release_drain_waiters()

    def eof_received(self) -> bool | None:
        self._feed(b"")
        return None

    def data_received(self, data: bytes) -> None:
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        connection = self.connection
        connection.receive_data(data)
        ready: list[FastCGIRequest] = []
        while not self.closed:
            try:
                event = connection.next_event()
            except FastCGIProtocolError as exc:
                logger.warning("FastCGI protocol error from %s: %s", self._peer(), exc)
                self.write(exc.reply)
                if exc.close:
                    self.close()
                    break
                continue
            if event is NEED_DATA or event is CONNECTION_CLOSED:
                break
            self._on_event(event, ready)
        for request in ready:
            if not request.disconnected:
                request.start()

    def _on_event(self, event: Any, ready: list[FastCGIRequest]) -> None:
        if isinstance(event, Stdin):
            request = self.requests.get(event.request_id)
            if request is not None:
                request.on_body(event.data, event.end)
        elif isinstance(event, BeginRequest):
            self.keep_conn = event.keep_conn
            self.requests[event.request_id] = FastCGIRequest(self, event.request_id, event.role)
        elif isinstance(event, Params):
            request = self.requests.get(event.request_id)
            if request is not None and request.prepare(event.params):
                ready.append(request)
        elif isinstance(event, AbortRequest):
            request = self.requests.get(event.request_id)
            if request is not None:
                request.on_disconnect()
        elif isinstance(event, GetValues):
            self.write(self.connection.send(GetValuesResult(self._values(event.names))))
        elif isinstance(event, UnknownType):
            self.write(self.connection.send(UnknownType(event.record_type)))
        elif isinstance(event, Data):
            pass  # FILTER's file stream: not offered to ASGI apps.

    def _values(self, names: tuple[bytes, ...]) -> dict[bytes, bytes]:
        # Section 4.1: honest limits; names we do not know are left out.
        limit = self.config.limit_concurrency or _fd_limit()
        known = {
            b"FCGI_MAX_CONNS": str(_fd_limit()).encode(),
            b"FCGI_MAX_REQS": str(limit).encode(),
            b"FCGI_MPXS_CONNS": b"1" if self.config.fastcgi_multiplex else b"0",
        }
        return {name: known[name] for name in names if name in known}

    def _peer(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport is not None else None
        return str(peer or "unix socket")

    def write(self, data: bytes) -> None:
        transport = self.transport
        if data and transport is not None and not transport.is_closing():
            transport.write(data)

    def request_finished(self, request: FastCGIRequest, app_status: int) -> None:
        """Send END_REQUEST; close the connection if the web server did not ask to keep it."""
        if self.requests.pop(request.request_id, None) is None:
            return
        if not self.closed:
            self.write(self.connection.send(EndRequest(request.request_id, app_status)))
        self.state.total_requests += 1
        if not self.keep_conn or ((self.closing or self.state.should_exit) and not self.requests):
            self.close()
        elif self.reading_paused and not any(r.body_buffered() for r in self.requests.values()):
            self.resume_reading()

    def shutdown(self) -> None:
        """Graceful shutdown: close now if idle, else after the requests in progress."""
        self.closing = True
        if not self.requests:
            self.close()


class FastCGIRequest:
    """One FastCGI request: the ASGI receive/send of one app call."""

    def __init__(self, protocol: FastCGIProtocol, request_id: int, role: Role) -> None:
        self.protocol = protocol
        self.request_id = request_id
        self.role = role
        self.scope: Scope = {}
        self.body = bytearray()
        # FastCGI section 6.3: an authorizer gets no body (Apache sends no STDIN at all).
        self.more_body = role != Role.AUTHORIZER
        self.body_delivered = False
        self.waiter: Any = None
        self.disconnected = False
        self.response_started = False
        self.response_complete = False
        self.pending_head: bytes | None = None
        self.status = 0
        self.sent = 0

    # ---- from the protocol -------------------------------------------------------------------

    def prepare(self, params: Mapping[bytes, bytes]) -> bool:
        variables = {name.decode("latin-1"): value.decode("latin-1") for name, value in params.items()}
        config = self.protocol.config
        try:
            scope = gateway_variables_to_scope(variables, root_path=config.root_path or None)
        except Exception as exc:
            logger.warning("bad FastCGI params: %s", exc)
            self._write_head(400, [(b"content-type", b"text/plain")])
            self._stdout(b"Bad Request\n", end=True)
            self.protocol.request_finished(self, 0)
            return False
        scope["state"] = self.protocol.state.app_state.copy()
        extensions: dict[str, Any] = {"fastcgi": {"role": self.role.name.lower(), "params": variables}}
        if self.role == Role.AUTHORIZER:
            extensions["fastcgi.authorizer"] = {}
        scope["extensions"] = extensions
        self.scope = scope
        return True

    def start(self) -> None:
        start_eagerly(self.protocol.state, self.run(self.protocol.app))

    def on_body(self, data: bytes, end: bool) -> None:
        if data:
            self.body += data
            if len(self.body) > HIGH_WATER:
                self.protocol.pause_reading()
        if end:
            self.more_body = False
        self._wake()

    def on_disconnect(self) -> None:
        self.disconnected = True
        self._wake()

    def body_buffered(self) -> bool:
        return len(self.body) > HIGH_WATER

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # ---- the app -----------------------------------------------------------------------------

    async def run(self, app: ASGIApp) -> None:
        app_status = 0
        try:
            await app(self.scope, self.receive, self.send)
        except BaseException as exc:
            app_status = 1
            if not isinstance(exc, ClientDisconnected):
                logger.error("Exception in ASGI application", exc_info=exc)
            if not self.disconnected and (not self.response_started or self.pending_head is not None):
                self.pending_head = None
                self._write_head(500, [(b"content-type", b"text/plain; charset=utf-8")])
                self._stdout(b"Internal Server Error\n", end=True)
                self.response_complete = True
            elif not self.response_complete and not self.disconnected:
                # Cut the response: the web server sees the upstream close before END_REQUEST.
                self.protocol.close()
                return
            if not isinstance(exc, Exception):
                self.protocol.request_finished(self, app_status)
                raise
        else:
            if not self.response_complete and not self.disconnected:
                logger.error("ASGI callable returned without completing its response")
                if not self.response_started:
                    self._write_head(500, [(b"content-type", b"text/plain; charset=utf-8")])
                    self._stdout(b"Internal Server Error\n", end=True)
                else:
                    self.protocol.close()
                    return
        self._log_access()
        self.protocol.request_finished(self, app_status)

    async def receive(self) -> Message:
        if not self.disconnected and not self.response_complete and not self.body:
            if self.more_body or self.body_delivered:
                self.protocol.resume_reading()
                self.waiter = self.protocol.loop.create_future()
                await self.waiter
        if self.disconnected or self.response_complete:
            return {"type": "http.disconnect"}
        body = bytes(self.body)
        self.body.clear()
        if not self.more_body:
            self.body_delivered = True
        elif self.protocol.reading_paused:
            self.protocol.resume_reading()
        return {"type": "http.request", "body": body, "more_body": self.more_body}

    async def send(self, message: Message) -> None:
        if self.disconnected:
            raise ClientDisconnected("the web server aborted the request")
        kind = message["type"]
        if kind == "http.response.start":
            if self.response_started:
                raise LocalProtocolError("http.response.start sent twice")
            self.response_started = True
            self._write_head(message["status"], message.get("headers", ()), defer=True)
        elif kind == "http.response.body":
            if not self.response_started or self.response_complete:
                raise LocalProtocolError("http.response.body out of order")
            more_body = message.get("more_body", False)
            self._stdout(message.get("body", b""), end=not more_body)
            if not more_body:
                self.response_complete = True
                self._wake()
            elif self.protocol.writing_paused:
                await self.protocol.drain()
        else:
            raise LocalProtocolError(f"unexpected ASGI message type {kind!r}")

    def _write_head(self, status: int, headers: Any, defer: bool = False) -> None:
        """The CGI header section (RFC 3875 section 6.3): Status, then the app's fields."""
        self.status = status
        parts = [b"Status: ", status_line(status)[9:]]  # "200 OK\r\n" from "HTTP/1.1 200 OK\r\n".
        for name, value in headers:
            if b"\r" in name or b"\n" in name or b"\r" in value or b"\n" in value or b"\x00" in value:
                raise LocalProtocolError(f"invalid response header {name!r}")
            parts += (name, b": ", value, b"\r\n")
        parts.append(b"\r\n")
        head = b"".join(parts)
        if defer:
            self.pending_head = head  # Sent with the first body chunk, in one STDOUT record.
        else:
            self.protocol.write(self.protocol.connection.send(Stdout(self.request_id, head)))

    def _stdout(self, data: bytes, end: bool) -> None:
        self.sent += len(data)
        head = self.pending_head
        if head is not None:
            self.pending_head = None
            data = head + data
        protocol = self.protocol
        if not protocol.closed and self.request_id in protocol.connection.requests:
            protocol.write(protocol.connection.send(Stdout(self.request_id, data, end)))

    def _log_access(self) -> None:
        if not self.protocol.config.access_log or not self.scope:
            return
        scope = self.scope
        query = scope.get("query_string", b"")
        access_logger.info(
            '%s - "%s %s%s" %d %d (FastCGI)',
            (scope.get("client") or ("-",))[0],
            scope.get("method"),
            scope.get("raw_path", b"").decode("latin-1"),
            "?" + query.decode("latin-1") if query else "",
            self.status,
            self.sent,
        )
