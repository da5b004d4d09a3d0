"""ASGIToWSGI conformance: PEP 3333 towards the WSGI server, the ASGI spec towards the app."""

from __future__ import annotations

import asyncio
import gc
import io
import os
import subprocess
import sys
import textwrap
import threading
import warnings
from typing import Any
from wsgiref.util import setup_testing_defaults
from wsgiref.validate import validator

import pytest

from bridges import ASGIToWSGI, LifespanFailure, LocalProtocolError

pytestmark = pytest.mark.timeout(30)


def environ_for(
    path: str = "/", method: str = "GET", body: bytes | None = None, **extra: Any
) -> dict[str, Any]:
    environ: dict[str, Any] = {"REQUEST_METHOD": method, "SCRIPT_NAME": "", "PATH_INFO": path}
    environ["QUERY_STRING"] = ""
    setup_testing_defaults(environ)
    if body is not None:
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
    environ.update(extra)
    return environ


class StartResponse:
    def __init__(self) -> None:
        self.calls: list[tuple[str, list[tuple[str, str]], Any]] = []

    def __call__(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        self.calls.append((status, headers, exc_info))
        return lambda data: None

    @property
    def status(self) -> str:
        return self.calls[-1][0]


def call_wsgi(app: Any, environ: dict[str, Any]) -> tuple[StartResponse, bytes]:
    start = StartResponse()
    iterable = app(environ, start)
    try:
        body = b"".join(iterable)
    finally:
        close = getattr(iterable, "close", None)
        if close is not None:
            close()
    return start, body


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    payload = f"{scope['method']} {scope['root_path']}|{scope['path']} {len(body)}".encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(payload)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def test_hello_under_wsgiref_validator() -> None:
    start, body = call_wsgi(validator(ASGIToWSGI(echo_app, lifespan="off")), environ_for("/x"))
    assert start.status == "200 OK"
    assert body == b"GET |/x 0"


def test_scope_has_root_path_and_full_path() -> None:
    environ = environ_for("/rest", SCRIPT_NAME="/mount")
    _, body = call_wsgi(ASGIToWSGI(echo_app, lifespan="off"), environ)
    assert body == b"GET /mount|/mount/rest 0"


def test_loop_starts_lazily() -> None:
    adapter = ASGIToWSGI(echo_app, lifespan="off")
    assert not adapter.portal.running
    call_wsgi(adapter, environ_for())
    assert adapter.portal.running


@pytest.mark.parametrize("size", [0, 10, 65536, 65537, 1_000_000])
def test_declared_body_reaches_the_app(size: int) -> None:
    _, body = call_wsgi(ASGIToWSGI(echo_app, lifespan="off"), environ_for(method="POST", body=b"q" * size))
    assert body == f"POST |/ {size}".encode()


class TrickleInput:
    """A wsgi.input that returns short reads, then b"" at the end, like a chunked decoder."""

    def __init__(self, data: bytes, piece: int = 1000) -> None:
        self.data = data
        self.piece = piece

    def read(self, size: int = -1) -> bytes:
        n = self.piece if size < 0 else min(size, self.piece)
        out, self.data = self.data[:n], self.data[n:]
        return out


def test_body_without_length_is_read_to_eof_when_input_is_terminated() -> None:
    environ = environ_for(method="POST")
    environ["wsgi.input"] = TrickleInput(b"c" * 123_456)
    environ["wsgi.input_terminated"] = True
    environ.pop("CONTENT_LENGTH", None)
    _, body = call_wsgi(ASGIToWSGI(echo_app, lifespan="off"), environ)
    assert body == b"POST |/ 123456"


def test_body_without_length_or_termination_is_empty() -> None:
    environ = environ_for(method="POST")
    environ["wsgi.input"] = TrickleInput(b"never read")
    environ.pop("CONTENT_LENGTH", None)
    _, body = call_wsgi(ASGIToWSGI(echo_app, lifespan="off"), environ)
    assert body == b"POST |/ 0"


def test_response_chunks_are_yielded_as_the_app_sends_them() -> None:
    release = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        # The second chunk only comes once the WSGI side has seen the first: buffering deadlocks.
        await asyncio.get_running_loop().run_in_executor(None, release.wait, 10)
        await send({"type": "http.response.body", "body": b"second"})

    start = StartResponse()
    iterable = ASGIToWSGI(app, lifespan="off")(environ_for(), start)
    iterator = iter(iterable)
    assert next(iterator) == b"first"
    release.set()
    assert next(iterator) == b"second"
    with pytest.raises(StopIteration):
        next(iterator)
    iterable.close()  # type: ignore[attr-defined]


def test_response_window_bounds_how_far_the_app_runs_ahead() -> None:
    sent = 0

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal sent
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(100):
            await send({"type": "http.response.body", "body": b"z" * 65536, "more_body": True})
            sent += 1
        await send({"type": "http.response.body", "body": b""})

    iterable = ASGIToWSGI(app, lifespan="off", window=4 * 65536)(environ_for(), StartResponse())
    iterator = iter(iterable)
    consumed = 0
    max_ahead = 0
    for _ in iterator:
        consumed += 1
        threading.Event().wait(0.001)
        max_ahead = max(max_ahead, sent - consumed)
    assert consumed == 100
    assert max_ahead <= 6, max_ahead


def test_early_close_cancels_the_app_cleanly() -> None:
    cancelled = threading.Event()

    async def endless(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            while True:
                await send({"type": "http.response.body", "body": b"x" * 1024, "more_body": True})
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        iterable = ASGIToWSGI(endless, lifespan="off")(environ_for(), StartResponse())
        iterator = iter(iterable)
        next(iterator)
        next(iterator)
        iterable.close()  # type: ignore[attr-defined]
        assert cancelled.wait(5)
        gc.collect()
    assert not [w for w in caught if "destroyed" in str(w.message)]


def test_disconnect_is_delivered_after_the_response() -> None:
    seen: list[dict[str, Any]] = []
    done = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        seen.append(await receive())
        done.set()

    start, _body = call_wsgi(ASGIToWSGI(app, lifespan="off"), environ_for())
    assert start.status == "204 No Content"
    assert done.wait(5)
    assert seen == [{"type": "http.disconnect"}]


def test_send_after_early_close_raises_oserror() -> None:
    """A task the app spawned outlives the cancelled app: it sees http.disconnect, then OSError."""
    errors: list[BaseException] = []
    seen: list[dict[str, Any]] = []
    finished = threading.Event()
    spawned: list[asyncio.Task[None]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})

        async def watcher() -> None:
            try:
                seen.append(await receive())
                seen.append(await receive())  # Blocks until the WSGI server closes the response.
                await send({"type": "http.response.body", "body": b"b", "more_body": True})
            except OSError as exc:
                errors.append(exc)
            finally:
                finished.set()

        spawned.append(asyncio.ensure_future(watcher()))
        await asyncio.Event().wait()

    iterable = ASGIToWSGI(app, lifespan="off")(environ_for(), StartResponse())
    assert next(iter(iterable)) == b"a"
    iterable.close()  # type: ignore[attr-defined]
    assert finished.wait(5)
    assert seen == [{"type": "http.request", "body": b"", "more_body": False}, {"type": "http.disconnect"}]
    assert len(errors) == 1


def test_exception_before_start_gives_500_with_exc_info() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise LookupError("no such thing")

    start, body = call_wsgi(ASGIToWSGI(app, lifespan="off"), environ_for())
    status, _headers, exc_info = start.calls[-1]
    assert status == "500 Internal Server Error"
    assert exc_info is not None and isinstance(exc_info[1], LookupError)
    assert body == b"Internal Server Error"


def test_exception_after_start_cuts_the_response() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise RuntimeError("late")

    iterable = ASGIToWSGI(app, lifespan="off")(environ_for(), StartResponse())
    iterator = iter(iterable)
    assert next(iterator) == b"partial"
    with pytest.raises(RuntimeError, match="late"):
        next(iterator)
    iterable.close()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "messages",
    [
        [{"type": "http.response.body", "body": b"x"}],
        [
            {"type": "http.response.start", "status": 200, "headers": []},
            {"type": "http.response.start", "status": 200, "headers": []},
        ],
        [{"type": "websocket.send", "text": "nope"}],
    ],
    ids=["body-before-start", "start-twice", "wrong-type"],
)
def test_out_of_order_messages_are_refused(messages: list[dict[str, Any]]) -> None:
    refused: list[BaseException] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            for message in messages:
                await send(message)
        except LocalProtocolError as exc:
            refused.append(exc)
        if messages[0]["type"] != "http.response.start":
            await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"recovered"})

    start, body = call_wsgi(ASGIToWSGI(app, lifespan="off"), environ_for())
    assert len(refused) == 1
    assert (start.status, body) == ("200 OK", b"recovered")


def lifespan_app(log: list[str], fail: bool = False) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    log.append("startup")
                    if fail:
                        await send({"type": "lifespan.startup.failed", "message": "db down"})
                        return
                    scope["state"]["db"] = "connected"
                    await send({"type": "lifespan.startup.complete"})
                else:
                    log.append("shutdown")
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        log.append(f"request state={scope.get('state')}")
        scope["state"]["mutated"] = True  # Must not leak into the next request's state.
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


def test_lifespan_runs_once_before_the_first_request_with_state() -> None:
    log: list[str] = []
    adapter = ASGIToWSGI(lifespan_app(log))
    assert log == []
    call_wsgi(adapter, environ_for())
    call_wsgi(adapter, environ_for())
    assert log == ["startup", "request state={'db': 'connected'}", "request state={'db': 'connected'}"]
    adapter.portal.close()
    assert log[-1] == "shutdown"


def test_lifespan_off_never_calls_it() -> None:
    log: list[str] = []
    call_wsgi(ASGIToWSGI(lifespan_app(log), lifespan="off"), environ_for())
    assert log == ["request state=None"]


def test_lifespan_startup_failure_fails_requests() -> None:
    log: list[str] = []
    adapter = ASGIToWSGI(lifespan_app(log, fail=True))
    with pytest.raises(LifespanFailure):
        adapter(environ_for(), StartResponse())
    assert log == ["startup"]


def test_lifespan_auto_tolerates_apps_without_lifespan() -> None:
    async def http_only(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http", "I only speak HTTP"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"fine"})

    _, body = call_wsgi(ASGIToWSGI(http_only, lifespan="auto"), environ_for())
    assert body == b"fine"
    with pytest.raises(LifespanFailure):
        ASGIToWSGI(http_only, lifespan="on")(environ_for(), StartResponse())


def run_script(source: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )


LIFESPAN_SCRIPT_HEADER = """
    import io, os, sys
    from wsgiref.util import setup_testing_defaults
    from bridges import ASGIToWSGI

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    print("startup", os.getpid(), flush=True)
                    await send({"type": "lifespan.startup.complete"})
                else:
                    print("shutdown", os.getpid(), flush=True)
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(os.getpid()).encode()})

    wsgi_app = ASGIToWSGI(app)

    def request():
        environ = {}
        setup_testing_defaults(environ)
        result = wsgi_app(environ, lambda status, headers, exc_info=None: None)
        body = b"".join(result)
        result.close()
        return body.decode()
"""


def test_lifespan_shutdown_runs_at_process_exit() -> None:
    done = run_script(LIFESPAN_SCRIPT_HEADER + "\n    print('served', request(), flush=True)\n")
    assert done.returncode == 0, done.stderr
    lines = [line.split()[0] for line in done.stdout.splitlines()]
    assert lines == ["startup", "served", "shutdown"], done.stdout


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_after_first_use_restarts_the_loop_and_lifespan_in_the_child() -> None:
    script = (
        LIFESPAN_SCRIPT_HEADER
        + """
    print("parent", request(), flush=True)
    pid = os.fork()
    if pid == 0:
        print("child", request(), flush=True)
        sys.exit(0)
    _, status = os.waitpid(pid, 0)
    print("child-exit", os.waitstatus_to_exitcode(status), flush=True)
    """
    )
    done = run_script(script)
    assert done.returncode == 0, done.stderr
    words = [line.split() for line in done.stdout.splitlines()]
    kinds = [w[0] for w in words]
    parent_pid = int(next(w[1] for w in words if w[0] == "parent"))
    child_pid = int(next(w[1] for w in words if w[0] == "child"))
    assert child_pid != parent_pid
    # The child runs its own startup before serving, and its own shutdown when it exits.
    assert ["startup", str(child_pid)] in words
    assert ["shutdown", str(child_pid)] in words
    assert ["child-exit", "0"] in words
    assert kinds.count("startup") == 2, done.stdout


def test_concurrent_wsgi_threads() -> None:
    adapter = ASGIToWSGI(echo_app, lifespan="off")
    results: list[bytes] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        for j in range(50):
            _, body = call_wsgi(adapter, environ_for(f"/{i}/{j}", method="POST", body=b"b" * j))
            with lock:
                results.append(body)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert len(results) == 400
    assert set(results) == {f"POST |/{i}/{j} {j}".encode() for i in range(8) for j in range(50)}
