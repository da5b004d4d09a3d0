"""A Starlette (ASGI) app served by gunicorn's sync workers through bridges.ASGIToWSGI.

Run: .venv/bin/gunicorn -w 2 -k sync --chdir examples/starlette_on_gunicorn -b 127.0.0.1:8001 app:application
"""

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route

from bridges import ASGIToWSGI


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
    # Runs once in each worker process, before its first request; the part after `yield` runs
    # when that worker exits.
    print(f"lifespan startup in pid {os.getpid()}", file=sys.stderr, flush=True)
    yield {"greeting": "Hello from Starlette", "started_in": os.getpid()}
    print(f"lifespan shutdown in pid {os.getpid()}", file=sys.stderr, flush=True)


async def hello(request: Request) -> PlainTextResponse:
    state = request.state
    return PlainTextResponse(
        f"{state.greeting}, served over WSGI by bridges.ASGIToWSGI (pid {state.started_in})\n"
    )


async def echo(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse({"length": len(body), "root_path": request.scope.get("root_path", "")})


async def stream(request: Request) -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(5):
            yield f"chunk {i}\n".encode()

    return StreamingResponse(chunks(), media_type="text/plain")


asgi_app = Starlette(
    routes=[
        Route("/", hello),
        Route("/echo", echo, methods=["POST"]),
        Route("/stream", stream),
    ],
    lifespan=lifespan,
)

application = ASGIToWSGI(asgi_app)
