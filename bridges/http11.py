"""The built-in server's HTTP/1.1 connection: an asyncio Protocol that runs an ASGI app per request.

Parsing is `http_parsing` (httptools or h11, strict framing on top); this module is the I/O:
keep-alive and pipelining (one request at a time, responses in order), `Expect: 100-continue`
sent on the app's first `receive()`, chunked responses when there is no Content-Length, flow
control both ways, the header-read and keep-alive timeouts, and the ASGI 2.4 disconnect rules.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from email.utils import formatdate
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from ._connection import StreamProtocol, address_of, start_eagerly
from ._exceptions import ClientDisconnected, LocalProtocolError, RemoteProtocolError
from ._types import ASGIApp, Message, Scope
from .http_parsing import BODY, HEAD, Limits, RequestHead, decode_path, make_parser, split_target
from .websocket import WebSocketSession, is_websocket_upgrade

if TYPE_CHECKING:
    from .server import ServerState

__all__ = ["HTTPProtocol"]

logger = logging.getLogger("bridges.server")
access_logger = logging.getLogger("bridges.access")

HIGH_WATER = 64 * 1024
_JOIN_LIMIT = 16 * 1024  # Smaller pieces are joined into one write; larger ones are not copied.
_STATUS_LINES: dict[int, bytes] = {}
_NO_BODY_STATUSES = frozenset({204, 304})
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        line = f"HTTP/1.1 {status} {phrase}\r\n".encode("latin-1")
        if len(_STATUS_LINES) < 1000:
            _STATUS_LINES[status] = line
    return line


class _DateHeader:
    """The Date header, formatted at most once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def get(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._value = b"date: " + formatdate(now, usegmt=True).encode("ascii") + b"\r\n"
        return self._value


DATE = _DateHeader()


def error_response(status: int, message: str = "", close: bool = True) -> bytes:
    body = (message or HTTPStatus(status).phrase).encode("utf-8") + b"\n"
    return b"".join(
        [
            status_line(status),
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n" if close else b"",
            DATE.get(),
            b"\r\n",
            body,
        ]
    )


class HTTPProtocol(StreamProtocol):
    """One client connection."""

    def __init__(self, state: ServerState, app: ASGIApp) -> None:
        super().__init__(state)
        self.config = state.config
        self.app = app
        config = self.config
        self.limits = Limits(
            max_request_line_bytes=config.max_request_line_bytes,
            max_header_bytes=config.max_header_bytes,
            max_header_count=config.max_header_count,
            max_body_bytes=config.max_body_bytes,
        )
        self.parser = make_parser(state.http_parser, self.limits)
        self.server: tuple[str, int] | None = None
        self.client: tuple[str, int] | None = None
        self.scheme = "http"
        self.cycle: RequestCycle | None = None  # The request whose response is being produced.
        self.parsing: RequestCycle | None = None  # The request whose body is being parsed.
        self.pipeline: deque[RequestCycle] = deque()
        self.pending_error: RemoteProtocolError | None = None
        self.deadline = 0.0  # loop.time() when `on_deadline` runs; 0 for none.
        self.on_deadline: Any = None
        self.idle = True  # No request bytes since the last response.
        self.websocket: WebSocketSession | None = None

    # ---- connection events -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        self.state.connections.add(self)
        self.state.ensure_sweeper()
        self.server = address_of(transport.get_extra_info("sockname"))
        self.client = address_of(transport.get_extra_info("peername"))
        if transport.get_extra_info("sslcontext"):
            self.scheme = "https"
        # The header-read deadline runs from accept (RFC 9112 section 9.5 leaves it to us).
        self._set_timer(self.config.timeout_header_read, self._header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.state.connections.discard(self)
        self._cancel_timer()
        if self.websocket is not None:
            self.websocket.connection_lost()
        for cycle in (self.cycle, self.parsing, *self.pipeline):
            if cycle is not None:
                cycle.on_disconnect()
        self.release_drain_waiters()

    def eof_received(self) -> bool | None:
        return None  # Close our side too; a half-closed client gets no more responses.

    def data_received(self, data: bytes) -> None:
        if self.websocket is not None:
            self.websocket.data_received(data)
            return
        if self.idle:
            self.idle = False
            if self.cycle is None:
                # A new request began on a kept-alive connection: its head has a deadline too.
                self._set_timer(self.config.timeout_header_read, self._header_timeout)
        try:
            events = self.parser.feed(data)
        except RemoteProtocolError as exc:
            self._on_parse_error(exc)
            return
        # A request is dispatched once the events that came with its head are applied, so a
        # request that arrived whole reaches the app complete (and may be answered at once).
        ready: RequestCycle | None = None
        for kind, payload in events:
            if kind == BODY:
                parsing = self.parsing
                if parsing is not None:
                    parsing.on_body(payload)
            elif kind == HEAD:
                if ready is not None:
                    self._dispatch(ready)
                ready = self._on_head(payload)
            else:
                parsing = self.parsing
                if parsing is not None:
                    parsing.on_end()
                self.parsing = None
        if ready is not None:
            self._dispatch(ready)
        # The parser keeps an error found after complete requests for its next feed; the client
        # may send nothing more, so report it now (answered in order, after those requests).
        pending = self.parser.pending_error
        if pending is not None and self.websocket is None and not self.closed:
            self._on_parse_error(pending)

    def _dispatch(self, cycle: RequestCycle) -> None:
        if self.closed:
            return
        if self.cycle is None:
            self._start(cycle)
        else:
            self.pipeline.append(cycle)
            self.pause_reading()  # One request at a time: the rest wait in the socket buffer.

    def _on_head(self, head: RequestHead) -> RequestCycle | None:
        self._cancel_timer()
        try:
            raw_path, query = split_target(head.target)
        except RemoteProtocolError as exc:
            self._on_parse_error(exc)
            return None
        path = decode_path(raw_path)
        root_path = self.config.root_path
        scope: Scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": head.http_version,
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,
            "method": head.method,
            "root_path": root_path,
            "path": root_path + path if root_path else path,
            "raw_path": raw_path,
            "query_string": query,
            "headers": head.headers,
            "state": self.state.app_state.copy(),
            "extensions": _extensions_for(head),
        }
        if self.state.proxy_trusted is not None:
            self.state.apply_proxy_headers(scope)
        if head.upgrade is not None and is_websocket_upgrade(head) and self.cycle is None:
            self._start_websocket(scope, head)
            return None
        cycle = RequestCycle(self, scope, head)
        self.parsing = cycle
        if self.state.limit_reached():
            cycle.reject = 503
        return cycle

    def _start_websocket(self, scope: Scope, head: RequestHead) -> None:
        del scope["method"]
        scope["type"] = "websocket"
        scope["scheme"] = "wss" if self.scheme == "https" else "ws"
        session = self.websocket = WebSocketSession(self, scope, head)
        task = session.start(self.app, self.parser.upgrade_tail)
        self.state.tasks.add(task)
        task.add_done_callback(self.state.tasks.discard)

    def _start(self, cycle: RequestCycle) -> None:
        self.cycle = cycle
        if cycle.reject:
            cycle.send_error(cycle.reject, close=False)
            return
        start_eagerly(self.state, cycle.run(self.app))

    def on_response_complete(self, cycle: RequestCycle) -> None:
        """Called once a response is fully written: close, or go on with the next request."""
        if cycle is not self.cycle:
            return
        self.cycle = None
        self.state.total_requests += 1
        if not cycle.keep_alive or self.state.should_exit or self.closed:
            self.close()
            return
        if self.pending_error is not None:
            self._send_error_and_close(self.pending_error)
            return
        if self.pipeline:
            self._start(self.pipeline.popleft())
            if not self.pipeline:
                self.resume_reading()
            return
        self.resume_reading()
        if self.parsing is None:
            self.idle = True
            self._set_timer(self.config.timeout_keep_alive, self.close)

    def _on_parse_error(self, exc: RemoteProtocolError) -> None:
        logger.debug("bad request from %s: %s", self.client, exc)
        cycle = self.cycle
        if cycle is not None and self.parsing is cycle:
            # The body of the request being served is broken: its app would wait forever for the
            # rest. Answer now if nothing went out yet, tell the app, and close.
            self.parsing = None
            cycle.keep_alive = False
            if cycle.nothing_written:
                cycle.send_error(exc.status_code, close=True)
            cycle.on_disconnect()
            self.close()
            return
        if cycle is not None:
            # Answer in order: after the response in progress.
            self.pending_error = exc
            self.pause_reading()
            if self.parsing is not None and self.parsing is not self.cycle:
                self.pipeline = deque(c for c in self.pipeline if c is not self.parsing)
            return
        self._send_error_and_close(exc)

    def _send_error_and_close(self, exc: RemoteProtocolError) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(error_response(exc.status_code, str(exc)))
        self.close()

    def _header_timeout(self) -> None:
        if self.cycle is not None:
            return
        if not self.idle and self.transport is not None and not self.closed:
            self.transport.write(error_response(408))
        self.close()

    # ---- helpers -----------------------------------------------------------------------------

    def _set_timer(self, delay: float, callback: Any) -> None:
        # No TimerHandle per request: ServerState sweeps the connections' deadlines.
        self.deadline = self.loop.time() + delay
        self.on_deadline = callback

    def _cancel_timer(self) -> None:
        self.deadline = 0.0

    def close(self) -> None:
        self._cancel_timer()
        super().close()

    def shutdown(self) -> None:
        """Graceful shutdown: close if idle, else close once the current response is done."""
        if self.websocket is not None:
            self.websocket.shutdown()
        elif self.cycle is None:
            self.close()
        else:
            self.cycle.keep_alive = False


_CONTENT_LENGTH, _TRANSFER_ENCODING, _CONNECTION, _DATE, _SERVER = range(5)
_SPECIAL_HEADERS = {
    b"content-length": _CONTENT_LENGTH,
    b"transfer-encoding": _TRANSFER_ENCODING,
    b"connection": _CONNECTION,
    b"date": _DATE,
    b"server": _SERVER,
}

_BASE_EXTENSIONS: dict[str, dict[str, Any]] = {
    "http.response.pathsend": {},
    "http.response.early_hint": {},
}


def _extensions_for(head: RequestHead) -> dict[str, dict[str, Any]]:
    extensions = dict(_BASE_EXTENSIONS)
    for name, value in head.headers:
        if name == b"te" and b"trailers" in value.lower():
            extensions["http.response.trailers"] = {}
    return extensions


class RequestCycle:
    """One request and its response: the ASGI `receive` and `send` for the app."""

    __slots__ = (
        "body",
        "body_buffered",
        "body_delivered",
        "body_done",
        "body_received",
        "body_waiter",
        "chunked",
        "disconnected",
        "expected_length",
        "head",
        "head_parts",
        "header_count",
        "keep_alive",
        "more_body",
        "no_body",
        "protocol",
        "reject",
        "response_complete",
        "response_started",
        "scope",
        "sent_length",
        "started_at",
        "status",
        "trailers_allowed",
        "trailers_expected",
        "trailers_started",
        "transport",
        "waiting_for_continue",
    )

    def __init__(self, protocol: HTTPProtocol, scope: Scope, head: RequestHead) -> None:
        self.protocol = protocol
        self.transport = protocol.transport
        self.scope = scope
        self.head = head
        self.keep_alive = head.keep_alive
        self.reject = 0
        # Request body.
        self.body: list[bytes] = []  # Received, not yet read by the app; kept as chunks (no copies).
        self.body_buffered = 0
        self.more_body = True
        self.body_waiter: asyncio.Future[None] | None = None
        self.waiting_for_continue = head.expect_continue and head.http_version == "1.1"
        self.body_received = 0
        self.body_delivered = False  # The final http.request message went to the app.
        # Response.
        self.response_started = False
        self.response_complete = False
        self.disconnected = False
        self.chunked = False
        self.no_body = head.method == "HEAD"
        self.expected_length: int | None = None
        self.sent_length = 0
        self.head_parts: list[bytes] | None = None  # The response head, until its framing is known.
        self.header_count = 0
        self.body_done = False  # The last body message (or the file) was written.
        self.trailers_allowed = scope["extensions"].get("http.response.trailers") is not None
        self.trailers_expected = False
        self.trailers_started = False
        self.status = 0
        self.started_at = time.perf_counter() if protocol.config.access_log else 0.0

    # ---- called by the protocol --------------------------------------------------------------

    def on_body(self, data: bytes) -> None:
        self.body.append(data)
        self.body_buffered += len(data)
        self.body_received += len(data)
        limit = self.protocol.limits.max_body_bytes
        if limit is not None and self.body_received > limit:
            self.body.clear()
            self.body_buffered = 0
            self._too_large()
            return
        if self.body_buffered > HIGH_WATER:
            self.protocol.pause_reading()
        self._wake_body()

    def on_end(self) -> None:
        self.more_body = False
        self._wake_body()

    def on_disconnect(self) -> None:
        self.disconnected = True
        self._wake_body()

    def _wake_body(self) -> None:
        waiter = self.body_waiter
        if waiter is not None:
            self.body_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _too_large(self) -> None:
        self.keep_alive = False
        if not self.response_started and not self.disconnected:
            self.send_error(413, close=True)
        self.disconnected = True
        self.protocol.close()

    def send_error(self, status: int, close: bool) -> None:
        if close:
            self.keep_alive = False
        self.response_started = True
        self.status = status
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(error_response(status, close=not self.keep_alive))
        self._complete()

    # ---- the app -----------------------------------------------------------------------------

    async def run(self, app: ASGIApp) -> None:
        try:
            await app(self.scope, self.receive, self.send)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                logger.debug("request cancelled")
            else:
                logger.error("Exception in ASGI application", exc_info=exc)
            if self.nothing_written and not self.disconnected:
                self.send_error(500, close=True)
            elif not self.response_complete:
                self.keep_alive = False
                self.protocol.close()
            if isinstance(exc, asyncio.CancelledError):
                raise
        else:
            if not self.response_started and not self.disconnected:
                logger.error("ASGI callable returned without starting a response")
                self.send_error(500, close=True)
            elif not self.response_complete and not self.disconnected:
                logger.error("ASGI callable returned without completing the response")
                self.keep_alive = False
                self.protocol.close()

    @property
    def nothing_written(self) -> bool:
        """No byte of the response went out yet: an error can still be answered with a 500."""
        return not self.response_started or self.head_parts is not None

    async def receive(self) -> Message:
        if self.waiting_for_continue:
            self.waiting_for_continue = False
            transport = self.transport
            if transport is not None and not transport.is_closing() and not self.response_started:
                transport.write(_CONTINUE)
        if not self.disconnected and not self.response_complete and not self.body:
            if self.more_body or self.body_delivered:
                # Wait for more body, or (all of it delivered) for the end of the exchange.
                if not self.protocol.pipeline:
                    self.protocol.resume_reading()
                waiter = self.body_waiter = self.protocol.loop.create_future()
                await waiter
        if self.disconnected or self.response_complete:
            return {"type": "http.disconnect"}
        if not self.more_body:
            self.body_delivered = True
        chunks = self.body
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self.body_buffered = 0
        if self.more_body and self.protocol.reading_paused and self.protocol.cycle is self:
            self.protocol.resume_reading()
        return {"type": "http.request", "body": body, "more_body": self.more_body}

    async def send(self, message: Message) -> None:
        if self.disconnected:
            raise ClientDisconnected("client disconnected")
        kind = message["type"]
        if kind == "http.response.body":
            if not self.response_started:
                raise LocalProtocolError("http.response.body sent before http.response.start")
            if self.response_complete or self.body_done:
                raise LocalProtocolError("http.response.body sent after the response completed")
            self._write_body(message.get("body", b""), message.get("more_body", False))
            if self.protocol.writing_paused:
                await self.protocol.drain()
        elif kind == "http.response.start":
            if self.response_started:
                raise LocalProtocolError("http.response.start sent twice")
            self._start_response(message)
        elif kind == "http.response.trailers":
            if not self.body_done or not self.trailers_expected:
                raise LocalProtocolError("http.response.trailers sent out of order")
            self._write_trailers(message)
        elif kind == "http.response.pathsend":
            if not self.response_started or self.response_complete or self.body_done:
                raise LocalProtocolError("http.response.pathsend sent out of order")
            await self._send_file(message["path"])
        elif kind == "http.response.early_hint":
            self._write_early_hint(message)
        else:
            raise LocalProtocolError(f"unexpected ASGI message type {kind!r}")

    def _start_response(self, message: Message) -> None:
        status = message["status"]
        self.status = status
        self.response_started = True
        self.waiting_for_continue = False
        config = self.protocol.config
        self.trailers_expected = bool(message.get("trailers")) and self.trailers_allowed
        parts = [status_line(status)]
        has_date = has_server = False
        special = _SPECIAL_HEADERS
        for name, value in message.get("headers", ()):
            kind = special.get(name.lower())
            if kind is not None:
                if kind == _CONTENT_LENGTH:
                    if self.trailers_expected:
                        continue  # Trailers need chunked framing.
                    self.expected_length = int(value)
                elif kind == _TRANSFER_ENCODING:
                    continue  # We frame the body ourselves.
                elif kind == _CONNECTION:
                    if b"close" in value.lower():
                        self.keep_alive = False
                elif kind == _DATE:
                    has_date = True
                else:
                    has_server = True
            parts += (name, b": ", value, b"\r\n")
        self.header_count = (len(parts) - 1) // 4  # Each app header is 4 parts; see _finish_head.
        if config.server_header and not has_server:
            parts.append(b"server: bridges\r\n")
        if config.date_header and not has_date:
            parts.append(DATE.get())
        extra = self.protocol.state.extra_headers
        if extra:
            parts.append(extra)
        if status in _NO_BODY_STATUSES or status < 200:
            self.no_body = True
        self.head_parts = parts

    def _finish_head(self, length: int | None = None) -> bytes:
        """Complete the response head with its framing; `length` is a size known only now."""
        parts = self.head_parts
        if parts is None:
            raise LocalProtocolError("the response head was already sent")
        if length is not None and self.expected_length is None and not self.no_body:
            self.expected_length = length
            parts.append(b"content-length: %d\r\n" % length)
        elif self.no_body or self.expected_length is not None:
            pass
        elif self.scope["http_version"] == "1.1":
            self.chunked = True
            parts.append(b"transfer-encoding: chunked\r\n")
        else:
            self.keep_alive = False  # HTTP/1.0 without a length: the close ends the body.
        if not self.keep_alive:
            parts.append(b"connection: close\r\n")
        elif self.scope["http_version"] == "1.0":
            parts.append(b"connection: keep-alive\r\n")
        parts.append(b"\r\n")
        head = b"".join(parts)
        # Every line is ours: a CR, LF or NUL inside a name or value shows up as an extra one.
        lines = len(parts) - 3 * self.header_count + self.protocol.state.extra_header_lines
        if head.count(b"\n") != lines or head.count(b"\r") != lines or b"\x00" in head:
            raise LocalProtocolError("invalid character in a response header")
        self.head_parts = None
        return head

    def _write_body(self, body: bytes, more_body: bool) -> None:
        out: list[bytes] = []
        if self.head_parts is not None:
            out.append(self._finish_head(None if more_body or self.trailers_expected else len(body)))
        if body and not self.no_body:
            self.sent_length += len(body)
            if self.expected_length is not None:
                if self.sent_length > self.expected_length:
                    raise LocalProtocolError("response body longer than its Content-Length")
                out.append(body)
            elif self.chunked:
                out += (b"%x\r\n" % len(body), body, b"\r\n")
            else:
                out.append(body)
        if not more_body:
            self.body_done = True
            if self.chunked and not self.no_body and not self.trailers_expected:
                out.append(b"0\r\n\r\n")
            expected = self.expected_length
            if expected is not None and self.sent_length < expected and not self.no_body:
                logger.error("response body shorter than its Content-Length; closing")
                self.keep_alive = False
        self._write(out)
        if not more_body and not self.trailers_expected:
            self._complete()

    def _write(self, out: list[bytes]) -> None:
        transport = self.transport
        if out and transport is not None and not transport.is_closing():
            if len(out) == 1:
                transport.write(out[0])
            elif any(len(piece) > _JOIN_LIMIT for piece in out):
                transport.writelines(out)  # Large bodies: no copy into one bytes object.
            else:
                transport.write(b"".join(out))

    def _write_trailers(self, message: Message) -> None:
        """Write trailer fields after the last chunk (RFC 9112 section 7.1.2)."""
        framed = self.chunked and not self.no_body
        out: list[bytes] = []
        if framed and not self.trailers_started:
            out.append(b"0\r\n")
        self.trailers_started = True
        for name, value in message.get("headers", ()):
            if b"\n" in value or b"\r" in value or b"\n" in name or b"\r" in name:
                raise LocalProtocolError(f"invalid trailer {name!r}")
            if framed:
                out += (name, b": ", value, b"\r\n")
        more = message.get("more_trailers", False)
        if framed and not more:
            out.append(b"\r\n")
        self._write(out)
        if not more:
            self._complete()

    def _write_early_hint(self, message: Message) -> None:
        if self.response_started or self.scope["http_version"] != "1.1":
            return  # Too late, or a client that may not understand 1xx responses.
        lines = [b"HTTP/1.1 103 Early Hints\r\n"]
        for link in message.get("links", ()):
            if b"\n" in link or b"\r" in link:
                raise LocalProtocolError("invalid Link in early hint")
            lines += (b"link: ", link, b"\r\n")
        lines.append(b"\r\n")
        self._write(lines)

    async def _send_file(self, path: str) -> None:
        """`http.response.pathsend`: the whole file as the body, with sendfile(2) when possible."""
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            self._write([self._finish_head(size)] if self.head_parts is not None else [])
            if self.expected_length is not None and self.expected_length != size:
                raise LocalProtocolError("pathsend file size differs from the Content-Length sent")
            if not self.no_body and size:
                await self._copy_file(file, size)
        self.body_done = True
        self.sent_length += size if not self.no_body else 0
        self._complete()

    async def _copy_file(self, file: Any, size: int) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            raise ClientDisconnected("client disconnected")
        loop = self.protocol.loop
        try:
            await loop.sendfile(transport, file, 0, size, fallback=False)
            return
        except (NotImplementedError, RuntimeError, AttributeError):
            pass  # uvloop and TLS transports: copy through user space.
        file.seek(0)
        remaining = size
        while remaining > 0:
            block = file.read(min(remaining, 256 * 1024))
            if not block:
                raise LocalProtocolError("file shrank while it was being sent")
            remaining -= len(block)
            if transport.is_closing():
                raise ClientDisconnected("client disconnected")
            transport.write(block)
            await self.protocol.drain()

    def _complete(self) -> None:
        self.response_complete = True
        self._wake_body()
        if self.protocol.config.access_log:
            self._log_access()
        if self.more_body and not self.disconnected:
            # The app did not read the whole body: keep-alive would need it drained first.
            self.keep_alive = False
        self.protocol.on_response_complete(self)

    def _log_access(self) -> None:
        scope = self.scope
        client = scope["client"]
        query = scope["query_string"]
        access_logger.info(
            '%s - "%s %s%s HTTP/%s" %d %d %.1fms',
            f"{client[0]}:{client[1]}" if client else "-",
            scope["method"],
            scope["raw_path"].decode("latin-1"),
            "?" + query.decode("latin-1") if query else "",
            scope["http_version"],
            self.status,
            self.sent_length,
            (time.perf_counter() - self.started_at) * 1000,
        )
