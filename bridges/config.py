"""`Config`: every server option in one place, shared by the `bridge` CLI and `bridges.serve()`.

The CLI only maps its options onto these fields; `Config.load()` turns the target into the ASGI
app the server runs (importing it, calling a factory, wrapping a WSGI app in `WSGIToASGI`).
"""

from __future__ import annotations

import inspect
import ipaddress
import logging
from dataclasses import dataclass, field
from typing import Any, Literal

from ._exceptions import ConfigurationError
from ._types import ASGIApp
from .importer import import_from_string

__all__ = ["Config"]

logger = logging.getLogger("bridges.server")

Mode = Literal["auto", "asgi", "wsgi", "fastcgi", "cgi"]
LOG_LEVELS = {
    "critical": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": 5,
}


@dataclass
class Config:
    """Server options. `app` is an import string (`module:attr`, `file.py:attr`) or the app itself.

    Every other field is the `bridge serve` option of the same name, with `_` for `-`
    (`limit_max_requests` is `--limit-max-requests`) and the same default. The repeatable options
    are collections: `fastcgi_params` a dict (`--fastcgi-param NAME=VALUE`), `cgi_pass_env` a
    list of names (`--cgi-pass-env`), `headers` a list of `(name, value)` (`--header`). Invalid
    values raise `ConfigurationError` when the `Config` is made.
    """

    app: Any
    factory: bool = False
    mode: Mode = "auto"
    # What the server speaks: HTTP/1.1, or FastCGI behind a web server.
    protocol: Literal["http", "fastcgi"] = "http"
    fastcgi_multiplex: bool = False
    # --protocol fastcgi with a WSGI app: threads that run it directly ("direct"), WSGIToASGI on
    # the loop ("asgi"), or directly for one-request connections and on the loop for kept ones.
    fastcgi_wsgi: Literal["auto", "direct", "asgi"] = "auto"
    # --mode fastcgi: the target is a FastCGI responder's address (php-fpm, fcgiwrap).
    document_root: str | None = None
    index: str = "index.php"
    fastcgi_params: dict[str, str] = field(default_factory=dict)
    backend_connections: int = 16
    backend_keep_conn: bool = False
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    # --mode cgi: the target is a CGI script or a cgi-bin directory.
    cgi_timeout: float = 30.0
    cgi_max_processes: int = 16
    cgi_max_queue: int = 64
    cgi_pass_env: list[str] = field(default_factory=list)
    cgi_pass_authorization: bool = False
    # Where to listen.
    host: str = "127.0.0.1"
    port: int = 8000
    uds: str | None = None
    fd: int | None = None
    backlog: int = 2048
    # Processes and threads.
    workers: int = 1
    limit_max_requests: int | None = None
    threads: int = 40
    # The app's environment.
    root_path: str = ""
    proxy_headers: bool = False
    forwarded_allow_ips: str = "127.0.0.1"
    lifespan: Literal["auto", "on", "off"] = "auto"
    # Implementation choices.
    http: Literal["auto", "httptools", "h11"] = "auto"
    loop: Literal["auto", "asyncio", "uvloop"] = "auto"
    # Logging.
    log_level: str = "info"
    access_log: bool = True
    # Timeouts, in seconds.
    timeout_keep_alive: float = 5.0
    timeout_header_read: float = 10.0
    timeout_graceful_shutdown: float | None = 30.0
    # Limits.
    limit_concurrency: int | None = None
    max_request_line_bytes: int = 8190
    max_header_bytes: int = 65536
    max_header_count: int = 100
    max_body_bytes: int | None = None
    ws_max_size: int = 16 * 1024 * 1024
    server_header: bool = True
    date_header: bool = True
    headers: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ConfigurationError for option values no server could run with."""
        if self.mode not in ("auto", "asgi", "wsgi", "fastcgi", "cgi"):
            raise ConfigurationError(f"--mode must be auto, asgi, wsgi, fastcgi or cgi, not {self.mode!r}")
        if self.protocol not in ("http", "fastcgi"):
            raise ConfigurationError(f"--protocol must be http or fastcgi, not {self.protocol!r}")
        if self.lifespan not in ("auto", "on", "off"):
            raise ConfigurationError(f"--lifespan must be auto, on or off, not {self.lifespan!r}")
        if self.http not in ("auto", "httptools", "h11"):
            raise ConfigurationError(f"--http must be auto, httptools or h11, not {self.http!r}")
        if self.loop not in ("auto", "asyncio", "uvloop"):
            raise ConfigurationError(f"--loop must be auto, asyncio or uvloop, not {self.loop!r}")
        if self.log_level.lower() not in LOG_LEVELS:
            raise ConfigurationError(f"--log-level must be one of {', '.join(LOG_LEVELS)}")
        if not 0 <= self.port <= 65535:
            raise ConfigurationError(f"--port must be 0-65535, not {self.port}")
        for name in ("workers", "threads", "max_header_count", "max_request_line_bytes", "max_header_bytes"):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"--{name.replace('_', '-')} must be at least 1")
        for name in ("timeout_keep_alive", "timeout_header_read"):
            if getattr(self, name) <= 0:
                raise ConfigurationError(f"--{name.replace('_', '-')} must be positive")
        for name, value in self.headers:
            if not name or any(c in name for c in ":\r\n\x00 ") or any(c in value for c in "\r\n\x00"):
                raise ConfigurationError(f"--header {name}:{value}: not a valid header")
        if self.root_path and not self.root_path.startswith("/"):
            raise ConfigurationError("--root-path must start with '/'")
        self.trusted_proxies()  # Parse now: a bad address is a start-up error.

    def trusted_proxies(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network] | Literal["*"]:
        """The peers whose X-Forwarded-*/Forwarded headers are believed."""
        text = self.forwarded_allow_ips.strip()
        if text == "*":
            return "*"
        networks = []
        for item in filter(None, (part.strip() for part in text.split(","))):
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ConfigurationError(f"--forwarded-allow-ips: {item!r} is not an address") from None
        return networks

    @property
    def log_level_number(self) -> int:
        return LOG_LEVELS[self.log_level.lower()]

    def resolve_loop(self) -> Literal["auto", "asyncio", "uvloop"]:
        """The event loop to run: "auto" means asyncio for --mode cgi, else uvloop when installed.

        The CGI runner spawns and reaps its scripts itself (vfork + pidfd) on either loop; with a
        process per request, asyncio's loop measured a few percent faster than uvloop's.
        """
        if self.loop == "auto" and self.mode == "cgi":
            return "asyncio"
        return self.loop

    def resolve_http(self) -> Literal["httptools", "h11"]:
        """The HTTP parser to use: httptools when installed (and asked for or 'auto'), else h11."""
        if self.http == "h11":
            return "h11"
        try:
            import httptools  # noqa: F401
        except ImportError:
            if self.http == "httptools":
                raise ConfigurationError("--http httptools: httptools is not installed") from None
            return "h11"
        return "httptools"

    def load(self) -> tuple[ASGIApp, Literal["asgi", "wsgi", "fastcgi", "cgi"]]:
        """Import the target and return (ASGI app to serve, the interface the target spoke)."""
        if self.mode == "cgi":
            from .cgi_runner import CGIToASGI

            if not isinstance(self.app, str):
                raise ConfigurationError("--mode cgi takes a CGI script or a cgi-bin directory")
            runner = CGIToASGI(
                self.app,
                timeout=self.cgi_timeout,
                max_processes=self.cgi_max_processes,
                max_queue=self.cgi_max_queue,
                pass_environ=self.cgi_pass_env,
                pass_authorization=self.cgi_pass_authorization,
            )
            return runner, "cgi"
        if self.mode == "fastcgi":
            from .fastcgi_client import FastCGIToASGI

            if not isinstance(self.app, str):
                raise ConfigurationError("--mode fastcgi takes an address: host:port or unix:/path")
            responder = FastCGIToASGI(
                self.app,
                document_root=self.document_root,
                index=self.index,
                params=self.fastcgi_params,
                connect_timeout=self.connect_timeout,
                read_timeout=self.read_timeout,
                max_connections=self.backend_connections,
                keep_conn=self.backend_keep_conn,
            )
            return responder, "fastcgi"
        target = import_from_string(self.app) if isinstance(self.app, str) else self.app
        if self.factory:
            if not callable(target):
                raise ConfigurationError(f"--factory: {self.app!r} is not callable")
            target = target()
        if not callable(target):
            raise ConfigurationError(f"{self.app!r} is not an app: it is a {type(target).__name__}")
        detected = _safe_detect(target)
        if self.mode == "auto":
            mode = detect_interface(target)
        else:
            mode = self.mode
            if detected is not None and detected != mode:
                raise ConfigurationError(
                    f"--mode {mode}: {self.app!r} looks like {_ARTICLE[detected]} app "
                    f"({_DETECTION_REASON[detected]}); use --mode {detected} or --mode auto"
                )
        if mode == "wsgi":
            from .wsgi_to_asgi import WSGIToASGI

            wrapped = WSGIToASGI(
                _refuse_coroutines(target), threads=self.threads, multiprocess=self.workers > 1
            )
            return wrapped, "wsgi"
        return target, "asgi"


def detect_interface(app: Any) -> Literal["asgi", "wsgi"]:
    """Tell an ASGI 3 app (an async callable of 3 arguments) from a WSGI app (2 arguments)."""
    call = app if inspect.isroutine(app) or inspect.isclass(app) else getattr(app, "__call__", app)  # noqa: B004
    if inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(app):
        return "asgi"
    try:
        parameters = [
            p
            for p in inspect.signature(app).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
        ]
    except (TypeError, ValueError):
        return "asgi"
    if len(parameters) == 2:
        return "wsgi"
    if len(parameters) == 3:
        return "asgi"
    raise ConfigurationError(
        f"cannot tell whether {app!r} is an ASGI or a WSGI app (it takes {len(parameters)} arguments); "
        "pass --mode asgi or --mode wsgi"
    )


_ARTICLE = {"asgi": "an ASGI", "wsgi": "a WSGI"}
_DETECTION_REASON = {
    "asgi": "an async callable",
    "wsgi": "a plain callable taking (environ, start_response)",
}


def _safe_detect(app: Any) -> Literal["asgi", "wsgi"] | None:
    try:
        return detect_interface(app)
    except ConfigurationError:
        return None


def _refuse_coroutines(app: Any) -> Any:
    """Wrap a WSGI app so that an ASGI app served as WSGI fails clearly instead of hanging."""

    def checked(environ: Any, start_response: Any) -> Any:
        result = app(environ, start_response)
        if inspect.isawaitable(result):
            close = getattr(result, "close", None)
            if close is not None:
                close()
            raise ConfigurationError("the app returned an awaitable: it is an ASGI app, use --mode asgi")
        return result

    return checked
