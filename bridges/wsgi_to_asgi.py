"""Serve a WSGI app to ASGI servers: `WSGIToASGI(app)` is an ASGI 3 app.

The WSGI app runs on a bounded pool of worker threads. Its request body streams in through
`wsgi.input` and its response streams out, each through a bounded window, so neither a large
upload nor a slow client makes memory grow. When the client goes away the app's iteration stops,
`close()` runs and the worker thread is free for the next request.

One request is an `_Exchange`: the event-loop side (`_Exchange.serve`) and the worker-thread side
(`_Exchange.run_app`) share it, guarded by one lock. The thread wakes the loop with
`call_soon_threadsafe`; the loop wakes the thread with a condition variable.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import io
import logging
import os
import re
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from typing import IO, Any

from ._concurrency import ThreadPool
from ._exceptions import ClientDisconnected, LocalProtocolError, RemoteProtocolError
from ._types import Environ, Message, OptExcInfo, Receive, Scope, Send, WriteCallable, WSGIApp
from .translate import DEFAULT_HEADER_POLICY, HeaderPolicy, scope_to_environ

__all__ = ["FileWrapper", "WSGIToASGI"]

logger = logging.getLogger("bridges.wsgi")

_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE_CHARS = re.compile(r"[\r\n\x00]")
_ERROR_BODY = b"Internal Server Error"
_ERROR_START: Message = {
    "type": "http.response.start",
    "status": 500,
    "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"21")],
}
_STREAM_WINDOW = 256 * 1024
_WATCH_OVERFLOW = 16  # Unread body kept while watching for a disconnect: 16 windows (4 MiB).


class FileWrapper:
    """`wsgi.file_wrapper`: iterate a file in blocks; sent with `http.response.pathsend` when possible."""

    def __init__(self, filelike: IO[bytes], blksize: int = 64 * 1024) -> None:
        self.filelike = filelike
        self.blksize = blksize

    def __iter__(self) -> Iterator[bytes]:
        read = self.filelike.read
        while True:
            block = read(self.blksize)
            if not block:
                return
            yield block

    def close(self) -> None:
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()

    def sendable_path(self) -> str | None:
        """The file's absolute path if the whole file, from its start, is what is to be sent."""
        name = getattr(self.filelike, "name", None)
        if not isinstance(name, str) or not os.path.isabs(name):
            return None
        try:
            if self.filelike.tell() != 0 or not os.path.isfile(name):
                return None
        except (OSError, ValueError):
            return None
        return name


class _ErrorStream(io.TextIOBase):
    """`wsgi.errors`: text written by the app goes to the `bridges.wsgi` logger, line by line."""

    def __init__(self) -> None:
        self._pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        lines = (self._pending + text).split("\n")
        self._pending = lines.pop()
        for line in lines:
            logger.error("%s", line)
        return len(text)

    def flush(self) -> None:
        if self._pending:
            logger.error("%s", self._pending)
            self._pending = ""


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _AppFailed(Exception):
    """Carries an app error that happened after the response started: the response is cut."""


_END = object()  # Outbox marker: the worker thread is finished with this request.


class _Input:
    """`wsgi.input`: the request body, streamed from the event loop through a bounded buffer."""

    def __init__(self, exchange: _Exchange) -> None:
        self._exchange = exchange

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return self._exchange.take(-1, None)
        return self._exchange.take(size, None) if size else b""

    def read1(self, size: int = -1) -> bytes:
        return self.read(size)

    def readline(self, limit: int | None = -1) -> bytes:
        return self._exchange.take(-1 if limit is None else limit, b"\n")

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines: list[bytes] = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                return lines

    def __iter__(self) -> Iterator[bytes]:
        while True:
            line = self.readline()
            if not line:
                return
            yield line


class _Exchange:
    """One request: state shared by the loop side and the worker thread."""

    def __init__(
        self,
        adapter: WSGIToASGI,
        scope: Scope,
        receive: Receive,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.adapter = adapter
        self.scope = scope
        self.receive = receive
        self.loop = loop
        self.lock = threading.Lock()
        # Made on first wait: most requests never wait, and a Condition is costly to build.
        self.changed: threading.Condition | None = None
        self.window = adapter.window
        # Response, thread -> loop.
        self.outbox: deque[Any] = deque()
        self.outbox_bytes = 0
        self.outbox_waiter: asyncio.Future[None] | None = None
        # Request body, loop -> thread.
        self.body = bytearray()
        self.body_done = False
        self.pump: asyncio.Task[None] | None = None
        self.pump_parked: asyncio.Future[None] | None = None
        self.kick_pending = False
        self.watch_disconnect = False
        # Set once the client is gone (or the request was cancelled): stops both directions.
        self.gone: BaseException | None = None
        # Thread-side response state.
        self.status = ""
        self.headers: list[tuple[bytes, bytes]] = []
        self.headers_set = False
        self.headers_sent = False
        self.remaining: int | None = None
        self.complete = False  # The last body message (more_body=False) is queued.

    # ---- loop side -------------------------------------------------------------------------

    async def serve(self, send: Send) -> None:
        """Feed the worker thread and send what it produces; return when it is finished."""
        if not self._expects_continue():
            first = await self.receive()
            if first["type"] == "http.disconnect":
                return
            self.body += first.get("body", b"")
            self.body_done = not first.get("more_body", False)
        # The app sees the context variables the ASGI side set (request ids, tracing), as a copy.
        self.adapter.pool.submit(functools.partial(contextvars.copy_context().run, self.run_app))
        try:
            await self._send_outbox(send)
        except BaseException as exc:
            self._abort(exc if isinstance(exc, ClientDisconnected) else ClientDisconnected(str(exc)))
            raise
        finally:
            pump = self.pump
            if pump is not None and not pump.done():
                pump.cancel()

    def _expects_continue(self) -> bool:
        for name, value in self.scope["headers"]:
            if name == b"expect" and value.lower() == b"100-continue":
                return True
        return False

    async def _send_outbox(self, send: Send) -> None:
        lock = self.lock
        streaming = False
        while True:
            lock.acquire()
            if not self.outbox:
                waiter = self.outbox_waiter = self.loop.create_future()
                lock.release()
                await waiter
                continue
            message = self.outbox.popleft()
            if type(message) is dict and message["type"] == "http.response.body":
                size = len(message["body"])
                if size:
                    self.outbox_bytes -= size
                    self._notify()
            gone = self.gone
            lock.release()
            if message is _END:
                return
            if isinstance(message, _AppFailed):
                raise message.__cause__ or message
            if gone is not None:
                continue  # Drain what the thread queued until it says it is finished.
            try:
                await send(message)
            except OSError as exc:  # ASGI 2.4: the client is gone.
                self._abort(ClientDisconnected(str(exc) or "client disconnected"))
                continue
            if not streaming and message.get("more_body"):
                streaming = True  # A streamed response: notice a disconnect between chunks.
                self.watch_disconnect = True
                self._ensure_pump()

    def _abort(self, reason: BaseException) -> None:
        with self.lock:
            if self.gone is None:
                self.gone = reason
            self._notify()
            waiter = self.outbox_waiter
        if waiter is not None:
            _wake(waiter)
        parked = self.pump_parked
        if parked is not None:
            _wake(parked)

    def _ensure_pump(self) -> None:
        self.kick_pending = False
        parked = self.pump_parked
        if parked is not None:
            _wake(parked)
        if self.pump is None or self.pump.done():
            self.pump = self.loop.create_task(self._run_pump())

    async def _run_pump(self) -> None:
        """Read the request body ahead of the app (up to the window), then watch for disconnect."""
        while True:
            with self.lock:
                if self.gone is not None:
                    return
                if self.body_done and not self.watch_disconnect:
                    return
                # While watching for a disconnect (a streamed response) keep reading a body the
                # app has not read yet, up to a hard cap, so the disconnect can be seen behind it.
                limit = self.window * _WATCH_OVERFLOW if self.watch_disconnect else self.window
                full = not self.body_done and len(self.body) >= limit
                if full:
                    parked = self.pump_parked = self.loop.create_future()
            if full:
                await parked
                self.pump_parked = None
                continue
            message = await self.receive()
            if message["type"] == "http.disconnect":
                self._abort(ClientDisconnected("client disconnected"))
                return
            with self.lock:
                if self.body_done:
                    # A server whose receive() answers at once after the body (instead of waiting
                    # for the disconnect) cannot be watched: stop rather than spin.
                    return
                self.body += message.get("body", b"")
                self.body_done = not message.get("more_body", False)
                self._notify()

    # ---- worker-thread side ----------------------------------------------------------------

    def take(self, size: int, until: bytes | None) -> bytes:
        """Return up to `size` body bytes (all if -1), stopping after `until` if given."""
        chunks: list[bytes] = []
        have = 0
        with self.lock:
            while True:
                body = self.body
                if self.gone is not None:
                    raise ClientDisconnected("client disconnected while the app read the body")
                if body:
                    end = len(body)
                    found = False
                    if until is not None:
                        index = body.find(until)
                        if index != -1 and (size < 0 or index < size - have):
                            end = index + 1
                            found = True
                    if size >= 0:
                        end = min(end, size - have)
                    was_full = len(body) >= self.window
                    chunks.append(bytes(body[:end]))
                    del body[:end]
                    have += end
                    if was_full and self.pump_parked is not None:
                        self._kick()
                    if found or have == size:
                        break
                if self.body_done:
                    break
                self._kick()
                self._wait()
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _notify(self) -> None:
        """Wake the worker thread if it waits. Called with the lock held."""
        if self.changed is not None:
            self.changed.notify_all()

    def _wait(self) -> None:
        """Wait for the loop side to change something. Called with the lock held."""
        if self.changed is None:
            self.changed = threading.Condition(self.lock)
        self.changed.wait()

    def _kick(self) -> None:
        """Ask the loop to (re)start reading the body. Called with the lock held."""
        if not self.kick_pending:
            self.kick_pending = True
            self.loop.call_soon_threadsafe(self._ensure_pump)

    def _put(self, *messages: Any, size: int = 0, final: bool = False) -> None:
        with self.lock:
            if not final:
                while True:
                    if self.gone is not None:
                        raise ClientDisconnected("client disconnected")
                    if not self.outbox_bytes or self.outbox_bytes + size <= self.window:
                        break
                    self._wait()
            self.outbox.extend(messages)
            self.outbox_bytes += size
            waiter = self.outbox_waiter
            self.outbox_waiter = None
        if waiter is not None:
            self.loop.call_soon_threadsafe(_wake, waiter)

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None
    ) -> WriteCallable:
        code = check_start_response(
            status, exc_info, headers_set=self.headers_set, headers_sent=self.headers_sent
        )
        exc_info = None  # Break the traceback cycle (PEP 3333).
        encoded: list[tuple[bytes, bytes]] = []
        remaining = None
        for name, value in headers:
            if not _HEADER_NAME.fullmatch(name) or _BAD_VALUE_CHARS.search(value):
                raise LocalProtocolError(f"invalid response header {name!r}: {value!r}")
            # ASGI wants lower-case names; RFC 9110 5.5 trims values. Except a FastCGI
            # authorizer's `Variable-NAME`: NAME becomes an environment variable, case and all.
            if name[:9].lower() != "variable-":
                name = name.lower()
            value = value.strip(" \t")
            if name == "content-length":
                remaining = int(value) if value.isdigit() else None
            encoded.append((name.encode("latin-1"), value.encode("latin-1")))
        self.status = code
        self.headers = encoded
        self.remaining = remaining
        self.headers_set = True
        return self.write

    def _start_message(self) -> Message:
        if not self.headers_set:
            raise LocalProtocolError("the WSGI app sent a body before calling start_response")
        self.headers_sent = True
        return {"type": "http.response.start", "status": int(self.status), "headers": self.headers}

    def _clip(self, data: bytes) -> bytes:
        remaining = self.remaining
        if remaining is not None and len(data) > remaining:
            logger.error("WSGI app sent more than its Content-Length; extra bytes dropped")
            data = data[:remaining]
        if remaining is not None:
            self.remaining = remaining - len(data)
        return data

    def write(self, data: bytes) -> None:
        """The `write()` callable of PEP 3333: send `data` now."""
        if self.gone is not None:
            raise ClientDisconnected("client disconnected")
        self._emit(data, more_body=True)

    def _emit(self, data: bytes, more_body: bool) -> None:
        if type(data) is not bytes:
            if isinstance(data, (bytearray, memoryview)):
                data = bytes(data)
            else:
                raise LocalProtocolError(f"the WSGI app yielded {type(data).__name__}, not bytes")
        data = self._clip(data)
        if not data and more_body:
            return
        body = {"type": "http.response.body", "body": data, "more_body": more_body}
        self.complete = not more_body
        if self.headers_sent:
            self._put(body, size=len(data))
        else:
            self._put(self._start_message(), body, size=len(data))

    def run_app(self) -> None:
        """Run the WSGI app for this request; always ends by queueing `_END`."""
        iterable: Iterable[bytes] | None = None
        outcome: Any = None
        try:
            try:
                environ = self.adapter.make_environ(self.scope, self)
            except RemoteProtocolError as exc:  # Headers no environ can hold: answer 400/431.
                logger.info("refusing request: %s", exc)
                outcome = self._refuse(exc.status_code, str(exc))
                return
            iterable = self.adapter.app(environ, self.start_response)
            if type(iterable) is list or type(iterable) is tuple:
                chunks = [chunk for chunk in iterable if chunk]
                for chunk in chunks[:-1]:
                    self._emit(chunk, more_body=True)
                self._emit(chunks[-1] if chunks else b"", more_body=False)
                return
            if isinstance(iterable, FileWrapper) and self._pathsend(iterable):
                return
            for chunk in iterable:
                if chunk:
                    self._emit(chunk, more_body=True)
            if not self.headers_sent:
                self._put(self._start_message())
        except ClientDisconnected:
            logger.debug("client disconnected; WSGI app stopped")
        except BaseException as exc:
            outcome = self._fail(exc)
        finally:
            close = getattr(iterable, "close", None)
            if close is not None:
                try:
                    close()
                except BaseException as exc:
                    if outcome is None:
                        outcome = self._fail(exc)
            if outcome is None and not self.gone and self.headers_sent and not self.complete:
                outcome = {"type": "http.response.body", "body": b"", "more_body": False}
            self._finish(outcome)

    def _pathsend(self, wrapper: FileWrapper) -> bool:
        if "http.response.pathsend" not in self.scope.get("extensions", {}):
            return False
        path = wrapper.sendable_path()
        if path is None or not self.headers_set:
            return False
        if self.remaining is not None and self.remaining != os.path.getsize(path):
            return False
        self._put(self._start_message(), {"type": "http.response.pathsend", "path": path})
        self.complete = True
        return True

    def _refuse(self, status: int, reason: str) -> Message:
        body = reason.encode("utf-8", "replace")
        self.headers_sent = True
        start = {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
        self._put(start, final=True)
        return {"type": "http.response.body", "body": body, "more_body": False}

    def _fail(self, exc: BaseException) -> Any:
        if self.gone is not None:
            return None
        if self.headers_sent:
            logger.error("WSGI app raised after the response started; cutting the response", exc_info=exc)
            failed = _AppFailed("WSGI app raised after the response started")
            failed.__cause__ = exc
            return failed
        logger.error("WSGI app raised before the response started; answering 500", exc_info=exc)
        self.headers_sent = True
        self._put(_ERROR_START, final=True)
        return {"type": "http.response.body", "body": _ERROR_BODY, "more_body": False}

    def _finish(self, outcome: Any) -> None:
        self.headers_sent = True
        if outcome is None:
            self._put(_END, final=True)
        else:
            self._put(outcome, _END, final=True)


class WSGIToASGI:
    """An ASGI app that runs a WSGI app: `WSGIToASGI(flask_app)` can be served by any ASGI server.

    `threads` bounds the worker threads the app runs on (requests beyond that wait in order).
    `window` bounds the bytes buffered per request in each direction (request body read ahead,
    response produced ahead of a slow client). `header_policy` controls how headers translate.
    `multiprocess` is what `wsgi.multiprocess` says: set it when the server runs several worker
    processes (`bridge serve --workers N` does).
    """

    def __init__(
        self,
        app: WSGIApp,
        *,
        threads: int = 40,
        window: int = _STREAM_WINDOW,
        header_policy: HeaderPolicy = DEFAULT_HEADER_POLICY,
        multiprocess: bool = False,
    ) -> None:
        if window < 1:
            raise ValueError("window must be at least 1 byte")
        self.app = app
        self.multiprocess = multiprocess
        self.window = window
        self.header_policy = header_policy
        self.pool = ThreadPool(threads, name="bridges-wsgi")
        self.errors = _ErrorStream()

    def make_environ(self, scope: Scope, exchange: _Exchange) -> Environ:
        """Return the environ for one request (called on the worker thread)."""
        environ = scope_to_environ(
            scope,
            wsgi_input=_Input(exchange),
            wsgi_errors=self.errors,
            multithread=self.pool.max_threads > 1,
            multiprocess=self.multiprocess,
            policy=self.header_policy,
        )
        environ["wsgi.file_wrapper"] = FileWrapper
        environ["asgi.scope"] = scope
        return environ

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            exchange = _Exchange(self, scope, receive, asyncio.get_running_loop())
            await exchange.serve(send)
        elif kind == "lifespan":
            await _acknowledge_lifespan(receive, send)
        elif kind == "websocket":
            # A WSGI app cannot speak WebSocket: refuse the handshake (the server answers 403).
            message = await receive()
            if message["type"] == "websocket.connect":
                await send({"type": "websocket.close", "code": 1000})
        else:
            raise LocalProtocolError(f"WSGIToASGI cannot serve scope type {kind!r}")


def check_start_response(
    status: str, exc_info: OptExcInfo | None, *, headers_set: bool, headers_sent: bool
) -> str:
    """The checks every start_response makes (PEP 3333); return the status's 3-digit code.

    With `exc_info` after the headers went out, re-raise the app's error; without it, a second
    call is an error. The status must be three digits, then nothing or a space and a reason.
    """
    if exc_info is not None and exc_info[1] is not None:
        try:
            if headers_sent:
                raise exc_info[1].with_traceback(exc_info[2])
        finally:
            exc_info = None  # Break the traceback cycle.
    elif headers_set:
        raise LocalProtocolError("start_response called a second time without exc_info")
    code = status[:3]
    if (
        len(status) < 3
        or not code.isdigit()
        or (len(status) > 3 and status[3] != " ")
        or _BAD_VALUE_CHARS.search(status)
    ):
        raise LocalProtocolError(f"invalid WSGI status {status!r}")
    return code


async def _acknowledge_lifespan(receive: Receive, send: Send) -> None:
    """A WSGI app has no startup or shutdown: acknowledge both."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
