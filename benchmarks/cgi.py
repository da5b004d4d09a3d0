"""CGI under wrk, and the start-up cost of an app run as a CGI program.

(This file's name shadows the standard library's deprecated `cgi` module for code run with
`benchmarks/` first on sys.path; nothing the benchmarks run imports `cgi`.)

Part 1, wrk (scenarios `sh` and `perl`): the same shell script and the same Perl script (each
prints `Content-Type: text/plain`, `Content-Length: 12` and `Hello, world`), run directly
(shebang) by

  - ours: `bridge serve CGI_BIN --mode cgi` (`bridges.CGIToASGI` behind the built-in server), and
    for reference the same with `--loop asyncio` (the default picks uvloop, whose process spawn
    differs from asyncio's);
  - lighttpd `mod_cgi` (`cgi.assign = ( ".sh" => "", ".pl" => "" )`, one process);
  - Python's `http.server --cgi` (`CGIHTTPRequestHandler`, deprecated, present in 3.11; run with
    `-W ignore`): it speaks HTTP/1.0 and closes every connection, and as root it runs scripts as
    `nobody`.

Part 2 (scenario `startup`): one CGI request per process, driven directly (no web server: the
script is started with a CGI environment and an empty stdin, as a host would, and its output
checked), N times each, alternating:

  (a) `python run_cgi_app.py`: `from bridges import run_cgi; from app import app;
      raise SystemExit(run_cgi(app))`
  (b) `python wsgiref_app.py`: `from wsgiref.handlers import CGIHandler; from app import app;
      CGIHandler().run(app)`
  (c) `python -m bridges cgi app:app`
  and for reference: (d) (a) with the ASGI hello app (lifespan on), (e) `python -c pass`.

All of them run twice over: with the project's venv python (bridges is an editable install there,
whose `.pth` hook costs every interpreter start several ms), and with a clean venv of the same
interpreter that finds bridges through a plain path in a `.pth` (as a wheel install would), where
(f) is (a) again with bridges never compiled (no `__pycache__`, PYTHONDONTWRITEBYTECODE=1).

`app.py` is the WSGI hello app of `benchmarks/apps.py` on its own (no other import), so what is
measured is the adapter's cost. Each is also run once under `-X importtime`.

Method (the project's shared benchmark method; see docs/performance.md, "CGI (wrk and start-up
cost)"): servers and CGI scripts pinned with `taskset -c 1`, wrk with `taskset -c 0`:
`wrk -t2 -c8 -d5s --latency URL` after a 1 s warm-up run; median of 3 runs, alternating; waits
until no other benchmark runs (a `wrk` or a script of `benchmarks/`: up to 8 minutes at the start,
3 minutes before each run) and for a quiet machine before each run, discards a run during which other
processes used > 0.1 core (re-run once, else marked `*`). CPU time per request is that of the
server's whole process tree, the scripts it ran included. Start-up runs are pinned to CPU 1 too,
in batches of 10 rounds; a batch during which other processes used > 0.1 core is taken again.

Bytecode caches: the environment may set PYTHONDONTWRITEBYTECODE=1, and a Python CGI program
that cannot find its `.pyc` files compiles its modules on every request. The script runs
`python -m compileall -q` on `bridges/` and the app directory first; the CGI processes get a
host's environment (PATH and the CGI variables only).

Every process is stopped by PID (and then its own process group). Run from the repository root:

    .venv/bin/python benchmarks/cgi.py              # everything (about 4 minutes)
    .venv/bin/python benchmarks/cgi.py --quick      # 1 run of 2 s per server, N=40
    .venv/bin/python benchmarks/cgi.py --only startup
    .venv/bin/python benchmarks/cgi.py --profile    # py-spy of our CGI runner under wrk -c8

`--markdown PATH` also writes the result tables and the targets to PATH as a Markdown fragment,
with the date, machine, versions and command (also after Ctrl-C, with the partial results);
benchmarks/run_all.py puts it into docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from _common import (
    NOISE_LIMIT,
    SERVER_CPU,
    BenchOptions,
    Budget,
    LoadMeter,
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
    markdown_table,
    outcome_table,
    package_version,
    print_sections,
    profile_under_wrk,
    stop_services_on_exit,
    tcp_ready,
    wait_no_other_wrk,
    wait_quiet,
    write_markdown,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

HEAD = "Content-Type: text/plain\\r\\nContent-Length: 12\\r\\n\\r\\n"  # as the scripts spell it
SCRIPTS = {
    "hello.sh": f"#!/bin/sh\nprintf '{HEAD}Hello, world'\n",
    "hello.pl": f'#!/usr/bin/perl\nprint "{HEAD}Hello, world";\n',
}

APP_PY = '''\
"""The WSGI hello app of benchmarks/apps.py, alone: 200, text/plain, Content-Length 12."""


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "12")])
    return [b"Hello, world"]
'''

ASGI_APP_PY = '''\
"""The ASGI hello app of benchmarks/apps.py, alone (it answers the lifespan protocol)."""


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"12")],
        }
    )
    await send({"type": "http.response.body", "body": b"Hello, world"})
'''

RUN_CGI_PY = "from bridges import run_cgi\nfrom app import app\nraise SystemExit(run_cgi(app))\n"
RUN_CGI_ASGI_PY = "from bridges import run_cgi\nfrom asgi_app import app\nraise SystemExit(run_cgi(app))\n"
WSGIREF_PY = "from wsgiref.handlers import CGIHandler\nfrom app import app\nCGIHandler().run(app)\n"


def shown(arg: str) -> str:
    if arg.startswith(str(ROOT) + os.sep):
        return os.path.relpath(arg, ROOT)
    return arg


def printable(argv: list[str]) -> str:
    return shlex.join(shown(a) for a in argv)


# --- Part 1: wrk -----------------------------------------------------------------------------------


def make_docroot(workdir: Path) -> Path:
    """DOCROOT/cgi-bin/hello.{sh,pl}, readable and runnable by `nobody` (http.server drops to it)."""
    docroot = workdir / "docroot"
    cgi_bin = docroot / "cgi-bin"
    cgi_bin.mkdir(parents=True)
    for name, text in SCRIPTS.items():
        (cgi_bin / name).write_text(text)
        (cgi_bin / name).chmod(0o755)
    for path in (workdir, docroot, cgi_bin):
        path.chmod(0o755)
    return docroot


def lighttpd_conf(workdir: Path, docroot: Path, port: int) -> str:
    return (
        f'server.document-root = "{docroot}"\n'
        'server.bind = "127.0.0.1"\n'
        f"server.port = {port}\n"
        f'server.pid-file = "{workdir / "lighttpd.pid"}"\n'
        f'server.errorlog = "{workdir / "lighttpd-error.log"}"\n'
        'server.modules = ( "mod_cgi" )\n'
        '$HTTP["url"] =~ "^/cgi-bin/" {\n'
        '    cgi.assign = ( ".sh" => "", ".pl" => "" )\n'
        "}\n"
    )


def start_servers(workdir: Path) -> tuple[list[tuple[str, Service, int, str]], str]:
    """Ours, lighttpd and http.server on one docroot; [(name, service, port, url prefix)], lighttpd.conf."""
    docroot = make_docroot(workdir)
    cgi_bin = docroot / "cgi-bin"
    started = []
    port = free_port()
    argv = [
        *[
            "taskset",
            "-c",
            SERVER_CPU,
            sys.executable,
            "-m",
            "bridges",
            "serve",
            str(cgi_bin),
            "--mode",
            "cgi",
        ],
        *["--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning"],
    ]
    started.append(("bridges serve --mode cgi", argv, port, "/"))
    port = free_port()
    argv = [
        *argv[: argv.index("--port") + 1],
        str(port),
        *argv[argv.index("--port") + 2 :],
        "--loop",
        "asyncio",
    ]
    started.append(("bridges serve --mode cgi --loop asyncio", argv, port, "/"))
    port = free_port()
    conf_text = lighttpd_conf(workdir, docroot, port)
    conf = workdir / "lighttpd.conf"
    conf.write_text(conf_text)
    lighttpd = shutil.which("lighttpd") or "/usr/sbin/lighttpd"
    started.append(
        (
            "lighttpd mod_cgi",
            ["taskset", "-c", SERVER_CPU, lighttpd, "-D", "-f", str(conf)],
            port,
            "/cgi-bin/",
        )
    )
    port = free_port()
    argv = [
        *["taskset", "-c", SERVER_CPU, sys.executable, "-W", "ignore", "-m", "http.server", "--cgi"],
        *["--bind", "127.0.0.1", "--directory", str(docroot), str(port)],
    ]
    started.append(("python -m http.server --cgi", argv, port, "/cgi-bin/"))
    servers = []
    for name, argv, port, prefix in started:
        service = Service(name, argv, workdir / f"{name.split()[0]}-{port}.log", cwd=workdir)
        print(f"  start {name}: {printable(argv)}", flush=True)
        service.start(tcp_ready(port))
        servers.append((name, service, port, prefix))
    return servers, conf_text


def run_wrk_scenarios(
    names: list[str],
    args: argparse.Namespace,
    workdir: Path,
    budget: Budget,
    results: dict[str, list[Outcome]],
) -> None:
    """Measure each scenario into `results` (the scenarios done are kept if the run is interrupted)."""
    sub = workdir / "wrk"
    sub.mkdir()
    servers: list[tuple[str, Service, int, str]] = []
    try:
        servers, conf = start_servers(sub)
        print("  lighttpd.conf:\n" + "\n".join("    " + line for line in conf.splitlines()), flush=True)
        for name in names:
            script = "hello.sh" if name == "sh" else "hello.pl"
            print(f"\n## {name}: {script} ({SCRIPTS[script].splitlines()[0]})", flush=True)
            sides, failed = [], []
            for label, service, port, prefix in servers:
                side = Side(label, f"http://127.0.0.1:{port}{prefix}{script}", {"server": service.pid})
                side.command = printable(service.argv)
                try:
                    check_hello(port, prefix + script)
                except Exception as exc:
                    print(f"  ! {label}: {exc}", flush=True)
                    failed.append(Outcome(side, error=str(exc)))
                    continue
                sides.append(side)
            results[name] = alternate(sides, args.opts, budget, 8) + failed
    finally:
        for _, service, _, _ in reversed(servers):
            service.stop()


# --- Part 2: start-up cost -------------------------------------------------------------------------


@dataclass
class Starter:
    key: str
    label: str
    argv: list[str]
    group: str = "project venv"
    extra_env: dict[str, str] = field(default_factory=dict)
    wall_ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    imports: list[str] = field(default_factory=list)
    modules: int = 0
    import_ms: float = 0.0


def cgi_environ() -> dict[str, str]:
    """What a host passes a CGI program for `GET /app.cgi` (RFC 3875), and PATH."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "GATEWAY_INTERFACE": "CGI/1.1",
        "SERVER_SOFTWARE": "bench",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "/app.cgi",
        "PATH_INFO": "",
        "QUERY_STRING": "",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "40000",
        "HTTP_HOST": "127.0.0.1",
        "HTTP_USER_AGENT": "bench",
        "HTTP_ACCEPT": "*/*",
    }


def make_app_dir(workdir: Path) -> Path:
    app_dir = workdir / "cgi-app"
    app_dir.mkdir()
    for name, text in {
        "app.py": APP_PY,
        "asgi_app.py": ASGI_APP_PY,
        "run_cgi_app.py": RUN_CGI_PY,
        "run_cgi_asgi.py": RUN_CGI_ASGI_PY,
        "wsgiref_app.py": WSGIREF_PY,
    }.items():
        (app_dir / name).write_text(text)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(app_dir)], check=True)
    return app_dir


def clean_venv(workdir: Path) -> Path:
    """A venv of the same interpreter where bridges is found through a plain path in a `.pth` file.

    The project's venv has bridges as an editable install, whose `.pth` runs an import hook at
    every interpreter start (it imports pathlib, re, urllib.parse...: ~8 ms here). A wheel install
    has no such cost; this venv reproduces that (only the standard library is needed).
    """
    venv = workdir / "clean-venv"
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(site, "bridges-repo.pth").write_text(f"{ROOT}\n")
    return python


def starters(app_dir: Path, python: str, group: str) -> list[Starter]:
    py = python
    return [
        Starter("a", "(a) run_cgi(app), WSGI", [py, str(app_dir / "run_cgi_app.py")], group),
        Starter("b", "(b) wsgiref CGIHandler().run(app)", [py, str(app_dir / "wsgiref_app.py")], group),
        Starter("c", "(c) python -m bridges cgi app:app", [py, "-m", "bridges", "cgi", "app:app"], group),
        Starter("d", "(d) run_cgi(app), ASGI hello", [py, str(app_dir / "run_cgi_asgi.py")], group),
        Starter("e", "(e) python -c pass", [py, "-c", "pass"], group),
    ]


def one_request(starter: Starter, app_dir: Path, env: dict[str, str]) -> tuple[float, float, bytes]:
    """Run one CGI request; (wall ms, CPU ms of the process, its stdout)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(
        starter.argv,
        cwd=app_dir,
        env={**env, **starter.extra_env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=30,
        check=False,
    )
    wall = (time.perf_counter() - start) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
    if proc.returncode != 0:
        raise RuntimeError(
            f"{starter.label}: exit {proc.returncode}: {proc.stderr.decode(errors='replace')[-300:]}"
        )
    return wall, cpu, proc.stdout


def check_output(starter: Starter, out: bytes) -> None:
    if starter.key == "e":
        return
    head, _, body = out.partition(b"\r\n\r\n")
    head = head.lower()
    if body != b"Hello, world" or b"status: 200" not in head or b"content-length: 12" not in head:
        raise RuntimeError(f"{starter.label}: unexpected output {out[:200]!r}")


def import_profile(starter: Starter, app_dir: Path, env: dict[str, str]) -> None:
    """Run once under -X importtime: modules imported, their total, the biggest top-level imports."""
    argv = [starter.argv[0], "-X", "importtime", *starter.argv[1:]]
    proc = subprocess.run(
        argv,
        cwd=app_dir,
        env={**env, **starter.extra_env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=30,
    )
    top: list[tuple[int, str]] = []
    total = 0
    count = 0
    for line in proc.stderr.decode(errors="replace").splitlines():
        # "import time: SELF_US | CUMULATIVE_US | NAME", NAME indented two spaces per nesting level.
        if not line.startswith("import time:") or "imported package" in line:
            continue
        self_us, cumulative, name = line[len("import time:") :].split("|")
        count += 1
        total += int(self_us)
        if len(name) - len(name.lstrip()) == 1:  # imported by the program itself, not by a module
            top.append((int(cumulative), name.strip()))
    starter.modules = count
    starter.import_ms = total / 1000
    starter.imports = [f"{name} {us / 1000:.1f}" for us, name in sorted(top, reverse=True)[:8]]


def run_startup(args: argparse.Namespace, workdir: Path) -> list[Starter]:
    print(f"\n## startup: one CGI request per process, N={args.requests} each, alternating", flush=True)
    app_dir = make_app_dir(workdir)
    env = cgi_environ()
    runs = starters(app_dir, sys.executable, "project venv")
    clean = starters(app_dir, str(clean_venv(workdir)), "clean venv")
    # (f): bridges deployed where nothing ever compiled it and __pycache__ cannot be written: every
    # request compiles its modules again (what PYTHONDONTWRITEBYTECODE=1 alone would lead to).
    nocache = workdir / "nocache"
    shutil.copytree(ROOT / "bridges", nocache / "bridges", ignore=shutil.ignore_patterns("__pycache__"))
    no_pyc = Starter("f", "(f) (a) without bytecode caches", clean[0].argv, "clean venv")
    no_pyc.extra_env = {"PYTHONPATH": str(nocache), "PYTHONDONTWRITEBYTECODE": "1"}
    runs += [*clean, no_pyc]
    for starter in runs:
        extra = "".join(f"{k}={v} " for k, v in starter.extra_env.items())
        print(
            f"  {starter.group}, {starter.label}: cd {app_dir} && {extra}{printable(starter.argv)}",
            flush=True,
        )
        _, _, out = one_request(starter, app_dir, env)
        check_output(starter, out)
    print(f"  environment: {' '.join(f'{k}={v}' for k, v in env.items() if v)}", flush=True)
    affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {int(SERVER_CPU)})  # the CGI processes inherit it
    try:
        batch = 10
        done = 0
        retries = 0
        while done < args.requests:
            size = min(batch, args.requests - done)
            wait_no_other_wrk(180.0)
            wait_quiet(NOISE_LIMIT, 0.5, 3.0)
            samples: list[list[tuple[float, float]]] = [[] for _ in runs]
            with LoadMeter() as load:
                for _ in range(size):
                    for i, starter in enumerate(runs):
                        wall, cpu, _out = one_request(starter, app_dir, env)
                        samples[i].append((wall, cpu))
            if load.others > NOISE_LIMIT and retries < args.requests // batch:
                retries += 1
                print(f"    batch discarded: others used {load.others:.2f} core", flush=True)
                continue
            for i, starter in enumerate(runs):
                starter.wall_ms += [w for w, _ in samples[i]]
                starter.cpu_ms += [c for _, c in samples[i]]
            done += size
        for starter in runs:
            import_profile(starter, app_dir, env)
    finally:
        os.sched_setaffinity(0, affinity)
    return runs


def startup_table(runs: list[Starter]) -> str:
    """One row per program; ratios against (b) and the cost above (e) of the same venv."""
    header = [
        "venv",
        "program",
        "wall ms/request (median)",
        "mean",
        "p90",
        "CPU ms/request",
        "above (e) ms",
        "this / (b) wall",
        "this / (b) CPU",
    ]
    rows = []
    for group in dict.fromkeys(s.group for s in runs):
        members = [s for s in runs if s.group == group]
        by = {s.key: s for s in members}
        b_wall, b_cpu = statistics.median(by["b"].wall_ms), statistics.median(by["b"].cpu_ms)
        floor = statistics.median(by["e"].wall_ms)
        for s in members:
            wall, cpu = statistics.median(s.wall_ms), statistics.median(s.cpu_ms)
            p90 = statistics.quantiles(s.wall_ms, n=10)[-1] if len(s.wall_ms) >= 10 else max(s.wall_ms)
            rows.append(
                [
                    group,
                    s.label,
                    f"{wall:.1f}",
                    f"{statistics.fmean(s.wall_ms):.1f}",
                    f"{p90:.1f}",
                    f"{cpu:.1f}",
                    f"{wall - floor:.1f}",
                    f"{wall / b_wall:.2f}",
                    f"{cpu / b_cpu:.2f}",
                ]
            )
    return markdown_table(header, rows)


def imports_table(runs: list[Starter]) -> str:
    header = [
        "venv",
        "program",
        "modules imported",
        "import self time ms",
        "largest top-level imports (cumulative ms)",
    ]
    rows = [[s.group, s.label, str(s.modules), f"{s.import_ms:.1f}", ", ".join(s.imports)] for s in runs]
    return markdown_table(header, rows)


# --- Results -----------------------------------------------------------------------------------------


def target_lines(results: dict[str, list[Outcome]], startup: list[Starter]) -> list[str]:
    lines = []
    for name, outs in results.items():
        ours, light, stdlib = (
            next((o for o in outs if o.side.name.startswith(p) and o.runs), None)
            for p in ("bridges", "lighttpd", "python")
        )
        if ours and light:
            r = ours.med("rps") / light.med("rps")
            lines.append(
                f"{'PASS' if r >= 0.8 else 'MISS'}  {name}: bridges >= 0.8x lighttpd mod_cgi req/s: {r:.2f}x"
            )
        if ours and stdlib:
            r = ours.med("rps") / stdlib.med("rps")
            lines.append(
                f"{'PASS' if r >= 3 else 'MISS'}  {name}: bridges >= 3x http.server --cgi req/s: {r:.2f}x"
            )
    for group in dict.fromkeys(s.group for s in startup):
        by = {s.key: statistics.median(s.wall_ms) for s in startup if s.group == group}
        for key, what in (("a", "run_cgi(app)"), ("c", "bridge cgi app:app")):
            r = by[key] / by["b"]
            lines.append(
                f"{'PASS' if r <= 1.2 else 'MISS'}  start-up ({group}): {what} within 1.2x of"
                f" wsgiref CGIHandler: {r:.2f}x ({by[key]:.1f} ms vs {by['b']:.1f} ms)"
            )
    return lines


def result_sections(
    args: argparse.Namespace, results: dict[str, list[Outcome]], startup: list[Starter]
) -> list[Section]:
    """The wrk tables (with how each server ran), the start-up tables, and the targets."""
    sections = []
    runs = f"median of {args.opts.runs} runs" if args.opts.runs > 1 else "one run"
    for name, outs in results.items():
        context = "\n".join(
            f"- {out.side.name}: `{out.side.command}`" + (f" (failed: {out.error})" if out.error else "")
            for out in outs
        )
        body = f"-c8, {runs} of {args.opts.duration:g} s:\n\n{outcome_table(outs)}"
        sections.append(
            Section(f"{name}: {'hello.sh' if name == 'sh' else 'hello.pl'}, wrk -c8", body, context)
        )
    if startup:
        heading = f"startup: N={len(startup[0].wall_ms)} requests per program, pinned to CPU {SERVER_CPU}"
        body = (
            f"{startup_table(startup)}\n\nImports (one run each under -X importtime; times inflated by the"
            f" tracing):\n\n{imports_table(startup)}"
        )
        sections.append(Section(heading, body))
    lines = [f"- {line}" for line in target_lines(results, startup)]
    noisy = sum(r.noisy for outs in results.values() for o in outs for r in o.runs)
    lines.append(f"\n`*`: run stayed noisy (other processes > 0.1 core) after retries: {noisy} run(s)")
    sections.append(Section("Targets", "\n".join(lines)))
    return sections


def fragment(
    args: argparse.Namespace,
    results: dict[str, list[Outcome]],
    startup: list[Starter],
    info: dict[str, str],
    command: str,
    versions: str,
    seconds: float,
    interrupted: bool,
) -> str:
    """What `--markdown` writes: the tables and targets, with the run's date, machine and command."""
    return markdown_fragment(
        result_sections(args, results, startup),
        info,
        command,
        versions=versions,
        seconds=seconds,
        interrupted=interrupted,
    )


# --- Profile ---------------------------------------------------------------------------------------


def profile(workdir: Path) -> None:
    """py-spy (raw, non-blocking, 5 s) on `bridge serve CGI_BIN --mode cgi` (uvloop, the default, and
    `--loop asyncio`) running hello.sh under wrk -c8."""
    servers: list[tuple[str, Service, int, str]] = []
    try:
        servers, _ = start_servers(workdir)
        for _, other, _, _ in servers[2:]:
            other.stop()
        for name, service, port, prefix in servers[:2]:
            check_hello(port, prefix + "hello.sh")
            print(f"\n### {name}, hello.sh, wrk -c8")
            url = f"http://127.0.0.1:{port}{prefix}hello.sh"
            lines = profile_under_wrk(service.pid, url, 8, workdir / f"profile-{port}.txt")
            print("\n".join(lines), flush=True)
    finally:
        for _, service, _, _ in reversed(servers):
            service.stop()


# --- Main ------------------------------------------------------------------------------------------

SCENARIO_NAMES = ["sh", "perl", "startup"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one run of 2 s per server, N=40")
    parser.add_argument("--only", metavar="NAMES", help="comma-separated: " + ", ".join(SCENARIO_NAMES))
    parser.add_argument("--runs", type=int, help="measured runs per server (default 3)")
    parser.add_argument("--duration", type=float, help="seconds per measured run (default 5)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of warm-up before each run")
    parser.add_argument("--retries", type=int, default=1, help="re-runs of a noisy run (default 1)")
    parser.add_argument("--requests", type=int, help="start-up: requests per program (default 200)")
    parser.add_argument(
        "--budget", type=float, default=300.0, help="time limit (s) for the wrk part (default 300)"
    )
    parser.add_argument("--json", metavar="PATH", help="also write the raw figures here")
    parser.add_argument("--profile", action="store_true", help="only profile our CGI runner with py-spy")
    parser.add_argument(
        "--markdown",
        metavar="PATH",
        help="also write the result tables here, as a Markdown fragment (for docs/performance.md)",
    )
    args = parser.parse_args(argv)
    if args.markdown and args.profile:
        parser.error("--markdown writes the tables of a measuring run: not with --profile")
    args.opts = BenchOptions(
        runs=args.runs or (1 if args.quick else 3),
        duration=args.duration or (2.0 if args.quick else 5.0),
        warmup=args.warmup,
        retries=args.retries,
    )
    args.requests = min(args.requests or (40 if args.quick else 200), 1000)
    names = [n.strip() for n in args.only.split(",")] if args.only else SCENARIO_NAMES
    unknown = [n for n in names if n not in SCENARIO_NAMES]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}; choose from {', '.join(SCENARIO_NAMES)}")
    args.names = names
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed", file=sys.stderr)
            return 2
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "bridges")], check=False)
    with tempfile.TemporaryDirectory(prefix="bench-cgi-") as tmp, stop_services_on_exit():
        workdir = Path(tmp)
        workdir.chmod(0o755)  # http.server runs scripts as `nobody` when started as root
        if args.profile:
            profile(workdir)
            return 0
        info = machine_info()
        print(f"# CGI under wrk, and CGI start-up cost -- {info['date']}")
        print(f"machine: {info['cpus']}; {info['python']}; {info['platform']}")
        tools = []
        for cmd in (["lighttpd", "-v"], ["perl", "-e", "print $^V"], ["wrk", "-v"]):
            out = subprocess.run(cmd, capture_output=True, text=True, check=False)
            tools.append(((out.stdout or out.stderr).strip().splitlines() or ["?"])[0])
        versions = f"gateway-bridges {package_version('gateway-bridges')}; " + "; ".join(tools)
        versions += f"; /bin/sh -> {os.path.realpath('/bin/sh')}"
        print(f"versions: {versions}")
        command = command_line()
        print(f"command: {command}")
        wait_no_other_wrk(480.0)
        started = time.monotonic()
        wrk_names = [n for n in args.names if n != "startup"]
        per_run = 0.5 + args.opts.warmup + args.opts.duration + 0.7
        budget = Budget(args.budget, len(wrk_names) * 4 * args.opts.runs * per_run + 8, per_run)
        results: dict[str, list[Outcome]] = {}
        startup: list[Starter] = []
        interrupted = False
        try:
            if wrk_names:
                run_wrk_scenarios(wrk_names, args, workdir, budget, results)
            if "startup" in args.names:
                startup = run_startup(args, workdir)
        except KeyboardInterrupt:
            interrupted = True
            Service.stop_all()
            print("\ninterrupted: servers stopped; partial results follow", file=sys.stderr)
        seconds = time.monotonic() - started
        print(f"\n# Results ({seconds:.0f} s)")
        print_sections(result_sections(args, results, startup))
        measured = bool(startup) or any(o.runs for outs in results.values() for o in outs)
        if args.markdown and measured:  # nothing measured: no fragment
            text = fragment(args, results, startup, info, command, versions, seconds, interrupted)
            write_markdown(args.markdown, text)
        if args.json:
            raw = {
                "machine": info,
                "versions": versions,
                "wrk": {
                    name: [
                        {"side": o.side.name, "command": o.side.command, "runs": [vars(r) for r in o.runs]}
                        for o in outs
                    ]
                    for name, outs in results.items()
                },
                "startup": [
                    {
                        "label": s.label,
                        "argv": s.argv,
                        "wall_ms": s.wall_ms,
                        "cpu_ms": s.cpu_ms,
                        "imports": s.imports,
                    }
                    for s in startup
                ],
            }
            Path(args.json).write_text(json.dumps(raw, indent=2))
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
