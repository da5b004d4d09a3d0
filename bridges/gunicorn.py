"""A gunicorn worker class: `gunicorn -k bridges.gunicorn.Worker module:app` runs the built-in server.

For deployments built around gunicorn's process management (its arbiter, hooks, `--max-requests`,
graceful reloads). ASGI and WSGI apps both work (the interface is detected as with `bridge serve`).
gunicorn's own settings map onto the server: keep-alive, graceful timeout, max requests, request
line and header limits, forwarded-allow-ips. Subclass and set `CONFIG_KWARGS` to pass any other
`Config` field, e.g. `{"http": "h11", "lifespan": "off"}`.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, ClassVar

from gunicorn.workers.base import Worker as BaseWorker  # type: ignore[import-untyped]

from .config import Config
from .server import Server, configure_logging, new_event_loop

__all__ = ["Worker"]


class Worker(BaseWorker):  # type: ignore[misc]  # gunicorn ships no type hints.
    """Run bridges' HTTP/1.1 server inside a gunicorn worker process."""

    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {}

    def config(self) -> Config:
        cfg = self.cfg
        options: dict[str, Any] = {
            "timeout_keep_alive": float(cfg.keepalive or 5),
            "timeout_graceful_shutdown": float(cfg.graceful_timeout),
            "limit_max_requests": cfg.max_requests or None,
            "max_request_line_bytes": cfg.limit_request_line or 8190,
            "max_header_count": cfg.limit_request_fields or 100,
            "forwarded_allow_ips": ",".join(cfg.forwarded_allow_ips)
            if isinstance(cfg.forwarded_allow_ips, list)
            else str(cfg.forwarded_allow_ips),
            "log_level": str(cfg.loglevel).lower(),
            "access_log": bool(cfg.accesslog),
            "backlog": cfg.backlog,
            "threads": int(cfg.threads) if cfg.threads and cfg.threads > 1 else 40,
        }
        options.update(self.CONFIG_KWARGS)
        return Config(app=self.wsgi, **options)

    def run(self) -> None:
        config = self.config()
        configure_logging(config)
        loop = new_event_loop(config.resolve_loop())
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve(config))
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self, config: Config) -> None:
        server = Server(config, install_signal_handlers=False)  # gunicorn's handlers stay.
        sockets = [getattr(listener, "sock", listener) for listener in self.sockets]
        task = asyncio.ensure_future(server.serve(sockets))
        while not task.done():
            self.notify()  # The arbiter's heartbeat.
            if not self.alive or self.ppid != os.getppid():
                server.request_exit()
            await asyncio.wait({task}, timeout=max(min(self.timeout / 4, 1.0), 0.1))
        await task
