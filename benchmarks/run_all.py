"""Run every benchmark script of benchmarks/, one after another, and keep what they print.

The scripts, in this order when present: adapters.py, server.py, fastcgi.py, cgi.py (then any
other `benchmarks/NAME.py` with a `__main__` block, in name order; `apps.py`, `_common.py` and
this file are not benchmarks). Each runs in a fresh process, from the repository root, with
this interpreter. What each accepts is read from its `--help` (so this file follows their CLIs):

- `--quick` is passed on when given here;
- `--budget S` gets the script's share of the time left: what remains of `--budget`, divided by
  the number of scripts still to run (their own budgets are soft: they bound re-runs and waits);
- `--json PATH` asks for the raw figures, in `benchmarks/results/DATE-NAME.json`.

`--budget` is also a hard limit for the whole run: when it is spent, the running script gets
SIGINT (each benchmark then stops its servers and prints its partial results), then SIGTERM after
`--grace` seconds, then SIGKILL for its process group; the scripts not started yet are skipped.

Each script's stdout goes to the terminal as it comes, and into one report,
`benchmarks/results/DATE.md` (`DATE-2.md`... when that exists): the command line, exit status and
wall time of each script, then its output with its headings moved two levels down. Their stderr
(progress) goes to the terminal only. docs/performance.md is not rewritten: the scripts print
their tables for people (mixed with progress lines) and their `--json` holds raw runs, not the
tables, so the report is what to copy from.

Run it from the repository root:

    .venv/bin/python benchmarks/run_all.py --dry-run --quick   # print the commands, run nothing
    .venv/bin/python benchmarks/run_all.py --quick             # everything, short runs
    .venv/bin/python benchmarks/run_all.py --only adapters,cgi --budget 900
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
ORDER = ["adapters", "server", "fastcgi", "cgi"]
NOT_BENCHMARKS = {"apps", "run_all"}
# Marks the re-executed process (see `detach_from_other_load_checks`).
XOPTION = "bridges_run_all"


def discover() -> list[str]:
    """The names of the benchmark scripts present, in the order to run them."""
    found = [
        path.stem
        for path in sorted(HERE.glob("*.py"))
        if not path.stem.startswith("_")
        and path.stem not in NOT_BENCHMARKS
        and re.search(r"^if __name__ == .__main__.:", path.read_text(encoding="utf-8"), re.MULTILINE)
    ]
    return [name for name in ORDER if name in found] + [name for name in found if name not in ORDER]


def options_of(name: str) -> set[str]:
    """The long options the script's `--help` lists (empty if it has none or fails)."""
    try:
        done = subprocess.run(
            [sys.executable, str(HERE / f"{name}.py"), "--help"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return set()
    if done.returncode != 0:
        return set()
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", done.stdout))


def shown(path: Path | str) -> str:
    """A path as one would type it from the repository root."""
    path = Path(path)
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def python_shown() -> str:
    exe = Path(sys.executable)
    return shown(exe) if exe.is_relative_to(ROOT) else sys.executable


@dataclass
class Plan:
    name: str
    options: set[str]
    json_path: Path | None
    argv: list[str] = field(default_factory=list)

    def build(self, quick: bool, budget: float | None) -> list[str]:
        argv = [sys.executable, str(HERE / f"{self.name}.py")]
        if quick and "--quick" in self.options:
            argv.append("--quick")
        if budget is not None and "--budget" in self.options:
            argv += ["--budget", f"{budget:.0f}"]
        if self.json_path is not None and "--json" in self.options:
            argv += ["--json", str(self.json_path)]
        self.argv = argv
        return argv

    def command(self) -> str:
        """The command line as typed from the repository root."""
        parts = [python_shown(), shown(self.argv[1])]
        rest = self.argv[2:]
        for i, arg in enumerate(rest):
            parts.append(shown(arg) if i and rest[i - 1] == "--json" else arg)
        return shlex.join(parts)


@dataclass
class Outcome:
    plan: Plan
    status: str  # "exit 0", "exit 2", "interrupted at the budget (exit 130)", "skipped: ..."
    seconds: float = 0.0
    output: str = ""


def report_path(date: str) -> Path:
    path = RESULTS / f"{date}.md"
    number = 2
    while path.exists():
        path = RESULTS / f"{date}-{number}.md"
        number += 1
    return path


def demote(text: str, levels: int = 2) -> str:
    """Move markdown headings down `levels` levels, so they nest under this report's."""
    return re.sub(r"^(#{1,6}) (?=\S)", lambda m: "#" * min(len(m[1]) + levels, 6) + " ", text, flags=re.M)


def run_one(plan: Plan, deadline: float, grace: float) -> Outcome:
    """Run one script, echoing and collecting its stdout; interrupt it at `deadline`."""
    print(f"\n==> {plan.command()}", flush=True)
    started = time.monotonic()
    process = subprocess.Popen(plan.argv, cwd=ROOT, stdout=subprocess.PIPE, start_new_session=True)
    lines: list[str] = []

    def pump() -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            text = raw.decode("utf-8", errors="replace")
            sys.stdout.write(text)
            sys.stdout.flush()
            lines.append(text)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    interrupted = ""
    try:
        process.wait(timeout=max(deadline - time.monotonic(), 0.0))
    except subprocess.TimeoutExpired:
        interrupted = "interrupted at the budget"
        stop(process, grace)
    except KeyboardInterrupt:
        interrupted = "interrupted by the user"
        stop(process, grace)
    reader.join(timeout=10)
    status = f"exit {process.returncode}"
    outcome = Outcome(plan, f"{interrupted} ({status})" if interrupted else status)
    outcome.seconds = time.monotonic() - started
    outcome.output = "".join(lines)
    if interrupted == "interrupted by the user":
        raise UserInterrupt(outcome)
    return outcome


class UserInterrupt(Exception):
    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.status)
        self.outcome = outcome


def stop(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGINT by PID (a benchmark's Ctrl-C: it stops its servers and prints partial results), then
    SIGTERM by PID, then SIGKILL for its process group."""
    for signum, wait in ((signal.SIGINT, grace), (signal.SIGTERM, 10.0)):
        if process.poll() is not None:
            break
        name = signal.Signals(signum).name
        print(f"\n==> sending {name} to pid {process.pid}", file=sys.stderr, flush=True)
        process.send_signal(signum)
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    # Then whatever it started that is still in its process group (its servers have their own).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def write_report(path: Path, args: argparse.Namespace, outcomes: list[Outcome], total: float) -> None:
    lines = [
        f"# Benchmark run of {datetime.date.today().isoformat()}",
        "",
        f"- command: `{shlex.join([python_shown(), 'benchmarks/run_all.py', *args.argv])}`",
        f"- machine: {os.cpu_count()} CPUs; Python {platform.python_version()}; {platform.platform()}",
        f"- budget: {args.budget:g} s; total wall time: {total:.0f} s",
        "",
        "| script | command | status | wall time |",
        "| --- | --- | --- | --- |",
    ]
    for out in outcomes:
        lines.append(f"| {out.plan.name}.py | `{out.plan.command()}` | {out.status} | {out.seconds:.0f} s |")
    for out in outcomes:
        lines += ["", f"## {out.plan.name}.py", "", f"- command: `{out.plan.command()}`"]
        lines.append(f"- status: {out.status}; wall time: {out.seconds:.0f} s")
        if out.plan.json_path is not None and out.plan.json_path.exists():
            lines.append(f"- raw figures: `{shown(out.plan.json_path)}`")
        if out.output:
            lines += ["", demote(out.output.rstrip())]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="pass --quick to every script that takes it")
    parser.add_argument(
        "--budget",
        type=float,
        default=1800.0,
        help="seconds for the whole run: shared among the scripts as their --budget, and a hard"
        " limit at which the running script is interrupted and the rest skipped (default 1800)",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=30.0,
        help="seconds an interrupted script gets to stop its servers and print (default 30)",
    )
    parser.add_argument("--only", metavar="NAMES", help="comma-separated script names (default: all)")
    parser.add_argument(
        "--dry-run", action="store_true", help="print the commands that would run, and run nothing"
    )
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.budget <= 0:
        parser.error("--budget must be positive")
    present = discover()
    names = [n.strip().removesuffix(".py") for n in args.only.split(",")] if args.only else present
    unknown = [n for n in names if n not in present]
    if unknown:
        parser.error(f"unknown script(s): {', '.join(unknown)}; present: {', '.join(present)}")
    args.names = names
    return args


def detach_from_other_load_checks() -> None:
    """Re-execute this process so that the benchmarks do not wait for it.

    fastcgi.py and cgi.py wait while "another benchmark" runs: any process, outside their own
    tree, with `benchmarks/NAME.py` among its first three arguments (`_common.other_load_pids`).
    Their parent, `python benchmarks/run_all.py`, would be one, and each would wait its full
    timeout (8 minutes at the start, 3 before each run). `python -X bridges_run_all
    benchmarks/run_all.py` keeps the script's path out of the first three arguments.
    """
    if XOPTION not in sys._xoptions:
        sys.stdout.flush()
        script = str(Path(__file__).resolve())
        os.execv(sys.executable, [sys.executable, "-X", XOPTION, script, *sys.argv[1:]])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    date = datetime.date.today().isoformat()
    path = report_path(date)
    plans = [Plan(name, options_of(name), path.with_name(f"{path.stem}-{name}.json")) for name in args.names]
    if args.dry_run:
        share = args.budget / len(plans) if plans else 0.0
        print(f"would run {len(plans)} script(s) from {ROOT}, within {args.budget:g} s in all:")
        for plan in plans:
            plan.build(args.quick, share)
            missing = [o for o in ("--quick", "--budget", "--json") if o not in plan.options]
            note = f"  # takes no {', '.join(missing)}" if missing and plan.options else ""
            if not plan.options:
                note = "  # its --help failed: run without options"
            print(f"  {plan.command()}{note}")
        print(f"(--budget: each script's share of the time left; the first gets {share:.0f} s)")
        print(f"report: {shown(path)}")
        return 0

    detach_from_other_load_checks()

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    # A shell starts a background job with SIGINT ignored, and the scripts would inherit that:
    # with a handler instead, they start with the default and stop cleanly on our SIGINT.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    RESULTS.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    deadline = started + args.budget
    outcomes: list[Outcome] = []
    interrupted = False
    for index, plan in enumerate(plans):
        left = deadline - time.monotonic()
        if interrupted or left <= 0:
            plan.build(args.quick, None)
            why = "interrupted by the user" if interrupted else "the budget was spent"
            outcomes.append(Outcome(plan, f"skipped: {why}"))
            continue
        plan.build(args.quick, max(left / (len(plans) - index), 1.0))
        try:
            outcomes.append(run_one(plan, deadline, args.grace))
        except UserInterrupt as stopped:
            outcomes.append(stopped.outcome)
            interrupted = True
        except KeyboardInterrupt:  # Between two scripts.
            outcomes.append(Outcome(plan, "skipped: interrupted by the user"))
            interrupted = True
        # Written after each script, so that a run killed later keeps what it has.
        write_report(path, args, outcomes, time.monotonic() - started)
    total = time.monotonic() - started
    write_report(path, args, outcomes, total)
    print("\n==> commands used:")
    for out in outcomes:
        print(f"  {out.plan.command()}  -> {out.status}, {out.seconds:.0f} s")
    print(f"==> report: {shown(path)}")
    if interrupted:
        return 130
    return 0 if all(out.status == "exit 0" for out in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
