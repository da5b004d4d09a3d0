"""The built-in HTTP/1.1 server (`python -m bridges serve`) against rival servers, under wrk.

Scenarios (every server serves the same app file, `benchmarks/apps.py`):

  asgi-hello  GET hello (`asgi_app`): ours, uvicorn (httptools + uvloop), granian (asgi),
              uvicorn (h11)
  json        GET a ~10 KB JSON body (`asgi_json`): ours, uvicorn (httptools + uvloop)
  echo        POST 1 MiB, echoed back (`asgi_echo`; wrk runs a Lua script): ours, uvicorn
  wsgi-hello  GET hello (`wsgi_app`): ours `--mode wsgi`, uvicorn `--interface wsgi` (a2wsgi),
              waitress (4 threads), gunicorn (sync), granian (wsgi)

Method (the project's shared benchmark method, "HTTP servers (wrk)"; docs/performance.md):

- One worker process per server, access logs off, each server pinned with `taskset -c 1`; wrk
  pinned with `taskset -c 0`: `wrk -t2 -c64 -d5s --latency URL`, after a 1 s warm-up run of the
  same kind. Median of 3 runs, then one `-c256` run.
- All the servers of a scenario are started at once (each on a port found by binding port 0) and
  checked with one request; the runs then alternate between them (A B C A B C ...), so the
  ratios come from one stretch of time. Idle servers use no CPU.
- Before each run the script waits for any wrk it did not start (another benchmark) to end,
  then (up to 3 s) until other processes use < 0.1 core over 0.5 s (/proc/stat). During the
  measured run it estimates other processes' CPU time two ways: machine-wide time (/proc/stat,
  interrupt time left out: loopback traffic is processed in softirq context, charged to no
  process) minus wrk's, the servers' (every process of each server's tree) and its own; and the
  sum over every other process in /proc (capped by the machine-wide time with interrupts). If
  the larger is > 0.1 core the run is discarded and taken again (up to `--retries` times while
  the time budget lasts); a run that stays noisy is kept and marked `*`.
- The whole run is bounded by `--budget` (450 s): the planned runs are reserved first, and
  retries and long waits only use what is left.
- The server's CPU time per request: utime + stime of its process tree during the measured run,
  divided by the requests wrk completed. It depends less on sharing cores than req/s does.
  wrk's own CPU time per request is shown too: when it is high, the load generator (one core)
  may be the limit rather than the server.
- A run with socket errors or non-2xx responses is reported in the `errors` column.

Every server process is stopped by PID (SIGTERM, then SIGKILL after 5 s, children included) when
its scenario ends, on errors and on Ctrl-C. Run from the repository root:

    .venv/bin/python benchmarks/server.py                 # everything (6 to 7.5 minutes)
    .venv/bin/python benchmarks/server.py --quick         # 1 run of 2 s per server
    .venv/bin/python benchmarks/server.py --only asgi-hello,wsgi-hello
    .venv/bin/python benchmarks/server.py --profile       # py-spy of ours, ASGI hello, under wrk

`--markdown PATH` also writes the result tables and the targets to PATH as a Markdown fragment,
with the date, machine, versions and command (also after Ctrl-C, with the partial results);
benchmarks/run_all.py puts it into docs/performance.md.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import http.client
import json
import os
import re
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from _common import (
    CLK_TCK,
    Section,
    command_line,
    cpu_seconds,
    machine_busy_seconds,
    machine_info,
    markdown_fragment,
    markdown_table,
    median,
    package_version,
    print_sections,
    run_wrk,
    wait_quiet,
    write_markdown,
)

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
SERVER_CPU = "1"
WRK_CPU = "0"
NOISE_LIMIT = 0.1  # cores other processes may use during a run
STOP_TIMEOUT = 5.0
START_TIMEOUT = 20.0
ECHO_BYTES = 1024 * 1024


def shown(path: Path | str) -> str:
    """A path as it reads best in a printed command (relative to the current directory if inside)."""
    text = str(path)
    with contextlib.suppress(ValueError):
        rel = os.path.relpath(text)
        if not rel.startswith(".."):
            return rel
    return text


# --- Processes: CPU time of a process tree, stopping a tree by PID ---------------------------------


Stats = dict[int, tuple[int, int, int, int]]


def _proc_stats() -> Stats:
    """pid -> (ppid, utime + stime, start time, cutime + cstime) for every process in /proc.

    Times are in clock ticks; cutime + cstime is the CPU time of the children it has reaped.
    """
    stats: Stats = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        rest = data[data.rfind(b")") + 2 :].split()
        # After the command: state ppid ... utime stime cutime cstime ... starttime (fields 3-22).
        stats[int(name)] = (
            int(rest[1]),
            int(rest[11]) + int(rest[12]),
            int(rest[19]),
            int(rest[13]) + int(rest[14]),
        )
    return stats


def _tree(root: int, stats: Stats) -> list[int]:
    children: dict[int, list[int]] = collections.defaultdict(list)
    for pid, (ppid, *_) in stats.items():
        children[ppid].append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            found.append(pid)
            todo.extend(children.get(pid, ()))
    return found


def tree_cpu(roots: list[int], stats: Stats) -> dict[int, float]:
    """root pid -> CPU seconds (utime + stime) of the live processes in its tree."""
    return {root: sum(stats[pid][1] for pid in _tree(root, stats)) / CLK_TCK for root in roots}


def others_cpu(before: Stats, after: Stats, own: set[int]) -> float:
    """CPU seconds used between two snapshots by processes outside `own` (and children they reaped).

    A process that started and exited in between, and whose parent did not reap it in between,
    is missed: `measure` also checks the machine-wide count from /proc/stat.
    """
    ticks = 0
    for pid, (_, cpu, start, reaped) in after.items():
        if pid in own:
            continue
        old = before.get(pid)
        if old is not None and old[2] == start:
            ticks += (cpu - old[1]) + (reaped - old[3])
        else:
            ticks += cpu + reaped
    return ticks / CLK_TCK


def other_wrk_pids() -> list[int]:
    """PIDs of wrk processes this script did not start (another benchmark is running)."""
    stats = _proc_stats()
    mine = set(_tree(os.getpid(), stats))
    found = []
    for pid in stats:
        if pid in mine:
            continue
        try:
            with open(f"/proc/{pid}/comm", "rb") as f:
                if f.read().strip() == b"wrk":
                    found.append(pid)
        except OSError:
            continue
    return found


def wait_no_other_wrk(max_wait: float) -> None:
    """Wait (up to `max_wait` s) until no wrk of another benchmark has run for a second."""
    if not other_wrk_pids():
        return
    progress(f"    (another wrk is running: waiting up to {max_wait:.0f} s)")
    deadline = time.monotonic() + max_wait
    last_seen = time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - last_seen < 1.0:
        time.sleep(0.1)
        if other_wrk_pids():
            last_seen = time.monotonic()


def progress(*parts: object) -> None:
    """Progress lines go to stderr: stdout carries only the header and the result tables."""
    print(*parts, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class ServerProcess:
    """One server, started in its own session and stopped by PID (its whole tree)."""

    running: ClassVar[list[ServerProcess]] = []  # every server still to stop

    def __init__(self, argv: list[str], port: int, logdir: Path, name: str) -> None:
        self.argv = argv
        self.port = port
        self.name = name
        self.log_path = logdir / f"{re.sub(r'[^A-Za-z0-9]+', '-', name)}-{port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        if port_in_use(self.port):
            raise RuntimeError(f"port {self.port} is already in use")
        env = dict(os.environ, PYTHONPATH=str(HERE))
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=HERE,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches only this script, which stops the tree.
            )
        ServerProcess.running.append(self)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"exited with status {self.proc.returncode}: {self.log_tail()}")
            if port_in_use(self.port):
                return
            time.sleep(0.05)
        raise RuntimeError(f"not listening after {START_TIMEOUT:g} s: {self.log_tail()}")

    def log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(lines[-3:])[-300:] or "(empty log)"

    def stop(self) -> None:
        """SIGTERM the server; SIGKILL it after STOP_TIMEOUT; then SIGKILL any child left over."""
        if self.proc is None:
            return
        with contextlib.suppress(ValueError):
            ServerProcess.running.remove(self)
        stats = _proc_stats()
        family = {pid: stats[pid][2] for pid in _tree(self.proc.pid, stats) if pid != self.proc.pid}
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
        deadline = time.monotonic() + STOP_TIMEOUT
        while family and time.monotonic() < deadline:
            now = _proc_stats()
            family = {pid: st for pid, st in family.items() if pid in now and now[pid][2] == st}
            if family:
                time.sleep(0.05)
        for pid in family:  # Same PID and start time: still the child this server started.
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    @classmethod
    def stop_all(cls) -> None:
        for server in list(reversed(cls.running)):
            try:
                server.stop()
            except Exception as exc:  # Keep stopping the others.
                print(f"  ! could not stop {server.name} (pid {server.pid}): {exc}", file=sys.stderr)


# --- Contenders and scenarios ------------------------------------------------------------------------


@dataclass
class Contender:
    name: str
    command: Callable[[int], list[str]]  # port -> argv (without taskset)


def ours(target: str, *extra: str) -> Contender:
    label = "bridges serve" + (" --mode wsgi" if "wsgi" in extra else "")
    return Contender(
        label,
        lambda port: [
            sys.executable,
            "-m",
            "bridges",
            "serve",
            target,
            *extra,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
    )


def uvicorn(target: str, *extra: str, http: str = "httptools", label: str = "") -> Contender:
    loop = ["--loop", "uvloop"] if http == "httptools" else []
    return Contender(
        label or f"uvicorn ({http})",
        lambda port: [
            str(BIN / "uvicorn"),
            target,
            *extra,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--http",
            http,
            *loop,
            "--no-access-log",
            "--log-level",
            "warning",
        ],
    )


def granian(interface: str, target: str) -> Contender:
    return Contender(
        f"granian ({interface})",
        lambda port: [
            str(BIN / "granian"),
            "--interface",
            interface,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--runtime-threads",
            "1",
            "--no-ws",
            "--no-access-log",
            "--log-level",
            "warning",
            target,
        ],
    )


WAITRESS = Contender(
    "waitress (4 threads)",
    lambda port: [
        str(BIN / "waitress-serve"),
        "--threads",
        "4",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "apps:wsgi_app",
    ],
)
GUNICORN = Contender(
    "gunicorn (sync)",
    lambda port: [
        str(BIN / "gunicorn"),
        "-w",
        "1",
        "-k",
        "sync",
        "-b",
        f"127.0.0.1:{port}",
        "--log-level",
        "warning",
        "apps:wsgi_app",
    ],
)


@dataclass
class Scenario:
    name: str
    title: str
    contenders: list[Contender]  # ours first
    method: str = "GET"
    lua: bool = False  # wrk POSTs 1 MiB through a Lua script
    check: Callable[[int], None] = field(default=lambda port: None)


def _expect(port: int, method: str, body: bytes | None, want: bytes, content_type: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Content-Type": "application/octet-stream"} if body is not None else {}
        conn.request(method, "/", body=body, headers=headers)
        response = conn.getresponse()
        got = response.read()
    finally:
        conn.close()
    problems = []
    if response.status != 200:
        problems.append(f"status {response.status}")
    if got != want:
        problems.append(f"body of {len(got)} bytes, not the expected {len(want)}")
    if response.getheader("Content-Length") != str(len(want)):
        problems.append(f"Content-Length {response.getheader('Content-Length')!r}")
    if response.getheader("Content-Type") != content_type:
        problems.append(f"Content-Type {response.getheader('Content-Type')!r}")
    if problems:
        raise RuntimeError("wrong response: " + ", ".join(problems))


def check_hello(port: int) -> None:
    _expect(port, "GET", None, b"Hello, world", "text/plain")


def check_json(port: int) -> None:
    import apps

    _expect(port, "GET", None, apps.JSON_BODY, "application/json")


def check_echo(port: int) -> None:
    payload = os.urandom(ECHO_BYTES)
    _expect(port, "POST", payload, payload, "application/octet-stream")


SCENARIOS = [
    Scenario(
        "asgi-hello",
        "ASGI hello",
        [
            ours("apps:asgi_app"),
            uvicorn("apps:asgi_app"),
            granian("asgi", "apps:asgi_app"),
            uvicorn("apps:asgi_app", http="h11"),
        ],
        check=check_hello,
    ),
    Scenario(
        "json",
        "ASGI, a 10 KB JSON response",
        [ours("apps:asgi_json"), uvicorn("apps:asgi_json")],
        check=check_json,
    ),
    Scenario(
        "echo",
        "ASGI, 1 MiB POST echoed back",
        [ours("apps:asgi_echo"), uvicorn("apps:asgi_echo")],
        method="POST",
        lua=True,
        check=check_echo,
    ),
    Scenario(
        "wsgi-hello",
        "WSGI hello",
        [
            ours("apps:wsgi_app", "--mode", "wsgi"),
            uvicorn("apps:wsgi_app", "--interface", "wsgi", label="uvicorn --interface wsgi"),
            WAITRESS,
            GUNICORN,
            granian("wsgi", "apps:wsgi_app"),
        ],
        check=check_hello,
    ),
]
BY_NAME = {s.name: s for s in SCENARIOS}

LUA_POST = f"""-- POST {ECHO_BYTES} bytes on every request (wrk adds Content-Length).
wrk.method = "POST"
wrk.body = string.rep("x", {ECHO_BYTES})
wrk.headers["Content-Type"] = "application/octet-stream"
"""


# --- wrk -------------------------------------------------------------------------------------------


def wrk_argv(port: int, connections: int, seconds: float, lua: Path | None) -> list[str]:
    argv = ["taskset", "-c", WRK_CPU, "wrk", "-t2", f"-c{connections}", f"-d{seconds:g}s", "--latency"]
    if lua is not None:
        argv += ["-s", str(lua)]
    return [*argv, f"http://127.0.0.1:{port}/"]


# --- Measuring -------------------------------------------------------------------------------------


@dataclass
class Run:
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float  # server CPU time per request
    wrk_cpu_us: float  # wrk's CPU time per request (is the load generator the limit?)
    errors: int
    others: float  # cores other processes used during the run
    noisy: bool


START_COST = 2.0  # seconds planned for starting and checking one server


class Budget:
    """Time left for optional work (re-running noisy runs, long waits for quiet) in a bounded run.

    The planned work (every server start and every run at its minimum length) is reserved first:
    `slack` is what remains of the deadline once the planned work still to do is set aside.
    """

    def __init__(self, seconds: float, args: argparse.Namespace) -> None:
        self.deadline = time.monotonic() + seconds
        self.per_run = 0.5 + args.warmup + args.duration + 0.5  # quiet window, runs, overhead
        servers = sum(len(s.contenders) for s in args.scenarios)
        self.planned = servers * (START_COST + (args.runs + args.wide) * self.per_run)

    def slack(self) -> float:
        return self.deadline - time.monotonic() - self.planned

    def spent(self, seconds: float) -> None:
        self.planned = max(self.planned - seconds, 0.0)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(
    server: ServerProcess,
    connections: int,
    args: argparse.Namespace,
    lua: Path | None,
    budget: Budget,
) -> Run:
    """One measured run (after waiting for quiet and a warm-up), re-run while noisy."""
    attempts = 1 + args.retries
    run: Run | None = None
    for attempt in range(attempts):
        wait_no_other_wrk(min(30.0, max(budget.slack(), 0.0)))
        quiet_wait = min(3.0, max(budget.slack(), 0.5))
        wait_quiet(NOISE_LIMIT, 0.5, quiet_wait)
        run_wrk(wrk_argv(server.port, connections, args.warmup, lua), args.warmup)
        argv = wrk_argv(server.port, connections, args.duration, lua)
        roots = [s.pid for s in ServerProcess.running]
        busy0, irq0, self0, kids0, stats0 = (
            machine_busy_seconds(interrupts=False),
            machine_busy_seconds(),
            cpu_seconds(),
            _children_cpu(),
            _proc_stats(),
        )
        start = time.monotonic()
        result = run_wrk(argv, args.duration)
        elapsed = time.monotonic() - start
        busy1, irq1, self1, kids1, stats1 = (
            machine_busy_seconds(interrupts=False),
            machine_busy_seconds(),
            cpu_seconds(),
            _children_cpu(),
            _proc_stats(),
        )
        trees0, trees1 = tree_cpu(roots, stats0), tree_cpu(roots, stats1)
        servers = sum(trees1[r] - trees0[r] for r in roots)
        own_pids = {os.getpid()}
        for root in roots:
            own_pids.update(_tree(root, stats0), _tree(root, stats1))
        # Other processes' CPU time, two ways: machine-wide without interrupt time, minus ours (can
        # miss some: a process's utime/stime includes softirq work done in its context); and the
        # sum over the other processes (misses processes both started and gone in between, and
        # overcounts when a process reaps a child that ran mostly before the run: so it is capped
        # by the machine-wide count with interrupt time, an upper bound). The larger is used.
        own = (self1 - self0) + (kids1 - kids0) + servers
        machine = busy1 - busy0 - own
        ceiling = irq1 - irq0 - own
        scanned = min(others_cpu(stats0, stats1, own_pids), ceiling)
        others = max(machine, scanned, 0.0) / elapsed
        server_cpu = trees1[server.pid] - trees0[server.pid]
        run = Run(
            rps=result.rps,
            p50_ms=result.p50_ms,
            p99_ms=result.p99_ms,
            cpu_us=server_cpu / max(result.requests, 1) * 1e6,
            wrk_cpu_us=(kids1 - kids0) / max(result.requests, 1) * 1e6,
            errors=result.errors,
            others=others,
            noisy=others > NOISE_LIMIT,
        )
        flag = f"  noisy: others used {others:.2f} core" if run.noisy else ""
        progress(
            f"    {server.name:<26} -c{connections:<4} {run.rps:>9,.0f} req/s  p50 {run.p50_ms:>6.2f} ms"
            f"  p99 {run.p99_ms:>7.2f} ms  {run.cpu_us:>6.1f} µs/req (wrk {run.wrk_cpu_us:.1f})"
            f"  errors {run.errors}{flag}"
        )
        if not run.noisy or attempt == attempts - 1 or budget.slack() < budget.per_run:
            break
        progress("    (discarded, measuring again)")
    assert run is not None
    budget.spent(budget.per_run)
    return run


@dataclass
class Outcome:
    contender: Contender
    command: str = ""
    runs: list[Run] = field(default_factory=list)
    wide: Run | None = None  # the -c256 run
    error: str | None = None

    def counted(self) -> list[Run]:
        """The runs a median is taken over: the quiet ones (noisy runs are discarded), or, if
        every run stayed noisy, all of them (the figure is then marked `*`)."""
        quiet = [r for r in self.runs if not r.noisy]
        return quiet or self.runs

    def all_noisy(self) -> bool:
        return bool(self.runs) and all(r.noisy for r in self.runs)

    def med(self, attr: str) -> float:
        runs = self.counted()
        return median([getattr(r, attr) for r in runs]) if runs else float("nan")


def wrk_shown(scenario: Scenario, connections: int, args: argparse.Namespace) -> str:
    """The wrk command of a scenario as printed (the port varies; the Lua file is a temporary one)."""
    lua = Path("post-1mib.lua") if scenario.lua else None
    return shlex.join(wrk_argv(0, connections, args.duration, lua)).replace(":0/", ":PORT/")


def run_scenario(
    scenario: Scenario, args: argparse.Namespace, workdir: Path, budget: Budget, outcomes: list[Outcome]
) -> None:
    """Measure every contender of `scenario` into `outcomes` (kept if the run is interrupted)."""
    lua = None
    if scenario.lua:
        lua = workdir / "post-1mib.lua"
        lua.write_text(LUA_POST)
    outcomes.extend(Outcome(c) for c in scenario.contenders)
    servers: dict[int, ServerProcess] = {}
    progress(f"\n## {scenario.name}: {scenario.title}")
    try:
        for i, outcome in enumerate(outcomes):
            port = free_port()
            argv = ["taskset", "-c", SERVER_CPU, *outcome.contender.command(port)]
            outcome.command = shlex.join(shown(a) if a.startswith("/") else a for a in argv)
            progress(f"  start {outcome.contender.name}: {outcome.command}")
            server = ServerProcess(argv, port, workdir, outcome.contender.name)
            try:
                server.start()
                scenario.check(port)
            except Exception as exc:
                outcome.error = str(exc)
                progress(f"  ! {outcome.contender.name}: {exc}")
                server.stop()
                continue
            servers[i] = server
            budget.spent(START_COST)
        progress(f"  wrk: {wrk_shown(scenario, 64, args)} (after a {args.warmup:g} s warm-up run)")
        for _round in range(args.runs):
            for i, server in servers.items():
                try:
                    outcomes[i].runs.append(measure(server, 64, args, lua, budget))
                except Exception as exc:
                    outcomes[i].error = str(exc)
                    progress(f"  ! {server.name}: {exc}")
                    server.stop()
            servers = {i: s for i, s in servers.items() if outcomes[i].error is None}
        if args.wide:
            for i, server in servers.items():
                try:
                    outcomes[i].wide = measure(server, 256, args, lua, budget)
                except Exception as exc:
                    progress(f"  ! {server.name} -c256: {exc}")
    finally:
        for server in servers.values():
            server.stop()


# --- Reporting -------------------------------------------------------------------------------------


def fmt_rate(run: Run) -> str:
    return f"{run.rps:,.0f}" + ("*" if run.noisy else "")


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if a > 0 and b > 0 else ""


HEADER = [
    "server",
    "req/s",
    "runs (req/s)",
    "p50 ms",
    "p99 ms",
    "CPU µs/req",
    "wrk CPU µs/req",
    "ours / this (req/s)",
    "ours / this (CPU)",
    "errors",
]


def tables(scenario: Scenario, outcomes: list[Outcome], args: argparse.Namespace) -> str:
    """The -c64 table (medians) and the -c256 table (one run)."""
    ours_out = outcomes[0]
    rows = []
    for out in outcomes:
        if not out.runs:
            status = ["failed", out.error] if out.error else ["-", "not measured (interrupted)"]
            rows.append([out.contender.name, *status, *[""] * (len(HEADER) - 3)])
            continue
        rps, cpu = out.med("rps"), out.med("cpu_us")
        rows.append(
            [
                out.contender.name,
                f"{rps:,.0f}" + ("*" if out.all_noisy() else ""),
                " / ".join(fmt_rate(r) for r in out.runs),
                f"{out.med('p50_ms'):.2f}",
                f"{out.med('p99_ms'):.2f}",
                f"{cpu:.1f}",
                f"{out.med('wrk_cpu_us'):.1f}",
                ratio(ours_out.med("rps"), rps),
                ratio(cpu, ours_out.med("cpu_us")),
                str(sum(r.errors for r in out.runs)),
            ]
        )
    runs = (
        f"{args.runs} runs of {args.duration:g} s, medians of the quiet runs"
        if args.runs > 1
        else f"one run of {args.duration:g} s"
    )
    text = [f"-c64, {runs}:", "", markdown_table(HEADER, rows)]
    ours_wide = ours_out.wide
    wide_rows = []
    for out in outcomes:
        w = out.wide
        if w is None:
            continue
        wide_rows.append(
            [
                out.contender.name,
                fmt_rate(w),
                f"{w.p50_ms:.2f}",
                f"{w.p99_ms:.2f}",
                f"{w.cpu_us:.1f}",
                f"{w.wrk_cpu_us:.1f}",
                ratio(ours_wide.rps, w.rps) if ours_wide else "",
                ratio(w.cpu_us, ours_wide.cpu_us) if ours_wide else "",
                str(w.errors),
            ]
        )
    if wide_rows:
        wide_header = [h for h in HEADER if h != "runs (req/s)"]
        text += ["", f"-c256, one run of {args.duration:g} s:", "", markdown_table(wide_header, wide_rows)]
    return "\n".join(text)


def targets(results: dict[str, list[Outcome]]) -> list[str]:
    lines = []

    def find(outcomes: list[Outcome], prefix: str) -> Outcome | None:
        for out in outcomes:
            if out.contender.name.startswith(prefix) and out.runs:
                return out
        return None

    if "asgi-hello" in results:
        outs = results["asgi-hello"]
        ours_out, uv, gr = outs[0], find(outs, "uvicorn (httptools)"), find(outs, "granian")
        if ours_out.runs and uv:
            r = ours_out.med("rps") / uv.med("rps")
            p_ours, p_uv = ours_out.med("p99_ms"), uv.med("p99_ms")
            ok = r >= 1.3 and p_ours <= p_uv
            lines.append(
                f"{'PASS' if ok else 'MISS'}  ASGI hello >= 1.3x uvicorn (httptools) req/s with p99 no worse:"
                f" {r:.2f}x, p99 {p_ours:.2f} ms vs {p_uv:.2f} ms"
            )
        if ours_out.runs and gr:
            lines.append(
                f"INFO  ASGI hello, ours / granian (asgi): {ours_out.med('rps') / gr.med('rps'):.2f}x req/s,"
                f" p99 {ours_out.med('p99_ms'):.2f} ms vs {gr.med('p99_ms'):.2f} ms"
            )
    if "wsgi-hello" in results:
        outs = results["wsgi-hello"]
        ours_out, uv, wt = outs[0], find(outs, "uvicorn"), find(outs, "waitress")
        if ours_out.runs and uv:
            r = ours_out.med("rps") / uv.med("rps")
            lines.append(
                f"{'PASS' if r >= 3 else 'MISS'}  WSGI hello >= 3x uvicorn --interface wsgi: {r:.2f}x"
            )
        if ours_out.runs and wt:
            r = ours_out.med("rps") / wt.med("rps")
            lines.append(f"{'PASS' if r > 1 else 'MISS'}  WSGI hello ahead of waitress: {r:.2f}x")
    return lines


# --- Profile ---------------------------------------------------------------------------------------


def profile(args: argparse.Namespace, workdir: Path) -> None:
    """py-spy (raw, non-blocking, 5 s) on our server serving ASGI hello under wrk -c64."""
    pyspy = BIN / "py-spy"
    port = free_port()
    argv = ["taskset", "-c", SERVER_CPU, *ours("apps:asgi_app").command(port)]
    server = ServerProcess(argv, port, workdir, "profile")
    raw = workdir / "profile.txt"
    try:
        server.start()
        check_hello(port)
        run_wrk(wrk_argv(port, 64, 1, None), 1)
        load = subprocess.Popen(wrk_argv(port, 64, 9, None), stdout=subprocess.DEVNULL)
        try:
            time.sleep(1.0)
            spy = [str(pyspy), "record", "-p", str(server.pid), "-d", "5", "-f", "raw", "--nonblocking"]
            spy += ["-o", str(raw)]
            print("profiling:", shlex.join(spy))
            subprocess.run(spy, check=True, timeout=60, capture_output=True)
        finally:
            try:
                load.wait(30)
            except subprocess.TimeoutExpired:
                load.kill()
                load.wait()
    finally:
        server.stop()
    by_line: collections.Counter[str] = collections.Counter()
    by_function: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        leaf = stack.split(";")[-1]
        by_line[leaf] += int(count)
        by_function[re.sub(r":\d+\)$", ")", leaf)] += int(count)
        total += int(count)
    print(f"\n{total} samples; self time by frame (function (file:line)):")
    for frame, n in by_line.most_common(10):
        print(f"  {100 * n / total:5.1f}%  {frame}")
    print("\nself time by function:")
    for frame, n in by_function.most_common(10):
        print(f"  {100 * n / total:5.1f}%  {frame}")


# --- Main ------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one run of 2 s per server")
    parser.add_argument(
        "--only",
        metavar="NAMES",
        help="comma-separated scenarios: " + ", ".join(BY_NAME),
    )
    parser.add_argument("--runs", type=int, help="measured -c64 runs per server (default 3)")
    parser.add_argument("--duration", type=float, help="seconds per measured run (default 5)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of warm-up before each run")
    parser.add_argument("--no-wide", dest="wide", action="store_false", help="skip the -c256 run")
    parser.add_argument("--retries", type=int, default=1, help="re-runs of a noisy run (default 1)")
    parser.add_argument(
        "--budget",
        type=float,
        default=450.0,
        help="time limit (s) for the whole run: noisy runs are re-run, and the wait for a quiet"
        " machine lasts up to 3 s, only while the planned runs still fit in it (default 450)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write every run's raw figures here")
    parser.add_argument("--profile", action="store_true", help="only profile ours (ASGI hello) with py-spy")
    parser.add_argument("--report", metavar="PATH", help="print the tables of a run saved with --json")
    parser.add_argument(
        "--markdown",
        metavar="PATH",
        help="also write the result tables here, as a Markdown fragment (for docs/performance.md)",
    )
    args = parser.parse_args(argv)
    if args.markdown and (args.profile or args.report):
        parser.error("--markdown writes the tables of a measuring run: not with --profile or --report")
    args.runs = args.runs or (1 if args.quick else 3)
    args.duration = args.duration or (2.0 if args.quick else 5.0)
    names = [n.strip() for n in args.only.split(",")] if args.only else list(BY_NAME)
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}; choose from {', '.join(BY_NAME)}")
    args.scenarios = [BY_NAME[n] for n in names]
    return args


@contextlib.contextmanager
def stop_servers_on_exit() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt, and stop every server however the run ends."""

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        ServerProcess.stop_all()
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report:
        report(args, load_report(args.report, args))
        return 0
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed", file=sys.stderr)
            return 2
    with tempfile.TemporaryDirectory(prefix="bench-server-") as tmp, stop_servers_on_exit():
        workdir = Path(tmp)
        if args.profile:
            profile(args, workdir)
            return 0
        info = machine_info()
        print(f"# Built-in server against rivals (wrk) -- {info['date']}")
        print(f"machine: {info['cpus']}; {info['python']}; {info['platform']}")
        versions = ", ".join(
            f"{name} {package_version(dist)}"
            for name, dist in [
                ("gateway-bridges", "gateway-bridges"),
                ("uvicorn", "uvicorn"),
                ("granian", "granian"),
                ("waitress", "waitress"),
                ("gunicorn", "gunicorn"),
                ("a2wsgi", "a2wsgi"),
                ("httptools", "httptools"),
                ("uvloop", "uvloop"),
            ]
        )
        wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
        wrk_line = ((wrk_version.stdout or wrk_version.stderr).splitlines() or ["wrk ?"])[0]
        print(f"versions: {versions}; {wrk_line}")
        command = command_line()
        print(f"command: {command}")
        started = time.monotonic()
        budget = Budget(args.budget, args)
        results: dict[str, list[Outcome]] = {}
        interrupted = False
        try:
            for scenario in args.scenarios:
                run_scenario(scenario, args, workdir, budget, results.setdefault(scenario.name, []))
        except KeyboardInterrupt:
            interrupted = True
            ServerProcess.stop_all()
            print("\ninterrupted: servers stopped; partial results follow", file=sys.stderr)
        seconds = time.monotonic() - started
        print(f"\n# Results ({seconds:.0f} s)")
        report(args, results)
        measured = any(o.runs for outs in results.values() for o in outs)
        if args.markdown and measured:  # nothing measured: no fragment
            text = fragment(args, results, info, command, f"{versions}; {wrk_line}", seconds, interrupted)
            write_markdown(args.markdown, text)
        if args.json:
            raw = {
                "machine": info,
                "versions": versions,
                "args": {k: v for k, v in vars(args).items() if k != "scenarios"},
                "results": {
                    name: [
                        {
                            "server": o.contender.name,
                            "command": o.command,
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


def result_sections(args: argparse.Namespace, results: dict[str, list[Outcome]]) -> list[Section]:
    """The tables of every scenario measured (with how each server ran), and the targets."""
    sections = []
    for scenario in args.scenarios:
        if not results.get(scenario.name):
            continue
        context = [
            f"- {out.contender.name}: `{out.command}`" + (f" (failed: {out.error})" if out.error else "")
            for out in results[scenario.name]
        ]
        wrk64 = wrk_shown(scenario, 64, args)
        context.append(f"- wrk: `{wrk64}` (and `-c256`), each run after a `-d{args.warmup:g}s` warm-up run")
        if scenario.lua:
            context.append(f"- `post-1mib.lua`: {' '.join(LUA_POST.splitlines()[1:])}")
        body = tables(scenario, results[scenario.name], args)
        sections.append(Section(f"{scenario.name}: {scenario.title}", body, "\n".join(context)))
    lines = [f"- {line}" for line in targets(results)] or ["(none among the scenarios run)"]
    noisy = sum(
        r.noisy for outs in results.values() for o in outs for r in [*o.runs, *filter(None, [o.wide])]
    )
    lines.append(
        f"\n`*`: a run during which other processes used more than {NOISE_LIMIT} core, kept after"
        f" retries ({noisy} such runs); medians leave them out unless every run of a server was"
        " noisy (the median is then marked `*` too)."
    )
    sections.append(Section("Targets", "\n".join(lines)))
    return sections


def report(args: argparse.Namespace, results: dict[str, list[Outcome]]) -> None:
    """Print the tables of every scenario measured, and the targets."""
    print_sections(result_sections(args, results))


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


def load_report(path: str, args: argparse.Namespace) -> dict[str, list[Outcome]]:
    """Outcomes saved by `--json`, to print the tables again (`--report`)."""
    raw = json.loads(Path(path).read_text())
    saved = raw["args"]
    args.runs, args.duration, args.wide = saved["runs"], saved["duration"], saved["wide"]
    args.scenarios = [BY_NAME[name] for name in raw["results"]]
    results: dict[str, list[Outcome]] = {}
    for name, outs in raw["results"].items():
        by_label = {c.name: c for c in BY_NAME[name].contenders}
        results[name] = [
            Outcome(
                by_label[o["server"]],
                command=o["command"],
                runs=[Run(**r) for r in o["runs"]],
                wide=Run(**o["c256"]) if o["c256"] else None,
                error=o["error"],
            )
            for o in outs
        ]
    print(f"# Results saved in {path} ({raw['machine']['date']})")
    print(f"machine: {raw['machine']['cpus']}; {raw['machine']['python']}; versions: {raw['versions']}")
    return results


if __name__ == "__main__":
    sys.exit(main())
