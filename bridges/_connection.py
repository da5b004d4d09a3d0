"""Plumbing shared by the server's connection protocols (HTTP/1.1, FastCGI).

`StreamProtocol` holds the transport and the flow control both directions need: reading is
paused when a request body piles up, and `drain()` waits while the transport's write buffer is
over its high-water mark. `start_eagerly` runs an app coroutine at once, without a Task, until it
first has to wait (what Python 3.12 calls an eager task): most responses never wait.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
from collections.abc import Coroutine, Generator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .server import ServerState

__all__ = ["StreamProtocol", "address_of", "run_eagerly", "start_eagerly"]

_EAGER = sys.version_info >= (3, 11)  # create_task(context=...) arrived in 3.11.


class StreamProtocol(asyncio.Protocol):
    """A connection's transport, with pause/resume of reading and `drain()` for writing."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.loop = state.loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reading_paused = False
        self.writing_paused = False
        self.drain_waiters: list[asyncio.Future[None]] = []

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self.release_drain_waiters()

    def release_drain_waiters(self) -> None:
        for waiter in self.drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self.drain_waiters.clear()

    async def drain(self) -> None:
        """Wait while the transport's write buffer is full (returns at once when closed)."""
        if self.writing_paused and not self.closed:
            waiter = self.loop.create_future()
            self.drain_waiters.append(waiter)
            await waiter

    def pause_reading(self) -> None:
        if not self.reading_paused and self.transport is not None and not self.closed:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.reading_paused and self.transport is not None and not self.closed:
            self.reading_paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


def address_of(info: Any) -> tuple[str, int] | None:
    """A socket address as an ASGI `server`/`client` pair; a unix socket is (path, None)."""
    if isinstance(info, tuple) and len(info) >= 2:
        return (str(info[0]), int(info[1]))
    if isinstance(info, str) and info:
        return (info, None)  # type: ignore[return-value]  # ASGI: port None for unix sockets.
    return None


class _Resume:
    """Await a coroutine that was started by hand and is waiting on `waiting_on`."""

    __slots__ = ("coro", "waiting_on")

    def __init__(self, coro: Coroutine[Any, Any, None], waiting_on: Any) -> None:
        self.coro = coro
        self.waiting_on = waiting_on

    def __await__(self) -> Generator[Any, Any, None]:
        coro = self.coro
        pending = self.waiting_on
        while True:
            try:
                yield pending  # The Task waits for this future, exactly as the coroutine asked.
            except BaseException as exc:  # Cancellation: pass it into the coroutine.
                try:
                    pending = coro.throw(exc)
                except StopIteration:
                    return
                continue
            break
        yield from coro.__await__()


async def _continue(coro: Coroutine[Any, Any, None], waiting_on: Any) -> None:
    await _Resume(coro, waiting_on)


def run_eagerly(
    loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, None]
) -> asyncio.Task[None] | None:
    """Run `coro` now until it first waits, then as a Task; None if it finished without waiting."""
    if not _EAGER:
        return loop.create_task(coro)
    context = contextvars.copy_context()
    try:
        waiting_on = context.run(coro.send, None)
    except StopIteration:
        return None
    return loop.create_task(_continue(coro, waiting_on), context=context)  # type: ignore[call-arg]


def start_eagerly(state: ServerState, coro: Coroutine[Any, Any, None]) -> None:
    """Run `coro` now until it first waits; only then give it a Task (tracked in state.tasks)."""
    if state.running_eagerly:
        task: asyncio.Task[None] | None = state.loop.create_task(coro)
    else:
        state.running_eagerly = True  # No nesting: a pipelined request completed inline waits.
        try:
            task = run_eagerly(state.loop, coro)
        finally:
            state.running_eagerly = False
    if task is not None:
        state.tasks.add(task)
        task.add_done_callback(state.tasks.discard)
