"""The ASGI lifespan protocol, driven from the server side (the built-in server, ASGIToWSGI).

`mode` is uvicorn's: "auto" runs lifespan and carries on without it if the app raises before
completing startup (the app does not support it); "on" makes that a startup failure. A
`lifespan.startup.failed` message fails startup in both modes. `state` is the dict the app fills
in at startup; servers give each request a shallow copy of it as `scope["state"]`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ._exceptions import LifespanFailure, LocalProtocolError
from ._types import ASGIApp, Message

__all__ = ["Lifespan"]

logger = logging.getLogger("bridges.lifespan")


class Lifespan:
    """Drive one app's lifespan scope: `await startup()`, later `await shutdown()`, on one loop."""

    def __init__(self, app: ASGIApp, mode: str) -> None:
        self.app = app
        self.mode = mode
        self.state: dict[str, Any] = {}
        self.supported = True
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.startup_done: asyncio.Future[None] | None = None
        self.shutdown_done: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] | None = None

    async def startup(self) -> None:
        loop = asyncio.get_running_loop()
        self.inbox = asyncio.Queue()
        self.startup_done = loop.create_future()
        self.shutdown_done = loop.create_future()
        self.task = loop.create_task(self._run())
        await self.inbox.put({"type": "lifespan.startup"})
        await self.startup_done

    def cancel(self) -> None:
        """Stop the lifespan task (startup timed out or failed); call on its loop."""
        if self.task is not None and not self.task.done():
            self.task.cancel()

    async def shutdown(self) -> None:
        if self.task is None or self.task.done() or self.shutdown_done is None:
            return
        await self.inbox.put({"type": "lifespan.shutdown"})
        try:
            await self.shutdown_done
        except BaseException as exc:
            logger.error("ASGI lifespan shutdown failed", exc_info=exc)

    async def _run(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": self.state}
        assert self.startup_done is not None and self.shutdown_done is not None
        try:
            await self.app(scope, self.inbox.get, self._send)
        except BaseException as exc:
            if not self.startup_done.done():
                if self.mode == "auto":
                    logger.info("ASGI 'lifespan' protocol appears unsupported (%r)", exc)
                    self.supported = False
                    self.startup_done.set_result(None)
                else:
                    self.startup_done.set_exception(exc)
            elif not self.shutdown_done.done():
                self.shutdown_done.set_exception(exc)
        finally:
            if not self.startup_done.done():
                self.supported = False
                self.startup_done.set_result(None)
            if not self.shutdown_done.done():
                self.shutdown_done.set_result(None)

    async def _send(self, message: Message) -> None:
        assert self.startup_done is not None and self.shutdown_done is not None
        kind = message["type"]
        if kind == "lifespan.startup.complete":
            self.startup_done.set_result(None)
        elif kind == "lifespan.startup.failed":
            self.startup_done.set_exception(LifespanFailure(message.get("message", "startup failed")))
        elif kind == "lifespan.shutdown.complete":
            self.shutdown_done.set_result(None)
        elif kind == "lifespan.shutdown.failed":
            self.shutdown_done.set_exception(LifespanFailure(message.get("message", "shutdown failed")))
        else:
            raise LocalProtocolError(f"unexpected message {kind!r} on a lifespan scope")
