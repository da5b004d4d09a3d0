"""A plain ASGI app (no framework) for the built-in server: lifespan, JSON, streaming, WebSocket.

Run from the repository root: .venv/bin/python -m bridges serve examples/asgi_hello/app.py:app --port 8000
"""

import asyncio
import json
import os
import sys
import time
from typing import Any

Scope = dict[str, Any]


async def app(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await lifespan(scope, receive, send)
    elif scope["type"] == "http":
        await http(scope, receive, send)
    elif scope["type"] == "websocket":
        await websocket(scope, receive, send)


async def lifespan(scope: Scope, receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            # What the app puts in scope["state"] here, every request gets a copy of.
            scope["state"]["started_at"] = time.time()
            print(f"lifespan startup in pid {os.getpid()}", file=sys.stderr, flush=True)
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            print(f"lifespan shutdown in pid {os.getpid()}", file=sys.stderr, flush=True)
            await send({"type": "lifespan.shutdown.complete"})
            return


async def read_body(receive: Any) -> bytes:
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return body
        body += message.get("body", b"")
        if not message.get("more_body", False):
            return body


async def respond(send: Any, status: int, body: bytes, content_type: bytes) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def route(scope: Scope) -> str:
    """The path inside the app: scope["path"] holds the mount point (`--root-path`) too."""
    path, root = scope["path"], scope["root_path"]
    if root and path.startswith(root):
        return path[len(root) :] or "/"
    return path


async def http(scope: Scope, receive: Any, send: Any) -> None:
    path = route(scope)
    if path == "/":
        await respond(send, 200, b"Hello from a plain ASGI app on bridges\n", b"text/plain; charset=utf-8")
    elif path == "/json":
        body = await read_body(receive)
        client = scope.get("client")
        info = {
            "pid": os.getpid(),
            "method": scope["method"],
            "path": scope["path"],
            "query": scope["query_string"].decode("latin-1"),
            "client": client[0] if client else None,
            "scheme": scope["scheme"],
            "root_path": scope["root_path"],
            "body_length": len(body),
            "lifespan": "started_at" in scope.get("state", {}),
        }
        await respond(send, 200, json.dumps(info).encode(), b"application/json")
    elif path == "/stream":
        # No Content-Length: the server sends the body chunked, each piece as soon as it is sent.
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        for i in range(5):
            await send({"type": "http.response.body", "body": f"chunk {i}\n".encode(), "more_body": True})
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b""})
    else:
        await respond(send, 404, b"Not Found\n", b"text/plain; charset=utf-8")


async def websocket(scope: Scope, receive: Any, send: Any) -> None:
    if route(scope) != "/ws":
        await send({"type": "websocket.close", "code": 1008})  # Refused: the client gets a 403.
        return
    message = await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": "echo: " + message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})
