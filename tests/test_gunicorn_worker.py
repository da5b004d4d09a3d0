"""`gunicorn -k bridges.gunicorn.Worker`: a real gunicorn arbiter running the built-in server."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

pytest.importorskip("gunicorn")
pytestmark = pytest.mark.timeout(60)

APPS = textwrap.dedent(
    """
    import os

    async def asgi_app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": f"asgi {os.getpid()}".encode()})

    def wsgi_app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"wsgi {os.getpid()}".encode()]
    """
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def gunicorn(tmp_path: Path, target: str, *extra: str) -> tuple[subprocess.Popen[str], str]:
    (tmp_path / "gapps.py").write_text(APPS)
    port = free_port()
    command = [
        sys.executable, "-m", "gunicorn", "-k", "bridges.gunicorn.Worker", "-b", f"127.0.0.1:{port}",
        "--no-control-socket", "--graceful-timeout", "5", *extra, target,
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.get(base + "/", timeout=2)
            return process, base
        except httpx.TransportError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise AssertionError(process.communicate()[1]) from None
            time.sleep(0.1)


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    try:
        _, stderr = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        _, stderr = process.communicate()
    return stderr


@pytest.mark.parametrize("target, prefix", [("gapps:asgi_app", "asgi"), ("gapps:wsgi_app", "wsgi")])
def test_serves_asgi_and_wsgi_apps_with_two_workers(tmp_path: Path, target: str, prefix: str) -> None:
    process, base = gunicorn(tmp_path, target, "-w", "2")
    try:
        pids = set()
        for _ in range(40):
            text = httpx.get(base + "/", timeout=5).text
            assert text.startswith(prefix + " ")
            pids.add(text.split()[1])
    finally:
        stderr = stop(process)
    assert process.returncode == 0, stderr
    assert stderr.count("Booting worker") == 2
    assert "Worker exiting" in stderr


def test_max_requests_recycles_the_worker(tmp_path: Path) -> None:
    process, base = gunicorn(tmp_path, "gapps:asgi_app", "-w", "1", "--max-requests", "5")
    try:
        seen = set()
        deadline = time.monotonic() + 30
        while len(seen) < 2 and time.monotonic() < deadline:
            try:
                seen.add(httpx.get(base + "/", timeout=5).text)
            except httpx.TransportError:
                time.sleep(0.05)
        assert len(seen) >= 2, "a new worker should have replaced the first after 5 requests"
    finally:
        stop(process)
