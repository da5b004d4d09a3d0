"""A Flask (WSGI) app served directly by the built-in server with `--mode wsgi`.

Run from the repository root:
.venv/bin/python -m bridges serve examples/flask_wsgi_mode/app.py:app --mode wsgi --port 8000
"""

import os
import threading
from collections.abc import Iterator

from flask import Flask, Response, request

app = Flask(__name__)


@app.get("/")
def hello() -> str:
    return "Hello from Flask, served by the bridges built-in server in WSGI mode\n"


@app.post("/upload")
def upload() -> dict[str, object]:
    # request.get_data() reads wsgi.input to the end: a chunked upload (no Content-Length) too.
    data = request.get_data()
    return {
        "length": len(data),
        "script_name": request.script_root,
        "remote_addr": request.remote_addr,
        "thread": threading.current_thread().name,
        "pid": os.getpid(),
    }


@app.get("/stream")
def stream() -> Response:
    def lines() -> Iterator[str]:
        for i in range(5):
            yield f"line {i}\n"

    return Response(lines(), mimetype="text/plain")
