"""FastCGI 1.0, sans-I/O, for both ends: bytes in, events out; events in, bytes out.

`FastCGIConnection("application")` is the side a web server (nginx, Apache) talks to;
`FastCGIConnection("webserver")` is the side that talks to an application (php-fpm, fcgiwrap).
Feed received bytes with `receive_data(bytes)` (b"" for EOF), read `next_event()` until it returns
`NEED_DATA`, and turn events into bytes with `send(event)`. Section numbers below refer to the
FastCGI Specification 1.0 (Open Market, 1996).

The per-request input state machine lives in one table, `_TRANSITIONS`. Protocol violations raise
`FastCGIProtocolError`, which says what to answer (`reply`, bytes to send, possibly empty) and
whether the connection must be closed (`close`).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Literal

from ._exceptions import LocalProtocolError, RemoteProtocolError

__all__ = [
    "CONNECTION_CLOSED",
    "NEED_DATA",
    "AbortRequest",
    "BeginRequest",
    "Data",
    "EndRequest",
    "Event",
    "FastCGIConnection",
    "FastCGIProtocolError",
    "GetValues",
    "GetValuesResult",
    "Params",
    "ProtocolStatus",
    "RecordType",
    "Role",
    "Stderr",
    "Stdin",
    "Stdout",
    "UnknownType",
    "decode_name_values",
    "encode_name_values",
]

VERSION = 1
HEADER = struct.Struct(">BBHHBx")  # Section 3.3: version, type, requestId, contentLength, padding.
BEGIN_BODY = struct.Struct(">HB5x")  # Section 5.1: role, flags.
END_BODY = struct.Struct(">LB3x")  # Section 5.5: appStatus, protocolStatus.
UNKNOWN_BODY = struct.Struct(">B7x")  # Section 4.2.
MAX_CONTENT = 0xFFFF
KEEP_CONN = 1  # FCGI_KEEP_CONN, section 5.1.
MANAGEMENT_ID = 0  # FCGI_NULL_REQUEST_ID: management records, section 4.


class RecordType(IntEnum):
    BEGIN_REQUEST = 1
    ABORT_REQUEST = 2
    END_REQUEST = 3
    PARAMS = 4
    STDIN = 5
    STDOUT = 6
    STDERR = 7
    DATA = 8
    GET_VALUES = 9
    GET_VALUES_RESULT = 10
    UNKNOWN_TYPE = 11


class Role(IntEnum):
    RESPONDER = 1
    AUTHORIZER = 2
    FILTER = 3


class ProtocolStatus(IntEnum):
    REQUEST_COMPLETE = 0
    CANT_MPX_CONN = 1
    OVERLOADED = 2
    UNKNOWN_ROLE = 3


# ---- events ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BeginRequest:
    """A request starts (section 5.1). `keep_conn` false: close the connection after it."""

    request_id: int
    role: Role = Role.RESPONDER
    keep_conn: bool = False


@dataclass(frozen=True)
class Params:
    """The request's name-value pairs, complete (the PARAMS stream ended, section 5.2)."""

    request_id: int
    params: Mapping[bytes, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class Stdin:
    """Request body bytes (section 5.3); `end` marks the end of the stream (data is then b"")."""

    request_id: int
    data: bytes = b""
    end: bool = False


@dataclass(frozen=True)
class Data:
    """FILTER role: the file to filter (section 6.4); `end` marks the end of the stream."""

    request_id: int
    data: bytes = b""
    end: bool = False


@dataclass(frozen=True)
class Stdout:
    """Response bytes, a CGI response (section 5.3); `end` closes the stream."""

    request_id: int
    data: bytes = b""
    end: bool = False


@dataclass(frozen=True)
class Stderr:
    """Error text for the web server's log (section 5.3); `end` closes the stream."""

    request_id: int
    data: bytes = b""
    end: bool = False


@dataclass(frozen=True)
class AbortRequest:
    """The web server gives up on a request (its client went away, section 5.4)."""

    request_id: int


@dataclass(frozen=True)
class EndRequest:
    """The application is done with a request (section 5.5)."""

    request_id: int
    app_status: int = 0
    protocol_status: ProtocolStatus = ProtocolStatus.REQUEST_COMPLETE


@dataclass(frozen=True)
class GetValues:
    """A management query for the application's limits (section 4.1)."""

    names: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class GetValuesResult:
    """The application's answer to GetValues; names it does not know are left out (section 4.1)."""

    values: Mapping[bytes, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class UnknownType:
    """A record type the receiver does not understand (section 4.2)."""

    record_type: int


Event = (
    BeginRequest
    | Params
    | Stdin
    | Data
    | Stdout
    | Stderr
    | AbortRequest
    | EndRequest
    | GetValues
    | GetValuesResult
    | UnknownType
)


class _Sentinel:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


NEED_DATA = _Sentinel("NEED_DATA")
CONNECTION_CLOSED = _Sentinel("CONNECTION_CLOSED")


class FastCGIProtocolError(RemoteProtocolError):
    """The peer broke FastCGI. Send `reply` (may be b""), then close the connection if `close`."""

    def __init__(self, message: str, *, reply: bytes = b"", close: bool = True) -> None:
        super().__init__(message, status_code=502)
        self.reply = reply
        self.close = close


# ---- name-value pairs (section 3.4) ------------------------------------------------------------


def _encode_length(length: int) -> bytes:
    if length < 0x80:
        return bytes((length,))
    if length > 0x7FFFFFFF:
        raise LocalProtocolError("a FastCGI name or value is longer than 2**31 - 1 bytes")
    return struct.pack(">L", length | 0x80000000)


def encode_name_values(pairs: Iterable[tuple[bytes, bytes]]) -> bytes:
    """Encode name-value pairs: 1-byte lengths below 128, else 4 bytes with the top bit set."""
    out = bytearray()
    for name, value in pairs:
        name_length = len(name)
        value_length = len(value)
        if name_length < 0x80 and value_length < 0x80:  # The common case: two 1-byte lengths.
            out.append(name_length)
            out.append(value_length)
        else:
            out += _encode_length(name_length)
            out += _encode_length(value_length)
        out += name
        out += value
    return bytes(out)


def _decode_length(data: bytes | bytearray, offset: int) -> tuple[int, int] | None:
    if offset >= len(data):
        return None
    first = data[offset]
    if first < 0x80:
        return first, offset + 1
    if offset + 4 > len(data):
        return None
    return struct.unpack_from(">L", data, offset)[0] & 0x7FFFFFFF, offset + 4


def decode_name_values(
    data: bytes | bytearray, into: dict[bytes, bytes] | None = None
) -> tuple[dict[bytes, bytes], int]:
    """Decode the complete pairs at the start of `data`; return them and how many bytes they used."""
    pairs: dict[bytes, bytes] = {} if into is None else into
    view = bytes(data)  # One copy; slices of bytes are bytes.
    size = len(view)
    offset = 0
    while offset + 2 <= size:
        name_length = view[offset]
        value_length = view[offset + 1]
        if name_length < 0x80 and value_length < 0x80:  # The common case: two 1-byte lengths.
            start = offset + 2
        else:
            decoded_name = _decode_length(view, offset)
            if decoded_name is None:
                break
            decoded_value = _decode_length(view, decoded_name[1])
            if decoded_value is None:
                break
            name_length, value_length, start = decoded_name[0], decoded_value[0], decoded_value[1]
        name_end = start + name_length
        end = name_end + value_length
        if end > size:
            break
        pairs[view[start:name_end]] = view[name_end:end]
        offset = end
    return pairs, offset


# ---- records -----------------------------------------------------------------------------------


def _records(record_type: int, request_id: int, content: bytes) -> bytes:
    """One or more records carrying `content` (split at 65,535 bytes, padded to 8), section 3.3."""
    if not content:
        return HEADER.pack(VERSION, record_type, request_id, 0, 0)
    out: list[bytes | memoryview] = []
    view = memoryview(content)
    for start in range(0, len(content), MAX_CONTENT):
        piece = view[start : start + MAX_CONTENT]
        padding = -len(piece) % 8
        out += (HEADER.pack(VERSION, record_type, request_id, len(piece), padding), piece, b"\0" * padding)
    return b"".join(out)


def end_request_record(request_id: int, app_status: int, protocol_status: ProtocolStatus) -> bytes:
    return _records(
        RecordType.END_REQUEST, request_id, END_BODY.pack(app_status & 0xFFFFFFFF, protocol_status)
    )


# ---- the per-request input state machine -------------------------------------------------------

# States of a request's input, as the receiving side sees it.
PARAMS, STDIN, DATA, INPUT_DONE = "PARAMS", "STDIN", "DATA", "INPUT_DONE"

# (state, record type, stream ended) -> next state. Anything missing is a protocol violation.
# Section 6.2/6.3/6.4: PARAMS, then STDIN; a FILTER also gets DATA after STDIN.
_TRANSITIONS: dict[tuple[str, RecordType, bool], str] = {
    (PARAMS, RecordType.PARAMS, False): PARAMS,
    (PARAMS, RecordType.PARAMS, True): STDIN,
    (STDIN, RecordType.STDIN, False): STDIN,
    (STDIN, RecordType.STDIN, True): INPUT_DONE,  # Or DATA for a FILTER, see _Request.
    (DATA, RecordType.DATA, False): DATA,
    (DATA, RecordType.DATA, True): INPUT_DONE,
}


@dataclass
class _Request:
    role: Role
    keep_conn: bool
    state: str = PARAMS
    params: dict[bytes, bytes] = field(default_factory=dict)
    params_buffer: bytearray = field(default_factory=bytearray)
    params_bytes: int = 0
    aborted: bool = False


class _Buffer:
    """Received bytes, consumed record by record (wsproto's Buffer idea: commit or roll back)."""

    def __init__(self) -> None:
        self._data = bytearray()
        self._position = 0

    def feed(self, data: bytes) -> None:
        self._data += data

    def __len__(self) -> int:
        return len(self._data) - self._position

    def peek(self, size: int) -> bytes:
        return bytes(self._data[self._position : self._position + size])

    def consume(self, size: int) -> bytes:
        data = bytes(self._data[self._position : self._position + size])
        self._position += size
        if self._position > 65536 and self._position * 2 > len(self._data):
            del self._data[: self._position]
            self._position = 0
        return data


class FastCGIConnection:
    """One FastCGI transport connection, from `our_role`'s side.

    Options (application side): `multiplex` accepts several requests at once on a connection
    (else a second BEGIN_REQUEST is answered with CANT_MPX_CONN); `max_params_bytes` bounds the
    PARAMS stream of one request.
    """

    def __init__(
        self,
        our_role: Literal["application", "webserver"],
        *,
        multiplex: bool = False,
        max_params_bytes: int = 1024 * 1024,
    ) -> None:
        if our_role not in ("application", "webserver"):
            raise ValueError("our_role must be 'application' or 'webserver'")
        self.our_role = our_role
        self.multiplex = multiplex
        self.max_params_bytes = max_params_bytes
        self.requests: dict[int, _Request] = {}
        self._buffer = _Buffer()
        self._closed = False
        self._pending: list[Event] = []

    # ---- receiving ------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Add received bytes; b"" means the peer closed the connection."""
        if data:
            self._buffer.feed(data)
        else:
            self._closed = True

    def next_event(self) -> Event | _Sentinel:
        """The next event, `NEED_DATA`, or `CONNECTION_CLOSED` (raise FastCGIProtocolError if bad)."""
        while True:
            if self._pending:
                return self._pending.pop(0)
            buffer = self._buffer
            if len(buffer) < HEADER.size:
                return self._end_of_input(bool(len(buffer)))
            version, record_type, request_id, length, padding = HEADER.unpack(buffer.peek(HEADER.size))
            if version != VERSION:
                raise FastCGIProtocolError(f"unsupported FastCGI version {version}")
            if len(buffer) < HEADER.size + length + padding:
                return self._end_of_input(True)
            buffer.consume(HEADER.size)
            content = buffer.consume(length)
            buffer.consume(padding)
            event = self._on_record(record_type, request_id, content)
            if event is not None:
                return event

    def _end_of_input(self, partial: bool) -> _Sentinel:
        if not self._closed:
            return NEED_DATA
        if partial:
            raise FastCGIProtocolError("connection closed in the middle of a record")
        return CONNECTION_CLOSED

    def _on_record(self, record_type: int, request_id: int, content: bytes) -> Event | None:
        if self.our_role == "application":
            return self._on_record_as_application(record_type, request_id, content)
        return self._on_record_as_webserver(record_type, request_id, content)

    def _on_record_as_application(self, record_type: int, request_id: int, content: bytes) -> Event | None:
        if not RecordType.BEGIN_REQUEST <= record_type <= RecordType.UNKNOWN_TYPE:
            return UnknownType(record_type)  # Section 4.2: the host answers with UNKNOWN_TYPE.
        if request_id == MANAGEMENT_ID:
            if record_type == RecordType.GET_VALUES:
                pairs, used = decode_name_values(content)
                if used != len(content):
                    raise FastCGIProtocolError("malformed GET_VALUES record")
                return GetValues(tuple(pairs))
            return UnknownType(record_type)
        if record_type == RecordType.BEGIN_REQUEST:
            return self._begin(request_id, content)
        request = self.requests.get(request_id)
        if request is None:
            return None  # Section 3.3: records for an inactive request id are ignored.
        if record_type == RecordType.ABORT_REQUEST:
            if request.aborted:
                return None
            request.aborted = True
            return AbortRequest(request_id)
        if record_type not in (RecordType.PARAMS, RecordType.STDIN, RecordType.DATA):
            raise FastCGIProtocolError(f"record type {record_type} is not one an application receives")
        kind = RecordType(record_type)
        ended = not content
        next_state = _TRANSITIONS.get((request.state, kind, ended))
        if next_state is None:
            raise FastCGIProtocolError(f"{kind.name} record not expected while in {request.state}")
        if next_state == INPUT_DONE and kind == RecordType.STDIN and request.role == Role.FILTER:
            next_state = DATA
        request.state = next_state
        if kind == RecordType.PARAMS:
            return self._on_params(request_id, request, content)
        if kind == RecordType.STDIN:
            return Stdin(request_id, content, ended)
        return Data(request_id, content, ended)

    def _begin(self, request_id: int, content: bytes) -> Event | None:
        if len(content) != BEGIN_BODY.size:
            raise FastCGIProtocolError("malformed BEGIN_REQUEST record")
        role_number, flags = BEGIN_BODY.unpack(content)
        if request_id in self.requests:
            raise FastCGIProtocolError(f"request id {request_id} began twice")
        if role_number not in (Role.RESPONDER, Role.AUTHORIZER, Role.FILTER):
            raise FastCGIProtocolError(
                f"unknown role {role_number}",
                reply=end_request_record(request_id, 0, ProtocolStatus.UNKNOWN_ROLE),
                close=False,
            )
        if self.requests and not self.multiplex:
            raise FastCGIProtocolError(
                "a second request on a connection that does not multiplex",
                reply=end_request_record(request_id, 0, ProtocolStatus.CANT_MPX_CONN),
                close=False,
            )
        keep_conn = bool(flags & KEEP_CONN)
        self.requests[request_id] = _Request(Role(role_number), keep_conn)
        return BeginRequest(request_id, Role(role_number), keep_conn)

    def _on_params(self, request_id: int, request: _Request, content: bytes) -> Event | None:
        if content:
            request.params_bytes += len(content)
            if request.params_bytes > self.max_params_bytes:
                raise FastCGIProtocolError(
                    "PARAMS stream larger than the limit",
                    reply=self._refusal(request_id, b"431 Request Header Fields Too Large"),
                    close=True,
                )
            request.params_buffer += content
            _, used = decode_name_values(request.params_buffer, request.params)
            del request.params_buffer[:used]
            return None
        if request.params_buffer:
            raise FastCGIProtocolError("PARAMS stream ended inside a name-value pair")
        return Params(request_id, request.params)

    @staticmethod
    def _refusal(request_id: int, status: bytes) -> bytes:
        body = b"Status: " + status + b"\r\nContent-Type: text/plain\r\n\r\n" + status + b"\n"
        return (
            _records(RecordType.STDOUT, request_id, body)
            + _records(RecordType.STDOUT, request_id, b"")
            + end_request_record(request_id, 0, ProtocolStatus.REQUEST_COMPLETE)
        )

    def _on_record_as_webserver(self, record_type: int, request_id: int, content: bytes) -> Event | None:
        if request_id == MANAGEMENT_ID:
            if record_type == RecordType.GET_VALUES_RESULT:
                pairs, used = decode_name_values(content)
                if used != len(content):
                    raise FastCGIProtocolError("malformed GET_VALUES_RESULT record")
                return GetValuesResult(pairs)
            if record_type == RecordType.UNKNOWN_TYPE:
                if len(content) != UNKNOWN_BODY.size:
                    raise FastCGIProtocolError("malformed UNKNOWN_TYPE record")
                return UnknownType(UNKNOWN_BODY.unpack(content)[0])
            raise FastCGIProtocolError(f"unexpected management record type {record_type}")
        request = self.requests.get(request_id)
        if request is None:
            return None  # A late record for a request we already finished (or aborted).
        if record_type == RecordType.STDOUT:
            return Stdout(request_id, content, not content)
        if record_type == RecordType.STDERR:
            return Stderr(request_id, content, not content)
        if record_type == RecordType.END_REQUEST:
            if len(content) != END_BODY.size:
                raise FastCGIProtocolError("malformed END_REQUEST record")
            app_status, protocol_status = END_BODY.unpack(content)
            try:
                status = ProtocolStatus(protocol_status)
            except ValueError:
                raise FastCGIProtocolError(f"unknown protocol status {protocol_status}") from None
            del self.requests[request_id]  # Only once the record is known good, as for a malformed one.
            return EndRequest(request_id, app_status, status)
        raise FastCGIProtocolError(f"record type {record_type} is not one a web server receives")

    # ---- sending --------------------------------------------------------------------------

    def send(self, event: Event) -> bytes:
        """The bytes for `event`; raise LocalProtocolError if our side may not send it now."""
        if self.our_role == "application":
            return self._send_as_application(event)
        return self._send_as_webserver(event)

    def _send_as_application(self, event: Event) -> bytes:
        if isinstance(event, (Stdout, Stderr)):
            if event.request_id not in self.requests:
                raise LocalProtocolError(f"no active request {event.request_id}")
            kind = RecordType.STDOUT if isinstance(event, Stdout) else RecordType.STDERR
            data = _records(kind, event.request_id, event.data) if event.data else b""
            return data + (_records(kind, event.request_id, b"") if event.end else b"")
        if isinstance(event, EndRequest):
            if self.requests.pop(event.request_id, None) is None:
                raise LocalProtocolError(f"no active request {event.request_id}")
            return end_request_record(event.request_id, event.app_status, event.protocol_status)
        if isinstance(event, GetValuesResult):
            return _records(RecordType.GET_VALUES_RESULT, 0, encode_name_values(event.values.items()))
        if isinstance(event, UnknownType):
            return _records(RecordType.UNKNOWN_TYPE, 0, UNKNOWN_BODY.pack(event.record_type & 0xFF))
        raise LocalProtocolError(f"an application does not send {type(event).__name__}")

    def _send_as_webserver(self, event: Event) -> bytes:
        if isinstance(event, BeginRequest):
            if event.request_id in self.requests or not 0 < event.request_id <= 0xFFFF:
                raise LocalProtocolError(f"request id {event.request_id} is in use or invalid")
            self.requests[event.request_id] = _Request(event.role, event.keep_conn, state=INPUT_DONE)
            body = BEGIN_BODY.pack(event.role, KEEP_CONN if event.keep_conn else 0)
            return _records(RecordType.BEGIN_REQUEST, event.request_id, body)
        if isinstance(event, GetValues):
            return _records(RecordType.GET_VALUES, 0, encode_name_values((n, b"") for n in event.names))
        if event_request_id(event) not in self.requests:
            raise LocalProtocolError(f"no active request for {event!r}")
        if isinstance(event, Params):
            encoded = encode_name_values(event.params.items())
            # No params: only the empty record that ends the stream (an empty first record would end
            # it already, and the second would then be a PARAMS record after the end of the stream).
            params = _records(RecordType.PARAMS, event.request_id, encoded) if encoded else b""
            return params + _records(RecordType.PARAMS, event.request_id, b"")
        if isinstance(event, (Stdin, Data)):
            kind = RecordType.STDIN if isinstance(event, Stdin) else RecordType.DATA
            data = _records(kind, event.request_id, event.data) if event.data else b""
            return data + (_records(kind, event.request_id, b"") if event.end else b"")
        if isinstance(event, AbortRequest):
            return _records(RecordType.ABORT_REQUEST, event.request_id, b"")
        raise LocalProtocolError(f"a web server does not send {type(event).__name__}")


def event_request_id(event: Event) -> int:
    """The request id an event belongs to (0 for management events)."""
    return getattr(event, "request_id", MANAGEMENT_ID)
