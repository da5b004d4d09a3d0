"""ChildProcess: spawning on the loop, pipes with backpressure, stderr lines, reaping without threads."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from bridges._child_process import ChildProcess

ENV = {b"PATH": os.environb.get(b"PATH", b"/usr/bin:/bin")}
LOOPS = ["asyncio", "uvloop"]


def run(loop_name: str, main: Callable[[], Awaitable[Any]], timeout: float = 20.0) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(main(), timeout)

    if loop_name == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(bounded())
    finally:
        loop.close()


def spawn_sh(script: str, tmp_path: Path, lines: list[bytes] | None = None) -> ChildProcess:
    sink = lines if lines is not None else []
    argv = ["/bin/sh", "-c", script]
    return ChildProcess.spawn(argv, cwd=str(tmp_path), env=ENV, on_stderr_line=sink.append)


async def read_all(process: ChildProcess) -> bytes:
    chunks = []
    while chunk := await process.read_stdout(65536):
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("loop_name", LOOPS)
def test_output_stderr_exit_code_cwd_and_environment(loop_name: str, tmp_path: Path) -> None:
    lines: list[bytes] = []

    async def main() -> tuple[bytes, int | None]:
        script = 'pwd; echo "$PATH"; echo one >&2; printf "two\\nthree" >&2; exit 3'
        process = spawn_sh(script, tmp_path, lines)
        process.close_stdin()
        output = await read_all(process)
        code = await process.wait()
        process.close()
        assert code == process.returncode
        return output, code

    output, code = run(loop_name, main)
    assert output == f"{tmp_path}\n{ENV[b'PATH'].decode()}\n".encode()
    assert code == 3
    assert lines == [b"one", b"two", b"three"]  # The unterminated last line too, at close().


@pytest.mark.parametrize("loop_name", LOOPS)
def test_environment_is_only_what_was_given(loop_name: str, tmp_path: Path) -> None:
    async def main() -> bytes:
        process = ChildProcess.spawn(
            ["/usr/bin/env"], cwd=str(tmp_path), env={b"ONLY": b"\xff\x01"}, on_stderr_line=lambda line: None
        )
        process.close_stdin()
        output = await read_all(process)
        await process.wait()
        process.close()
        return output

    assert run(loop_name, main) == b"ONLY=\xff\x01\n"


@pytest.mark.parametrize("loop_name", LOOPS)
def test_stdin_round_trip_larger_than_the_pipe_buffers(loop_name: str, tmp_path: Path) -> None:
    payload = os.urandom(3 * 1024 * 1024)  # Both pipes fill: writing and reading must interleave.

    async def main() -> bytes:
        process = spawn_sh("cat", tmp_path)

        async def feed() -> None:
            for start in range(0, len(payload), 100_000):
                await process.write_stdin(payload[start : start + 100_000])
            process.close_stdin()

        feeder = asyncio.ensure_future(feed())
        output = await read_all(process)
        await feeder
        assert await process.wait() == 0
        process.close()
        return output

    assert run(loop_name, main) == payload


@pytest.mark.parametrize("loop_name", LOOPS)
def test_stdout_is_read_on_demand(loop_name: str, tmp_path: Path) -> None:
    """A reader that does not read stalls the writer: the pipe is the only buffer."""
    marker = tmp_path / "finished"

    async def main() -> int:
        process = spawn_sh(f"head -c 4000000 /dev/zero; touch {marker}", tmp_path)
        process.close_stdin()
        await asyncio.sleep(0.5)
        assert not marker.exists(), "the child wrote 4 MB with nobody reading"
        total = len(await read_all(process))
        await process.wait()
        process.close()
        return total

    assert run(loop_name, main) == 4_000_000
    assert marker.exists()


@pytest.mark.parametrize("loop_name", LOOPS)
def test_kill_group_reaches_grandchildren(loop_name: str, tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild"

    async def main() -> int:
        process = spawn_sh(f"sleep 60 & echo $! > {pid_file}; wait", tmp_path)
        for _ in range(200):
            if pid_file.exists() and pid_file.read_text().strip():
                break
            await asyncio.sleep(0.01)
        process.kill_group()
        code = await process.wait()
        process.close()
        return code

    assert run(loop_name, main) == -signal.SIGKILL
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            break
        # A killed grandchild re-parented to us (no subreaper) stays a zombie until reaped.
        try:
            os.waitpid(grandchild, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.02)
    else:
        pytest.fail("the grandchild survived kill_group()")


@pytest.mark.parametrize("loop_name", LOOPS)
def test_no_thread_per_child_and_no_zombies(loop_name: str, tmp_path: Path) -> None:
    threads_seen: list[int] = []

    async def main() -> list[int]:
        pids = []
        for _ in range(100):
            process = spawn_sh("printf x", tmp_path)
            process.close_stdin()
            assert await read_all(process) == b"x"
            threads_seen.append(threading.active_count())
            assert await process.wait() == 0
            process.close()
            pids.append(process.pid)
        return pids

    before = threading.active_count()
    pids = run(loop_name, main)
    if hasattr(os, "pidfd_open"):
        assert max(threads_seen) == before, "a thread was started to wait for a child"
    for pid in pids:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # Already reaped: no zombie left.


def test_reaps_without_pidfds(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def no_pidfd(pid: int, flags: int = 0) -> int:
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(os, "pidfd_open", no_pidfd)

    async def main() -> int:
        process = spawn_sh("exit 7", tmp_path)
        process.close_stdin()
        assert await read_all(process) == b""
        code = await process.wait()
        process.close()
        return code

    assert run("asyncio", main) == 7


@pytest.mark.parametrize("loop_name", LOOPS)
def test_close_wakes_a_pending_read_and_write(loop_name: str, tmp_path: Path) -> None:
    async def main() -> tuple[bytes, type[BaseException] | None]:
        process = spawn_sh("sleep 30", tmp_path)
        reader = asyncio.ensure_future(process.read_stdout(100))
        writer = asyncio.ensure_future(process.write_stdin(b"x" * (4 * 1024 * 1024)))
        await asyncio.sleep(0.1)
        assert not reader.done() and not writer.done()
        process.kill_group()
        await process.wait()
        process.close()
        result = await reader
        try:
            await writer
            error = None
        except BaseException as exc:
            error = type(exc)
        return result, error

    result, error = run(loop_name, main)
    assert result == b""
    assert error is BrokenPipeError


def test_spawn_failure_leaks_no_descriptors(tmp_path: Path) -> None:
    async def main() -> None:
        with pytest.raises(OSError):
            ChildProcess.spawn([str(tmp_path / "missing")], cwd=str(tmp_path), env=ENV, on_stderr_line=print)

    fds_before = set(os.listdir("/proc/self/fd"))
    run("asyncio", main)
    assert set(os.listdir("/proc/self/fd")) <= fds_before | {str(n) for n in range(3)}


def test_cancelled_read_unregisters_only_its_own_descriptor(tmp_path: Path) -> None:
    """A read cancelled after close() must not unregister a new file that reuses the number."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        process = spawn_sh("sleep 30", tmp_path)
        reader = asyncio.ensure_future(process.read_stdout(100))
        await asyncio.sleep(0.05)
        process.kill_group()
        await process.wait()
        process.close()
        reader.cancel()
        read_end, write_end = os.pipe()  # Likely reuses a number the child's pipes had.
        woke = loop.create_future()
        loop.add_reader(read_end, lambda: woke.done() or woke.set_result(True))
        await asyncio.gather(reader, return_exceptions=True)
        os.write(write_end, b"!")
        assert await asyncio.wait_for(woke, 2)
        loop.remove_reader(read_end)
        os.close(read_end)
        os.close(write_end)

    run("asyncio", main)


if sys.platform != "linux":  # pragma: no cover
    pytestmark = pytest.mark.skip(reason="process groups and pidfds as on Linux")
