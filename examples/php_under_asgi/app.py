"""A PHP app (run by php-fpm) mounted at /legacy inside a Starlette app, on bridges' server.

Run php-fpm with its pool listening on the socket below, then, from the repository root:
    PHP_FPM=unix:/run/php/php-fpm.sock .venv/bin/python -m bridges serve examples/php_under_asgi/app.py:app
"""

import os
from pathlib import Path

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from bridges import FastCGIToASGI

PHP_ROOT = Path(__file__).parent / "php"
php = FastCGIToASGI(
    os.environ.get("PHP_FPM", "unix:/run/php/php-fpm.sock"),
    document_root=str(PHP_ROOT),  # SCRIPT_FILENAME = document root + the path under /legacy
    index="index.php",
)


async def home(request: object) -> JSONResponse:
    return JSONResponse({"new": "the modern part", "legacy": "/legacy/"})


app = Starlette(routes=[Route("/", home), Mount("/legacy", app=php)])
