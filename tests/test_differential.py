"""Differential tests: one WSGI app behind `bridges.WSGIToASGI` and behind `a2wsgi.WSGIMiddleware`.

Both adapters are driven directly, with a hand-built scope and hand-written `receive`/`send`, so
the comparison is exact and needs no network. For each request we compare what the client gets
(status, headers, body, whether the response completed, whether the ASGI app raised) and what the
WSGI app saw (the echo app below returns a JSON dump of the interesting environ keys and of the
body it read).

Every difference is classified:

- a difference listed in `KNOWN_A2WSGI_DIFFERENCES` is a documented behaviour (or bug) of a2wsgi;
  its test asserts what bridges does *and* what a2wsgi does, so a change on either side is
  noticed. `docs/differences-from-a2wsgi.md` explains each one.
- anything else is a bug of ours: its test asserts the correct behaviour and fails until fixed.

The end of the module holds the regression tests for aborted streams (the worker pool must not
fill up with stuck threads) and for chunked uploads to Flask.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from a2wsgi import WSGIMiddleware
from flask import Flask, request
from starlette.middleware.gzip import GZipMiddleware

from bridges import WSGIToASGI

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "differences-from-a2wsgi.md"

# Each entry: id -> one line. The doc has a section per id; the tests marked with @covers(id)
# assert both sides' behaviour.
KNOWN_A2WSGI_DIFFERENCES: dict[str, str] = {
    "root-path-segment-boundary": "a2wsgi cuts root_path as a string prefix: /app + /apple -> 'le'",
    "root-path-trailing-slash": "a2wsgi keeps root_path's trailing slash; PATH_INFO loses its '/'",
    "script-name-from-os-environ": "a2wsgi takes SCRIPT_NAME from the process environment",
    "query-string-non-ascii": "a2wsgi decodes query_string as ASCII and raises on other bytes",
    "cookie-join": "a2wsgi joins repeated Cookie headers with ',' instead of '; '",
    "duplicate-content-length": "a2wsgi joins repeated Content-Length headers ('5,5', '5,6')",
    "repeated-header-limit": "a2wsgi joins any number of repeats; bridges refuses >100 (431)",
    "underscore-headers": "a2wsgi maps X-A_B to HTTP_X_A_B, colliding with X-A-B",
    "httpoxy": "a2wsgi turns a Proxy: header into HTTP_PROXY (CVE-2016-5385)",
    "server-name-without-server": "without scope['server'] a2wsgi says localhost:80, not the Host",
    "input-terminated": "a2wsgi lacks wsgi.input_terminated: Flask reads chunked uploads as empty",
    "readlines-trailing-newline": "a2wsgi's readlines() adds a newline to the last line",
    "headers-sent-at-start-response": "a2wsgi sends the status at start_response(); exc_info can't change it",
    "exc-info-not-reraised": "a2wsgi's start_response(exc_info) never re-raises; raises after the response",
    "exception-before-start": "app error before the response: bridges answers 500, a2wsgi raises",
    "no-start-response": "no start_response call: bridges answers 500, a2wsgi sends a body only",
    "content-length-overrun": "body beyond Content-Length: bridges drops it, a2wsgi sends it",
    "status-without-reason": "status '200' without reason: a2wsgi raises ValueError, bridges accepts",
    "aborted-stream-hang": "send() raising OSError leaves a2wsgi's worker blocked forever",
    "disconnect-not-watched": "a2wsgi never listens for http.disconnect while streaming",
}

COVERED: dict[str, list[str]] = {}


def covers(*ids: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a test as the one asserting (both sides of) the known differences `ids`."""

    def mark(func: Callable[..., Any]) -> Callable[..., Any]:
        for ident in ids:
            assert ident in KNOWN_A2WSGI_DIFFERENCES, ident
            COVERED.setdefault(ident, []).append(func.__name__)
        return func

    return mark


# ---- the apps ---------------------------------------------------------------------------------

ECHO_KEYS = (
    "REQUEST_METHOD",
    "SCRIPT_NAME",
    "PATH_INFO",
    "QUERY_STRING",
    "CONTENT_TYPE",
    "CONTENT_LENGTH",
    "SERVER_NAME",
    "SERVER_PORT",
    "SERVER_PROTOCOL",
    "REMOTE_ADDR",
    "wsgi.url_scheme",
)


def _read_body(environ: dict[str, Any]) -> bytes:
    """Read wsgi.input the way the request's `x-read` header asks (default: one read())."""
    stream = environ["wsgi.input"]
    mode = environ.get("HTTP_X_READ", "read")
    if mode == "read":
        return bytes(stream.read())
    if mode == "read-7":  # Small fixed-size reads until EOF.
        parts = []
        while True:
            part = stream.read(7)
            if not part:
                return b"".join(parts)
            parts.append(part)
    if mode == "readline":
        return b"".join(iter(stream.readline, b""))
    if mode == "iterate":
        return b"".join(stream)
    if mode == "readlines":
        return b"".join(stream.readlines())
    raise AssertionError(mode)


def echo_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    body = _read_body(environ)
    seen: dict[str, Any] = {key: environ[key] for key in ECHO_KEYS if key in environ}
    seen.update({key: value for key, value in environ.items() if key.startswith("HTTP_")})
    seen["body_length"] = len(body)
    if len(body) <= 4096:
        seen["body"] = body.decode("latin-1")
    else:
        seen["body_sha256"] = hashlib.sha256(body).hexdigest()
    payload = json.dumps(seen, sort_keys=True).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
    return [payload]


_PAIRS: dict[Any, tuple[WSGIToASGI, WSGIMiddleware]] = {}


def adapters(app: Callable[..., Any]) -> tuple[WSGIToASGI, WSGIMiddleware]:
    """The two adapters around `app`, made once per app (each owns a thread pool)."""
    pair = _PAIRS.get(app)
    if pair is None:
        pair = _PAIRS[app] = (WSGIToASGI(app, threads=8), WSGIMiddleware(app, workers=8))
    return pair


# ---- driving an ASGI app by hand --------------------------------------------------------------


def make_scope(
    method: str = "GET",
    path: str = "/",
    *,
    root_path: str = "",
    query: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    host: bytes | None = b"testserver:8000",
    server: tuple[str, int | None] | None = ("testserver", 8000),
    client: tuple[str, int] | None = ("203.0.113.7", 50123),
    scheme: str = "http",
    http_version: str = "1.1",
    raw_path: bytes | None = None,
) -> dict[str, Any]:
    all_headers = ([(b"host", host)] if host is not None else []) + list(headers or [])
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": http_version,
        "method": method,
        "scheme": scheme,
        "path": path,
        "raw_path": raw_path if raw_path is not None else path.encode("utf-8"),
        "query_string": query,
        "root_path": root_path,
        "headers": all_headers,
        "server": server,
        "client": client,
        "extensions": {},
    }


@dataclass
class Outcome:
    """What the client got from one ASGI app call."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    error: BaseException | None = None

    @property
    def start(self) -> dict[str, Any] | None:
        starts = [m for m in self.messages if m["type"] == "http.response.start"]
        return starts[0] if starts else None

    @property
    def status(self) -> int | None:
        return self.start["status"] if self.start else None

    @property
    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        return [(bytes(n), bytes(v)) for n, v in self.start["headers"]] if self.start else []

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        """Header names lowercased: HTTP/1.1 clients see no difference in case."""
        return [(n.lower(), v) for n, v in self.raw_headers]

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages if m["type"] == "http.response.body")

    @property
    def complete(self) -> bool:
        return any(m["type"] == "http.response.body" and not m.get("more_body") for m in self.messages)

    @property
    def error_type(self) -> str | None:
        return type(self.error).__name__ if self.error is not None else None

    @property
    def seen(self) -> dict[str, Any]:
        """The environ the echo app saw."""
        assert self.status == 200, (self.status, self.body[:200], self.error)
        return dict(json.loads(self.body))

    def client_view(self) -> tuple[Any, ...]:
        return (self.status, self.headers, self.body, self.complete, self.error_type)


def request_messages(chunks: list[bytes] | None) -> list[dict[str, Any]]:
    """The http.request messages for a body in `chunks` (more_body on all but the last)."""
    if not chunks:
        return [{"type": "http.request", "body": b"", "more_body": False}]
    last = len(chunks) - 1
    return [{"type": "http.request", "body": c, "more_body": i < last} for i, c in enumerate(chunks)]


async def drive(
    app: Any, scope: dict[str, Any], chunks: list[bytes] | None = None, timeout: float = 10
) -> Outcome:
    """Call `app` like a well-behaved server: the body, then http.disconnect once the response is done."""
    pending = request_messages(chunks)
    done = asyncio.Event()
    outcome = Outcome()

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop(0)
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        outcome.messages.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            done.set()

    scope = {**scope, "headers": list(scope["headers"])}
    try:
        await asyncio.wait_for(app(scope, receive, send), timeout)
    except Exception as exc:
        outcome.error = exc
    return outcome


def run_both(
    app: Callable[..., Any], scope: dict[str, Any], chunks: list[bytes] | None = None, timeout: float = 10
) -> tuple[Outcome, Outcome]:
    ours, theirs = adapters(app)

    async def main() -> tuple[Outcome, Outcome]:
        return await drive(ours, scope, chunks, timeout), await drive(theirs, scope, chunks, timeout)

    return asyncio.run(main())


def run_ours(
    app: Any, scope: dict[str, Any], chunks: list[bytes] | None = None, timeout: float = 10
) -> Outcome:
    return asyncio.run(drive(app, scope, chunks, timeout))


def differing_keys(a: dict[str, Any], b: dict[str, Any]) -> set[str]:
    return {key for key in a.keys() | b.keys() if a.get(key) != b.get(key)}


# ---- requests on which both adapters agree exactly ---------------------------------------------

MB = 1024 * 1024
BIG = bytes(range(256)) * (MB // 256)
FORM = b"name=J%C3%BCrgen&tags=a&tags=b"
JSON_BODY = json.dumps({"k": "v", "n": [1, 2, 3]}).encode()


@dataclass
class Case:
    id: str
    scope: dict[str, Any]
    chunks: list[bytes] | None = None


AGREEING_CASES = [
    Case("get-root", make_scope()),
    Case("get-path-query", make_scope(path="/a/b", query=b"x=1&y=2")),
    Case("head", make_scope("HEAD", "/page")),
    Case("delete", make_scope("DELETE", "/items/7")),
    Case("options", make_scope("OPTIONS", "/")),
    Case("custom-method", make_scope("PROPFIND", "/dav/", headers=[(b"depth", b"1")])),
    Case(
        "unicode-path",
        make_scope(path="/ünïcødé/日本", raw_path=b"/%C3%BCn%C3%AFc%C3%B8d%C3%A9/%E6%97%A5%E6%9C%AC"),
    ),
    Case("encoded-slash", make_scope(path="/a/b", raw_path=b"/a%2Fb")),
    Case("mount", make_scope(path="/app/x/y", root_path="/app")),
    Case("mount-exact", make_scope(path="/app", root_path="/app")),
    Case("mount-slash", make_scope(path="/app/", root_path="/app")),
    Case("mount-old-convention", make_scope(path="/x", root_path="/app")),
    Case("mount-unicode", make_scope(path="/møunt/ä", root_path="/møunt")),
    Case("query-percent-encoded", make_scope(query=b"q=%C3%A9&a=1+2&empty=")),
    Case("query-flag", make_scope(query=b"flag")),
    Case(
        "repeated-header",
        make_scope(headers=[(b"x-forwarded-for", b"10.0.0.1"), (b"x-forwarded-for", b"10.0.0.2")]),
    ),
    Case("cookie", make_scope(headers=[(b"cookie", b"a=1; b=2")])),
    Case(
        "form-post",
        make_scope(
            "POST",
            "/form",
            headers=[
                (b"content-type", b"application/x-www-form-urlencoded"),
                (b"content-length", str(len(FORM)).encode()),
            ],
        ),
        [FORM],
    ),
    Case(
        "json-put",
        make_scope(
            "PUT",
            "/api/1",
            headers=[
                (b"content-type", b"application/json"),
                (b"content-length", str(len(JSON_BODY)).encode()),
            ],
        ),
        [JSON_BODY],
    ),
    Case("patch", make_scope("PATCH", "/api/1", headers=[(b"content-length", b"5")]), [b"patch"]),
    Case(
        "chunked",
        make_scope("POST", "/upload", headers=[(b"transfer-encoding", b"chunked")]),
        [b"first,", b"second,", b"third"],
    ),
    Case(
        "chunked-empty-messages",
        make_scope("POST", "/upload", headers=[(b"transfer-encoding", b"chunked")]),
        [b"", b"a", b"", b"b", b""],
    ),
    Case("empty-body-length-0", make_scope("POST", "/", headers=[(b"content-length", b"0")])),
    Case("post-no-body", make_scope("POST", "/")),
    Case("large-body", make_scope("POST", "/big", headers=[(b"content-length", str(MB).encode())]), [BIG]),
    Case(
        "large-body-chunked",
        make_scope("POST", "/big", headers=[(b"transfer-encoding", b"chunked")]),
        [BIG[i : i + 64 * 1024] for i in range(0, MB, 64 * 1024)],
    ),
    Case(
        "read-small-pieces",
        make_scope("POST", "/", headers=[(b"x-read", b"read-7")]),
        [b"abcdefghij", b"klmnopqrstuvwxyz", b"0123"],
    ),
    Case(
        "readline",
        make_scope("POST", "/", headers=[(b"x-read", b"readline")]),
        [b"line one\nline ", b"two\n\nline four\n", b"tail"],
    ),
    Case(
        "iterate-lines",
        make_scope("POST", "/", headers=[(b"x-read", b"iterate")]),
        [b"a\nb", b"b\nccc\n"],
    ),
    Case(
        "expect-100-continue",
        make_scope("POST", "/", headers=[(b"expect", b"100-continue"), (b"content-length", b"4")]),
        [b"data"],
    ),
    Case("https", make_scope(scheme="https", server=("testserver", 443), host=b"testserver")),
    Case("http-1.0", make_scope(http_version="1.0")),
    Case("http-2", make_scope(http_version="2")),
    Case("no-client", make_scope(client=None)),
    Case("ipv6", make_scope(server=("::1", 8000), client=("::1", 40000), host=b"[::1]:8000")),
    Case("latin-1-header-value", make_scope(headers=[(b"x-name", b"caf\xe9")])),
    Case("empty-header-value", make_scope(headers=[(b"x-empty", b"")])),
    Case(
        "many-headers",
        make_scope(
            headers=[
                (b"user-agent", b"test/1.0"),
                (b"accept", b"text/html, application/json;q=0.9"),
                (b"accept-encoding", b"gzip, br"),
                (b"authorization", b"Bearer abc.def"),
                (b"x-request-id", b"f00d"),
                (b"if-none-match", b'"etag"'),
            ]
        ),
    ),
    Case("no-host-header", make_scope(host=None)),
]


@pytest.mark.parametrize("case", AGREEING_CASES, ids=[c.id for c in AGREEING_CASES])
def test_echo_agrees(case: Case) -> None:
    ours, theirs = run_both(echo_app, case.scope, case.chunks)
    assert ours.error is None and theirs.error is None, (ours.error, theirs.error)
    assert ours.client_view() == theirs.client_view()
    sent = b"".join(case.chunks or [])
    assert ours.seen["body_length"] == len(sent)
    if len(sent) > 4096:
        assert ours.seen["body_sha256"] == hashlib.sha256(sent).hexdigest()
    else:
        assert ours.seen["body"] == sent.decode("latin-1")


def test_there_are_enough_agreeing_cases() -> None:
    assert len(AGREEING_CASES) >= 30


# ---- request-side differences -------------------------------------------------------------------


@covers("root-path-segment-boundary")
def test_root_path_is_cut_at_a_segment_boundary() -> None:
    ours, theirs = run_both(echo_app, make_scope(path="/apple", root_path="/app"))
    # a2wsgi cuts root_path off as a plain string prefix: "/apple" minus "/app" is "le".
    assert (theirs.seen["SCRIPT_NAME"], theirs.seen["PATH_INFO"]) == ("/app", "le")
    # bridges cuts only at a "/" boundary; a path outside the mount is kept whole (the old ASGI
    # convention, in which path did not include root_path).
    assert (ours.seen["SCRIPT_NAME"], ours.seen["PATH_INFO"]) == ("/app", "/apple")
    assert differing_keys(ours.seen, theirs.seen) == {"PATH_INFO"}


@covers("root-path-trailing-slash")
def test_root_path_trailing_slash() -> None:
    ours, theirs = run_both(echo_app, make_scope(path="/app/x", root_path="/app/"))
    # a2wsgi keeps the slash in SCRIPT_NAME, so PATH_INFO loses its leading "/" (PEP 3333 and
    # RFC 3875 want PATH_INFO to start with "/" when it is not empty).
    assert (theirs.seen["SCRIPT_NAME"], theirs.seen["PATH_INFO"]) == ("/app/", "x")
    assert (ours.seen["SCRIPT_NAME"], ours.seen["PATH_INFO"]) == ("/app", "/x")


@covers("script-name-from-os-environ")
def test_script_name_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCRIPT_NAME", "/from-env")
    ours, theirs = run_both(echo_app, make_scope(path="/app/x", root_path="/app"))
    # a2wsgi replaces SCRIPT_NAME with $SCRIPT_NAME (PATH_INFO is still cut by root_path), so the
    # app sees a URL that the client never asked for. bridges only looks at the scope.
    assert (theirs.seen["SCRIPT_NAME"], theirs.seen["PATH_INFO"]) == ("/from-env", "/x")
    assert (ours.seen["SCRIPT_NAME"], ours.seen["PATH_INFO"]) == ("/app", "/x")


@covers("query-string-non-ascii")
def test_query_string_with_raw_non_ascii_bytes() -> None:
    ours, theirs = run_both(echo_app, make_scope(query=b"q=\xc3\xa9&r=\xff"))
    # a2wsgi decodes the query string as ASCII: the request fails before the app runs.
    assert isinstance(theirs.error, UnicodeDecodeError) and theirs.messages == []
    # bridges passes the bytes through as latin-1 characters (a PEP 3333 "native string").
    assert ours.seen["QUERY_STRING"] == "q=\xc3\xa9&r=\xff"


@covers("cookie-join")
def test_repeated_cookie_headers() -> None:
    scope = make_scope(headers=[(b"cookie", b"a=1"), (b"cookie", b"b=2")])
    ours, theirs = run_both(echo_app, scope)
    # RFC 6265 section 5.4 joins cookie-pairs with "; "; "," is what a2wsgi uses for every header,
    # and cookie parsers then read the single cookie a = "1,b=2".
    assert theirs.seen["HTTP_COOKIE"] == "a=1,b=2"
    assert ours.seen["HTTP_COOKIE"] == "a=1; b=2"
    assert differing_keys(ours.seen, theirs.seen) == {"HTTP_COOKIE"}


@covers("duplicate-content-length")
def test_repeated_identical_content_length() -> None:
    scope = make_scope("POST", headers=[(b"content-length", b"5"), (b"content-length", b"5")])
    ours, theirs = run_both(echo_app, scope, [b"hello"])
    # a2wsgi hands "5,5" to the app, which is not a number (Werkzeug then reads no body at all).
    assert theirs.seen["CONTENT_LENGTH"] == "5,5"
    # RFC 9110 section 8.6: identical repeats may be treated as one value.
    assert ours.seen["CONTENT_LENGTH"] == "5"
    assert ours.seen["body_length"] == theirs.seen["body_length"] == 5


@covers("duplicate-content-length")
@pytest.mark.timeout(30)
def test_conflicting_content_length_is_refused_not_hung() -> None:
    """BUG of ours: translate refuses the request, but WSGIToASGI never answers (see report)."""
    scope = make_scope("POST", headers=[(b"content-length", b"5"), (b"content-length", b"6")])
    ours, theirs = run_both(echo_app, scope, [b"hello"], timeout=3)
    # a2wsgi hands "5,6" to the app.
    assert theirs.seen["CONTENT_LENGTH"] == "5,6"
    # translate.headers_to_environ raises RemoteProtocolError(status_code=400) for this request;
    # the adapter must answer it (400), not leave the client waiting forever.
    assert not isinstance(ours.error, asyncio.TimeoutError), "WSGIToASGI never answered: the request hung"
    assert ours.status == 400 and ours.complete


@covers("repeated-header-limit")
@pytest.mark.timeout(30)
def test_header_repeated_too_often_is_refused_not_hung() -> None:
    """BUG of ours: same root cause as the conflicting Content-Length case."""
    scope = make_scope(headers=[(b"x-many", b"v")] * 101)
    ours, theirs = run_both(echo_app, scope, timeout=3)
    assert theirs.seen["HTTP_X_MANY"] == ",".join(["v"] * 101)
    assert not isinstance(ours.error, asyncio.TimeoutError), "WSGIToASGI never answered: the request hung"
    assert ours.status == 431 and ours.complete


def test_header_repeated_up_to_the_limit_agrees() -> None:
    scope = make_scope(headers=[(b"x-many", b"v")] * 100)
    ours, theirs = run_both(echo_app, scope)
    assert ours.client_view() == theirs.client_view()


@covers("underscore-headers")
def test_header_names_with_underscores() -> None:
    scope = make_scope(headers=[(b"x-auth_user", b"mallory"), (b"x-auth-user", b"alice")])
    ours, theirs = run_both(echo_app, scope)
    # a2wsgi maps both names to HTTP_X_AUTH_USER and joins them: a proxy that strips X-Auth-User
    # but not X-Auth_User lets a client inject the value (the reason nginx and Apache drop them).
    assert theirs.seen["HTTP_X_AUTH_USER"] == "mallory,alice"
    assert ours.seen["HTTP_X_AUTH_USER"] == "alice"


@covers("httpoxy")
def test_proxy_header_is_not_passed_as_http_proxy() -> None:
    scope = make_scope(headers=[(b"proxy", b"http://evil.example:8080")])
    ours, theirs = run_both(echo_app, scope)
    # HTTP_PROXY in the environ is read as the outbound proxy setting by many HTTP clients.
    assert theirs.seen["HTTP_PROXY"] == "http://evil.example:8080"
    assert "HTTP_PROXY" not in ours.seen
    assert differing_keys(ours.seen, theirs.seen) == {"HTTP_PROXY"}


@covers("server-name-without-server")
def test_server_name_without_scope_server() -> None:
    ours, theirs = run_both(echo_app, make_scope(server=None, host=b"example.org:8443", scheme="https"))
    # a2wsgi falls back to localhost:80, so URLs the app builds point elsewhere.
    assert (theirs.seen["SERVER_NAME"], theirs.seen["SERVER_PORT"]) == ("localhost", "80")
    assert (ours.seen["SERVER_NAME"], ours.seen["SERVER_PORT"]) == ("example.org", "8443")
    # A unix-socket server: ASGI gives (path, None).
    ours, theirs = run_both(echo_app, make_scope(server=("/run/app.sock", None), host=b"example.org"))
    assert (theirs.seen["SERVER_NAME"], theirs.seen["SERVER_PORT"]) == ("/run/app.sock", "0")
    assert (ours.seen["SERVER_NAME"], ours.seen["SERVER_PORT"]) == ("example.org", "80")


@covers("readlines-trailing-newline")
def test_readlines_keeps_the_last_line_as_sent() -> None:
    scope = make_scope("POST", headers=[(b"x-read", b"readlines")])
    ours, theirs = run_both(echo_app, scope, [b"one\ntw", b"o\nthree"])
    assert ours.seen["body"] == "one\ntwo\nthree"
    # a2wsgi splits on "\n" and appends "\n" to every piece, the last one included.
    assert theirs.seen["body"] == "one\ntwo\nthree\n"
    # With a body that ends in a newline both agree.
    ours, theirs = run_both(echo_app, scope, [b"one\ntw", b"o\n"])
    assert ours.client_view() == theirs.client_view()


# ---- response-side agreement ---------------------------------------------------------------------


def _plain(start_response: Callable[..., Any], *extra: tuple[str, str], status: str = "200 OK") -> Any:
    return start_response(status, [("Content-Type", "text/plain"), *extra])


def app_list(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    _plain(start_response, ("Content-Length", "5"))
    return [b"hello"]


def app_list_many(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    _plain(start_response)
    return [b"a", b"bb", b"", b"ccc"]


def app_empty(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    _plain(start_response, ("Content-Length", "0"))
    return []


def app_no_content(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("204 No Content", [])
    return []


def app_generator(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
    _plain(start_response)
    for i in range(10):
        yield b"chunk %d\n" % i


def app_generator_with_empty_chunks(
    environ: dict[str, Any], start_response: Callable[..., Any]
) -> Iterator[bytes]:
    _plain(start_response)
    yield b""
    yield b"x"
    yield b""
    yield b"y"
    yield b""


def app_lazy_start(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
    # start_response called inside the generator, on the first next().
    _plain(start_response, ("X-Lazy", "yes"))
    yield b"lazy"


def app_write_only(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    write = _plain(start_response)
    write(b"written ")
    write(b"")
    write(b"twice")
    return []


def app_write_then_iterable(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    write = _plain(start_response)
    write(b"head,")
    return [b"tail"]


def app_big_stream(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(MB))])
    for i in range(0, MB, 64 * 1024):
        yield BIG[i : i + 64 * 1024]


def app_set_cookies(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("302 Found", [("Location", "/next"), ("Set-Cookie", "a=1; Path=/"), ("Set-Cookie", "b=2")])
    return [b""]


def app_teapot(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    _plain(start_response, status="418 I'm a teapot")
    return [b"short and stout"]


def app_unknown_status(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    _plain(start_response, status="599 Network Connect Timeout")
    return [b"?"]


def app_raises_midway(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
    _plain(start_response)
    yield b"partial"
    raise ValueError("boom after the response started")


def app_short_body(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    # Declares more than it sends: both pass it on (the server notices).
    _plain(start_response, ("Content-Length", "10"))
    return [b"short"]


def app_file_wrapper(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
    import io

    _plain(start_response)
    data = io.BytesIO(b"from a file-like object " * 100)
    wrapper = environ.get("wsgi.file_wrapper")
    if wrapper is None:  # a2wsgi has no wsgi.file_wrapper (optional in PEP 3333).
        return iter(lambda: data.read(1000), b"")
    return wrapper(data, 1000)


def app_echo_method_body(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    # Returns a body for HEAD too: removing it is the server's job, both adapters pass it on.
    _plain(start_response, ("Content-Length", "4"))
    return [b"body"]


RESPONSE_APPS = [
    app_list,
    app_list_many,
    app_empty,
    app_no_content,
    app_generator,
    app_generator_with_empty_chunks,
    app_lazy_start,
    app_write_only,
    app_write_then_iterable,
    app_big_stream,
    app_set_cookies,
    app_teapot,
    app_unknown_status,
    app_raises_midway,
    app_short_body,
    app_file_wrapper,
    app_echo_method_body,
]


@pytest.mark.parametrize("app", RESPONSE_APPS, ids=[a.__name__ for a in RESPONSE_APPS])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_response_agrees(app: Callable[..., Any], method: str) -> None:
    ours, theirs = run_both(app, make_scope(method))
    assert ours.client_view() == theirs.client_view()
    if app is app_raises_midway:
        assert ours.body == b"partial" and not ours.complete and isinstance(ours.error, ValueError)
    else:
        assert ours.error is None and ours.complete


# ---- response-side differences --------------------------------------------------------------------


def app_exc_info_before_body(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    _plain(start_response)
    try:
        raise ValueError("failed while rendering")
    except ValueError:
        start_response("500 Internal Server Error", [("Content-Type", "text/html")], sys.exc_info())
        return [b"<h1>error page</h1>"]


@covers("headers-sent-at-start-response")
def test_start_response_with_exc_info_replaces_unsent_headers() -> None:
    ours, theirs = run_both(app_exc_info_before_body, make_scope())
    # PEP 3333: headers are sent with the first non-empty body chunk, so an error handler may
    # still replace them by calling start_response again with exc_info.
    assert (ours.status, ours.headers, ours.body) == (
        500,
        [(b"content-type", b"text/html")],
        b"<h1>error page</h1>",
    )
    assert ours.error is None and ours.complete
    # a2wsgi sent the 200 at the first start_response call: the error page goes out as a 200, and
    # then the ASGI app raises the exc_info error (the server logs it).
    assert (theirs.status, theirs.body, theirs.complete) == (200, b"<h1>error page</h1>", True)
    assert isinstance(theirs.error, ValueError)


def app_exc_info_after_body(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    write = _plain(start_response)
    write(b"partial ")
    try:
        raise ValueError("failed after the body started")
    except ValueError:
        # PEP 3333: must re-raise, since the headers are already sent.
        start_response("500 Internal Server Error", [("Content-Type", "text/html")], sys.exc_info())
    return [b"written after the error"]


def app_exc_info_first_call(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    try:
        raise KeyError("no such thing")
    except KeyError:
        start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
    return [b"handled"]


@covers("exc-info-not-reraised")
def test_start_response_with_exc_info_after_headers_were_sent() -> None:
    ours, theirs = run_both(app_exc_info_after_body, make_scope())
    # bridges: start_response re-raises, the app stops, the response is cut (never completed) and
    # the ASGI app raises the original error to the server.
    assert (ours.status, ours.body, ours.complete) == (200, b"partial ", False)
    assert isinstance(ours.error, ValueError)
    # a2wsgi: start_response returns, the app goes on, its output is sent as if nothing happened.
    assert (theirs.status, theirs.body, theirs.complete) == (200, b"partial written after the error", True)
    assert isinstance(theirs.error, ValueError)
    # An exc_info on the first call is a handled error: bridges returns normally, a2wsgi raises
    # it to the server after the complete response.
    ours, theirs = run_both(app_exc_info_first_call, make_scope())
    assert (
        ours.client_view()[:4]
        == theirs.client_view()[:4]
        == (
            500,
            [(b"content-type", b"text/plain")],
            b"handled",
            True,
        )
    )
    assert ours.error is None
    assert isinstance(theirs.error, KeyError)


def app_raises_before_start(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    raise RuntimeError("boom before the response")


def app_raises_in_generator_before_start(
    environ: dict[str, Any], start_response: Callable[..., Any]
) -> Iterator[bytes]:
    raise RuntimeError("boom on the first next()")
    yield b""  # pragma: no cover


@covers("exception-before-start")
@pytest.mark.parametrize("app", [app_raises_before_start, app_raises_in_generator_before_start])
def test_app_raising_before_the_response(app: Callable[..., Any]) -> None:
    ours, theirs = run_both(app, make_scope())
    assert ours.status == 500 and ours.body == b"Internal Server Error" and ours.complete
    assert ours.error is None
    # a2wsgi sends nothing and raises: the ASGI server answers 500 itself.
    assert theirs.messages == [] and isinstance(theirs.error, RuntimeError)


def app_no_start_response(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    return [b"forgot start_response"]


@covers("no-start-response")
def test_app_that_never_calls_start_response() -> None:
    ours, theirs = run_both(app_no_start_response, make_scope())
    assert ours.status == 500 and ours.complete and ours.error is None
    # a2wsgi sends body messages with no http.response.start: an ASGI protocol error for the server.
    assert theirs.start is None
    assert theirs.messages[0] == {
        "type": "http.response.body",
        "body": b"forgot start_response",
        "more_body": True,
    }


def app_overrun(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    _plain(start_response, ("Content-Length", "5"))
    return [b"hello", b" and then some"]


@covers("content-length-overrun")
def test_body_longer_than_content_length() -> None:
    ours, theirs = run_both(app_overrun, make_scope())
    assert ours.body == b"hello" and ours.complete
    # a2wsgi sends everything: the server fails the response (uvicorn: "Response content longer
    # than Content-Length"), or on a kept-alive HTTP/1.1 connection the excess becomes garbage.
    assert theirs.body == b"hello and then some"


def app_bare_status(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("200", [("Content-Type", "text/plain")])
    return [b"no reason phrase"]


@covers("status-without-reason")
def test_status_without_reason_phrase() -> None:
    ours, theirs = run_both(app_bare_status, make_scope())
    assert (ours.status, ours.body, ours.error) == (200, b"no reason phrase", None)
    # a2wsgi does status.split(" ", 1) and unpacks two values.
    assert isinstance(theirs.error, ValueError) and theirs.messages == []


def app_padded_header(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Padded", "  value  ")])
    return [b"ok"]


def test_response_header_values_are_trimmed() -> None:
    """BUG of ours: surrounding whitespace in a response header value is sent as is.

    RFC 9110 section 5.5: a field value does not include leading or trailing whitespace.
    gunicorn strips it (value.strip(" \\t")), and so does a2wsgi; h11 (uvicorn --http h11)
    refuses to send such a value ("Illegal header value"), so the response fails there.
    """
    ours, theirs = run_both(app_padded_header, make_scope())
    assert (b"x-padded", b"value") in theirs.headers
    assert (b"x-padded", b"value") in ours.headers


# ---- bugs of ours found by the comparison ------------------------------------------------------------


def test_response_header_names_are_lowercase() -> None:
    """BUG of ours: the ASGI spec says response header names must be lowercased; a2wsgi does it."""
    ours, theirs = run_both(app_list, make_scope())
    assert theirs.raw_headers == [(b"content-type", b"text/plain"), (b"content-length", b"5")]
    assert ours.raw_headers == [(b"content-type", b"text/plain"), (b"content-length", b"5")]


def app_compressible(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    body = b"compress me " * 1000
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def test_asgi_middleware_on_top_sees_lowercase_headers() -> None:
    """BUG of ours (same cause): Starlette's GZipMiddleware around WSGIToASGI sends two Content-Lengths."""
    scope = make_scope(headers=[(b"accept-encoding", b"gzip")])
    gzip_ours = asyncio.run(drive(GZipMiddleware(adapters(app_compressible)[0], minimum_size=100), scope))
    gzip_theirs = asyncio.run(drive(GZipMiddleware(adapters(app_compressible)[1], minimum_size=100), scope))
    assert (b"content-encoding", b"gzip") in gzip_ours.headers
    assert (b"content-encoding", b"gzip") in gzip_theirs.headers
    assert [n for n, _ in gzip_theirs.headers].count(b"content-length") == 0  # a2wsgi streams it
    lengths = [v for n, v in gzip_ours.headers if n == b"content-length"]
    # GZipMiddleware deletes "content-length" and adds the compressed one; with "Content-Length"
    # it cannot find the original, so the client gets both (12000 and the gzip size).
    assert lengths == [str(len(gzip_ours.body)).encode()]


# ---- regression: aborted streams must not leave worker threads stuck ---------------------------------

CHUNK = b"\x00" * (64 * 1024)


class Endless:
    """An infinite response iterable that records its close()."""

    def __init__(self, registry: list[Endless]) -> None:
        self.closed = False
        registry.append(self)

    def __iter__(self) -> Iterator[bytes]:
        while True:
            yield CHUNK

    def close(self) -> None:
        self.closed = True


THREADS = 8


def make_streaming_app(registry: list[Endless], barrier: threading.Barrier) -> Callable[..., Any]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ["PATH_INFO"]
        if path == "/stream":
            start_response("200 OK", [("Content-Type", "application/octet-stream")])
            return Endless(registry)
        if path == "/barrier":
            # Returns only once THREADS requests are inside the app at the same time.
            barrier.wait(timeout=10)
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]

    return app


async def aborted_stream(
    adapter: Any, mode: str, abort_at: int = 4, body: list[bytes] | None = None, timeout: float = 10
) -> int:
    """One /stream request whose client goes away; returns how many messages were sent.

    "oserror": the `abort_at`-th send() raises OSError (ASGI 2.4: the client is gone), so
    abort_at=1 fails the http.response.start. "disconnect": every send() succeeds and receive()
    reports http.disconnect as soon as it is called after the request body (an older server).
    """
    pending = request_messages(body)
    sent = 0
    never = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop(0)
        if mode == "disconnect":
            return {"type": "http.disconnect"}
        await never.wait()
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        nonlocal sent
        sent += 1
        if mode == "oserror" and sent >= abort_at:
            raise OSError("connection reset by peer")

    await asyncio.wait_for(adapter(make_scope(path="/stream"), receive, send), timeout)
    return sent


async def all_threads_free(adapter: Any) -> list[Outcome]:
    """THREADS concurrent /barrier requests: they complete only if every worker thread is free."""
    return list(
        await asyncio.gather(
            *(drive(adapter, make_scope(path="/barrier"), timeout=15) for _ in range(THREADS))
        )
    )


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["oserror", "disconnect"])
def test_aborted_streams_do_not_exhaust_the_worker_pool(mode: str) -> None:
    registry: list[Endless] = []
    barrier = threading.Barrier(THREADS)
    adapter = WSGIToASGI(make_streaming_app(registry, barrier), threads=THREADS)
    total = 1000

    async def main() -> tuple[list[int], Outcome, list[Outcome]]:
        counts: list[int] = []
        for _ in range(total // 20):  # 20 at a time: more requests than threads, in flight together.
            # Abort on the 1st (the response start) to the 6th message, in turn.
            counts += await asyncio.gather(*(aborted_stream(adapter, mode, 1 + i % 6) for i in range(20)))
        normal = await drive(adapter, make_scope(path="/"), timeout=10)
        return counts, normal, await all_threads_free(adapter)

    started = time.monotonic()
    counts, normal, parallel = asyncio.run(main())
    assert len(counts) == total
    if mode == "oserror":
        assert counts == [1 + i % 6 for i in range(20)] * (total // 20)  # Nothing sent after the error.
    else:
        assert max(counts) < 50  # The endless stream stopped soon after the disconnect.
    assert len(registry) == total
    assert all(iterable.closed for iterable in registry), sum(not i.closed for i in registry)
    assert (normal.status, normal.body, normal.complete, normal.error) == (200, b"ok", True, None)
    assert [(o.status, o.body, o.error) for o in parallel] == [(200, b"ok", None)] * THREADS
    assert adapter.pool.thread_count <= THREADS
    assert time.monotonic() - started < 100


@pytest.mark.timeout(30)
@pytest.mark.parametrize("pieces", [3, 5])
def test_disconnect_is_noticed_while_an_unread_request_body_fills_the_window(pieces: int) -> None:
    """BUG of ours (pieces=5): a request body the app does not read blocks disconnect detection.

    The app streams without reading its 5 x 64 KiB request body. WSGIToASGI's pump reads the body
    ahead until the 256 KiB window is full, then parks until the app reads, so it never calls
    receive() again and never sees the http.disconnect: on a server that reports a disconnect only
    through receive() (send() keeps succeeding), the endless response streams on forever and the
    worker thread is never freed. With 3 x 64 KiB (below the window) it works.
    """
    registry: list[Endless] = []
    adapter = WSGIToASGI(make_streaming_app(registry, threading.Barrier(1)), threads=2)
    body = [b"u" * (64 * 1024)] * pieces

    async def main() -> int | None:
        try:
            return await aborted_stream(adapter, "disconnect", body=body, timeout=3)
        except asyncio.TimeoutError:
            return None

    sent = asyncio.run(main())
    assert sent is not None, "the endless stream was still running 3 s after the client disconnected"
    assert sent < 50 and registry[0].closed


A2WSGI_ABORT_SCRIPT = r"""
import asyncio, json, os, sys
from a2wsgi import WSGIMiddleware

mode = sys.argv[1]
closed = []

class Endless:
    def __iter__(self):
        while True:
            yield b"\0" * 65536
    def close(self):
        closed.append(1)

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return Endless() if environ["PATH_INFO"] == "/stream" else [b"ok"]

def scope(path):
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
            "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
            "root_path": "", "headers": [], "server": ("t", 80), "client": ("c", 1)}

async def main():
    middleware = WSGIMiddleware(app, workers=4)
    never = asyncio.Event()
    finished = 0

    async def aborted():
        nonlocal finished
        first, count = True, 0
        async def receive():
            nonlocal first
            if first:
                first = False
                return {"type": "http.request", "body": b"", "more_body": False}
            if mode == "disconnect":
                return {"type": "http.disconnect"}
            await never.wait()
        async def send(message):
            nonlocal count
            if message["type"] == "http.response.body":
                count += 1
                if mode == "oserror" and count > 3:
                    raise OSError("connection reset by peer")
        try:
            await asyncio.wait_for(middleware(scope("/stream"), receive, send), 2)
            finished += 1
        except Exception:
            pass

    await asyncio.gather(*(aborted() for _ in range(4)))
    async def receive_once():
        return {"type": "http.request", "body": b"", "more_body": False}
    async def ignore(message):
        pass
    try:
        await asyncio.wait_for(middleware(scope("/"), receive_once, ignore), 3)
        normal = True
    except asyncio.TimeoutError:
        normal = False
    print(json.dumps({"finished": finished, "closed": len(closed), "normal": normal}), flush=True)
    os._exit(0)  # The 4 worker threads are stuck for good; do not wait for them.

asyncio.run(main())
"""


@covers("aborted-stream-hang", "disconnect-not-watched")
@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", ["oserror", "disconnect"])
def test_a2wsgi_aborted_streams_exhaust_its_pool(mode: str) -> None:
    """a2wsgi in a subprocess (its stuck threads would otherwise stay in this one)."""
    result = subprocess.run(
        [sys.executable, "-c", A2WSGI_ABORT_SCRIPT, mode], capture_output=True, text=True, timeout=45
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    # With 4 workers, 4 aborted endless streams: none of the 4 ASGI calls ever returns, no
    # iterable is closed, and the next normal request is never served. ("oserror": the sender
    # task dies and the worker blocks on a full send queue; "disconnect": a2wsgi never calls
    # receive(), so the endless stream runs on.)
    assert report == {"finished": 0, "closed": 0, "normal": False}


# ---- regression: chunked upload to Flask ---------------------------------------------------------------

flask_app = Flask(__name__)


@flask_app.post("/upload")
def flask_upload() -> dict[str, int]:
    return {"length": len(request.get_data())}


@covers("input-terminated")
@pytest.mark.parametrize("pieces", [1, 3, 16])
def test_chunked_upload_to_flask(pieces: int) -> None:
    payload = bytes(range(256)) * 400  # 102,400 bytes
    size = -(-len(payload) // pieces)
    chunks = [payload[i : i + size] for i in range(0, len(payload), size)]
    assert len(chunks) == pieces
    scope = make_scope("POST", "/upload", headers=[(b"transfer-encoding", b"chunked")])
    ours, theirs = run_both(flask_app.wsgi_app, scope, chunks)
    # bridges sets wsgi.input_terminated, so Werkzeug reads a body of undeclared length in full.
    assert (ours.status, json.loads(ours.body)) == (200, {"length": len(payload)})
    # a2wsgi does not: Werkzeug's safe fallback gives Flask an empty body.
    assert (theirs.status, json.loads(theirs.body)) == (200, {"length": 0})
    # With a Content-Length both deliver the body.
    scope = make_scope("POST", "/upload", headers=[(b"content-length", str(len(payload)).encode())])
    ours, theirs = run_both(flask_app.wsgi_app, scope, chunks)
    assert json.loads(ours.body) == json.loads(theirs.body) == {"length": len(payload)}


# ---- the list, the doc and the tests agree --------------------------------------------------------------


def test_every_known_difference_has_a_test() -> None:
    assert set(COVERED) == set(KNOWN_A2WSGI_DIFFERENCES)


def test_every_known_difference_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    missing = [ident for ident in KNOWN_A2WSGI_DIFFERENCES if f"`{ident}`" not in text]
    assert not missing
