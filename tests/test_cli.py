"""The `bridge` CLI, run as `python -m bridges` (the name `bridge` is also iproute2's tool)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.timeout(60)

APP_SOURCE = textwrap.dedent(
    """
    async def asgi_app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"asgi " + scope["path"].encode()})

    def wsgi_app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"wsgi " + environ["PATH_INFO"].encode("latin-1")]

    def make_app():
        return asgi_app

    not_an_app = 42

    def three_args(a, b, c, d):
        return None
    """
)


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "myapps.py").write_text(APP_SOURCE)
    return tmp_path


def bridge(*args: str, cwd: Path, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridges", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_version(app_dir: Path) -> None:
    done = bridge("--version", cwd=app_dir)
    assert done.returncode == 0 and done.stdout.startswith("bridges ")


def test_serve_help_explains_every_option(app_dir: Path) -> None:
    done = bridge("serve", "--help", cwd=app_dir)
    assert done.returncode == 0
    for option in (
        "--factory", "--mode", "--host", "--port", "--uds", "--fd", "--workers", "--limit-max-requests",
        "--root-path", "--proxy-headers", "--forwarded-allow-ips", "--lifespan", "--threads", "--http",
        "--loop", "--log-level", "--access-log", "--no-access-log", "--timeout-keep-alive",
        "--timeout-header-read", "--timeout-graceful-shutdown", "--limit-concurrency",
        "--max-header-bytes", "--max-body-bytes",
    ):  # fmt: skip
        assert option in done.stdout, option


@pytest.mark.parametrize(
    "args, message",
    [
        (["serve", "nosuchmodule:app"], "could not import module 'nosuchmodule'"),
        (["serve", "myapps:missing"], "attribute 'missing' not found"),
        (["serve", "myapps:not_an_app"], "is not an app"),
        (["serve", "myapps"], "must be 'module:attribute'"),
        (["serve", "myapps:three_args"], "cannot tell whether"),
        (["serve", "myapps:wsgi_app", "--mode", "asgi"], "looks like a WSGI app"),
        (["serve", "myapps:asgi_app", "--mode", "wsgi"], "looks like an ASGI app"),
        (["serve", "myapps:asgi_app", "--port", "nope"], "invalid int value"),
        (["serve", "myapps:asgi_app", "--workers", "0"], "must be at least 1"),
        (["serve", "myapps:asgi_app", "--forwarded-allow-ips", "not-an-ip"], "is not an address"),
        (["serve", "./nofile.py:app"], "no such file"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_misuse_is_one_line_and_exit_2(app_dir: Path, args: list[str], message: str) -> None:
    done = bridge(*args, cwd=app_dir)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert message in lines[0]
    assert "Traceback" not in done.stderr


def serve_and_get(app_dir: Path, target: str, *extra: str) -> tuple[str, str, int]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bridges", "serve", target, "--port", str(port), *extra],
        cwd=app_dir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/hello", timeout=2).text
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.1)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            _, stderr = process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate()
    return text, stderr, process.returncode


@pytest.mark.parametrize(
    "target, extra, expected, says",
    [
        ("myapps:asgi_app", [], "asgi /hello", "ASGI app"),
        ("myapps:wsgi_app", [], "wsgi /hello", "WSGI app"),
        (
            "myapps.py:wsgi_app",
            ["--mode", "wsgi", "--http", "h11", "--loop", "asyncio"],
            "wsgi /hello",
            "h11",
        ),
        ("myapps:make_app", ["--factory"], "asgi /hello", "ASGI app"),
    ],
)
def test_serve_runs_and_stops_on_sigterm(
    app_dir: Path, target: str, extra: list[str], expected: str, says: str
) -> None:
    text, stderr, code = serve_and_get(app_dir, target, *extra)
    assert text == expected
    assert says in stderr
    assert code == 0, stderr


def test_access_log_line(app_dir: Path) -> None:
    _, stderr, _ = serve_and_get(app_dir, "myapps:asgi_app")
    assert '"GET /hello HTTP/1.1" 200 11 ' in stderr and "ms" in stderr
    _, quiet, _ = serve_and_get(app_dir, "myapps:asgi_app", "--no-access-log")
    assert "GET /hello" not in quiet


def test_workers_share_the_socket_and_stop_together(app_dir: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bridges", "serve", "myapps:asgi_app", "--port", str(port), "--workers", "2"],
        cwd=app_dir,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 15
        answered = 0
        while answered < 20 and time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/w", timeout=2).text == "asgi /w":
                    answered += 1
            except httpx.TransportError:
                time.sleep(0.1)
        assert answered == 20
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert stderr.count("started worker") == 2


def test_crashed_worker_is_replaced_and_max_requests_recycles(app_dir: Path) -> None:
    (app_dir / "pidapp.py").write_text(
        "import os\n"
        "async def app(scope, receive, send):\n"
        "    if scope['type'] != 'http':\n"
        "        return\n"
        "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
        "    await send({'type': 'http.response.body', 'body': str(os.getpid()).encode()})\n"
    )
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bridges", "serve", "pidapp:app", "--port", str(port), "--workers", "2",
         "--limit-max-requests", "50", "--no-access-log"],
        cwd=app_dir,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip

    def pid_answer() -> int:
        deadline = time.monotonic() + 15
        while True:
            try:
                return int(httpx.get(f"http://127.0.0.1:{port}/", timeout=2).text)
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    try:
        victim = pid_answer()
        os.kill(victim, signal.SIGKILL)
        seen = {pid_answer() for _ in range(30)}
        assert victim not in seen and seen, "the killed worker must be replaced, and serving goes on"
        more = {pid_answer() for _ in range(120)}
        assert len(seen | more) >= 3, "workers recycle after --limit-max-requests 50"
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert "restarting it" in stderr


def test_auto_loop_is_asyncio_for_cgi_mode(tmp_path: Path) -> None:
    """uvloop forks the whole server for each CGI script; asyncio's loop uses vfork."""
    from bridges.config import Config

    script = tmp_path / "x.sh"
    script.write_text("#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\nok'\n")
    script.chmod(0o755)
    assert Config(app=str(script), mode="cgi").resolve_loop() == "asyncio"
    assert Config(app=str(script), mode="cgi", loop="uvloop").resolve_loop() == "uvloop"
    assert Config(app="m:app").resolve_loop() == "auto"
