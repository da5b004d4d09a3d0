"""Run CGI programs as an ASGI app: `CGIToASGI("/srv/cgi-bin")`, or `CGIToWSGI(...)` for WSGI hosts.

`path` is one executable, or a directory (a cgi-bin) in which the script is found segment by
segment, the rest of the path becoming PATH_INFO. Each request runs the script in its own process
group with an RFC 3875 environment built from an allow-list (nothing of the server's own
environment leaks but PATH and the names in `pass_environ`). The request body streams to the
script's stdin and its stdout streams back through the shared CGI response parser, both with
backpressure; stderr goes to logging. A per-request timeout, a client disconnect or a server
shutdown kills the whole process group; the number of processes is capped (requests queue, then
get a 503); every process is waited for, so none is left a zombie.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ._child_process import ChildProcess
from ._exceptions import ConfigurationError, RemoteProtocolError
from ._gateway import (
    MAX_LOCAL_REDIRECTS,
    BodyTooLarge,
    ClientGone,
    ResponseRelay,
    SpooledBody,
    has_undeclared_body,
    redirected_scope,
    send_plain,
)
from ._types import Receive, Scope, Send
from .asgi_to_wsgi import ASGIToWSGI
from .cgi_response import CGIResponseError, CGIResponseParser
from .translate import scope_to_cgi_variables, split_path

__all__ = ["CGIToASGI", "CGIToWSGI", "ScriptRefused", "check_path_segments"]

logger = logging.getLogger("bridges.cgi")

_READ_SIZE = 64 * 1024
_DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


class ScriptRefused(Exception):
    """A request path that must not reach a script: `status` says how to answer (403/404/400)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def check_path_segments(path: str, raw_path: bytes) -> list[str]:
    """The path's segments, refusing traversal: `..`, `.`, NUL, backslashes and encoded slashes."""
    lowered = raw_path.lower()
    if b"%2f" in lowered or b"%5c" in lowered or b"%00" in lowered:
        raise ScriptRefused(404, "encoded slash, backslash or NUL in the path")
    segments = [segment for segment in path.split("/") if segment]
    for segment in segments:
        if segment in ("..", ".") or "\x00" in segment or "\\" in segment:
            raise ScriptRefused(404, f"path segment {segment!r} refused")
    return segments


@dataclass(frozen=True)
class _Script:
    filename: str  # The file to execute.
    script_name: str  # Its URL path (SCRIPT_NAME), mount point included.
    path_info: str


class CGIToASGI:
    """An ASGI app that runs CGI programs.

    Options: `timeout` seconds per request (the process group is killed after it);
    `max_processes` running at once and `max_queue` waiting (more get 503); `pass_environ`
    names of this process's environment variables the script may see (PATH always); a body sent
    without a length (chunked) is spooled, up to `max_spool_bytes` (then 413), to declare one;
    `pass_authorization` gives scripts HTTP_AUTHORIZATION; `refuse_function_headers` refuses
    header values starting with "() {" (Shellshock, CVE-2014-6271); `extra_env` is added as is.
    """

    def __init__(
        self,
        path: str,
        *,
        timeout: float = 30.0,
        max_processes: int = 16,
        max_queue: int = 64,
        pass_environ: Iterable[str] = (),
        pass_authorization: bool = False,
        refuse_function_headers: bool = True,
        extra_env: Mapping[str, str] | None = None,
        kill_grace: float = 2.0,
        max_spool_bytes: int = 1024**3,
    ) -> None:
        full = os.path.abspath(path)
        if not os.path.exists(full):
            raise ConfigurationError(f"no such CGI script or directory: {path!r}")
        self.root = os.path.realpath(full)
        self.is_directory = os.path.isdir(self.root)
        if not self.is_directory and not os.access(self.root, os.X_OK):
            raise ConfigurationError(f"CGI script {path!r} is not executable")
        self.timeout = timeout
        self.max_processes = max_processes
        self.max_queue = max_queue
        self.pass_environ = tuple(pass_environ)
        self.pass_authorization = pass_authorization
        self.refuse_function_headers = refuse_function_headers
        self.extra_env = dict(extra_env or {})
        self.kill_grace = kill_grace
        self.max_spool_bytes = max_spool_bytes
        self._slots: asyncio.Semaphore | None = None
        self._waiting = 0
        self.running: set[ChildProcess] = set()

    # ---- resolving the script ------------------------------------------------------------------

    def resolve(self, scope: Scope) -> _Script:
        """Which script serves this request (raise ScriptRefused with 403/404 if none may)."""
        root_path = scope.get("root_path", "").rstrip("/")
        _, path = split_path(scope["path"], root_path)
        segments = check_path_segments(path, scope.get("raw_path") or path.encode("utf-8", "replace"))
        if not self.is_directory:
            return _Script(self.root, root_path, path)
        current = self.root
        for index, segment in enumerate(segments):
            current = os.path.join(current, segment)
            try:
                info = os.stat(current)
            except OSError:
                raise ScriptRefused(404, "no such script") from None
            real = os.path.realpath(current)
            if real != self.root and not real.startswith(self.root + os.sep):
                raise ScriptRefused(403, "the script resolves outside the CGI directory")
            if stat.S_ISREG(info.st_mode):
                if not os.access(real, os.X_OK):
                    raise ScriptRefused(403, "the script is not executable")
                script_name = root_path + "/" + "/".join(segments[: index + 1])
                rest = segments[index + 1 :]
                path_info = ("/" + "/".join(rest)) if rest else ""
                if path.endswith("/"):
                    path_info += "/"  # RFC 3875 4.1.5: "/env.pl/" has PATH_INFO "/".
                return _Script(real, script_name, path_info)
            if not stat.S_ISDIR(info.st_mode):
                raise ScriptRefused(403, "not a regular file")
        raise ScriptRefused(404, "no script in the path")

    def environment(self, scope: Scope, script: _Script) -> dict[str, str]:
        """The script's whole environment: RFC 3875 meta-variables and the allowed pass-through."""
        variables = scope_to_cgi_variables(
            scope,
            script_name=script.script_name,
            path_info=script.path_info,
            document_root=os.path.dirname(script.filename) if not self.is_directory else self.root,
            pass_authorization=self.pass_authorization,
            extra={"SCRIPT_FILENAME": script.filename, "REDIRECT_STATUS": "200", **self.extra_env},
        )
        if self.refuse_function_headers:
            # Any variable the client controls (headers, CONTENT_TYPE, the query, the path...).
            for name, value in variables.items():
                if value.lstrip().startswith("() {"):
                    raise ScriptRefused(400, f"{name} looks like a shell function definition")
        variables["PATH"] = os.environ.get("PATH", _DEFAULT_PATH)
        for name in self.pass_environ:
            if name in os.environ:
                variables[name] = os.environ[name]
        return variables

    def environment_bytes(self, variables: dict[str, str]) -> dict[bytes, bytes]:
        """The environment as the bytes the script receives: CGI values are WSGI strings
        (latin-1 for bytes), the server's own pass-through variables are taken as they are."""
        env = {name.encode("latin-1"): value.encode("latin-1") for name, value in variables.items()}
        own = getattr(os, "environb", None)
        for name in ("PATH", *self.pass_environ):
            if own is not None and name.encode() in own:
                env[name.encode()] = own[name.encode()]
        return env

    # ---- the ASGI app --------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await self.kill_all()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        elif kind == "websocket":
            if (await receive())["type"] == "websocket.connect":
                await send({"type": "websocket.close", "code": 1000})
        else:
            raise ConfigurationError(f"CGIToASGI cannot serve scope type {kind!r}")

    async def kill_all(self) -> None:
        """Kill every running script's process group (server shutdown)."""
        for process in list(self.running):
            process.kill_group()

    async def _http(self, scope: Scope, receive: Receive | None, send: Send) -> None:
        body: SpooledBody | None = None
        for redirects in range(MAX_LOCAL_REDIRECTS + 1):
            try:
                if redirects and not _under(scope["path"], scope.get("root_path", "")):
                    raise ScriptRefused(404, "a local redirect outside the mount point")
                script = self.resolve(scope)
                env = self.environment(scope, script)
                if receive is not None and "CONTENT_LENGTH" not in env and has_undeclared_body(scope):
                    # RFC 3875 4.1.2: a script reads CONTENT_LENGTH bytes. A chunked upload has
                    # no length: spool it first, then declare its length.
                    body = await SpooledBody.read(receive, self.max_spool_bytes)
                    env["CONTENT_LENGTH"] = str(body.size)
                    receive = body.receive
            except ClientGone:
                return
            except BodyTooLarge:
                await send_plain(send, 413)
                return
            except ScriptRefused as refusal:
                logger.info("refused %s: %s", scope.get("path"), refusal)
                await send_plain(send, refusal.status)
                return
            except RemoteProtocolError as exc:  # Headers no environment can hold (431, 400).
                logger.info("refused %s: %s", scope.get("path"), exc)
                await send_plain(send, exc.status_code)
                return
            try:
                location = await self._run_limited(script, env, receive, send)
            finally:
                if body is not None:
                    body.close()
                    body = None
            if location is None:
                return
            # RFC 3875 section 6.2.2: serve the new location internally, as a GET without a body.
            scope = redirected_scope(scope, location)
            receive = None
        logger.error("more than %d local redirects from %s", MAX_LOCAL_REDIRECTS, scope.get("path"))
        await send_plain(send, 502)

    async def _run_limited(
        self, script: _Script, env: dict[str, str], receive: Receive | None, send: Send
    ) -> bytes | None:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_processes)
        if not self._slots.locked():
            await self._slots.acquire()  # Free: taken at once, without yielding.
        elif self._waiting >= self.max_queue:
            logger.warning("too many CGI requests waiting; answering 503")
            await send_plain(send, 503)
            return None
        else:
            self._waiting += 1
            try:
                # Waiting counts against the request's time: the queue never holds one forever.
                await asyncio.wait_for(self._slots.acquire(), self.timeout)
            except asyncio.TimeoutError:
                logger.warning("no CGI process free within %ss; answering 503", self.timeout)
                await send_plain(send, 503)
                return None
            finally:
                self._waiting -= 1
        try:
            return await self._run(script, env, receive, send)
        finally:
            self._slots.release()

    async def _run(
        self, script: _Script, env: dict[str, str], receive: Receive | None, send: Send
    ) -> bytes | None:
        try:
            process = ChildProcess.spawn(
                [script.filename],
                cwd=os.path.dirname(script.filename),
                env=self.environment_bytes(env),  # Bytes: the values are byte strings (POSIX).
                on_stderr_line=functools.partial(_log_stderr_line, os.path.basename(script.filename)),
            )  # In its own process group: a kill reaches the script's children too.
        except OSError as exc:
            logger.error("cannot run CGI script %s: %s", script.filename, exc)
            await send_plain(send, 502)
            return None
        self.running.add(process)
        nph = os.path.basename(script.filename).startswith("nph-")
        relay = ResponseRelay(send, CGIResponseParser(nph=nph))
        feeder = asyncio.ensure_future(_feed_stdin(process, receive, relay))
        outcome: bytes | None = None
        try:
            outcome = await asyncio.wait_for(self._relay_stdout(process, relay), self.timeout)
        except asyncio.TimeoutError:
            logger.error("CGI script %s ran over %ss; killed", script.filename, self.timeout)
            process.kill_group()
            if relay.started:  # Cut the response: the server closes the connection.
                raise CGIResponseError(f"CGI script timed out after {self.timeout}s mid-response") from None
            await send_plain(send, 504)
        except CGIResponseError as exc:
            process.kill_group()
            if relay.client_gone:
                logger.info("client went away; killed CGI script %s", script.filename)
            else:
                logger.error("CGI script %s wrote a malformed response: %s", script.filename, exc)
                if relay.started:
                    raise
                await send_plain(send, 502)
        except ClientGone:
            logger.info("client went away; killing CGI script %s", script.filename)
            process.kill_group()
        except BaseException:
            process.kill_group()
            raise
        finally:
            feeder.cancel()
            await self._reap(process, script.filename)
            self.running.discard(process)
        return outcome

    async def _relay_stdout(self, process: ChildProcess, relay: ResponseRelay) -> bytes | None:
        while True:
            data = await process.read_stdout(_READ_SIZE)
            location = await relay.feed(data)
            if location is not None:
                process.kill_group()  # Whatever else it writes is not wanted.
                return location
            if not data:
                return None

    async def _reap(self, process: ChildProcess, filename: str) -> None:
        try:
            await asyncio.wait_for(process.wait(), self.kill_grace)
        except asyncio.TimeoutError:
            process.kill_group()
            await process.wait()
        process.close()  # Logs what is left of its stderr, then closes the pipes on this loop.
        if process.returncode not in (0, None, -signal.SIGKILL):
            logger.info("CGI script %s exited with %s", filename, process.returncode)


def _under(path: str, root_path: str) -> bool:
    root = root_path.rstrip("/")
    return not root or path == root or path.startswith(root + "/")


async def _feed_stdin(process: ChildProcess, receive: Receive | None, relay: ResponseRelay) -> None:
    """Stream the request body into the script's stdin; a disconnect kills the script."""
    try:
        while receive is not None:
            message = await receive()
            if message["type"] == "http.disconnect":
                relay.client_gone = True
                process.kill_group()
                return
            body = message.get("body", b"")
            if body:
                await process.write_stdin(body)
            if not message.get("more_body", False):
                break
        process.close_stdin()
        # Keep listening: a client that leaves while the script still works gets it killed.
        while receive is not None and not relay.ended:
            message = await receive()
            if message["type"] == "http.disconnect":
                if not relay.ended:
                    relay.client_gone = True
                    process.kill_group()
                return
    except (BrokenPipeError, ConnectionResetError):
        process.close_stdin()  # The script did not read all of its input; that is its right.


def _log_stderr_line(name: str, line: bytes) -> None:
    logger.warning("%s: %s", name, line.decode("utf-8", "replace").rstrip())


class CGIToWSGI(ASGIToWSGI):
    """A WSGI app that runs CGI programs (CGIToASGI under ASGIToWSGI); same options as CGIToASGI."""

    def __init__(self, path: str, **options: Any) -> None:
        super().__init__(CGIToASGI(path, **options), lifespan="off")
