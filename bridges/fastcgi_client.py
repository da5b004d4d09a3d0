"""Mount a FastCGI responder (php-fpm, fcgiwrap) as an ASGI app: `FastCGIToASGI("127.0.0.1:9000")`.

Each HTTP request becomes a FastCGI request on a pooled connection: the scope becomes CGI
meta-variables (through `translate.scope_to_cgi_variables`, plus SCRIPT_FILENAME for php-fpm), the
request body streams out as STDIN while the response streams back from STDOUT through the shared
CGI response parser, and STDERR goes to logging. Failures get the answers nginx gives: backend
down 502, timeout 504, malformed output 502 — each with one clear log line, never a hang.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import re
import socket
import sys
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._exceptions import ConfigurationError, RemoteProtocolError
from ._gateway import (
    MAX_LOCAL_REDIRECTS,
    BodyTooLarge,
    ClientGone,
    ResponseRelay,
    SpooledBody,
    has_undeclared_body,
    redirected_scope,
    send_plain,
)
from ._types import Receive, Scope, Send
from .fastcgi_protocol import (
    CONNECTION_CLOSED,
    NEED_DATA,
    AbortRequest,
    BeginRequest,
    EndRequest,
    FastCGIConnection,
    Params,
    Role,
    Stderr,
    Stdin,
    Stdout,
)
from .translate import scope_to_cgi_variables, split_path

__all__ = ["FastCGIToASGI", "parse_address"]

logger = logging.getLogger("bridges.fastcgi.client")

_READ_SIZE = 64 * 1024
_REPLAY_LIMIT = 64 * 1024  # Request bytes kept to retry once on a stale pooled connection.
_PAUSE_AT = 256 * 1024  # Received bytes not yet relayed at which reading from the backend pauses.


@dataclass(frozen=True)
class Address:
    host: str | None
    port: int | None
    path: str | None

    def __str__(self) -> str:
        return f"unix:{self.path}" if self.path else f"{self.host}:{self.port}"


def parse_address(address: str) -> Address:
    """`host:port`, `[v6]:port` or `unix:/path/to.sock` (raise ConfigurationError otherwise)."""
    if address.startswith("unix:"):
        path = address[5:]
        if not path:
            raise ConfigurationError("a unix FastCGI address needs a path: unix:/run/php/php-fpm.sock")
        return Address(None, None, path)
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ConfigurationError(f"FastCGI address {address!r} must be host:port or unix:/path")
    return Address(host.strip("[]"), int(port), None)


class _Backend(asyncio.Protocol):
    """One connection to the responder: received records are decoded as they arrive.

    Reading pauses while more than `_PAUSE_AT` decoded-but-unread bytes wait (a slow client
    slows the responder down); writing waits in `drain()` while the transport's buffer is full.
    """

    def __init__(self) -> None:
        self.codec = FastCGIConnection("webserver")
        self.transport: asyncio.Transport | None = None
        self.reused = False
        self.closed = False
        self.error: OSError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._write_paused = False
        self._read_paused = False
        self._unread = 0
        self.idle_timer: asyncio.TimerHandle | None = None

    # Protocol callbacks.
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport.

    def data_received(self, data: bytes) -> None:
        self.codec.receive_data(data)
        self._unread += len(data)
        if self._unread > _PAUSE_AT and not self._read_paused and self.transport is not None:
            self._read_paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.codec.receive_data(b"")
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if isinstance(exc, OSError):
            self.error = exc
        self.codec.receive_data(b"")
        self._wake()
        self.resume_writing()
        if self.idle_timer is not None:
            self.idle_timer.cancel()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # Used by the request.
    def write(self, data: bytes) -> None:
        if self.closed or self.transport is None:
            raise ConnectionResetError("the FastCGI connection is closed")
        self.transport.write(data)

    async def drain(self) -> None:
        if self.closed:
            raise ConnectionResetError("the FastCGI connection is closed")
        if self._write_paused:
            self._drain_waiter = asyncio.get_running_loop().create_future()
            await self._drain_waiter
            if self.closed:
                raise ConnectionResetError("the FastCGI connection is closed")

    async def next_event(self, timeout: float) -> object:
        """The next record event (or CONNECTION_CLOSED); TimeoutError after `timeout` s of silence."""
        while True:
            event = self.codec.next_event()
            if event is not NEED_DATA:
                return event
            if self.error is not None and self.closed:
                raise self.error
            self._unread = 0  # Everything received so far is decoded.
            if self._read_paused and self.transport is not None:
                self._read_paused = False
                self.transport.resume_reading()
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            timer = loop.call_later(timeout, _time_out, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None

    def at_eof(self) -> bool:
        return self.closed

    def close(self) -> None:
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        self.closed = True


def _time_out(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(asyncio.TimeoutError())


class _StaleConnection(Exception):
    """A pooled connection turned out to be closed before the responder answered."""


class _Status(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class FastCGIToASGI:
    """An ASGI app that forwards each request to a FastCGI responder.

    `document_root` is where the responder's scripts live (php-fpm needs SCRIPT_FILENAME =
    document_root + script path); `index` is appended to paths ending in "/";
    `script_pattern` splits the path into SCRIPT_NAME and PATH_INFO like nginx's
    `fastcgi_split_path_info` (default `^(.+?\\.php)(/.*)?$`, applied when it matches);
    `params` are extra variables (they win); timeouts are in seconds. A body sent without a
    length (chunked) is spooled, up to `max_spool_bytes` (then 413), to declare its length.

    At most `max_connections` requests talk to the responder at once (the rest wait). With
    `keep_conn` (FCGI_KEEP_CONN) connections are kept and reused; php-fpm then ties a worker to
    each kept connection, so keep `max_connections` at or below `pm.max_children`. Without it
    (the default, as nginx's) each request has its own connection.
    """

    def __init__(
        self,
        address: str,
        *,
        document_root: str | None = None,
        index: str = "index.php",
        script_pattern: str | None = r"^(.+?\.php)(/.*)?$",
        params: Mapping[str, str] | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        max_connections: int = 16,
        keep_conn: bool = False,
        idle_timeout: float = 10.0,
        pass_authorization: bool = True,
        max_spool_bytes: int = 1024**3,
    ) -> None:
        self.address = parse_address(address)
        self.document_root = os.path.abspath(document_root) if document_root else None
        self.index = index
        self.script_pattern = re.compile(script_pattern) if script_pattern else None
        self.params = dict(params or {})
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        if max_connections < 1:
            raise ConfigurationError("max_connections must be at least 1")
        self.max_connections = max_connections
        self.keep_conn = keep_conn
        self.idle_timeout = idle_timeout
        self._busy = 0  # Requests talking to the responder now (at most max_connections).
        self._queue: deque[asyncio.Future[None]] = deque()  # Requests waiting for a slot.
        self.pass_authorization = pass_authorization
        self.max_spool_bytes = max_spool_bytes
        self._idle: deque[_Backend] = deque()

    # ---- variables -----------------------------------------------------------------------------

    def variables_for(self, scope: Scope) -> dict[str, str]:
        """The FastCGI PARAMS for a request (CGI/1.1 meta-variables plus SCRIPT_FILENAME)."""
        root_path = scope.get("root_path", "")
        _, path = split_path(scope["path"], root_path)
        if path.endswith("/") and self.index:
            path += self.index
        script, path_info = path, ""
        if self.script_pattern is not None:
            match = self.script_pattern.match(path)
            if match:
                script, path_info = match.group(1), match.group(2) or ""
        extra: dict[str, str] = {"SERVER_SOFTWARE": "bridges"}
        if self.document_root is not None:
            extra["SCRIPT_FILENAME"] = self.document_root + script
        extra.update(self.params)
        return scope_to_cgi_variables(
            scope,
            script_name=root_path.rstrip("/") + script,
            path_info=path_info,
            document_root=self.document_root,
            pass_authorization=self.pass_authorization,
            extra=extra,
        )

    # ---- connections ---------------------------------------------------------------------------

    async def _connect(self) -> _Backend:
        while self._idle:
            backend = self._idle.pop()
            if backend.idle_timer is not None:
                backend.idle_timer.cancel()
                backend.idle_timer = None
            if not backend.closed:
                backend.reused = True
                return backend
        loop = asyncio.get_running_loop()
        address = self.address
        unix = address.path is not None
        target: Any = address.path if unix else (address.host, address.port)
        try:
            if not unix:
                family = socket.AF_INET6 if ":" in (address.host or "") else socket.AF_INET
                if not _is_ip_literal(address.host or ""):
                    infos = await loop.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM)
                    family, target = infos[0][0], infos[0][4]
            sock = socket.socket(socket.AF_UNIX if unix else family, socket.SOCK_STREAM)
        except OSError as exc:
            raise _Status(502, f"FastCGI backend {address} is unreachable: {exc.strerror or exc}") from None
        try:
            sock.setblocking(False)
            try:
                sock.connect(target)  # A unix socket connects at once, or fails (EAGAIN: backlog full).
            except BlockingIOError:
                if unix:
                    raise
                await asyncio.wait_for(loop.sock_connect(sock, target), self.connect_timeout)
            if unix:
                _, backend = await loop.create_unix_connection(_Backend, sock=sock)
            else:
                _, backend = await loop.create_connection(_Backend, sock=sock)
        except asyncio.TimeoutError:
            sock.close()
            raise _Status(504, f"connecting to FastCGI backend {address} timed out") from None
        except OSError as exc:
            sock.close()
            raise _Status(502, f"FastCGI backend {address} is unreachable: {exc.strerror or exc}") from None
        except BaseException:
            sock.close()
            raise
        return backend

    def _release(self, backend: _Backend) -> None:
        if self.keep_conn and len(self._idle) < self.max_connections and not backend.closed:
            backend.codec = FastCGIConnection("webserver")
            backend.idle_timer = asyncio.get_running_loop().call_later(
                self.idle_timeout, self._expire, backend
            )
            self._idle.append(backend)
        else:
            backend.close()

    def _expire(self, backend: _Backend) -> None:
        """Close a connection kept idle too long (it holds one of php-fpm's workers)."""
        backend.idle_timer = None
        try:
            self._idle.remove(backend)
        except ValueError:
            pass
        backend.close()

    # ---- the ASGI app --------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            message = await receive()
            if message["type"] == "websocket.connect":
                await send({"type": "websocket.close", "code": 1000})
        elif kind == "http":
            await self._http(scope, receive, send)
        else:
            raise ConfigurationError(f"FastCGIToASGI cannot serve scope type {kind!r}")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.close_idle()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def close_idle(self) -> None:
        """Close the kept connections (each holds a php-fpm worker while it is open)."""
        while self._idle:
            self._idle.pop().close()

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        spooled: SpooledBody | None = None
        if has_undeclared_body(scope):
            # A responder reads exactly CONTENT_LENGTH bytes (php-fpm does): a chunked upload is
            # spooled first so its length can be declared, as nginx does by default.
            try:
                spooled = await SpooledBody.read(receive, self.max_spool_bytes)
            except ClientGone:
                return
            except BodyTooLarge:
                await send_plain(send, 413)
                return
            scope = dict(scope)
            scope["headers"] = [
                *((n, v) for n, v in scope["headers"] if n != b"transfer-encoding"),
                (b"content-length", str(spooled.size).encode()),
            ]
            receive = spooled.receive
        try:
            await self._serve(scope, receive, send)
        finally:
            if spooled is not None:
                spooled.close()

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = _RequestBody(receive, empty=not _declares_body(scope))
        for _ in range(MAX_LOCAL_REDIRECTS + 1):
            try:
                location = await self._exchange(scope, body, send)
            except _Status as failure:
                logger.error("%s (%s %s)", failure, scope.get("method"), scope.get("path"))
                await send_plain(send, failure.status)
                return
            if location is None:
                return
            # RFC 3875 section 6.2.2: a local redirect is served again, internally, as a GET.
            scope = redirected_scope(scope, location)
            body = _RequestBody(None)
        logger.error("more than %d local redirects for %s", MAX_LOCAL_REDIRECTS, scope.get("path"))
        await send_plain(send, 502)

    async def _exchange(self, scope: Scope, body: _RequestBody, send: Send) -> bytes | None:
        """One FastCGI request; returns a local redirect's location, or None when answered."""
        variables = self.variables_for(scope)
        params = {name.encode("latin-1"): value.encode("latin-1") for name, value in variables.items()}
        await self._take_slot()
        try:
            for attempt in (1, 2):
                backend = await self._connect()
                try:
                    return await self._run(backend, params, body, send)
                except _StaleConnection:
                    backend.close()
                    if attempt == 2 or not body.replayable:
                        raise _Status(502, f"FastCGI backend {self.address} closed the connection") from None
                    body.rewind()
                except BaseException:
                    backend.close()
                    raise
        finally:
            self._give_slot()
        raise AssertionError("unreachable")

    async def _take_slot(self) -> None:
        """Wait for one of the `max_connections` slots (first come, first served)."""
        if self._busy < self.max_connections and not self._queue:
            self._busy += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(waiter)
        try:
            await waiter  # _give_slot hands its slot over: _busy is unchanged.
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._give_slot()  # Handed over, but this request is gone: pass it on.
            else:
                self._queue.remove(waiter)
            raise

    def _give_slot(self) -> None:
        while self._queue:
            waiter = self._queue.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._busy -= 1

    async def _run(
        self, backend: _Backend, params: dict[bytes, bytes], body: _RequestBody, send: Send
    ) -> bytes | None:
        codec = backend.codec
        request_id = 1
        head = codec.send(BeginRequest(request_id, Role.RESPONDER, self.keep_conn)) + codec.send(
            Params(request_id, params)
        )
        pump: asyncio.Future[None] | None = None
        if body.empty:  # Nothing to stream: the end of STDIN goes out with the head.
            head += codec.send(Stdin(request_id, b"", end=True))
        try:
            backend.write(head)
        except (OSError, RuntimeError):
            raise _StaleConnection from None
        if not body.empty:
            pump = asyncio.ensure_future(self._pump_body(backend, body, request_id))
        relay = ResponseRelay(send)
        arrived: deque[object] = deque()  # Events already received, read ahead of their turn.
        try:
            while True:
                try:
                    event = arrived.popleft() if arrived else await backend.next_event(self.read_timeout)
                    if isinstance(event, Stdout) and event.data and not arrived:
                        # Is this the last of the output? Then it leaves with the response's end.
                        ahead = codec.next_event()
                        if ahead is not NEED_DATA:
                            arrived.append(ahead)
                except asyncio.TimeoutError:
                    raise _Status(504, f"FastCGI backend {self.address} did not answer in time") from None
                except RemoteProtocolError as exc:
                    raise _Status(502, str(exc)) from None
                except OSError as exc:
                    if backend.reused and not relay.got_output:
                        raise _StaleConnection from None
                    raise _Status(502, f"reading from FastCGI backend {self.address} failed: {exc}") from None
                if event is CONNECTION_CLOSED:
                    if body.client_gone:
                        return None
                    if backend.reused and not relay.got_output:
                        raise _StaleConnection
                    if relay.started:
                        raise ConnectionError("FastCGI backend closed the connection mid-response")
                    raise _Status(502, f"FastCGI backend {self.address} closed the connection early")
                if isinstance(event, Stdout):
                    last = bool(arrived) and _ends_output(arrived[0])
                    location = await relay.feed(event.data, end=last)
                    if location is not None:
                        backend.close()  # The rest of this response is not wanted.
                        return location
                elif isinstance(event, Stderr):
                    for line in event.data.decode("utf-8", "replace").splitlines():
                        logger.warning("FastCGI stderr: %s", line)
                elif isinstance(event, EndRequest):
                    if event.app_status:
                        logger.info("FastCGI request ended with app status %d", event.app_status)
                    location = await relay.feed(b"")
                    self._release(backend)
                    return location
        except RemoteProtocolError as exc:  # Malformed CGI output.
            if relay.started:
                raise ConnectionError(f"malformed output from FastCGI backend: {exc}") from exc
            raise _Status(502, f"malformed output from FastCGI backend: {exc}") from None
        except (asyncio.CancelledError, ClientGone):
            self._abort(backend, request_id)
            if body.client_gone or not isinstance(sys.exc_info()[1], asyncio.CancelledError):
                return None
            raise
        finally:
            if pump is not None:
                pump.cancel()

    def _abort(self, backend: _Backend, request_id: int) -> None:
        try:
            backend.write(backend.codec.send(AbortRequest(request_id)))
        except Exception:
            pass
        backend.close()

    async def _pump_body(self, backend: _Backend, body: _RequestBody, request_id: int) -> None:
        codec = backend.codec
        try:
            async for chunk in body:
                backend.write(codec.send(Stdin(request_id, chunk)))
                await backend.drain()
            backend.write(codec.send(Stdin(request_id, b"", end=True)))
        except ClientGone:
            self._abort(backend, request_id)  # The reader then sees the close and stops.
        except (OSError, RuntimeError):
            pass  # The reading side reports the broken connection.


def _ends_output(event: object) -> bool:
    """Whether `event` ends the responder's output (the end of STDOUT, or END_REQUEST)."""
    return isinstance(event, EndRequest) or (isinstance(event, Stdout) and event.end)


def _declares_body(scope: Scope) -> bool:
    """Whether the request has a body (RFC 9112 section 6.3: a length or a transfer coding)."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            return bool(value.strip() != b"0")
        if name == b"transfer-encoding":
            return True
    return False


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class _RequestBody:
    """The request body from `receive()`, kept (up to a limit) so a request can be retried once."""

    def __init__(self, receive: Receive | None, *, empty: bool = False) -> None:
        self.receive = receive
        self.empty = empty or receive is None  # Known to have no body: nothing to read or send.
        self.kept: list[bytes] = []
        self.kept_bytes = 0
        self.replayable = True
        self.done = receive is None
        self.position = 0
        self.client_gone = False

    def rewind(self) -> None:
        self.position = 0

    def __aiter__(self) -> _RequestBody:
        return self

    async def __anext__(self) -> bytes:
        if self.position < len(self.kept):
            self.position += 1
            return self.kept[self.position - 1]
        if self.done or self.receive is None:
            raise StopAsyncIteration
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                self.done = True
                self.client_gone = True
                raise ClientGone
            chunk: bytes = message.get("body", b"")
            if not message.get("more_body", False):
                self.done = True
            if chunk:
                self._keep(chunk)
                return chunk
            if self.done:
                raise StopAsyncIteration

    def _keep(self, chunk: bytes) -> None:
        if self.replayable and self.kept_bytes + len(chunk) <= _REPLAY_LIMIT:
            self.kept.append(chunk)
            self.kept_bytes += len(chunk)
            self.position = len(self.kept)
        else:
            self.replayable = False
            self.kept.clear()
            self.position = 0
