"""The CGI response parser (RFC 3875 section 6): every response type, tolerances and refusals.

Each valid case is parsed from the whole output, one byte at a time, and split in two at every
point, and must give the same events every time.
"""

from __future__ import annotations

import pytest

from bridges.cgi_response import (
    NEED_DATA,
    BodyData,
    CGIResponseError,
    CGIResponseParser,
    EndOfResponse,
    ResponseHead,
)

pytestmark = pytest.mark.timeout(30)


def parse(chunks: list[bytes], nph: bool = False) -> tuple[ResponseHead, bytes]:
    parser = CGIResponseParser(nph=nph)
    head = None
    body = b""
    ended = False
    for chunk in [*(c for c in chunks if c), b""]:  # b"" only once: it means end of output.
        parser.receive_data(chunk)
        while True:
            event = parser.next_event()
            if event is NEED_DATA:
                break
            if isinstance(event, ResponseHead):
                assert head is None
                head = event
            elif isinstance(event, BodyData):
                body += event.data
            else:
                assert isinstance(event, EndOfResponse)
                ended = True
    assert head is not None and ended
    return head, body


def every_split(output: bytes, nph: bool = False) -> tuple[ResponseHead, bytes]:
    whole = parse([output], nph)
    assert parse([bytes([b]) for b in output], nph) == whole
    for cut in range(len(output) + 1):
        assert parse([output[:cut], output[cut:]], nph) == whole
    return whole


VALID = [
    (
        "document-crlf",
        b"Content-Type: text/plain\r\nX-A: 1\r\n\r\nhello",
        ResponseHead("document", 200, [(b"content-type", b"text/plain"), (b"x-a", b"1")]),
        b"hello",
    ),
    (
        "document-bare-lf",
        b"Content-Type: text/html\nStatus: 404 Not Found\n\n<p>gone",
        ResponseHead("document", 404, [(b"content-type", b"text/html")]),
        b"<p>gone",
    ),
    (
        "status-without-reason",
        b"Status: 201\r\nContent-Type: text/plain\r\n\r\n",
        ResponseHead("document", 201, [(b"content-type", b"text/plain")]),
        b"",
    ),
    (
        "mixed-line-ends-and-spaces",
        b"content-type:text/plain  \nX-B:  two words\r\n\nbody\r\n\r\nwith blank lines",
        ResponseHead("document", 200, [(b"content-type", b"text/plain"), (b"x-b", b"two words")]),
        b"body\r\n\r\nwith blank lines",
    ),
    (
        "local-redirect",
        b"Location: /other/page?x=1\r\n\r\n",
        ResponseHead("local-redirect", 0, [(b"location", b"/other/page?x=1")], b"/other/page?x=1"),
        b"",
    ),
    (
        "client-redirect",
        b"Location: https://example.com/\r\n\r\n",
        ResponseHead(
            "client-redirect", 302, [(b"location", b"https://example.com/")], b"https://example.com/"
        ),
        b"",
    ),
    (
        "client-redirect-document",
        b"Location: http://example.com/new\r\nStatus: 301 Moved\r\nContent-Type: text/html\r\n\r\nmoved",
        ResponseHead(
            "client-redirect-document",
            301,
            [(b"location", b"http://example.com/new"), (b"content-type", b"text/html")],
            b"http://example.com/new",
        ),
        b"moved",
    ),
    (
        "hop-by-hop-dropped",
        b"Content-Type: a/b\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\nx",
        ResponseHead("document", 200, [(b"content-type", b"a/b")]),
        b"x",
    ),
    (
        "binary-body",
        b"Content-Type: application/octet-stream\r\n\r\n\x00\xff\r\n\n",
        ResponseHead("document", 200, [(b"content-type", b"application/octet-stream")]),
        b"\x00\xff\r\n\n",
    ),
]


@pytest.mark.parametrize("output, head, body", [case[1:] for case in VALID], ids=[c[0] for c in VALID])
def test_valid_responses(output: bytes, head: ResponseHead, body: bytes) -> None:
    assert every_split(output) == (head, body)


def test_nph_status_line() -> None:
    output = b"HTTP/1.1 418 I'm a teapot\r\nContent-Type: text/plain\r\n\r\nshort and stout"
    head, body = every_split(output, nph=True)
    assert head == ResponseHead("document", 418, [(b"content-type", b"text/plain")])
    assert body == b"short and stout"


INVALID = [
    ("no-blank-line", b"Content-Type: text/plain\r\nhello"),
    ("empty-output", b""),
    ("no-fields", b"\r\nbody"),
    ("not-a-header", b"hello world\r\n\r\n"),
    ("space-before-colon", b"Content-Type : text/plain\r\n\r\n"),
    ("obs-fold", b"Content-Type: text/plain\r\n continued\r\n\r\n"),
    ("cr-injection", b"Content-Type: text/plain\rSet-Cookie: x=1\r\n\r\n"),
    ("nul", b"X-A: a\x00b\r\nContent-Type: t/p\r\n\r\n"),
    ("bad-status", b"Status: abc\r\n\r\n"),
    ("two-digit-status", b"Status: 20 OK\r\n\r\n"),
    ("double-status", b"Status: 200 OK\r\nStatus: 404 Not Found\r\n\r\n"),
    ("local-redirect-with-fields", b"Location: /x\r\nContent-Type: text/plain\r\n\r\n"),
    ("local-redirect-with-body", b"Location: /x\r\n\r\nbody"),
]


@pytest.mark.parametrize("output", [case[1] for case in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_responses_are_502(output: bytes) -> None:
    with pytest.raises(CGIResponseError) as info:
        parse([output])
    assert info.value.status_code == 502


def test_nph_without_status_line_is_refused() -> None:
    with pytest.raises(CGIResponseError):
        parse([b"Content-Type: text/plain\r\n\r\n"], nph=True)


def test_header_section_limit_applies_before_the_blank_line() -> None:
    parser = CGIResponseParser(max_header_bytes=100)
    parser.receive_data(b"X-Long: " + b"a" * 200)
    with pytest.raises(CGIResponseError, match="too large"):
        parser.next_event()


def test_body_streams_as_it_arrives() -> None:
    parser = CGIResponseParser()
    parser.receive_data(b"Content-Type: text/plain\r\n\r\nfirst")
    assert isinstance(parser.next_event(), ResponseHead)
    assert parser.next_event() == BodyData(b"first")
    assert parser.next_event() is NEED_DATA
    parser.receive_data(b"second")
    assert parser.next_event() == BodyData(b"second")
    parser.receive_data(b"")
    assert parser.next_event() == EndOfResponse()
    assert parser.next_event() is NEED_DATA
    assert parser.body_bytes == 11
