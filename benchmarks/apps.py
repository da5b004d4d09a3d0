"""The one app file every server in `benchmarks/server.py` serves (ours and every rival).

- `asgi_app`: hello (`200`, `Content-Type: text/plain`, `Content-Length: 12`, `Hello, world`).
- `asgi_json`: a JSON document of about 10 KB, encoded once at import (the scenario measures how
  a server carries a 10 KB body, not how fast `json.dumps` runs).
- `asgi_echo`: reads the whole request body and sends it back (`application/octet-stream`).
- `wsgi_app`: hello, as a WSGI app returning a one-element list.

The ASGI apps answer the lifespan protocol, so servers that run it (lifespan "auto") neither
log a failure nor skip it differently from one another. Only the standard library is imported.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

HELLO = b"Hello, world"
HELLO_HEADERS = [(b"content-type", b"text/plain"), (b"content-length", b"12")]


def _json_document() -> bytes:
    items = [
        {
            "id": i,
            "name": f"item-{i:04d}",
            "price": round(9.99 + i * 0.25, 2),
            "in_stock": i % 3 != 0,
            "tags": ["alpha", "beta", "gamma"][: 1 + i % 3],
        }
        for i in range(120)
    ]
    return json.dumps({"count": len(items), "items": items}, separators=(",", ":")).encode()


JSON_BODY = _json_document()
JSON_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(JSON_BODY)).encode()),
]


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def asgi_app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    await send({"type": "http.response.start", "status": 200, "headers": HELLO_HEADERS})
    await send({"type": "http.response.body", "body": HELLO})


async def asgi_json(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    await send({"type": "http.response.start", "status": 200, "headers": JSON_HEADERS})
    await send({"type": "http.response.body", "body": JSON_BODY})


async def asgi_echo(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":  # http.disconnect: the client went away.
            return
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    headers = [
        (b"content-type", b"application/octet-stream"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "12")])
    return [HELLO]
