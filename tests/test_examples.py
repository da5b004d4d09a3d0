"""Run each example for real, with the command its README gives, and talk HTTP to it.

Each server runs as a subprocess on a free port of 127.0.0.1. The only change to the README's
command line is the port. The test waits (bounded) until the server answers, makes real
requests with httpx, then stops the server by its PID: terminate, wait, then kill.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
START_TIMEOUT = 15.0
STREAM_LINES = "".join(f"chunk {i}\n" for i in range(5))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def readme_command(example: str) -> list[str]:
    """The command line in the example's README: the first `.venv/bin/...` line of a sh block."""
    text = (EXAMPLES / example / "README.md").read_text(encoding="utf-8")
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL):
        for line in block.splitlines():
            if line.startswith(".venv/bin/"):
                return shlex.split(line)
    raise AssertionError(f"no .venv/bin command in examples/{example}/README.md")


def with_port(argv: list[str], port: int) -> list[str]:
    """The same command on another port (uvicorn `--port N`, gunicorn `-b 127.0.0.1:N`)."""
    argv = list(argv)
    if "--port" in argv:
        argv[argv.index("--port") + 1] = str(port)
    elif "-b" in argv:
        host = argv[argv.index("-b") + 1].rsplit(":", 1)[0]
        assert host == "127.0.0.1", host
        argv[argv.index("-b") + 1] = f"{host}:{port}"
    else:
        raise AssertionError(f"no port option in {argv}")
    return argv


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    origin: str  # http://127.0.0.1:PORT
    base_url: str  # origin + the mount point, if any
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def wait_until_ready(server: Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"server exited with {server.process.returncode}:\n{server.output()}")
        try:
            httpx.get(server.origin + "/", timeout=1.0)  # Any HTTP answer means it is up.
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"server did not answer within {START_TIMEOUT}s:\n{server.output()}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a server we started: SIGTERM, wait, then SIGKILL (its own process group)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    try:
        # gunicorn's workers, should any outlive their master (the group is the one we created).
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("example-logs")


def run_server(
    argv: list[str], port: int, log: Path, env: dict[str, str] | None = None, mount: str = ""
) -> Iterator[Server]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    origin = f"http://127.0.0.1:{port}"
    server = Server(process, origin, origin + mount, log)
    try:
        wait_until_ready(server)
        yield server
    finally:
        stop(process)


def chunked_body(total: int, piece: int = 10_000) -> Iterator[bytes]:
    """A generator: httpx sends it with Transfer-Encoding: chunked and no Content-Length."""
    sent = 0
    while sent < total:
        size = min(piece, total - sent)
        yield bytes([sent % 251]) * size
        sent += size


# ---- Flask on uvicorn (WSGIToASGI) ---------------------------------------------------------------


@pytest.fixture(scope="module", params=["as-written", "root-path"])
def flask_server(request: pytest.FixtureRequest, logs: Path) -> Iterator[Server]:
    port = free_port()
    argv = with_port(readme_command("flask_on_uvicorn"), port)
    if request.param == "root-path":
        argv += ["--root-path", "/prefix"]
    yield from run_server(argv, port, logs / f"uvicorn-{request.param}.log")


def test_flask_readme_command_is_the_documented_one() -> None:
    assert readme_command("flask_on_uvicorn") == shlex.split(
        ".venv/bin/python -m uvicorn --app-dir examples/flask_on_uvicorn app:app --port 8000"
    )


def test_flask_hello(flask_server: Server) -> None:
    response = httpx.get(flask_server.base_url + "/", timeout=10)
    assert response.status_code == 200
    assert response.text == "Hello from Flask, served over ASGI by bridges.WSGIToASGI\n"
    assert response.headers["content-type"].startswith("text/html")


def test_flask_echo(flask_server: Server, request: pytest.FixtureRequest) -> None:
    body = os.urandom(100_000)
    response = httpx.post(flask_server.base_url + "/echo", content=body, timeout=10)
    assert response.status_code == 200
    root = "/prefix" if "root-path" in request.node.callspec.id else ""
    assert response.json() == {"length": len(body), "path": "/echo", "root": root}


def test_flask_chunked_upload(flask_server: Server) -> None:
    total = 300_001  # More than WSGIToASGI's 256 KiB read-ahead window.
    with httpx.Client(timeout=10) as client:
        sent = client.build_request("POST", flask_server.base_url + "/echo", content=chunked_body(total))
        assert sent.headers.get("transfer-encoding") == "chunked" and "content-length" not in sent.headers
        response = client.send(sent)
    assert response.status_code == 200
    assert response.json()["length"] == total


def test_flask_stream(flask_server: Server) -> None:
    with httpx.stream("GET", flask_server.base_url + "/stream", timeout=10) as response:
        assert response.status_code == 200
        # A generator response has no Content-Length: uvicorn streams it chunked.
        assert response.headers.get("transfer-encoding") == "chunked"
        received = b"".join(response.iter_bytes())
    assert received.decode() == STREAM_LINES


def test_flask_many_requests(flask_server: Server) -> None:
    with httpx.Client(base_url=flask_server.base_url, timeout=10) as client:
        for i in range(50):
            assert client.post("/echo", content=b"x" * i).json()["length"] == i


# ---- Starlette on gunicorn (ASGIToWSGI) ----------------------------------------------------------


@pytest.fixture(scope="module", params=["as-written", "preload", "script-name"])
def starlette_server(request: pytest.FixtureRequest, logs: Path) -> Iterator[Server]:
    port = free_port()
    argv = with_port(readme_command("starlette_on_gunicorn"), port)
    env = {}
    mount = ""
    if request.param == "preload":
        argv.insert(1, "--preload")  # Import the app in the master, before forking.
    elif request.param == "script-name":
        # gunicorn takes SCRIPT_NAME from its environment and serves the paths under it.
        env["SCRIPT_NAME"] = mount = "/prefix"
    yield from run_server(argv, port, logs / f"gunicorn-{request.param}.log", env, mount)


def test_starlette_readme_command_is_the_documented_one() -> None:
    assert readme_command("starlette_on_gunicorn") == shlex.split(
        ".venv/bin/gunicorn -w 2 -k sync --chdir examples/starlette_on_gunicorn"
        " -b 127.0.0.1:8001 app:application"
    )


def _pid_of(text: str) -> int:
    match = re.search(r"\(pid (\d+)\)", text)
    assert match, text
    return int(match.group(1))


def test_starlette_hello_uses_lifespan_state_in_each_worker(starlette_server: Server) -> None:
    master = starlette_server.process.pid
    pids = set()
    for _ in range(20):  # A new connection each time: the requests spread over the workers.
        response = httpx.get(starlette_server.base_url + "/", timeout=10)
        assert response.status_code == 200
        assert response.text.startswith("Hello from Starlette, served over WSGI by bridges.ASGIToWSGI")
        pids.add(_pid_of(response.text))
    # The lifespan ran in the worker that answered, not in the gunicorn master (even with --preload).
    assert master not in pids


def test_starlette_echo(starlette_server: Server, request: pytest.FixtureRequest) -> None:
    body = os.urandom(200_000)
    response = httpx.post(starlette_server.base_url + "/echo", content=body, timeout=10)
    assert response.status_code == 200
    root = "/prefix" if "script-name" in request.node.callspec.id else ""
    assert response.json() == {"length": len(body), "root_path": root}


def test_starlette_chunked_upload(starlette_server: Server) -> None:
    total = 300_001  # More than ASGIToWSGI's 64 KiB reads and 256 KiB window.
    response = httpx.post(starlette_server.base_url + "/echo", content=chunked_body(total), timeout=10)
    assert response.status_code == 200
    assert response.json()["length"] == total


def test_starlette_stream(starlette_server: Server) -> None:
    with httpx.stream("GET", starlette_server.base_url + "/stream", timeout=10) as response:
        assert response.status_code == 200
        assert "content-length" not in response.headers
        received = b"".join(response.iter_bytes())
    assert received.decode() == STREAM_LINES


def test_starlette_unknown_route_and_method(starlette_server: Server) -> None:
    assert httpx.get(starlette_server.base_url + "/missing", timeout=10).status_code == 404
    assert httpx.get(starlette_server.base_url + "/echo", timeout=10).status_code == 405


def test_starlette_json_body_roundtrip(starlette_server: Server) -> None:
    payload = json.dumps({"k": "v" * 1000}).encode()
    response = httpx.post(
        starlette_server.base_url + "/echo",
        content=payload,
        headers={"content-type": "application/json"},
        timeout=10,
    )
    assert response.json()["length"] == len(payload)


@pytest.mark.timeout(60)
def test_starlette_lifespan_runs_once_per_worker_and_shuts_down(tmp_path: Path) -> None:
    port = free_port()
    argv = with_port(readme_command("starlette_on_gunicorn"), port)
    servers = run_server(argv, port, tmp_path / "gunicorn.log")
    server = next(servers)
    try:
        pids = {_pid_of(httpx.get(server.base_url + "/", timeout=10).text) for _ in range(20)}
    finally:
        servers.close()  # Stops gunicorn: SIGTERM, and its workers exit.
    log = server.output()
    for pid in pids:
        assert log.count(f"lifespan startup in pid {pid}") == 1, log
        assert log.count(f"lifespan shutdown in pid {pid}") == 1, log
