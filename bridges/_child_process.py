"""Run a program as a child process on the running event loop: spawn, pipes, reaping.

The thin I/O layer under CGIToASGI. `subprocess.Popen` starts the child (vfork and exec, in C)
in its own session and working directory; the loop then watches its three pipes and a pidfd.
No thread waits for each child (asyncio's child watcher starts one per process), no transport
or stream objects are built per request, and under uvloop the server is not copied by a plain
fork() per child (uvloop's own spawn does that). Where pidfds are missing (not Linux, or a
kernel older than 5.3) one waiter thread per child reaps it instead.

stdout is read on demand (`read_stdout`), so a slow client slows the script down through its
pipe: backpressure. stderr is read as it comes and handed to a callback, line by line.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import Callable, Mapping

__all__ = ["ChildProcess"]

_STDERR_CHUNK = 64 * 1024


class ChildProcess:
    """One running program: its pid, the parent's ends of its pipes, and its exit status."""

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        stdin: int,
        stdout: int,
        stderr: int,
        on_stderr_line: Callable[[bytes], None],
    ) -> None:
        self._popen = popen
        self.pid = popen.pid
        self.returncode: int | None = None
        self._loop = asyncio.get_running_loop()
        self._stdin: int | None = stdin
        self._stdout: int | None = stdout
        self._stderr: int | None = stderr
        self._on_stderr_line = on_stderr_line
        self._stderr_pending = b""
        self._exited: asyncio.Future[int] = self._loop.create_future()
        self._stderr_done: asyncio.Future[None] = self._loop.create_future()
        self._waiters: dict[tuple[int, bool], asyncio.Future[None]] = {}
        self._pidfd: int | None = None
        self._loop.add_reader(stderr, self._on_stderr)
        try:
            self._pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):  # No pidfds here: a thread waits for this child.
            self._loop.run_in_executor(None, self._wait_blocking)
        else:
            self._loop.add_reader(self._pidfd, self._on_pidfd)

    @classmethod
    def spawn(
        cls,
        argv: list[str],
        *,
        cwd: str,
        env: Mapping[bytes, bytes],
        on_stderr_line: Callable[[bytes], None],
    ) -> ChildProcess:
        """Start `argv` in a new session (its own process group); raise OSError if it cannot."""
        asyncio.get_running_loop()  # Fail here, before anything is spawned, off the loop.
        pipes = [os.pipe() for _ in range(3)]  # Close-on-exec (PEP 446); dup2 clears it in the child.
        (in_read, in_write), (out_read, out_write), (err_read, err_write) = pipes
        try:
            popen = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=in_read,
                stdout=out_write,
                stderr=err_write,
                start_new_session=True,
                bufsize=0,
            )
        except BaseException:
            for pair in pipes:
                for fd in pair:
                    os.close(fd)
            raise
        for fd in (in_read, out_write, err_write):  # The child's ends: ours are the others.
            os.close(fd)
        for fd in (in_write, out_read, err_read):
            os.set_blocking(fd, False)
        return cls(popen, in_write, out_read, err_read, on_stderr_line)

    # ---- the pipes ----------------------------------------------------------------------------

    async def read_stdout(self, size: int) -> bytes:
        """Up to `size` bytes of the child's output; b"" at its end."""
        while True:
            fd = self._stdout
            if fd is None:
                return b""
            try:
                return os.read(fd, size)
            except BlockingIOError:
                await self._ready(fd, writable=False)

    async def write_stdin(self, data: bytes) -> None:
        """Write all of `data` to the child's input (BrokenPipeError if it stopped reading)."""
        view = memoryview(data)
        while view:
            fd = self._stdin
            if fd is None:
                raise BrokenPipeError("the child's input is closed")
            try:
                written = os.write(fd, view)
            except BlockingIOError:
                await self._ready(fd, writable=True)
            else:
                view = view[written:]

    def close_stdin(self) -> None:
        """Signal the end of the child's input."""
        if self._stdin is not None:
            self._close_fd(self._stdin)
            self._stdin = None

    async def _ready(self, fd: int, *, writable: bool) -> None:
        key = (fd, writable)
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._waiters[key] = waiter
        if writable:
            self._loop.add_writer(fd, _wake, waiter)
        else:
            self._loop.add_reader(fd, _wake, waiter)
        try:
            await waiter
        finally:
            # Unregister only what is still ours: after close() the number may name a new file.
            if self._waiters.get(key) is waiter:
                del self._waiters[key]
                self._unwatch(fd, writable)

    def _unwatch(self, fd: int, writable: bool) -> None:
        if writable:
            self._loop.remove_writer(fd)
        else:
            self._loop.remove_reader(fd)

    def _on_stderr(self) -> bool:
        """Read what the child wrote to stderr; False when nothing more is there for now."""
        if self._stderr is None:
            return False
        try:
            chunk = os.read(self._stderr, _STDERR_CHUNK)
        except BlockingIOError:
            return False
        except OSError:
            chunk = b""
        lines = (self._stderr_pending + chunk).split(b"\n")
        self._stderr_pending = lines.pop() if chunk else b""
        if len(self._stderr_pending) > _STDERR_CHUNK:  # A very long line: log it in pieces.
            lines.append(self._stderr_pending)
            self._stderr_pending = b""
        for line in lines:
            if line:
                self._on_stderr_line(line)
        if not chunk:
            self._loop.remove_reader(self._stderr)
            self._close_fd(self._stderr)
            self._stderr = None
            if not self._stderr_done.done():
                self._stderr_done.set_result(None)
            return False
        return True

    # ---- the process --------------------------------------------------------------------------

    def _on_pidfd(self) -> None:
        assert self._pidfd is not None
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:  # Reaped elsewhere (someone waited for any child).
            pid, status = self.pid, 255 << 8
        if pid == 0:
            return  # Not yet: a spurious wake-up.
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._pidfd = None
        self._exit_with(os.waitstatus_to_exitcode(status))

    def _wait_blocking(self) -> None:
        try:
            _, status = os.waitpid(self.pid, 0)
            code = os.waitstatus_to_exitcode(status)
        except ChildProcessError:
            code = 255
        self._loop.call_soon_threadsafe(self._exit_with, code)

    def _exit_with(self, code: int) -> None:
        self.returncode = code
        self._popen.returncode = code  # Popen must not think it still runs (ResourceWarning).
        if not self._exited.done():
            self._exited.set_result(code)

    async def wait(self) -> int:
        """Wait for the child to exit; its exit code (-N when killed by signal N)."""
        return await asyncio.shield(self._exited)

    async def stderr_closed(self) -> None:
        """Wait until every writer of the child's stderr has closed it."""
        await asyncio.shield(self._stderr_done)

    def kill_group(self) -> None:
        """SIGKILL the child's whole process group, even when the child itself already exited."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            if self.returncode is None:
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def close(self) -> None:
        """Close the parent's ends of the pipes (what is left of stderr is logged first)."""
        for (fd, writable), waiter in list(self._waiters.items()):
            self._unwatch(fd, writable)
            if not waiter.done():
                waiter.set_result(None)  # A pending read or write finds its fd gone: b"" / EPIPE.
        self._waiters.clear()
        while self._on_stderr():  # What an exited child wrote is all in the pipe by now.
            pass
        if self._stderr is not None:
            self._loop.remove_reader(self._stderr)
            if self._stderr_pending:
                self._on_stderr_line(self._stderr_pending)
                self._stderr_pending = b""
            self._close_fd(self._stderr)
            self._stderr = None
        for name in ("_stdin", "_stdout"):
            fd = getattr(self, name)
            if fd is not None:
                self._close_fd(fd)
                setattr(self, name, None)

    @staticmethod
    def _close_fd(fd: int) -> None:
        try:
            os.close(fd)
        except OSError:
            pass


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
