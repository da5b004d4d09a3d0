"""Run an ASGI or WSGI app as a CGI program: `bridges.run_cgi(app)` or `bridge cgi module:app`.

One process serves one request: the CGI meta-variables (RFC 3875 section 4) come from the
environment, the body from stdin (CONTENT_LENGTH bytes, or to EOF when the host streams without
one), and the response goes to stdout as a CGI response (section 6: `Status:` and header fields,
a blank line, the body), flushed as the app produces it. Scripts named `nph-*` write a full HTTP
status line instead (section 5). Exit status 0, or 1 when the app failed (after a 500 is written).

Start-up cost matters here, since every request pays it: this module imports only os and sys
(and asyncio when the app is an ASGI app), and `bridges.translate`, which is kept as light.
"""

from __future__ import annotations

import os
import sys

from .translate import cgi_variables_to_environ, gateway_variables_to_scope

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, BinaryIO

__all__ = ["cgi_main", "host_variables", "run_cgi"]

# RFC 9110 section 15 and the IANA registry; a dict here, as http.HTTPStatus costs start-up time.
_STATUS_PHRASES = {
    100: "Continue", 101: "Switching Protocols", 102: "Processing", 103: "Early Hints",
    200: "OK", 201: "Created", 202: "Accepted", 203: "Non-Authoritative Information",
    204: "No Content", 205: "Reset Content", 206: "Partial Content", 207: "Multi-Status",
    208: "Already Reported", 226: "IM Used",
    300: "Multiple Choices", 301: "Moved Permanently", 302: "Found", 303: "See Other",
    304: "Not Modified", 305: "Use Proxy", 307: "Temporary Redirect", 308: "Permanent Redirect",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 409: "Conflict", 410: "Gone",
    411: "Length Required", 412: "Precondition Failed", 413: "Content Too Large",
    414: "URI Too Long", 415: "Unsupported Media Type", 416: "Range Not Satisfiable",
    417: "Expectation Failed", 418: "I'm a teapot", 421: "Misdirected Request",
    422: "Unprocessable Content", 423: "Locked", 424: "Failed Dependency", 425: "Too Early",
    426: "Upgrade Required", 428: "Precondition Required", 429: "Too Many Requests",
    431: "Request Header Fields Too Large", 451: "Unavailable For Legal Reasons",
    500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Timeout", 505: "HTTP Version Not Supported",
    506: "Variant Also Negotiates", 507: "Insufficient Storage", 508: "Loop Detected",
    510: "Not Extended", 511: "Network Authentication Required",
}  # fmt: skip
_ERROR_BODY = b"Internal Server Error\n"


def host_variables(raw: dict[str, str] | None = None) -> dict[str, str]:
    """The CGI meta-variables from the environment, with the fix-ups real hosts need.

    Values are WSGI strings (bytes as latin-1), read from `os.environb` where it exists. IIS puts
    SCRIPT_NAME again at the start of PATH_INFO; that copy is removed. HTTP_PROXY is dropped.
    """
    if raw is None:
        if hasattr(os, "environb"):
            raw = {name.decode("latin-1"): value.decode("latin-1") for name, value in os.environb.items()}
        else:  # pragma: no cover - Windows
            raw = {name: value.encode("utf-8").decode("latin-1") for name, value in os.environ.items()}
    variables = cgi_variables_to_environ(raw)
    script_name = variables.get("SCRIPT_NAME", "")
    path_info = variables.get("PATH_INFO", "")
    if (
        "Microsoft-IIS" in variables.get("SERVER_SOFTWARE", "")
        and script_name
        and path_info.startswith(script_name)
    ):
        variables["PATH_INFO"] = path_info[len(script_name) :]
    return variables


def _is_nph(variables: dict[str, str]) -> bool:
    return os.path.basename(
        variables.get("SCRIPT_NAME", "") or variables.get("SCRIPT_FILENAME", "")
    ).startswith("nph-")


class _Input:
    """stdin, limited to CONTENT_LENGTH when the host declared one."""

    def __init__(self, stream: BinaryIO, length: int | None) -> None:
        self._stream = stream
        self._left = length

    def read(self, size: int | None = -1) -> bytes:
        if self._left is not None:
            if self._left <= 0:
                return b""
            size = self._left if size is None or size < 0 else min(size, self._left)
        data = self._stream.read(-1 if size is None else size)
        if self._left is not None:
            self._left -= len(data)
        return data

    def readline(self, limit: int | None = -1) -> bytes:
        if self._left is not None:
            if self._left <= 0:
                return b""
            limit = self._left if limit is None or limit < 0 else min(limit, self._left)
        line = self._stream.readline(-1 if limit is None else limit)
        if self._left is not None:
            self._left -= len(line)
        return line

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines = []
        while line := self.readline():
            lines.append(line)
        return lines

    def __iter__(self) -> Any:
        return iter(self.readline, b"")


def _content_length(variables: dict[str, str]) -> int | None:
    text = variables.get("CONTENT_LENGTH", "")
    return int(text) if text.isdigit() else None


class _Output:
    """Writes the CGI response to stdout: the head once, then body bytes, flushed as they come."""

    def __init__(self, stream: BinaryIO, nph: bool, protocol: str) -> None:
        self.stream = stream
        self.nph = nph
        self.protocol = protocol if protocol.startswith("HTTP/") else "HTTP/1.0"
        self.head: bytes | None = None
        self.head_sent = False

    def set_head(self, status: str, headers: list[tuple[str, str]]) -> None:
        for name, value in headers:
            if "\n" in name or "\r" in name or "\n" in value or "\r" in value:
                raise ValueError(f"invalid response header {name!r}")
        first = f"{self.protocol} {status}\r\n" if self.nph else f"Status: {status}\r\n"
        lines = [first, *(f"{name}: {value}\r\n" for name, value in headers), "\r\n"]
        self.head = "".join(lines).encode("latin-1")

    def write(self, data: bytes) -> None:
        if not self.head_sent:
            if self.head is None:
                raise RuntimeError("body before headers")
            data = self.head + data
            self.head_sent = True
        if data:
            self.stream.write(data)
            self.stream.flush()

    def error(self) -> None:
        """Answer 500 if nothing went out yet."""
        if not self.head_sent:
            self.head = None
            self.set_head("500 Internal Server Error", [("Content-Type", "text/plain; charset=utf-8")])
            self.write(_ERROR_BODY)


def run_cgi(
    app: Any,
    *,
    mode: str = "auto",
    lifespan: str = "auto",
    environ: dict[str, str] | None = None,
    stdin: BinaryIO | None = None,
    stdout: BinaryIO | None = None,
) -> int:
    """Serve one CGI request with `app`; return the exit status (0, or 1 if the app failed).

    `mode` is "auto" (tell ASGI from WSGI), "asgi" or "wsgi"; `lifespan` ("auto", "on", "off")
    applies to ASGI apps, whose startup and shutdown run around the request.
    """
    if environ is None:
        # httpoxy: a `Proxy:` request header arrives as HTTP_PROXY in our real environment,
        # where child processes and HTTP clients would take it for a proxy setting.
        os.environ.pop("HTTP_PROXY", None)
    variables = host_variables(environ)
    stdin = stdin if stdin is not None else sys.stdin.buffer
    stdout = stdout if stdout is not None else sys.stdout.buffer
    output = _Output(stdout, _is_nph(variables), variables.get("SERVER_PROTOCOL", "HTTP/1.0"))
    if mode == "auto":
        mode = _detect(app)
    if mode == "wsgi":
        return _run_wsgi(app, variables, stdin, output)
    if mode == "asgi":
        return _run_asgi(app, variables, stdin, output, lifespan)
    raise ValueError(f"mode must be 'auto', 'asgi' or 'wsgi', not {mode!r}")


def _detect(app: Any) -> str:
    """ASGI or WSGI, read off the callable's code object (no `inspect`: it costs ~3 ms to import)."""
    function = app if hasattr(app, "__code__") else getattr(type(app), "__call__", None)  # noqa: B004
    code = getattr(function, "__code__", None)
    if code is not None:
        if code.co_flags & 0x80:  # CO_COROUTINE: an `async def`.
            return "asgi"
        bound = 1 if (function is not app or hasattr(app, "__self__")) else 0
        required = code.co_argcount - len(getattr(function, "__defaults__", None) or ()) - bound
        if required in (2, 3):
            return "wsgi" if required == 2 else "asgi"
    from .config import detect_interface

    return detect_interface(app)


def _run_wsgi(app: Any, variables: dict[str, str], stdin: BinaryIO, output: _Output) -> int:
    length = _content_length(variables)
    environ: dict[str, Any] = dict(variables)
    https = variables.get("HTTPS", "").lower() in ("on", "1", "yes")
    environ.update(
        {
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "https" if https else variables.get("REQUEST_SCHEME") or "http",
            "wsgi.input": _Input(stdin, length),
            "wsgi.input_terminated": True,
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": False,
            "wsgi.multiprocess": True,
            "wsgi.run_once": True,
        }
    )
    environ.setdefault("SCRIPT_NAME", "")
    environ.setdefault("PATH_INFO", "")
    environ.setdefault("QUERY_STRING", "")
    state = {"started": False}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        if exc_info is not None:
            try:
                if output.head_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif state["started"]:
            raise RuntimeError("start_response called twice without exc_info")
        state["started"] = True
        output.set_head(status, headers)
        return output.write

    result = None
    try:
        result = app(environ, start_response)
        for chunk in result:
            if chunk:
                output.write(chunk)
        if not output.head_sent:
            output.write(b"")
    except BaseException as exc:
        _report(exc)
        output.error()
        return 1
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return 0


def _report(exc: BaseException) -> None:
    import traceback

    traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)


def _run_asgi(app: Any, variables: dict[str, str], stdin: BinaryIO, output: _Output, lifespan: str) -> int:
    import asyncio

    scope = gateway_variables_to_scope(variables, script_is_mount=True)
    body = _Input(stdin, _content_length(variables))
    declared = _content_length(variables) is not None
    state: dict[str, Any] = {"complete": False, "status": 200, "failed": False}

    async def receive() -> dict[str, Any]:
        if not state.get("body_done"):
            data = body.read(64 * 1024)
            more = bool(data) and (not declared or body._left != 0)
            if not more:
                state["body_done"] = True
            return {"type": "http.request", "body": data, "more_body": more}
        while not state["complete"]:
            await asyncio.sleep(3600)  # A CGI host gives no disconnect signal before the end.
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            status = int(message["status"])
            headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in message.get("headers", ())]
            output.set_head(f"{status} {_STATUS_PHRASES.get(status, 'Unknown')}", headers)
        elif kind == "http.response.body":
            output.write(message.get("body", b""))
            if not message.get("more_body", False):
                state["complete"] = True

    async def main() -> None:
        from .lifespan import Lifespan

        manager = None
        if lifespan != "off":
            manager = Lifespan(app, lifespan)
            await manager.startup()
            scope["state"] = dict(manager.state) if manager.supported else {}
        try:
            await app(scope, receive, send)
        except BaseException as exc:
            _report(exc)
            state["failed"] = True
        finally:
            if manager is not None:
                await manager.shutdown()
        if not state["complete"] and not state["failed"]:
            print("ASGI app returned without completing its response", file=sys.stderr)
            state["failed"] = True

    try:
        asyncio.run(main())
    except BaseException as exc:
        _report(exc)
        state["failed"] = True
    if state["failed"]:
        output.error()
        return 1
    return 0


def cgi_main(argv: list[str]) -> int:
    """`bridge cgi TARGET [--mode auto|asgi|wsgi] [--lifespan auto|on|off]`, without argparse."""
    usage = "usage: bridge cgi TARGET [--mode auto|asgi|wsgi] [--lifespan auto|on|off]"
    options = {"--mode": "auto", "--lifespan": "auto"}
    target = None
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg in ("-h", "--help"):
            print(usage + "\nServe one CGI request (from the environment and stdin) with TARGET.")
            return 0
        name, sep, value = arg.partition("=")
        if name in options:
            if not sep:
                if not args:
                    print(f"bridge cgi: error: {name} needs a value ({usage})", file=sys.stderr)
                    return 2
                value = args.pop(0)
            choices = ("auto", "asgi", "wsgi") if name == "--mode" else ("auto", "on", "off")
            if value not in choices:
                print(f"bridge cgi: error: {name} must be one of {', '.join(choices)}", file=sys.stderr)
                return 2
            options[name] = value
        elif arg.startswith("-") or target is not None:
            print(f"bridge cgi: error: unexpected argument {arg!r} ({usage})", file=sys.stderr)
            return 2
        else:
            target = arg
    if target is None:
        print(f"bridge cgi: error: TARGET is required ({usage})", file=sys.stderr)
        return 2
    from ._exceptions import ConfigurationError
    from .importer import import_from_string

    try:
        app = import_from_string(target)
    except ConfigurationError as exc:
        print(f"bridge cgi: error: {exc}", file=sys.stderr)
        return 2
    return run_cgi(app, mode=options["--mode"], lifespan=options["--lifespan"])
