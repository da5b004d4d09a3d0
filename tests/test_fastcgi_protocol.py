"""The sans-I/O FastCGI 1.0 codec (`bridges.fastcgi_protocol`), both ends.

Expected bytes are written out literally or assembled with `struct` straight from the specification
(FastCGI Specification 1.0, Open Market 1996), never with the module's own encoder, and flup 1.0.3
(an independent implementation) is used as an oracle in both directions: its record writer feeds our
parser, its record reader parses our encoder, and its real application-side `Connection` serves
requests that our web-server side sends.
"""

from __future__ import annotations

import itertools
import random
import socket
import struct
import threading
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridges import fastcgi_protocol as fp
from bridges._exceptions import LocalProtocolError, RemoteProtocolError
from bridges.fastcgi_protocol import (
    CONNECTION_CLOSED,
    NEED_DATA,
    AbortRequest,
    BeginRequest,
    Data,
    EndRequest,
    FastCGIConnection,
    FastCGIProtocolError,
    GetValues,
    GetValuesResult,
    Params,
    ProtocolStatus,
    Role,
    Stderr,
    Stdin,
    Stdout,
    UnknownType,
    decode_name_values,
    encode_name_values,
)

pytestmark = pytest.mark.timeout(60)

FUZZ = settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
ROUND_TRIP = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Record types, straight from section 8 of the specification (not from the module under test).
BEGIN, ABORT, END, PARAMS, STDIN, STDOUT, STDERR, DATA, GET_VALUES, GET_VALUES_RESULT, UNKNOWN = range(1, 12)


# ---- helpers -----------------------------------------------------------------------------------


def rec(rtype: int, rid: int, content: bytes = b"", padding: int | None = None, pad_byte: int = 0) -> bytes:
    """One record, assembled per section 3.3 (padding defaults to the next multiple of 8)."""
    if padding is None:
        padding = -len(content) % 8
    return (
        struct.pack(">BBHHBB", 1, rtype, rid, len(content), padding, 0)
        + content
        + bytes([pad_byte]) * padding
    )


def begin_body(role: int, flags: int = 0) -> bytes:
    return struct.pack(">HB5x", role, flags)


def end_body(app_status: int, protocol_status: int) -> bytes:
    return struct.pack(">LB3x", app_status, protocol_status)


def pair(name: bytes, value: bytes) -> bytes:
    """One name-value pair, section 3.4, assembled by hand."""

    def length(n: int) -> bytes:
        return bytes([n]) if n < 128 else struct.pack(">L", n | 0x80000000)

    return length(len(name)) + length(len(value)) + name + value


def split_records(data: bytes) -> list[tuple[int, int, int, bytes, int]]:
    """Walk well-formed record bytes: (version, type, id, content, padding) for each record."""
    out = []
    pos = 0
    while pos < len(data):
        version, rtype, rid, length, padding, _ = struct.unpack_from(">BBHHBB", data, pos)
        pos += 8
        out.append((version, rtype, rid, data[pos : pos + length], padding))
        pos += length + padding
    assert pos == len(data)
    return out


def drain(conn: FastCGIConnection) -> tuple[list[Any], Any]:
    """Events until NEED_DATA or CONNECTION_CLOSED; return them and the sentinel."""
    events = []
    for _ in range(100_000):
        event = conn.next_event()
        if event is NEED_DATA or event is CONNECTION_CLOSED:
            return events, event
        events.append(event)
    raise AssertionError("next_event looped")


def webserver(*begun: int, role: Role = Role.RESPONDER) -> FastCGIConnection:
    """A webserver-side connection that has begun the requests `begun`."""
    conn = FastCGIConnection("webserver")
    for rid in begun:
        conn.send(BeginRequest(rid, role))
    return conn


def decode_reply(reply: bytes, *begun: int) -> list[Any]:
    """Decode bytes an application sent, through a webserver-side connection."""
    ws = webserver(*begun)
    ws.receive_data(reply)
    events, end = drain(ws)
    assert end is NEED_DATA
    return events


def app_with(*records: bytes, **options: Any) -> tuple[FastCGIConnection, list[Any]]:
    conn = FastCGIConnection("application", **options)
    conn.receive_data(b"".join(records))
    events, end = drain(conn)
    assert end is NEED_DATA
    return conn, events


def parse(make: Callable[[], FastCGIConnection], data: bytes, chunks: Iterable[int]) -> list[Any]:
    """Feed `data` cut at `chunks` sizes, then EOF; return every event (must end CONNECTION_CLOSED)."""
    conn = make()
    events: list[Any] = []
    pos = 0
    for size in chunks:
        conn.receive_data(data[pos : pos + size])
        pos += size
        got, end = drain(conn)
        assert end is NEED_DATA
        events += got
    assert pos == len(data)
    conn.receive_data(b"")
    got, end = drain(conn)
    assert end is CONNECTION_CLOSED
    assert conn.next_event() is CONNECTION_CLOSED
    return events + got


def feeding(mode: str, data: bytes) -> list[int]:
    if mode == "whole":
        return [len(data)]
    if mode == "bytewise":
        return [1] * len(data)
    rng = random.Random(len(data))
    sizes = []
    left = len(data)
    while left:
        sizes.append(min(left, rng.randint(1, 23)))
        left -= sizes[-1]
    return sizes


# ---- two sample streams and their events -------------------------------------------------------

PAIRS = pair(b"SCRIPT_NAME", b"/app") + pair(b"LONG", b"x" * 130) + pair(b"EMPTY", b"")

APP_STREAM = [
    rec(BEGIN, 1, begin_body(1, 1)),
    rec(GET_VALUES, 0, pair(b"FCGI_MAX_CONNS", b"") + pair(b"FCGI_MPXS_CONNS", b"")),
    rec(PARAMS, 1, PAIRS[:20], padding=3, pad_byte=0xAA),  # splits inside the second pair
    rec(PARAMS, 1, PAIRS[20:], padding=0),
    rec(STDIN, 9, b"not ours"),  # inactive request: ignored
    rec(PARAMS, 1, b""),
    rec(12, 0, b"", padding=255, pad_byte=0x55),
    rec(STDIN, 1, b"hello ", padding=7, pad_byte=0xFF),
    rec(ABORT, 1),
    rec(ABORT, 1),  # a second abort is not reported again
    rec(STDIN, 1, b"world"),
    rec(STDIN, 1, b""),
    rec(255, 3, b"abc"),
]
APP_EVENTS = [
    BeginRequest(1, Role.RESPONDER, keep_conn=True),
    GetValues((b"FCGI_MAX_CONNS", b"FCGI_MPXS_CONNS")),
    Params(1, {b"SCRIPT_NAME": b"/app", b"LONG": b"x" * 130, b"EMPTY": b""}),
    UnknownType(12),
    Stdin(1, b"hello "),
    AbortRequest(1),
    Stdin(1, b"world"),
    Stdin(1, b"", end=True),
    UnknownType(255),
]

WS_STREAM = [
    rec(STDOUT, 1, b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\n", padding=1),
    rec(STDERR, 1, b"warning\n", padding=0),
    rec(STDOUT, 2, b"nobody asked"),  # never begun: ignored
    rec(STDOUT, 1, b"ok", padding=6, pad_byte=0xEE),
    rec(STDERR, 1, b""),
    rec(GET_VALUES_RESULT, 0, pair(b"FCGI_MAX_REQS", b"10") + pair(b"FCGI_MPXS_CONNS", b"1")),
    rec(STDOUT, 1, b""),
    rec(END, 1, end_body(0xDEADBEEF, 0)),
    rec(STDOUT, 1, b"late"),  # after END_REQUEST: ignored
    rec(UNKNOWN, 0, bytes([99]) + bytes(7)),
]
WS_EVENTS = [
    Stdout(1, b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\n"),
    Stderr(1, b"warning\n"),
    Stdout(1, b"ok"),
    Stderr(1, b"", end=True),
    GetValuesResult({b"FCGI_MAX_REQS": b"10", b"FCGI_MPXS_CONNS": b"1"}),
    Stdout(1, b"", end=True),
    EndRequest(1, 0xDEADBEEF, ProtocolStatus.REQUEST_COMPLETE),
    UnknownType(99),
]

SIDES = {
    "application": (lambda: FastCGIConnection("application"), b"".join(APP_STREAM), APP_EVENTS),
    "webserver": (lambda: webserver(1), b"".join(WS_STREAM), WS_EVENTS),
}


@pytest.mark.parametrize("mode", ["whole", "bytewise", "chunks"])
@pytest.mark.parametrize("side", sorted(SIDES))
def test_parse_stream(side: str, mode: str) -> None:
    make, data, expected = SIDES[side]
    assert parse(make, data, feeding(mode, data)) == expected


@pytest.mark.parametrize("side", sorted(SIDES))
def test_trailing_partial_record_stays_buffered(side: str) -> None:
    make, data, expected = SIDES[side]
    following = rec(STDOUT if side == "webserver" else STDIN, 77, b"123456789", padding=3)
    for cut in range(1, len(following)):
        conn = make()
        conn.receive_data(data + following[:cut])
        events, end = drain(conn)
        assert (events, end) == (expected, NEED_DATA)
        assert conn.next_event() is NEED_DATA  # asking again changes nothing
        assert len(conn._buffer) == cut  # the partial record is kept, nothing else
        # The rest of the record arrives: it is parsed (and ignored: id 77 is not active).
        conn.receive_data(following[cut:])
        assert drain(conn) == ([], NEED_DATA)
        assert len(conn._buffer) == 0
        # EOF in the middle of a record is an error.
        conn = make()
        conn.receive_data(data + following[:cut])
        assert drain(conn) == (expected, NEED_DATA)
        conn.receive_data(b"")
        with pytest.raises(FastCGIProtocolError) as info:
            conn.next_event()
        assert info.value.close is True
        assert isinstance(info.value, RemoteProtocolError)


@pytest.mark.parametrize("side", sorted(SIDES))
def test_eof_between_records_then_more_events(side: str) -> None:
    make, data, expected = SIDES[side]
    conn = make()
    conn.receive_data(data)
    conn.receive_data(b"")  # EOF arrives before the events are read: they are still delivered
    assert drain(conn) == (expected, CONNECTION_CLOSED)
    assert conn.next_event() is CONNECTION_CLOSED
    empty = make()
    empty.receive_data(b"")
    assert empty.next_event() is CONNECTION_CLOSED


# ---- golden vectors ----------------------------------------------------------------------------

GOLDEN_WEBSERVER = [
    (
        BeginRequest(1, Role.RESPONDER, keep_conn=True),
        b"\x01\x01\x00\x01\x00\x08\x00\x00\x00\x01\x01\x00\x00\x00\x00\x00",
    ),
    (BeginRequest(0x1234, Role.FILTER), b"\x01\x01\x12\x34\x00\x08\x00\x00\x00\x03\x00\x00\x00\x00\x00\x00"),
    (
        Params(1, {b"A": b"bc"}),
        b"\x01\x04\x00\x01\x00\x05\x03\x00\x01\x02Abc\x00\x00\x00\x01\x04\x00\x01\x00\x00\x00\x00",
    ),
    (Params(1, {}), b"\x01\x04\x00\x01\x00\x00\x00\x00"),  # no pairs: only the end of the stream
    (Stdin(1, b"", end=True), b"\x01\x05\x00\x01\x00\x00\x00\x00"),
    (Stdin(1, b"12345678"), b"\x01\x05\x00\x01\x00\x08\x00\x0012345678"),
    (
        Data(0x1234, b"d", end=True),
        b"\x01\x08\x12\x34\x00\x01\x07\x00d" + bytes(7) + b"\x01\x08\x12\x34\x00\x00\x00\x00",
    ),
    (AbortRequest(0x1234), b"\x01\x02\x12\x34\x00\x00\x00\x00"),
    (GetValues((b"FCGI_MAX_CONNS",)), b"\x01\x09\x00\x00\x00\x10\x00\x00\x0e\x00FCGI_MAX_CONNS"),
]

GOLDEN_APPLICATION = [
    (
        Stdout(1, b"hi", end=True),
        b"\x01\x06\x00\x01\x00\x02\x06\x00hi" + bytes(6) + b"\x01\x06\x00\x01\x00\x00\x00\x00",
    ),
    (Stderr(300, b"x" * 9), b"\x01\x07\x01\x2c\x00\x09\x07\x00" + b"x" * 9 + bytes(7)),
    (
        EndRequest(1, 0x01020304, ProtocolStatus.OVERLOADED),
        b"\x01\x03\x00\x01\x00\x08\x00\x00\x01\x02\x03\x04\x02\x00\x00\x00",
    ),
    (UnknownType(12), b"\x01\x0b\x00\x00\x00\x08\x00\x00\x0c" + bytes(7)),
    (
        GetValuesResult({b"FCGI_MPXS_CONNS": b"0"}),
        b"\x01\x0a\x00\x00\x00\x12\x06\x00\x0f\x01FCGI_MPXS_CONNS0" + bytes(6),
    ),
]


@pytest.mark.parametrize(("event", "wire"), GOLDEN_WEBSERVER)
def test_golden_webserver_records(event: Any, wire: bytes) -> None:
    ws = webserver(0x1234, 1) if not isinstance(event, BeginRequest) else webserver()
    assert ws.send(event) == wire
    # ...and the application side decodes the literal bytes back.
    app = FastCGIConnection("application", multiplex=True)
    if not isinstance(event, (BeginRequest, GetValues)):
        app.receive_data(b"\x01\x01\x12\x34\x00\x08\x00\x00\x00\x03\x00\x00\x00\x00\x00\x00")  # FILTER 0x1234
        app.receive_data(b"\x01\x01\x00\x01\x00\x08\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00")  # RESPONDER 1
        if isinstance(event, (Stdin, Data)):
            app.receive_data(rec(PARAMS, event.request_id))
        if isinstance(event, Data):
            app.receive_data(rec(STDIN, event.request_id))
        drain(app)
    app.receive_data(wire)
    events, _ = drain(app)
    if isinstance(event, Params):
        assert events == [event]
    elif isinstance(event, (Stdin, Data)) and event.data and event.end:
        assert events == [type(event)(event.request_id, event.data), type(event)(event.request_id, b"", True)]
    else:
        assert events == [event]


@pytest.mark.parametrize(("event", "wire"), GOLDEN_APPLICATION)
def test_golden_application_records(event: Any, wire: bytes) -> None:
    app = FastCGIConnection("application", multiplex=True)
    app.receive_data(rec(BEGIN, 1, begin_body(1)) + rec(BEGIN, 300, begin_body(1)))
    drain(app)
    assert app.send(event) == wire
    events = decode_reply(wire, 1, 300)
    if isinstance(event, Stdout) and event.end:
        assert events == [Stdout(1, b"hi"), Stdout(1, b"", True)]
    else:
        assert events == [event]


def test_golden_name_value_lengths() -> None:
    assert encode_name_values([(b"N", b"v")]) == b"\x01\x01Nv"
    assert encode_name_values([(b"N", b"v" * 127)]) == b"\x01\x7fN" + b"v" * 127
    assert encode_name_values([(b"N", b"v" * 200)]) == b"\x01\x80\x00\x00\xc8N" + b"v" * 200
    assert encode_name_values([(b"n" * 128, b"")]) == b"\x80\x00\x00\x80\x00" + b"n" * 128
    assert encode_name_values([(b"", b"")]) == b"\x00\x00"
    assert encode_name_values([(b"a", b"1"), (b"b", b"2")]) == b"\x01\x01a1\x01\x01b2"


# ---- name-value pairs --------------------------------------------------------------------------

LENGTHS = [0, 1, 127, 128, 65535, 70000]


@pytest.mark.parametrize("name_length", LENGTHS)
@pytest.mark.parametrize("value_length", LENGTHS)
def test_name_value_lengths(name_length: int, value_length: int) -> None:
    name, value = b"n" * name_length, bytes(i % 256 for i in range(value_length))
    encoded = encode_name_values([(name, value)])
    assert encoded == pair(name, value)
    header = (1 if name_length < 128 else 4) + (1 if value_length < 128 else 4)
    assert len(encoded) == header + name_length + value_length
    assert decode_name_values(encoded) == ({name: value}, len(encoded))
    # Through the connections: the PARAMS stream is split into 65,535-byte records as needed.
    ws = webserver(1)
    wire = ws.send(Params(1, {name: value, b"after": b"it"}))
    params_records = [r for r in split_records(wire) if r[1] == PARAMS]
    assert all(len(r[3]) <= 65535 for r in params_records)
    assert params_records[-1][3] == b""
    app, events = app_with(rec(BEGIN, 1, begin_body(1)), wire)
    assert events == [BeginRequest(1), Params(1, {name: value, b"after": b"it"})]


def test_decode_stops_at_an_incomplete_pair() -> None:
    encoded = pair(b"a", b"1") + pair(b"LONG", b"x" * 300)
    assert decode_name_values(encoded) == ({b"a": b"1", b"LONG": b"x" * 300}, len(encoded))
    for cut in range(len(encoded)):
        pairs, used = decode_name_values(encoded[:cut])
        if cut < 4:
            assert (pairs, used) == ({}, 0)
        else:
            assert (pairs, used) == ({b"a": b"1"}, 4)
    into = {b"old": b"x"}
    assert decode_name_values(pair(b"new", b"y"), into)[0] is into
    assert into == {b"old": b"x", b"new": b"y"}


SPLIT_PAIRS = [
    (b"REQUEST_METHOD", b"POST"),
    (b"EMPTY", b""),
    (b"", b"nameless"),
    (b"BINARY\x00\xff", bytes(range(256))[:140]),  # a 4-byte value length
    (b"N" * 130, b"v"),  # a 4-byte name length
]
SPLIT_ENCODED = encode_name_values(SPLIT_PAIRS)


@pytest.mark.parametrize("split", range(1, len(SPLIT_ENCODED)))
def test_params_split_at_every_byte(split: int) -> None:
    _, events = app_with(
        rec(BEGIN, 1, begin_body(1)),
        rec(PARAMS, 1, SPLIT_ENCODED[:split]),
        rec(PARAMS, 1, SPLIT_ENCODED[split:]),
        rec(PARAMS, 1),
    )
    assert events == [BeginRequest(1), Params(1, dict(SPLIT_PAIRS))]


def test_params_split_at_every_pair_of_points_and_byte_records() -> None:
    data = SPLIT_ENCODED
    for first in range(1, len(data), 7):
        for second in range(first + 1, len(data), 5):
            pieces = [data[:first], data[first:second], data[second:]]
            _, events = app_with(
                rec(BEGIN, 1, begin_body(1)), *(rec(PARAMS, 1, p) for p in pieces), rec(PARAMS, 1)
            )
            assert events[1] == Params(1, dict(SPLIT_PAIRS))
    # One record per byte.
    _, events = app_with(
        rec(BEGIN, 1, begin_body(1)),
        *(rec(PARAMS, 1, data[i : i + 1]) for i in range(len(data))),
        rec(PARAMS, 1),
    )
    assert events[1] == Params(1, dict(SPLIT_PAIRS))


def test_duplicate_names_last_one_wins() -> None:
    # The module decodes into a dict, so a repeated name keeps the value that came last,
    # whether the repeats share a record or not (the spec says nothing about duplicates).
    first = pair(b"X", b"1") + pair(b"Y", b"a") + pair(b"X", b"2")
    _, events = app_with(
        rec(BEGIN, 1, begin_body(1)), rec(PARAMS, 1, first), rec(PARAMS, 1, pair(b"X", b"3")), rec(PARAMS, 1)
    )
    assert events[1] == Params(1, {b"X": b"3", b"Y": b"a"})
    assert decode_name_values(pair(b"k", b"a") + pair(b"k", b"b"))[0] == {b"k": b"b"}


def test_empty_params_stream() -> None:
    _, events = app_with(rec(BEGIN, 1, begin_body(1)), rec(PARAMS, 1))
    assert events == [BeginRequest(1), Params(1, {})]


def test_params_stream_ending_mid_pair_is_an_error() -> None:
    encoded = pair(b"A", b"1") + pair(b"NAME", b"v" * 200)
    boundaries = {0, 4, len(encoded)}
    for cut in range(1, len(encoded)):
        conn = FastCGIConnection("application")
        conn.receive_data(rec(BEGIN, 1, begin_body(1)) + rec(PARAMS, 1, encoded[:cut]) + rec(PARAMS, 1))
        if cut in boundaries:
            assert drain(conn)[0][1] == Params(1, {b"A": b"1"})
            continue
        assert conn.next_event() == BeginRequest(1)
        with pytest.raises(FastCGIProtocolError, match="inside a name-value pair") as info:
            conn.next_event()
        assert info.value.close is True


pairs_strategy = st.lists(st.tuples(st.binary(max_size=300), st.binary(max_size=300)), max_size=8)


@ROUND_TRIP
@given(pairs=pairs_strategy, cuts=st.lists(st.integers(1, 50), max_size=20))
def test_name_values_round_trip(pairs: list[tuple[bytes, bytes]], cuts: list[int]) -> None:
    encoded = encode_name_values(pairs)
    assert encoded == b"".join(pair(n, v) for n, v in pairs)
    assert decode_name_values(encoded) == (dict(pairs), len(encoded))
    # The same stream cut into PARAMS records anywhere decodes the same.
    pieces, pos = [], 0
    for cut in cuts:
        if pos >= len(encoded):
            break
        pieces.append(encoded[pos : pos + cut])
        pos += cut
    if pos < len(encoded):
        pieces.append(encoded[pos:])
    _, events = app_with(rec(BEGIN, 1, begin_body(1)), *(rec(PARAMS, 1, p) for p in pieces), rec(PARAMS, 1))
    assert events == [BeginRequest(1), Params(1, dict(pairs))]


@ROUND_TRIP
@given(pairs=pairs_strategy, sizes=st.lists(st.integers(1, 64), min_size=1, max_size=8))
def test_params_round_trip_through_both_ends(pairs: list[tuple[bytes, bytes]], sizes: list[int]) -> None:
    ws = webserver(7)
    wire = ws.send(Params(7, dict(pairs)))
    app = FastCGIConnection("application")
    app.receive_data(ws_begin(7))
    events, pos, i = [], 0, 0
    while pos < len(wire):
        app.receive_data(wire[pos : pos + sizes[i % len(sizes)]])
        pos += sizes[i % len(sizes)]
        i += 1
        events += drain(app)[0]
    assert events == [BeginRequest(7), Params(7, dict(pairs))]


def ws_begin(rid: int, role: Role = Role.RESPONDER, keep_conn: bool = False) -> bytes:
    return FastCGIConnection("webserver").send(BeginRequest(rid, role, keep_conn))


# ---- output ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "lengths"),
    [
        (1, [1]),
        (65535, [65535]),
        (65536, [65535, 1]),
        (2 * 65535 + 10, [65535, 65535, 10]),
    ],
)
@pytest.mark.parametrize("kind", [Stdout, Stderr])
def test_output_is_split_into_records(kind: type, size: int, lengths: list[int]) -> None:
    data = bytes(i % 251 for i in range(size))
    app, _ = app_with(rec(BEGIN, 1, begin_body(1)))
    wire = app.send(kind(1, data, end=True))
    records = split_records(wire)
    rtype = STDOUT if kind is Stdout else STDERR
    assert [(v, t, i) for v, t, i, _, _ in records] == [(1, rtype, 1)] * (len(lengths) + 1)
    assert [len(r[3]) for r in records] == [*lengths, 0]
    assert [r[4] for r in records] == [-n % 8 for n in lengths] + [0]  # padded to a multiple of 8
    assert b"".join(r[3] for r in records) == data
    events = decode_reply(wire, 1)
    assert [type(e) for e in events] == [kind] * (len(lengths) + 1)
    assert b"".join(e.data for e in events) == data
    assert [e.end for e in events] == [False] * len(lengths) + [True]
    assert app.send(kind(1, data)) == wire[:-8]  # without end: no empty record
    assert app.send(kind(1, b"", end=True)) == rec(rtype, 1)
    assert app.send(kind(1, b"")) == b""


@pytest.mark.parametrize("kind", [Stdin, Data])
def test_input_is_split_into_records(kind: type) -> None:
    data = bytes(i % 253 for i in range(65535 * 2 + 3))
    ws = webserver(1, role=Role.FILTER)
    wire = ws.send(kind(1, data, end=True))
    assert [len(r[3]) for r in split_records(wire)] == [65535, 65535, 3, 0]
    app, _ = app_with(
        rec(BEGIN, 1, begin_body(3)), rec(PARAMS, 1), *([rec(STDIN, 1)] if kind is Data else [])
    )
    app.receive_data(wire)
    events = drain(app)[0]
    assert b"".join(e.data for e in events) == data
    assert events[-1] == kind(1, b"", True)


@pytest.mark.parametrize("padding", [0, 1, 7, 8, 100, 255])
@pytest.mark.parametrize("pad_byte", [0x00, 0xFF])
def test_padding_is_skipped(padding: int, pad_byte: int) -> None:
    # Padding need not make a multiple of 8 and its bytes are not looked at (section 3.3).
    _, events = app_with(
        rec(BEGIN, 1, begin_body(1), padding=padding, pad_byte=pad_byte),
        rec(PARAMS, 1, pair(b"K", b"V"), padding=padding, pad_byte=pad_byte),
        rec(PARAMS, 1, padding=padding, pad_byte=pad_byte),
        rec(STDIN, 1, b"body", padding=padding, pad_byte=pad_byte),
    )
    assert events == [BeginRequest(1), Params(1, {b"K": b"V"}), Stdin(1, b"body")]
    events = decode_reply(
        rec(STDOUT, 1, b"out", padding=padding, pad_byte=pad_byte)
        + rec(END, 1, end_body(5, 0), padding=padding, pad_byte=pad_byte),
        1,
    )
    assert events == [Stdout(1, b"out"), EndRequest(1, 5)]


@pytest.mark.parametrize(
    ("app_status", "on_the_wire"),
    [(0, 0), (1, 1), (255, 255), (256, 256), (2**31, 2**31), (2**32 - 1, 2**32 - 1), (-1, 2**32 - 1)],
)
@pytest.mark.parametrize("status", list(ProtocolStatus))
def test_end_request_encoding(app_status: int, on_the_wire: int, status: ProtocolStatus) -> None:
    app, _ = app_with(rec(BEGIN, 1, begin_body(1)))
    wire = app.send(EndRequest(1, app_status, status))
    assert wire == rec(END, 1, end_body(on_the_wire, int(status)))
    assert decode_reply(wire, 1) == [EndRequest(1, on_the_wire, status)]
    assert 1 not in app.requests  # the request is over for the application too


# ---- roles -------------------------------------------------------------------------------------


def test_responder_request() -> None:
    app, events = app_with(
        rec(BEGIN, 1, begin_body(1)),
        rec(PARAMS, 1, pair(b"A", b"b")),
        rec(PARAMS, 1),
        rec(STDIN, 1, b"x"),
        rec(STDIN, 1),
    )
    assert events == [
        BeginRequest(1, Role.RESPONDER),
        Params(1, {b"A": b"b"}),
        Stdin(1, b"x"),
        Stdin(1, b"", True),
    ]
    assert app.requests[1].state == "INPUT_DONE"
    app.receive_data(rec(DATA, 1, b"file"))
    with pytest.raises(FastCGIProtocolError, match="DATA") as info:
        app.next_event()
    assert info.value.close is True


def test_authorizer_request() -> None:
    app, events = app_with(
        rec(BEGIN, 1, begin_body(2, 1)),
        rec(PARAMS, 1, pair(b"REMOTE_USER", b"u")),
        rec(PARAMS, 1),
        rec(STDIN, 1),
    )
    assert events == [
        BeginRequest(1, Role.AUTHORIZER, True),
        Params(1, {b"REMOTE_USER": b"u"}),
        Stdin(1, b"", True),
    ]
    app.receive_data(rec(DATA, 1))
    with pytest.raises(FastCGIProtocolError):
        app.next_event()


def test_filter_request_gets_data_after_stdin() -> None:
    app, events = app_with(
        rec(BEGIN, 1, begin_body(3)),
        rec(PARAMS, 1),
        rec(STDIN, 1, b"in"),
        rec(STDIN, 1),
        rec(DATA, 1, b"file "),
        rec(DATA, 1, b"data"),
        rec(DATA, 1),
    )
    assert events == [
        BeginRequest(1, Role.FILTER),
        Params(1, {}),
        Stdin(1, b"in"),
        Stdin(1, b"", True),
        Data(1, b"file "),
        Data(1, b"data"),
        Data(1, b"", True),
    ]
    assert app.requests[1].state == "INPUT_DONE"
    for late in (rec(DATA, 1, b"more"), rec(STDIN, 1, b"more"), rec(PARAMS, 1)):
        conn, _ = app_with(*APP_FILTER_PREFIX, rec(DATA, 1))
        conn.receive_data(late)
        with pytest.raises(FastCGIProtocolError):
            conn.next_event()


APP_FILTER_PREFIX = [rec(BEGIN, 1, begin_body(3)), rec(PARAMS, 1), rec(STDIN, 1)]


def test_filter_data_before_stdin_ends_is_an_error() -> None:
    app, _ = app_with(rec(BEGIN, 1, begin_body(3)), rec(PARAMS, 1), rec(STDIN, 1, b"x"))
    app.receive_data(rec(DATA, 1, b"early"))
    with pytest.raises(FastCGIProtocolError):
        app.next_event()


@pytest.mark.parametrize("role", [0, 4, 0xFFFF])
def test_unknown_role_is_refused_without_closing(role: int) -> None:
    app = FastCGIConnection("application")
    app.receive_data(
        rec(BEGIN, 1, begin_body(role, 1)) + rec(PARAMS, 1, pair(b"A", b"b")) + rec(PARAMS, 1) + rec(STDIN, 1)
    )
    with pytest.raises(FastCGIProtocolError) as info:
        app.next_event()
    assert info.value.close is False
    assert info.value.reply == rec(END, 1, end_body(0, 3))
    ws = FastCGIConnection("webserver")
    ws.send(BeginRequest(1, role, True))  # type: ignore[arg-type]
    ws.receive_data(info.value.reply)
    assert drain(ws) == ([EndRequest(1, 0, ProtocolStatus.UNKNOWN_ROLE)], NEED_DATA)
    # The refused request is not active: its records are ignored, and the id can be used again.
    assert drain(app) == ([], NEED_DATA)
    assert app.requests == {}
    app.receive_data(rec(BEGIN, 1, begin_body(1)))
    assert drain(app) == ([BeginRequest(1)], NEED_DATA)


def test_second_request_without_multiplexing_gets_cant_mpx_conn() -> None:
    app = FastCGIConnection("application")
    app.receive_data(
        rec(BEGIN, 1, begin_body(1, 1)) + rec(BEGIN, 2, begin_body(1, 1)) + rec(PARAMS, 2) + rec(PARAMS, 1)
    )
    assert app.next_event() == BeginRequest(1, keep_conn=True)
    with pytest.raises(FastCGIProtocolError) as info:
        app.next_event()
    assert info.value.close is False
    assert decode_reply(info.value.reply, 1, 2) == [EndRequest(2, 0, ProtocolStatus.CANT_MPX_CONN)]
    # Request 2's records are ignored; request 1 goes on.
    assert drain(app) == ([Params(1, {})], NEED_DATA)
    assert list(app.requests) == [1]
    # Once request 1 is over, a new request is welcome.
    app.send(EndRequest(1))
    app.receive_data(rec(BEGIN, 2, begin_body(1)))
    assert drain(app) == ([BeginRequest(2)], NEED_DATA)


def test_multiplexed_requests_are_kept_apart() -> None:
    stream = [
        rec(BEGIN, 1, begin_body(1, 1)),
        rec(BEGIN, 2, begin_body(3, 1)),
        rec(PARAMS, 2, pair(b"WHO", b"two")[:3]),
        rec(PARAMS, 1, pair(b"WHO", b"one")[:4]),
        rec(PARAMS, 2, pair(b"WHO", b"two")[3:]),
        rec(PARAMS, 1, pair(b"WHO", b"one")[4:]),
        rec(PARAMS, 1),
        rec(STDIN, 1, b"1a"),
        rec(PARAMS, 2),
        rec(STDIN, 2, b"2a"),
        rec(ABORT, 2),
        rec(STDIN, 1),
        rec(STDIN, 2),
        rec(DATA, 2, b"2d"),
    ]
    expected = [
        BeginRequest(1, Role.RESPONDER, True),
        BeginRequest(2, Role.FILTER, True),
        Params(1, {b"WHO": b"one"}),
        Stdin(1, b"1a"),
        Params(2, {b"WHO": b"two"}),
        Stdin(2, b"2a"),
        AbortRequest(2),
        Stdin(1, b"", True),
        Stdin(2, b"", True),
        Data(2, b"2d"),
    ]
    data = b"".join(stream)
    for mode in ("whole", "bytewise"):
        assert (
            parse(lambda: FastCGIConnection("application", multiplex=True), data, feeding(mode, data))
            == expected
        )
    app, _ = app_with(*stream, multiplex=True)
    out = app.send(Stdout(2, b"two", end=True)) + app.send(Stdout(1, b"one")) + app.send(EndRequest(2, 7))
    out += app.send(EndRequest(1))
    assert decode_reply(out, 1, 2) == [
        Stdout(2, b"two"),
        Stdout(2, b"", True),
        Stdout(1, b"one"),
        EndRequest(2, 7),
        EndRequest(1),
    ]


@pytest.mark.parametrize("multiplex", [False, True])
def test_duplicate_active_request_id_closes(multiplex: bool) -> None:
    app = FastCGIConnection("application", multiplex=multiplex)
    app.receive_data(rec(BEGIN, 5, begin_body(1)) + rec(BEGIN, 5, begin_body(1)))
    assert app.next_event() == BeginRequest(5)
    with pytest.raises(FastCGIProtocolError, match="twice") as info:
        app.next_event()
    assert info.value.close is True
    assert info.value.reply == b""


@pytest.mark.parametrize(("flags", "keep_conn"), [(0, False), (1, True), (0xFF, True), (0xFE, False)])
def test_keep_conn_flag(flags: int, keep_conn: bool) -> None:
    _, events = app_with(rec(BEGIN, 1, begin_body(1, flags)))
    assert events == [BeginRequest(1, Role.RESPONDER, keep_conn)]
    assert ws_begin(1, keep_conn=keep_conn) == rec(BEGIN, 1, begin_body(1, int(keep_conn)))


@pytest.mark.parametrize("body", [b"", b"\x00\x01\x00", begin_body(1) + b"\x00"])
def test_malformed_begin_request(body: bytes) -> None:
    app = FastCGIConnection("application")
    app.receive_data(rec(BEGIN, 1, body))
    with pytest.raises(FastCGIProtocolError, match="malformed BEGIN_REQUEST"):
        app.next_event()


def test_abort_request_reported_once() -> None:
    app, events = app_with(
        rec(BEGIN, 1, begin_body(1)), rec(ABORT, 1), rec(ABORT, 1), rec(PARAMS, 1), rec(ABORT, 1)
    )
    assert events == [BeginRequest(1), AbortRequest(1), Params(1, {})]
    assert app.requests[1].aborted
    # The application still ends the request itself.
    assert decode_reply(app.send(EndRequest(1)), 1) == [EndRequest(1)]
    app.receive_data(rec(ABORT, 1))
    assert drain(app) == ([], NEED_DATA)


def test_records_for_inactive_ids_are_ignored() -> None:
    records = [rec(t, 9, b"12345678") for t in (ABORT, PARAMS, STDIN, DATA, END, STDOUT, STDERR, GET_VALUES)]
    records += [rec(t, 9) for t in (ABORT, PARAMS, STDIN, DATA)]
    app, events = app_with(*records)
    assert events == [] and app.requests == {}
    # Also once a request has ended on our side.
    app, _ = app_with(rec(BEGIN, 1, begin_body(1)), rec(PARAMS, 1))
    app.send(EndRequest(1))
    app.receive_data(rec(STDIN, 1, b"late") + rec(STDIN, 1) + rec(ABORT, 1))
    assert drain(app) == ([], NEED_DATA)


@pytest.mark.parametrize("record_type", [0, 12, 13, 128, 255])
@pytest.mark.parametrize("request_id", [0, 1, 500])
def test_unknown_record_types(record_type: int, request_id: int) -> None:
    app, events = app_with(rec(BEGIN, 1, begin_body(1)), rec(record_type, request_id, b"whatever"))
    assert events == [BeginRequest(1), UnknownType(record_type)]
    wire = app.send(UnknownType(record_type))
    assert wire == rec(UNKNOWN, 0, bytes([record_type]) + bytes(7))
    assert decode_reply(wire) == [UnknownType(record_type)]


@pytest.mark.parametrize(
    "record_type", [BEGIN, ABORT, END, PARAMS, STDIN, STDOUT, STDERR, DATA, GET_VALUES_RESULT, UNKNOWN]
)
def test_known_types_as_management_records_are_unknown(record_type: int) -> None:
    # Only GET_VALUES is a management record an application understands (section 4).
    _, events = app_with(rec(record_type, 0, b"x"))
    assert events == [UnknownType(record_type)]


@pytest.mark.parametrize("version", [0, 2, 255])
@pytest.mark.parametrize("side", ["application", "webserver"])
def test_wrong_version(side: str, version: int) -> None:
    conn = FastCGIConnection(side)  # type: ignore[arg-type]
    bad = bytearray(rec(STDIN if side == "application" else STDOUT, 1, b"abc"))
    bad[0] = version
    conn.receive_data(bytes(bad[:8]))  # noticed as soon as the header is in
    with pytest.raises(FastCGIProtocolError, match="version") as info:
        conn.next_event()
    assert info.value.close is True
    assert info.value.status_code == 502


def test_oversized_params_gets_431() -> None:
    limit = 100
    ok = pair(b"K", b"v" * (limit - 3))
    assert len(ok) == limit
    _, events = app_with(
        rec(BEGIN, 1, begin_body(1)), rec(PARAMS, 1, ok), rec(PARAMS, 1), max_params_bytes=limit
    )
    assert events[1] == Params(1, {b"K": b"v" * (limit - 3)})
    app = FastCGIConnection("application", max_params_bytes=limit)
    app.receive_data(rec(BEGIN, 1, begin_body(1)) + rec(PARAMS, 1, ok[:60]) + rec(PARAMS, 1, ok[60:] + b"!"))
    assert app.next_event() == BeginRequest(1)
    with pytest.raises(FastCGIProtocolError, match="larger than the limit") as info:
        app.next_event()
    assert info.value.close is True
    events = decode_reply(info.value.reply, 1)
    assert [type(e) for e in events] == [Stdout, Stdout, EndRequest]
    assert events[0].data.startswith(b"Status: 431 Request Header Fields Too Large\r\n")
    assert b"\r\n\r\n" in events[0].data
    assert events[1] == Stdout(1, b"", True)
    assert events[2] == EndRequest(1, 0, ProtocolStatus.REQUEST_COMPLETE)


def test_get_values_round_trip() -> None:
    names = (b"FCGI_MAX_CONNS", b"FCGI_MAX_REQS", b"FCGI_MPXS_CONNS")
    ws = FastCGIConnection("webserver")
    app = FastCGIConnection("application")
    app.receive_data(ws.send(GetValues(names)))
    assert drain(app) == ([GetValues(names)], NEED_DATA)
    answer = {b"FCGI_MAX_CONNS": b"10", b"FCGI_MAX_REQS": b"50", b"FCGI_MPXS_CONNS": b"1"}
    ws.receive_data(app.send(GetValuesResult(answer)))
    assert drain(ws) == ([GetValuesResult(answer)], NEED_DATA)
    ws.receive_data(app.send(GetValuesResult({})))
    assert drain(ws) == ([GetValuesResult({})], NEED_DATA)


@pytest.mark.parametrize("content", [b"\x05", b"\x01\x05ab", b"\x80\x00\x00"])
def test_malformed_get_values(content: bytes) -> None:
    app = FastCGIConnection("application")
    app.receive_data(rec(GET_VALUES, 0, content))
    with pytest.raises(FastCGIProtocolError, match="GET_VALUES"):
        app.next_event()
    ws = FastCGIConnection("webserver")
    ws.receive_data(rec(GET_VALUES_RESULT, 0, content))
    with pytest.raises(FastCGIProtocolError, match="GET_VALUES_RESULT"):
        ws.next_event()


@pytest.mark.parametrize("body", [b"", bytes(7), bytes(9), bytes(16)])
def test_webserver_malformed_end_request(body: bytes) -> None:
    ws = webserver(1)
    ws.receive_data(rec(END, 1, body))
    with pytest.raises(FastCGIProtocolError, match="malformed END_REQUEST") as info:
        ws.next_event()
    assert info.value.close is True
    assert 1 in ws.requests


@pytest.mark.parametrize("status", [4, 5, 255])
def test_webserver_unknown_protocol_status(status: int) -> None:
    ws = webserver(1)
    ws.receive_data(rec(END, 1, end_body(0, status)))
    with pytest.raises(FastCGIProtocolError, match="protocol status") as info:
        ws.next_event()
    assert info.value.close is True
    assert 1 in ws.requests  # a rejected record changes nothing


@pytest.mark.parametrize(
    "record",
    [
        rec(BEGIN, 1, begin_body(1)),
        rec(ABORT, 1),
        rec(PARAMS, 1),
        rec(STDIN, 1, b"x"),
        rec(DATA, 1),
        rec(GET_VALUES, 1),
        rec(12, 1),
        rec(BEGIN, 0, begin_body(1)),
        rec(GET_VALUES, 0),
        rec(STDOUT, 0, b"x"),
        rec(12, 0),
    ],
)
def test_webserver_rejects_records_an_application_does_not_send(record: bytes) -> None:
    ws = webserver(1)
    ws.receive_data(record)
    with pytest.raises(FastCGIProtocolError):
        ws.next_event()


@pytest.mark.parametrize("body", [b"", bytes(7), bytes(9)])
def test_webserver_malformed_unknown_type(body: bytes) -> None:
    ws = FastCGIConnection("webserver")
    ws.receive_data(rec(UNKNOWN, 0, body))
    with pytest.raises(FastCGIProtocolError, match="UNKNOWN_TYPE"):
        ws.next_event()


def test_webserver_ignores_output_after_end_request() -> None:
    ws = webserver(1, 2)
    ws.receive_data(
        rec(END, 1, end_body(0, 0))
        + rec(STDOUT, 1, b"late")
        + rec(STDERR, 1, b"late")
        + rec(END, 1, end_body(0, 0))
        + rec(12, 1)
        + rec(STDOUT, 2, b"on time")
    )
    assert drain(ws) == ([EndRequest(1), Stdout(2, b"on time")], NEED_DATA)
    assert list(ws.requests) == [2]


def test_webserver_request_ended_by_application_refusal() -> None:
    ws = webserver(1, 2)
    ws.receive_data(rec(END, 2, end_body(0, 1)) + rec(END, 1, end_body(0, 2)))
    assert drain(ws) == (
        [EndRequest(2, 0, ProtocolStatus.CANT_MPX_CONN), EndRequest(1, 0, ProtocolStatus.OVERLOADED)],
        NEED_DATA,
    )
    ws.send(BeginRequest(1))  # the id is free again


# ---- the transition table ----------------------------------------------------------------------

# Written out from sections 6.2-6.4: PARAMS, then STDIN; a FILTER then gets DATA.
EXPECTED_TRANSITIONS = {
    ("PARAMS", PARAMS, False): "PARAMS",
    ("PARAMS", PARAMS, True): "STDIN",
    ("STDIN", STDIN, False): "STDIN",
    ("STDIN", STDIN, True): "INPUT_DONE",  # DATA for a FILTER
    ("DATA", DATA, False): "DATA",
    ("DATA", DATA, True): "INPUT_DONE",
}


def test_transition_table_is_the_documented_one() -> None:
    assert {(s, int(t), e): n for (s, t, e), n in fp._TRANSITIONS.items()} == EXPECTED_TRANSITIONS


STATE_PREFIX = {
    "PARAMS": [],
    "STDIN": [rec(PARAMS, 1)],
    "DATA": [rec(PARAMS, 1), rec(STDIN, 1)],
    "INPUT_DONE": [rec(PARAMS, 1), rec(STDIN, 1)],
}
TABLE_CASES = [
    (state, role, rtype, ended)
    for state in STATE_PREFIX
    for role in (Role.RESPONDER, Role.FILTER)
    if not (state == "DATA" and role != Role.FILTER)
    for rtype in range(1, 12)
    for ended in (False, True)
]


@pytest.mark.parametrize(("state", "role", "rtype", "ended"), TABLE_CASES)
def test_transition(state: str, role: Role, rtype: int, ended: bool) -> None:
    prefix = list(STATE_PREFIX[state])
    if state == "INPUT_DONE" and role == Role.FILTER:
        prefix.append(rec(DATA, 1))
    app, _ = app_with(rec(BEGIN, 1, begin_body(role)), *prefix)
    assert app.requests[1].state == state
    content = b"" if ended else (pair(b"K", b"V") if rtype == PARAMS else begin_body(1))
    app.receive_data(rec(rtype, 1, content))
    if rtype == ABORT:
        # ABORT_REQUEST is outside the stream table: accepted in every state, stream content or not.
        assert drain(app) == ([AbortRequest(1)], NEED_DATA)
        assert app.requests[1].state == state
        return
    expected = EXPECTED_TRANSITIONS.get((state, rtype, ended))
    if expected is None:
        with pytest.raises(FastCGIProtocolError) as info:
            app.next_event()
        assert info.value.close is True
        assert info.value.reply == b""
        return
    if expected == "INPUT_DONE" and rtype == STDIN and role == Role.FILTER:
        expected = "DATA"
    events, end = drain(app)
    assert end is NEED_DATA
    assert app.requests[1].state == expected
    if rtype == PARAMS:
        assert events == ([Params(1, {})] if ended else [])
    else:
        kind = Stdin if rtype == STDIN else Data
        assert events == [kind(1, content, ended)]


# ---- local misuse ------------------------------------------------------------------------------


def test_application_misuse() -> None:
    app, _ = app_with(rec(BEGIN, 1, begin_body(1)))
    for event in (Stdout(2, b"x"), Stderr(2, b"x"), Stdout(2, b"", True), EndRequest(2)):
        with pytest.raises(LocalProtocolError, match="no active request"):
            app.send(event)
    for event in (BeginRequest(3), Params(1, {}), Stdin(1), Data(1), AbortRequest(1), GetValues(())):
        with pytest.raises(LocalProtocolError, match="does not send"):
            app.send(event)  # type: ignore[arg-type]
    app.send(EndRequest(1))
    with pytest.raises(LocalProtocolError):
        app.send(EndRequest(1))
    with pytest.raises(LocalProtocolError):
        app.send(Stdout(1, b"after the end"))


def test_webserver_misuse() -> None:
    ws = webserver(1)
    with pytest.raises(LocalProtocolError, match="in use or invalid"):
        ws.send(BeginRequest(1))
    for rid in (0, 65536, -1, 2**20):
        with pytest.raises(LocalProtocolError, match="in use or invalid"):
            ws.send(BeginRequest(rid))
    ws.send(BeginRequest(65535))
    for event in (Params(2, {}), Stdin(2, b"x"), Data(2), AbortRequest(2), Stdout(2), EndRequest(2)):
        with pytest.raises(LocalProtocolError, match="no active request"):
            ws.send(event)  # type: ignore[arg-type]
    for event in (Stdout(1, b"x"), Stderr(1), EndRequest(1)):
        with pytest.raises(LocalProtocolError, match="does not send"):
            ws.send(event)  # type: ignore[arg-type]
    for event in (GetValuesResult({}), UnknownType(3)):
        with pytest.raises(LocalProtocolError):
            ws.send(event)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        FastCGIConnection("proxy")  # type: ignore[arg-type]


# ---- flup 1.0.3 as an independent oracle -------------------------------------------------------

flup = pytest.importorskip("flup.server.fcgi_base")


class CollectingSocket:
    """Just enough of a socket for flup's Record.read/write."""

    def __init__(self, incoming: bytes = b"") -> None:
        self.sent = bytearray()
        self._incoming = incoming
        self._pos = 0

    def fileno(self) -> int:
        return -1

    def send(self, data: bytes) -> int:
        self.sent += data
        return len(data)

    def recv(self, size: int) -> bytes:
        chunk = self._incoming[self._pos : self._pos + size]
        self._pos += len(chunk)
        return chunk


def flup_write(rtype: int, rid: int, content: bytes) -> bytes:
    record = flup.Record(rtype, rid)
    record.contentData = content
    record.contentLength = len(content)
    sock = CollectingSocket()
    record.write(sock)
    return bytes(sock.sent)


def flup_read(data: bytes) -> list[tuple[int, int, int, bytes]]:
    sock = CollectingSocket(data)
    out = []
    while True:
        record = flup.Record()
        try:
            record.read(sock)
        except EOFError:
            break
        out.append(
            (
                record.version,
                record.type,
                record.requestId,
                record.contentData if record.contentLength else b"",
            )
        )
    assert sock._pos == len(data)
    return out


def test_flup_written_request_is_parsed() -> None:
    params = b"".join(flup.encode_pair(n, v) for n, v in SPLIT_PAIRS)
    assert params == SPLIT_ENCODED  # the two name-value encoders agree byte for byte
    wire = (
        flup_write(BEGIN, 1, struct.pack(flup.FCGI_BeginRequestBody, flup.FCGI_FILTER, flup.FCGI_KEEP_CONN))
        + flup_write(PARAMS, 1, params[:100])
        + flup_write(PARAMS, 1, params[100:])
        + flup_write(PARAMS, 1, b"")
        + flup_write(STDIN, 1, b"body")
        + flup_write(STDIN, 1, b"")
        + flup_write(DATA, 1, b"d" * 70)
        + flup_write(DATA, 1, b"")
        + flup_write(ABORT, 1, b"")
        + flup_write(GET_VALUES, 0, flup.encode_pair(b"FCGI_MAX_REQS", b""))
    )
    expected = [
        BeginRequest(1, Role.FILTER, True),
        Params(1, dict(SPLIT_PAIRS)),
        Stdin(1, b"body"),
        Stdin(1, b"", True),
        Data(1, b"d" * 70),
        Data(1, b"", True),
        AbortRequest(1),
        GetValues((b"FCGI_MAX_REQS",)),
    ]
    for mode in ("whole", "bytewise"):
        assert parse(lambda: FastCGIConnection("application"), wire, feeding(mode, wire)) == expected


def test_flup_written_response_is_parsed() -> None:
    wire = (
        flup_write(STDOUT, 1, b"Status: 200 OK\r\n\r\nhello")
        + flup_write(STDERR, 1, b"log")
        + flup_write(STDOUT, 1, b"")
        + flup_write(
            flup.FCGI_END_REQUEST, 1, struct.pack(flup.FCGI_EndRequestBody, 2**32 - 2, flup.FCGI_OVERLOADED)
        )
        + flup_write(UNKNOWN, 0, struct.pack(flup.FCGI_UnknownTypeBody, 42))
        + flup_write(GET_VALUES_RESULT, 0, flup.encode_pair(b"FCGI_MPXS_CONNS", b"0"))
    )
    assert parse(lambda: webserver(1), wire, feeding("bytewise", wire)) == [
        Stdout(1, b"Status: 200 OK\r\n\r\nhello"),
        Stderr(1, b"log"),
        Stdout(1, b"", True),
        EndRequest(1, 2**32 - 2, ProtocolStatus.OVERLOADED),
        UnknownType(42),
        GetValuesResult({b"FCGI_MPXS_CONNS": b"0"}),
    ]


def test_our_records_are_read_by_flup() -> None:
    ws = webserver()
    wire = ws.send(BeginRequest(3, Role.AUTHORIZER, True)) + ws.send(Params(3, dict(SPLIT_PAIRS)))
    wire += (
        ws.send(Stdin(3, b"x" * 70000, end=True))
        + ws.send(AbortRequest(3))
        + ws.send(GetValues((b"FCGI_MAX_CONNS",)))
    )
    records = flup_read(wire)
    assert all(r[0] == 1 for r in records)
    assert [(r[1], r[2]) for r in records] == [
        (BEGIN, 3),
        (PARAMS, 3),
        (PARAMS, 3),
        (STDIN, 3),
        (STDIN, 3),
        (STDIN, 3),
        (ABORT, 3),
        (GET_VALUES, 0),
    ]
    assert struct.unpack(flup.FCGI_BeginRequestBody, records[0][3]) == (2, 1)
    pos, decoded = 0, {}
    while pos < len(records[1][3]):
        pos, (name, value) = flup.decode_pair(records[1][3], pos)
        decoded[name] = value
    assert decoded == dict(SPLIT_PAIRS)
    assert records[3][3] + records[4][3] == b"x" * 70000 and records[5][3] == b""
    app = FastCGIConnection("application")
    app.receive_data(rec(BEGIN, 3, begin_body(1)))
    drain(app)
    out = app.send(Stdout(3, b"y" * 65536, end=True)) + app.send(
        EndRequest(3, 9, ProtocolStatus.UNKNOWN_ROLE)
    )
    out += app.send(UnknownType(200)) + app.send(GetValuesResult({b"FCGI_MAX_CONNS": b"1"}))
    records = flup_read(out)
    assert [(r[1], r[2], len(r[3])) for r in records] == [
        (STDOUT, 3, 65535),
        (STDOUT, 3, 1),
        (STDOUT, 3, 0),
        (END, 3, 8),
        (UNKNOWN, 0, 8),
        (GET_VALUES_RESULT, 0, 17),
    ]
    assert struct.unpack(flup.FCGI_EndRequestBody, records[3][3]) == (9, 3)
    assert struct.unpack(flup.FCGI_UnknownTypeBody, records[4][3]) == (200,)
    assert flup.decode_pair(records[5][3]) == (17, (b"FCGI_MAX_CONNS", b"1"))


@ROUND_TRIP
@given(
    pairs=st.lists(st.tuples(st.binary(max_size=200), st.binary(max_size=200)), max_size=6),
    body=st.binary(max_size=300),
    rid=st.integers(1, 65535),
)
def test_flup_agrees_on_random_requests(pairs: list[tuple[bytes, bytes]], body: bytes, rid: int) -> None:
    ws = webserver()
    ours = (
        ws.send(BeginRequest(rid)) + ws.send(Params(rid, dict(pairs))) + ws.send(Stdin(rid, body, end=True))
    )
    theirs = flup_write(BEGIN, rid, struct.pack(flup.FCGI_BeginRequestBody, 1, 0))
    encoded = b"".join(flup.encode_pair(n, v) for n, v in dict(pairs).items())
    theirs += (flup_write(PARAMS, rid, encoded) if encoded else b"") + flup_write(PARAMS, rid, b"")
    theirs += (flup_write(STDIN, rid, body) if body else b"") + flup_write(STDIN, rid, b"")
    assert ours == theirs  # same records, same padding
    assert [r[1:] for r in flup_read(ours)] == [r[1:4] for r in split_records(theirs)]
    _, events = app_with(theirs)
    assert events[:2] == [BeginRequest(rid), Params(rid, dict(pairs))]
    assert b"".join(e.data for e in events[2:]) == body


def run_flup_application(
    wsgi_app: Any, send: Callable[[socket.socket], None], **server_options: Any
) -> bytes:
    """Serve one connection with flup's real application-side Connection; return all it wrote."""
    ours, theirs = socket.socketpair()
    ours.settimeout(20)
    server = flup.BaseFCGIServer(wsgi_app, multithreaded=False, **server_options)
    connection = flup.Connection(theirs, None, server, 0)
    thread = threading.Thread(target=connection.run, daemon=True)
    thread.start()
    try:
        send(ours)
        received = bytearray()
        while chunk := ours.recv(65536):
            received += chunk
    finally:
        ours.close()
        thread.join(20)
        theirs.close()
    assert not thread.is_alive()
    return bytes(received)


def echo_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [environ["REQUEST_METHOD"].encode() + b" " + environ["X_BINARY"].encode("latin-1") + b" " + body]


def test_flup_application_serves_our_webserver_side() -> None:
    ws = webserver()
    params = {
        b"REQUEST_METHOD": b"POST",
        b"X_BINARY": bytes(range(128, 256)),
        b"SERVER_NAME": b"x",
        b"SERVER_PORT": b"80",
    }
    body = b"b" * 100_000

    def send(sock: socket.socket) -> None:
        sock.sendall(
            ws.send(BeginRequest(1)) + ws.send(Params(1, params)) + ws.send(Stdin(1, body, end=True))
        )

    reply = run_flup_application(echo_app, send)
    ws.receive_data(reply)
    ws.receive_data(b"")
    events, end = drain(ws)
    assert end is CONNECTION_CLOSED
    assert events[-1] == EndRequest(1, 0, ProtocolStatus.REQUEST_COMPLETE)
    stdout = b"".join(e.data for e in events if isinstance(e, Stdout))
    assert [e for e in events if isinstance(e, Stdout)][-1].end
    head, _, payload = stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"Status: 200 OK\r\n")
    assert payload == b"POST " + bytes(range(128, 256)) + b" " + body


def test_flup_application_refuses_roles_and_multiplexing() -> None:
    ws = webserver()

    def send(sock: socket.socket) -> None:
        # Request 2 arrives while request 1 is active (flup runs a request when its PARAMS end).
        sock.sendall(
            ws.send(BeginRequest(1, Role.AUTHORIZER, keep_conn=True))
            + ws.send(BeginRequest(2))
            + ws.send(GetValues((b"FCGI_MAX_CONNS", b"FCGI_MPXS_CONNS")))
            + ws.send(Params(1, {b"REQUEST_METHOD": b"GET"}))
            + ws.send(Stdin(1, b"", end=True))
        )
        sock.sendall(rec(12, 0))  # an unknown management record
        sock.shutdown(socket.SHUT_WR)

    ws.receive_data(run_flup_application(echo_app, send))
    events, _ = drain(ws)
    assert EndRequest(2, 0, ProtocolStatus.CANT_MPX_CONN) in events
    assert EndRequest(1, 0, ProtocolStatus.UNKNOWN_ROLE) in events  # flup serves RESPONDER only
    assert UnknownType(12) in events
    # flup 1.0.3 looks the bytes names up in a str-keyed capability table, so it answers nothing.
    results = [e for e in events if isinstance(e, GetValuesResult)]
    assert len(results) == 1
    assert set(results[0].values) <= {b"FCGI_MAX_CONNS", b"FCGI_MPXS_CONNS"}


# ---- fuzzing -----------------------------------------------------------------------------------

SLACK = 16


def check_memory(conn: FastCGIConnection, fed: int) -> None:
    assert len(conn._buffer) <= fed
    assert len(conn._buffer._data) <= fed + SLACK
    total = 0
    for request in conn.requests.values():
        held = len(request.params_buffer) + sum(len(k) + len(v) for k, v in request.params.items())
        assert held <= conn.max_params_bytes + 65535 + SLACK
        total += held
    assert total <= fed + SLACK


def run_parser(conn: FastCGIConnection, chunks: list[bytes]) -> None:
    """Feed chunks then EOF; only FastCGIProtocolError may escape next_event; no endless loops."""
    budget = sum(len(c) for c in chunks) + 2 * len(chunks) + 10
    calls = 0
    fed = 0
    for chunk in [*chunks, b""]:
        conn.receive_data(chunk)
        fed += len(chunk)
        check_memory(conn, fed)
        while True:
            calls += 1
            assert calls <= budget, "next_event did not make progress"
            try:
                event = conn.next_event()
            except FastCGIProtocolError as error:
                assert isinstance(error.reply, bytes)
                if error.reply:
                    assert split_records(error.reply)
                check_memory(conn, fed)
                if error.close:
                    return
                continue
            check_memory(conn, fed)
            if conn.our_role == "application":
                respond(conn, event)
            if event is NEED_DATA:
                assert chunk, "NEED_DATA after EOF"
                break
            if event is CONNECTION_CLOSED:
                assert not chunk
                return
            assert event is not None


def respond(app: FastCGIConnection, event: Any) -> None:
    """Answer a request once its input is in (or it was aborted), freeing its id."""
    rid = getattr(event, "request_id", None)
    request = app.requests.get(rid) if rid is not None else None
    if request is None:
        return
    done = isinstance(event, (AbortRequest, Data)) or (
        isinstance(event, Stdin) and request.role != Role.FILTER
    )
    if done and (isinstance(event, AbortRequest) or event.end):
        out = app.send(Stdout(rid, b"Status: 204\r\n\r\n", end=True)) + app.send(EndRequest(rid))
        assert decode_reply(out, rid)[-1] == EndRequest(rid)
        assert rid not in app.requests


def split_at(data: bytes, points: list[int]) -> list[bytes]:
    cuts = sorted({p % (len(data) + 1) for p in points} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(cuts) if b > a]


@FUZZ
@given(
    data=st.binary(max_size=600),
    points=st.lists(st.integers(0, 600), max_size=12),
    side=st.sampled_from(["application", "webserver"]),
    multiplex=st.booleans(),
)
def test_fuzz_random_bytes(data: bytes, points: list[int], side: str, multiplex: bool) -> None:
    if side == "application":
        conn = FastCGIConnection("application", multiplex=multiplex, max_params_bytes=64)
    else:
        conn = webserver(1, 2, 256)
    # Random bytes rarely start with version 1; make half of them do.
    if multiplex and data:
        data = b"\x01" + data[1:]
    run_parser(conn, split_at(data, points))


@st.composite
def application_records(draw: st.DrawFn) -> list[bytes]:
    records: list[bytes] = []
    padding = st.one_of(st.none(), st.integers(0, 40))
    for rid in draw(st.lists(st.sampled_from([1, 2, 3, 256]), min_size=1, max_size=3, unique=True)):
        role = draw(st.sampled_from([1, 1, 2, 3, 3, 0, 4]))  # mostly known roles
        records.append(rec(BEGIN, rid, begin_body(role, draw(st.integers(0, 3))), draw(padding)))
        encoded = encode_name_values(
            draw(st.lists(st.tuples(st.binary(max_size=10), st.binary(max_size=140)), max_size=3))
        )
        for piece in split_at(encoded, draw(st.lists(st.integers(0, 300), max_size=3))):
            records.append(rec(PARAMS, rid, piece, draw(padding)))
        records.append(rec(PARAMS, rid, b"", draw(padding)))
        for stream in (STDIN, DATA) if role == 3 else (STDIN,):
            for piece in draw(st.lists(st.binary(min_size=1, max_size=30), max_size=2)):
                records.append(rec(stream, rid, piece, draw(padding)))
            records.append(rec(stream, rid, b"", draw(padding)))
        if draw(st.booleans()):
            records.insert(draw(st.integers(0, len(records))), rec(ABORT, rid))
    if draw(st.booleans()):
        records.append(rec(GET_VALUES, 0, encode_name_values([(b"FCGI_MAX_CONNS", b"")])))
    if draw(st.booleans()):
        records.append(rec(draw(st.integers(0, 255)), draw(st.integers(0, 3)), draw(st.binary(max_size=9))))
    return records


@st.composite
def webserver_records(draw: st.DrawFn) -> list[bytes]:
    records: list[bytes] = []
    for rid in (1, 2, 256):
        for stream in (STDOUT, STDERR):
            for piece in draw(st.lists(st.binary(min_size=1, max_size=30), max_size=2)):
                records.append(rec(stream, rid, piece))
            records.append(rec(stream, rid))
        records.append(
            rec(
                END,
                rid,
                end_body(draw(st.integers(0, 2**32 - 1)), draw(st.sampled_from([0, 0, 0, 1, 2, 3, 4]))),
            )
        )
    records.append(rec(GET_VALUES_RESULT, 0, encode_name_values([(b"FCGI_MAX_REQS", b"1")])))
    records.append(rec(UNKNOWN, 0, bytes([draw(st.integers(0, 255))]) + bytes(7)))
    return records


@st.composite
def mutated_stream(draw: st.DrawFn, records_strategy: Any) -> tuple[list[bytes], int]:
    records = draw(records_strategy)
    for _ in range(draw(st.integers(0, 4))):
        action = draw(st.sampled_from(["duplicate", "swap", "drop"]))
        i = draw(st.integers(0, len(records) - 1))
        j = draw(st.integers(0, len(records) - 1))
        if action == "duplicate":
            records.insert(j, records[i])
        elif action == "swap":
            records[i], records[j] = records[j], records[i]
        elif len(records) > 1:
            del records[i]
    data = bytearray(b"".join(records))
    for _ in range(draw(st.integers(0, 3))):
        position = draw(st.integers(0, len(data) - 1))
        data[position] ^= 1 << draw(st.integers(0, 7))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    points = draw(st.lists(st.integers(0, len(data)), max_size=10))
    return split_at(bytes(data), points), draw(st.sampled_from([32, 200, 1 << 20]))


@FUZZ
@given(case=mutated_stream(application_records()), multiplex=st.booleans())
def test_fuzz_mutated_application_streams(case: tuple[list[bytes], int], multiplex: bool) -> None:
    chunks, limit = case
    run_parser(FastCGIConnection("application", multiplex=multiplex, max_params_bytes=limit), chunks)


@FUZZ
@given(case=mutated_stream(webserver_records()))
def test_fuzz_mutated_webserver_streams(case: tuple[list[bytes], int]) -> None:
    run_parser(webserver(1, 2, 256), case[0])


def test_buffer_is_compacted_while_streaming() -> None:
    app, _ = app_with(rec(BEGIN, 1, begin_body(1)), rec(PARAMS, 1))
    record = rec(STDIN, 1, b"s" * 65535)
    received = 0
    for _ in range(40):  # 2.6 MB through one connection
        for start in range(0, len(record), 10_000):
            app.receive_data(record[start : start + 10_000])
            for event in drain(app)[0]:
                received += len(event.data)
            assert len(app._buffer._data) <= 2 * 65536 + len(record)
    assert received == 40 * 65535


def test_params_memory_is_bounded_by_the_limit() -> None:
    # A pair that announces 2**31 - 1 bytes never completes: the limit stops it, not memory.
    app = FastCGIConnection("application", max_params_bytes=200_000)
    app.receive_data(rec(BEGIN, 1, begin_body(1)) + rec(PARAMS, 1, b"\x01\xff\xff\xff\xffN"))
    drain(app)
    chunk = rec(PARAMS, 1, b"v" * 65535)
    with pytest.raises(FastCGIProtocolError, match="limit"):
        for _ in range(10):
            app.receive_data(chunk)
            drain(app)
            assert len(app.requests[1].params_buffer) <= 200_000
