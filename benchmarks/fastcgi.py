"""FastCGI under wrk: our host (`--protocol fastcgi`) and our client (`--mode fastcgi`) behind and in
front of the usual rivals.

Scenarios:

  off     nginx `fastcgi_pass` (keep_conn off, nginx's default: a new connection per request) to
          ours (`bridge serve apps:wsgi_app --protocol fastcgi --uds ...`, and `apps:asgi_app`) and
          to flup's threaded `flup.server.fcgi.WSGIServer(apps.wsgi_app, bindAddress=...)`, all
          over unix sockets
  on      the same with `fastcgi_keep_conn on` and an `upstream { keepalive 64; }` block
  on-tcp  keep_conn on over TCP (127.0.0.1): ours (WSGI), flup as it is, and flup with
          TCP_NODELAY set on its listening socket (accepted sockets inherit it on Linux): flup
          leaves Nagle's algorithm on, which can hold a response's last record for up to 40 ms
          when the connection is kept
  php     the client: `bridge serve unix:PHP_SOCK --mode fastcgi --document-root DOCROOT`
          against nginx -> php-fpm; one php-fpm pool (pm static, 4 children) serves both, the same
          `index.php` (`Hello, world` as text/plain, Content-Length 12); and, for reference, ours
          with `--backend-keep-conn --backend-connections 4` (one kept connection per php-fpm child)

Method (the project's shared benchmark method; see docs/performance.md, "FastCGI (wrk)"):

- Every server-side process is pinned with `taskset -c 1`: nginx (`worker_processes 1`), the
  FastCGI app, php-fpm and our HTTP server. wrk runs under `taskset -c 0`:
  `wrk -t2 -c64 -d5s --latency URL` after a 1 s warm-up run; median of 3 runs (the contenders of a
  scenario alternate, A B C A B C), then one `-c256` run each. Access logs are off everywhere.
- Before starting, wait (up to 8 minutes) while another benchmark (a `wrk`, or a script of
  `benchmarks/`) runs; before each run, the same for up to 3 minutes, then wait until other
  processes use < 0.1 core over 0.5 s. A run during which other
  processes used > 0.1 core is taken again (once, while the time budget lasts), else marked `*`.
- CPU time per request of each server-side process tree (utime + stime, and what it reaped),
  summed over the trees that serve the contender (for example nginx + the app), divided by the
  requests wrk completed; it depends less than req/s on sharing a core.

Every process is stopped by PID (and then its own process group) when its scenario ends, on errors
and on Ctrl-C. Run from the repository root:

    .venv/bin/python benchmarks/fastcgi.py               # everything (about 6 minutes)
    .venv/bin/python benchmarks/fastcgi.py --quick       # 1 run of 2 s per contender, no -c256
    .venv/bin/python benchmarks/fastcgi.py --only off,php
    .venv/bin/python benchmarks/fastcgi.py --profile     # py-spy of our host (WSGI and ASGI hello)

`--markdown PATH` also writes the result tables and the targets to PATH as a Markdown fragment,
with the date, machine, versions and command (also after Ctrl-C, with the partial results);
benchmarks/run_all.py puts it into docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from _common import (
    SERVER_CPU,
    BenchOptions,
    Budget,
    Outcome,
    Section,
    Service,
    Side,
    alternate,
    check_hello,
    command_line,
    free_port,
    machine_info,
    markdown_fragment,
    outcome_table,
    package_version,
    print_sections,
    profile_under_wrk,
    stop_services_on_exit,
    tcp_ready,
    unix_ready,
    wait_no_other_wrk,
    write_markdown,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PHP_CHILDREN = 4
PHP_SCRIPT = (
    "<?php\nheader('Content-Type: text/plain');\nheader('Content-Length: 12');\necho 'Hello, world';\n"
)

# nginx's own conf/fastcgi_params (what `include fastcgi_params;` brings in a stock install).
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


def shown(arg: str) -> str:
    """An argument as it reads best in a printed command (paths inside the repository made relative)."""
    if arg.startswith(str(ROOT) + os.sep):
        return os.path.relpath(arg, ROOT)
    return arg


def printable(argv: list[str]) -> str:
    return shlex.join(shown(a) for a in argv)


# --- flup, run by this script in a child process -----------------------------------------------------


def flup_child(bind: str, nodelay: bool) -> None:
    """Serve `apps.wsgi_app` with flup's threaded FastCGI WSGIServer on `bind` (unix:PATH or HOST:PORT)."""
    sys.path.insert(0, str(HERE))
    import apps
    from flup.server.fcgi import WSGIServer

    address: str | tuple[str, int]
    if bind.startswith("unix:"):
        address = bind[5:]
    else:
        host, _, port = bind.rpartition(":")
        address = (host, int(port))

    class Server(WSGIServer):  # type: ignore[misc]
        def _setupSocket(self) -> socket.socket:  # flup's method name
            sock = super()._setupSocket()
            if nodelay:  # Linux: sockets accepted from this one inherit TCP_NODELAY.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock

    Server(apps.wsgi_app, bindAddress=address).run()


# --- Contenders --------------------------------------------------------------------------------------


@dataclass
class App:
    """A FastCGI app for nginx to pass to."""

    name: str
    kind: str  # "ours-wsgi", "ours-wsgi-via-asgi", "ours-asgi", "flup", "flup-nodelay"
    tcp: bool = False

    def argv(self, bind: str) -> list[str]:
        py = sys.executable
        if self.kind.startswith("ours"):
            target = "apps:asgi_app" if self.kind == "ours-asgi" else "apps:wsgi_app"
            where = ["--uds", bind[5:]] if bind.startswith("unix:") else ["--port", bind.rpartition(":")[2]]
            return [
                *["taskset", "-c", SERVER_CPU, py, "-m", "bridges", "serve", target, "--protocol", "fastcgi"],
                *where,
                *(["--fastcgi-wsgi", "asgi"] if self.kind == "ours-wsgi-via-asgi" else []),
                *["--no-access-log", "--log-level", "warning"],
            ]
        nodelay = ["--nodelay"] if self.kind == "flup-nodelay" else []
        return [
            "taskset",
            "-c",
            SERVER_CPU,
            py,
            str(Path(__file__).resolve()),
            "--flup-child",
            bind,
            *nodelay,
        ]


@dataclass
class Scenario:
    name: str
    title: str
    keep_conn: bool
    apps: list[App]


HOST_SCENARIOS = [
    Scenario(
        "off",
        "nginx -> FastCGI app, keep_conn off (nginx's default), unix sockets",
        False,
        [
            App("bridges (WSGI)", "ours-wsgi"),
            App("bridges (WSGI), --fastcgi-wsgi asgi", "ours-wsgi-via-asgi"),
            App("bridges (ASGI)", "ours-asgi"),
            App("flup (threaded)", "flup"),
        ],
    ),
    Scenario(
        "on",
        "nginx -> FastCGI app, fastcgi_keep_conn on + upstream keepalive 64, unix sockets",
        True,
        [
            App("bridges (WSGI)", "ours-wsgi"),
            App("bridges (WSGI), --fastcgi-wsgi asgi", "ours-wsgi-via-asgi"),
            App("bridges (ASGI)", "ours-asgi"),
            App("flup (threaded)", "flup"),
        ],
    ),
    Scenario(
        "on-tcp",
        "nginx -> FastCGI app, fastcgi_keep_conn on + upstream keepalive 64, TCP 127.0.0.1",
        True,
        [
            App("bridges (WSGI), TCP", "ours-wsgi", tcp=True),
            App("flup (threaded), TCP", "flup", tcp=True),
            App("flup (threaded), TCP + TCP_NODELAY", "flup-nodelay", tcp=True),
        ],
    ),
]
SCENARIO_NAMES = [s.name for s in HOST_SCENARIOS] + ["php"]


# --- nginx and php-fpm -------------------------------------------------------------------------------


def start_nginx(workdir: Path, servers: list[str], upstreams: str = "") -> tuple[Service, list[int], str]:
    """nginx (one worker, access log off, pinned) with one `server` per body; returns it, the ports
    and the http block as written (for the report)."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "fastcgi_params").write_text(FASTCGI_PARAMS)
    ports = [free_port() for _ in servers]
    blocks = "".join(
        f"    server {{\n        listen 127.0.0.1:{port};\n{body}    }}\n"
        for port, body in zip(ports, servers, strict=True)
    )
    temp = "".join(
        f"    {kind}_temp_path {workdir / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    http = "    access_log off;\n" + upstreams + blocks
    conf = workdir / "nginx.conf"
    conf.write_text(
        "worker_processes 1;\n"
        "daemon off;\n" + ("user root;\n" if os.geteuid() == 0 else "") + f"pid {workdir / 'nginx.pid'};\n"
        f"error_log {workdir / 'error.log'} warn;\n"
        "events {\n    worker_connections 4096;\n}\n"
        "http {\n" + temp + http + "}\n"
    )
    argv = [
        "taskset",
        "-c",
        SERVER_CPU,
        binary,
        "-p",
        str(workdir),
        "-c",
        str(conf),
        "-e",
        str(workdir / "error.log"),
    ]
    service = Service("nginx", argv, workdir / "stderr.log")
    print(f"  start nginx: {printable(argv)}", flush=True)
    service.start(lambda: all(tcp_ready(p)() for p in ports))
    return service, ports, http


def start_php_fpm(workdir: Path) -> tuple[Service, Path, str]:
    binary = next((b for b in ("php-fpm8.2", "php-fpm8.3", "php-fpm") if shutil.which(b)), "php-fpm8.2")
    workdir.mkdir(parents=True, exist_ok=True)
    sock = workdir / "php-fpm.sock"
    root = os.geteuid() == 0
    pool = (
        "[www]\n"
        + ("user = root\ngroup = root\n" if root else "")
        + f"listen = {sock}\npm = static\npm.max_children = {PHP_CHILDREN}\nclear_env = yes\n"
    )
    conf = workdir / "php-fpm.conf"
    conf.write_text(
        f"[global]\npid = {workdir / 'php-fpm.pid'}\nerror_log = {workdir / 'php-fpm.log'}\ndaemonize = no\n"
        + pool
    )
    argv = ["taskset", "-c", SERVER_CPU, shutil.which(binary) or binary, "-F", "-y", str(conf)]
    argv += ["-R"] if root else []
    service = Service("php-fpm", argv, workdir / "php-fpm.out")
    print(f"  start php-fpm: {printable(argv)}", flush=True)
    service.start(unix_ready(sock))
    return service, sock, pool


def start_app(app: App, workdir: Path) -> tuple[Service, str]:
    if app.tcp:
        port = free_port()
        bind, ready = f"127.0.0.1:{port}", tcp_ready(port)
    else:
        path = workdir / f"{app.kind}.sock"
        bind, ready = f"unix:{path}", unix_ready(path)
    argv = app.argv(bind)
    service = Service(app.name, argv, workdir / f"{app.kind}-{'tcp' if app.tcp else 'uds'}.log", cwd=HERE)
    print(f"  start {app.name}: {printable(argv)}", flush=True)
    service.start(ready, env=dict(os.environ, PYTHONPATH=str(HERE)))
    return service, bind


def nginx_location(bind: str, upstream: str | None) -> str:
    target = upstream or bind
    keep = "            fastcgi_keep_conn on;\n" if upstream else ""
    return (
        "        location / {\n"
        f"            fastcgi_pass {target};\n{keep}"
        "            include fastcgi_params;\n"
        "        }\n"
    )


# --- Scenarios ---------------------------------------------------------------------------------------


def run_host(scenario: Scenario, args: argparse.Namespace, workdir: Path, budget: Budget) -> list[Outcome]:
    print(f"\n## {scenario.name}: {scenario.title}", flush=True)
    sub = workdir / scenario.name
    sub.mkdir()
    services: list[Service] = []
    try:
        binds = []
        for app in scenario.apps:
            service, bind = start_app(app, sub)
            services.append(service)
            binds.append(bind)
        upstreams, bodies = "", []
        for i, bind in enumerate(binds):
            name = None
            if scenario.keep_conn:
                name = f"app{i}"
                upstreams += (
                    f"    upstream {name} {{\n        server {bind};\n        keepalive 64;\n    }}\n"
                )
            bodies.append(nginx_location(bind, name))
        nginx, ports, http = start_nginx(sub / "nginx", bodies, upstreams)
        services.append(nginx)
        print("  nginx.conf http block:\n" + http.rstrip(), flush=True)
        sides = []
        for app, service, port in zip(scenario.apps, services, ports, strict=False):
            check_hello(port)
            side = Side(app.name, f"http://127.0.0.1:{port}/", {"nginx": nginx.pid, "app": service.pid})
            side.command = printable(service.argv)
            sides.append(side)
        return alternate(sides, args.opts, budget, 64, 256 if args.wide else None)
    finally:
        for service in reversed(services):
            service.stop()


def start_php(sub: Path, services: list[Service]) -> list[Side]:
    """php-fpm, ours in front of it and nginx in front of it (appended to `services`); the two sides."""
    docroot = sub / "docroot"
    docroot.mkdir(parents=True)
    (docroot / "index.php").write_text(PHP_SCRIPT)
    fpm, sock, pool = start_php_fpm(sub / "fpm")
    services.append(fpm)
    print("  php-fpm pool:\n" + pool.rstrip(), flush=True)
    ours = []
    for label, extra in (
        ("bridges -> php-fpm", []),
        (
            f"bridges --backend-keep-conn --backend-connections {PHP_CHILDREN} -> php-fpm",
            ["--backend-keep-conn", "--backend-connections", str(PHP_CHILDREN)],
        ),
    ):
        port = free_port()
        argv = [
            *["taskset", "-c", SERVER_CPU, sys.executable, "-m", "bridges", "serve", f"unix:{sock}"],
            *["--mode", "fastcgi", "--document-root", str(docroot), *extra],
            *["--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning"],
        ]
        service = Service(label, argv, sub / f"bridges-{port}.log", cwd=HERE)
        print(f"  start {label}: {printable(argv)}", flush=True)
        service.start(tcp_ready(port))
        services.append(service)
        ours.append((label, service, port))
    body = (
        f"        root {docroot};\n"
        "        location / {\n"
        f"            fastcgi_pass unix:{sock};\n"
        "            fastcgi_index index.php;\n"
        "            include fastcgi_params;\n"
        "            fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;\n"
        "        }\n"
    )
    nginx, (nginx_port,), http = start_nginx(sub / "nginx", [body])
    services.append(nginx)
    print("  nginx.conf http block:\n" + http.rstrip(), flush=True)
    sides = []
    for label, service, port in ours:
        side = Side(label, f"http://127.0.0.1:{port}/", {"bridges": service.pid, "php-fpm": fpm.pid})
        side.command = printable(service.argv)
        sides.append(side)
    side = Side(
        "nginx -> php-fpm", f"http://127.0.0.1:{nginx_port}/", {"nginx": nginx.pid, "php-fpm": fpm.pid}
    )
    side.command = printable(nginx.argv)
    sides.insert(1, side)  # the reference pair first: ours (defaults), nginx (defaults)
    for side in sides:  # PHP adds a charset to the Content-Type it was given
        check_hello(int(side.url.rsplit(":", 1)[1].strip("/")), content_type="text/plain;charset=UTF-8")
    return sides


def run_php(args: argparse.Namespace, workdir: Path, budget: Budget) -> list[Outcome]:
    print("\n## php: the FastCGI client: bridges -> php-fpm against nginx -> php-fpm", flush=True)
    services: list[Service] = []
    try:
        sides = start_php(workdir / "php", services)
        return alternate(sides, args.opts, budget, 64, 256 if args.wide else None)
    finally:
        for service in reversed(services):
            service.stop()


# --- Reporting ---------------------------------------------------------------------------------------


def find(outcomes: list[Outcome], name: str) -> Outcome | None:
    return next((o for o in outcomes if o.side.name == name and o.runs), None)


def target_lines(results: dict[str, list[Outcome]]) -> list[str]:
    lines = []
    for name in ("off", "on"):
        outs = results.get(name)
        if not outs:
            continue
        flup = find(outs, "flup (threaded)")
        for label in ("bridges (WSGI)", "bridges (ASGI)"):
            ours = find(outs, label)
            if ours and flup:
                r = ours.med("rps") / flup.med("rps")
                c = flup.med_part("app") / ours.med_part("app")
                lines.append(
                    f"{'PASS' if r >= 3 else 'MISS'}  host, keep_conn {name}: {label} >= 3x flup req/s:"
                    f" {r:.2f}x"
                    f" (app CPU per request: flup / ours {c:.2f}x)"
                )
    outs = results.get("on-tcp")
    if outs:
        ours = find(outs, "bridges (WSGI), TCP")
        for label in ("flup (threaded), TCP", "flup (threaded), TCP + TCP_NODELAY"):
            flup = find(outs, label)
            if ours and flup:
                r = ours.med("rps") / flup.med("rps")
                lines.append(
                    f"{'PASS' if r >= 3 else 'MISS'}  host, keep_conn on, TCP: ours >= 3x {label}: {r:.2f}x"
                )
    outs = results.get("php")
    if outs:
        ours, nginx = find(outs, "bridges -> php-fpm"), find(outs, "nginx -> php-fpm")
        if ours and nginx:
            r = ours.med("rps") / nginx.med("rps")
            lines.append(
                f"{'PASS' if r >= 0.6 else 'MISS'}  client: bridges -> php-fpm >= 0.6x nginx -> php-fpm:"
                f" {r:.2f}x"
            )
    return lines


def tables(outs: list[Outcome], args: argparse.Namespace) -> str:
    runs = f"median of {args.opts.runs} runs" if args.opts.runs > 1 else "one run"
    text = [f"-c64, {runs} of {args.opts.duration:g} s:", "", outcome_table(outs)]
    if any(o.wide for o in outs):
        text += ["", f"-c256, one run of {args.opts.duration:g} s:", "", outcome_table(outs, wide=True)]
    return "\n".join(text)


TITLES = {s.name: s.title for s in HOST_SCENARIOS}
TITLES["php"] = "the FastCGI client, bridges -> php-fpm against nginx -> php-fpm"


def result_sections(args: argparse.Namespace, results: dict[str, list[Outcome]]) -> list[Section]:
    """The tables of every scenario measured (with how each contender ran), and the targets."""
    sections = []
    for name, outs in results.items():
        context = "\n".join(
            f"- {out.side.name}: `{out.side.command}`" + (f" (failed: {out.error})" if out.error else "")
            for out in outs
        )
        sections.append(Section(f"{name}: {TITLES[name]}", tables(outs, args), context))
    lines = [f"- {line}" for line in target_lines(results)]
    noisy = sum(
        r.noisy for outs in results.values() for o in outs for r in [*o.runs, *filter(None, [o.wide])]
    )
    lines.append(f"\n`*`: run stayed noisy (other processes > 0.1 core) after retries: {noisy} run(s)")
    sections.append(Section("Targets", "\n".join(lines)))
    return sections


def fragment(
    args: argparse.Namespace,
    results: dict[str, list[Outcome]],
    info: dict[str, str],
    command: str,
    versions: str,
    seconds: float,
    interrupted: bool,
) -> str:
    """What `--markdown` writes: the tables and targets, with the run's date, machine and command."""
    return markdown_fragment(
        result_sections(args, results),
        info,
        command,
        versions=versions,
        seconds=seconds,
        interrupted=interrupted,
    )


# --- Profile -----------------------------------------------------------------------------------------


def profile(args: argparse.Namespace, workdir: Path) -> None:
    """py-spy (raw, non-blocking, 5 s) under wrk -c64: our host (WSGI and ASGI hello) behind nginx
    (keep_conn off), and our client in front of php-fpm."""
    for app in (App("bridges (WSGI)", "ours-wsgi"), App("bridges (ASGI)", "ours-asgi")):
        sub = workdir / f"profile-{app.kind}"
        sub.mkdir()
        services: list[Service] = []
        try:
            service, bind = start_app(app, sub)
            services.append(service)
            nginx, (port,), _ = start_nginx(sub / "nginx", [nginx_location(bind, None)])
            services.append(nginx)
            check_hello(port)
            print(f"\n### host: {app.name} behind nginx (keep_conn off), wrk -c64")
            lines = profile_under_wrk(service.pid, f"http://127.0.0.1:{port}/", 64, sub / "profile.txt")
            print("\n".join(lines), flush=True)
        finally:
            for s in reversed(services):
                s.stop()
    services = []
    try:
        sides = start_php(workdir / "profile-php", services)
        print("\n### client: bridges -> php-fpm, wrk -c64")
        lines = profile_under_wrk(sides[0].roots["bridges"], sides[0].url, 64, workdir / "profile-php.txt")
        print("\n".join(lines), flush=True)
    finally:
        for s in reversed(services):
            s.stop()


# --- Main --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one run of 2 s per contender, no -c256 run")
    parser.add_argument(
        "--only", metavar="NAMES", help="comma-separated scenarios: " + ", ".join(SCENARIO_NAMES)
    )
    parser.add_argument("--runs", type=int, help="measured -c64 runs per contender (default 3)")
    parser.add_argument("--duration", type=float, help="seconds per measured run (default 5)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of warm-up before each run")
    parser.add_argument("--no-wide", dest="wide", action="store_false", help="skip the -c256 run")
    parser.add_argument("--retries", type=int, default=1, help="re-runs of a noisy run (default 1)")
    parser.add_argument(
        "--budget",
        type=float,
        default=440.0,
        help="time limit (s) for the runs, waits for another wrk excepted: noisy runs are re-run and"
        " the wait for quiet lasts up to 3 s only while the planned runs still fit (default 440)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write every run's raw figures here")
    parser.add_argument("--profile", action="store_true", help="only profile our host with py-spy")
    parser.add_argument("--flup-child", metavar="BIND", help=argparse.SUPPRESS)
    parser.add_argument("--nodelay", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--markdown",
        metavar="PATH",
        help="also write the result tables here, as a Markdown fragment (for docs/performance.md)",
    )
    args = parser.parse_args(argv)
    if args.markdown and args.profile:
        parser.error("--markdown writes the tables of a measuring run: not with --profile")
    if args.quick:
        args.wide = False
    args.opts = BenchOptions(
        runs=args.runs or (1 if args.quick else 3),
        duration=args.duration or (2.0 if args.quick else 5.0),
        warmup=args.warmup,
        retries=args.retries,
    )
    names = [n.strip() for n in args.only.split(",")] if args.only else SCENARIO_NAMES
    unknown = [n for n in names if n not in SCENARIO_NAMES]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}; choose from {', '.join(SCENARIO_NAMES)}")
    args.names = names
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.flup_child:
        flup_child(args.flup_child, args.nodelay)
        return 0
    for tool in ("wrk", "taskset", "nginx"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            print(f"{tool} is not installed", file=sys.stderr)
            return 2
    # Bytecode caches: this environment may set PYTHONDONTWRITEBYTECODE; compile ahead so no
    # contender pays for compiling its modules at start-up (start-up is not measured here anyway).
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "bridges"), str(HERE)], check=False)
    with tempfile.TemporaryDirectory(prefix="bench-fastcgi-") as tmp, stop_services_on_exit():
        workdir = Path(tmp)
        if args.profile:
            profile(args, workdir)
            return 0
        info = machine_info()
        print(f"# FastCGI host and client under wrk -- {info['date']}")
        print(f"machine: {info['cpus']}; {info['python']}; {info['platform']}")
        tools = []
        for cmd in (["nginx", "-v"], ["php-fpm8.2", "-v"], ["wrk", "-v"]):
            out = subprocess.run(cmd, capture_output=True, text=True, check=False)
            tools.append(((out.stdout or out.stderr).strip().splitlines() or ["?"])[0])
        versions = (
            f"gateway-bridges {package_version('gateway-bridges')}, flup {package_version('flup')},"
            f" uvloop {package_version('uvloop')}; " + "; ".join(tools)
        )
        print(f"versions: {versions}")
        command = command_line()
        print(f"command: {command}")
        hosts = [s for s in HOST_SCENARIOS if s.name in args.names]
        contenders = sum(len(s.apps) for s in hosts) + (3 if "php" in args.names else 0)
        per_run = 0.5 + args.opts.warmup + args.opts.duration + 0.7
        planned = contenders * (2.0 + (args.opts.runs + (1 if args.wide else 0)) * per_run)
        budget = Budget(args.budget, planned, per_run)
        waited = wait_no_other_wrk(480.0)
        budget.extend(waited)
        started = time.monotonic()
        results: dict[str, list[Outcome]] = {}
        interrupted = False
        try:
            for scenario in hosts:
                results[scenario.name] = run_host(scenario, args, workdir, budget)
            if "php" in args.names:
                results["php"] = run_php(args, workdir, budget)
        except KeyboardInterrupt:
            interrupted = True
            Service.stop_all()
            print("\ninterrupted: servers stopped; partial results follow", file=sys.stderr)
        seconds = time.monotonic() - started
        print(f"\n# Results ({seconds:.0f} s)")
        print_sections(result_sections(args, results))
        measured = any(o.runs for outs in results.values() for o in outs)
        if args.markdown and measured:  # nothing measured: no fragment
            text = fragment(args, results, info, command, versions, seconds, interrupted)
            write_markdown(args.markdown, text)
        if args.json:
            raw = {
                "machine": info,
                "versions": versions,
                "results": {
                    name: [
                        {
                            "side": o.side.name,
                            "command": o.side.command,
                            "error": o.error,
                            "runs": [vars(r) for r in o.runs],
                            "c256": vars(o.wide) if o.wide else None,
                        }
                        for o in outs
                    ]
                    for name, outs in results.items()
                },
            }
            Path(args.json).write_text(json.dumps(raw, indent=2))
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
