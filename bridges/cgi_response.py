"""Parse a CGI program's output (RFC 3875 section 6), sans-I/O: bytes in, a response head and body out.

One parser serves every place a CGI response comes back: a CGI script's stdout, and the STDOUT
stream of a FastCGI responder (php-fpm, fcgiwrap). Feed bytes with `receive_data(bytes)` (b"" at
the end of the output) and read `next_event()` until `NEED_DATA`: first a `ResponseHead`, then
`BodyData` events, then `EndOfResponse`.

`ResponseHead.kind` names the RFC 3875 section 6.2 response type:
- "document": a status (default 200) and headers, with a body;
- "local-redirect": only `Location: /path` (6.2.2); the server must re-dispatch internally;
- "client-redirect": an absolute `Location` and no body (6.2.3): 302 unless a Status says otherwise;
- "client-redirect-document": an absolute `Location` with a Status and a body (6.2.4).

Tolerated, as servers do: bare LF line ends, a Status without a reason phrase. Refused with a
`CGIResponseError` (a 502): output that ends before the blank line after the headers, a header
section over the limit, a line that is not `name: value`, obs-fold, CR or NUL inside a field, a
malformed or repeated Status, a local redirect with other fields or a body.
An NPH script (`nph=True`) starts with an HTTP status line instead (section 5).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from ._exceptions import RemoteProtocolError

__all__ = [
    "NEED_DATA",
    "BodyData",
    "CGIResponseError",
    "CGIResponseParser",
    "EndOfResponse",
    "ResponseHead",
]

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_STATUS = re.compile(rb"([0-9]{3})(?:[ \t]+(.*))?")
_NPH_STATUS = re.compile(rb"HTTP/[0-9]\.[0-9] ([0-9]{3})(?: (.*))?")
# Fields the gateway frames itself (RFC 9110 section 7.6.1 hop-by-hop, and the CGI Status field).
_DROPPED = frozenset({b"connection", b"keep-alive", b"transfer-encoding", b"te", b"trailer", b"upgrade"})

Kind = Literal["document", "local-redirect", "client-redirect", "client-redirect-document"]


class CGIResponseError(RemoteProtocolError):
    """The CGI program's output is not a valid CGI response: answer 502 Bad Gateway."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status_code=502)


@dataclass(frozen=True)
class ResponseHead:
    """The parsed header section. `headers` have lower-case names and exclude Status and hop-by-hop fields."""

    kind: Kind
    status: int
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    location: bytes | None = None


@dataclass(frozen=True)
class BodyData:
    data: bytes


@dataclass(frozen=True)
class EndOfResponse:
    pass


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = _NeedData()
Event = ResponseHead | BodyData | EndOfResponse


class CGIResponseParser:
    """Incremental parser of one CGI response."""

    def __init__(self, *, nph: bool = False, max_header_bytes: int = 65536) -> None:
        self.nph = nph
        self.max_header_bytes = max_header_bytes
        self._buffer = bytearray()
        self._head: ResponseHead | None = None
        self._head_sent = False
        self._eof = False
        self._ended = False
        self.body_bytes = 0

    def receive_data(self, data: bytes) -> None:
        """Add output bytes; b"" means the output ended."""
        if self._eof:
            if data:
                raise CGIResponseError("output after the end of the response")
            return
        if data:
            self._buffer += data
        else:
            self._eof = True

    def next_event(self) -> Event | _NeedData:
        if self._head is None:
            head = self._parse_head()
            if head is None:
                if self._eof:
                    raise CGIResponseError("the output ended before the end of the header section")
                if len(self._buffer) > self.max_header_bytes:
                    raise CGIResponseError("header section too large")
                return NEED_DATA
            self._head = head
        if not self._head_sent:
            self._head_sent = True
            return self._head
        if self._buffer:
            data = bytes(self._buffer)
            self._buffer.clear()
            if self._head.kind == "local-redirect":
                raise CGIResponseError("a local redirect response must not have a body")
            self.body_bytes += len(data)
            return BodyData(data)
        if self._eof and not self._ended:
            self._ended = True
            return EndOfResponse()
        return NEED_DATA

    def _parse_head(self) -> ResponseHead | None:
        buffer = self._buffer
        # The header section ends at the first empty line: "\n\n", "\r\n\r\n" or a mix.
        end = _find_blank_line(buffer)
        if end is None:
            return None
        block_end, body_start = end
        if block_end > self.max_header_bytes:
            raise CGIResponseError("header section too large")
        lines = bytes(buffer[:block_end]).split(b"\n")
        del buffer[:body_start]
        status: int | None = None
        if self.nph:
            first = lines.pop(0).rstrip(b"\r") if lines else b""
            match = _NPH_STATUS.fullmatch(first)
            if match is None:
                raise CGIResponseError("an NPH script must start with an HTTP status line")
            status = int(match.group(1))
        headers: list[tuple[bytes, bytes]] = []
        location: bytes | None = None
        for raw_line in lines:
            line = raw_line[:-1] if raw_line.endswith(b"\r") else raw_line
            if not line:
                continue
            if line[:1] in (b" ", b"\t"):
                raise CGIResponseError("obs-fold (a continued header line) in CGI output")
            name, colon, value = line.partition(b":")
            if not colon or not _TOKEN.fullmatch(name):
                raise CGIResponseError(f"malformed header line {line[:80]!r}")
            value = value.strip(b" \t")
            if b"\r" in value or b"\x00" in value:
                raise CGIResponseError(f"invalid character in header {name.decode('latin-1')}")
            lower = name.lower()
            if lower == b"status":
                if status is not None and not self.nph:
                    raise CGIResponseError("more than one Status field")
                match = _STATUS.fullmatch(value)
                if match is None or not 100 <= int(match.group(1)) <= 999:
                    raise CGIResponseError(f"malformed Status {value[:40]!r}")
                status = int(match.group(1))
                continue
            if lower in _DROPPED:
                continue
            if lower == b"location":
                location = value
            headers.append((lower, value))
        if not headers and status is None:
            raise CGIResponseError("the output has no CGI header fields (RFC 3875 section 6.2)")
        if location is not None and location.startswith(b"/") and not location.startswith(b"//"):
            if status is not None or len(headers) != 1:
                raise CGIResponseError("a local redirect must have only a Location field")
            return ResponseHead("local-redirect", 0, headers, location)
        if location is not None:
            if status is None:
                return ResponseHead("client-redirect", 302, headers, location)
            return ResponseHead("client-redirect-document", status, headers, location)
        return ResponseHead("document", 200 if status is None else status, headers, None)


def _find_blank_line(buffer: bytearray) -> tuple[int, int] | None:
    """Where the header block ends and the body starts, or None if no empty line yet."""
    position = 0
    while True:
        newline = buffer.find(b"\n", position)
        if newline == -1:
            return None
        if newline == 0:
            return 0, 1  # No fields at all: refused by _parse_head.
        if newline == 1 and buffer[0] == 13:
            return 0, 2
        following = buffer[newline + 1 : newline + 3]
        if following[:1] == b"\n":
            return newline, newline + 2
        if following == b"\r\n":
            return newline, newline + 3
        position = newline + 1
