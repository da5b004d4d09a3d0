"""A real nginx in front of two `bridge serve` instances: how a deployment grows past one process.

The setup is docs/behind-nginx.md's, read from the page: the two instance commands (examples/
asgi_hello with `--proxy-headers`) and the nginx.conf. Only the ports and nginx's directory
change (free ports of 127.0.0.1, a directory in tmp_path). The tests check that requests spread
over both instances, that the app sees the client address nginx forwards (and not one the client
forged), that WebSockets pass through, and that nginx fails over when one instance is killed.

nginx is not a Python package: without it the tests skip locally, but fail when CI=true.
Install it with `apt-get install nginx` (the system service need not run; the test starts its own).
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import websockets
from conftest import find_binary

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "behind-nginx.md"
START_TIMEOUT = 20.0
CLIENT_ADDRESS = "127.0.0.2"  # Another loopback address: the client nginx sees is not the proxy.
DOC_PREFIX = "/tmp/bridges-nginx"
DOC_LISTEN = "listen 127.0.0.1:8080;"
DOC_PORTS = (8001, 8002)


def doc_nginx_conf() -> str:
    """The first nginx block of the page: the complete nginx.conf."""
    blocks = re.findall(r"```nginx\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.DOTALL)
    assert blocks, f"no nginx block in {DOC}"
    return str(blocks[0])


def doc_instance_commands() -> list[list[str]]:
    """The commands that start the instances on ports 8001 and 8002."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.DOTALL):
        for line in block.splitlines():
            if line.startswith(".venv/bin/python -m bridges serve ") and "--host" not in line:
                commands.append(shlex.split(line))
    assert [argv[argv.index("--port") + 1] for argv in commands] == [str(p) for p in DOC_PORTS], commands
    return commands


def private_conf(prefix: Path, port: int, upstream_ports: list[int]) -> str:
    """The page's nginx.conf with our directory and ports (each replaced text must be there)."""
    conf = doc_nginx_conf()
    replacements = {DOC_LISTEN: f"listen 127.0.0.1:{port};"}
    for doc_port, real in zip(DOC_PORTS, upstream_ports, strict=True):
        replacements[f"server 127.0.0.1:{doc_port};"] = f"server 127.0.0.1:{real};"
    for old, new in replacements.items():
        assert conf.count(old) == 1, f"{old!r} should appear once in the page's nginx.conf"
        conf = conf.replace(old, new)
    assert DOC_PREFIX in conf
    return conf.replace(DOC_PREFIX, str(prefix))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_http(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{process.args} exited with {process.returncode}:\n{log.read_text()}")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within {START_TIMEOUT}s:\n{log.read_text()}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, wait, SIGKILL; then the rest of the process group we created (nginx's worker)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@dataclass
class Deployment:
    url: str  # nginx
    instances: list[subprocess.Popen[bytes]]  # the two bridges servers
    logs: list[Path]
    nginx_dir: Path

    def client(self) -> httpx.Client:
        """A client that reaches nginx from CLIENT_ADDRESS."""
        transport = httpx.HTTPTransport(local_address=CLIENT_ADDRESS)
        return httpx.Client(base_url=self.url, transport=transport, timeout=10)


def check_client_address() -> None:
    try:
        with socket.socket() as sock:
            sock.bind((CLIENT_ADDRESS, 0))
    except OSError as exc:
        pytest.fail(f"cannot bind {CLIENT_ADDRESS} (the whole of 127.0.0.0/8 is loopback on Linux): {exc}")


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    nginx = find_binary("nginx")  # Skips locally when missing; fails under CI=true.
    check_client_address()
    started: list[subprocess.Popen[bytes]] = []
    try:
        ports = [free_port(), free_port()]
        instances, logs = [], []
        for name, argv, port in zip("ab", doc_instance_commands(), ports, strict=True):
            argv[argv.index("--port") + 1] = str(port)
            log = tmp_path / f"bridge-{name}.log"
            with log.open("wb") as out:
                process = subprocess.Popen(
                    argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                )
            started.append(process)
            instances.append(process)
            logs.append(log)
        for process, port, log in zip(instances, ports, logs, strict=True):
            wait_for_http(f"http://127.0.0.1:{port}/", process, log)

        nginx_dir = tmp_path / "nginx"
        nginx_dir.mkdir()
        port = free_port()
        conf = nginx_dir / "nginx.conf"
        conf.write_text(private_conf(nginx_dir, port, ports))
        error_log = nginx_dir / "error.log"
        command = [nginx, "-p", str(nginx_dir), "-c", str(conf), "-e", str(error_log)]
        if os.geteuid() == 0:
            # As root, nginx's worker would run as `nobody`, with no access to tmp_path.
            command += ["-g", "user root;"]
        checked = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=30)
        assert checked.returncode == 0, checked.stderr
        nginx_log = nginx_dir / "stderr.log"
        with nginx_log.open("wb") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        started.append(process)
        wait_for_http(f"http://127.0.0.1:{port}/", process, error_log)
        yield Deployment(f"http://127.0.0.1:{port}", instances, logs, nginx_dir)
    finally:
        for process in reversed(started):
            stop(process)


def test_requests_spread_over_both_instances(deployment: Deployment) -> None:
    pids = [process.pid for process in deployment.instances]
    seen: dict[int, int] = {}
    with deployment.client() as client:
        for _ in range(40):
            response = client.get("/json")
            assert response.status_code == 200
            pid = response.json()["pid"]
            seen[pid] = seen.get(pid, 0) + 1
    assert set(seen) == set(pids), seen
    assert min(seen.values()) >= 10, seen  # Round robin: about half each.


def test_app_sees_the_client_address_nginx_forwarded(deployment: Deployment) -> None:
    with deployment.client() as client:
        answer = client.get("/json").json()
        # A client cannot choose its address: nginx appends the real one, and only 127.0.0.1 (nginx)
        # is trusted, so the right-most untrusted address wins.
        forged = client.get("/json", headers={"X-Forwarded-For": "203.0.113.9"}).json()
    assert answer["client"] == CLIENT_ADDRESS
    assert answer["scheme"] == "http"
    assert forged["client"] == CLIENT_ADDRESS
    # The access log of the instance that answered shows the forwarded address too.
    logs = "".join(log.read_text() for log in deployment.logs)
    assert f'{CLIENT_ADDRESS}:0 - "GET /json HTTP/1.1" 200' in logs, logs


def test_proxy_headers_from_an_untrusted_peer_are_ignored(deployment: Deployment) -> None:
    # Straight to an instance, from CLIENT_ADDRESS: not in --forwarded-allow-ips, so not believed.
    args = [str(arg) for arg in deployment.instances[0].args]
    port = int(args[args.index("--port") + 1])
    transport = httpx.HTTPTransport(local_address=CLIENT_ADDRESS)
    with httpx.Client(transport=transport, timeout=10) as client:
        answer = client.get(
            f"http://127.0.0.1:{port}/json",
            headers={"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"},
        ).json()
    assert answer["client"] == CLIENT_ADDRESS
    assert answer["scheme"] == "http"


def test_websocket_through_nginx(deployment: Deployment) -> None:
    url = deployment.url.replace("http://", "ws://") + "/ws"

    async def talk() -> list[str]:
        answers = []
        for i in range(4):  # Several connections: both instances.
            async with websockets.connect(url, open_timeout=10, close_timeout=5) as ws:
                await ws.send(f"message {i}")
                answers.append(await asyncio.wait_for(ws.recv(), 10))
        return answers

    assert asyncio.run(talk()) == [f"echo: message {i}" for i in range(4)]


def test_nginx_fails_over_when_an_instance_dies(deployment: Deployment) -> None:
    victim, survivor = deployment.instances
    with deployment.client() as client:
        before = {client.get("/json").json()["pid"] for _ in range(10)}
        assert before == {victim.pid, survivor.pid}
        # nginx now holds idle keep-alive connections to both instances. Kill one mid-run.
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=10)
        answered_by = []
        for _ in range(50):
            response = client.get("/json")
            assert response.status_code == 200, response.text
            answered_by.append(response.json()["pid"])
    assert set(answered_by) == {survivor.pid}
    # nginx noticed (a refused connect, or a cached connection that was reset) and moved on.
    errors = (deployment.nginx_dir / "error.log").read_text()
    assert "[error]" in errors and "upstream" in errors, errors


def test_no_request_fails_when_an_instance_dies_under_load(deployment: Deployment) -> None:
    # Four clients keep requesting while one instance is SIGKILLed. A GET that was in flight on it
    # is retried on the other one (proxy_next_upstream error), so every request gets its answer.
    # (Not so a response that had started to stream: nginx cannot retry what it began to send.)
    victim, survivor = deployment.instances
    statuses: list[int] = []
    failures: list[BaseException] = []
    progress = threading.Semaphore(0)

    def load() -> None:
        try:
            with deployment.client() as client:
                for _ in range(60):
                    statuses.append(client.get("/json").status_code)
                    progress.release()
        except BaseException as exc:
            failures.append(exc)
            progress.release()

    threads = [threading.Thread(target=load, daemon=True) for _ in range(4)]
    for thread in threads:
        thread.start()
    for _ in range(40):  # Mid-run: after 40 of the 240 requests.
        assert progress.acquire(timeout=20)
    os.kill(victim.pid, signal.SIGKILL)
    for thread in threads:
        thread.join(60)
        assert not thread.is_alive()
    assert not failures, failures
    assert statuses == [200] * 240
    assert victim.wait(timeout=10) == -signal.SIGKILL
    with deployment.client() as client:
        after = {client.get("/json").json()["pid"] for _ in range(50)}
    assert after == {survivor.pid}


def test_the_page_shows_the_configuration_tested() -> None:
    conf = doc_nginx_conf()
    for directive in (
        "worker_processes 1;",
        "daemon off;",
        "keepalive 16;",
        "proxy_http_version 1.1;",
        'proxy_set_header Connection "";',
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        "proxy_next_upstream error timeout;",
    ):
        assert directive in conf, directive
    for argv in doc_instance_commands():
        assert argv[:5] == [".venv/bin/python", "-m", "bridges", "serve", "examples/asgi_hello/app.py:app"]
        assert "--proxy-headers" in argv
