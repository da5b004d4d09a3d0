"""Run the built-in server's examples for real, with the commands their READMEs give.

Like `test_examples.py`: each command is read from the example's README (a line of a ```sh
block, optionally `cd DIR && ` first), run as a subprocess on a free port of 127.0.0.1 (the only
change is the port), waited for (bounded), talked to with httpx and `websockets`, and stopped by
its PID: SIGTERM, wait, then SIGKILL.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
START_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Command:
    cwd: Path  # Where the README says to run it (the repository root unless it starts with `cd`).
    argv: list[str]
    line: str


_COMMAND = re.compile(r"(?:cd (?P<dir>\S+) && )?(?P<command>(?:\.\./)*\.venv/bin/\S+ .*)")


def readme_commands(example: str) -> list[Command]:
    """Every server command in the example's README: `.venv/bin/...` lines of sh blocks."""
    text = (EXAMPLES / example / "README.md").read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL):
        for line in block.splitlines():
            match = _COMMAND.fullmatch(line)
            if match and " serve " in line:
                cwd = ROOT / match["dir"] if match["dir"] else ROOT
                commands.append(Command(cwd, shlex.split(match["command"]), line))
    assert commands, f"no server command in examples/{example}/README.md"
    return commands


def with_port(argv: list[str], port: int) -> list[str]:
    argv = list(argv)
    argv[argv.index("--port") + 1] = str(port)
    return argv


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def stop(process: subprocess.Popen[bytes]) -> int:
    """Stop a server we started: SIGTERM, wait, then SIGKILL. Returns its exit status."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    return process.returncode


def start(command: Command, log: Path, *extra: str, env: dict[str, str] | None = None) -> Server:
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            with_port(command.argv, port) + list(extra),
            cwd=command.cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    server = Server(process, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}:\n{server.output()}")
        try:
            httpx.get(server.url + "/", timeout=1.0)  # Any HTTP answer means it is up.
            return server
        except httpx.TransportError:
            time.sleep(0.1)
    stop(process)
    raise AssertionError(f"server did not answer within {START_TIMEOUT}s:\n{server.output()}")


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("server-example-logs")


def serving(command: Command, log: Path, *extra: str) -> Iterator[Server]:
    server = start(command, log, *extra)
    try:
        yield server
    finally:
        stop(server.process)


def chunked_body(total: int, piece: int = 10_000) -> Iterator[bytes]:
    """A generator: httpx sends it with Transfer-Encoding: chunked and no Content-Length."""
    sent = 0
    while sent < total:
        size = min(piece, total - sent)
        yield bytes([sent % 251]) * size
        sent += size


# ---- asgi_hello: a plain ASGI app ---------------------------------------------------------------


@pytest.fixture(scope="module")
def asgi_hello(logs: Path) -> Iterator[Server]:
    (command,) = readme_commands("asgi_hello")
    yield from serving(command, logs / "asgi_hello.log")


def test_asgi_hello_readme_command_is_the_documented_one() -> None:
    (command,) = readme_commands("asgi_hello")
    assert command.cwd == ROOT
    assert command.argv == shlex.split(
        ".venv/bin/python -m bridges serve examples/asgi_hello/app.py:app --port 8000"
    )


def test_asgi_hello_root_and_404(asgi_hello: Server) -> None:
    response = httpx.get(asgi_hello.url + "/", timeout=10)
    assert response.status_code == 200
    assert response.text == "Hello from a plain ASGI app on bridges\n"
    assert response.headers["server"] == "bridges"
    assert httpx.get(asgi_hello.url + "/missing", timeout=10).status_code == 404


def test_asgi_hello_json_sees_the_request_and_lifespan_state(asgi_hello: Server) -> None:
    body = os.urandom(70_000)
    response = httpx.post(asgi_hello.url + "/json?x=1", content=body, timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "pid": asgi_hello.process.pid,
        "method": "POST",
        "path": "/json",
        "query": "x=1",
        "client": "127.0.0.1",
        "scheme": "http",
        "root_path": "",
        "body_length": len(body),
        "lifespan": True,
    }
    chunked = httpx.post(asgi_hello.url + "/json", content=chunked_body(300_001), timeout=10)
    assert chunked.json()["body_length"] == 300_001


def test_asgi_hello_stream_is_chunked(asgi_hello: Server) -> None:
    with httpx.stream("GET", asgi_hello.url + "/stream", timeout=10) as response:
        assert response.status_code == 200
        assert response.headers["transfer-encoding"] == "chunked"
        assert "content-length" not in response.headers
        received = b"".join(response.iter_bytes())
    assert received.decode() == "".join(f"chunk {i}\n" for i in range(5))


def test_asgi_hello_keep_alive_many_requests(asgi_hello: Server) -> None:
    with httpx.Client(base_url=asgi_hello.url, timeout=10) as client:
        for i in range(50):
            assert client.post("/json", content=b"x" * i).json()["body_length"] == i


def test_asgi_hello_websocket_echo(asgi_hello: Server) -> None:
    url = asgi_hello.url.replace("http://", "ws://") + "/ws"

    async def talk() -> list[str | bytes]:
        async with websockets.connect(url, open_timeout=10, close_timeout=5) as ws:
            answers = []
            for text in ("hello", "ünïcode", "x" * 100_000):
                await ws.send(text)
                answers.append(await asyncio.wait_for(ws.recv(), 10))
            await ws.send(b"\x00\x01\xff")
            answers.append(await asyncio.wait_for(ws.recv(), 10))
            return answers

    answers = asyncio.run(talk())
    assert answers == ["echo: hello", "echo: ünïcode", "echo: " + "x" * 100_000, b"\x00\x01\xff"]


def test_asgi_hello_websocket_elsewhere_is_refused_with_403(asgi_hello: Server) -> None:
    url = asgi_hello.url.replace("http://", "ws://") + "/elsewhere"

    async def refused() -> int:
        with pytest.raises(InvalidStatus) as caught:
            async with websockets.connect(url, open_timeout=10):
                pass
        return caught.value.response.status_code

    assert asyncio.run(refused()) == 403


def test_asgi_hello_under_root_path(tmp_path: Path) -> None:
    # --root-path: a proxy strips the prefix; the app sees it in root_path and in path (ASGI).
    (command,) = readme_commands("asgi_hello")
    server = start(command, tmp_path / "server.log", "--root-path", "/app")
    try:
        answer = httpx.get(server.url + "/json", timeout=10).json()
        hello = httpx.get(server.url + "/", timeout=10).text
    finally:
        stop(server.process)
    assert (answer["path"], answer["root_path"]) == ("/app/json", "/app")
    assert hello == "Hello from a plain ASGI app on bridges\n"


@pytest.mark.timeout(60)
def test_asgi_hello_logs_mode_lifespan_and_exits_0_on_sigterm(tmp_path: Path) -> None:
    (command,) = readme_commands("asgi_hello")
    server = start(command, tmp_path / "server.log")
    try:
        assert httpx.get(server.url + "/", timeout=10).status_code == 200
    finally:
        code = stop(server.process)
    log = server.output()
    pid = server.process.pid
    assert code == 0, log
    assert f"lifespan startup in pid {pid}" in log
    assert f"lifespan shutdown in pid {pid}" in log
    assert "serving ASGI app examples/asgi_hello/app.py:app on http://127.0.0.1:" in log
    assert '"GET / HTTP/1.1" 200 39 ' in log  # The access log line.
    assert log.index("lifespan startup") < log.index("serving") < log.index("lifespan shutdown")


def test_asgi_hello_on_a_busy_port_exits_2_and_undoes_its_lifespan_startup() -> None:
    # BUG: the server runs the lifespan startup before it binds. When binding then fails (port
    # taken, bad --fd), it exits 2 without running the lifespan shutdown, and asyncio complains on
    # stderr: "Task was destroyed but it is pending!" (Lifespan._run). uvicorn runs the lifespan
    # shutdown before exiting in that case.
    (command,) = readme_commands("asgi_hello")
    with socket.create_server(("127.0.0.1", 0)) as busy:
        argv = with_port(command.argv, busy.getsockname()[1])
        done = subprocess.run(argv, cwd=command.cwd, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2, done.stderr
    assert "error: cannot listen on 127.0.0.1:" in done.stderr
    assert "Task was destroyed but it is pending" not in done.stderr, done.stderr
    if "lifespan startup" in done.stderr:
        assert "lifespan shutdown" in done.stderr, done.stderr


# ---- flask_wsgi_mode: Flask with --mode wsgi ----------------------------------------------------


@pytest.fixture(scope="module", params=["as-written", "root-path"])
def flask_wsgi(request: pytest.FixtureRequest, logs: Path) -> Iterator[Server]:
    (command,) = readme_commands("flask_wsgi_mode")
    extra = ["--root-path", "/prefix"] if request.param == "root-path" else []
    yield from serving(command, logs / f"flask_wsgi-{request.param}.log", *extra)


def test_flask_wsgi_readme_command_is_the_documented_one() -> None:
    (command,) = readme_commands("flask_wsgi_mode")
    assert command.cwd == ROOT
    assert command.argv == shlex.split(
        ".venv/bin/python -m bridges serve examples/flask_wsgi_mode/app.py:app --mode wsgi --port 8000"
    )


def test_flask_wsgi_hello(flask_wsgi: Server) -> None:
    response = httpx.get(flask_wsgi.url + "/", timeout=10)
    assert response.status_code == 200
    assert response.text == "Hello from Flask, served by the bridges built-in server in WSGI mode\n"
    assert response.headers["content-type"].startswith("text/html")
    assert "serving WSGI app examples/flask_wsgi_mode/app.py:app" in flask_wsgi.output()


def test_flask_wsgi_upload(flask_wsgi: Server, request: pytest.FixtureRequest) -> None:
    body = os.urandom(200_000)
    response = httpx.post(flask_wsgi.url + "/upload", content=body, timeout=10)
    assert response.status_code == 200
    answer = response.json()
    assert answer["length"] == len(body)
    assert answer["pid"] == flask_wsgi.process.pid
    assert answer["remote_addr"] == "127.0.0.1"
    assert answer["thread"].startswith("bridges-wsgi-")
    assert answer["script_name"] == ("/prefix" if "root-path" in request.node.callspec.id else "")


def test_flask_wsgi_chunked_upload(flask_wsgi: Server) -> None:
    total = 300_001
    with httpx.Client(timeout=10) as client:
        sent = client.build_request("POST", flask_wsgi.url + "/upload", content=chunked_body(total))
        assert sent.headers.get("transfer-encoding") == "chunked" and "content-length" not in sent.headers
        response = client.send(sent)
    assert response.status_code == 200
    assert response.json()["length"] == total


def test_flask_wsgi_stream(flask_wsgi: Server) -> None:
    with httpx.stream("GET", flask_wsgi.url + "/stream", timeout=10) as response:
        assert response.status_code == 200
        assert response.headers.get("transfer-encoding") == "chunked"
        received = b"".join(response.iter_bytes())
    assert received.decode() == "".join(f"line {i}\n" for i in range(5))


def test_flask_wsgi_many_requests_and_unknown_routes(flask_wsgi: Server) -> None:
    with httpx.Client(base_url=flask_wsgi.url, timeout=10) as client:
        for i in range(50):
            assert client.post("/upload", content=b"x" * i).json()["length"] == i
        assert client.get("/missing").status_code == 404
        assert client.get("/upload").status_code == 405


def test_flask_wsgi_as_asgi_is_refused_with_status_2() -> None:
    (command,) = readme_commands("flask_wsgi_mode")
    argv = with_port(command.argv, free_port())
    argv[argv.index("--mode") + 1] = "asgi"
    done = subprocess.run(argv, cwd=command.cwd, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2, done.stderr
    assert "looks like a WSGI app" in done.stderr
    assert "Traceback" not in done.stderr


# ---- django_project: one project, served as WSGI and as ASGI ------------------------------------


def django_command(mode: str) -> Command:
    (command,) = [c for c in readme_commands("django_project") if f"--mode {mode}" in c.line]
    return command


@pytest.fixture(scope="module", params=["wsgi", "asgi"])
def django(request: pytest.FixtureRequest, logs: Path) -> Iterator[tuple[str, Server]]:
    command = django_command(request.param)
    for server in serving(command, logs / f"django-{request.param}.log"):
        yield request.param, server


def test_django_readme_commands_are_the_documented_ones() -> None:
    for mode in ("wsgi", "asgi"):
        command = django_command(mode)
        assert command.line == (
            "cd examples/django_project && ../../.venv/bin/python -m bridges serve "
            f"mysite/{mode}.py:application --mode {mode} --port 8000"
        )
        assert command.cwd == EXAMPLES / "django_project"


def test_django_hello(django: tuple[str, Server]) -> None:
    mode, server = django
    response = httpx.get(server.url + "/", timeout=10)
    assert response.status_code == 200
    assert response.text == f"Hello from Django over {mode.upper()}\n"
    assert f"serving {mode.upper()} app mysite/{mode}.py:application" in server.output()


def test_django_echo(django: tuple[str, Server]) -> None:
    _, server = django
    body = os.urandom(100_000)
    response = httpx.post(
        server.url + "/echo/", content=body, headers={"content-type": "application/octet-stream"}, timeout=10
    )
    assert response.status_code == 200
    assert response.json() == {
        "length": len(body),
        "content_type": "application/octet-stream",
        "path": "/echo/",
        "remote_addr": "127.0.0.1",
        "pid": server.process.pid,
    }


def test_django_chunked_upload(django: tuple[str, Server]) -> None:
    # Django's WSGIRequest reads only up to CONTENT_LENGTH: without one the body is empty (as the
    # README says). Its ASGIRequest reads the whole body.
    mode, server = django
    response = httpx.post(server.url + "/echo/", content=chunked_body(50_000), timeout=10)
    assert response.status_code == 200
    assert response.json()["length"] == (0 if mode == "wsgi" else 50_000)


def test_django_errors_and_keep_alive(django: tuple[str, Server]) -> None:
    _, server = django
    with httpx.Client(base_url=server.url, timeout=10) as client:
        assert client.get("/echo/").status_code == 405
        assert client.get("/missing").status_code == 404
        for i in range(30):
            assert client.post("/echo/", content=b"y" * i).json()["length"] == i


def test_django_asgi_lifespan_is_reported_unsupported_once(django: tuple[str, Server]) -> None:
    mode, server = django
    log = server.output()
    if mode == "wsgi":
        assert "lifespan" not in log  # No lifespan for a WSGI app.
    else:
        assert log.count("ASGI 'lifespan' protocol appears unsupported") == 1, log


def test_django_file_target_needs_the_project_directory(tmp_path: Path) -> None:
    # The file form puts only mysite/ on sys.path: from the repository root, `mysite` is not found.
    argv = [
        sys.executable,
        "-m",
        "bridges",
        "serve",
        "examples/django_project/mysite/wsgi.py:application",
        "--port",
        str(free_port()),
    ]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode != 0
    assert "No module named 'mysite'" in done.stderr


@pytest.mark.parametrize("form", ["module", "file"])
def test_import_error_inside_the_target_is_one_line_and_status_2(tmp_path: Path, form: str) -> None:
    # importer.py promises "every failure is a ConfigurationError with one readable sentence" (exit
    # status 2). The module form keeps it for a module that imports something missing; the file
    # form lets the ModuleNotFoundError escape as a traceback with status 1.
    (tmp_path / "broken.py").write_text("import no_such_dependency_xyz\napp = None\n")
    target = "broken:app" if form == "module" else "./broken.py:app"
    done = subprocess.run(
        [sys.executable, "-m", "bridges", "serve", target, "--port", str(free_port())],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "no_such_dependency_xyz" in done.stderr
