"""Real web servers in front of `bridge serve --protocol fastcgi`: nginx, Apache and lighttpd.

Each server runs with a private configuration in tmp_path (127.0.0.1 on free ports, or unix
sockets), in front of a probe app served by `python -m bridges serve probe.py:app --protocol
fastcgi`. The probe answers with JSON: what its ASGI scope says (method, path, root_path,
query_string, raw_path, some headers, client, server, scheme), the length and SHA-256 of the body
it received, its pid, and the FastCGI params the web server sent (`scope["extensions"]["fastcgi"]`).
`/stream` answers in chunks with small sleeps, `/status/NNN` answers NNN, `?sleep=S` waits S seconds.

The configurations are the ones docs/fastcgi-behind-web-servers.md shows. The servers are not
Python packages: without them the tests skip locally, but fail when CI=true (.ci/run installs them).
The protocol rules themselves are checked byte by byte in test_fastcgi_host.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import find_binary
from real_hosts import apache, free_port, lighttpd, nginx, stop_group, wait_for_port

from bridges.translate import to_wsgi_string

ROOT = Path(__file__).resolve().parent.parent

PROBE = r"""
import asyncio
import hashlib
import json
import os
from urllib.parse import parse_qs

HEADERS = ("host", "x-custom", "content-type", "content-length", "cookie", "transfer-encoding")


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    sleep = parse_qs(scope["query_string"].decode("latin-1")).get("sleep")
    if sleep:
        await asyncio.sleep(float(sleep[0]))
    if path.endswith("/stream"):
        headers = [(b"content-type", b"text/plain")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for i in range(10):
            await send({"type": "http.response.body", "body": b"chunk %d\n" % i, "more_body": True})
            await asyncio.sleep(0.05)
        await send({"type": "http.response.body", "body": b""})
        return
    digest = hashlib.sha256()
    length = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        digest.update(message.get("body", b""))
        length += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    headers = {}
    for name, value in scope["headers"]:
        name = name.decode("latin-1")
        value = value.decode("latin-1")
        headers[name] = headers[name] + ", " + value if name in headers else value
    status = int(path.rsplit("/", 1)[1]) if "/status/" in path else 200
    answer = {
        "method": scope["method"],
        "path": path,
        "root_path": scope["root_path"],
        "query_string": scope["query_string"].decode("latin-1"),
        "raw_path": scope["raw_path"].decode("latin-1"),
        "headers": {name: headers.get(name) for name in HEADERS},
        "client": scope["client"],
        "server": scope["server"],
        "scheme": scope["scheme"],
        "length": length,
        "sha256": digest.hexdigest(),
        "pid": os.getpid(),
        "params": scope.get("extensions", {}).get("fastcgi", {}).get("params"),
    }
    body = b"" if status in (204, 304) else json.dumps(answer).encode()
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def wsgi_app(environ, start_response):
    body = environ["wsgi.input"].read()
    names = ("REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "CONTENT_TYPE", "HTTP_X_CUSTOM")
    answer = {name: environ.get(name) for name in names}
    answer["length"] = len(body)
    answer["sha256"] = hashlib.sha256(body).hexdigest()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(answer).encode()]
"""

PRINTED: set[str] = set()  # Servers whose params were printed (once each, shown with -s or -rP).


# ---- our FastCGI hosts -------------------------------------------------------------------------


@dataclass
class Host:
    """One `python -m bridges serve ... --protocol fastcgi` process."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    port: int | None = None
    uds: Path | None = None

    @property
    def address(self) -> str:
        """The address for nginx's `fastcgi_pass` / `server`."""
        return f"127.0.0.1:{self.port}" if self.port is not None else f"unix:{self.uds}"

    def wait_ready(self, timeout: float = 20) -> None:
        if self.port is not None:
            wait_for_port(self.port, self.process, self.log, timeout=timeout)
            return
        assert self.uds is not None
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited:\n{self.log.read_text()}")
            with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as sock:
                sock.connect(str(self.uds))
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} is not listening on {self.uds}:\n{self.log.read_text()}")
            time.sleep(0.05)


def write_probe(workdir: Path) -> Path:
    path = workdir / "probe.py"
    path.write_text(PROBE)
    return path


def start_host(
    stack: contextlib.ExitStack,
    workdir: Path,
    name: str,
    *options: str,
    uds: bool = False,
    target: str = "app",
    socket_dir: Path | None = None,
) -> Host:
    """Start a FastCGI host on a free port (or a unix socket); `stack` stops it by PID."""
    log = workdir / f"{name}.log"
    port = None if uds else free_port()
    socket_path = (socket_dir or workdir) / f"{name}.sock" if uds else None
    listen = ["--uds", str(socket_path)] if uds else ["--port", str(port)]
    command = [
        sys.executable,
        "-m",
        "bridges",
        "serve",
        f"{workdir / 'probe.py'}:{target}",
        "--protocol",
        "fastcgi",
        *listen,
        *options,
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    stack.callback(stop_group, process)
    return Host(name, process, log, port, socket_path)


def established(port: int) -> int:
    """TCP connections in ESTABLISHED state whose local port is `port` (the host's side)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    count += 1
    return count


def show_params(server: str, answer: dict[str, Any]) -> None:
    """Print the params a server sends, once per server (pytest -s shows them)."""
    if server not in PRINTED:
        PRINTED.add(server)
        print(f"\n{server} sends these FastCGI params:")
        for name, value in sorted(answer["params"].items()):
            print(f"    {name}={value!r}")


def check_probe(
    answer: dict[str, Any],
    *,
    method: str,
    path: str,
    root_path: str = "",
    raw_path: str | None = None,
    query: str = "",
    body: bytes = b"",
    headers: dict[str, str | None] | None = None,
) -> None:
    """The probe's answer matches the request (the params are shown when it does not)."""
    seen = {key: answer[key] for key in ("method", "path", "root_path", "raw_path", "query_string", "length")}
    expected = {
        "method": method,
        "path": path,
        "root_path": root_path,
        "raw_path": raw_path if raw_path is not None else path,
        "query_string": query,
        "length": len(body),
    }
    assert seen == expected, answer["params"]
    assert answer["sha256"] == hashlib.sha256(body).hexdigest()
    assert answer["scheme"] == "http"
    client = answer["client"]
    assert client[0] == "127.0.0.1" and isinstance(client[1], int) and client[1] > 0, client
    for name, value in (headers or {}).items():
        assert answer["headers"][name] == value, (name, answer["headers"], answer["params"])
    assert answer["headers"]["transfer-encoding"] is None, "the gateway removed the chunked framing"


def chunked_body(total: int = 300_000, chunk: int = 7_000) -> tuple[bytes, Iterator[bytes]]:
    """Random bytes, and a generator that uploads them (httpx sends it with chunked encoding)."""
    data = os.urandom(total)

    def generate() -> Iterator[bytes]:
        for start in range(0, total, chunk):
            yield data[start : start + chunk]

    return data, generate()


REQUEST_HEADERS = {
    "X-Custom": "probe-value",
    "Content-Type": "text/plain; charset=utf-8",
    "Cookie": "a=1; b=2",
}
# A non-ASCII path with an encoded space, and a query with %20, "+" and an encoded "+".
ODD_TARGET = "/caf%C3%A9/a%20b"
ODD_PATH = "/café/a b"
ODD_QUERY = "q=a%20b+c&plus=%2B1"


# ---- nginx -------------------------------------------------------------------------------------

VARIANTS = ["tcp", "unix", "tcp-keepalive", "unix-keepalive"]


def nginx_locations(backend: str, keep_conn: bool) -> str:
    keep = "            fastcgi_keep_conn on;\n" if keep_conn else ""
    return (
        "        location / {\n"
        "            include fastcgi_params;\n"
        f"            fastcgi_pass {backend};\n" + keep + "        }\n"
        "        location /unbuffered/ {\n"
        "            include fastcgi_params;\n"
        f"            fastcgi_pass {backend};\n"
        "            fastcgi_request_buffering off;\n" + keep + "        }\n"
        "        location /live/ {\n"
        "            include fastcgi_params;\n"
        f"            fastcgi_pass {backend};\n"
        "            fastcgi_buffering off;\n" + keep + "        }\n"
    )


@dataclass
class NginxSite:
    urls: dict[str, str]
    hosts: dict[str, Host]
    nginx_dir: Path


@pytest.fixture(scope="module")
def nginx_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxSite]:
    find_binary("nginx")
    workdir = tmp_path_factory.mktemp("fcgi")
    write_probe(workdir)
    with contextlib.ExitStack() as stack:
        hosts = {
            "tcp": start_host(stack, workdir, "tcp"),
            "unix": start_host(stack, workdir, "unix", uds=True),
            "tcp-keepalive": start_host(stack, workdir, "tcp-keepalive"),
            "unix-keepalive": start_host(stack, workdir, "unix-keepalive", uds=True),
            "mount": start_host(stack, workdir, "mount", "--root-path", "/app"),
            "wsgi": start_host(
                stack, workdir, "wsgi", "--mode", "wsgi", "--root-path", "/wsgi", target="wsgi_app"
            ),
        }
        for host in hosts.values():
            host.wait_ready()
        upstreams = (
            f"    upstream tcp_keepalive {{\n        server {hosts['tcp-keepalive'].address};\n"
            "        keepalive 8;\n    }\n"
            f"    upstream unix_keepalive {{\n        server {hosts['unix-keepalive'].address};\n"
            "        keepalive 8;\n    }\n"
        )
        mounts = (
            "        location /app/ {\n"
            "            include fastcgi_params;\n"
            f"            fastcgi_pass {hosts['mount'].address};\n"
            "        }\n"
            "        location /wsgi/ {\n"
            "            include fastcgi_params;\n"
            f"            fastcgi_pass {hosts['wsgi'].address};\n"
            "        }\n"
        )
        servers = [
            nginx_locations(hosts["tcp"].address, False) + mounts,
            nginx_locations(hosts["unix"].address, False),
            nginx_locations("tcp_keepalive", True),
            nginx_locations("unix_keepalive", True),
        ]
        nginx_dir = workdir / "nginx"
        ports = stack.enter_context(nginx(nginx_dir, servers, upstreams))
        urls = {variant: f"http://127.0.0.1:{port}" for variant, port in zip(VARIANTS, ports, strict=True)}
        yield NginxSite(urls, hosts, nginx_dir)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("variant", VARIANTS)
def test_nginx_probe_sees_method_path_query_headers_body(nginx_site: NginxSite, variant: str) -> None:
    port = int(nginx_site.urls[variant].rsplit(":", 1)[1])
    with httpx.Client(base_url=nginx_site.urls[variant], timeout=10) as client:
        response = client.post(f"{ODD_TARGET}?{ODD_QUERY}", content=b"hello world", headers=REQUEST_HEADERS)
        assert response.status_code == 200, response.text
        answer = response.json()
        show_params("nginx", answer)
        check_probe(
            answer,
            method="POST",
            path=ODD_PATH,
            raw_path=ODD_TARGET,
            query=ODD_QUERY,
            body=b"hello world",
            headers={
                "host": f"127.0.0.1:{port}",
                "x-custom": "probe-value",
                "content-type": "text/plain; charset=utf-8",
                "cookie": "a=1; b=2",
                "content-length": "11",
            },
        )
        # nginx's SCRIPT_NAME is the whole (decoded) path: bridges takes the path from REQUEST_URI.
        assert answer["params"]["SCRIPT_NAME"] == to_wsgi_string(ODD_PATH)
        assert answer["params"]["REQUEST_URI"] == f"{ODD_TARGET}?{ODD_QUERY}"
        assert "PATH_INFO" not in answer["params"]

        get = client.get("/plain", params={"x": "1"})
        check_probe(get.json(), method="GET", path="/plain", query="x=1")
        assert client.get("/status/418").status_code == 418
        no_content = client.get("/status/204")
        assert (no_content.status_code, no_content.content) == (204, b"")
        streamed = client.get("/stream")
        assert streamed.text == "".join(f"chunk {i}\n" for i in range(10))


@pytest.mark.timeout(40)
@pytest.mark.parametrize("variant", VARIANTS)
def test_nginx_sequential_requests_do_not_stall(nginx_site: NginxSite, variant: str) -> None:
    # Without fastcgi_keep_conn nginx waits for the application to close the connection after
    # END_REQUEST: a host that kept it open would stall every request for fastcgi_read_timeout (60 s).
    host = nginx_site.hosts[variant]
    slowest = 0.0
    started = time.monotonic()
    with httpx.Client(base_url=nginx_site.urls[variant], timeout=10) as client:
        for i in range(50):
            before = time.monotonic()
            response = client.get(f"/seq/{i}")
            slowest = max(slowest, time.monotonic() - before)
            assert response.status_code == 200 and response.json()["path"] == f"/seq/{i}"
    elapsed = time.monotonic() - started
    assert elapsed < 10 and slowest < 2, (elapsed, slowest)
    if host.port is not None:
        # keep_conn off: every connection was closed after its request. On: nginx keeps some.
        deadline = time.monotonic() + 5
        while variant == "tcp" and established(host.port) and time.monotonic() < deadline:
            time.sleep(0.05)
        if variant == "tcp":
            assert established(host.port) == 0
        else:
            assert 1 <= established(host.port) <= 8


@pytest.mark.timeout(30)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("location", ["/unbuffered/", "/"])
def test_nginx_chunked_upload_reaches_the_app_in_full(
    nginx_site: NginxSite, variant: str, location: str
) -> None:
    data, body = chunked_body()
    with httpx.Client(base_url=nginx_site.urls[variant], timeout=10) as client:
        response = client.post(
            f"{location}upload", content=body, headers={"Content-Type": "application/octet-stream"}
        )
    assert response.status_code == 200, response.text
    answer = response.json()
    check_probe(answer, method="POST", path=f"{location}upload", body=data)
    params = answer["params"]
    assert params["HTTP_TRANSFER_ENCODING"] == "chunked"  # nginx passes the client's header on
    if location == "/unbuffered/":
        # Streamed: nginx does not know the length, CONTENT_LENGTH is empty.
        assert params["CONTENT_LENGTH"] == ""
        assert answer["headers"]["content-length"] is None
    else:
        # Buffered (the default): nginx read the whole body first and declares its length.
        assert params["CONTENT_LENGTH"] == str(len(data))
        assert answer["headers"]["content-length"] == str(len(data))


@pytest.mark.timeout(40)
@pytest.mark.parametrize("variant", VARIANTS)
def test_nginx_one_hundred_concurrent_clients(nginx_site: NginxSite, variant: str) -> None:
    async def run() -> list[tuple[int, httpx.Response]]:
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=nginx_site.urls[variant], timeout=20, limits=limits) as client:

            async def one(i: int) -> tuple[int, httpx.Response]:
                headers = {"X-Custom": f"client-{i}"}
                return i, await client.post(f"/c/{i}?sleep=0.05&i={i}", content=b"x" * i, headers=headers)

            return await asyncio.gather(*(one(i) for i in range(100)))

    started = time.monotonic()
    results = asyncio.run(run())
    assert time.monotonic() - started < 20
    for i, response in results:
        assert response.status_code == 200, response.text
        answer = response.json()
        check_probe(
            answer,
            method="POST",
            path=f"/c/{i}",
            query=f"sleep=0.05&i={i}",
            body=b"x" * i,
            headers={"x-custom": f"client-{i}"},
        )


@pytest.mark.timeout(30)
@pytest.mark.parametrize("variant", VARIANTS)
def test_nginx_client_abort_mid_response_leaves_the_host_healthy(nginx_site: NginxSite, variant: str) -> None:
    host = nginx_site.hosts[variant]
    port = int(nginx_site.urls[variant].rsplit(":", 1)[1])
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            # /live/: unbuffered, so the client reads "chunk 1" while the app is still streaming.
            sock.sendall(b"GET /live/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            received = b""
            for _ in range(100):
                if b"chunk 1" in received:
                    break
                data = sock.recv(4096)
                assert data, received
                received += data
            assert b"chunk 1" in received, received
            # Reset, not a polite close: the client is gone mid-response.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with httpx.Client(base_url=nginx_site.urls[variant], timeout=10) as client:
        time.sleep(0.6)  # The aborted streams would have ended by now.
        for i in range(10):
            response = client.get(f"/after-abort/{i}")
            assert response.status_code == 200 and response.json()["path"] == f"/after-abort/{i}"
        assert client.get("/stream").text.endswith("chunk 9\n")
    assert host.process.poll() is None
    log = host.log.read_text()
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log


@pytest.mark.timeout(30)
@pytest.mark.parametrize("variant", VARIANTS)
def test_nginx_streamed_response_timing(nginx_site: NginxSite, variant: str) -> None:
    # The app sends 10 small chunks, 50 ms apart. With fastcgi_buffering off, or with
    # fastcgi_keep_conn on, nginx passes each on as it comes. With neither (nginx's defaults),
    # nginx holds a small streamed response until the application ends it.
    def arrival_times(path: str) -> list[float]:
        started = time.monotonic()
        times = []
        with httpx.Client(base_url=nginx_site.urls[variant], timeout=10) as client:
            with client.stream("GET", path) as response:
                text = b""
                for data in response.iter_raw():
                    text += data
                    times.append(time.monotonic() - started)
        assert text == b"".join(b"chunk %d\n" % i for i in range(10))
        return times

    live = arrival_times("/live/stream")
    assert live[0] < 0.3 and len(live) >= 3, live
    default = arrival_times("/stream")
    if variant.endswith("keepalive"):
        assert default[0] < 0.3 and len(default) >= 3, default
    else:
        assert default[0] > 0.4, default


@pytest.mark.timeout(30)
def test_nginx_mount_with_root_path(nginx_site: NginxSite) -> None:
    # location /app/ { fastcgi_pass ...; } and `--root-path /app`: the app is mounted at /app.
    with httpx.Client(base_url=nginx_site.urls["tcp"], timeout=10) as client:
        answer = client.get("/app/x").json()
        check_probe(answer, method="GET", path="/app/x", root_path="/app")
        odd = client.post(f"/app{ODD_TARGET}?{ODD_QUERY}", content=b"body", headers=REQUEST_HEADERS).json()
        check_probe(
            odd,
            method="POST",
            path=f"/app{ODD_PATH}",
            root_path="/app",
            raw_path=f"/app{ODD_TARGET}",
            query=ODD_QUERY,
            body=b"body",
            headers={"x-custom": "probe-value", "cookie": "a=1; b=2"},
        )
        # A WSGI app (--mode wsgi --root-path /wsgi): SCRIPT_NAME is the mount, PATH_INFO the rest.
        environ = client.post(
            f"/wsgi{ODD_TARGET}?{ODD_QUERY}", content=b"hello", headers=REQUEST_HEADERS
        ).json()
        assert environ == {
            "REQUEST_METHOD": "POST",
            "SCRIPT_NAME": "/wsgi",
            "PATH_INFO": to_wsgi_string(ODD_PATH),
            "QUERY_STRING": ODD_QUERY,
            "CONTENT_TYPE": "text/plain; charset=utf-8",
            "HTTP_X_CUSTOM": "probe-value",
            "length": 5,
            "sha256": hashlib.sha256(b"hello").hexdigest(),
        }


@pytest.mark.timeout(30)
def test_nginx_scope_server_names_the_listening_address(nginx_site: NginxSite) -> None:
    # FAILS (bridges bug): nginx without `server_name` sends SERVER_NAME="" (and SERVER_ADDR=127.0.0.1);
    # gateway_variables_to_scope builds scope["server"] = ("", port). The ASGI spec's `server` is the
    # listening address: SERVER_ADDR should be used when SERVER_NAME is empty.
    port = int(nginx_site.urls["tcp"].rsplit(":", 1)[1])
    with httpx.Client(base_url=nginx_site.urls["tcp"], timeout=10) as client:
        answer = client.get("/server").json()
    assert answer["params"]["SERVER_NAME"] == "" and answer["params"]["SERVER_ADDR"] == "127.0.0.1"
    assert answer["server"] == ["127.0.0.1", port]


@pytest.mark.timeout(30)
def test_nginx_to_a_host_started_by_spawn_fcgi_on_fd_0(tmp_path: Path) -> None:
    # spawn-fcgi (like mod_fcgid or a supervisor) opens the listening socket and passes it as fd 0.
    spawn_fcgi = find_binary("spawn-fcgi")
    find_binary("nginx")
    write_probe(tmp_path)
    port = free_port()
    log = tmp_path / "spawned.log"
    command = [
        spawn_fcgi,
        "-n",  # no fork: spawn-fcgi binds, then execs the host (same PID)
        "-a",
        "127.0.0.1",
        "-p",
        str(port),
        "--",
        sys.executable,
        "-m",
        "bridges",
        "serve",
        f"{tmp_path / 'probe.py'}:app",
        "--protocol",
        "fastcgi",
        "--fd",
        "0",
    ]
    with contextlib.ExitStack() as stack:
        with log.open("wb") as out:
            process = subprocess.Popen(
                command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        stack.callback(stop_group, process)
        wait_for_port(port, process, log, timeout=20)
        (nginx_port,) = stack.enter_context(
            nginx(tmp_path / "nginx", [nginx_locations(f"127.0.0.1:{port}", False)])
        )
        with httpx.Client(base_url=f"http://127.0.0.1:{nginx_port}", timeout=10) as client:
            for i in range(5):
                answer = client.post(f"/fd/{i}?q=1", content=b"abc").json()
                check_probe(answer, method="POST", path=f"/fd/{i}", query="q=1", body=b"abc")
                assert answer["pid"] == process.pid


# ---- nginx upstream: two hosts, one killed ----------------------------------------------------


@pytest.mark.timeout(60)
def test_nginx_fails_over_when_a_host_is_killed(tmp_path: Path) -> None:
    find_binary("nginx")
    write_probe(tmp_path)
    with contextlib.ExitStack() as stack:
        victim = start_host(stack, tmp_path, "a")
        survivor = start_host(stack, tmp_path, "b")
        victim.wait_ready()
        survivor.wait_ready()
        upstream = (
            "    upstream app {\n"
            f"        server {victim.address};\n"
            f"        server {survivor.address};\n"
            "        keepalive 8;\n"
            "    }\n"
        )
        location = (
            "        location / {\n"
            "            include fastcgi_params;\n"
            "            fastcgi_pass app;\n"
            "            fastcgi_keep_conn on;\n"
            "            fastcgi_next_upstream error timeout;\n"
            "            fastcgi_connect_timeout 2s;\n"
            "        }\n"
        )
        (port,) = stack.enter_context(nginx(tmp_path / "nginx", [location], upstream))
        url = f"http://127.0.0.1:{port}"
        answered_by: Counter[int] = Counter()
        failures: list[Any] = []
        lock = threading.Lock()
        progress = threading.Semaphore(0)

        def load(worker: int) -> None:
            try:
                with httpx.Client(base_url=url, timeout=15) as client:
                    for i in range(50):
                        response = client.get(f"/work/{worker}/{i}?sleep=0.01")
                        with lock:
                            if (
                                response.status_code == 200
                                and response.json()["path"] == f"/work/{worker}/{i}"
                            ):
                                answered_by[response.json()["pid"]] += 1
                            else:
                                failures.append((response.status_code, response.text))
                        progress.release()
            except BaseException as exc:
                failures.append(exc)
                progress.release()

        threads = [threading.Thread(target=load, args=(n,), daemon=True) for n in range(4)]
        for thread in threads:
            thread.start()
        for _ in range(40):  # Mid-run: after 40 of the 200 requests.
            assert progress.acquire(timeout=20)
        with lock:
            before_kill = Counter(answered_by)
        os.kill(victim.process.pid, signal.SIGKILL)
        for thread in threads:
            thread.join(40)
            assert not thread.is_alive()
        assert victim.process.wait(10) == -signal.SIGKILL
        assert not failures, failures
        assert sum(answered_by.values()) == 200, answered_by
        assert before_kill[victim.process.pid] > 0 and before_kill[survivor.process.pid] > 0, before_kill
        with httpx.Client(base_url=url, timeout=10) as client:
            after = Counter(client.get("/after").json()["pid"] for _ in range(20))
        assert after == Counter({survivor.process.pid: 20})
        # nginx saw the victim fail (a reset or refused connection) and passed the requests on.
        errors = (tmp_path / "nginx" / "error.log").read_text()
        assert "[error]" in errors and "upstream" in errors, errors
        print(f"\nanswered before the kill: {dict(before_kill)}, in all: {dict(answered_by)}")


# ---- Apache mod_proxy_fcgi ---------------------------------------------------------------------


@dataclass
class ApacheSite:
    url: str
    hosts: dict[str, Host]
    docroot: Path


@pytest.fixture(scope="module")
def apache_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApacheSite]:
    find_binary("apache2", "httpd")
    workdir = tmp_path_factory.mktemp("apache")
    write_probe(workdir)
    with contextlib.ExitStack() as stack:
        # Apache's children may run as `nobody`: the unix socket lives in a directory they can enter.
        socket_dir = Path(tempfile.mkdtemp(prefix="bridges-fcgi-"))
        stack.callback(shutil.rmtree, socket_dir, ignore_errors=True)
        socket_dir.chmod(0o755)
        hosts = {
            "plain": start_host(stack, workdir, "plain"),
            "reuse": start_host(stack, workdir, "reuse"),
            "mnt": start_host(stack, workdir, "mnt", "--root-path", "/mnt"),
            "hm": start_host(stack, workdir, "hm", "--root-path", "/hm"),
            "sock": start_host(
                stack, workdir, "sock", "--root-path", "/sock", uds=True, socket_dir=socket_dir
            ),
        }
        for host in hosts.values():
            host.wait_ready()
        plain, reuse, mnt, hm = (hosts[name].port for name in ("plain", "reuse", "mnt", "hm"))
        directives = (
            f'ProxyPass "/app/" "fcgi://127.0.0.1:{plain}/"\n'
            f'ProxyPass "/reuse/" "fcgi://127.0.0.1:{reuse}/" enablereuse=on\n'
            f'ProxyPass "/mnt/" "fcgi://127.0.0.1:{mnt}/"\n'
            f'ProxyPass "/sock/" "unix:{hosts["sock"].uds}|fcgi://localhost/"\n'
            '<Location "/h/">\n'
            f'    SetHandler "proxy:fcgi://127.0.0.1:{plain}"\n'
            "</Location>\n"
            '<Location "/hm/">\n'
            f'    SetHandler "proxy:fcgi://127.0.0.1:{hm}"\n'
            "</Location>\n"
        )
        port, docroot = stack.enter_context(apache(workdir / "httpd", directives))
        yield ApacheSite(f"http://127.0.0.1:{port}", hosts, docroot)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("prefix", ["/app", "/reuse"])
def test_apache_proxypass_probe(apache_site: ApacheSite, prefix: str) -> None:
    port = int(apache_site.url.rsplit(":", 1)[1])
    with httpx.Client(base_url=apache_site.url, timeout=10) as client:
        response = client.post(
            f"{prefix}{ODD_TARGET}?{ODD_QUERY}", content=b"hello world", headers=REQUEST_HEADERS
        )
        assert response.status_code == 200, response.text
        answer = response.json()
        show_params("Apache (ProxyPass)", answer)
        # No mount point in the params: the path is the whole path, root_path "" (see /mnt/ below).
        check_probe(
            answer,
            method="POST",
            path=f"{prefix}{ODD_PATH}",
            raw_path=f"{prefix}{ODD_TARGET}",
            query=ODD_QUERY,
            body=b"hello world",
            headers={
                "host": f"127.0.0.1:{port}",
                "x-custom": "probe-value",
                "content-type": "text/plain; charset=utf-8",
                "cookie": "a=1; b=2",
                "content-length": "11",
            },
        )
        params = answer["params"]
        # Apache's quirks: SCRIPT_FILENAME names the backend URL, SCRIPT_NAME is the whole decoded
        # path, no PATH_INFO. REQUEST_URI is the client's request target.
        backend = apache_site.hosts[prefix.strip("/").replace("app", "plain")]
        assert params["SCRIPT_FILENAME"] == f"proxy:fcgi://127.0.0.1:{backend.port}{ODD_TARGET}"
        assert params["SCRIPT_NAME"] == to_wsgi_string(f"{prefix}{ODD_PATH}")
        assert "PATH_INFO" not in params
        assert params["REQUEST_URI"] == f"{prefix}{ODD_TARGET}?{ODD_QUERY}"

        assert client.get(f"{prefix}/status/418").status_code == 418
        assert client.get(f"{prefix}/stream").text == "".join(f"chunk {i}\n" for i in range(10))
        started = time.monotonic()
        for i in range(30):
            assert client.get(f"{prefix}/seq/{i}").json()["path"] == f"{prefix}/seq/{i}"
        assert time.monotonic() - started < 10


@pytest.mark.timeout(30)
def test_apache_chunked_upload_is_streamed_without_a_length(apache_site: ApacheSite) -> None:
    data, body = chunked_body()
    with httpx.Client(base_url=apache_site.url, timeout=10) as client:
        response = client.post(
            "/app/upload", content=body, headers={"Content-Type": "application/octet-stream"}
        )
    assert response.status_code == 200, response.text
    answer = response.json()
    check_probe(answer, method="POST", path="/app/upload", body=data)
    assert "CONTENT_LENGTH" not in answer["params"]
    assert answer["params"]["HTTP_TRANSFER_ENCODING"] == "chunked"
    assert answer["headers"]["content-length"] is None


@pytest.mark.timeout(30)
@pytest.mark.parametrize("mount", ["/mnt", "/sock"])
def test_apache_proxypass_mount_with_root_path(apache_site: ApacheSite, mount: str) -> None:
    # /mnt/: TCP; /sock/: "unix:/path|fcgi://localhost/". Both hosts run with --root-path.
    with httpx.Client(base_url=apache_site.url, timeout=10) as client:
        answer = client.get(f"{mount}/x", params={"q": "1"}).json()
        check_probe(answer, method="GET", path=f"{mount}/x", root_path=mount, query="q=1")
        odd = client.post(f"{mount}{ODD_TARGET}?{ODD_QUERY}", content=b"data", headers=REQUEST_HEADERS).json()
        check_probe(
            odd,
            method="POST",
            path=f"{mount}{ODD_PATH}",
            root_path=mount,
            raw_path=f"{mount}{ODD_TARGET}",
            query=ODD_QUERY,
            body=b"data",
            headers={"x-custom": "probe-value", "cookie": "a=1; b=2"},
        )


@pytest.mark.timeout(30)
def test_apache_sethandler_with_root_path(apache_site: ApacheSite) -> None:
    with httpx.Client(base_url=apache_site.url, timeout=10) as client:
        response = client.post(f"/hm{ODD_TARGET}?{ODD_QUERY}", content=b"payload", headers=REQUEST_HEADERS)
    answer = response.json()
    show_params("Apache (SetHandler)", answer)
    check_probe(
        answer,
        method="POST",
        path=f"/hm{ODD_PATH}",
        root_path="/hm",
        raw_path=f"/hm{ODD_TARGET}",
        query=ODD_QUERY,
        body=b"payload",
        headers={
            "x-custom": "probe-value",
            "cookie": "a=1; b=2",
            "content-type": "text/plain; charset=utf-8",
        },
    )
    # SetHandler: Apache splits the path at the first segment missing from DocumentRoot.
    assert answer["params"]["SCRIPT_NAME"] == "/hm"
    assert answer["params"]["PATH_INFO"] == to_wsgi_string(ODD_PATH)


@pytest.mark.timeout(30)
def test_apache_sethandler_root_path_does_not_depend_on_documentroot(apache_site: ApacheSite) -> None:
    # FAILS (bridges bug). With `SetHandler "proxy:fcgi://..."` Apache computes SCRIPT_NAME and
    # PATH_INFO by walking DocumentRoot: SCRIPT_NAME ends at the first segment that is not an
    # existing directory. gateway_variables_to_scope takes SCRIPT_NAME as root_path whenever
    # SCRIPT_NAME + PATH_INFO spell the path, so root_path depends on the files on disk: with a
    # directory DocumentRoot/h, a request for /h/users/42 gets root_path "/h/users", and the app
    # routes "/42" (without that directory: root_path "/h"). Apache's mod_proxy_fcgi marks its
    # requests with SCRIPT_FILENAME "proxy:fcgi://..."; their SCRIPT_NAME is no mount point, so the
    # scope should be root_path "" (or --root-path) and path "/h/users/42", as for ProxyPass.
    (apache_site.docroot / "h").mkdir(exist_ok=True)
    with httpx.Client(base_url=apache_site.url, timeout=10) as client:
        answer = client.get("/h/users/42").json()
    params = answer["params"]
    assert params["SCRIPT_FILENAME"].startswith("proxy:fcgi://")
    assert (params["SCRIPT_NAME"], params["PATH_INFO"]) == ("/h/users", "/42")  # what Apache sends
    assert answer["path"] == "/h/users/42"
    assert answer["root_path"] == "", "root_path taken from Apache's DocumentRoot walk"


# ---- lighttpd mod_fastcgi ----------------------------------------------------------------------


@dataclass
class LighttpdSite:
    url: str
    hosts: dict[str, Host]
    root_path_url: str  # "/" to a host started with --root-path /


@pytest.fixture(scope="module")
def lighttpd_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LighttpdSite]:
    find_binary("lighttpd")
    workdir = tmp_path_factory.mktemp("lighttpd")
    write_probe(workdir)
    with contextlib.ExitStack() as stack:
        hosts = {
            "app": start_host(stack, workdir, "app"),
            "root": start_host(stack, workdir, "root", uds=True),
            "root-path": start_host(stack, workdir, "root-path", "--root-path", "/", uds=True),
        }
        for host in hosts.values():
            host.wait_ready()
        # A second listening socket (bound before the first one answers) whose "/" goes to a host
        # started with --root-path /, without fix-root-scriptname.
        second = free_port()
        directives = (
            "fastcgi.server = (\n"
            f'    "/app" => (( "host" => "127.0.0.1", "port" => {hosts["app"].port},'
            ' "check-local" => "disable" )),\n'
            f'    "/" => (( "socket" => "{hosts["root"].uds}", "check-local" => "disable",'
            ' "fix-root-scriptname" => "enable" )),\n'
            ")\n"
            f'$SERVER["socket"] == "127.0.0.1:{second}" {{\n'
            f'    fastcgi.server = ( "/" => (( "socket" => "{hosts["root-path"].uds}",'
            ' "check-local" => "disable" )) )\n'
            "}\n"
        )
        port = stack.enter_context(lighttpd(workdir / "lighttpd", directives))
        yield LighttpdSite(f"http://127.0.0.1:{port}", hosts, f"http://127.0.0.1:{second}")


@pytest.mark.timeout(30)
def test_lighttpd_probe(lighttpd_site: LighttpdSite) -> None:
    port = int(lighttpd_site.url.rsplit(":", 1)[1])
    with httpx.Client(base_url=lighttpd_site.url, timeout=10) as client:
        response = client.post(
            f"/app{ODD_TARGET}?{ODD_QUERY}", content=b"hello world", headers=REQUEST_HEADERS
        )
        assert response.status_code == 200, response.text
        answer = response.json()
        show_params("lighttpd", answer)
        # lighttpd sends the mount point: SCRIPT_NAME "/app", PATH_INFO the rest.
        check_probe(
            answer,
            method="POST",
            path=f"/app{ODD_PATH}",
            root_path="/app",
            raw_path=f"/app{ODD_TARGET}",
            query=ODD_QUERY,
            body=b"hello world",
            headers={
                "host": f"127.0.0.1:{port}",
                "x-custom": "probe-value",
                "content-type": "text/plain; charset=utf-8",
                "cookie": "a=1; b=2",
                "content-length": "11",
            },
        )
        params = answer["params"]
        assert (params["SCRIPT_NAME"], params["PATH_INFO"]) == ("/app", to_wsgi_string(ODD_PATH))
        assert params["HTTP_CONTENT_LENGTH"] == "11"  # lighttpd also passes the header itself
        assert client.get("/app/status/418").status_code == 418
        assert client.get("/app/stream").text == "".join(f"chunk {i}\n" for i in range(10))
        started = time.monotonic()
        for i in range(30):
            assert client.get(f"/app/seq/{i}").json()["path"] == f"/app/seq/{i}"
        assert time.monotonic() - started < 10
        # The prefix "/app" is a plain string prefix: /apple goes to the app too, unmounted.
        apple = client.get("/apple").json()
        assert (apple["params"]["SCRIPT_NAME"], apple["params"].get("PATH_INFO")) == ("/apple", None)
        check_probe(apple, method="GET", path="/apple")


@pytest.mark.timeout(30)
def test_lighttpd_chunked_upload_is_buffered_with_a_length(lighttpd_site: LighttpdSite) -> None:
    data, body = chunked_body()
    with httpx.Client(base_url=lighttpd_site.url, timeout=10) as client:
        response = client.post(
            "/app/upload", content=body, headers={"Content-Type": "application/octet-stream"}
        )
    assert response.status_code == 200, response.text
    answer = response.json()
    check_probe(answer, method="POST", path="/app/upload", root_path="/app", body=data)
    assert answer["params"]["CONTENT_LENGTH"] == str(len(data))
    assert "HTTP_TRANSFER_ENCODING" not in answer["params"]


@pytest.mark.timeout(30)
def test_lighttpd_root_mount_with_fix_root_scriptname(lighttpd_site: LighttpdSite) -> None:
    # "/" with "fix-root-scriptname": SCRIPT_NAME "" and PATH_INFO the whole path. (Without it
    # lighttpd sends SCRIPT_NAME "/x", PATH_INFO "/y" for /x/y, which reads as a mount at /x.)
    with httpx.Client(base_url=lighttpd_site.url, timeout=10) as client:
        answer = client.post(f"{ODD_TARGET}?{ODD_QUERY}", content=b"root", headers=REQUEST_HEADERS).json()
    assert (answer["params"]["SCRIPT_NAME"], answer["params"]["PATH_INFO"]) == ("", to_wsgi_string(ODD_PATH))
    check_probe(
        answer,
        method="POST",
        path=ODD_PATH,
        raw_path=ODD_TARGET,
        query=ODD_QUERY,
        body=b"root",
        headers={"x-custom": "probe-value", "cookie": "a=1; b=2"},
    )


@pytest.mark.timeout(30)
def test_lighttpd_root_mount_with_root_path_option(lighttpd_site: LighttpdSite) -> None:
    # "/" without fix-root-scriptname: lighttpd splits /x/y into SCRIPT_NAME "/x", PATH_INFO "/y".
    # `--root-path /` tells bridges the app is at the root.
    with httpx.Client(base_url=lighttpd_site.root_path_url, timeout=10) as client:
        answer = client.get("/x/y", params={"q": "1"}).json()
    assert (answer["params"]["SCRIPT_NAME"], answer["params"]["PATH_INFO"]) == ("/x", "/y")
    check_probe(answer, method="GET", path="/x/y", query="q=1")
