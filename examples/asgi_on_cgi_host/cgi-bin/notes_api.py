"""A small JSON API in the style of FastAPI, written with Starlette (an ASGI app).

On a CGI host it runs once per request: `app.cgi` imports it, `run_cgi` runs the lifespan
startup, the one request and the lifespan shutdown, and the process exits. Nothing survives
between requests, so the items below are fixed and a POST only validates and echoes.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

ITEMS = {1: {"name": "hammer", "price": 12.5}, 2: {"name": "saw", "price": 24.0}}


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
    yield {"pid": os.getpid()}  # Runs in every CGI process, around its one request.


async def index(request: Request) -> JSONResponse:
    return JSONResponse(
        {
            "service": "notes_api",
            "pid": request.state.pid,  # Set by the lifespan startup of this process.
            "root_path": request.scope["root_path"],  # The script's URL: SCRIPT_NAME.
            "path": request.scope["path"],
        }
    )


async def read_item(request: Request) -> JSONResponse:
    item_id = request.path_params["item_id"]  # An int: the route's {item_id:int} converted it.
    if item_id not in ITEMS:
        raise HTTPException(404, f"no item {item_id}")
    return JSONResponse({"id": item_id, **ITEMS[item_id], "q": request.query_params.get("q")})


async def create_item(request: Request) -> JSONResponse:
    try:
        data = await request.json()
    except ValueError:
        return JSONResponse({"detail": "the body is not JSON"}, status_code=400)
    errors = []
    if not isinstance(data, dict):
        errors.append("the body must be a JSON object")
    else:
        if not isinstance(data.get("name"), str) or not data["name"]:
            errors.append("name: a non-empty string is required")
        if not isinstance(data.get("price"), (int, float)) or isinstance(data.get("price"), bool):
            errors.append("price: a number is required")
    if errors:
        return JSONResponse({"detail": errors}, status_code=422)
    item = {"id": max(ITEMS) + 1, "name": data["name"], "price": data["price"]}
    location = str(request.url_for("item", item_id=item["id"]))
    return JSONResponse(item, status_code=201, headers={"location": location})


async def greet(request: Request) -> JSONResponse:
    return JSONResponse({"greeting": f"Hello, {request.path_params['name']}!"})


async def not_found(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)


app = Starlette(
    routes=[
        Route("/", index),
        Route("/items/{item_id:int}", read_item, name="item"),
        Route("/items", create_item, methods=["POST"]),
        Route("/users/{name}/greeting", greet),
    ],
    exception_handlers={HTTPException: not_found},
    lifespan=lifespan,
)
