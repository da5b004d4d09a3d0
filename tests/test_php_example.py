"""examples/php_under_asgi runs as its README says: php-fpm mounted at /legacy in a Starlette app."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from real_hosts import php_fpm

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "php_under_asgi"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


COMMAND = [sys.executable, "-m", "bridges", "serve", "examples/php_under_asgi/app.py:app", "--port"]


def test_php_mounted_under_starlette(tmp_path: Path) -> None:
    with php_fpm(tmp_path, EXAMPLE / "php") as socket_path:
        port = free_port()
        process = subprocess.Popen(
            [*COMMAND, str(port)],
            cwd=ROOT,
            env={**os.environ, "PHP_FPM": f"unix:{socket_path}"},
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    home = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise
                    time.sleep(0.1)
            assert home.json()["legacy"] == "/legacy/"
            legacy = httpx.get(f"http://127.0.0.1:{port}/legacy/?name=you", timeout=10)
            assert legacy.status_code == 200
            assert legacy.text == "legacy PHP at /legacy/index.php (request /legacy/?name=you)\nhello, you\n"
        finally:
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=20)
        assert process.returncode == 0, stderr
