"""Helpers shared by the benchmark scripts (run as scripts, not imported by bridges).

- `RssPeak`: peak resident memory above a baseline taken just before a measured loop.
- `cpu_seconds`: this process's CPU time, all threads included.
- `run_child`: run one measurement in a fresh interpreter, with a timeout, and read its JSON line.
- `wait_quiet` / `LoadMeter`: how busy the rest of the machine is (read from /proc/stat), so a
  run taken while other work used the CPUs can be flagged (the machine is shared).
- `markdown_table`, `median`, `machine_info`: reporting.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

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
    }


def command_line() -> str:
    """The command that started this process, as one could type it again."""
    exe = os.path.relpath(sys.executable) if not sys.executable.startswith("/usr") else sys.executable
    return shlex.join([exe, *sys.argv])
