"""HTTP/1.1 request parsing, sans-I/O: bytes in, request events out, strict on framing.

Two parsers sit behind one interface (`feed(data) -> list of events`): httptools (llhttp, fast)
and h11 (pure Python). Both answer the same inputs the same way: the h11 path reads the head
itself with llhttp's rules (h11 is laxer and normalises what it accepts), and on top of either,
`check_request_head` applies the rules that keep request smuggling and ambiguous framing out
(RFC 9112), whatever the underlying parser tolerates:

- Content-Length and Transfer-Encoding together, Transfer-Encoding that is not exactly one
  `chunked` (any other coding, a list, a parameter, trailing whitespace), or Transfer-Encoding on
  HTTP/1.0: 400 (RFC 9112 sections 6.1, 6.3).
- Content-Length that is not all digits, over 2**64 - 1, or repeated (even with the same value,
  which RFC 9110 section 8.6 lets a recipient refuse): 400 (RFC 9112 section 6.3).
- More than one Host, none on HTTP/1.1, or one that is not `host[:port]`: 400 (section 3.2).
- A header name that is not a token (whitespace before the colon included), a value holding a
  CTL other than HTAB, obs-fold, bare CR or bare LF: 400 (RFC 9110 section 5.5, RFC 9112 2.2, 5.2).
- HTTP/1.x above 1.1 is processed as 1.1 (RFC 9110 section 2.5); another major version (HTTP/0.9
  included): 505. Limits: request target 414, header bytes or count 431 (an unfinished line is
  not buffered past them), a declared body over the limit 413.
- The parser stops at a head only for an upgrade the server carries out (a bodiless WebSocket
  handshake); any other request's body is read as body, even with `Connection: upgrade`.
- Trailer fields are read and dropped, never merged into the request's headers.

Events are tuples, cheapest to build on the hot path: `(HEAD, RequestHead)`, `(BODY, bytes)`,
`(END, None)`. Errors are raised as `RemoteProtocolError` with the status to answer; one that
comes after complete requests in the same feed is kept (`pending_error`) and raised by the next.

Known differences left between the two: llhttp only knows a fixed list of methods (h11 takes any
token), llhttp takes `RTSP/1.0` and `ICE/1.0` for HTTP/1.0, and h11 is lenient on chunk-size
lines (whitespace after the size, any extension, sizes of 17-20 hex digits).
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
_TOKEN_OR_EMPTY = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]*")
# A field value holds no CTL but HTAB (RFC 9110 section 5.5: NUL, CR and LF must be refused; the
# other CTLs may be, and llhttp does).
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_BAD_LINE_CHAR = re.compile(rb"[^\x20-\x7e]")
_TARGET = re.compile(rb"[\x21-\x7e]+")
_VERSION = re.compile(rb"HTTP/([0-9]\.[0-9])")
_LENGTH_PREFIX = re.compile(rb"[ \t]*[0-9]*[ \t]*")
_VERSION_PREFIX = re.compile(rb"(?:H(?:T(?:T(?:P(?:/(?:[0-9](?:\.[0-9]?)?)?)?)?)?)?)?")
# Host = uri-host [ ":" port ] (RFC 9110 section 7.2, RFC 3986 section 3.2.2); empty is allowed.
_HOST = re.compile(rb"(?:\[[0-9A-Za-z.:\-_~!$&'()*+,;=]*\]|[0-9A-Za-z.\-_~%!$&'()*+,;=]*)(?::[0-9]*)?[ \t]*")
_OWS = b" \t"
_OWS_CODES = (32, 9)
_MAX_CONTENT_LENGTH = 2**64 - 1  # What llhttp can count; beyond is an overflow error.


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

    @property
    def pending_error(self) -> RemoteProtocolError | None:
        """The error met after the last events `feed` returned (the next `feed` raises it)."""
        ...

    def feed(self, data: bytes) -> list[Event]: ...


def check_request_head(head: RequestHead, limits: Limits) -> RequestHead:
    """Validate a parsed request head and fill in its framing; raise RemoteProtocolError if bad.

    Header values arrive as the parsers give them: leading whitespace gone, trailing whitespace
    kept (llhttp keeps it). It is checked here, then stripped (RFC 9110 section 5.5).
    """
    version = head.http_version
    if version != "1.1" and version != "1.0":
        if version[:2] != "1.":
            raise RemoteProtocolError(f"HTTP version {version} not supported", status_code=505)
        # A higher minor version of HTTP/1 is processed as 1.1 (RFC 9110 section 2.5).
        head.http_version = version = "1.1"
    hosts = 0
    lengths: list[bytes] = []
    encodings: list[bytes] = []
    connection = b""
    trailing_space = False
    for name, value in head.headers:
        if not _TOKEN.fullmatch(name):
            raise RemoteProtocolError(f"invalid header name {name!r}")
        if _BAD_VALUE.search(value):
            raise RemoteProtocolError(f"invalid characters in header {name.decode('latin-1')}")
        if value and value[-1] in _OWS_CODES:
            trailing_space = True
        if name == b"host":
            hosts += 1
            if not _HOST.fullmatch(value):
                raise RemoteProtocolError("invalid Host header")
        elif name == b"content-length":
            lengths.append(value)
        elif name == b"transfer-encoding":
            encodings.append(value)
        elif name == b"connection":
            connection += b"," + value.lower()
        elif name == b"expect":
            head.expect_continue = value.rstrip(_OWS).lower() == b"100-continue"
        elif name == b"upgrade":
            head.upgrade = value.rstrip(_OWS).lower()
    if trailing_space:
        head.headers = [(name, value.rstrip(_OWS)) for name, value in head.headers]
    if hosts > 1 or (hosts == 0 and version == "1.1"):
        raise RemoteProtocolError("one Host header is required (HTTP/1.1), two are never allowed")
    if encodings:
        if lengths:
            raise RemoteProtocolError("both Content-Length and Transfer-Encoding")
        if version == "1.0":
            raise RemoteProtocolError("Transfer-Encoding in an HTTP/1.0 request")
        # Exactly one `chunked`, as sent: no other coding, no list, no parameter, no trailing
        # whitespace (llhttp does not take `chunked ` for chunked: neither do we, whatever the parser).
        if len(encodings) != 1 or encodings[0].lower() != b"chunked":
            raise RemoteProtocolError("Transfer-Encoding must be exactly 'chunked'")
        head.chunked = True
    elif lengths:
        if len(lengths) != 1:
            # RFC 9110 section 8.6 allows folding identical values into one; llhttp cannot, so
            # repeated Content-Length is refused whatever the parser.
            raise RemoteProtocolError("repeated Content-Length")
        value = lengths[0].rstrip(_OWS)
        if not value.isdigit():
            raise RemoteProtocolError("invalid Content-Length")
        length = int(value)
        if length > _MAX_CONTENT_LENGTH:
            raise RemoteProtocolError("Content-Length overflow")
        head.content_length = length
        if limits.max_body_bytes is not None and length > limits.max_body_bytes:
            raise RemoteProtocolError("request body too large", status_code=413)
    tokens = {token.strip(_OWS) for token in connection.split(b",")}
    if version == "1.1":
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


def _fail(error: RemoteProtocolError, events: list[Event]) -> list[Event]:
    """Report a parse error after the requests that ended before it.

    The events of the request the error is in (its head, if it came in the same feed, and its
    body so far) are dropped: a request with a bad body never reaches the app, it gets the error
    response. Complete requests before it are returned and the error is raised by the next feed.
    """
    keep = len(events)
    while keep and events[keep - 1][0] != END:
        keep -= 1
    del events[keep:]
    if events:
        return events
    raise error


def _head_cap(limits: Limits) -> int:
    """The most bytes an unfinished head may hold (a line never ending is refused, not buffered)."""
    return limits.max_request_line_bytes + limits.max_header_bytes + 4 * limits.max_header_count + 64


def _takes_upgrade(head: RequestHead) -> bool:
    """Whether the parser stops at this head for the server to switch protocols (WebSocket).

    llhttp stops at any head with `Connection: upgrade` and an Upgrade header, and at CONNECT,
    skipping the body: for the upgrades the server does not carry out that would lose the body
    and parse what follows it as requests (a smuggling hole). So both parsers stop only for a
    bodiless WebSocket handshake; every other request is read as HTTP, body included, and its
    `upgrade` is cleared so that nothing downstream takes it for one.
    """
    return (
        head.upgrade == b"websocket"
        and head.method == "GET"
        and head.http_version == "1.1"
        and not head.chunked
        and not head.content_length
        and any(
            name == b"connection" and b"upgrade" in {t.strip(_OWS) for t in value.lower().split(b",")}
            for name, value in head.headers
        )
    )


class HttptoolsParser:
    """Request parsing with httptools (llhttp)."""

    def __init__(self, limits: Limits) -> None:
        import httptools

        self._httptools = httptools
        self._limits = limits
        self._parser = self._new_parser()
        self._events: list[Event] = []
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._header_bytes = 0
        self._head: RequestHead | None = None  # The last head read.
        self._primed = False  # The next head is our own primer (see _refuse_upgrade): no event.
        self._error: RemoteProtocolError | None = None  # Raised by a callback, for feed to report.
        self._failed: RemoteProtocolError | None = None  # Once set, every later feed raises it.
        # llhttp buffers a header (or trailer) line until it ends: bytes fed meanwhile are counted.
        self._in_head = False
        self._in_trailers = False
        self._unbounded_fed = 0
        self._head_cap = _head_cap(limits)
        self.upgrade_tail = b""  # Bytes after an upgrade request's head (the new protocol's).

    @property
    def pending_error(self) -> RemoteProtocolError | None:
        """The error met after the last events `feed` returned (the next `feed` raises it)."""
        return self._failed

    def _new_parser(self) -> Any:
        parser = self._httptools.HttpRequestParser(self)
        # HTTP/1.2 and the like are processed as 1.1 (RFC 9110 section 2.5) and other versions
        # get 505 from check_request_head, rather than llhttp's 400 for both.
        parser.set_dangerous_leniencies(lenient_version=True)
        return parser

    def feed(self, data: bytes) -> list[Event]:
        """Parse `data`; return the events completed so far (raise RemoteProtocolError if bad)."""
        if self._failed is not None:
            raise self._failed
        events = self._events = []
        if self._in_head or self._in_trailers:
            self._unbounded_fed += len(data)
        httptools = self._httptools
        while True:
            try:
                self._parser.feed_data(data)
            except httptools.HttpParserUpgrade as exc:
                offset = exc.args[0] if exc.args and isinstance(exc.args[0], int) else len(data)
                head = self._head
                if head is not None and head.upgrade is not None:
                    # The head is complete; what follows belongs to the upgraded protocol.
                    self.upgrade_tail = data[offset:]
                    return events
                data = data[offset:]
                self._refuse_upgrade(events)
                continue
            except httptools.HttpParserCallbackError as exc:
                return self._fail(self._error or RemoteProtocolError(str(exc)), events)
            except httptools.HttpParserInvalidURLError:
                return self._fail(self._error or RemoteProtocolError("invalid request target"), events)
            except httptools.HttpParserError as exc:
                error = self._error or RemoteProtocolError(f"malformed request: {exc}")
                if "HPE_HEADER_OVERFLOW" in str(exc):
                    error = RemoteProtocolError("request header too large", status_code=431)
                elif "PRI/Upgrade" in str(exc):
                    error = RemoteProtocolError("HTTP/2 is not supported", status_code=505)
                return self._fail(error, events)
            break
        if (self._in_head or self._in_trailers) and self._unbounded_fed > self._head_cap:
            return self._fail(RemoteProtocolError("request header too large", status_code=431), events)
        return events

    def _fail(self, error: RemoteProtocolError, events: list[Event]) -> list[Event]:
        self._failed = error
        return _fail(error, events)

    def _refuse_upgrade(self, events: list[Event]) -> None:
        """llhttp stopped for an upgrade we do not take: read on as HTTP, the body included."""
        head = self._head
        if head is None or not (head.content_length or head.chunked):
            return  # No body: llhttp goes on with the next request.
        # llhttp skipped the body and ended the request: read the body with a fresh parser primed
        # with a head of the same framing (which makes no event of its own).
        if events and events[-1][0] == END:
            events.pop()
        self._parser = self._new_parser()
        self._primed = True
        framing = (
            b"transfer-encoding: chunked"
            if head.chunked
            else b"content-length: %d" % (head.content_length or 0)
        )
        close = b"" if head.keep_alive else b"connection: close\r\n"
        self._parser.feed_data(b"POST / HTTP/1.1\r\nhost: x\r\n" + framing + b"\r\n" + close + b"\r\n")

    # llhttp callbacks -------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._header_bytes = 0
        self._in_head = True
        self._unbounded_fed = 0

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
        if self._in_head:
            self._headers.append((name.lower(), value))
        # Trailer fields are dropped (as h11 does): never merged into the request's headers.

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._primed:
            self._primed = False
            return
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
        if head.upgrade is not None and not (parser.should_upgrade() and _takes_upgrade(head)):
            head.upgrade = None
        self._head = head
        self._events.append((HEAD, head))

    def on_body(self, body: bytes) -> None:
        self._in_trailers = False
        self._events.append((BODY, body))

    def on_chunk_header(self) -> None:
        # Until body bytes come, this may be the last chunk: its trailer lines are buffered.
        self._in_trailers = True
        self._unbounded_fed = 0

    def on_message_complete(self) -> None:
        self._in_trailers = False
        self._events.append((END, None))


class H11Parser:
    """Request parsing with h11 (pure Python) behind a strict head reader that follows llhttp.

    h11 is laxer than llhttp on the head, and normalises what it accepts before we could look:
    bare LF line ends, obs-fold, a request line with a missing version or leading empty lines,
    repeated or list-valued Content-Length folded into one, trailing whitespace dropped. So the
    head is read here, line by line, with llhttp's rules (the same early errors, the same limits),
    checked by `check_request_head`, and only then handed to h11 in a canonical form: h11 does the
    body framing (Content-Length or chunked). Each request gets a fresh h11 connection, so h11
    never needs to see our responses.
    """

    def __init__(self, limits: Limits) -> None:
        import h11

        self._h11 = h11
        self._limits = limits
        self._head_cap = _head_cap(limits)
        self._buffer = bytearray()  # Bytes of the head being read (and whatever follows it).
        self._connection: Any = None  # The h11 connection reading a body; None while reading a head.
        self._keep_alive = True  # Of the request whose body h11 is reading.
        self._closed = False  # A request without keep-alive ended: only CR/LF may follow.
        self._failed: RemoteProtocolError | None = None
        self.upgrade_tail = b""  # Bytes after an upgrade request's head (the new protocol's).
        self._new_head()

    @property
    def pending_error(self) -> RemoteProtocolError | None:
        """The error met after the last events `feed` returned (the next `feed` raises it)."""
        return self._failed

    def _new_head(self) -> None:
        self._line_start = 0  # Offset in the buffer of the line being read.
        self._checked = 0  # Offset up to which the line being read was checked.
        self._request_line: tuple[bytes, bytes, str] | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._header_bytes = 0

    def feed(self, data: bytes) -> list[Event]:
        """Parse `data`; return the events completed so far (raise RemoteProtocolError if bad)."""
        if self._failed is not None:
            raise self._failed
        events: list[Event] = []
        if not data:
            return events
        try:
            if self._connection is not None:
                self._connection.receive_data(data)
            else:
                self._buffer += data
            while True:
                if self._connection is not None:
                    if not self._read_body(events):
                        return events
                elif self._closed:
                    if self._buffer.strip(b"\r\n"):
                        raise RemoteProtocolError("data after the last request of the connection")
                    self._buffer.clear()
                    return events
                else:
                    head = self._read_head()
                    if head is None:
                        return events
                    if not self._start_body(head, events):
                        return events
        except RemoteProtocolError as exc:
            self._failed = exc
            return _fail(exc, events)

    # ---- the head ------------------------------------------------------------------------------

    def _read_head(self) -> RequestHead | None:
        buf = self._buffer
        limits = self._limits
        if self._request_line is None and self._line_start == 0:
            # Empty lines (and stray CR/LF) before a request line are skipped (RFC 9112 section 2.2).
            skip = 0
            while skip < len(buf) and buf[skip] in b"\r\n":
                skip += 1
            if skip:
                del buf[:skip]
        while True:
            start = self._line_start
            newline = buf.find(b"\n", max(start, self._checked))
            if newline == -1:
                self._check_partial_line(buf, start)
                return None
            if newline == start or buf[newline - 1] != 13:
                raise RemoteProtocolError("bare LF in the request head (lines end with CRLF)")
            line = bytes(buf[start : newline - 1])
            self._line_start = self._checked = newline + 1
            if b"\r" in line:
                raise RemoteProtocolError("bare CR in the request head")
            if self._request_line is None:
                self._request_line = self._parse_request_line(line)
            elif line:
                self._add_header_line(line)
            else:
                break
        method, target, version = self._request_line
        head = RequestHead(
            method=method.decode("ascii"), target=target, http_version=version, headers=self._headers
        )
        del buf[: self._line_start]
        self._new_head()
        return check_request_head(head, limits)

    def _check_partial_line(self, buf: bytearray, start: int) -> None:
        """Fail early, as llhttp does, on what can already be seen of an unfinished line."""
        end = len(buf)
        limits = self._limits
        if end > self._head_cap:
            if self._request_line is None:
                raise RemoteProtocolError("request line too long", status_code=414)
            raise RemoteProtocolError("request header too large", status_code=431)
        checked = max(start, self._checked)
        stop = end - 1 if end and buf[end - 1] == 13 else end  # A final CR may be half a CRLF.
        if self._request_line is None:
            space = buf.find(b" ", start, end)
            if not _TOKEN_OR_EMPTY.fullmatch(buf, start, space if space != -1 else stop):
                raise RemoteProtocolError("invalid method")
            if space != -1:
                target_start = space
                while target_start < end and buf[target_start] == 32:
                    target_start += 1
                target_end = buf.find(b" ", target_start, end)
                if (target_end if target_end != -1 else end) - target_start > limits.max_request_line_bytes:
                    raise RemoteProtocolError("request line too long", status_code=414)
                if _BAD_LINE_CHAR.search(buf, checked, stop):
                    raise RemoteProtocolError("invalid characters in the request line")
                if target_end != -1:
                    version_start = target_end
                    while version_start < stop and buf[version_start] == 32:
                        version_start += 1
                    if not _VERSION_PREFIX.fullmatch(buf, version_start, stop):
                        raise RemoteProtocolError("invalid HTTP version")
            elif stop - start > limits.max_request_line_bytes:
                raise RemoteProtocolError("request line too long", status_code=414)
            elif stop < end:
                raise RemoteProtocolError("invalid method")  # `GET` then the line's end.
        else:
            colon = buf.find(b":", start, stop)
            if checked < stop:
                if checked == start and buf[start] in b" \t":
                    raise RemoteProtocolError("obs-fold (a header line starting with whitespace)")
                if colon == -1:
                    if not _TOKEN.fullmatch(buf, checked, stop):
                        raise RemoteProtocolError("invalid header name")
                else:
                    if colon == start or (checked < colon and not _TOKEN.fullmatch(buf, checked, colon)):
                        raise RemoteProtocolError("invalid header name")
                    if _BAD_VALUE.search(buf, max(checked, colon + 1), stop):
                        raise RemoteProtocolError("invalid characters in a header value")
                    if colon - start == 14 and buf[start:colon].lower() == b"content-length":
                        if not _LENGTH_PREFIX.fullmatch(buf, colon + 1, stop):
                            raise RemoteProtocolError("invalid Content-Length")
            if colon == -1 and start < stop < end:
                raise RemoteProtocolError("invalid header name")  # A name, then the line's end.
        self._checked = max(checked, stop)

    def _parse_request_line(self, line: bytes) -> tuple[bytes, bytes, str]:
        space = line.find(b" ")
        if space <= 0 or not _TOKEN.fullmatch(line, 0, space):
            raise RemoteProtocolError("invalid method")
        rest = line[space:].lstrip(b" ")
        space = rest.find(b" ")
        if space == -1:
            target, version = rest, "0.9"  # An HTTP/0.9 simple request: `GET /`.
        else:
            target = rest[:space]
            match = _VERSION.fullmatch(rest[space:].lstrip(b" "))
            if match is None:
                raise RemoteProtocolError("invalid HTTP version")
            version = match[1].decode("ascii")
        if len(target) > self._limits.max_request_line_bytes:
            raise RemoteProtocolError("request line too long", status_code=414)
        if not _TARGET.fullmatch(target):
            raise RemoteProtocolError("invalid request target")
        return line[: line.find(b" ")], target, version

    def _add_header_line(self, line: bytes) -> None:
        if line[0] in b" \t":
            raise RemoteProtocolError("obs-fold (a header line starting with whitespace)")
        colon = line.find(b":")
        if colon <= 0 or not _TOKEN.fullmatch(line, 0, colon):
            raise RemoteProtocolError("invalid header name")
        name = line[:colon]
        value = line[colon + 1 :].lstrip(_OWS)
        if _BAD_VALUE.search(value):
            raise RemoteProtocolError("invalid characters in a header value")
        lower = name.lower()
        if lower == b"content-length" or lower == b"transfer-encoding":
            self._check_framing_header(lower, value)
        limits = self._limits
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes > limits.max_header_bytes or len(self._headers) >= limits.max_header_count:
            raise RemoteProtocolError("request header too large", status_code=431)
        self._headers.append((name.lower(), value))

    def _check_framing_header(self, name: bytes, value: bytes) -> None:
        """llhttp's checks at the line itself (check_request_head repeats them on the whole head)."""
        seen = {seen_name for seen_name, _ in self._headers}
        if name == b"content-length":
            digits = value.rstrip(_OWS)
            if not digits.isdigit() or int(digits) > _MAX_CONTENT_LENGTH:
                raise RemoteProtocolError("invalid Content-Length")
            if b"content-length" in seen:
                raise RemoteProtocolError("repeated Content-Length")
            if b"transfer-encoding" in seen:
                raise RemoteProtocolError("both Content-Length and Transfer-Encoding")
        elif b"content-length" in seen:
            raise RemoteProtocolError("both Content-Length and Transfer-Encoding")

    # ---- the body ------------------------------------------------------------------------------

    def _start_body(self, head: RequestHead, events: list[Event]) -> bool:
        """Emit the head; hand its body to h11. False when the rest of `data` is not for us."""
        events.append((HEAD, head))
        if head.upgrade is not None and not _takes_upgrade(head):
            head.upgrade = None
        if head.upgrade is not None:
            # The request ends with its head: what follows is the new protocol's.
            events.append((END, None))
            self.upgrade_tail = bytes(self._buffer)
            self._buffer.clear()
            return False
        h11 = self._h11
        lines = [b"%s %s HTTP/%s" % (head.method.encode("ascii"), head.target, head.http_version.encode())]
        for name, value in head.headers:
            if name == b"content-length":
                value = b"%d" % (head.content_length or 0)
            lines.append(name + b": " + value)
        lines.append(b"\r\n")
        connection = h11.Connection(h11.SERVER, max_incomplete_event_size=self._limits.max_header_bytes)
        connection.receive_data(b"\r\n".join(lines))
        try:
            event = connection.next_event()
        except h11.RemoteProtocolError as exc:  # Not expected: the head was checked.
            raise RemoteProtocolError(f"malformed request: {exc}") from None
        if not isinstance(event, h11.Request):
            raise RemoteProtocolError("malformed request")
        if self._buffer:
            connection.receive_data(bytes(self._buffer))
            self._buffer.clear()
        self._connection = connection
        self._keep_alive = head.keep_alive
        return True

    def _read_body(self, events: list[Event]) -> bool:
        """Turn h11's body events into ours; True when the request ended (a head may follow)."""
        h11 = self._h11
        connection = self._connection
        while True:
            try:
                event = connection.next_event()
            except h11.RemoteProtocolError as exc:
                status = 431 if exc.error_status_hint == 431 else 400  # 431: a trailer line too long.
                raise RemoteProtocolError(f"malformed request body: {exc}", status_code=status) from None
            if isinstance(event, h11.Data):
                events.append((BODY, bytes(event.data)))
            elif isinstance(event, h11.EndOfMessage):
                events.append((END, None))
                self._buffer = bytearray(connection.trailing_data[0])
                self._connection = None
                self._closed = not self._keep_alive
                return True
            else:
                return False  # NEED_DATA


def make_parser(kind: str, limits: Limits) -> RequestParser:
    """Return a parser: `kind` is "httptools" or "h11"."""
    parser: RequestParser = HttptoolsParser(limits) if kind == "httptools" else H11Parser(limits)
    return parser
