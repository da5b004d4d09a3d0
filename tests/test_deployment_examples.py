"""Run the deployment examples for real, with the commands and configurations their READMEs give.

- `examples/django_nginx_fastcgi`: the README's `bridge serve --protocol fastcgi --uds` command
  (only the socket path changed) behind a private nginx whose server block is the README's
  (only the port, the socket and `/srv/bridges` changed).
- `examples/asgi_on_cgi_host`: the README's lighttpd command, verbatim but for `PORT`; the
  README's script and configuration must be the example's files.
- `examples/perl_cgi_bin`: the README's `bridge serve --mode cgi` command on a free port.

The curl lines of each README's "Try it" section are sent too (translated to httpx), so that
they keep working. Every process runs in its own session and is stopped by its PID: SIGTERM,
a bounded wait, SIGKILL, then its session (real_hosts.stop_group).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from conftest import find_binary
from real_hosts import free_port, nginx, stop_group, wait_for_port

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
START_TIMEOUT = 20.0


# ---- reading the READMEs -------------------------------------------------------------------------


def fenced_blocks(example: str, language: str) -> list[str]:
    """The contents of the README's ```language blocks (indented blocks of a list item too)."""
    text = (EXAMPLES / example / "README.md").read_text(encoding="utf-8")
    blocks = []
    for indent, body in re.findall(rf"^( *)```{language}\n(.*?)^\1```", text, flags=re.DOTALL | re.MULTILINE):
        lines = body.splitlines(keepends=True)
        assert all(line.startswith(indent) or not line.strip() for line in lines), body
        blocks.append("".join(line[len(indent) :] if line.strip() else line.lstrip(" ") for line in lines))
    return blocks


def sh_lines(example: str) -> list[str]:
    return [line for block in fenced_blocks(example, "sh") for line in block.splitlines() if line.strip()]


@dataclass
class Command:
    line: str  # As the README spells it.
    cwd: Path  # The repository root, or the directory of its leading `cd DIR && `.
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)  # Its leading NAME=value assignments.


_SERVE = re.compile(r"(?:cd (?P<dir>\S+) && )?(?P<command>(?:\.\./)*\.venv/bin/python -m bridges serve .*)")


def serve_command(example: str) -> Command:
    """The README's one `bridge serve` command line."""
    commands = [
        Command(line, ROOT / match["dir"] if match["dir"] else ROOT, shlex.split(match["command"]))
        for line in sh_lines(example)
        if (match := _SERVE.fullmatch(line))
    ]
    assert len(commands) == 1, f"examples/{example}/README.md: {commands}"
    return commands[0]


def replace_option(argv: list[str], option: str, value: str) -> list[str]:
    argv = list(argv)
    argv[argv.index(option) + 1] = value
    return argv


def curl_requests(example: str, origin: str) -> list[httpx.Request]:
    """The README's curl lines as requests to `origin` (the flags they use: -i, -I, -d, -H)."""
    requests = []
    for line in sh_lines(example):
        if not line.startswith("curl "):
            continue
        args = shlex.split(line)[1:]
        method, data, headers, url = "GET", [], {}, None
        while args:
            arg = args.pop(0)
            if arg == "-i":
                continue
            if arg == "-I":
                method = "HEAD"
            elif arg == "-d":
                method = "POST"
                data.append(args.pop(0))
            elif arg == "-H":
                name, value = args.pop(0).split(":", 1)
                headers[name.strip()] = value.strip()
            else:
                assert url is None and arg.startswith("http://127.0.0.1:"), f"{arg!r} in {line!r}"
                url = re.sub(r"^http://127\.0\.0\.1:\d+", "", arg)
        if data:
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        requests.append(httpx.Request(method, origin + url, headers=headers, content="&".join(data)))
    assert requests, f"no curl line in examples/{example}/README.md"
    return requests


def send_curl_lines(example: str, origin: str) -> list[httpx.Response]:
    """Send the README's curl requests to `origin`; each must succeed (curl does not follow redirects)."""
    responses = []
    with httpx.Client(timeout=20) as client:
        for request in curl_requests(example, origin):
            response = client.send(request)
            assert response.status_code < 400, f"{request.method} {request.url}: {response.status_code}"
            responses.append(response)
    return responses


# ---- processes -----------------------------------------------------------------------------------


@dataclass
class Process:
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM by PID, bounded wait, SIGKILL, then the rest of its session; its exit status."""
        stop_group(self.process, timeout=15)
        return self.process.returncode


def launch(argv: list[str], cwd: Path, log: Path, env: dict[str, str] | None = None) -> Process:
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    return Process(process, log)


def wait_until(ready: Callable[[], bool], started: Process, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not ready():
        if started.process.poll() is not None:
            raise AssertionError(f"exited with {started.process.returncode}:\n{started.output()}")
        if time.monotonic() > deadline:
            started.stop()
            raise AssertionError(f"{what} not ready within {START_TIMEOUT}s:\n{started.output()}")
        time.sleep(0.05)


def answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=1.0)  # Any HTTP answer means it is up.
        return True
    except httpx.TransportError:
        return False


# ---- django_nginx_fastcgi: Django over FastCGI on a unix socket, behind nginx ---------------------

GUESTBOOK = "django_nginx_fastcgi"
README_SOCKET = "/tmp/guestbook.sock"
README_CHECKOUT = "/srv/bridges"


def nginx_server_body(socket_path: Path) -> str:
    """The README's server block: its body, without `listen` (real_hosts.nginx adds its own)."""
    (block,) = fenced_blocks(GUESTBOOK, "nginx")
    lines = block.rstrip().splitlines()
    assert lines[0] == "server {" and lines[-1] == "}", block
    body = [line for line in lines[1:-1] if not line.strip().startswith("listen ")]
    assert len(body) == len(lines) - 3, "one listen line"
    text = "\n".join(body)
    assert README_SOCKET in text and README_CHECKOUT in text
    return text.replace(README_SOCKET, str(socket_path)).replace(README_CHECKOUT, str(ROOT))


@dataclass
class Site:
    url: str
    bridge: Process


def start_guestbook(workdir: Path) -> tuple[Process, Path]:
    command = serve_command(GUESTBOOK)
    socket_path = workdir / "guestbook.sock"
    bridge = launch(
        replace_option(command.argv, "--uds", str(socket_path)), command.cwd, workdir / "bridge.log"
    )
    # The socket exists from the bind on; "serving" is logged once SIGTERM is handled (a SIGTERM
    # before that, during start-up, kills the process by the signal's default action).
    wait_until(lambda: socket_path.exists() and "serving" in bridge.output(), bridge, "the FastCGI socket")
    return bridge, socket_path


@pytest.fixture(scope="module")
def guestbook(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    find_binary("nginx")
    workdir = tmp_path_factory.mktemp("guestbook")
    bridge, socket_path = start_guestbook(workdir)
    try:
        # A packaged nginx.conf includes mime.types in its http block; this one needs only CSS.
        types = "    types {\n        text/css css;\n    }\n"
        with nginx(workdir / "nginx", [nginx_server_body(socket_path)], http=types) as (port,):
            yield Site(f"http://127.0.0.1:{port}", bridge)
    finally:
        bridge.stop()


def test_guestbook_readme_command_is_the_documented_one() -> None:
    command = serve_command(GUESTBOOK)
    assert command.cwd == EXAMPLES / GUESTBOOK
    assert command.line == (
        "cd examples/django_nginx_fastcgi && ../../.venv/bin/python -m bridges serve "
        "guestbook.wsgi:application --mode wsgi --protocol fastcgi --uds /tmp/guestbook.sock"
    )


def test_guestbook_page_through_nginx(guestbook: Site) -> None:
    response = httpx.get(guestbook.url + "/", timeout=20)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["server"].startswith("nginx")
    assert '<link rel="stylesheet" href="/static/guestbook.css">' in response.text
    assert '<form method="post" action="/sign/">' in response.text
    assert "serving WSGI app guestbook.wsgi:application on fastcgi unix:" in guestbook.bridge.output()


def test_guestbook_static_files_come_from_nginx_alone(guestbook: Site) -> None:
    css = EXAMPLES / GUESTBOOK / "static" / "guestbook.css"
    response = httpx.get(guestbook.url + "/static/guestbook.css", timeout=20)
    assert response.status_code == 200
    assert response.content == css.read_bytes()
    assert response.headers["content-type"] == "text/css"
    assert "expires" in response.headers and response.headers["cache-control"] == "max-age=3600"
    assert httpx.get(guestbook.url + "/static/missing.css", timeout=20).status_code == 404
    assert "/static/" not in guestbook.bridge.output()  # Django never saw them.


def test_guestbook_sign_the_form(guestbook: Site) -> None:
    with httpx.Client(base_url=guestbook.url, timeout=20) as client:
        signed = client.post("/sign/", data={"name": "Zoë <script>", "message": "Hi & bye"})
        assert signed.status_code == 303
        assert signed.headers["location"] == "/"
        page = client.get("/").text
        assert "<li><b>Zoë &lt;script&gt;</b>: Hi &amp; bye</li>" in page
        assert client.post("/sign/", data={"name": "no message"}).status_code == 400
        assert client.get("/sign/").status_code == 405
        # Every other POST goes through Django's CSRF check.
        refused = client.post("/", data={"name": "x", "message": "y"})
        assert refused.status_code == 403
        assert "CSRF" in refused.text


def test_guestbook_chunked_form_gets_a_content_length_from_nginx(guestbook: Site) -> None:
    # Django under WSGI reads CONTENT_LENGTH bytes; nginx buffers a chunked body and sends its length.
    body = b"name=chunked&message=" + b"x" * 20_000
    with httpx.Client(base_url=guestbook.url, timeout=20) as client:
        request = client.build_request(
            "POST",
            "/sign/",
            content=iter([body[:10], body[10:]]),
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert request.headers["transfer-encoding"] == "chunked"
        assert client.send(request).status_code == 303
        assert f"<li><b>chunked</b>: {'x' * 20_000}</li>" in client.get("/").text


def test_guestbook_what_django_sees(guestbook: Site) -> None:
    info = httpx.get(guestbook.url + "/info/?x=1&y=%C3%A9", timeout=20).json()
    port = guestbook.url.rsplit(":", 1)[1]
    assert info == {
        "method": "GET",
        "path": "/info/",
        "script_name": "",
        "query": "x=1&y=%C3%A9",
        "host": f"127.0.0.1:{port}",
        "remote_addr": "127.0.0.1",
        "scheme": "http",
        "absolute_uri": f"http://127.0.0.1:{port}/info/?x=1&y=%C3%A9",
        "entries": info["entries"],
        "pid": guestbook.bridge.process.pid,
    }


def test_guestbook_readme_curl_lines(guestbook: Site) -> None:
    responses = send_curl_lines(GUESTBOOK, guestbook.url)
    assert [r.status_code for r in responses] == [200, 303, 200, 200, 200]
    assert "<li><b>Ada</b>: Hello from curl</li>" in responses[2].text
    assert responses[3].headers["server"].startswith("nginx")


def test_guestbook_bridge_exits_0_on_sigterm_and_removes_its_socket(tmp_path: Path) -> None:
    bridge, socket_path = start_guestbook(tmp_path)
    code = bridge.stop()
    assert code == 0, bridge.output()
    assert not socket_path.exists()
    assert "shutting down" in bridge.output()


# ---- asgi_on_cgi_host: a Starlette app as a CGI program under lighttpd mod_cgi -------------------

CGI_HOST = "asgi_on_cgi_host"


def lighttpd_command() -> Command:
    (line,) = [line for line in sh_lines(CGI_HOST) if "lighttpd" in line]
    match = re.fullmatch(r"PORT=(?P<port>\d+) lighttpd -D -f (?P<conf>\S+)", line)
    assert match, line
    return Command(line, ROOT, ["lighttpd", "-D", "-f", match["conf"]], {"PORT": match["port"]})


def test_cgi_host_readme_shows_the_example_files() -> None:
    directory = EXAMPLES / CGI_HOST
    assert fenced_blocks(CGI_HOST, "python") == [(directory / "cgi-bin" / "app.cgi").read_text()]
    assert fenced_blocks(CGI_HOST, "lighttpd") == [(directory / "lighttpd.conf").read_text()]
    assert os.access(directory / "cgi-bin" / "app.cgi", os.X_OK)
    assert lighttpd_command().argv[-1] == "examples/asgi_on_cgi_host/lighttpd.conf"


@pytest.fixture(scope="module")
def cgi_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = find_binary("lighttpd")
    if not (ROOT / ".venv" / "bin" / "python3").exists():
        # lighttpd.conf puts the repository's .venv/bin on the scripts' PATH, as the README says.
        message = "examples/asgi_on_cgi_host runs the repository's .venv, which does not exist"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    command = lighttpd_command()
    port = free_port()
    log = tmp_path_factory.mktemp("cgi-host") / "lighttpd.log"
    host = launch([binary, *command.argv[1:]], command.cwd, log, {**command.env, "PORT": str(port)})
    try:
        wait_for_port(port, host.process, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        host.stop()


def test_cgi_host_one_process_per_request(cgi_host: str) -> None:
    api = cgi_host + "/cgi-bin/app.cgi"
    first, second = (httpx.get(api + "/", timeout=20) for _ in range(2))
    assert first.status_code == second.status_code == 200
    assert first.headers["content-type"] == "application/json"
    assert first.json() == {
        "service": "notes_api",
        "pid": first.json()["pid"],
        "root_path": "/cgi-bin/app.cgi",
        "path": "/cgi-bin/app.cgi/",
    }
    assert first.json()["pid"] != second.json()["pid"]  # The lifespan ran in each process.
    redirect = httpx.get(api, timeout=20)  # Starlette adds the slash.
    assert (redirect.status_code, redirect.headers["location"]) == (307, api + "/")


def test_cgi_host_path_params_and_json(cgi_host: str) -> None:
    api = cgi_host + "/cgi-bin/app.cgi"
    with httpx.Client(timeout=20) as client:
        item = client.get(api + "/items/2", params={"q": "tools & more"})
        assert item.status_code == 200
        assert item.json() == {"id": 2, "name": "saw", "price": 24.0, "q": "tools & more"}
        missing = client.get(api + "/items/9")
        assert (missing.status_code, missing.json()) == (404, {"detail": "no item 9"})
        assert client.get(api + "/items/abc").status_code == 404
        greeting = client.get(api + "/users/Zo%C3%AB%20K/greeting")
        assert greeting.json() == {"greeting": "Hello, Zoë K!"}


def test_cgi_host_post_json(cgi_host: str) -> None:
    api = cgi_host + "/cgi-bin/app.cgi"
    with httpx.Client(timeout=20) as client:
        created = client.post(api + "/items", json={"name": "drill", "price": 99.5})
        assert created.status_code == 201
        assert created.json() == {"id": 3, "name": "drill", "price": 99.5}
        assert created.headers["location"] == api + "/items/3"
        invalid = client.post(api + "/items", json={"name": "", "price": "cheap"})
        assert invalid.status_code == 422
        assert invalid.json() == {
            "detail": ["name: a non-empty string is required", "price: a number is required"]
        }
        not_json = client.post(api + "/items", content=b"{", headers={"content-type": "application/json"})
        assert (not_json.status_code, not_json.json()) == (400, {"detail": "the body is not JSON"})
        big = {"name": "n" * 200_000, "price": 1}  # Larger than a pipe's buffer.
        assert client.post(api + "/items", content=json.dumps(big)).json()["name"] == big["name"]


def test_cgi_host_serves_the_page_and_not_the_source(cgi_host: str) -> None:
    page = httpx.get(cgi_host + "/", timeout=20)
    assert page.status_code == 200
    assert '<a href="/cgi-bin/app.cgi/items/1">' in page.text
    assert httpx.get(cgi_host + "/cgi-bin/notes_api.py", timeout=20).status_code == 403


def test_cgi_host_readme_curl_lines(cgi_host: str) -> None:
    responses = send_curl_lines(CGI_HOST, cgi_host)
    assert [r.status_code for r in responses] == [200, 200, 201, 200]
    assert responses[1].json()["q"] == "tools"
    assert responses[2].json() == {"id": 3, "name": "drill", "price": 99.5}


# ---- perl_cgi_bin: Perl CGI scripts on the built-in server ---------------------------------------

PERL = "perl_cgi_bin"


@pytest.fixture(scope="module")
def perl_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Process]]:
    find_binary("perl")
    command = serve_command(PERL)
    port = free_port()
    log = tmp_path_factory.mktemp("perl") / "bridge.log"
    server = launch(replace_option(command.argv, "--port", str(port)), command.cwd, log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: answers(url + "/"), server, "the server")
        yield url, server
    finally:
        assert server.stop() == 0, server.output()


def test_perl_readme_command_is_the_documented_one() -> None:
    command = serve_command(PERL)
    assert command.cwd == ROOT
    assert (
        command.line
        == ".venv/bin/python -m bridges serve examples/perl_cgi_bin/cgi-bin --mode cgi --port 8000"
    )
    for script in ("form.pl", "redirect.pl"):
        path = EXAMPLES / PERL / "cgi-bin" / script
        assert os.access(path, os.X_OK) and path.read_text().startswith("#!/usr/bin/perl\n")


def test_perl_form_reads_the_query_string(perl_site: tuple[str, Process]) -> None:
    url, _ = perl_site
    response = httpx.get(url + "/form.pl/extra/path?name=Ada+Lovelace&city=Z%C3%BCrich&empty=", timeout=20)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.text == (
        "method: GET\n"
        "script: /form.pl\n"
        "path info: /extra/path\n"
        "query name: Ada Lovelace\n"
        "query city: Zürich\n"
        "query empty: \n"
        "body bytes: 0\n"
    )


def test_perl_form_reads_the_post_body(perl_site: tuple[str, Process]) -> None:
    url, _ = perl_site
    fields = {"comment": "Hello there & more", "stars": "5", "note": "x" * 100_000}
    response = httpx.post(url + "/form.pl?page=2", data=fields, timeout=20)
    assert response.status_code == 200
    lines = response.text.splitlines()
    assert lines[:4] == ["method: POST", "script: /form.pl", "path info: ", "query page: 2"]
    assert lines[4:7] == ["form comment: Hello there & more", "form stars: 5", "form note: " + "x" * 100_000]
    assert lines[7] == f"body bytes: {len(response.request.content)}"


def test_perl_form_gets_a_content_length_for_a_chunked_upload(perl_site: tuple[str, Process]) -> None:
    url, _ = perl_site
    body = b"a=1&b=" + b"y" * 70_000
    response = httpx.post(
        url + "/form.pl",
        content=iter([body[:5], body[5:]]),
        headers={"content-type": "application/x-www-form-urlencoded"},
        timeout=20,
    )
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert response.text.splitlines()[-3:] == [
        "form a: 1",
        "form b: " + "y" * 70_000,
        f"body bytes: {len(body)}",
    ]


def test_perl_local_redirect_is_served_inside_the_server(perl_site: tuple[str, Process]) -> None:
    url, server = perl_site
    with httpx.Client(timeout=20, follow_redirects=False) as client:
        for method in ("GET", "POST"):
            response = client.request(
                method, url + "/redirect.pl", content=b"ignored=1" if method == "POST" else b""
            )
            assert response.status_code == 200, response.text
            assert "location" not in response.headers
            assert response.text == (
                "method: GET\n"  # A local redirect is a GET, without the body.
                "script: /form.pl\n"
                "path info: /after-redirect\n"
                "query from: redirect.pl\n"
                "body bytes: 0\n"
            )
    deadline = time.monotonic() + 5  # The access log line is written just after the response.
    log = server.output()
    while '"POST /redirect.pl HTTP/1.1" 200' not in log and time.monotonic() < deadline:
        time.sleep(0.05)
        log = server.output()
    assert '"GET /redirect.pl HTTP/1.1" 200' in log and '"POST /redirect.pl HTTP/1.1" 200' in log
    assert "after-redirect" not in log  # One request each in the access log: the client's.


def test_perl_client_redirect_reaches_the_client(perl_site: tuple[str, Process]) -> None:
    url, _ = perl_site
    response = httpx.get(url + "/redirect.pl?external=1", timeout=20)
    assert response.status_code == 302
    assert response.headers["location"] == "https://example.org/"


def test_perl_missing_script_and_parent_directory(perl_site: tuple[str, Process]) -> None:
    url, _ = perl_site
    assert httpx.get(url + "/nothing.pl", timeout=20).status_code == 404
    assert httpx.get(url + "/%2e%2e/README.md", timeout=20).status_code == 404


def test_perl_readme_curl_lines(perl_site: tuple[str, Process]) -> None:
    url, _ = perl_site
    responses = send_curl_lines(PERL, url)
    assert [r.status_code for r in responses] == [200, 200, 200, 302]
    assert "query name: Ada Lovelace\n" in responses[0].text
    assert "form comment: Hello there\n" in responses[1].text
    assert "path info: /after-redirect\n" in responses[2].text


def test_perl_server_exits_0_on_sigterm(tmp_path: Path) -> None:
    command = serve_command(PERL)
    port = free_port()
    server = launch(replace_option(command.argv, "--port", str(port)), command.cwd, tmp_path / "log")
    wait_until(lambda: answers(f"http://127.0.0.1:{port}/"), server, "the server")
    assert server.stop() == 0, server.output()  # One SIGTERM: a second one may come too late.
    assert "serving CGI programs" in server.output()


# ---- found while writing these examples ----------------------------------------------------------

SLOW_STARTUP_APP = """\
import asyncio


async def app(scope, receive, send):
    assert scope["type"] == "lifespan"
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            print("startup begins", flush=True)
            await asyncio.sleep(3)  # Connecting to a database, warming a cache...
            await send({"type": "lifespan.startup.complete"})
        else:
            print("shutdown ran", flush=True)
            await send({"type": "lifespan.shutdown.complete"})
            return
"""


def test_sigterm_during_startup_stops_the_server_cleanly(tmp_path: Path) -> None:
    # BUG: `Server.serve` binds (creating the --uds file), runs the lifespan startup, and only then
    # installs its SIGTERM/SIGINT handlers. A SIGTERM in between (a supervisor stopping a service
    # that is still starting) kills the process by the signal's default action: exit status -15
    # instead of 0, nothing logged, the socket file left behind, and the lifespan shutdown never
    # runs for what the startup had set up. uvicorn captures the signals before its startup and
    # exits cleanly once the startup ends.
    (tmp_path / "slow.py").write_text(SLOW_STARTUP_APP)
    socket_path = tmp_path / "slow.sock"
    argv = [sys.executable, "-m", "bridges", "serve", "slow:app", "--protocol", "fastcgi"]
    server = launch([*argv, "--uds", str(socket_path)], tmp_path, tmp_path / "log")
    wait_until(lambda: "startup begins" in server.output(), server, "the lifespan startup")
    assert socket_path.exists()
    code = server.stop()
    assert code == 0, f"exit status {code}:\n{server.output()}"
    assert not socket_path.exists()
