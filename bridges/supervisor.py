"""Pre-forking supervisor for `--workers N`: N processes share the listening sockets.

The parent binds, forks the workers and then only watches them: a worker that exits (crash, or
`--limit-max-requests` reached) is replaced; SIGTERM/SIGINT is passed on to every worker, which
shuts down gracefully, and the parent exits 0 once they are gone (killing stragglers after the
graceful timeout plus a margin).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time

from .config import Config
from .server import Server, bind_sockets

__all__ = ["Supervisor"]

logger = logging.getLogger("bridges.server")

STARTUP_FAILED = 3  # A worker's exit status when the app could not start.


class Supervisor:
    """Run `config.workers` worker processes of the built-in server."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.workers: dict[int, int] = {}  # pid -> worker number
        self.should_exit = False
        self.exit_code = 0

    def run(self) -> int:
        """Run until SIGTERM/SIGINT (0) or until workers cannot start (1); return the exit status."""
        sockets = bind_sockets(self.config)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            logger.info("supervisor %d starting %d workers", os.getpid(), self.config.workers)
            for number in range(self.config.workers):
                self._spawn(number, sockets)
            while not self.should_exit:
                self._reap(sockets, respawn=True)
                time.sleep(0.1)
            self._stop_workers()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for sock in sockets:
                sock.close()
            if self.config.uds and os.path.exists(self.config.uds):
                os.unlink(self.config.uds)
        return self.exit_code

    def _on_signal(self, signum: int, frame: object) -> None:
        self.should_exit = True

    def _spawn(self, number: int, sockets: list[socket.socket]) -> None:
        pid = os.fork()
        if pid == 0:  # The worker.
            code = 0
            server = Server(self.config)
            try:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    signal.signal(sig, signal.SIG_DFL)
                server.run(sockets)
            except BaseException as exc:
                started = server.started.is_set()
                if started:
                    logger.exception("worker %d failed", os.getpid())
                else:
                    logger.error("worker %d could not start: %s", os.getpid(), exc)
                code = 1 if started else STARTUP_FAILED
            finally:
                logging.shutdown()
                os._exit(code)
        self.workers[pid] = number
        logger.info("started worker %d (pid %d)", number, pid)

    def _reap(self, sockets: list[socket.socket], respawn: bool) -> None:
        while self.workers:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.workers.clear()
                return
            if pid == 0:
                return
            number = self.workers.pop(pid, None)
            if number is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            if code == STARTUP_FAILED and not self.should_exit:
                # The app cannot start (an import error, a failed lifespan startup): restarting
                # would fail the same way, forever. Stop, as uvicorn does.
                logger.error("worker %d (pid %d) could not start; stopping", number, pid)
                self.should_exit = True
                self.exit_code = 1
                continue
            if respawn and not self.should_exit:
                logger.info("worker %d (pid %d) exited with %d; restarting it", number, pid, code)
                self._spawn(number, sockets)

    def _stop_workers(self) -> None:
        for pid in list(self.workers):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + (self.config.timeout_graceful_shutdown or 30.0) + 5.0
        while self.workers and time.monotonic() < deadline:
            self._reap([], respawn=False)
            time.sleep(0.05)
        for pid in list(self.workers):
            logger.warning("worker pid %d did not stop in time; killing it", pid)
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        self.workers.clear()
        logger.info("supervisor stopped")
