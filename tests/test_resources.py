"""The server under resource pressure, in a real server process whose RSS we read from /proc.

- 10,000 idle connections are held with bounded memory, and a new client is still served fast.
- A slow reader downloading 1 GB, and an uploader sending 1 GB, keep RSS within 50 MB of baseline.
"""

from __future__ import annotations

import contextlib
import resource
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.timeout(120), pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")]

GIB = 1024**3
APP = textwrap.dedent(
    """
    CHUNK = b"x" * 65536

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        if scope["path"] == "/download":
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-length", str(1024**3).encode())]})
            for _ in range(1024**3 // 65536):
                await send({"type": "http.response.body", "body": CHUNK, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        total = 0
        while True:
            message = await receive()
            total += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = str(total).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
    """
)


def raise_fd_limit(wanted: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(max(soft, wanted), hard) if hard != resource.RLIM_INFINITY else max(soft, wanted)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def server_process(tmp_path: Path, *extra: str) -> Iterator[tuple[int, int]]:
    (tmp_path / "resapp.py").write_text(APP)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bridges", "serve", "resapp:app", "--port", str(port), "--no-access-log",
         "--log-level", "warning", "--backlog", "4096", *extra],
        cwd=tmp_path,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise AssertionError("server did not start") from None
                time.sleep(0.05)
        yield process.pid, port
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def get(port: int, path: str = "/") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        return data


def test_ten_thousand_idle_connections(tmp_path: Path) -> None:
    count = 10_000
    if raise_fd_limit(count + 200) < count + 200:
        pytest.skip("the fd limit here is below 10,200")
    # The server process inherits our raised limit.
    patient = ("--timeout-header-read", "120", "--timeout-keep-alive", "120")
    with server_process(tmp_path, *patient) as (pid, port):
        get(port)
        baseline = rss_bytes(pid)
        idle: list[socket.socket] = []
        try:
            for _ in range(count):
                idle.append(socket.create_connection(("127.0.0.1", port), timeout=10))
            time.sleep(1.0)  # Let the server accept them all.
            held = rss_bytes(pid) - baseline
            start = time.monotonic()
            response = get(port)
            elapsed = time.monotonic() - start
        finally:
            for sock in idle:
                sock.close()
    assert response.startswith(b"HTTP/1.1 200 ")
    print(f"10k idle: {held / 2**20:.1f} MiB held, new client served in {elapsed * 1000:.0f} ms")
    assert elapsed < 1.0, f"a new client waited {elapsed:.2f}s behind 10,000 idle connections"
    # Bounded: a few KiB per idle connection (measured ~2-3 KiB), never megabytes.
    assert held < 100 * 1024 * 1024, f"{held / 2**20:.0f} MiB for {count} idle connections"


def watch_rss(pid: int, stop: threading.Event, peak: list[int]) -> None:
    while not stop.is_set():
        with contextlib.suppress(OSError):
            peak[0] = max(peak[0], rss_bytes(pid))
        time.sleep(0.02)


def test_slow_reader_of_one_gigabyte(tmp_path: Path) -> None:
    with server_process(tmp_path) as (pid, port):
        get(port, "/upload")  # Warm up: the app and every code path are loaded.
        baseline = rss_bytes(pid)
        peak = [baseline]
        stop = threading.Event()
        watcher = threading.Thread(target=watch_rss, args=(pid, stop, peak))
        watcher.start()
        received = 0
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
                sock.sendall(b"GET /download HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                reads = 0
                while chunk := sock.recv(256 * 1024):
                    received += len(chunk)
                    reads += 1
                    if reads % 16 == 0:
                        time.sleep(0.002)  # Slower than the server can produce.
        finally:
            stop.set()
            watcher.join()
    print(f"download: peak RSS growth {(peak[0] - baseline) / 2**20:.1f} MiB")
    assert received > GIB  # The whole body plus the head.
    growth = peak[0] - baseline
    assert growth < 50 * 1024 * 1024, f"RSS grew {growth / 2**20:.1f} MiB while streaming 1 GiB"


def test_uploader_of_one_gigabyte(tmp_path: Path) -> None:
    with server_process(tmp_path) as (pid, port):
        get(port, "/upload")
        baseline = rss_bytes(pid)
        peak = [baseline]
        stop = threading.Event()
        watcher = threading.Thread(target=watch_rss, args=(pid, stop, peak))
        watcher.start()
        block = b"u" * (1024 * 1024)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                sock.sendall(
                    b"POST /upload HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                    b"Content-Length: %d\r\n\r\n" % GIB
                )
                for _ in range(1024):
                    sock.sendall(block)
                response = b""
                while chunk := sock.recv(65536):
                    response += chunk
        finally:
            stop.set()
            watcher.join()
    print(f"upload: peak RSS growth {(peak[0] - baseline) / 2**20:.1f} MiB")
    assert response.startswith(b"HTTP/1.1 200 ") and response.endswith(str(GIB).encode())
    growth = peak[0] - baseline
    assert growth < 50 * 1024 * 1024, f"RSS grew {growth / 2**20:.1f} MiB while receiving 1 GiB"
