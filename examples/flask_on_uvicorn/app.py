"""A Flask app served by uvicorn through bridges.WSGIToASGI.

Run: .venv/bin/python -m uvicorn --app-dir examples/flask_on_uvicorn app:app --port 8000
"""

from collections.abc import Iterator

from flask import Flask, Response, request

from bridges import WSGIToASGI

flask_app = Flask(__name__)


@flask_app.get("/")
def hello() -> str:
    return "Hello from Flask, served over ASGI by bridges.WSGIToASGI\n"


@flask_app.post("/echo")
def echo() -> dict[str, object]:
    data = request.get_data()
    return {"length": len(data), "path": request.path, "root": request.script_root}


@flask_app.get("/stream")
def stream() -> Response:
    def chunks() -> Iterator[str]:
        for i in range(5):
            yield f"chunk {i}\n"

    return Response(chunks(), mimetype="text/plain")


app = WSGIToASGI(flask_app)
