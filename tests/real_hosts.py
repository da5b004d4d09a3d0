"""Start real FastCGI/CGI hosts (php-fpm, fcgiwrap) and web servers (nginx, Apache, lighttpd) with
private configs; stop them by PID."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
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


# ---- web servers (nginx, Apache, lighttpd) with private configs --------------------------------
# Each listens on 127.0.0.1 on free ports, keeps its pid file and logs in `workdir`, runs in the
# foreground in its own session, and is stopped by PID (then its process group, for workers).

# nginx's upstream conf/fastcgi_params. Debian's copy also sets `HTTP_HOST $host` (no port); this
# one leaves the Host header to nginx's own HTTP_* params, as upstream nginx does.
FASTCGI_PARAMS = """\
fastcgi_param  QUERY_STRING       $query_string;
fastcgi_param  REQUEST_METHOD     $request_method;
fastcgi_param  CONTENT_TYPE       $content_type;
fastcgi_param  CONTENT_LENGTH     $content_length;

fastcgi_param  SCRIPT_NAME        $fastcgi_script_name;
fastcgi_param  REQUEST_URI        $request_uri;
fastcgi_param  DOCUMENT_URI       $document_uri;
fastcgi_param  DOCUMENT_ROOT      $document_root;
fastcgi_param  SERVER_PROTOCOL    $server_protocol;
fastcgi_param  REQUEST_SCHEME     $scheme;
fastcgi_param  HTTPS              $https if_not_empty;

fastcgi_param  GATEWAY_INTERFACE  CGI/1.1;
fastcgi_param  SERVER_SOFTWARE    nginx/$nginx_version;

fastcgi_param  REMOTE_ADDR        $remote_addr;
fastcgi_param  REMOTE_PORT        $remote_port;
fastcgi_param  SERVER_ADDR        $server_addr;
fastcgi_param  SERVER_PORT        $server_port;
fastcgi_param  SERVER_NAME        $server_name;
"""

APACHE_MODULES_DIR = Path("/usr/lib/apache2/modules")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _log_tail(*logs: Path) -> str:
    return "\n".join(f"--- {log}:\n{log.read_text(errors='replace')[-4000:]}" for log in logs if log.exists())


def wait_for_port(port: int, process: subprocess.Popen[bytes], *logs: Path, timeout: float = 15) -> None:
    """Wait until 127.0.0.1:`port` accepts a connection (or fail, showing the logs)."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise AssertionError(f"{process.args!r} exited with {process.returncode}\n{_log_tail(*logs)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{process.args!r} is not listening on {port}\n{_log_tail(*logs)}"
                ) from None
            time.sleep(0.05)


def stop_group(process: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """SIGTERM by PID, bounded wait, SIGKILL; then the rest of its session (a server's workers)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _start(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


@contextlib.contextmanager
def nginx(workdir: Path, servers: list[str], http: str = "") -> Iterator[list[int]]:
    """nginx with one `server` per entry of `servers` (its body), each on a free port; yields the ports.

    `http` is added to the http block (upstreams). `include fastcgi_params;` finds FASTCGI_PARAMS.
    """
    binary = find_binary("nginx")
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "fastcgi_params").write_text(FASTCGI_PARAMS)
    ports = [free_port() for _ in servers]
    blocks = "".join(
        f"    server {{\n        listen 127.0.0.1:{port};\n{body}\n    }}\n"
        for port, body in zip(ports, servers, strict=True)
    )
    temp = "".join(
        f"    {kind}_temp_path {workdir / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = workdir / "nginx.conf"
    conf.write_text(
        "worker_processes 1;\n"
        "daemon off;\n"
        + ("user root;\n" if os.geteuid() == 0 else "")  # else the worker is `nobody`, locked out of tmp_path
        + f"pid {workdir / 'nginx.pid'};\n"
        f"error_log {workdir / 'error.log'} info;\n"
        "events {\n    worker_connections 1024;\n}\n"
        "http {\n"
        f"    access_log {workdir / 'access.log'};\n" + temp + http + blocks + "}\n"
    )
    error_log = workdir / "error.log"
    process = _start(
        [binary, "-p", str(workdir), "-c", str(conf), "-e", str(error_log)], workdir / "stderr.log"
    )
    try:
        for port in ports:
            wait_for_port(port, process, error_log, workdir / "stderr.log")
        yield ports
    finally:
        stop_group(process)


@contextlib.contextmanager
def apache(
    workdir: Path,
    directives: str,
    modules: tuple[str, ...] = ("mpm_event", "authz_core", "proxy", "proxy_fcgi"),
) -> Iterator[tuple[int, Path]]:
    """Apache httpd in one process (`-X`), its own ServerRoot, only `modules` loaded.

    Yields the port and the DocumentRoot. As root, Apache serves as `nobody` (it refuses root), who
    cannot enter tmp_path: the DocumentRoot is then a world-readable directory of its own in /tmp.
    """
    binary = find_binary("apache2", "httpd")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    loads = "".join(f"LoadModule {name}_module {APACHE_MODULES_DIR / f'mod_{name}.so'}\n" for name in modules)
    user = ""
    if os.geteuid() == 0:
        import grp
        import pwd

        nobody = pwd.getpwnam("nobody")
        user = f"User nobody\nGroup {grp.getgrgid(nobody.pw_gid).gr_name}\n"
        docroot = Path(tempfile.mkdtemp(prefix="bridges-httpd-"))
        docroot.chmod(0o755)
    else:
        docroot = workdir / "htdocs"
        docroot.mkdir(exist_ok=True)
    conf = workdir / "httpd.conf"
    conf.write_text(
        f'ServerRoot "{workdir}"\n'
        f'DefaultRuntimeDir "{workdir}"\n'
        f'PidFile "{workdir / "httpd.pid"}"\n'
        f'ErrorLog "{workdir / "error.log"}"\n'
        "LogLevel warn\n"
        f"Listen 127.0.0.1:{port}\n"
        "ServerName 127.0.0.1\n"
        "Timeout 20\n"
        + loads
        + user
        + 'LogFormat "%h \\"%r\\" %>s %b" common\n'
        + f'CustomLog "{workdir / "access.log"}" common\n'
        + f'DocumentRoot "{docroot}"\n'
        + "<Directory />\n    AllowOverride None\n</Directory>\n"
        + directives
        + "\n"
    )
    error_log = workdir / "error.log"
    process = _start([binary, "-X", "-f", str(conf)], workdir / "stderr.log")
    try:
        wait_for_port(port, process, error_log, workdir / "stderr.log")
        yield port, docroot
    finally:
        stop_group(process)
        if docroot.parent != workdir:
            shutil.rmtree(docroot, ignore_errors=True)


@contextlib.contextmanager
def lighttpd(workdir: Path, directives: str, modules: tuple[str, ...] = ("mod_fastcgi",)) -> Iterator[int]:
    """lighttpd in the foreground (`-D -f conf`) with `modules`; yields the port."""
    binary = find_binary("lighttpd")
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "htdocs").mkdir(exist_ok=True)
    port = free_port()
    conf = workdir / "lighttpd.conf"
    module_list = ", ".join(f'"{name}"' for name in (*modules, "mod_accesslog"))
    conf.write_text(
        f'server.document-root = "{workdir / "htdocs"}"\n'
        'server.bind = "127.0.0.1"\n'
        f"server.port = {port}\n"
        f'server.pid-file = "{workdir / "lighttpd.pid"}"\n'
        f'server.errorlog = "{workdir / "error.log"}"\n'
        f"server.modules = ( {module_list} )\n"
        f'accesslog.filename = "{workdir / "access.log"}"\n' + directives + "\n"
    )
    error_log = workdir / "error.log"
    process = _start([binary, "-D", "-f", str(conf)], workdir / "stderr.log")
    try:
        wait_for_port(port, process, error_log, workdir / "stderr.log")
        yield port
    finally:
        stop_group(process)
