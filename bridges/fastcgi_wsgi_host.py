"""Serve a WSGI app as a FastCGI responder directly: a thread per connection, no event loop between.

`bridge serve wsgi_app --protocol fastcgi` takes this path. The ASGI path (WSGIToASGI on the
event loop host) hands every request from the loop to a pool thread and back, two thread
wake-ups per request; here the thread that accepted the connection reads the records, calls the
app and writes the response itself, with blocking sockets, as flup does. That wins for
connections that carry one request (nginx's default). A kept connection (FCGI_KEEP_CONN) would
hold its thread while idle, and its requests gain nothing from it: with `Config.fastcgi_wsgi`
"auto" (the default) such a connection goes to the event loop host, with the bytes read so far,
as soon as its first BEGIN_REQUEST says so. "direct" keeps every connection here; "asgi" (and
`--fastcgi-multiplex`) uses the event loop host for all.

Threads follow each other in `accept()` (leader/follower): one more thread starts when the last
one waiting in `accept()` takes a connection, up to `limit_concurrency` (default 1024); a thread
whose connection ends goes back to `accept()`, or ends when enough others already wait there.
Connections are never queued behind busy threads, so nginx's kept (`fastcgi_keep_conn`)
connections each keep their thread and never wait for one.

Records are decoded by the sans-I/O `fastcgi_protocol.FastCGIConnection`; PARAMS become the
environ through the same translation as the ASGI path (`gateway_variables_to_scope`, then
`scope_to_environ`), so an app sees the same environ either way.
"""

from __future__ import annotations

import errno
import logging
import socket
import threading
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ._exceptions import LocalProtocolError
from ._types import OptExcInfo, WriteCallable, WSGIApp
from .fastcgi_protocol import (
    CONNECTION_CLOSED,
    NEED_DATA,
    AbortRequest,
    BeginRequest,
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
from .translate import gateway_variables_to_scope, scope_to_environ
from .wsgi_to_asgi import _BAD_VALUE_CHARS, _HEADER_NAME, FileWrapper, _ErrorStream, check_start_response

if TYPE_CHECKING:
    from .config import Config

__all__ = ["DirectFastCGIServer"]

logger = logging.getLogger("bridges.fastcgi")
access_logger = logging.getLogger("bridges.access")

_READ_SIZE = 64 * 1024
_HOLD_BYTES = 16 * 1024
_SPARE_THREADS = 8  # Threads kept waiting in accept() per listening socket...
_LOW_WATER = 2  # ...topped up when fewer than this many are left waiting.
# The same answer WSGIToASGI gives for an app that fails before its response starts.
_ERROR_RESPONSE = (
    b"Status: 500 Internal Server Error\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: 21\r\n\r\nInternal Server Error"
)
_BAD_REQUEST = b"Status: 400 Bad Request\r\nContent-Type: text/plain\r\n\r\nBad Request\n"


class _ConnectionGone(Exception):
    """The web server closed the connection or aborted the request (a socket error of ours)."""


class DirectFastCGIServer:
    """Run `app` on `sockets` (bound, listening) until `stop()`."""

    def __init__(
        self,
        config: Config,
        app: WSGIApp,
        sockets: list[socket.socket],
        *,
        on_request: Any = None,
        app_state: Mapping[str, Any] | None = None,
        hand_off_kept: Any = None,
    ) -> None:
        self.config = config
        self.app = app
        self.sockets = sockets
        self.on_request = on_request or (lambda: None)
        # `hand_off_kept(conn, received)`: a connection whose first request asks FCGI_KEEP_CONN
        # goes to the event loop host with the bytes read so far (see the module docstring).
        self.hand_off_kept = hand_off_kept
        self.max_threads = config.limit_concurrency or 1024
        self.errors = _ErrorStream()
        self.stopping = False
        self._lock = threading.Lock()
        self._accepting: dict[int, int] = {}  # Per listening socket: threads waiting in accept().
        self._threads: set[threading.Thread] = set()
        self._connections: dict[socket.socket, bool] = {}  # Open connection -> a request is running.
        self._multiprocess = config.workers > 1

    # ---- threads ------------------------------------------------------------------------------

    def start(self) -> None:
        for sock in self.sockets:
            sock.setblocking(True)  # Threads wait in accept(); the kernel wakes one per connection.
            self._accepting[sock.fileno()] = 0
            self._spawn(sock, _SPARE_THREADS)

    def _spawn(self, listener: socket.socket, count: int = 1) -> None:
        """Start up to `count` more threads for `listener` (not with the lock held: a new
        thread must run before start() returns, and it takes the lock)."""
        threads = []
        with self._lock:
            for _ in range(count):
                if len(self._threads) >= self.max_threads or self.stopping:
                    break
                thread = threading.Thread(
                    target=self._follow, args=(listener,), name="bridges-fastcgi", daemon=True
                )
                self._threads.add(thread)
                self._accepting[listener.fileno()] += 1  # Counted as waiting from now on.
                threads.append(thread)
        for thread in threads:
            thread.start()

    def _follow(self, listener: socket.socket) -> None:
        key = listener.fileno()
        counted = True  # _spawn counted this thread as waiting in accept() already.
        try:
            while not self.stopping:
                if not counted:
                    with self._lock:
                        self._accepting[key] += 1
                counted = False
                try:
                    conn, _ = listener.accept()
                except OSError as exc:
                    with self._lock:
                        self._accepting[key] -= 1
                    if self.stopping or exc.errno in (errno.EBADF, errno.EINVAL, errno.ENOTSOCK):
                        return
                    if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                        logger.error("cannot accept a FastCGI connection: %s", exc)
                        time.sleep(0.1)
                    continue
                with self._lock:
                    self._accepting[key] -= 1
                    # Keep threads waiting in accept(): a burst of new connections (nginx opening
                    # its upstream connections) must not wait for threads started one by one.
                    wanted = _SPARE_THREADS - self._accepting[key] if self._accepting[key] < _LOW_WATER else 0
                    if self.stopping:
                        conn.close()
                        return
                    self._connections[conn] = False
                if wanted > 0:
                    self._spawn(listener, wanted)
                handed_off = False
                try:
                    handed_off = self._serve_connection(conn)
                finally:
                    with self._lock:
                        self._connections.pop(conn, None)
                    if not handed_off:
                        conn.close()
                with self._lock:
                    if self._accepting[key] >= _SPARE_THREADS:
                        return  # Enough others wait for the next connection.
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def stop(self, timeout: float | None) -> None:
        """Stop accepting, close idle connections, wait up to `timeout` s for running requests."""
        with self._lock:
            self.stopping = True
            for conn, running in self._connections.items():
                if not running:
                    _shut(conn)  # Its thread wakes from recv() with EOF and ends.
        self._wake_acceptors()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                threads = [t for t in self._threads if t is not threading.current_thread()]
                busy = [conn for conn, is_running in self._connections.items() if is_running]
            if not threads:
                break
            if deadline is not None and time.monotonic() >= deadline:
                if busy:
                    logger.warning("closing %d FastCGI requests still running after %ss", len(busy), timeout)
                with self._lock:
                    for conn in self._connections:
                        _shut(conn)
                self._wake_acceptors()
                for thread in threads:
                    thread.join(1.0)
                break
            self._wake_acceptors()
            threads[0].join(0.05)
        for sock in self.sockets:
            sock.close()

    def _wake_acceptors(self) -> None:
        """Connect to each listening socket once per thread still waiting in accept()."""
        for sock in self.sockets:
            with self._lock:
                waiting = self._accepting.get(sock.fileno(), 0)
            for _ in range(waiting):
                try:
                    address = sock.getsockname()
                    with socket.socket(sock.family, socket.SOCK_STREAM) as poke:
                        poke.settimeout(0.5)
                        poke.connect(address)
                except OSError:
                    break

    # ---- one connection -----------------------------------------------------------------------

    def _serve_connection(self, conn: socket.socket) -> bool:
        """Serve `conn` until it ends; True when it was handed to the event loop instead."""
        config = self.config
        codec = FastCGIConnection("application", max_params_bytes=config.max_header_bytes)
        reader = _RecordReader(conn, codec, self._values)
        if self.hand_off_kept is None:
            reader.received = None
        role = Role.RESPONDER
        keep_conn = False
        try:
            while True:
                try:
                    event = reader.next_event()
                except FastCGIProtocolError as exc:
                    logger.warning("FastCGI protocol error: %s", exc)
                    reader.received = None
                    if exc.reply:
                        conn.sendall(exc.reply)
                    if exc.close:
                        return False
                    continue
                if event is CONNECTION_CLOSED:
                    return False
                if isinstance(event, BeginRequest):
                    role, keep_conn = event.role, event.keep_conn
                    if reader.received is not None:
                        if keep_conn and not self.stopping:
                            self.hand_off_kept(conn, b"".join(reader.received))
                            return True
                        reader.received = None  # One request, then closed: served right here.
                elif isinstance(event, Params):
                    with self._lock:
                        self._connections[conn] = True
                    try:
                        self._run_request(conn, reader, event.request_id, role, event.params)
                    finally:
                        with self._lock:
                            self._connections[conn] = False
                    self.on_request()
                    if not keep_conn or self.stopping:
                        return False
                elif isinstance(event, GetValues):
                    reader.received = None  # Answered here: this connection stays here.
                    conn.sendall(codec.send(GetValuesResult(self._values(event.names))))
                elif isinstance(event, UnknownType):
                    reader.received = None
                    conn.sendall(codec.send(UnknownType(event.record_type)))
                # STDIN left over from a request the app did not read whole, DATA, ABORT_REQUEST
                # for a finished request: nothing to do.
        except (_ConnectionGone, OSError):
            return False

    def _values(self, names: tuple[bytes, ...]) -> dict[bytes, bytes]:
        known = {
            b"FCGI_MAX_CONNS": str(self.max_threads).encode(),
            b"FCGI_MAX_REQS": str(self.max_threads).encode(),
            b"FCGI_MPXS_CONNS": b"0",
        }
        return {name: known[name] for name in names if name in known}

    def _run_request(
        self,
        conn: socket.socket,
        reader: _RecordReader,
        request_id: int,
        role: Role,
        params: Mapping[bytes, bytes],
    ) -> None:
        codec = reader.codec
        config = self.config
        variables = {name.decode("latin-1"): value.decode("latin-1") for name, value in params.items()}
        try:
            scope = gateway_variables_to_scope(variables, root_path=config.root_path or None)
        except Exception as exc:
            logger.warning("bad FastCGI params: %s", exc)
            reader.skip_input(request_id)
            refusal = codec.send(Stdout(request_id, _BAD_REQUEST, end=True))
            conn.sendall(refusal + codec.send(EndRequest(request_id)))
            return
        body = _Input(reader, request_id, expect_body=role != Role.AUTHORIZER)
        environ = scope_to_environ(
            scope, wsgi_input=body, wsgi_errors=self.errors, multithread=True, multiprocess=self._multiprocess
        )
        environ["wsgi.file_wrapper"] = FileWrapper
        environ["asgi.scope"] = scope
        response = _Response(conn, codec, request_id)
        app_status = 0
        result: Iterable[bytes] | None = None
        try:
            result = self.app(environ, response.start_response)
            for chunk in result:
                if chunk:
                    response.write(chunk)
                if reader.aborted:
                    raise _ConnectionGone
            if not response.headers_set:
                raise LocalProtocolError("the WSGI app returned without calling start_response")
            response.finish()
        except _ConnectionGone:
            raise
        except Exception as exc:  # The app's own errors, OSError included (ours are _ConnectionGone).
            app_status = 1
            logger.error("Exception in WSGI application", exc_info=exc)
            if response.head_sent:
                raise _ConnectionGone from None  # Cut the response: the web server sees the close.
            conn.sendall(
                codec.send(Stdout(request_id, _ERROR_RESPONSE, end=True))
                + codec.send(EndRequest(request_id, 1))
            )
            response.status = 500
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                try:
                    close()
                except Exception as exc:
                    logger.error("Exception closing the WSGI app's response", exc_info=exc)
        if app_status == 0:
            conn.sendall(response.pending + codec.send(EndRequest(request_id, 0)))
        if reader.aborted:
            raise _ConnectionGone
        if config.access_log:
            query = scope.get("query_string", b"")
            access_logger.info(
                '%s - "%s %s%s" %d %d (FastCGI)',
                (scope.get("client") or ("-",))[0],
                scope.get("method"),
                scope.get("raw_path", b"").decode("latin-1"),
                "?" + query.decode("latin-1") if query else "",
                response.status,
                response.sent,
            )


def _shut(conn: socket.socket) -> None:
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class _RecordReader:
    """Blocking reads from one connection, decoded into events by the codec."""

    def __init__(self, conn: socket.socket, codec: FastCGIConnection, values: Any) -> None:
        self.conn = conn
        self.codec = codec
        self.values = values  # names -> the GET_VALUES_RESULT answer
        self.aborted = False
        self.received: list[bytes] | None = []  # Raw bytes so far, while a hand-off may come.

    def next_event(self) -> Any:
        codec = self.codec
        while True:
            event = codec.next_event()
            if event is not NEED_DATA:
                return event
            try:
                data = self.conn.recv(_READ_SIZE)
            except OSError as exc:
                raise _ConnectionGone from exc
            if self.received is not None:
                self.received.append(data)
            codec.receive_data(data)

    def next_stdin(self, request_id: int) -> bytes:
        """The next chunk of the request's STDIN, b"" at its end (or after an abort)."""
        while not self.aborted:
            event = self.next_event()
            if event is CONNECTION_CLOSED:
                self.aborted = True
                break
            if isinstance(event, Stdin) and event.request_id == request_id:
                if event.end:
                    return b""
                if event.data:
                    return bytes(event.data)
            elif isinstance(event, AbortRequest) and event.request_id == request_id:
                self.aborted = True  # Section 5.4: the web server gave up on this request.
            elif isinstance(event, GetValues):
                self.conn.sendall(self.codec.send(GetValuesResult(self.values(event.names))))
            elif isinstance(event, UnknownType):
                self.conn.sendall(self.codec.send(UnknownType(event.record_type)))
        return b""

    def skip_input(self, request_id: int) -> None:
        while self.next_stdin(request_id):
            pass


class _Input:
    """`wsgi.input`: the request's STDIN, read from the connection as the app asks for it."""

    def __init__(self, reader: _RecordReader, request_id: int, *, expect_body: bool) -> None:
        self._reader = reader
        self._request_id = request_id
        self._buffer = bytearray()
        self._done = not expect_body

    def _fill(self) -> bool:
        if self._done:
            return False
        chunk = self._reader.next_stdin(self._request_id)
        if not chunk:
            self._done = True
            return False
        self._buffer += chunk
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            while self._fill():
                pass
            data = bytes(self._buffer)
            self._buffer.clear()
            return data
        while len(self._buffer) < size and self._fill():
            pass
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def readline(self, size: int | None = -1) -> bytes:
        while True:
            end = self._buffer.find(b"\n")
            limit = len(self._buffer) if size is None or size < 0 else min(size, len(self._buffer))
            if end != -1 and end < limit:
                return self.read(end + 1)
            if size is not None and 0 <= size <= len(self._buffer):
                return self.read(size)
            if not self._fill():
                return self.read(limit)

    def readlines(self, hint: int | None = None) -> list[bytes]:
        lines = []
        total = 0
        while line := self.readline():
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> _Input:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line


class _Response:
    """start_response, and the STDOUT records of one response (the head goes with the first chunk)."""

    def __init__(self, conn: socket.socket, codec: FastCGIConnection, request_id: int) -> None:
        self.conn = conn
        self.codec = codec
        self.request_id = request_id
        self.headers_set = False
        self.head: bytes = b""
        self.head_sent = False
        self.status = 0
        self.remaining: int | None = None
        self.sent = 0
        self.pending = b""  # The last STDOUT records, sent with END_REQUEST.

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None
    ) -> WriteCallable:
        code = check_start_response(
            status, exc_info, headers_set=self.headers_set, headers_sent=self.head_sent
        )
        exc_info = None  # Break the traceback cycle (PEP 3333).
        if len(status.rstrip()) <= 3:
            reason_line = status_line(int(code))[9:]  # "200 OK\r\n", a reason for a bare code.
        else:
            reason_line = status.encode("latin-1") + b"\r\n"
        parts = [b"Status: ", reason_line]
        remaining = None
        for name, value in headers:
            if not _HEADER_NAME.fullmatch(name) or _BAD_VALUE_CHARS.search(value):
                raise LocalProtocolError(f"invalid response header {name!r}: {value!r}")
            value = value.strip(" \t")
            if name.lower() == "content-length":
                remaining = int(value) if value.isdigit() else None
            parts += (name.encode("latin-1"), b": ", value.encode("latin-1"), b"\r\n")
        parts.append(b"\r\n")
        self.head = b"".join(parts)
        self.status = int(code)
        self.remaining = remaining
        self.headers_set = True
        return self.write

    def write(self, data: bytes) -> None:
        if not self.headers_set:
            raise LocalProtocolError("write() before start_response")
        if self.remaining is not None:
            if self.remaining <= 0:
                return  # Past Content-Length: dropped, as on the ASGI path.
            data = data[: self.remaining]
            self.remaining -= len(data)
        self.sent += len(data)
        first = not self.head_sent
        if first:
            data = self.head + data
            self.head_sent = True
        records = self.pending + self.codec.send(Stdout(self.request_id, data))
        self.pending = b""
        if first and len(records) < _HOLD_BYTES:
            self.pending = records  # A small first chunk waits: it may leave with END_REQUEST.
        else:
            try:
                self.conn.sendall(records)
            except OSError as exc:
                raise _ConnectionGone from exc

    def finish(self) -> None:
        """Queue the end of STDOUT (and the head, for an empty body) to go with END_REQUEST."""
        tail = b""
        if not self.head_sent:
            tail = self.codec.send(Stdout(self.request_id, self.head))
            self.head_sent = True
        self.pending += tail + self.codec.send(Stdout(self.request_id, b"", end=True))
