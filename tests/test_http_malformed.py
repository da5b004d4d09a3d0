"""Malformed, smuggling and limit-breaking requests against the real server, for both parsers.

Each row is `(id, raw request, expected status, must_close)`. A rejected request must get exactly
one response with that status and then the connection must be closed (EOF). An accepted request
(`must_close` False) is followed on the same connection by a second request, which must be
answered too: the connection was kept open.

Where the RFCs leave a choice, or httptools and h11 used to answer differently, the decision is
noted next to the rows (RFC 9112 is "HTTP/1.1", RFC 9110 "HTTP Semantics"):

- Transfer-Encoding other than exactly one `chunked` (case-insensitive): 400 for every spelling.
  RFC 9112 section 6.3 rule 4 makes 400 a MUST when chunked is not the final coding (`identity`,
  `gzip`, `chunked, gzip`, garbage, empty). `chunked, chunked` (and two `chunked` lines, which
  combine into that list) applies chunked twice, which section 6.1 forbids: an invalid message,
  400. `gzip, chunked` ends in chunked, so 501 is section 6.1's SHOULD for an unknown coding, but
  h11 cannot tell it from the MUST-400 cases and one status for every refused Transfer-Encoding
  keeps the two parsers identical; the connection is closed either way. `chunked;foo` is not even
  a transfer-coding (a parameter needs `=value`): 400.
- `Transfer-Encoding: chunked ` (trailing whitespace): 400. The whitespace is not part of the value
  (RFC 9110 section 5.5), but llhttp does not take it for chunked; refusing it in both parsers is
  the only identical choice that cannot desynchronise framing.
- Repeated Content-Length, identical or not, and the list form `5,5`: 400. RFC 9110 section 8.6
  allows a recipient either to reject or to fold identical values; llhttp cannot fold them, so
  bridges rejects in both (RFC 9112 section 6.3 rule 5: invalid Content-Length is a 400).
- Bare LF as a line terminator: 400. RFC 9112 section 2.2 says a recipient MAY accept it; a strict
  server refuses it (LF-only framing is a classic front-end/back-end disagreement). Bare CR: 400
  (section 2.2: MUST treat as invalid or replace with SP).
- obs-fold: 400 (RFC 9112 section 5.2: reject or replace with SP; we reject).
- CTLs other than HTAB in a field value: 400. NUL, CR, LF are a MUST (RFC 9110 section 5.5); the
  others MAY be kept, but llhttp refuses them and so does bridges' h11 path.
- Host: more than one (any version), none on HTTP/1.1, or an invalid value: 400 (RFC 9112 section
  3.2 MUST). An empty Host is valid (section 3.2) and accepted.
- Versions: `HTTP/x.y` is the syntax (RFC 9112 section 2.3). A syntactically valid version whose
  major is not 1 (`HTTP/0.9`, `HTTP/2.0`, `HTTP/3.0`, and the HTTP/2 preface `PRI * HTTP/2.0`) is
  505 (RFC 9110 section 15.6.6 is about the major version). `HTTP/1.2` is a higher minor version
  of a major we implement: RFC 9110 section 2.5 says SHOULD process it as 1.1, so it is accepted.
  `GET /` with no version at all is an HTTP/0.9 simple request (RFC 1945 section 4.1): 505, like
  an explicit `HTTP/0.9`. `HTTP/3`, `http/1.1`, `HTTP/1.11`, a trailing space: malformed, 400.
- Extra spaces *between* the request-line parts are accepted (RFC 9112 section 3: recipients MAY
  split on whitespace; llhttp does, and bridges' h11 path follows it); a space before the method
  or after the version is 400.
- Empty lines before the request line are skipped (RFC 9112 section 2.2 SHOULD).
- Limits: request target over `max_request_line_bytes` 414, header section over
  `max_header_bytes` or more than `max_header_count` fields 431, a body over `max_body_bytes` 413
  (declared up front, or counted as a chunked body arrives).
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from server_helpers import port_of, running_server

pytestmark = pytest.mark.timeout(60)

PARSERS = ["httptools", "h11"]
LIMITS: dict[str, Any] = {
    "max_body_bytes": 1000,
    "max_request_line_bytes": 1024,
    "max_header_bytes": 4096,
    "max_header_count": 30,
}
FOLLOW_UP = b"GET /second HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    payload = f"{scope['method']} {scope['path']} {scope['http_version']} {len(body)}".encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(payload))],
        }
    )
    await send({"type": "http.response.body", "body": payload})


@pytest.fixture(scope="module", params=PARSERS)
def port(request: pytest.FixtureRequest) -> Iterator[int]:
    options = {"timeout_graceful_shutdown": 1.0, **LIMITS}
    with running_server(echo_app, http=request.param, lifespan="off", **options) as server:
        yield port_of(server)


def exchange(port: int, pieces: list[bytes], timeout: float = 5.0) -> tuple[bytes, bool]:
    """Send `pieces` (stopping early once the server answers); read to EOF. Return (data, closed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        for index, piece in enumerate(pieces):
            try:
                sock.sendall(piece)
            except OSError:
                break
            if len(pieces) > 1 and index < len(pieces) - 1:
                readable, _, _ = select.select([sock], [], [], 0.002)
                if readable:
                    break  # An early answer (a limit): read it before sending more.
        chunks = []
        deadline = time.monotonic() + timeout
        while True:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = sock.recv(65536)
            except TimeoutError:
                return b"".join(chunks), False
            except ConnectionResetError:
                return b"".join(chunks), True
            if not data:
                return b"".join(chunks), True
            chunks.append(data)


def statuses(data: bytes) -> list[int]:
    """The status of every response in `data`, walking them by Content-Length (all ours have one)."""
    found = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        assert sep and head.startswith(b"HTTP/1.1 "), data[:200]
        found.append(int(head[9:12]))
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        data = rest[length:]
    return found


def req(*lines: str | bytes, body: bytes = b"", start: bytes = b"POST / HTTP/1.1") -> bytes:
    """A request from its header lines (str or bytes), CRLF-terminated, then the body."""
    encoded = [line.encode("latin-1") if isinstance(line, str) else line for line in lines]
    return b"\r\n".join([start, *encoded]) + b"\r\n\r\n" + body


SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
CHUNKED_BODY = b"5\r\nhello\r\n0\r\n\r\n"

# (id, raw request, expected status, must_close)
CASES: list[tuple[str, bytes, int, bool]] = [
    # ---- Content-Length and Transfer-Encoding together (RFC 9112 section 6.3 rule 3) ----------
    (
        "cl-then-te",
        req("Host: x", "Content-Length: 4", "Transfer-Encoding: chunked", body=b"0\r\n\r\n" + SMUGGLED),
        400,
        True,
    ),
    (
        "te-then-cl",
        req("Host: x", "Transfer-Encoding: chunked", "Content-Length: 40", body=b"0\r\n\r\n" + SMUGGLED),
        400,
        True,
    ),
    (
        "cl0-te",
        req("Host: x", "Content-Length: 0", "Transfer-Encoding: chunked", body=CHUNKED_BODY),
        400,
        True,
    ),
    (
        "cl-te-uppercase",
        req("Host: x", "content-length: 5", "TRANSFER-ENCODING: CHUNKED", body=CHUNKED_BODY),
        400,
        True,
    ),
    ("cl-te-gzip", req("Host: x", "Content-Length: 5", "Transfer-Encoding: gzip", body=b"hello"), 400, True),
    # ---- Transfer-Encoding that is not exactly one `chunked` --------------------------------
    (
        "te-chunked-chunked",
        req("Host: x", "Transfer-Encoding: chunked, chunked", body=CHUNKED_BODY),
        400,
        True,
    ),
    ("te-gzip-chunked", req("Host: x", "Transfer-Encoding: gzip, chunked", body=CHUNKED_BODY), 400, True),
    ("te-chunked-gzip", req("Host: x", "Transfer-Encoding: chunked, gzip", body=CHUNKED_BODY), 400, True),
    ("te-chunked-param", req("Host: x", "Transfer-Encoding: chunked;foo", body=CHUNKED_BODY), 400, True),
    ("te-identity", req("Host: x", "Transfer-Encoding: identity", body=b"hello"), 400, True),
    ("te-leading-garbage", req("Host: x", "Transfer-Encoding: xchunked", body=CHUNKED_BODY), 400, True),
    ("te-trailing-garbage", req("Host: x", "Transfer-Encoding: chunkedx", body=CHUNKED_BODY), 400, True),
    ("te-trailing-word", req("Host: x", "Transfer-Encoding: chunked x", body=CHUNKED_BODY), 400, True),
    (
        "te-duplicate-lines",
        req("Host: x", "Transfer-Encoding: chunked", "Transfer-Encoding: chunked", body=CHUNKED_BODY),
        400,
        True,
    ),
    (
        "te-split-lines",
        req("Host: x", "Transfer-Encoding: gzip", "Transfer-Encoding: chunked", body=CHUNKED_BODY),
        400,
        True,
    ),
    ("te-space-before-colon", req("Host: x", "Transfer-Encoding : chunked", body=CHUNKED_BODY), 400, True),
    ("te-vtab-before-value", req("Host: x", "Transfer-Encoding:\x0bchunked", body=CHUNKED_BODY), 400, True),
    ("te-vtab-after-value", req("Host: x", "Transfer-Encoding: chunked\x0b", body=CHUNKED_BODY), 400, True),
    ("te-trailing-space", req("Host: x", "Transfer-Encoding: chunked ", body=CHUNKED_BODY), 400, True),
    ("te-empty", req("Host: x", "Transfer-Encoding: ", body=CHUNKED_BODY), 400, True),
    ("te-leading-comma", req("Host: x", "Transfer-Encoding: ,chunked", body=CHUNKED_BODY), 400, True),
    (
        "te-on-http10",
        req("Transfer-Encoding: chunked", body=CHUNKED_BODY, start=b"POST / HTTP/1.0"),
        400,
        True,
    ),
    # ---- Content-Length that is not one plain decimal number -------------------------------
    ("cl-plus", req("Host: x", "Content-Length: +5", body=b"hello"), 400, True),
    ("cl-negative", req("Host: x", "Content-Length: -1", body=b"hello"), 400, True),
    ("cl-two-numbers", req("Host: x", "Content-Length: 5 5", body=b"hello"), 400, True),
    ("cl-hex", req("Host: x", "Content-Length: 0x5", body=b"hello"), 400, True),
    ("cl-empty", req("Host: x", "Content-Length: ", body=b"hello"), 400, True),
    ("cl-list-same", req("Host: x", "Content-Length: 5,5", body=b"hello"), 400, True),
    ("cl-list-conflict", req("Host: x", "Content-Length: 5,6", body=b"hello!"), 400, True),
    ("cl-two-lines-same", req("Host: x", "Content-Length: 5", "Content-Length: 5", body=b"hello"), 400, True),
    (
        "cl-two-lines-differ",
        req("Host: x", "Content-Length: 5", "Content-Length: 6", body=b"hello!"),
        400,
        True,
    ),
    ("cl-overflow", req("Host: x", "Content-Length: 99999999999999999999999999", body=b"hello"), 400, True),
    ("cl-superscript-digit", req("Host: x", b"Content-Length: \xb2", body=b"hello"), 400, True),
    # ---- line endings ------------------------------------------------------------------------
    ("bare-lf-request-line", b"GET / HTTP/1.1\nHost: x\r\n\r\n", 400, True),
    ("bare-lf-header", b"GET / HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n", 400, True),
    ("bare-lf-everywhere", b"GET / HTTP/1.1\nHost: x\n\n", 400, True),
    ("bare-cr-request-line", b"GET / HTTP/1.1\rHost: x\r\n\r\n", 400, True),
    ("bare-cr-header", b"GET / HTTP/1.1\r\nHost: x\rX-A: b\r\n\r\n", 400, True),
    # ---- chunked framing -----------------------------------------------------------------------
    (
        "chunk-size-junk",
        req("Host: x", "Transfer-Encoding: chunked", body=b"zz\r\nhello\r\n0\r\n\r\n"),
        400,
        True,
    ),
    (
        "chunk-size-space-semicolon",
        req("Host: x", "Transfer-Encoding: chunked", body=b"5 ;\r\nhello\r\n0\r\n\r\n"),
        400,
        True,
    ),
    (
        "chunk-size-negative",
        req("Host: x", "Transfer-Encoding: chunked", body=b"-5\r\nhello\r\n0\r\n\r\n"),
        400,
        True,
    ),
    (
        "chunk-size-0x",
        req("Host: x", "Transfer-Encoding: chunked", body=b"0x5\r\nhello\r\n0\r\n\r\n"),
        400,
        True,
    ),
    (
        "chunk-missing-crlf",
        req("Host: x", "Transfer-Encoding: chunked", body=b"5\r\nhello0\r\n\r\n"),
        400,
        True,
    ),
    (
        "chunk-longer-than-size",
        req("Host: x", "Transfer-Encoding: chunked", body=b"3\r\nhello\r\n0\r\n\r\n"),
        400,
        True,
    ),
    (
        "chunk-size-overflow",
        req("Host: x", "Transfer-Encoding: chunked", body=b"f" * 22 + b"\r\nhello\r\n0\r\n\r\n"),
        400,
        True,
    ),
    (
        "chunk-size-bare-lf",
        req("Host: x", "Transfer-Encoding: chunked", body=b"5\nhello\r\n0\r\n\r\n"),
        400,
        True,
    ),
    (
        "chunk-bad-trailer",
        req("Host: x", "Transfer-Encoding: chunked", body=b"5\r\nhello\r\n0\r\nX Y: 1\r\n\r\n"),
        400,
        True,
    ),
    # ---- obs-fold (RFC 9112 section 5.2) -------------------------------------------------------
    ("obs-fold-space", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", 400, True),
    ("obs-fold-tab", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n\tb\r\n\r\n", 400, True),
    ("obs-fold-first-line", b"GET / HTTP/1.1\r\n Host: x\r\n\r\n", 400, True),
    (
        "obs-fold-transfer-encoding",
        req("Host: x", "Transfer-Encoding: gzip", " , chunked", body=CHUNKED_BODY),
        400,
        True,
    ),
    # ---- field values ----------------------------------------------------------------------------
    ("nul-in-value", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400, True),
    ("cr-in-value", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", 400, True),
    ("ctl-in-value", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n", 400, True),
    ("del-in-value", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x7fb\r\n\r\n", 400, True),
    # ---- field names -----------------------------------------------------------------------------
    ("space-before-colon", b"GET / HTTP/1.1\r\nHost: x\r\nX-A : a\r\n\r\n", 400, True),
    ("tab-before-colon", b"GET / HTTP/1.1\r\nHost: x\r\nX-A\t: a\r\n\r\n", 400, True),
    ("name-paren", b"GET / HTTP/1.1\r\nHost: x\r\nX(A): a\r\n\r\n", 400, True),
    ("name-at", b"GET / HTTP/1.1\r\nHost: x\r\nX@A: a\r\n\r\n", 400, True),
    ("name-non-ascii", b"GET / HTTP/1.1\r\nHost: x\r\nX\xe9A: a\r\n\r\n", 400, True),
    ("name-empty", b"GET / HTTP/1.1\r\nHost: x\r\n: a\r\n\r\n", 400, True),
    ("name-no-colon", b"GET / HTTP/1.1\r\nHost: x\r\nX-A\r\n\r\n", 400, True),
    # ---- Host (RFC 9112 section 3.2) -------------------------------------------------------------
    ("host-missing", b"GET / HTTP/1.1\r\nX-A: a\r\n\r\n", 400, True),
    ("host-duplicate", b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400, True),
    ("host-duplicate-same", b"GET / HTTP/1.1\r\nHost: x\r\nHost: x\r\n\r\n", 400, True),
    ("host-duplicate-http10", b"GET / HTTP/1.0\r\nHost: x\r\nHost: y\r\n\r\n", 400, True),
    ("host-with-space", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400, True),
    ("host-with-path", b"GET / HTTP/1.1\r\nHost: x/y\r\n\r\n", 400, True),
    ("host-with-userinfo", b"GET / HTTP/1.1\r\nHost: user@x\r\n\r\n", 400, True),
    # ---- versions --------------------------------------------------------------------------------
    ("http09-simple-request", b"GET /\r\n\r\n", 505, True),
    ("http09-explicit", b"GET / HTTP/0.9\r\n\r\n", 505, True),
    ("http20", b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505, True),
    ("http30", b"GET / HTTP/3.0\r\nHost: x\r\n\r\n", 505, True),
    ("http99", b"GET / HTTP/9.9\r\nHost: x\r\n\r\n", 505, True),
    ("http2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, True),
    ("http3-no-minor", b"GET / HTTP/3\r\nHost: x\r\n\r\n", 400, True),
    ("http-lowercase", b"GET / http/1.1\r\nHost: x\r\n\r\n", 400, True),
    ("http-two-digit-minor", b"GET / HTTP/1.11\r\nHost: x\r\n\r\n", 400, True),
    ("version-trailing-space", b"GET / HTTP/1.1 \r\nHost: x\r\n\r\n", 400, True),
    # ---- request line ------------------------------------------------------------------------------
    ("method-invalid-char", b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n", 400, True),
    ("method-leading-space", b" GET / HTTP/1.1\r\nHost: x\r\n\r\n", 400, True),
    ("method-tab-separator", b"GET\t/ HTTP/1.1\r\nHost: x\r\n\r\n", 400, True),
    ("target-with-space", b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", 400, True),
    ("target-with-ctl", b"GET /a\x01b HTTP/1.1\r\nHost: x\r\n\r\n", 400, True),
    ("target-with-high-byte", b"GET /a\xffb HTTP/1.1\r\nHost: x\r\n\r\n", 400, True),
    ("target-relative", b"GET abc HTTP/1.1\r\nHost: x\r\n\r\n", 400, True),
    ("target-ftp-scheme", b"GET ftp://x/y HTTP/1.1\r\nHost: x\r\n\r\n", 400, True),
    # ---- limits ------------------------------------------------------------------------------------
    ("request-line-too-long", b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, True),
    (
        "too-many-headers",
        req("Host: x", *[f"X-{i}: y" for i in range(40)], start=b"GET / HTTP/1.1"),
        431,
        True,
    ),
    (
        "header-section-too-large",
        req("Host: x", *[f"X-{i}: {'y' * 1000}" for i in range(6)], start=b"GET / HTTP/1.1"),
        431,
        True,
    ),
    ("one-header-too-large", req("Host: x", "X-Big: " + "y" * 5000, start=b"GET / HTTP/1.1"), 431, True),
    ("body-declared-too-large", req("Host: x", "Content-Length: 1001", body=b"x" * 1001), 413, True),
    (
        "body-chunked-too-large",
        req(
            "Host: x",
            "Transfer-Encoding: chunked",
            body=b"3e8\r\n" + b"x" * 1000 + b"\r\n1\r\nx\r\n0\r\n\r\n",
        ),
        413,
        True,
    ),
    # ---- accepted: answered, and the connection stays open for the next request --------------------
    ("te-chunked-mixed-case", req("Host: x", "Transfer-Encoding: Chunked", body=CHUNKED_BODY), 200, False),
    ("te-tab-before-value", req("Host: x", "Transfer-Encoding:\tchunked", body=CHUNKED_BODY), 200, False),
    ("cl-trailing-whitespace", req("Host: x", "Content-Length: 5 \t", body=b"hello"), 200, False),
    ("cl-leading-zeros", req("Host: x", "Content-Length: 0005", body=b"hello"), 200, False),
    (
        "chunk-extension",
        req("Host: x", "Transfer-Encoding: chunked", body=b"5;name=value\r\nhello\r\n0\r\n\r\n"),
        200,
        False,
    ),
    (
        "chunk-trailers",
        req("Host: x", "Transfer-Encoding: chunked", body=b"5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"),
        200,
        False,
    ),
    ("absolute-form-http", b"GET http://x/path?q=1 HTTP/1.1\r\nHost: x\r\n\r\n", 200, False),
    ("obs-text-value", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: caf\xe9 \x80\xff\r\n\r\n", 200, False),
    ("http10-keep-alive", b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 200, False),
    ("http12-as-http11", b"GET / HTTP/1.2\r\nHost: x\r\n\r\n", 200, False),
    ("empty-host", b"GET / HTTP/1.1\r\nHost:\r\n\r\n", 200, False),
    ("host-with-port", b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", 200, False),
    ("leading-empty-lines", b"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", 200, False),
    ("extra-spaces-between-parts", b"GET  /  HTTP/1.1\r\nHost: x\r\n\r\n", 200, False),
    ("header-value-with-tab", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\tb\r\n\r\n", 200, False),
]


@pytest.mark.parametrize(("raw", "status", "must_close"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_request(port: int, raw: bytes, status: int, must_close: bool) -> None:
    if must_close:
        response, closed = exchange(port, [raw])
        assert statuses(response) == [status], response[:300]
        assert closed, "the connection must be closed after the error response"
        if status >= 400:
            assert b"connection: close" in response.lower()
    else:
        response, closed = exchange(port, [raw + FOLLOW_UP])
        assert statuses(response) == [status, 200], response[:600]
        assert b"GET /second" in response
        assert closed


def test_corpus_is_big_enough() -> None:
    assert len({c[0] for c in CASES}) == len(CASES)
    assert sum(1 for c in CASES if c[3]) >= 45


def _split(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


SPLIT_CASES = [
    ("request-line-too-long", b"GET /" + b"a" * 3000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    ("too-many-headers", req("Host: x", *[f"X-{i}: y" for i in range(40)], start=b"GET / HTTP/1.1"), 431),
    (
        "header-section-too-large",
        req("Host: x", *[f"X-{i}: {'y' * 1000}" for i in range(6)], start=b"GET / HTTP/1.1"),
        431,
    ),
]


@pytest.mark.parametrize(("raw", "status"), [c[1:] for c in SPLIT_CASES], ids=[c[0] for c in SPLIT_CASES])
@pytest.mark.parametrize("size", [1, 7, 100])
def test_limits_across_many_sends(port: int, raw: bytes, status: int, size: int) -> None:
    pieces = _split(raw, size)
    if size == 1:
        pieces = [raw[:-500], *_split(raw[-500:], 1)]  # Byte by byte where the limit is crossed.
    response, closed = exchange(port, pieces)
    assert statuses(response) == [status], response[:300]
    assert closed


def test_a_header_line_that_never_ends_is_refused_not_buffered(port: int) -> None:
    """431 while the line is still open: a parser must not buffer one header line forever."""
    pieces = [b"GET / HTTP/1.1\r\nHost: x\r\nX-Endless: ", *[b"y" * 512] * 200]
    response, closed = exchange(port, pieces)
    assert statuses(response) == [431], response[:300]
    assert closed


def test_a_request_line_that_never_ends_is_refused_not_buffered(port: int) -> None:
    pieces = [b"GET /", *[b"a" * 512] * 200]
    response, closed = exchange(port, pieces)
    assert statuses(response) == [414], response[:300]
    assert closed


def test_a_trailer_line_that_never_ends_is_refused_not_buffered(port: int) -> None:
    head = req("Host: x", "Transfer-Encoding: chunked", body=b"5\r\nhello\r\n0\r\nX-Endless: ")
    response, closed = exchange(port, [head, *[b"y" * 512] * 200], timeout=2.0)
    assert statuses(response) == [431], response[:300]
    assert closed


def test_bad_chunk_after_a_good_one_in_a_later_packet_is_answered(port: int) -> None:
    """The app is already reading the body when the framing error comes: it must not hang."""
    head = req("Host: x", "Transfer-Encoding: chunked", body=b"5\r\nhello\r\n")
    response, closed = exchange(port, [head, b"zz\r\nhello\r\n0\r\n\r\n"], timeout=2.0)
    assert statuses(response) == [400], response[:300]
    assert closed


def test_smuggled_request_after_bad_framing_is_never_answered(port: int) -> None:
    """CL.TE: a front end using Content-Length would forward the smuggled request as body."""
    raw = req("Host: x", "Content-Length: 6", "Transfer-Encoding: chunked", body=b"0\r\n\r\nX" + SMUGGLED)
    response, closed = exchange(port, [raw])
    assert statuses(response) == [400] and b"/smuggled" not in response
    assert closed


def test_upgrade_request_with_a_body_is_read_as_http(port: int) -> None:
    """An upgrade the server does not carry out: the body stays body, never a second request."""
    body = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
    raw = req("Host: x", "Connection: upgrade", "Upgrade: foo", f"Content-Length: {len(body)}", body=body)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(raw[: -len(body)])
        time.sleep(0.05)
        sock.sendall(body + FOLLOW_UP)
        response, _ = _read_all(sock)
    assert statuses(response) == [200, 200], response
    assert b"/smuggled" not in response
    assert f"POST / 1.1 {len(body)}".encode() in response


def _read_all(sock: socket.socket, timeout: float = 5.0) -> tuple[bytes, bool]:
    chunks = []
    sock.settimeout(timeout)
    while True:
        try:
            data = sock.recv(65536)
        except (TimeoutError, ConnectionResetError):
            return b"".join(chunks), False
        if not data:
            return b"".join(chunks), True
        chunks.append(data)


# ---- the same limits on the parsers alone (no server in the way) --------------------------------


@pytest.mark.parametrize("http", PARSERS)
@pytest.mark.parametrize(
    ("start", "status"),
    [
        (b"GET /", 414),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Endless: ", 431),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: ", 431),
    ],
    ids=["request-line", "header-line", "trailer-line"],
)
def test_parser_refuses_a_line_that_never_ends(http: str, start: bytes, status: int) -> None:
    from bridges import RemoteProtocolError
    from bridges.http_parsing import Limits, make_parser

    limits = Limits(**LIMITS)
    parser = make_parser(http, limits)
    fed = 0
    with pytest.raises(RemoteProtocolError) as caught:
        parser.feed(start)
        while fed < 1_000_000:
            parser.feed(b"a" * 1000)
            fed += 1000
    assert caught.value.status_code == status
    assert fed < 2 * (limits.max_request_line_bytes + limits.max_header_bytes)
