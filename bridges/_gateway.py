"""Shared by the apps that front a CGI-speaking backend (CGIToASGI, FastCGIToASGI).

`ResponseRelay` turns the backend's output (a CGI response, RFC 3875 section 6) into ASGI
response messages as it arrives, and hands back a local redirect's location instead of sending
it. `redirected_scope` builds the scope of the internal request a local redirect asks for.
`send_plain` answers a gateway error (502, 503, 504...) with a short text body.
"""

from __future__ import annotations

from ._types import Message, Scope, Send
from .cgi_response import NEED_DATA, BodyData, CGIResponseParser, EndOfResponse, ResponseHead

__all__ = ["ClientGone", "ResponseRelay", "redirected_scope", "send_plain"]

MAX_LOCAL_REDIRECTS = 5
_BODY_HEADERS = (b"content-length", b"content-type", b"transfer-encoding")
_REASONS = {
    400: b"Bad Request\n",
    403: b"Forbidden\n",
    404: b"Not Found\n",
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

    async def feed(self, data: bytes) -> bytes | None:
        """Parse `data` (b"" at the end of the output); return a local redirect's location.

        Raises CGIResponseError for malformed output and ClientGone when sending fails.
        """
        if self.ended:
            return None
        if data:
            self.got_output = True
        parser = self.parser
        parser.receive_data(data)
        while True:
            event = parser.next_event()
            if event is NEED_DATA:
                return None
            if isinstance(event, ResponseHead):
                if event.kind == "local-redirect":
                    return event.location
                self.started = True
                await self._send(
                    {"type": "http.response.start", "status": event.status, "headers": event.headers}
                )
            elif isinstance(event, BodyData):
                await self._send({"type": "http.response.body", "body": event.data, "more_body": True})
            elif isinstance(event, EndOfResponse):
                self.ended = True
                await self._send({"type": "http.response.body", "body": b"", "more_body": False})
                return None

    async def _send(self, message: Message) -> None:
        try:
            await self.send(message)
        except OSError:
            self.client_gone = True
            raise ClientGone from None


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
