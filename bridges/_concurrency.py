"""The sync<->async bridge: a bounded worker-thread pool and a background event-loop portal.

`ThreadPool` runs blocking callables (WSGI apps, for WSGIToASGI) on at most N daemon threads,
started on demand. `LoopPortal` owns one event loop in a daemon thread (for ASGIToWSGI), started
on first use. Both are fork-safe: in a child process they forget the parent's threads and start
afresh on next use, so a pre-fork server (gunicorn) may import and even call them before forking.

These are the plumbing of the adapters, not general helpers: to call sync code from async code
(or the reverse) inside an app, use asgiref's `sync_to_async` / `async_to_sync`.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import queue
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["LoopPortal", "ThreadPool"]


class ThreadPool:
    """Run callables on at most `max_threads` daemon threads, queueing the rest in order.

    Threads are started only when every running one is busy, and stay for the pool's life.
    `submit` never blocks and returns nothing: callers report results through their own channel.
    """

    def __init__(self, max_threads: int, name: str = "bridges-worker") -> None:
        if max_threads < 1:
            raise ValueError("max_threads must be at least 1")
        self.max_threads = max_threads
        self.name = name
        self._reset()
        _forget_after_fork.add(self)

    def _reset(self) -> None:
        self._work: queue.SimpleQueue[Callable[[], object] | None] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._threads: list[threading.Thread] = []
        self._start_lock = threading.Lock()

    @property
    def thread_count(self) -> int:
        """How many worker threads exist now."""
        return len(self._threads)

    def submit(self, work: Callable[[], object]) -> None:
        """Queue `work`; a free thread runs it, or a new one if the pool is not full yet."""
        self._work.put(work)
        if self._idle.acquire(blocking=False):
            return  # A waiting thread will take it.
        if len(self._threads) < self.max_threads:
            with self._start_lock:
                if len(self._threads) < self.max_threads:
                    thread = threading.Thread(
                        target=self._run, name=f"{self.name}-{len(self._threads)}", daemon=True
                    )
                    self._threads.append(thread)
                    thread.start()

    def _run(self) -> None:
        work_queue = self._work
        idle = self._idle
        while True:
            work = work_queue.get()
            if work is None:
                return
            try:
                work()
            except BaseException:
                pass
            del work
            idle.release()

    def shutdown(self, timeout: float | None = None) -> None:
        """Stop every thread once the queued work is done; wait up to `timeout` for them."""
        threads = list(self._threads)
        for _ in threads:
            self._work.put(None)
        for thread in threads:
            thread.join(timeout)
        self._threads = []


class LoopPortal:
    """One asyncio event loop running in a daemon thread, started on first use.

    `call_soon(callback, *args)` schedules a callback on it from any thread; `run(coro)` runs a
    coroutine on it and blocks the calling thread for the result. `on_exit` coroutines run on the
    loop, in order, when the interpreter exits (lifespan shutdown uses this).
    """

    def __init__(self, name: str = "bridges-loop", use_uvloop: bool = True) -> None:
        self.name = name
        self.use_uvloop = use_uvloop
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._exit_hooks: list[Callable[[], Coroutine[Any, Any, object]]] = []
        _forget_after_fork.add(self)
        _portals.add(self)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._loop = None
        self._thread = None
        self._exit_hooks = []

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The portal's loop, started (with its thread) if it is not running yet."""
        loop = self._loop
        if loop is not None:
            return loop
        with self._lock:
            if self._loop is None:
                self._loop = self._start()
            return self._loop

    def _new_loop(self) -> asyncio.AbstractEventLoop:
        if self.use_uvloop:
            try:
                import uvloop
            except ImportError:
                pass
            else:
                return uvloop.new_event_loop()
        return asyncio.new_event_loop()

    def _start(self) -> asyncio.AbstractEventLoop:
        loop = self._new_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        thread = threading.Thread(target=run, name=self.name, daemon=True)
        thread.start()
        ready.wait()
        self._thread = thread
        return loop

    @property
    def running(self) -> bool:
        """Whether the loop thread has been started in this process."""
        return self._loop is not None

    def call_soon(self, callback: Callable[..., object], *args: Any) -> None:
        """Schedule `callback(*args)` on the portal's loop from any thread."""
        self.loop.call_soon_threadsafe(callback, *args)

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float | None = None) -> Any:
        """Run `coro` on the portal's loop and return its result; blocks the calling thread."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def on_exit(self, hook: Callable[[], Coroutine[Any, Any, object]]) -> None:
        """Run `hook()` on the loop when the interpreter exits (if the loop was started)."""
        self._exit_hooks.append(hook)

    def close(self, timeout: float = 10.0) -> None:
        """Run the exit hooks, stop the loop and join its thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or loop.is_closed():
            return
        hooks, self._exit_hooks = self._exit_hooks, []
        for hook in hooks:
            try:
                asyncio.run_coroutine_threadsafe(hook(), loop).result(timeout)
            except BaseException:
                pass
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        if not thread.is_alive():
            loop.close()
        self._reset()


_forget_after_fork: weakref.WeakSet[ThreadPool | LoopPortal] = weakref.WeakSet()
_portals: weakref.WeakSet[LoopPortal] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # The parent's threads do not exist here; their queues and loops must not be reused.
    for owner in list(_forget_after_fork):
        owner._reset()


def _close_portals() -> None:
    for portal in list(_portals):
        portal.close()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_close_portals)
