"""Helpers shared by the benchmark scripts (run as scripts, not imported by bridges).

- `RssPeak`: peak resident memory above a baseline taken just before a measured loop.
- `cpu_seconds`: this process's CPU time, all threads included.
- `run_child`: run one measurement in a fresh interpreter, with a timeout, and read its JSON line.
- `wait_quiet` / `LoadMeter`: how busy the rest of the machine is (read from /proc/stat), so a
  run taken while other work used the CPUs can be flagged (the machine is shared).
- `markdown_table`, `median`, `machine_info`: reporting.
- `Section`, `print_sections`, `markdown_fragment`, `write_markdown`: the result tables of a run,
  printed to stdout and, with a script's `--markdown PATH`, written as a Markdown fragment (what
  `benchmarks/run_all.py` puts into docs/performance.md).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import platform
import re
import resource
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CLK_TCK = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024


def cpu_seconds() -> float:
    """User + system CPU time of this process so far (every thread)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def current_rss() -> int:
    """Resident set size of this process now, in bytes (from /proc/self/statm)."""
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * PAGE_SIZE


class RssPeak:
    """Peak RSS reached between `start()` and `stop()`, in bytes above the RSS at `start()`.

    `ru_maxrss` is a process-lifetime high-water mark that cannot be reset, and by the time the
    measured loop starts it already holds the peak of imports and warm-up, which can lie above
    the RSS at that moment. So two sources are combined:

    - a daemon thread samples /proc/self/statm every `interval` seconds (a lower bound: a spike
      shorter than the interval can be missed);
    - if `ru_maxrss` rose during the loop, the loop set a new lifetime peak and `ru_maxrss` is
      then that peak exactly.

    The result is the larger of the two, minus the RSS sampled just before the loop. The sampler
    wakes 200 times a second and holds the GIL for a few microseconds each time: a cost paid the
    same by every contender, and only in the large-body scenarios that use it.
    """

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.baseline = 0
        self.sampled_peak = 0
        self._maxrss_before = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.baseline = self.sampled_peak = current_rss()
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        fd = os.open("/proc/self/statm", os.O_RDONLY)
        try:
            while not self._stop.wait(self.interval):
                rss = int(os.pread(fd, 128, 0).split()[1]) * PAGE_SIZE
                if rss > self.sampled_peak:
                    self.sampled_peak = rss
        finally:
            os.close(fd)

    def stop(self) -> int:
        """Stop sampling; return the peak above the baseline, in bytes."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sampled_peak = max(self.sampled_peak, current_rss())
        maxrss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        peak = self.sampled_peak
        if maxrss_after > self._maxrss_before:
            peak = max(peak, maxrss_after * 1024)
        return max(peak - self.baseline, 0)


def _busy_jiffies() -> int:
    """CPU time used machine-wide (all CPUs, everything but idle and iowait), in clock ticks."""
    with open("/proc/stat") as stat:
        fields = stat.readline().split()
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[1:9])
    return user + nice + system + irq + softirq + steal


def machine_busy_seconds(*, interrupts: bool = True) -> float:
    """CPU seconds used machine-wide so far (all CPUs, everything but idle and iowait).

    With `interrupts=False`, time spent in hard and soft interrupts is left out: over loopback
    TCP the kernel processes the packets of a benchmark in softirq context, and that time is
    counted neither in the sending nor in the receiving process's utime/stime, so it must not be
    mistaken for another process's work.
    """
    with open("/proc/stat") as stat:
        fields = stat.readline().split()
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[1:9])
    busy = user + nice + system + steal
    if interrupts:
        busy += irq + softirq
    return busy / CLK_TCK


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wait_quiet(threshold: float = 0.1, window: float = 0.5, max_wait: float = 3.0) -> bool:
    """Wait until the rest of the machine uses < `threshold` cores over `window` seconds.

    Gives up after `max_wait` seconds and returns False (the run goes ahead, flagged as noisy).
    This process is idle meanwhile, so whatever CPU time passes is other processes'.
    """
    deadline = time.monotonic() + max_wait
    while True:
        before_busy, before_self = _busy_jiffies(), cpu_seconds()
        time.sleep(window)
        used = (_busy_jiffies() - before_busy) / CLK_TCK - (cpu_seconds() - before_self)
        if used / window < threshold:
            return True
        if time.monotonic() >= deadline:
            return False


class LoadMeter:
    """CPU cores used by processes other than this one and its children over an interval."""

    def __enter__(self) -> LoadMeter:
        self._start = time.monotonic()
        self._busy = _busy_jiffies()
        self._own = cpu_seconds() + _children_cpu()
        self.others = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        elapsed = max(time.monotonic() - self._start, 1e-9)
        busy = (_busy_jiffies() - self._busy) / CLK_TCK
        own = cpu_seconds() + _children_cpu() - self._own
        self.others = max(busy - own, 0.0) / elapsed


@dataclass
class ChildResult:
    data: dict[str, Any] | None
    error: str | None
    others: float  # Cores other processes used while the child ran.
    wall: float


def run_child(argv: list[str], timeout: float) -> ChildResult:
    """Run `argv` (a fresh interpreter); its last stdout line is the measurement as JSON."""
    start = time.monotonic()
    with LoadMeter() as load:
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            # subprocess.run kills the child (SIGKILL) before raising.
            return ChildResult(None, f"timeout after {timeout:g} s", 0.0, time.monotonic() - start)
    wall = time.monotonic() - start
    lines = proc.stdout.strip().splitlines()
    if lines:
        try:
            data = json.loads(lines[-1])
        except ValueError:
            data = None
        if isinstance(data, dict):
            if "error" in data:
                return ChildResult(None, str(data["error"]), load.others, wall)
            return ChildResult(data, None, load.others, wall)
    tail = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}, no output"])[-1]
    return ChildResult(None, f"crashed (exit {proc.returncode}): {tail[:200]}", load.others, wall)


def median(values: list[float]) -> float:
    return statistics.median(values)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured Markdown table, columns padded so it also reads well as plain text."""
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def machine_info() -> dict[str, str]:
    cpus = os.cpu_count() or 0
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = cpus
    model = ""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for row in cpuinfo:
                if row.startswith("model name"):
                    model = row.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": f"{usable} usable of {cpus}" + (f" ({model})" if model else ""),
        "python": f"Python {platform.python_version()} ({platform.python_implementation()})",
        "platform": platform.platform(),
        "kernel": f"{platform.system()} {platform.release()}",
    }


def command_line() -> str:
    """The command that started this process, as one could type it again (from the same directory)."""
    exe = os.path.relpath(sys.executable) if not sys.executable.startswith("/usr") else sys.executable
    argv = list(sys.argv)
    if argv and os.path.isabs(argv[0]) and argv[0].startswith(os.getcwd() + os.sep):
        argv[0] = os.path.relpath(argv[0])
    return shlex.join([exe, *argv])


# --- Results as Markdown: stdout, and the fragment of `--markdown PATH` ---------------------------------


@dataclass
class Section:
    """One part of a run's results: a heading, and its Markdown (tables, targets)."""

    heading: str
    body: str
    context: str = ""  # printed before the body on stdout only (how each contender was started)


def print_sections(sections: list[Section], level: int = 2) -> None:
    """Print each section as `## heading`, its context (if any), then its body."""
    for section in sections:
        print(f"\n{'#' * level} {section.heading}\n")
        if section.context:
            print(section.context)
            print()
        print(section.body)
    sys.stdout.flush()


def markdown_fragment(
    sections: list[Section],
    info: dict[str, str],
    command: str,
    *,
    versions: str = "",
    notes: list[str] | None = None,
    seconds: float | None = None,
    interrupted: bool = False,
) -> str:
    """A run's result tables as a Markdown fragment: a short header (date, machine, versions,
    command), then each section under a `####` heading; no progress lines."""
    date = info["date"] + (f"; wall time {seconds:.0f} s" if seconds is not None else "")
    lines = [f"- Date: {date}"]
    if interrupted:
        lines.append("- **Partial run**: interrupted before the end; the tables hold what was measured.")
    kernel = info.get("kernel") or info.get("platform", "")
    lines.append(f"- Machine: CPUs: {info['cpus']}; {kernel}; {info['python']}")
    if versions:
        lines.append(f"- Versions: {versions}")
    lines.append(f"- Command (from the repository root): `{command}`")
    lines += [f"- {note}" for note in notes or []]
    for section in sections:
        lines += ["", f"#### {section.heading}", "", section.body.strip("\n")]
    return "\n".join(lines) + "\n"


def write_markdown(path: str | Path, text: str) -> None:
    """Write `text` to `path` whole (a temporary file renamed over it: never half a fragment)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


# --- wrk against server process trees (benchmarks/fastcgi.py, benchmarks/cgi.py) --------------------
#
# A "server side" here can be several process trees (nginx and the FastCGI app behind it; lighttpd
# and the CGI scripts it forks), so CPU time is summed over named trees and includes what each tree
# reaped from its exited children (cutime + cstime): CGI scripts live for one request each.

SERVER_CPU = "1"  # taskset -c: every server-side process
WRK_CPU = "0"  # taskset -c: wrk
NOISE_LIMIT = 0.1  # cores other processes may use during a measured run

Stats = dict[int, tuple[int, int, int, int]]


def proc_stats() -> Stats:
    """pid -> (ppid, utime + stime, start time, cutime + cstime) for every process, in clock ticks."""
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


def tree_pids(root: int, stats: Stats) -> list[int]:
    """`root` and every live descendant of it."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, *_) in stats.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            found.append(pid)
            todo.extend(children.get(pid, ()))
    return found


def tree_cpu(root: int, stats: Stats) -> float:
    """CPU seconds of `root`'s tree: its live processes, and the children they have reaped."""
    return sum(stats[pid][1] + stats[pid][3] for pid in tree_pids(root, stats)) / CLK_TCK


def others_cpu(before: Stats, after: Stats, own: set[int]) -> float:
    """CPU seconds used between two snapshots by processes outside `own`.

    The sum over those processes of utime + stime + the time of the children they reaped, after
    minus before. Subtracting the whole "before" sum (not per process) keeps a process that exited
    in between right: its lifetime total moves into its parent's reaped time, and only the part
    it used after the first snapshot remains in the difference.
    """

    def total(stats: Stats) -> int:
        return sum(cpu + reaped for pid, (_, cpu, _, reaped) in stats.items() if pid not in own)

    return max(total(after) - total(before), 0) / CLK_TCK


def children_cpu() -> float:
    """CPU seconds of the children this process has reaped (wrk runs, one-shot subprocesses)."""
    return _children_cpu()


_BENCH_SCRIPT = re.compile(rb"(^|/)benchmarks/[A-Za-z_]\w*\.py$")


def other_load_pids() -> list[int]:
    """PIDs this process did not start of `wrk`, or of a script of `benchmarks/` (another benchmark)."""
    stats = proc_stats()
    mine = set(tree_pids(os.getpid(), stats))
    found = []
    for pid in stats:
        if pid in mine:
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{pid}/comm", "rb") as f:
                comm = f.read().strip()
        except OSError:
            continue
        if comm == b"wrk" or any(_BENCH_SCRIPT.search(arg) for arg in argv[:3]):
            found.append(pid)
    return found


def wait_no_other_wrk(max_wait: float, settle: float = 2.0) -> float:
    """Wait (up to `max_wait` s) until no other wrk or benchmark script has run for `settle` s.

    Another benchmark pauses between its wrk runs (to wait for quiet, to start servers), so the
    scripts of `benchmarks/` count too, and `settle` keeps this one from starting a run in a
    short gap, where each would disturb the other. Returns the seconds waited.
    """
    start = time.monotonic()
    if not other_load_pids():
        return 0.0
    print(f"    (another benchmark or wrk is running: waiting up to {max_wait:.0f} s)", flush=True)
    last_seen = time.monotonic()
    while time.monotonic() - start < max_wait:
        time.sleep(0.25)
        if other_load_pids():
            last_seen = time.monotonic()
        elif time.monotonic() - last_seen >= settle:
            break
    return time.monotonic() - start


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int  # socket errors + non-2xx/3xx responses
    seconds: float


_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def wrk_argv(url: str, connections: int, seconds: float, threads: int = 2) -> list[str]:
    return [
        "taskset",
        "-c",
        WRK_CPU,
        "wrk",
        f"-t{min(threads, connections)}",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--latency",
        url,
    ]


def run_wrk(argv: list[str], seconds: float) -> WrkResult:
    """Run wrk and read its summary (raises if wrk fails or prints something unexpected)."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, check=False)
    out = proc.stdout
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed (exit {proc.returncode}): {proc.stderr.strip()[-300:]}")
    total = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"^\s*50%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
    p99 = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
    if not (total and rate and p50 and p99):
        raise RuntimeError(f"cannot read wrk's output: {out[-300:]!r}")
    errors = 0
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock:
        errors += sum(int(g) for g in sock.groups())
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        errors += int(non2xx.group(1))
    duration = float(total.group(2)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[total.group(3)]
    return WrkResult(
        rps=float(rate.group(1)),
        p50_ms=float(p50.group(1)) * _UNITS_MS[p50.group(2)],
        p99_ms=float(p99.group(1)) * _UNITS_MS[p99.group(2)],
        requests=int(total.group(1)),
        errors=errors,
        seconds=duration,
    )


class Service:
    """One server-side process (nginx, php-fpm, lighttpd, an app), in its own session.

    Stopped by PID: SIGTERM, SIGKILL after `STOP_TIMEOUT`, then SIGKILL to whatever is left of its
    process group (the session it leads: workers, CGI scripts).
    """

    STOP_TIMEOUT = 5.0
    running: ClassVar[list[Service]] = []  # started and not yet stopped, in start order

    def __init__(self, name: str, argv: list[str], log: Path, *, cwd: Path | None = None) -> None:
        self.name = name
        self.argv = argv
        self.log = log
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(
        self, ready: Callable[[], bool], env: dict[str, str] | None = None, timeout: float = 20.0
    ) -> None:
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        Service.running.append(self)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with status {self.proc.returncode}: {self.log_tail()}"
                )
            if ready():
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} not ready after {timeout:g} s: {self.log_tail()}")

    def log_tail(self) -> str:
        try:
            lines = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(lines[-3:])[-400:] or "(empty log)"

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ValueError):
            Service.running.remove(self)
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(self.STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                self.proc.wait(self.STOP_TIMEOUT)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # its own session's group: leftovers only

    @classmethod
    def stop_all(cls) -> None:
        for service in list(reversed(cls.running)):
            try:
                service.stop()
            except Exception as exc:  # keep stopping the others
                print(f"  ! could not stop {service.name} (pid {service.pid}): {exc}", file=sys.stderr)


@contextlib.contextmanager
def stop_services_on_exit() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt, and stop every `Service` however the run ends."""

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        Service.stop_all()
        signal.signal(signal.SIGTERM, previous)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tcp_ready(port: int) -> Callable[[], bool]:
    def ready() -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.2)
            return sock.connect_ex(("127.0.0.1", port)) == 0

    return ready


def unix_ready(path: Path) -> Callable[[], bool]:
    def ready() -> bool:
        if not path.exists():
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.2)
            return sock.connect_ex(str(path)) == 0

    return ready


def http_get(port: int, path: str = "/") -> tuple[int, dict[str, str], bytes]:
    """One GET over a fresh connection: status, headers (lower-cased names), body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        headers = {k.lower(): v for k, v in response.getheaders()}
        return response.status, headers, body
    finally:
        conn.close()


def check_hello(port: int, path: str = "/", content_type: str = "text/plain") -> None:
    """Raise unless GET `path` answers 200, `Hello, world`, Content-Length 12, `content_type`."""
    status, headers, body = http_get(port, path)
    problems = []
    if status != 200:
        problems.append(f"status {status}")
    if body != b"Hello, world":
        problems.append(f"body {body[:80]!r}")
    if headers.get("content-length") != "12":
        problems.append(f"Content-Length {headers.get('content-length')!r}")
    if headers.get("content-type") != content_type:
        problems.append(f"Content-Type {headers.get('content-type')!r}")
    if problems:
        raise RuntimeError("wrong response: " + ", ".join(problems))


@dataclass
class Side:
    """One contender under wrk: its URL and the process trees that serve it (label -> root PID)."""

    name: str
    url: str
    roots: dict[str, int]
    command: str = ""  # how it was started, as printed in the report


@dataclass
class Run:
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float  # CPU time per request of every tree in `Side.roots`
    parts_us: dict[str, float]  # the same, per tree
    wrk_cpu_us: float
    requests: int
    errors: int
    others: float  # cores used by other processes during the run
    noisy: bool


@dataclass
class BenchOptions:
    runs: int = 3
    duration: float = 5.0
    warmup: float = 1.0
    retries: int = 1
    other_wrk_wait: float = 180.0  # longest wait for another benchmark's wrk, before each run


class Budget:
    """Time left for optional work (re-running noisy runs, waiting for quiet) in a bounded run.

    `planned` is the time the planned work still needs (every run at its minimum length); `slack`
    is what remains of the deadline once it is set aside. Waiting for another benchmark's wrk to
    finish is not charged: the script cannot make that wait shorter.
    """

    def __init__(self, seconds: float, planned: float, per_run: float) -> None:
        self.deadline = time.monotonic() + seconds
        self.planned = planned
        self.per_run = per_run

    def slack(self) -> float:
        return self.deadline - time.monotonic() - self.planned

    def spent(self, seconds: float) -> None:
        self.planned = max(self.planned - seconds, 0.0)

    def extend(self, seconds: float) -> None:
        self.deadline += seconds


def measure(side: Side, connections: int, opts: BenchOptions, budget: Budget, threads: int = 2) -> Run:
    """One measured wrk run of `side` (after the waits and a warm-up), taken again while noisy.

    Other processes' CPU time during the run is estimated two ways, both of which can only miss
    some, and the larger is kept: machine-wide busy time (interrupts left out: loopback traffic is
    processed in softirq context, charged to no process) minus this script's, wrk's and every
    running `Service` tree's; and the sum over every other process in /proc.
    """
    attempts = 1 + opts.retries
    run: Run | None = None
    answered: Run | None = None  # The last attempt in which the server answered anything.
    for attempt in range(attempts):
        budget.extend(wait_no_other_wrk(opts.other_wrk_wait))
        wait_quiet(NOISE_LIMIT, 0.5, min(3.0, max(budget.slack(), 0.5)))
        run_wrk(wrk_argv(side.url, connections, opts.warmup, threads), opts.warmup)
        roots = sorted({s.pid for s in Service.running} | set(side.roots.values()))
        busy0, self0, kids0, stats0 = (
            machine_busy_seconds(interrupts=False),
            cpu_seconds(),
            _children_cpu(),
            proc_stats(),
        )
        start = time.monotonic()
        result = run_wrk(wrk_argv(side.url, connections, opts.duration, threads), opts.duration)
        elapsed = time.monotonic() - start
        busy1, self1, kids1, stats1 = (
            machine_busy_seconds(interrupts=False),
            cpu_seconds(),
            _children_cpu(),
            proc_stats(),
        )
        trees = {root: tree_cpu(root, stats1) - tree_cpu(root, stats0) for root in roots}
        own = {os.getpid()}
        for root in roots:
            own.update(tree_pids(root, stats0), tree_pids(root, stats1))
        machine = busy1 - busy0 - ((self1 - self0) + (kids1 - kids0) + sum(trees.values()))
        others = max(machine, others_cpu(stats0, stats1, own), 0.0) / elapsed
        requests = max(result.requests, 1)
        parts = {label: trees[pid] / requests * 1e6 for label, pid in side.roots.items()}
        run = Run(
            rps=result.rps,
            p50_ms=result.p50_ms,
            p99_ms=result.p99_ms,
            cpu_us=sum(parts.values()),
            parts_us=parts,
            wrk_cpu_us=(kids1 - kids0) / requests * 1e6,
            requests=result.requests,
            errors=result.errors,
            others=others,
            # A run with no request answered measured nothing (wrk cut short, server stalled).
            noisy=others > NOISE_LIMIT or result.requests == 0,
        )
        if result.requests:
            answered = run
        split = " + ".join(f"{label} {us:.0f}" for label, us in parts.items())
        flag = f"  noisy: others used {others:.2f} core" if run.noisy else ""
        print(
            f"    {side.name:<34} -c{connections:<4} {run.rps:>9,.0f} req/s  p50 {run.p50_ms:>7.2f} ms"
            f"  p99 {run.p99_ms:>7.2f} ms  {run.cpu_us:>6.1f} µs/req ({split})  errors {run.errors}{flag}",
            flush=True,
        )
        if not run.noisy or attempt == attempts - 1 or budget.slack() < budget.per_run:
            break
        print("    (discarded, measuring again)", flush=True)
    assert run is not None
    if not run.requests and answered is not None:
        run = answered  # A retry that got no answer does not replace a run that did.
    budget.spent(budget.per_run)
    return run


@dataclass
class Outcome:
    side: Side
    runs: list[Run] = field(default_factory=list)
    wide: Run | None = None  # the one run at the higher concurrency
    error: str | None = None

    def med(self, attr: str) -> float:
        return median([getattr(r, attr) for r in self.runs]) if self.runs else float("nan")

    def med_part(self, label: str) -> float:
        return median([r.parts_us.get(label, 0.0) for r in self.runs]) if self.runs else float("nan")


def alternate(
    sides: list[Side],
    opts: BenchOptions,
    budget: Budget,
    connections: int,
    wide: int | None = None,
    threads: int = 2,
) -> list[Outcome]:
    """`opts.runs` rounds over every side (A B C A B C ...), then one run each at `wide` connections."""
    outcomes = [Outcome(side) for side in sides]
    example = shlex.join(wrk_argv("URL", connections, opts.duration, threads))
    print(f"  wrk: {example} (after a {opts.warmup:g} s warm-up run of the same kind)", flush=True)
    for _round in range(opts.runs):
        for out in outcomes:
            if out.error is not None:
                continue
            try:
                out.runs.append(measure(out.side, connections, opts, budget, threads))
            except Exception as exc:
                out.error = str(exc)
                print(f"  ! {out.side.name}: {exc}", flush=True)
    if wide:
        for out in outcomes:
            if out.error is not None:
                continue
            try:
                out.wide = measure(out.side, wide, opts, budget, threads)
            except Exception as exc:
                print(f"  ! {out.side.name} -c{wide}: {exc}", flush=True)
    return outcomes


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if a > 0 and b > 0 else ""


def _rate(run: Run) -> str:
    return f"{run.rps:,.0f}" + ("*" if run.noisy else "")


def outcome_table(outcomes: list[Outcome], reference: int = 0, wide: bool = False) -> str:
    """Medians (or the wide run) of each side; ratios against `outcomes[reference]`."""
    ref = outcomes[reference]
    header = ["server", "req/s"]
    if not wide:
        header.append("runs (req/s)")
    header += ["p50 ms", "p99 ms", "CPU µs/req", "of which", "wrk CPU µs/req", "ref / this (req/s)"]
    header += ["this / ref (CPU)", "errors"]
    rows = []
    for out in outcomes:
        if wide:
            w, rw = out.wide, ref.wide
            if w is None:
                continue
            row = [out.side.name, _rate(w), f"{w.p50_ms:.2f}", f"{w.p99_ms:.2f}", f"{w.cpu_us:.1f}"]
            row.append(" + ".join(f"{k} {v:.1f}" for k, v in w.parts_us.items()))
            row += [
                f"{w.wrk_cpu_us:.1f}",
                ratio(rw.rps, w.rps) if rw else "",
                ratio(w.cpu_us, rw.cpu_us) if rw else "",
            ]
            row.append(str(w.errors))
            rows.append(row)
            continue
        if not out.runs:
            rows.append([out.side.name, "failed", out.error or "not measured", *[""] * (len(header) - 3)])
            continue
        rps, cpu = out.med("rps"), out.med("cpu_us")
        rows.append(
            [
                out.side.name,
                f"{rps:,.0f}",
                " / ".join(_rate(r) for r in out.runs),
                f"{out.med('p50_ms'):.2f}",
                f"{out.med('p99_ms'):.2f}",
                f"{cpu:.1f}",
                " + ".join(f"{label} {out.med_part(label):.1f}" for label in out.side.roots),
                f"{out.med('wrk_cpu_us'):.1f}",
                ratio(ref.med("rps"), rps),
                ratio(cpu, ref.med("cpu_us")),
                str(sum(r.errors for r in out.runs)),
            ]
        )
    return markdown_table(header, rows)


def aggregate_pyspy(raw: Path, top: int = 10) -> list[str]:
    """py-spy `-f raw` output (collapsed stacks) -> the `top` frames by self time, and functions."""
    by_frame: dict[str, int] = {}
    by_function: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        leaf = stack.split(";")[-1]
        by_frame[leaf] = by_frame.get(leaf, 0) + int(count)
        function = re.sub(r":\d+\)$", ")", leaf)
        by_function[function] = by_function.get(function, 0) + int(count)
        total += int(count)
    lines = [f"{total} samples; self time by frame (function (file:line)):"]
    for frame, n in sorted(by_frame.items(), key=lambda item: -item[1])[:top]:
        lines.append(f"  {100 * n / max(total, 1):5.1f}%  {frame}")
    lines.append("self time by function:")
    for frame, n in sorted(by_function.items(), key=lambda item: -item[1])[:top]:
        lines.append(f"  {100 * n / max(total, 1):5.1f}%  {frame}")
    return lines


def profile_under_wrk(pid: int, url: str, connections: int, raw: Path, seconds: float = 5.0) -> list[str]:
    """py-spy `record --nonblocking -f raw` of `pid` for `seconds` while wrk loads `url`."""
    pyspy = Path(sys.executable).parent / "py-spy"
    wait_no_other_wrk(180.0)
    run_wrk(wrk_argv(url, connections, 1), 1)
    load = subprocess.Popen(wrk_argv(url, connections, seconds + 4), stdout=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        spy = [str(pyspy), "record", "-p", str(pid), "-d", f"{seconds:g}", "-f", "raw", "--nonblocking"]
        spy += ["-o", str(raw)]
        print(f"profiling: {shlex.join(spy)} (under {shlex.join(wrk_argv(url, connections, seconds + 4))})")
        subprocess.run(spy, check=True, timeout=60, capture_output=True)
    finally:
        try:
            load.wait(30)
        except subprocess.TimeoutExpired:
            load.kill()
            load.wait()
    return aggregate_pyspy(raw)
