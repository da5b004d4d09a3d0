"""Serve an ASGI app to WSGI servers: `ASGIToWSGI(app)` is a PEP 3333 app.

The ASGI app runs on one event loop in a background thread (`LoopPortal`), started on the first
request and again in each forked worker. The WSGI server's thread stays in charge of blocking
I/O: it reads `wsgi.input` when the ASGI app calls `receive()` (64 KiB at a time, only as fast as
the app asks), and hands the app's response to the server chunk by chunk as the app sends it,
the app running at most `window` bytes ahead.

Lifespan runs once per loop before the first request; shutdown runs when the process exits.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sys
import threading
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any, Literal

from ._concurrency import LoopPortal
from ._connection import run_eagerly
from ._exceptions import ClientDisconnected, LifespanFailure, LocalProtocolError
from ._types import ASGIApp, Environ, Message, Scope, StartResponse
from .lifespan import Lifespan
from .translate import environ_to_scope

__all__ = ["ASGIToWSGI"]

logger = logging.getLogger("bridges.asgi")

_WINDOW = 256 * 1024
_READ_SIZE = 64 * 1024
_EMPTY_REQUEST: Message = {"type": "http.request", "body": b"", "more_body": False}
_DISCONNECT: Message = {"type": "http.disconnect"}
_ERROR_HEADERS = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "21")]

# Inbox items, loop -> WSGI thread: (kind, payload).
_START, _BODY, _NEED_BODY, _DONE = range(4)


_STATUS_LINES: dict[int, str] = {}


def _status_line(status: int) -> str:
    line = _STATUS_LINES.get(status)
    if line is None:
        try:
            line = f"{status} {HTTPStatus(status).phrase}"
        except ValueError:
            line = f"{status} Unknown"
        if len(_STATUS_LINES) < 1000:
            _STATUS_LINES[status] = line
    return line


class _Call:
    """One request: state shared by the WSGI server's thread and the ASGI task on the loop."""

    def __init__(self, adapter: ASGIToWSGI, scope: Scope, environ: Environ) -> None:
        self.adapter = adapter
        self.scope = scope
        self.wsgi_input = environ.get("wsgi.input")
        self.loop = adapter.portal.loop
        self.inbox: queue.SimpleQueue[tuple[int, Any]] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.task: asyncio.Task[None] | None = None
        self.task_finished = False
        self.task_done: threading.Event | None = None  # Made only when someone must wait for it.
        # Request body, WSGI thread -> loop.
        self.body_left, self.body_to_eof = self._body_length(environ)
        self.preread: bytes | None = None
        self.body_waiter: asyncio.Future[Message] | None = None
        # Response, loop -> WSGI thread.
        self.response_started = False
        self.response_complete = False
        self.queued_bytes = 0
        self.send_waiter: asyncio.Future[None] | None = None
        self.closed = False  # The WSGI server closed the iterable (or the response completed).
        self.disconnect_waiter: asyncio.Future[None] | None = None

    @staticmethod
    def _body_length(environ: Environ) -> tuple[int, bool]:
        length = environ.get("CONTENT_LENGTH", "")
        if length:
            try:
                return max(int(length), 0), False
            except ValueError:
                return 0, False
        # PEP 3333: without CONTENT_LENGTH there is a body only if the server says the input ends.
        return 0, bool(environ.get("wsgi.input_terminated"))

    # ---- WSGI thread side ---------------------------------------------------------------------

    def read_body_chunk(self) -> Message:
        """Read the next piece of the request body from `wsgi.input` (blocking I/O, WSGI thread)."""
        if self.body_to_eof:
            size = _READ_SIZE
        else:
            size = min(self.body_left, _READ_SIZE)
            if size == 0:
                return _EMPTY_REQUEST
        try:
            data = self.wsgi_input.read(size) if self.wsgi_input is not None else b""
        except (OSError, ValueError):
            return _DISCONNECT
        if self.body_to_eof:
            if not data:
                self.body_to_eof = False
            return {"type": "http.request", "body": data, "more_body": bool(data)}
        if not data:
            return _DISCONNECT  # The client closed before sending the declared length.
        self.body_left -= len(data)
        return {"type": "http.request", "body": data, "more_body": self.body_left > 0}

    def preread_small_body(self) -> None:
        """Read a small declared body up front, so `receive()` needs no thread round trip."""
        if not self.body_to_eof and self.body_left <= _READ_SIZE:
            message = self.read_body_chunk()
            if message is not _DISCONNECT:
                self.preread = message["body"]

    def next_event(self) -> tuple[int, Any]:
        """Wait for the loop's next event, answering body requests on the way."""
        while True:
            kind, payload = self.inbox.get()
            if kind == _NEED_BODY:
                message = self.read_body_chunk()
                self.loop.call_soon_threadsafe(self._deliver_body, message)
                continue
            if kind == _BODY:
                with self.lock:
                    self.queued_bytes -= len(payload["body"])
                    waiter = self.send_waiter
                    if waiter is not None and self.queued_bytes <= self.adapter.window:
                        self.send_waiter = None
                    else:
                        waiter = None
                if waiter is not None:
                    self.loop.call_soon_threadsafe(_wake, waiter)
            return kind, payload

    def respond(self, start_response: StartResponse) -> Iterator[bytes]:
        """Run the request: wait for the response start, then return the body iterator."""
        self.preread_small_body()
        self.loop.call_soon_threadsafe(self._begin)
        kind, payload = self.next_event()
        if kind == _START:
            headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in payload[1]]
            start_response(_status_line(payload[0]), headers)
            return _Body(self, start_response)
        # The app finished (or failed) without starting a response.
        self.closed = True
        error = payload if kind == _DONE and payload is not None else None
        if error is None:
            error = LocalProtocolError("the ASGI app returned without sending a response")
            logger.error("%s", error)
        else:
            logger.error("ASGI app raised before the response started; answering 500", exc_info=error)
        try:
            raise error
        except BaseException:
            start_response("500 Internal Server Error", list(_ERROR_HEADERS), sys.exc_info())
        return iter((b"Internal Server Error",))

    def response_done(self) -> None:
        """The last body chunk reached the WSGI server: wake the app only if it waits on us."""
        with self.lock:
            self.closed = True
            waiting = self.disconnect_waiter or self.send_waiter or self.body_waiter
        if waiting is not None:
            self.loop.call_soon_threadsafe(self._on_close, False)

    def close(self) -> None:
        """The WSGI server is done with the response: tell the app, cancel it if still sending."""
        if self.closed and self.response_complete:
            return
        self.closed = True
        early = not self.response_complete
        self.loop.call_soon_threadsafe(self._on_close, early)
        if not early:
            return
        with self.lock:
            done = None if self.task_finished else threading.Event()
            self.task_done = done
        if done is not None and not done.wait(self.adapter.cancel_timeout):
            logger.warning("ASGI app did not stop within %ss of cancellation", self.adapter.cancel_timeout)

    # ---- loop side ----------------------------------------------------------------------------

    def _begin(self) -> None:
        # Eagerly: an app that answers without waiting needs no Task and no extra loop turn.
        self.task = run_eagerly(self.loop, self._run())

    async def _run(self) -> None:
        try:
            await self.adapter.app(self.scope, self.receive, self.send)
        except asyncio.CancelledError:
            if not self.closed:
                self.inbox.put((_DONE, ClientDisconnected("ASGI app cancelled")))
        except BaseException as exc:
            if self.response_complete or self.closed:
                logger.error("ASGI app raised after its response was sent", exc_info=exc)
            else:
                self.inbox.put((_DONE, exc))
        else:
            if not self.response_complete:
                self.inbox.put((_DONE, None))
        finally:
            with self.lock:
                self.task_finished = True
                done = self.task_done
            if done is not None:
                done.set()

    async def receive(self) -> Message:
        preread = self.preread
        if preread is not None:
            self.preread = None
            return {"type": "http.request", "body": preread, "more_body": False}
        if not self.closed and (self.body_left > 0 or self.body_to_eof):
            with self.lock:
                waiter = self.body_waiter = self.loop.create_future()
            self.inbox.put((_NEED_BODY, None))
            message: Message = await waiter
            if message["type"] == "http.request":
                return message
            self.body_left, self.body_to_eof = 0, False
        # No more body: the next event is the end of the exchange (ASGI: http.disconnect).
        with self.lock:  # See response_done: the flag and the waiter are read together there.
            disconnect = None if self.closed else self.loop.create_future()
            self.disconnect_waiter = disconnect
        if disconnect is not None:
            await disconnect
        return {"type": "http.disconnect"}

    def _deliver_body(self, message: Message) -> None:
        waiter, self.body_waiter = self.body_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(message)

    def _on_close(self, early: bool) -> None:
        self._deliver_body(_DISCONNECT)
        for waiter in (self.disconnect_waiter, self.send_waiter):
            if waiter is not None:
                _wake(waiter)
        if early and self.task is not None and not self.task.done():
            self.task.cancel()

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if self.closed:
            raise ClientDisconnected("the WSGI server closed the response")
        if kind == "http.response.start":
            if self.response_started:
                raise LocalProtocolError("http.response.start sent twice")
            self.response_started = True
            self.inbox.put((_START, (message["status"], message.get("headers", []))))
        elif kind == "http.response.body":
            if not self.response_started:
                raise LocalProtocolError("http.response.body sent before http.response.start")
            if self.response_complete:
                raise LocalProtocolError("http.response.body sent after the response completed")
            body = message.get("body", b"")
            more_body = message.get("more_body", False)
            if not more_body:
                self.response_complete = True
            with self.lock:
                self.queued_bytes += len(body)
                over = self.queued_bytes > self.adapter.window
                if over:
                    waiter = self.send_waiter = self.loop.create_future()
            self.inbox.put((_BODY, {"body": body, "more_body": more_body}))
            if over and more_body:
                await waiter
                if self.closed and not self.response_complete:
                    raise ClientDisconnected("the WSGI server closed the response")
        else:
            raise LocalProtocolError(f"unexpected ASGI message {kind!r} for an HTTP request")


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _Body:
    """The response iterable handed to the WSGI server."""

    def __init__(self, call: _Call, start_response: StartResponse) -> None:
        self._call = call
        self._start_response = start_response
        self._finished = False

    def __iter__(self) -> _Body:
        return self

    def __next__(self) -> bytes:
        call = self._call
        while not self._finished:
            kind, payload = call.next_event()
            if kind == _BODY:
                if not payload["more_body"]:
                    self._finished = True
                    call.response_done()
                if payload["body"]:
                    return bytes(payload["body"])
            elif kind == _DONE:
                self._finished = True
                call.closed = True
                if payload is None:
                    raise LocalProtocolError("the ASGI app returned without completing its response")
                logger.error("ASGI app raised after the response started; cutting it", exc_info=payload)
                raise payload
        raise StopIteration

    def close(self) -> None:
        self._call.close()


class ASGIToWSGI:
    """A WSGI app that runs an ASGI app: `ASGIToWSGI(starlette_app)` can be served by gunicorn.

    `lifespan` is "auto" (run it; an app that does not support it is noted and skipped), "on"
    (a failing startup fails every request) or "off". `window` bounds the response bytes the app
    may send ahead of the WSGI server. `startup_timeout` and `cancel_timeout` are in seconds.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        lifespan: Literal["auto", "on", "off"] = "auto",
        window: int = _WINDOW,
        startup_timeout: float = 30.0,
        cancel_timeout: float = 5.0,
    ) -> None:
        if lifespan not in ("auto", "on", "off"):
            raise ValueError("lifespan must be 'auto', 'on' or 'off'")
        self.app = app
        self.lifespan = lifespan
        self.window = window
        self.startup_timeout = startup_timeout
        self.cancel_timeout = cancel_timeout
        self.portal = LoopPortal(name="bridges-asgi-loop")
        self._lifespan_lock = threading.Lock()
        self._lifespan_loop: asyncio.AbstractEventLoop | None = None
        self._state: dict[str, Any] | None = None
        self._lifespan_error: BaseException | None = None

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
        loop = self.portal.loop
        if self._lifespan_loop is not loop:
            self._start_lifespan(loop)
        if self._lifespan_error is not None:
            raise LifespanFailure("the ASGI app's lifespan startup failed") from self._lifespan_error
        scope = environ_to_scope(environ)
        scope["extensions"] = {}
        if self._state is not None:
            scope["state"] = dict(self._state)
        call = _Call(self, scope, environ)
        return call.respond(start_response)

    def _start_lifespan(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lifespan_lock:
            if self._lifespan_loop is loop:
                return
            self._state = None
            self._lifespan_error = None
            if self.lifespan != "off":
                lifespan = Lifespan(self.app, self.lifespan)
                try:
                    self.portal.run(lifespan.startup(), timeout=self.startup_timeout)
                except BaseException as exc:
                    logger.error("ASGI lifespan startup failed", exc_info=exc)
                    self._lifespan_error = exc
                    self.portal.call_soon(lifespan.cancel)  # Don't leave it pending (a time-out).
                else:
                    self._state = lifespan.state if lifespan.supported else None
                    if lifespan.supported:
                        self.portal.on_exit(lifespan.shutdown)
            self._lifespan_loop = loop
