"""`bridges.serve(app, **options)`: the programmatic entry point, and the Config fields with no CLI option.

docs/serve.md documents these; each claim there has a test here or in test_cli.py.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_helpers import port_of, running_server

import bridges

pytestmark = pytest.mark.timeout(60)


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hello"})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_and_config_are_public() -> None:
    assert "serve" in bridges.__all__ and "Config" in bridges.__all__
    from bridges.server import serve

    assert bridges.serve is serve


@pytest.mark.parametrize("extra", ["", ", workers=2"])
def test_serve_runs_an_app_object_until_sigterm(tmp_path: Path, extra: str) -> None:
    # The script docs/serve.md shows, on a free port.
    port = free_port()
    script = tmp_path / "run.py"
    script.write_text(
        textwrap.dedent(
            f"""
            from bridges import serve

            async def app(scope, receive, send):
                if scope["type"] != "http":
                    return
                await send({{"type": "http.response.start", "status": 200, "headers": []}})
                await send({{"type": "http.response.body", "body": b"Hello from bridges.serve\\n"}})

            if __name__ == "__main__":
                serve(app, host="127.0.0.1", port={port}, lifespan="off"{extra})
            """
        )
    )
    process = subprocess.Popen([sys.executable, str(script)], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.1)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            _, stderr = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate()
    assert response.text == "Hello from bridges.serve\n"
    assert process.returncode == 0, stderr
    assert "serving ASGI app __main__.app on http://127.0.0.1:" in stderr


def test_server_and_date_headers_can_be_turned_off() -> None:
    with running_server(hello, server_header=False, date_header=False) as server:
        response = httpx.get(f"http://127.0.0.1:{port_of(server)}/", timeout=5)
    assert "server" not in response.headers and "date" not in response.headers


def test_config_headers_are_added_to_every_response() -> None:
    # BUG: Config has a `headers` field (uvicorn's `--header`: default response headers), but
    # nothing reads it. `serve(app, headers=[...])` is accepted and silently does nothing.
    with running_server(hello, headers=[("x-served-by", "bridges")]) as server:
        response = httpx.get(f"http://127.0.0.1:{port_of(server)}/", timeout=5)
    assert response.headers.get("x-served-by") == "bridges"


def test_workers_whose_app_cannot_start_stop_the_supervisor(tmp_path: Path) -> None:
    # BUG: with --workers N the import happens in each worker; a worker that fails at start-up is
    # restarted at once, forever (about 15 forks a second, each logging a traceback), and the
    # supervisor never exits. One process reports the same mistake in one line with status 2;
    # uvicorn's supervisor stops when a child fails to start.
    process = subprocess.Popen(
        [sys.executable, "-m", "bridges", "serve", "nosuchmodule:app", "--workers", "2", "--port", "0"],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _, stderr = process.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        _, stderr = process.communicate()
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # Workers it may have left (our own group).
        except (ProcessLookupError, PermissionError):
            pass
    assert process.returncode not in (0, -signal.SIGKILL), f"still restarting workers:\n{stderr[-2000:]}"
    assert "could not import module 'nosuchmodule'" in stderr
    assert stderr.count("started worker") <= 4, stderr[-2000:]


async def whoami(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = f"{scope['client']} {scope['scheme']}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def test_proxy_headers_over_a_unix_socket_with_trust_everyone(tmp_path: Path) -> None:
    # BUG: over a unix socket scope["client"] is None, and apply_proxy_headers returns at once
    # when there is no client, so `--uds PATH --proxy-headers --forwarded-allow-ips '*'` never
    # applies X-Forwarded-For/Proto (nginx `proxy_pass http://unix:...` is a common setup).
    # uvicorn trusts every peer, unix sockets included, with '*'.
    path = str(tmp_path / "app.sock")
    with running_server(whoami, uds=path, proxy_headers=True, forwarded_allow_ips="*"):
        with httpx.Client(transport=httpx.HTTPTransport(uds=path), timeout=5) as client:
            answer = client.get(
                "http://localhost/", headers={"X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": "https"}
            ).text
    assert answer == "('198.51.100.7', 0) https"


def test_serve_md_documents_every_option_of_bridge_serve() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bridges", "serve", "--help"], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    options = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]+", done.stdout)) - {"--help"}
    assert len(options) > 30, options
    doc = (Path(__file__).resolve().parent.parent / "docs" / "serve.md").read_text(encoding="utf-8")
    missing = sorted(option for option in options if f"`{option}" not in doc)
    assert not missing, f"docs/serve.md does not mention {missing}"
