"""Serving on sockets someone else opened: systemd socket activation (LISTEN_FDS) and `--fd N`.

Socket activation is simulated for real. The test opens the listening sockets, as systemd does,
and spawns the server through a small `python -c` wrapper that places them at fd 3, 4, ... and
sets LISTEN_FDS and LISTEN_PID. LISTEN_PID must be the pid of the process that reads it, which
only the child knows; systemd sets it between fork and exec, the wrapper just before calling
`bridges.__main__.main`. The command line names a `--port` that another socket already holds,
so the server fails unless it ignores `--port` in favour of the sockets it was given.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.timeout(60)

APP_SOURCE = textwrap.dedent(
    """
    import json
    import os

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        body = json.dumps({"pid": os.getpid(), "server": scope["server"]}).encode()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    """
)

# systemd's side of the handshake, in the child: the inherited sockets go to fds 3, 4, ... (first
# moved out of the way, in case one of them already sits at a target number), then LISTEN_FDS
# and LISTEN_PID are set and the CLI runs in this very process.
WRAPPER = textwrap.dedent(
    """
    import fcntl, os, sys
    fds = [int(fd) for fd in sys.argv[1].split(",")]
    moved = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in fds]
    for fd in fds:
        os.close(fd)
    for index, fd in enumerate(moved):
        os.dup2(fd, 3 + index)
        os.close(fd)
    os.environ["LISTEN_FDS"] = str(len(fds))
    os.environ["LISTEN_PID"] = str(os.getpid())
    from bridges.__main__ import main
    sys.exit(main(sys.argv[2:]))
    """
)


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "activated.py").write_text(APP_SOURCE)
    return tmp_path


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port that is taken: a server that tries to bind it fails (exit status 2)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield sock.getsockname()[1]


def tcp_listener() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


def stop(process: subprocess.Popen[str]) -> tuple[int, str]:
    """SIGTERM, wait, SIGKILL if need be. Returns the exit status and stderr."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        _, stderr = process.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        _, stderr = process.communicate(timeout=5)
    return process.returncode, stderr


def get(
    url: str, process: subprocess.Popen[str], transport: httpx.HTTPTransport | None = None
) -> httpx.Response:
    """GET `url`, retrying (bounded) while the server starts."""
    deadline = time.monotonic() + 15
    with httpx.Client(transport=transport, timeout=5) as client:
        while True:
            try:
                return client.get(url)
            except httpx.TransportError:
                if process.poll() is not None:
                    stderr = process.communicate()[1]
                    raise AssertionError(f"server exited with {process.returncode}: {stderr}") from None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


def activate(app_dir: Path, sockets: list[socket.socket], *args: str) -> subprocess.Popen[str]:
    fds = [sock.fileno() for sock in sockets]
    process = subprocess.Popen(
        [sys.executable, "-c", WRAPPER, ",".join(map(str, fds)), "serve", "activated:app", *args],
        cwd=app_dir,
        pass_fds=fds,
        stderr=subprocess.PIPE,
        text=True,
    )
    for sock in sockets:
        sock.close()  # The server holds them now; the requests below can only reach it.
    return process


def test_socket_activation_serves_on_fd_3_and_ignores_port(app_dir: Path, busy_port: int) -> None:
    listener = tcp_listener()
    port = listener.getsockname()[1]
    process = activate(app_dir, [listener], "--port", str(busy_port))
    try:
        first = get(f"http://127.0.0.1:{port}/", process)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            answers = [client.get(f"/{i}").json() for i in range(20)]
    finally:
        code, stderr = stop(process)
    assert first.status_code == 200
    assert first.json() == {"pid": process.pid, "server": ["127.0.0.1", port]}
    assert all(answer["pid"] == process.pid for answer in answers)
    assert code == 0, stderr
    assert f"on http://127.0.0.1:{port} " in stderr
    assert str(busy_port) not in stderr


def test_socket_activation_with_two_sockets_tcp_and_unix(
    app_dir: Path, tmp_path: Path, busy_port: int
) -> None:
    listener = tcp_listener()
    port = listener.getsockname()[1]
    path = str(tmp_path / "app.sock")
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(path)
    unix.listen(128)
    process = activate(app_dir, [listener, unix], "--port", str(busy_port))
    try:
        over_tcp = get(f"http://127.0.0.1:{port}/", process).json()
        over_unix = get("http://localhost/", process, httpx.HTTPTransport(uds=path)).json()
    finally:
        code, stderr = stop(process)
    assert over_tcp == {"pid": process.pid, "server": ["127.0.0.1", port]}
    assert over_unix == {"pid": process.pid, "server": [path, None]}
    assert code == 0, stderr
    assert f"on http://127.0.0.1:{port} " in stderr and f"on unix:{path} " in stderr


def test_socket_activation_with_workers(app_dir: Path, busy_port: int) -> None:
    listener = tcp_listener()
    port = listener.getsockname()[1]
    process = activate(app_dir, [listener], "--port", str(busy_port), "--workers", "2")
    try:
        pids = {get(f"http://127.0.0.1:{port}/{i}", process).json()["pid"] for i in range(20)}
    finally:
        code, stderr = stop(process)
    assert pids and process.pid not in pids  # Workers answer, not the supervisor.
    assert code == 0, stderr
    assert stderr.count("started worker") == 2


def test_listen_fds_for_another_pid_is_ignored(app_dir: Path) -> None:
    # LISTEN_PID names a different process (say, our parent's): the variables are not for us, and
    # fd 3 is not a socket we were given. The server binds --port as usual.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "LISTEN_FDS": "1", "LISTEN_PID": str(os.getpid())}
    process = subprocess.Popen(
        [sys.executable, "-m", "bridges", "serve", "activated:app", "--port", str(port)],
        cwd=app_dir,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        answer = get(f"http://127.0.0.1:{port}/", process).json()
    finally:
        code, stderr = stop(process)
    assert answer == {"pid": process.pid, "server": ["127.0.0.1", port]}
    assert code == 0, stderr


def test_fd_option_serves_on_an_inherited_socket(app_dir: Path, busy_port: int) -> None:
    listener = tcp_listener()
    port = listener.getsockname()[1]
    fd = listener.fileno()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bridges",
            "serve",
            "activated:app",
            "--fd",
            str(fd),
            "--port",
            str(busy_port),
        ],
        cwd=app_dir,
        pass_fds=[fd],
        stderr=subprocess.PIPE,
        text=True,
    )
    listener.close()
    try:
        with httpx.Client(timeout=5) as client:
            first = get(f"http://127.0.0.1:{port}/", process)
            more = [client.get(f"http://127.0.0.1:{port}/{i}").json() for i in range(20)]
    finally:
        code, stderr = stop(process)
    assert first.json() == {"pid": process.pid, "server": ["127.0.0.1", port]}
    assert all(answer["pid"] == process.pid for answer in more)
    assert code == 0, stderr
    assert f"on http://127.0.0.1:{port} " in stderr


def test_fd_option_with_a_unix_socket(app_dir: Path, tmp_path: Path) -> None:
    path = str(tmp_path / "fd.sock")
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(path)
    unix.listen(16)
    fd = unix.fileno()
    process = subprocess.Popen(
        [sys.executable, "-m", "bridges", "serve", "activated:app", "--fd", str(fd)],
        cwd=app_dir,
        pass_fds=[fd],
        stderr=subprocess.PIPE,
        text=True,
    )
    unix.close()
    try:
        answer = get("http://localhost/", process, httpx.HTTPTransport(uds=path)).json()
    finally:
        code, stderr = stop(process)
    assert answer == {"pid": process.pid, "server": [path, None]}
    assert code == 0, stderr


@pytest.mark.parametrize("fd", ["0", "99"])
def test_fd_option_that_is_not_a_socket_is_exit_2(app_dir: Path, fd: str) -> None:
    # fd 0 is the null device here (not a socket); fd 99 is not open at all.
    done = subprocess.run(
        [sys.executable, "-m", "bridges", "serve", "activated:app", "--fd", fd],
        cwd=app_dir,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2, done.stderr
    assert f"--fd {fd}: not a socket" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
