"""The built-in ASGI server: listening sockets, lifespan, signals and graceful shutdown.

`Server(config).run()` serves until SIGINT/SIGTERM (or `limit_max_requests`), then stops
accepting, lets in-flight requests finish for up to `timeout_graceful_shutdown` seconds, runs the
lifespan shutdown and returns. Each connection is an `http11.HTTPProtocol`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import socket
import stat
import sys
import threading
from typing import Any, Literal

from ._exceptions import ConfigurationError
from ._types import ASGIApp, Scope
from .config import Config
from .http11 import HTTPProtocol
from .lifespan import Lifespan
from .proxy_headers import Trusted, apply_proxy_headers

__all__ = ["Server", "ServerState", "bind_sockets", "configure_logging", "run_config", "serve"]

logger = logging.getLogger("bridges.server")

SD_LISTEN_FDS_START = 3


class ServerState:
    """What every connection of one server shares."""

    def __init__(self, config: Config, loop: asyncio.AbstractEventLoop) -> None:
        self.config = config
        self.loop = loop
        self.http_parser = config.resolve_http()
        self.app_state: dict[str, Any] = {}
        self.connections: set[Any] = set()  # HTTPProtocol or FastCGIProtocol instances.
        self.tasks: set[asyncio.Task[None]] = set()
        self.total_requests = 0
        self._count_lock = threading.Lock()
        self.should_exit = False
        self.running_eagerly = False  # An app is being run inline (see HTTPProtocol._start).
        # --header NAME:VALUE: added to every HTTP response (one block, with its line count).
        self.extra_headers = b"".join(
            f"{name}: {value}\r\n".encode("latin-1") for name, value in config.headers
        )
        self.extra_header_lines = max(len(config.headers) - 1, 0)
        self._sweeper: asyncio.TimerHandle | None = None
        self._sweep_interval = 1.0
        self.proxy_trusted: Trusted | None = config.trusted_proxies() if config.proxy_headers else None

    def count_request(self) -> None:
        """Count one request served off the loop (the direct FastCGI WSGI threads)."""
        with self._count_lock:
            self.total_requests += 1

    def ensure_sweeper(self) -> None:
        """Start the periodic check of connection deadlines (header read, keep-alive)."""
        if self._sweeper is None and not self.loop.is_closed():
            config = self.config
            shortest = min(config.timeout_keep_alive, config.timeout_header_read)
            self._sweep_interval = min(max(shortest / 4, 0.05), 1.0)
            self._sweeper = self.loop.call_later(self._sweep_interval, self._sweep)

    def stop_sweeper(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    def _sweep(self) -> None:
        now = self.loop.time()
        for connection in list(self.connections):
            deadline = connection.deadline
            if deadline and deadline <= now:
                connection.deadline = 0.0
                connection.on_deadline()
        self._sweeper = self.loop.call_later(self._sweep_interval, self._sweep)

    def limit_reached(self) -> bool:
        limit = self.config.limit_concurrency
        return limit is not None and len(self.tasks) >= limit

    def apply_proxy_headers(self, scope: Scope) -> None:
        if self.proxy_trusted is not None:
            apply_proxy_headers(scope, self.proxy_trusted)


def configure_logging(config: Config) -> None:
    """Send bridges' logs to stderr at the configured level (the CLI and `serve()` call this)."""
    root = logging.getLogger("bridges")
    if not any(getattr(h, "_bridges", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        handler._bridges = True  # type: ignore[attr-defined]
        root.addHandler(handler)
        root.propagate = False
    root.setLevel(config.log_level_number)
    logging.getLogger("bridges.access").disabled = not config.access_log


def bind_sockets(config: Config) -> list[socket.socket]:
    """Create the listening sockets the config asks for: systemd's, `--fd`, `--uds`, or host:port."""
    listen_fds = os.environ.get("LISTEN_FDS")
    if listen_fds and os.environ.get("LISTEN_PID") == str(os.getpid()):
        count = int(listen_fds)
        return [socket.socket(fileno=SD_LISTEN_FDS_START + i) for i in range(count)]
    if config.fd is not None:
        try:
            sock = socket.socket(fileno=config.fd)
        except OSError as exc:
            raise ConfigurationError(f"--fd {config.fd}: not a socket ({exc.strerror})") from None
        return [sock]
    if config.uds:
        path = config.uds
        if os.path.exists(path):
            if not stat.S_ISSOCK(os.stat(path).st_mode):
                raise ConfigurationError(f"--uds {path}: exists and is not a socket")
            os.unlink(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
        except OSError as exc:
            sock.close()
            raise ConfigurationError(f"--uds {path}: {exc.strerror}") from None
        os.chmod(path, 0o666)
        sock.listen(config.backlog)
        sock.setblocking(False)
        return [sock]
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    try:
        sock.bind((config.host.strip("[]"), config.port))
    except OSError as exc:
        sock.close()
        raise ConfigurationError(f"cannot listen on {config.host}:{config.port}: {exc.strerror}") from None
    sock.listen(config.backlog)
    sock.setblocking(False)
    return [sock]


def _describe(sock: socket.socket, protocol: str = "http") -> str:
    name = sock.getsockname()
    scheme = "fastcgi" if protocol == "fastcgi" else "http"
    if sock.family == socket.AF_UNIX:
        return f"unix:{name}" if protocol == "http" else f"fastcgi unix:{name}"
    if sock.family == socket.AF_INET6:
        return f"{scheme}://[{name[0]}]:{name[1]}"
    return f"{scheme}://{name[0]}:{name[1]}"


class Server:
    """Serve one config's app in this process."""

    def __init__(self, config: Config, *, install_signal_handlers: bool = True) -> None:
        self.config = config
        self.install_signal_handlers = install_signal_handlers
        self.started = threading.Event()
        self.sockets: list[socket.socket] = []
        self.state: ServerState | None = None
        self._exit: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def run(self, sockets: list[socket.socket] | None = None) -> None:
        """Serve until told to stop (blocking); uses uvloop when configured and installed."""
        loop = new_event_loop(self.config.resolve_loop())
        try:
            loop.run_until_complete(self.serve(sockets))
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def request_exit(self) -> None:
        """Ask the server to shut down gracefully (thread-safe)."""
        loop, event = self._loop, self._exit
        if self.state is not None:
            self.state.should_exit = True
        if loop is not None and event is not None and not loop.is_closed():
            loop.call_soon_threadsafe(event.set)

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        config = self.config
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._exit = asyncio.Event()
        app, interface = config.load()
        state = self.state = ServerState(config, loop)
        # Signals first: a SIGTERM during a slow startup must stop the server cleanly (lifespan
        # shutdown included), not kill it by the default action.
        self._install_signal_handlers(loop)
        try:
            # Bind before the app starts up: a port in use must not leave a started-up app behind.
            own_sockets = sockets is None
            self.sockets = bind_sockets(config) if sockets is None else sockets
            lifespan = None
            if config.lifespan != "off" and interface != "wsgi":
                lifespan = Lifespan(app, config.lifespan)
                lifespan.state = state.app_state
                try:
                    await lifespan.startup()
                except BaseException:
                    if own_sockets:
                        for sock in self.sockets:
                            sock.close()
                    raise
            direct: Any = None
            if config.protocol == "fastcgi":
                from .fastcgi_host import FastCGIProtocol

                protocol_class: Any = FastCGIProtocol
                if interface == "wsgi" and config.fastcgi_wsgi != "asgi" and not config.fastcgi_multiplex:
                    from .fastcgi_wsgi_host import DirectFastCGIServer
                    from .wsgi_to_asgi import WSGIToASGI

                    assert isinstance(app, WSGIToASGI)  # What Config.load() makes of a WSGI app.

                    hand_off = None
                    if config.fastcgi_wsgi == "auto":
                        hand_off = functools.partial(_hand_off_kept, loop, state, app)
                    direct = DirectFastCGIServer(
                        config,
                        app.app,
                        self.sockets,
                        on_request=state.count_request,
                        hand_off_kept=hand_off,
                    )
            else:
                protocol_class = HTTPProtocol
            if direct is not None:
                servers = []
                direct.start()
            else:
                servers = [
                    await loop.create_server(
                        lambda: protocol_class(state, app), sock=sock, backlog=config.backlog
                    )
                    for sock in self.sockets
                ]
            parser = state.http_parser
            loop_name = type(loop).__module__.split(".")[0]
            for sock in self.sockets:
                logger.info(
                    "serving %s app %s on %s (%s, %s)",
                    {"wsgi": "WSGI", "fastcgi": "FastCGI responder as an", "cgi": "CGI programs as an"}.get(
                        interface, "ASGI"
                    ),
                    config.app if isinstance(config.app, str) else _name_of(config.app),
                    _describe(sock, config.protocol),
                    "FastCGI" if config.protocol == "fastcgi" else parser,
                    "a thread per connection" if direct is not None else loop_name,
                )
            self.started.set()
            try:
                await self._wait_for_exit(state)
            finally:
                if direct is not None:
                    await loop.run_in_executor(None, direct.stop, config.timeout_graceful_shutdown)
                await self._shutdown(servers, state)
                if lifespan is not None:
                    await lifespan.shutdown()
        finally:
            self._remove_signal_handlers(loop)

    async def _wait_for_exit(self, state: ServerState) -> None:
        assert self._exit is not None
        limit = self.config.limit_max_requests
        while not state.should_exit:
            try:
                await asyncio.wait_for(self._exit.wait(), 0.5 if limit else None)
            except asyncio.TimeoutError:
                pass
            if self._exit.is_set() or (limit is not None and state.total_requests >= limit):
                state.should_exit = True

    async def _shutdown(self, servers: list[asyncio.Server], state: ServerState) -> None:
        logger.info("shutting down")
        for server in servers:
            server.close()
        for connection in list(state.connections):
            connection.shutdown()
        timeout = self.config.timeout_graceful_shutdown
        if state.tasks:
            _, pending = await asyncio.wait(list(state.tasks), timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                logger.warning("cancelled %d requests still running after %ss", len(pending), timeout)
                await asyncio.wait(pending, timeout=5)
        for connection in list(state.connections):
            connection.close()
        state.stop_sweeper()
        for server in servers:
            await server.wait_closed()
        if self.config.uds and os.path.exists(self.config.uds):
            os.unlink(self.config.uds)

    def _install_signal_handlers(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self.install_signal_handlers or threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self.request_exit)
            except (NotImplementedError, RuntimeError):
                pass

    def _remove_signal_handlers(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self.install_signal_handlers or threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.remove_signal_handler(sig)
            except (NotImplementedError, RuntimeError):
                pass


def _hand_off_kept(
    loop: asyncio.AbstractEventLoop, state: ServerState, app: ASGIApp, conn: socket.socket, received: bytes
) -> None:
    """Give a kept FastCGI connection from a direct WSGI thread to the loop (thread-safe)."""
    from .fastcgi_host import FastCGIProtocol

    async def adopt() -> None:
        try:
            conn.setblocking(False)
            await loop.connect_accepted_socket(lambda: FastCGIProtocol(state, app, received), sock=conn)
        except Exception as exc:  # The loop is closing, or the socket is gone.
            logger.warning("could not hand a FastCGI connection to the event loop: %s", exc)
            conn.close()

    try:
        loop.call_soon_threadsafe(lambda: asyncio.ensure_future(adopt()))
    except RuntimeError:  # The loop has closed.
        conn.close()


def _name_of(app: Any) -> str:
    name = getattr(app, "__qualname__", None) or type(app).__qualname__
    return f"{getattr(app, '__module__', '?')}.{name}"


def new_event_loop(kind: Literal["auto", "asyncio", "uvloop"]) -> asyncio.AbstractEventLoop:
    """A new event loop: uvloop for "uvloop" (required) or "auto" (when installed), else asyncio."""
    if kind != "asyncio":
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise ConfigurationError("--loop uvloop: uvloop is not installed") from None
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def serve(app: ASGIApp | str, **options: Any) -> int:
    """Serve `app` (an app or an import string) with the built-in server; blocks until stopped.

    Options are `Config`'s fields: `serve(app, host="0.0.0.0", port=8080, mode="wsgi")`.
    Returns the exit status: 0 after a graceful stop, 1 when the worker processes (`workers` > 1)
    could not start. An option no server could run with raises `ConfigurationError`.
    """
    return run_config(Config(app=app, **options))


def run_config(config: Config) -> int:
    """Serve what `config` describes, in this process or in `config.workers` worker processes.

    Returns the exit status: 0 after a graceful stop, 1 when the workers could not start.
    """
    configure_logging(config)
    if config.workers > 1:
        from .supervisor import Supervisor

        return Supervisor(config).run()
    Server(config).run()
    return 0
