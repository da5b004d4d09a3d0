"""FastCGIToASGI: php-fpm and fcgiwrap mounted as ASGI apps, and every failure a backend can have."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_helpers import ResponseChecker, http_scope, run
from real_hosts import fcgiwrap, php_fpm

from bridges.fastcgi_client import FastCGIToASGI
from bridges.fastcgi_protocol import (
    CONNECTION_CLOSED,
    NEED_DATA,
    AbortRequest,
    BeginRequest,
    EndRequest,
    FastCGIConnection,
    Params,
    Stdin,
    Stdout,
)

pytestmark = pytest.mark.timeout(60)

PHP_PROBE = r"""<?php
$body = file_get_contents("php://input");
if (isset($_GET["status"])) { http_response_code((int)$_GET["status"]); }
if (isset($_GET["big"])) {
    header("Content-Type: application/octet-stream");
    for ($i = 0; $i < 160; $i++) { echo str_repeat(chr(65 + $i % 26), 65536); }
    exit;
}
if (isset($_GET["redirect"])) { header("Location: https://example.com/elsewhere"); exit; }
header("Content-Type: application/json");
header("X-Php: yes");
error_log("probe stderr line");
$headers = [];
foreach ($_SERVER as $k => $v) { if (strpos($k, "HTTP_") === 0) { $headers[$k] = $v; } }
echo json_encode([
    "method" => $_SERVER["REQUEST_METHOD"], "uri" => $_SERVER["REQUEST_URI"],
    "script_name" => $_SERVER["SCRIPT_NAME"], "path_info" => $_SERVER["PATH_INFO"] ?? "",
    "script_filename" => $_SERVER["SCRIPT_FILENAME"], "query" => $_SERVER["QUERY_STRING"],
    "get" => $_GET, "post" => $_POST, "body_len" => strlen($body), "body_md5" => md5($body),
    "headers" => $headers, "https" => $_SERVER["HTTPS"] ?? "", "remote" => $_SERVER["REMOTE_ADDR"],
]);
"""

SHELL_CGI = """#!/bin/sh
printf 'Content-Type: text/plain\\r\\nX-Shell: 1\\r\\n\\r\\n'
echo "method=$REQUEST_METHOD path=$PATH_INFO query=$QUERY_STRING proxy=${HTTP_PROXY:-none}"
cat
"""


@pytest.fixture(scope="module")
def php(tmp_path_factory: pytest.TempPathFactory) -> Any:
    workdir = tmp_path_factory.mktemp("php")
    docroot = workdir / "docroot"
    docroot.mkdir()
    (docroot / "index.php").write_text(PHP_PROBE)
    (docroot / "probe.php").write_text(PHP_PROBE)
    with php_fpm(workdir, docroot) as socket_path:
        yield socket_path, docroot


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver", timeout=30)


def test_php_probe_sees_the_request(php: Any) -> None:
    socket_path, docroot = php
    app = FastCGIToASGI(f"unix:{socket_path}", document_root=str(docroot))

    async def scenario() -> None:
        async with client_for(app) as client:
            response = await client.post(
                "/probe.php/extra/info?a=1&b=%C3%A9",
                data={"k": "v w"},
                headers={"X-Custom": "yes", "Proxy": "http://evil.example/"},
            )
            assert response.status_code == 200
            assert response.headers["x-php"] == "yes"
            seen = response.json()
            assert seen["method"] == "POST"
            assert seen["uri"] == "/probe.php/extra/info?a=1&b=%C3%A9"
            assert seen["script_name"] == "/probe.php"
            assert seen["path_info"] == "/extra/info"
            assert seen["script_filename"] == str(docroot / "probe.php")
            assert seen["get"] == {"a": "1", "b": "é"}
            assert seen["post"] == {"k": "v w"}
            assert seen["headers"]["HTTP_X_CUSTOM"] == "yes"
            assert "HTTP_PROXY" not in seen["headers"]

    run(scenario(), timeout=30)


def test_php_status_redirect_index_and_large_response(php: Any) -> None:
    socket_path, docroot = php
    app = FastCGIToASGI(f"unix:{socket_path}", document_root=str(docroot))

    async def scenario() -> None:
        async with client_for(app) as client:
            assert (await client.get("/?status=404")).status_code == 404
            assert (await client.get("/index.php?status=418")).status_code == 418
            redirect = await client.get("/?redirect=1")
            assert redirect.status_code == 302
            assert redirect.headers["location"] == "https://example.com/elsewhere"
            big = await client.get("/?big=1")
            assert len(big.content) == 160 * 65536
            assert big.content[:3] == b"AAA" and big.content[-1:] == bytes([65 + 159 % 26])
            uploaded = b"\x00\xff" * 600_000
            echoed = (await client.put("/probe.php", content=uploaded)).json()
            assert echoed["body_len"] == len(uploaded)

    run(scenario(), timeout=30)


def test_php_stderr_goes_to_logging(php: Any, caplog: Any) -> None:
    socket_path, docroot = php
    app = FastCGIToASGI(f"unix:{socket_path}", document_root=str(docroot))

    async def scenario() -> None:
        async with client_for(app) as client:
            await client.get("/probe.php")

    with caplog.at_level(logging.WARNING, logger="bridges.fastcgi.client"):
        run(scenario(), timeout=30)
    assert "probe stderr line" in caplog.text


def test_php_pool_reuses_connections_under_concurrency(php: Any) -> None:
    socket_path, docroot = php
    app = FastCGIToASGI(f"unix:{socket_path}", document_root=str(docroot), max_connections=4, keep_conn=True)

    async def scenario() -> None:
        async with client_for(app) as client:
            responses = await asyncio.gather(*(client.get(f"/probe.php?n={i}") for i in range(100)))
            assert [r.json()["get"]["n"] for r in responses] == [str(i) for i in range(100)]
        assert 0 < len(app._idle) <= 4
        app.close_idle()  # Else the kept connections hold all 4 php-fpm workers for later tests.

    run(scenario(), timeout=45)


def test_fcgiwrap_runs_a_shell_cgi_script(tmp_path: Path) -> None:
    script = tmp_path / "hello.sh"
    script.write_text(SHELL_CGI)
    script.chmod(0o755)
    with fcgiwrap(tmp_path) as socket_path:
        app = FastCGIToASGI(
            f"unix:{socket_path}",
            document_root=str(tmp_path),
            script_pattern=r"^(.+?\.sh)(/.*)?$",
        )

        async def scenario() -> None:
            async with client_for(app) as client:
                for _ in range(3):
                    response = await client.post(
                        "/hello.sh/some/where?x=1", content=b"posted data", headers={"Proxy": "evil"}
                    )
                    assert response.status_code == 200
                    assert response.headers["x-shell"] == "1"
                    assert response.text == "method=POST path=/some/where query=x=1 proxy=none\nposted data"

        run(scenario(), timeout=30)


# ---- failures, with hand-made backends -------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def call(app: Any, scope: dict[str, Any] | None = None) -> ResponseChecker:
    checker = ResponseChecker()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    run(app(scope or http_scope("/x.php"), receive, checker), timeout=20)
    return checker


def test_backend_down_is_502(caplog: Any) -> None:
    app = FastCGIToASGI(f"127.0.0.1:{free_port()}", document_root="/srv")
    with caplog.at_level(logging.ERROR, logger="bridges.fastcgi.client"):
        response = call(app)
    assert response.status == 502
    assert "unreachable" in caplog.text


class FakeBackend:
    """A FastCGI application on a real socket that answers with `reply(request_id) -> bytes`."""

    def __init__(self, reply: Any, silent: bool = False) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.reply = reply
        self.silent = silent
        self.received: list[Any] = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        self.listener.settimeout(10)
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        codec = FastCGIConnection("application")
        conn.settimeout(10)
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                codec.receive_data(data)
                while (event := codec.next_event()) not in (NEED_DATA, CONNECTION_CLOSED):
                    self.received.append(event)
                    if isinstance(event, Stdin) and event.end and not self.silent:
                        conn.sendall(self.reply(codec, event.request_id))
                if not data:
                    return


def test_malformed_output_is_502() -> None:
    def garbage(codec: FastCGIConnection, request_id: int) -> bytes:
        return codec.send(Stdout(request_id, b"this is not a header\r\n\r\nbody", end=True)) + codec.send(
            EndRequest(request_id)
        )

    backend = FakeBackend(garbage)
    assert call(FastCGIToASGI(f"127.0.0.1:{backend.port}")).status == 502


def test_backend_that_never_answers_is_504() -> None:
    backend = FakeBackend(None, silent=True)
    response = call(FastCGIToASGI(f"127.0.0.1:{backend.port}", read_timeout=0.5))
    assert response.status == 504


def test_local_redirect_is_followed_internally() -> None:
    answers: list[str] = []

    def reply(codec: FastCGIConnection, request_id: int) -> bytes:
        if not answers:
            answers.append("redirect")
            output = b"Location: /final/page\r\n\r\n"
        else:
            output = b"Content-Type: text/plain\r\n\r\nlanded"
        return codec.send(Stdout(request_id, output, end=True)) + codec.send(EndRequest(request_id))

    class TwoConnections(FakeBackend):
        def serve(self) -> None:
            for _ in range(2):
                super().serve()

    backend = TwoConnections(reply)
    response = call(FastCGIToASGI(f"127.0.0.1:{backend.port}"))
    assert (response.status, response.body) == (200, b"landed")
    params = [e.params for e in backend.received if isinstance(e, Params)]
    assert params[1][b"REQUEST_METHOD"] == b"GET" and params[1][b"SCRIPT_NAME"] == b"/final/page"


def test_client_disconnect_aborts_the_backend_request() -> None:
    def endless(codec: FastCGIConnection, request_id: int) -> bytes:
        return codec.send(Stdout(request_id, b"Content-Type: text/plain\r\n\r\n" + b"x" * 1000))

    backend = FakeBackend(endless)
    app = FastCGIToASGI(f"127.0.0.1:{backend.port}")
    calls = 0

    async def receive() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 1:
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()
        return {"type": "http.disconnect"}

    async def gone_send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            raise OSError("client went away")

    run(app(http_scope("/x.php"), receive, gone_send), timeout=20)
    backend.thread.join(10)
    assert any(isinstance(e, AbortRequest) for e in backend.received)
    begin = next(e for e in backend.received if isinstance(e, BeginRequest))
    assert begin.keep_conn is False


def test_variables_for_php() -> None:
    app = FastCGIToASGI("127.0.0.1:9000", document_root="/srv/www")
    scope = http_scope("/app/dir/", query_string=b"q=1", root_path="/app")
    variables = app.variables_for(scope)
    assert variables["SCRIPT_FILENAME"] == "/srv/www/dir/index.php"
    assert variables["SCRIPT_NAME"] == "/app/dir/index.php"
    assert variables["PATH_INFO"] == ""
    assert variables["QUERY_STRING"] == "q=1"
    assert variables["REQUEST_URI"] == "/app/dir/?q=1"
    assert json.dumps(variables)  # Every value is a str.


def test_bridge_serve_mode_fastcgi_mounts_php_fpm(php: Any, tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    socket_path, docroot = php
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bridges", "serve", f"unix:{socket_path}", "--mode", "fastcgi",
         "--document-root", str(docroot), "--port", str(port), "--fastcgi-param", "APP_ENV=test"],
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/probe.php?via=cli", timeout=5)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.1)
        assert response.status_code == 200
        assert response.json()["get"] == {"via": "cli"}
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=15)
    assert "FastCGI responder" in stderr
