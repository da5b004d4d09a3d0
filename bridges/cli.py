"""The `bridge` command line: maps options onto `Config` and runs the server (`bridge serve`).

`bridge cgi` is handled by `bridges.cgi_host.cgi_main` without this module (see `__main__`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from ._exceptions import BridgeError, ConfigurationError
from ._version import __version__
from .config import LOG_LEVELS, Config

__all__ = ["build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="bridge",
        description="Run any web app under any gateway interface (ASGI, WSGI, CGI, FastCGI).",
    )
    parser.add_argument("--version", action="version", version=f"bridges {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.add_parser(
        "cgi",
        help="serve one CGI request with an app (use as a CGI script); see 'bridge cgi --help'",
        add_help=False,
    )
    serve = commands.add_parser(
        "serve",
        help="serve an app with the built-in HTTP/1.1 server",
        description="Serve an ASGI or WSGI app with the built-in HTTP/1.1 server.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = serve.add_argument
    add("target", metavar="TARGET", help="the app: 'module:attr' or 'path/to/file.py:attr'")
    add("--factory", action="store_true", help="TARGET is a factory: call it to get the app")
    add(
        "--mode",
        choices=["auto", "asgi", "wsgi", "fastcgi", "cgi"],
        default="auto",
        help="the app's interface; 'auto' tells an ASGI 3 app from a WSGI app and says which it chose; "
        "'fastcgi': TARGET is a FastCGI responder's address (host:port or unix:/path), e.g. php-fpm; "
        "'cgi': TARGET is a CGI script or a cgi-bin directory",
    )
    add(
        "--protocol",
        choices=["http", "fastcgi"],
        default="http",
        help="speak HTTP/1.1, or FastCGI to a web server (nginx fastcgi_pass, Apache mod_proxy_fcgi)",
    )
    add(
        "--fastcgi-wsgi",
        choices=["auto", "direct", "asgi"],
        default="auto",
        help="with --protocol fastcgi, how a WSGI app runs: 'direct' on a thread per connection that "
        "reads, runs the app and writes itself; 'asgi' under WSGIToASGI on the event loop "
        "(--fastcgi-multiplex implies it); 'auto' direct for connections without FCGI_KEEP_CONN, "
        "on the event loop for kept ones",
    )
    add(
        "--fastcgi-multiplex",
        action="store_true",
        help="accept several FastCGI requests at once on one connection (FCGI_MPXS_CONNS)",
    )
    where = serve.add_argument_group("where to listen")
    where.add_argument("--host", default="127.0.0.1", help="address to bind (IPv4 or IPv6)")
    where.add_argument("--port", type=int, default=8000, help="TCP port to bind (0 picks a free one)")
    where.add_argument("--uds", metavar="PATH", help="bind a unix domain socket instead of host:port")
    where.add_argument("--fd", type=int, metavar="N", help="serve on an already-listening socket fd N")
    where.add_argument("--backlog", type=_positive_int, default=2048, help="listen backlog")
    procs = serve.add_argument_group("processes and threads")
    procs.add_argument("--workers", type=_positive_int, default=1, help="worker processes (pre-forked)")
    procs.add_argument(
        "--limit-max-requests", type=_positive_int, metavar="N", help="recycle a worker after N requests"
    )
    procs.add_argument("--threads", type=_positive_int, default=40, help="threads for a WSGI app")
    app = serve.add_argument_group("the app's environment")
    app.add_argument("--root-path", default="", help="the path the app is mounted at (ASGI root_path)")
    app.add_argument(
        "--proxy-headers",
        action="store_true",
        help="take the client address and scheme from X-Forwarded-For/Proto or Forwarded",
    )
    app.add_argument(
        "--forwarded-allow-ips",
        default="127.0.0.1",
        help="comma-separated proxy addresses or networks trusted for proxy headers, or '*'",
    )
    app.add_argument(
        "--lifespan", choices=["auto", "on", "off"], default="auto", help="run the ASGI lifespan protocol"
    )
    backend = serve.add_argument_group("--mode fastcgi: the FastCGI responder (php-fpm, fcgiwrap)")
    backend.add_argument("--document-root", help="where the responder's scripts live (SCRIPT_FILENAME)")
    backend.add_argument("--index", default="index.php", help="script for paths ending in '/'")
    backend.add_argument(
        "--fastcgi-param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an extra FastCGI parameter (repeatable)",
    )
    backend.add_argument(
        "--backend-connections", type=_positive_int, default=16, help="most connections to the responder"
    )
    backend.add_argument(
        "--backend-keep-conn",
        action="store_true",
        help="reuse connections (FCGI_KEEP_CONN); keep --backend-connections <= php-fpm's pm.max_children",
    )
    backend.add_argument("--connect-timeout", type=_seconds, default=5.0, help="connecting (then 502/504)")
    backend.add_argument("--read-timeout", type=_seconds, default=60.0, help="waiting for output (then 504)")
    cgi = serve.add_argument_group("--mode cgi: CGI programs")
    cgi.add_argument(
        "--cgi-timeout", type=_seconds, default=30.0, help="kill a script's process group after this"
    )
    cgi.add_argument("--cgi-max-processes", type=_positive_int, default=16, help="scripts running at once")
    cgi.add_argument(
        "--cgi-max-queue",
        type=int,
        default=64,
        help="requests that may wait for a free process; more get 503 at once",
    )
    cgi.add_argument(
        "--cgi-pass-env",
        action="append",
        default=[],
        metavar="NAME",
        help="let scripts see this variable of the server's environment (repeatable; PATH always)",
    )
    cgi.add_argument(
        "--cgi-pass-authorization", action="store_true", help="give scripts the Authorization header"
    )
    impl = serve.add_argument_group("implementation")
    impl.add_argument("--http", choices=["auto", "httptools", "h11"], default="auto", help="HTTP parser")
    impl.add_argument("--loop", choices=["auto", "asyncio", "uvloop"], default="auto", help="event loop")
    impl.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="NAME:VALUE",
        help="add this header to every response (repeatable)",
    )
    impl.add_argument(
        "--server-header",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="send 'server: bridges'",
    )
    impl.add_argument(
        "--date-header", action=argparse.BooleanOptionalAction, default=True, help="send a Date header"
    )
    logs = serve.add_argument_group("logging")
    logs.add_argument("--log-level", choices=list(LOG_LEVELS), default="info", help="log level")
    logs.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="log one line per request: client, request line, status, bytes, duration in ms",
    )
    limits = serve.add_argument_group("timeouts (seconds) and limits")
    limits.add_argument(
        "--timeout-keep-alive", type=_seconds, default=5.0, help="close idle keep-alive connections"
    )
    limits.add_argument(
        "--timeout-header-read",
        type=_seconds,
        default=10.0,
        help="close connections whose request head is not complete in time (idle, slow or trickling)",
    )
    limits.add_argument(
        "--timeout-graceful-shutdown",
        type=_seconds,
        default=30.0,
        help="on SIGTERM/SIGINT, wait this long for in-flight requests before cancelling them",
    )
    limits.add_argument(
        "--limit-concurrency",
        type=_positive_int,
        metavar="N",
        help="answer 503 when N requests are already in progress (a WSGI app on the direct FastCGI "
        "path: at most N connection threads, default 1024)",
    )
    limits.add_argument(
        "--max-request-line-bytes", type=_positive_int, default=8190, help="longer request lines get 414"
    )
    limits.add_argument(
        "--max-header-bytes", type=_positive_int, default=65536, help="larger request heads get 431"
    )
    limits.add_argument(
        "--max-header-count", type=_positive_int, default=100, help="more request headers get 431"
    )
    limits.add_argument(
        "--max-body-bytes", type=_positive_int, metavar="N", help="larger request bodies get 413"
    )
    limits.add_argument(
        "--ws-max-size",
        type=_positive_int,
        default=16 * 1024 * 1024,
        help="largest WebSocket message in bytes; a larger one closes the connection with 1009",
    )
    return parser


def config_from_args(args: argparse.Namespace) -> Config:
    """Map parsed `bridge serve` options onto a Config (one field per option)."""
    fields: dict[str, Any] = {
        name: getattr(args, name)
        for name in (
            "factory",
            "mode",
            "protocol",
            "fastcgi_multiplex",
            "fastcgi_wsgi",
            "host",
            "port",
            "uds",
            "fd",
            "backlog",
            "workers",
            "limit_max_requests",
            "threads",
            "root_path",
            "proxy_headers",
            "forwarded_allow_ips",
            "lifespan",
            "http",
            "loop",
            "log_level",
            "access_log",
            "timeout_keep_alive",
            "timeout_header_read",
            "timeout_graceful_shutdown",
            "limit_concurrency",
            "max_request_line_bytes",
            "max_header_bytes",
            "max_header_count",
            "max_body_bytes",
            "ws_max_size",
            "document_root",
            "index",
            "backend_connections",
            "backend_keep_conn",
            "connect_timeout",
            "read_timeout",
            "cgi_timeout",
            "cgi_max_processes",
            "cgi_max_queue",
            "cgi_pass_env",
            "cgi_pass_authorization",
        )
    }
    fields["fastcgi_params"] = dict(_name_value(item) for item in args.fastcgi_param)
    fields["headers"] = [_header(item) for item in args.header]
    fields["server_header"] = args.server_header
    fields["date_header"] = args.date_header
    return Config(app=args.target, **fields)


def _header(item: str) -> tuple[str, str]:
    name, sep, value = item.partition(":")
    if not sep or not name.strip():
        raise ConfigurationError(f"--header {item!r}: expected NAME:VALUE")
    return name.strip(), value.strip()


def _name_value(item: str) -> tuple[str, str]:
    name, sep, value = item.partition("=")
    if not sep or not name:
        raise ConfigurationError(f"--fastcgi-param {item!r}: expected NAME=VALUE")
    return name, value


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        config = config_from_args(args)
        from .server import run_config

        return run_config(config)
    except ConfigurationError as exc:
        print(f"bridge {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BridgeError as exc:
        print(f"bridge {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0
