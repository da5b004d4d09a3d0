"""Test helpers: run the built-in server in a thread on a free port, and talk raw HTTP to it."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from bridges.config import Config
from bridges.server import Server


@contextlib.contextmanager
def running_server(app: Any, **options: Any) -> Iterator[Server]:
    """Serve `app` on 127.0.0.1 (a free port) in a background thread; stop it on exit."""
    options.setdefault("port", 0)
    options.setdefault("access_log", False)
    options.setdefault("timeout_graceful_shutdown", 5.0)
    server = Server(Config(app=app, **options))
    errors: list[BaseException] = []

    def target() -> None:
        try:
            server.run()
        except BaseException as exc:  # Surface start-up errors in the test thread.
            errors.append(exc)
            server.started.set()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    assert server.started.wait(10), "server did not start"
    if errors:
        raise errors[0]
    try:
        yield server
    finally:
        server.request_exit()
        thread.join(15)
        assert not thread.is_alive(), "server did not stop"


def port_of(server: Server) -> int:
    return int(server.sockets[0].getsockname()[1])


def raw_request(port: int, data: bytes, timeout: float = 3.0, wait_close: bool = True) -> bytes:
    """Send raw bytes, return everything received until the server closes (or `timeout`)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        return read_until_close(sock, timeout) if wait_close else sock.recv(65536)


def read_until_close(sock: socket.socket, timeout: float = 3.0) -> bytes:
    sock.settimeout(timeout)
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/") else 0


def statuses(response: bytes) -> list[int]:
    """The status codes of every response in a byte stream (pipelined responses)."""
    found = []
    index = response.find(b"HTTP/1.")
    while index != -1:
        found.append(int(response[index + 9 : index + 12]))
        index = response.find(b"HTTP/1.", index + 12)
    return found
