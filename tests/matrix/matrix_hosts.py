"""The matrix's cells: which host runs which app, how it is started, where it is reached.

Rows are app kinds, columns host kinds (README's interface matrix). A column may hold several
runs (host implementations): the WSGI-server column is gunicorn (sync worker) and wsgiref, each
tested on its own; its cell passes only when both do. Every host runs for real: on 127.0.0.1 on a
free port, or on a unix socket, with its private configuration in the run's tmp dir, in its
own session (process group), stopped by PID with bounded waits (real_hosts.stop_group).

Only bridges' public API and CLI are used: `python -m bridges serve`, `bridge cgi`, `run_cgi`,
`WSGIToASGI`, `ASGIToWSGI`, `CGIToASGI`, `CGIToWSGI`, `FastCGIToASGI`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from conftest import SEARCH_PATH, find_binary
from matrix_probes import write_apps
from real_hosts import free_port, lighttpd, nginx, php_fpm, stop_group, wait_for_port

ROWS = ("asgi", "wsgi", "cgi", "fastcgi")
ROW_TITLES = {
    "asgi": "ASGI app",
    "wsgi": "WSGI app",
    "cgi": "CGI program (Perl)",
    "fastcgi": "FastCGI responder (php-fpm)",
}
INTERFACE = {"asgi": "asgi", "wsgi": "wsgi", "cgi": "cgi", "fastcgi": "php"}  # what the probe says

# Column -> its runs (host implementations).
COLUMNS = {
    "built-in": ("built-in",),
    "asgi-server": ("uvicorn",),
    "wsgi-server": ("gunicorn", "wsgiref"),
    "fastcgi-host": ("nginx",),
    "cgi-host": ("lighttpd",),
}
COLUMN_TITLES = {
    "built-in": "built-in server (`bridge serve`)",
    "asgi-server": "ASGI server (uvicorn)",
    "wsgi-server": "WSGI server (gunicorn sync / wsgiref)",
    "fastcgi-host": "nginx → FastCGI → `bridge serve --protocol fastcgi`",
    "cgi-host": "CGI host (lighttpd mod_cgi) → `run_cgi` / `bridge cgi`",
}
RUNS = tuple(run for runs in COLUMNS.values() for run in runs)
COLUMN_OF = {run: column for column, runs in COLUMNS.items() for run in runs}

PHP_MOUNT = "/probe.php"  # php-fpm's probe is reached as /probe.php/<route> (PATH_INFO = route)


@dataclass
class Cell:
    row: str
    run: str
    url: str  # scheme://host:port of the front server
    mount: str  # the app's mount point: what it must see as root_path / SCRIPT_NAME
    commands: list[tuple[str, str]]  # (file name or "" for a shell command, text), for the docs
    logs: list[Path] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    setup: list[tuple[str, str]] = field(default_factory=list)  # the run's shared configuration

    @property
    def base(self) -> str:
        return self.url + self.mount

    @property
    def interface(self) -> str:
        return INTERFACE[self.row]

    def log_tail(self) -> str:
        return "\n".join(
            f"--- {log.name}:\n{log.read_text(errors='replace')[-2500:]}" for log in self.logs if log.exists()
        )


@dataclass
class Site:
    """The session's apps (probes, adapter modules), php-fpm, and paths shown as placeholders."""

    root: Path
    apps: Path
    gates: Path
    cgi_script: Path
    docroot: Path
    php_socket: Path
    stack: contextlib.ExitStack
    python: str = sys.executable
    php_fpm_running: bool = False
    shared: list[tuple[str, str]] = field(default_factory=list)  # php-fpm's command and config, shown

    def require(self, row: str) -> None:
        """What a row's app needs besides Python: perl (skip or, under CI, fail if missing), php-fpm."""
        if row == "cgi":
            find_binary("perl")
        elif row == "fastcgi" and not self.php_fpm_running:
            started = self.stack.enter_context(php_fpm(self.root, self.docroot, children=6))
            assert started == self.php_socket
            self.php_fpm_running = True
            command = "php-fpm -F -y $RUN/php-fpm.conf" + (" -R" if os.geteuid() == 0 else "")
            config = self.show((self.root / "php-fpm.conf").read_text())
            self.shared = [("", command), ("$RUN/php-fpm.conf", config)]

    def show(self, text: str) -> str:
        """`text` with this run's paths replaced by placeholders (for the docs)."""
        return (
            text.replace(str(self.apps), "$APPS")
            .replace(str(self.root), "$RUN")
            .replace(self.python, "$PYTHON")
        )


@contextlib.contextmanager
def site(root: Path) -> Iterator[Site]:
    """Write the probes; php-fpm (one pool for every FastCGI-responder cell) starts when needed."""
    gates = root / "gates"
    gates.mkdir(parents=True)
    php_socket = root / "php-fpm.sock"  # where real_hosts.php_fpm(root, ...) listens
    perl = shutil.which("perl", path=SEARCH_PATH) or "/usr/bin/perl"
    paths = write_apps(root / "apps", gates, php_socket, perl)
    with contextlib.ExitStack() as stack:
        yield Site(root, paths["apps"], gates, paths["cgi_script"], paths["docroot"], php_socket, stack)


def _spawn(argv: list[str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_for_unix(path: Path, process: subprocess.Popen[bytes], log: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise AssertionError(f"{process.args!r} exited:\n{log.read_text(errors='replace')}")
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(path))
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{process.args!r} is not listening on {path}")
        time.sleep(0.05)


def _bridge_serve_target(site: Site, row: str) -> list[str]:
    """`bridge serve`'s TARGET and --mode for each app kind."""
    return {
        "asgi": ["asgi_probe:app", "--mode", "asgi"],
        "wsgi": ["wsgi_probe:app", "--mode", "wsgi"],
        "cgi": [str(site.cgi_script), "--mode", "cgi"],
        "fastcgi": [f"unix:{site.php_socket}", "--mode", "fastcgi", "--document-root", str(site.docroot)],
    }[row]


def _mount(row: str, prefix: str = "") -> str:
    return prefix + (PHP_MOUNT if row == "fastcgi" else "")


def _start_http_hosts(
    stack: contextlib.ExitStack, site: Site, run: str, argv_for: dict[str, list[str]]
) -> dict[str, Cell]:
    """Start one HTTP server per row (all at once), each on a free port; wait until all listen."""
    cells = {}
    for row, argv in argv_for.items():
        port = free_port()
        argv = [arg.replace("{PORT}", str(port)) for arg in argv]
        log = site.root / f"{run}-{row}.log"
        process = _spawn(argv, site.apps, log)
        stack.callback(stop_group, process)
        display = "cd $APPS && " + site.show(" ".join(argv)).replace(str(port), "PORT")
        url = f"http://127.0.0.1:{port}"
        cells[row] = Cell(row, run, url, _mount(row), [("", display)], [log], [process])
    for cell in cells.values():
        wait_for_port(int(cell.url.rsplit(":", 1)[1]), cell.processes[0], *cell.logs, timeout=30)
    return cells


def start_builtin(stack: contextlib.ExitStack, site: Site) -> dict[str, Cell]:
    python = site.python
    argv_for = {
        row: [python, "-m", "bridges", "serve", *_bridge_serve_target(site, row), "--port", "{PORT}"]
        for row in ROWS
    }
    return _start_http_hosts(stack, site, "built-in", argv_for)


ASGI_MODULE = {
    "asgi": "asgi_probe",
    "wsgi": "wsgi_on_asgi",
    "cgi": "cgi_on_asgi",
    "fastcgi": "fastcgi_on_asgi",
}
WSGI_MODULE = {
    "asgi": "asgi_on_wsgi",
    "wsgi": "wsgi_probe",
    "cgi": "cgi_on_wsgi",
    "fastcgi": "fastcgi_on_wsgi",
}


def start_uvicorn(stack: contextlib.ExitStack, site: Site) -> dict[str, Cell]:
    argv_for = {
        row: [
            site.python,
            "-m",
            "uvicorn",
            f"{ASGI_MODULE[row]}:app",
            "--app-dir",
            str(site.apps),
            "--port",
            "{PORT}",
        ]
        for row in ROWS
    }
    return _start_http_hosts(stack, site, "uvicorn", argv_for)


def start_gunicorn(stack: contextlib.ExitStack, site: Site) -> dict[str, Cell]:
    argv_for = {
        row: [
            site.python,
            "-m",
            "gunicorn",
            f"{WSGI_MODULE[row]}:app",
            "--chdir",
            str(site.apps),
            "--worker-class",
            "sync",
            "--bind",
            "127.0.0.1:{PORT}",
        ]
        for row in ROWS
    }
    return _start_http_hosts(stack, site, "gunicorn", argv_for)


def start_wsgiref(stack: contextlib.ExitStack, site: Site) -> dict[str, Cell]:
    argv_for = {
        row: [site.python, str(site.apps / "wsgiref_host.py"), f"{WSGI_MODULE[row]}:app", "{PORT}"]
        for row in ROWS
    }
    return _start_http_hosts(stack, site, "wsgiref", argv_for)


def nginx_server(socket_path: Path) -> str:
    """One nginx `server` body: everything to `bridge serve --protocol fastcgi` (nginx's defaults)."""
    return textwrap.indent(
        f"location / {{\n    include fastcgi_params;\n    fastcgi_pass unix:{socket_path};\n}}", " " * 8
    )


def start_nginx(stack: contextlib.ExitStack, site: Site) -> dict[str, Cell]:
    """nginx, one server (port) per row, each in front of its own `bridge serve --protocol fastcgi`."""
    backends = {}
    for row in ROWS:
        socket_path = site.root / f"nginx-{row}.sock"
        argv = [
            site.python,
            "-m",
            "bridges",
            "serve",
            *_bridge_serve_target(site, row),
            "--protocol",
            "fastcgi",
            "--uds",
            str(socket_path),
        ]
        log = site.root / f"nginx-backend-{row}.log"
        process = _spawn(argv, site.apps, log)
        stack.callback(stop_group, process)
        backends[row] = (socket_path, argv, log, process)
    for socket_path, _, log, process in backends.values():
        _wait_for_unix(socket_path, process, log)
    workdir = site.root / "nginx"
    servers = [nginx_server(backends[row][0]) for row in ROWS]
    ports = stack.enter_context(nginx(workdir, servers))
    cells = {}
    for row, port in zip(ROWS, ports, strict=True):
        socket_path, argv, log, process = backends[row]
        commands = [("", "cd $APPS && " + site.show(" ".join(argv)))]
        logs = [log, workdir / "error.log"]
        url = f"http://127.0.0.1:{port}"
        cells[row] = Cell(row, "nginx", url, _mount(row), commands, logs, [process])
    config = (workdir / "nginx.conf").read_text()
    for row, port in zip(ROWS, ports, strict=True):
        config = config.replace(f"127.0.0.1:{port};", f"127.0.0.1:PORT_{row.upper()};")
    setup = [
        ("", "nginx -p $RUN/nginx -c $RUN/nginx/nginx.conf -e $RUN/nginx/error.log"),
        ("$RUN/nginx/nginx.conf", site.show(config)),
        ("$RUN/nginx/fastcgi_params", "nginx's upstream conf/fastcgi_params (tests/real_hosts.py)"),
    ]
    for cell in cells.values():
        cell.setup = setup
    return cells


# The CGI programs lighttpd runs (cgi-bin/<row>.cgi). The WSGI row goes through the `bridge cgi`
# command; the others call run_cgi() from a script, as docs/cgi-host.md shows.
def cgi_wrappers(site: Site) -> dict[str, str]:
    python = site.python
    head = f"#!{python}\nimport sys\n\nsys.path.insert(0, {str(site.apps)!r})\n"
    php_fpm = f"unix:{site.php_socket}"
    return {
        "asgi": head
        + "from asgi_probe import app\nfrom bridges import run_cgi\n\nraise SystemExit(run_cgi(app))\n",
        "wsgi": f"#!/bin/sh\nexec {python} -m bridges cgi {site.apps / 'wsgi_probe.py'}:app\n",
        "cgi": head + "from bridges import CGIToASGI, run_cgi\n\n"
        f"raise SystemExit(run_cgi(CGIToASGI({str(site.cgi_script)!r})))\n",
        "fastcgi": head + "from bridges import FastCGIToASGI, run_cgi\n\n"
        f"app = FastCGIToASGI({php_fpm!r}, document_root={str(site.docroot)!r})\n"
        "raise SystemExit(run_cgi(app))\n",
    }


def lighttpd_directives(cgi_bin: Path, stderr_log: Path) -> str:
    return textwrap.dedent(
        f"""\
        alias.url += ( "/cgi-bin/" => "{cgi_bin}/" )
        $HTTP["url"] =~ "^/cgi-bin/" {{
            cgi.assign = ( ".cgi" => "" )
        }}
        server.breakagelog = "{stderr_log}"
        # The default (0) sends a CGI response only once the program has written all of it.
        server.stream-response-body = 1
        """
    )


def start_lighttpd(stack: contextlib.ExitStack, site: Site) -> dict[str, Cell]:
    cgi_bin = site.root / "cgi-bin"
    cgi_bin.mkdir()
    wrappers = cgi_wrappers(site)
    for row, text in wrappers.items():
        (cgi_bin / f"{row}.cgi").write_text(text)
        (cgi_bin / f"{row}.cgi").chmod(0o755)
    workdir = site.root / "lighttpd"
    stderr_log = workdir / "cgi-stderr.log"
    directives = lighttpd_directives(cgi_bin, stderr_log)
    port = stack.enter_context(lighttpd(workdir, directives, modules=("mod_alias", "mod_cgi")))
    config = site.show((workdir / "lighttpd.conf").read_text()).replace(f"= {port}\n", "= PORT\n")
    setup = [("", "lighttpd -D -f $RUN/lighttpd/lighttpd.conf"), ("$RUN/lighttpd/lighttpd.conf", config)]
    cells = {}
    for row in ROWS:
        commands = [(f"$RUN/cgi-bin/{row}.cgi", site.show(wrappers[row]))]
        logs = [stderr_log, workdir / "error.log"]
        mount = _mount(row, f"/cgi-bin/{row}.cgi")
        cells[row] = Cell(row, "lighttpd", f"http://127.0.0.1:{port}", mount, commands, logs, setup=setup)
    return cells


STARTERS = {
    "built-in": start_builtin,
    "uvicorn": start_uvicorn,
    "gunicorn": start_gunicorn,
    "wsgiref": start_wsgiref,
    "nginx": start_nginx,
    "lighttpd": start_lighttpd,
}
