"""A Flask app served by uvicorn through bridges.WSGIToASGI.

Run: .venv/bin/python -m uvicorn --app-dir examples/flask_on_uvicorn app:app --port 8000
"""

from flask import Flask, request

from bridges import WSGIToASGI

flask_app = Flask(__name__)


@flask_app.get("/")
def hello() -> str:
    return "Hello from Flask, served over ASGI by bridges.WSGIToASGI\n"


@flask_app.post("/echo")
def echo() -> dict[str, object]:
    data = request.get_data()
    return {"length": len(data), "path": request.path, "root": request.script_root}


app = WSGIToASGI(flask_app)
