"""`bridges.run_cgi` and `bridge cgi`: an ASGI or WSGI app as a CGI program.

In-process tests give run_cgi a made-up environment and byte streams; subprocess tests run
`python -m bridges cgi` the way a CGI host does (environment, stdin, stdout, exit status).
Real hosts (lighttpd, Apache, nginx + fcgiwrap) are in test_cgi_real_hosts.py.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from bridges.cgi_host import host_variables, run_cgi
from bridges.cgi_response import NEED_DATA, BodyData, CGIResponseParser, ResponseHead

pytestmark = pytest.mark.timeout(30)


def cgi_environ(**extra: str) -> dict[str, str]:
    environ = {
        "GATEWAY_INTERFACE": "CGI/1.1",
        "SERVER_SOFTWARE": "lighttpd/1.4.69",
        "SERVER_NAME": "example.test",
        "SERVER_PORT": "8080",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "/cgi-bin/app.cgi",
        "PATH_INFO": "/items/1",
        "QUERY_STRING": "x=1",
        "REQUEST_URI": "/cgi-bin/app.cgi/items/1?x=1",
        "REMOTE_ADDR": "198.51.100.4",
        "REMOTE_PORT": "50123",
        "HTTP_HOST": "example.test:8080",
    }
    environ.update(extra)
    return environ


def parse(output: bytes, nph: bool = False) -> tuple[ResponseHead, bytes]:
    parser = CGIResponseParser(nph=nph)
    parser.receive_data(output)
    parser.receive_data(b"")
    head = parser.next_event()
    assert isinstance(head, ResponseHead)
    body = b""
    while (event := parser.next_event()) is not NEED_DATA:
        if isinstance(event, BodyData):
            body += event.data
    return head, body


def serve(app: Any, environ: dict[str, str], body: bytes = b"", **options: Any) -> tuple[int, bytes]:
    stdout = io.BytesIO()
    code = run_cgi(app, environ=environ, stdin=io.BytesIO(body), stdout=stdout, **options)
    return code, stdout.getvalue()


def echo_wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = environ["wsgi.input"].read()
    seen = "|".join(
        [
            environ["REQUEST_METHOD"],
            environ["SCRIPT_NAME"],
            environ["PATH_INFO"],
            environ["QUERY_STRING"],
            environ["wsgi.url_scheme"],
            str("HTTP_PROXY" in environ),
            str(len(body)),
        ]
    )
    start_response("200 OK", [("Content-Type", "text/plain"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")])
    return [seen.encode()]


async def echo_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["ready"] = "yes"
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    text = (
        f"{scope['method']}|{scope['root_path']}|{scope['path']}|{scope['raw_path'].decode()}|"
        f"{scope['query_string'].decode()}|{scope['scheme']}|"
        f"{scope.get('state', {}).get('ready')}|{len(body)}"
    )
    await send({"type": "http.response.start", "status": 201, "headers": [(b"content-type", b"text/plain")]})
    for piece in (text[:5], text[5:]):
        await send({"type": "http.response.body", "body": piece.encode(), "more_body": True})
    await send({"type": "http.response.body", "body": b""})


def test_wsgi_app_as_cgi() -> None:
    code, output = serve(
        echo_wsgi, cgi_environ(REQUEST_METHOD="POST", CONTENT_LENGTH="5", HTTP_PROXY="x"), b"hello+"
    )
    head, body = parse(output)
    assert code == 0
    assert head.status == 200
    assert head.headers == [
        (b"content-type", b"text/plain"),
        (b"set-cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
    ]
    assert body == b"POST|/cgi-bin/app.cgi|/items/1|x=1|http|False|5"  # CONTENT_LENGTH bounds the read.


def test_asgi_app_as_cgi_with_lifespan() -> None:
    environ = cgi_environ(REQUEST_METHOD="PUT", HTTPS="on", CONTENT_LENGTH="3")
    code, output = serve(echo_asgi, environ, b"abc")
    head, body = parse(output)
    assert code == 0 and head.status == 201
    assert body == b"PUT|/cgi-bin/app.cgi|/cgi-bin/app.cgi/items/1|/cgi-bin/app.cgi/items/1|x=1|https|yes|3"


def test_body_without_length_is_read_to_eof() -> None:
    environ = cgi_environ(REQUEST_METHOD="POST")
    _, output = serve(echo_wsgi, environ, b"z" * 100_000)
    assert parse(output)[1].endswith(b"|100000")
    _, output = serve(echo_asgi, environ, b"z" * 100_000, lifespan="off")
    assert parse(output)[1].endswith(b"|100000")


def test_nph_script_writes_a_status_line() -> None:
    environ = cgi_environ(SCRIPT_NAME="/cgi-bin/nph-app.cgi", REQUEST_URI="/cgi-bin/nph-app.cgi/items/1")
    _, output = serve(echo_wsgi, environ)
    assert output.startswith(b"HTTP/1.1 200 OK\r\n")
    head, _ = parse(output, nph=True)
    assert head.status == 200


def test_iis_repeats_script_name_in_path_info() -> None:
    environ = cgi_environ(SERVER_SOFTWARE="Microsoft-IIS/10.0", PATH_INFO="/cgi-bin/app.cgi/items/1")
    assert host_variables(environ)["PATH_INFO"] == "/items/1"
    _, output = serve(echo_wsgi, environ)
    assert parse(output)[1].split(b"|")[2] == b"/items/1"
    other = cgi_environ(PATH_INFO="/cgi-bin/app.cgi/items/1")  # Not IIS: taken as it is.
    assert host_variables(other)["PATH_INFO"] == "/cgi-bin/app.cgi/items/1"


def test_app_crash_writes_500_and_exits_1(capsys: Any) -> None:
    def broken(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        raise ZeroDivisionError("oops")

    async def broken_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise ZeroDivisionError("oops")

    for app in (broken, broken_asgi):
        code, output = serve(app, cgi_environ(), lifespan="off")
        assert code == 1
        assert parse(output)[0].status == 500
    assert "ZeroDivisionError" in capsys.readouterr().err


def test_crash_after_headers_cuts_and_exits_1() -> None:
    def late(environ: dict[str, Any], start_response: Any) -> Any:
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"partial"
        raise RuntimeError("late")

    code, output = serve(late, cgi_environ())
    assert code == 1
    assert output.endswith(b"partial") and b"500" not in output


def test_header_injection_is_refused() -> None:
    def injecting(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("X-A", "a\r\nSet-Cookie: evil=1")])
        return [b"x"]

    code, output = serve(injecting, cgi_environ())
    assert code == 1 and b"evil" not in output and parse(output)[0].status == 500


APP_FILE = textwrap.dedent(
    """
    def app(environ, start_response):
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [environ["PATH_INFO"].encode("latin-1")]
    """
)


def test_bridge_cgi_command(tmp_path: Path) -> None:
    (tmp_path / "cgiapp.py").write_text(APP_FILE)
    env = {"PATH": os.environ.get("PATH", "/usr/bin"), **cgi_environ(PATH_INFO="/café")}
    done = subprocess.run(
        [sys.executable, "-m", "bridges", "cgi", "cgiapp:app"],
        cwd=tmp_path,
        env=env,
        input=b"",
        capture_output=True,
        timeout=20,
    )
    assert done.returncode == 0, done.stderr
    head, body = parse(done.stdout)
    assert head.status == 404 and body == "/café".encode()


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "TARGET is required"),
        (["x:y", "--mode", "nope"], "--mode must be"),
        (["nosuch:app"], "could not import"),
    ],
)
def test_bridge_cgi_misuse_is_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bridges", "cgi", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr


def test_three_line_script_imports_little(tmp_path: Path) -> None:
    """The documented CGI script imports neither asyncio nor the server for a WSGI app."""
    (tmp_path / "cgiapp.py").write_text(APP_FILE)
    script = tmp_path / "app.cgi"
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        "from bridges import run_cgi\n"
        "from cgiapp import app\n"
        "code = run_cgi(app)\n"
        "print(sorted(m for m in sys.modules if m.startswith(('asyncio', 'bridges.'))), file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    script.chmod(0o755)
    done = subprocess.run([str(script)], cwd=tmp_path, env=cgi_environ(), capture_output=True, timeout=20)
    assert done.returncode == 0
    loaded = done.stderr.decode().strip()
    for heavy in ("asyncio", "bridges.server", "bridges.config"):
        assert heavy not in loaded, loaded
