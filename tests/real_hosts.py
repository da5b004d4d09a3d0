"""Start real FastCGI/CGI hosts (php-fpm, fcgiwrap) with private configs; stop them by PID."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from conftest import find_binary


def wait_for_socket(path: Path, process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{process.args!r} did not create {path}")
        time.sleep(0.05)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a host and every process it forked (each host runs in its own process group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # Children that outlived their parent.


@contextlib.contextmanager
def php_fpm(workdir: Path, docroot: Path, children: int = 4) -> Iterator[Path]:
    """A php-fpm master listening on a unix socket, running as the current user."""
    binary = find_binary("php-fpm", "php-fpm8.2", "php-fpm8.3", "php-fpm8.1")
    socket_path = workdir / "php-fpm.sock"
    config = workdir / "php-fpm.conf"
    user = "root" if os.geteuid() == 0 else ""
    config.write_text(
        "[global]\n"
        f"pid = {workdir / 'php-fpm.pid'}\n"
        f"error_log = {workdir / 'php-fpm.log'}\n"
        "daemonize = no\n"
        "[www]\n" + (f"user = {user}\ngroup = {user}\n" if user else "") + f"listen = {socket_path}\n"
        "pm = static\n"
        f"pm.max_children = {children}\n"
        "catch_workers_output = yes\n"
        "clear_env = yes\n"
    )
    command = [binary, "-F", "-y", str(config)] + (["-R"] if user else [])
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        wait_for_socket(socket_path, process)
        yield socket_path
    finally:
        stop(process)


@contextlib.contextmanager
def fcgiwrap(workdir: Path) -> Iterator[Path]:
    """fcgiwrap listening on a unix socket (it runs the CGI script SCRIPT_FILENAME names)."""
    binary = find_binary("fcgiwrap")
    socket_path = workdir / "fcgiwrap.sock"
    process = subprocess.Popen(
        [binary, "-c", "2", "-s", f"unix:{socket_path}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for_socket(socket_path, process)
        yield socket_path
    finally:
        stop(process)
        with contextlib.suppress(FileNotFoundError):
            socket_path.unlink()
