"""HTTP/1.1 request parsing, sans-I/O: bytes in, request events out, strict on framing.

Two parsers sit behind one interface (`feed(data) -> list of events`): httptools (llhttp, fast)
and h11 (pure Python). On top of either, `check_request_head` applies the rules that keep request
smuggling and ambiguous framing out (RFC 9112), whatever the underlying parser tolerates:

- Content-Length and Transfer-Encoding together, Transfer-Encoding that is not exactly one final
  `chunked`, or Transfer-Encoding on HTTP/1.0: 400 (RFC 9112 section 6.1, 6.3).
- Content-Length that is not all digits, or repeated with different values: 400 (section 6.3).
- HTTP/1.1 without exactly one Host header: 400 (section 3.2).
- A header name that is not a token (whitespace before the colon included), a value holding NUL,
  CR or LF, or obs-fold: 400 (RFC 9110 section 5.5, RFC 9112 section 5.2).
- A version other than 1.0 or 1.1: 505. Limits: request line 414, header bytes or count 431,
  a declared body over the limit 413.

Events are tuples, cheapest to build on the hot path: `(HEAD, RequestHead)`, `(BODY, bytes)`,
`(END, None)`. Errors are raised as `RemoteProtocolError` with the status to answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import unquote_to_bytes

from ._exceptions import RemoteProtocolError

__all__ = [
    "BODY",
    "END",
    "HEAD",
    "H11Parser",
    "HttptoolsParser",
    "Limits",
    "RequestHead",
    "RequestParser",
    "check_request_head",
    "split_target",
]

HEAD, BODY, END = 0, 1, 2

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(rb"[\x00\r\n]")


@dataclass(frozen=True)
class Limits:
    """Size limits for one request (bytes, except `max_header_count`)."""

    max_request_line_bytes: int = 8190
    max_header_bytes: int = 65536
    max_header_count: int = 100
    max_body_bytes: int | None = None


@dataclass
class RequestHead:
    """A request line and its headers, with the framing `check_request_head` derived from them."""

    method: str
    target: bytes
    http_version: str
    headers: list[tuple[bytes, bytes]]
    content_length: int | None = None
    chunked: bool = False
    keep_alive: bool = True
    expect_continue: bool = False
    upgrade: bytes | None = None


Event = tuple[int, Any]


class RequestParser(Protocol):
    @property
    def upgrade_tail(self) -> bytes: ...

    def feed(self, data: bytes) -> list[Event]: ...


def check_request_head(head: RequestHead, limits: Limits) -> RequestHead:
    """Validate a parsed request head and fill in its framing; raise RemoteProtocolError if bad."""
    if head.http_version not in ("1.1", "1.0"):
        raise RemoteProtocolError(f"HTTP version {head.http_version} not supported", status_code=505)
    hosts = 0
    lengths: list[bytes] = []
    encodings: list[bytes] = []
    connection = b""
    for name, value in head.headers:
        if not _TOKEN.fullmatch(name):
            raise RemoteProtocolError(f"invalid header name {name!r}")
        if _BAD_VALUE.search(value):
            raise RemoteProtocolError(f"invalid characters in header {name.decode('latin-1')}")
        if name == b"host":
            hosts += 1
        elif name == b"content-length":
            lengths.append(value)
        elif name == b"transfer-encoding":
            encodings.append(value)
        elif name == b"connection":
            connection += b"," + value.lower()
        elif name == b"expect":
            head.expect_continue = value.lower() == b"100-continue"
        elif name == b"upgrade":
            head.upgrade = value.lower()
    if head.http_version == "1.1" and hosts != 1:
        raise RemoteProtocolError("HTTP/1.1 requests need exactly one Host header")
    if encodings:
        if lengths:
            raise RemoteProtocolError("both Content-Length and Transfer-Encoding")
        if head.http_version == "1.0":
            raise RemoteProtocolError("Transfer-Encoding in an HTTP/1.0 request")
        if len(encodings) != 1 or encodings[0].strip().lower() != b"chunked":
            raise RemoteProtocolError("Transfer-Encoding must be exactly 'chunked'")
        head.chunked = True
    elif lengths:
        first = lengths[0]
        if not first.isdigit() or any(other != first for other in lengths[1:]):
            raise RemoteProtocolError("invalid or conflicting Content-Length")
        head.content_length = int(first)
        if limits.max_body_bytes is not None and head.content_length > limits.max_body_bytes:
            raise RemoteProtocolError("request body too large", status_code=413)
    tokens = {token.strip() for token in connection.split(b",")}
    if head.http_version == "1.1":
        head.keep_alive = b"close" not in tokens
    else:
        head.keep_alive = b"keep-alive" in tokens
    return head


def split_target(target: bytes) -> tuple[bytes, bytes]:
    """Split a request target into (raw path, query string); accepts origin- and absolute-form."""
    if target[:1] != b"/":
        if target == b"*":
            return b"*", b""
        scheme_end = target.find(b"://")
        if scheme_end == -1 or target[:scheme_end].lower() not in (b"http", b"https"):
            raise RemoteProtocolError("invalid request target")
        slash = target.find(b"/", scheme_end + 3)
        target = b"/" if slash == -1 else target[slash:]
    raw_path, _, query = target.partition(b"?")
    raw_path = raw_path.partition(b"#")[0]
    query = query.partition(b"#")[0]
    return raw_path, query


def decode_path(raw_path: bytes) -> str:
    """Percent-decode a raw path into the ASGI `path` text (UTF-8, undecodable bytes as U+FFFD)."""
    if b"%" not in raw_path:
        try:
            return raw_path.decode("ascii")
        except UnicodeDecodeError:
            return raw_path.decode("utf-8", "replace")
    return unquote_to_bytes(raw_path).decode("utf-8", "replace")


class HttptoolsParser:
    """Request parsing with httptools (llhttp)."""

    def __init__(self, limits: Limits) -> None:
        import httptools

        self._httptools = httptools
        self._parser = httptools.HttpRequestParser(self)
        self._limits = limits
        self._events: list[Event] = []
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._header_bytes = 0
        self._error: RemoteProtocolError | None = None
        self.upgrade_tail = b""  # Bytes after an upgrade request's head (the new protocol's).

    def feed(self, data: bytes) -> list[Event]:
        """Parse `data`; return the events completed so far (raise RemoteProtocolError if bad)."""
        events = self._events = []
        try:
            self._parser.feed_data(data)
        except self._httptools.HttpParserUpgrade as exc:
            # The head is complete; what follows belongs to the upgraded protocol.
            offset = exc.args[0] if exc.args and isinstance(exc.args[0], int) else len(data)
            self.upgrade_tail = data[offset:]
        except self._httptools.HttpParserCallbackError as exc:
            raise self._error or RemoteProtocolError(str(exc)) from None
        except self._httptools.HttpParserInvalidURLError:
            raise RemoteProtocolError("invalid request target") from None
        except self._httptools.HttpParserError as exc:
            error = self._error or RemoteProtocolError(f"malformed request: {exc}")
            if "HPE_HEADER_OVERFLOW" in str(exc):
                error = RemoteProtocolError("request header too large", status_code=431)
            if self._error is None and events:
                # Keep the good requests before the bad bytes; report the error on the next feed.
                self._error = error
                return events
            raise error from None
        return events

    # llhttp callbacks -------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._header_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self._limits.max_request_line_bytes:
            self._error = RemoteProtocolError("request line too long", status_code=414)
            raise self._error

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + 4
        if (
            self._header_bytes > self._limits.max_header_bytes
            or len(self._headers) >= self._limits.max_header_count
        ):
            self._error = RemoteProtocolError("request header too large", status_code=431)
            raise self._error
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        parser = self._parser
        head = RequestHead(
            method=parser.get_method().decode("ascii"),
            target=self._url,
            http_version=parser.get_http_version(),
            headers=self._headers,
        )
        try:
            check_request_head(head, self._limits)
        except RemoteProtocolError as exc:
            self._error = exc
            raise
        self._events.append((HEAD, head))

    def on_body(self, body: bytes) -> None:
        self._events.append((BODY, body))

    def on_message_complete(self) -> None:
        self._events.append((END, None))


class H11Parser:
    """Request parsing with h11 (pure Python). h11 tracks a response too: we complete a dummy one."""

    def __init__(self, limits: Limits) -> None:
        import h11

        self._h11 = h11
        self._limits = limits
        self._connection = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_header_bytes)

    @property
    def upgrade_tail(self) -> bytes:
        """Bytes after an upgrade request's head (they belong to the new protocol)."""
        return bytes(self._connection.trailing_data[0])

    def feed(self, data: bytes) -> list[Event]:
        h11 = self._h11
        connection = self._connection
        connection.receive_data(data)
        events: list[Event] = []
        while True:
            try:
                event = connection.next_event()
            except h11.RemoteProtocolError as exc:
                status = exc.error_status_hint
                if events:
                    return events  # The bad part raises again on the next feed.
                raise RemoteProtocolError(f"malformed request: {exc}", status_code=status) from None
            if event is h11.NEED_DATA or event is h11.PAUSED:
                if event is h11.PAUSED and connection.their_state is h11.DONE:
                    self._next_cycle()
                    continue
                return events
            if isinstance(event, h11.Request):
                if len(event.target) + len(event.method) + 10 > self._limits.max_request_line_bytes:
                    raise RemoteProtocolError("request line too long", status_code=414)
                raw = list(event.headers.raw_items())
                if len(raw) > self._limits.max_header_count:
                    raise RemoteProtocolError("too many headers", status_code=431)
                head = RequestHead(
                    method=event.method.decode("ascii"),
                    target=event.target,
                    http_version=event.http_version.decode("ascii"),
                    headers=[(name.lower(), value) for name, value in raw],
                )
                events.append((HEAD, check_request_head(head, self._limits)))
            elif isinstance(event, h11.Data):
                events.append((BODY, bytes(event.data)))
            elif isinstance(event, h11.EndOfMessage):
                events.append((END, None))
                self._next_cycle()
            elif isinstance(event, h11.ConnectionClosed):
                return events

    def _next_cycle(self) -> None:
        h11 = self._h11
        connection = self._connection
        if connection.our_state is h11.SEND_RESPONSE:
            connection.send(h11.Response(status_code=204, headers=[]))
        if connection.our_state is h11.SEND_BODY:
            connection.send(h11.EndOfMessage())
        if connection.our_state is h11.DONE and connection.their_state is h11.DONE:
            connection.start_next_cycle()
        elif connection.our_state is h11.MUST_CLOSE or connection.their_state is h11.MUST_CLOSE:
            # h11 will parse no more requests here; start afresh with whatever is buffered.
            trailing, _ = connection.trailing_data
            self._connection = h11.Connection(
                h11.SERVER, max_incomplete_event_size=self._limits.max_header_bytes
            )
            if trailing:
                self._connection.receive_data(bytes(trailing))


def make_parser(kind: str, limits: Limits) -> RequestParser:
    """Return a parser: `kind` is "httptools" or "h11"."""
    parser: RequestParser = HttptoolsParser(limits) if kind == "httptools" else H11Parser(limits)
    return parser
