"""Shared by the apps that front a CGI-speaking backend (CGIToASGI, FastCGIToASGI).

`ResponseRelay` turns the backend's output (a CGI response, RFC 3875 section 6) into ASGI
response messages as it arrives, and hands back a local redirect's location instead of sending
it. `redirected_scope` builds the scope of the internal request a local redirect asks for.
`send_plain` answers a gateway error (502, 503, 504...) with a short text body. `SpooledBody`
reads a body of undeclared length (chunked) whole, so its length can be declared: CGI scripts
and FastCGI responders read exactly CONTENT_LENGTH bytes (RFC 3875 section 4.1.2).
"""

from __future__ import annotations

from ._types import Message, Receive, Scope, Send
from .cgi_response import NEED_DATA, BodyData, CGIResponseParser, EndOfResponse, ResponseHead

__all__ = [
    "BodyTooLarge",
    "ClientGone",
    "ResponseRelay",
    "SpooledBody",
    "has_undeclared_body",
    "redirected_scope",
    "send_plain",
]

MAX_LOCAL_REDIRECTS = 5
_READ_SIZE = 64 * 1024
_BODY_HEADERS = (b"content-length", b"content-type", b"transfer-encoding")
_REASONS = {
    400: b"Bad Request\n",
    403: b"Forbidden\n",
    404: b"Not Found\n",
    413: b"Content Too Large\n",
    502: b"Bad Gateway\n",
    503: b"Service Unavailable\n",
    504: b"Gateway Timeout\n",
}


class ClientGone(Exception):
    """The client went away while the response was being relayed (send raised OSError)."""


class ResponseRelay:
    """Feed it the backend's output; it sends the ASGI response as soon as each part is complete."""

    def __init__(self, send: Send, parser: CGIResponseParser | None = None) -> None:
        self.send = send
        self.parser = parser if parser is not None else CGIResponseParser()
        self.got_output = False
        self.started = False
        self.ended = False
        self.client_gone = False

    async def feed(self, data: bytes, end: bool = False) -> bytes | None:
        """Parse `data` (b"" at the end of the output, or `end`); return a local redirect's location.

        The last body chunk goes out with the end of the response, in one message.
        Raises CGIResponseError for malformed output and ClientGone when sending fails.
        """
        if self.ended:
            return None
        if data:
            self.got_output = True
        parser = self.parser
        parser.receive_data(data)
        if end and data:
            parser.receive_data(b"")
        pending: bytes | None = None  # A body chunk not sent yet: is it the last one?
        while True:
            event = parser.next_event()
            if event is NEED_DATA:
                if pending is not None:
                    await self._send({"type": "http.response.body", "body": pending, "more_body": True})
                return None
            if isinstance(event, ResponseHead):
                if event.kind == "local-redirect":
                    return event.location
                self.started = True
                await self._send(
                    {"type": "http.response.start", "status": event.status, "headers": event.headers}
                )
            elif isinstance(event, BodyData):
                if pending is not None:
                    await self._send({"type": "http.response.body", "body": pending, "more_body": True})
                pending = event.data
            elif isinstance(event, EndOfResponse):
                self.ended = True
                await self._send({"type": "http.response.body", "body": pending or b"", "more_body": False})
                return None

    async def _send(self, message: Message) -> None:
        try:
            await self.send(message)
        except OSError:
            self.client_gone = True
            raise ClientGone from None


class SpooledBody:
    """A request body of unknown length, read whole (memory, then a temporary file) to count it."""

    def __init__(self, receive: Receive) -> None:
        import tempfile

        self.file = tempfile.SpooledTemporaryFile(max_size=1024 * 1024)  # noqa: SIM115
        self.size = 0
        self.done = False
        self.client_receive = receive  # After the spool: what the client does next (disconnect).

    @classmethod
    async def read(cls, receive: Receive, limit: int) -> SpooledBody:
        body = cls(receive)
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                body.close()
                raise ClientGone
            chunk = message.get("body", b"")
            body.size += len(chunk)
            if body.size > limit:
                body.close()
                raise BodyTooLarge
            body.file.write(chunk)
            if not message.get("more_body", False):
                body.file.seek(0)
                return body

    async def receive(self) -> Message:
        if self.done:
            return await self.client_receive()
        chunk = self.file.read(_READ_SIZE)
        self.done = not chunk
        return {"type": "http.request", "body": chunk, "more_body": bool(chunk)}

    def close(self) -> None:
        self.file.close()


class BodyTooLarge(Exception):
    """A body without a declared length was larger than the spool may hold (answer 413)."""


def has_undeclared_body(scope: Scope) -> bool:
    """A request whose body has no declared length (chunked): it must be spooled to be counted."""
    has_length = False
    chunked = False
    for name, _ in scope["headers"]:
        if name == b"content-length":
            has_length = True
        elif name == b"transfer-encoding":
            chunked = True
    return chunked and not has_length


def redirected_scope(scope: Scope, location: bytes) -> Scope:
    """The scope of the internal GET a local redirect (RFC 3875 section 6.2.2) asks for."""
    from urllib.parse import unquote_to_bytes

    path, _, query = location.partition(b"?")
    redirected = dict(scope)
    redirected.update(
        method="GET",
        path=unquote_to_bytes(path).decode("utf-8", "replace"),
        raw_path=path,
        query_string=query,
        headers=[(name, value) for name, value in scope["headers"] if name not in _BODY_HEADERS],
    )
    return redirected


async def send_plain(send: Send, status: int) -> None:
    """Answer `status` with a one-line text body; a client already gone is ignored."""
    text = _REASONS.get(status, b"Error\n")
    try:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", b"%d" % len(text)),
                ],
            }
        )
        await send({"type": "http.response.body", "body": text})
    except (OSError, RuntimeError):
        pass
