"""`bridge cgi` under real CGI hosts: lighttpd mod_cgi, Apache mod_cgi and mod_cgid, nginx + fcgiwrap.

Each host is started once per module with a private configuration (127.0.0.1, free ports, pid
file and logs in a temporary directory), serves plain HTTP and HTTPS, and is stopped by PID. The
CGI programs are the wrappers docs/cgi-host.md shows, written beside a shared probe app:

- `asgi.cgi`: the three-line script (`run_cgi`) with the venv's python as its shebang, ASGI probe;
- `wsgi.cgi`: the same with the WSGI probe, inserting its own directory into `sys.path`;
- `sh.cgi`: `#!/bin/sh` + `exec python -m bridges cgi probe:wsgi_app` (the host's cwd is the
  script's directory, which makes `probe` importable);
- `nph-asgi.cgi`: `asgi.cgi` under an nph- name (RFC 3875 section 5).

The probe answers the same way as ASGI and WSGI: JSON describing what the app saw, `/status/NNN`,
`/big` (10 MB), `/cookies` (two Set-Cookie headers), `/crash` (an exception). The hosts'
configurations are the ones in docs/cgi-host.md, with paths and ports filled in.

These servers are not Python packages: without them the tests skip locally, but fail when CI=true.
"""

from __future__ import annotations

import contextlib
import grp
import hashlib
import json
import os
import pwd
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import find_binary
from real_hosts import (
    APACHE_MODULES_DIR,
    free_port,
    lighttpd,
    nginx,
    stop,
    stop_group,
    wait_for_port,
    wait_for_socket,
)

BIG = 10 * 1024 * 1024
BLOCK = bytes(range(256)) * 256  # The probe's /big is this 64 KiB block, 160 times.
SCRIPTS = ("asgi.cgi", "wsgi.cgi", "sh.cgi")
HOSTS = ("lighttpd", "apache-cgi", "apache-cgid", "nginx-fcgiwrap")

# A self-signed certificate for 127.0.0.1 (EC P-256, valid 2000-2100), for the HTTPS listeners only.
CERTIFICATE = """\
-----BEGIN CERTIFICATE-----
MIIBWzCCAQKgAwIBAgIBATAKBggqhkjOPQQDAjAUMRIwEAYDVQQDDAkxMjcuMC4w
LjEwIBcNMDAwMTAxMDAwMDAwWhgPMjEwMDAxMDEwMDAwMDBaMBQxEjAQBgNVBAMM
CTEyNy4wLjAuMTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABCtjOfbJIBDDDhEE
axs/O+djqKCFUVbPG6NePswBtbhZlGW5lv6szGJI4UqSg3tYGQInASypTws7l+nV
WpMZJW+jQzBBMA8GA1UdEQQIMAaHBH8AAAEwDwYDVR0TAQH/BAUwAwEB/zAdBgNV
HQ4EFgQU4N5M3wFIRnNG4m58riUSg8UTMxwwCgYIKoZIzj0EAwIDRwAwRAIgMC4+
IjYrHcx8sAItr8Grd4Ti0pachbfMh0QYY6NKBzQCIGBeJM4bvKDU5Ve4O0vOmeMQ
+WNu5sfxIIfp1ATLYBTc
-----END CERTIFICATE-----
"""
PRIVATE_KEY = """\
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg9+Y6Q/AwDyh34rMj
AZsajVFmTHuoHZP6SqbPsxsf0vuhRANCAAQrYzn2ySAQww4RBGsbPzvnY6ighVFW
zxujXj7MAbW4WZRluZb+rMxiSOFKkoN7WBkCJwEsqU8LO5fp1VqTGSVv
-----END PRIVATE KEY-----
"""

PROBE = '''\
"""One app, as ASGI (`asgi_app`) and WSGI (`wsgi_app`): echoes what it saw as JSON."""

import hashlib
import json
import os
from http import HTTPStatus

BIG = 10 * 1024 * 1024
BLOCK = bytes(range(256)) * 256
SELECTED = {"host": "HTTP_HOST", "x-custom": "HTTP_X_CUSTOM", "cookie": "HTTP_COOKIE",
            "content-type": "CONTENT_TYPE", "authorization": "HTTP_AUTHORIZATION"}
CGI_VARIABLES = ("SCRIPT_NAME", "PATH_INFO", "REQUEST_URI", "HTTPS", "REQUEST_SCHEME", "CONTENT_LENGTH",
                 "CONTENT_TYPE", "SERVER_PROTOCOL", "SERVER_SOFTWARE", "SCRIPT_FILENAME", "PATH_TRANSLATED")


def answer(seen):
    """(status, headers, body chunks) for a request the app saw as `seen`."""
    route = seen["route"]
    if route.startswith("/status/"):
        status = int(route[len("/status/"):])
        return status, [("Content-Type", "text/plain")], [f"status {status}\\n".encode()]
    if route == "/big":
        headers = [("Content-Type", "application/octet-stream"), ("Content-Length", str(BIG))]
        return 200, headers, (BLOCK for _ in range(BIG // len(BLOCK)))
    if route == "/cookies":
        cookies = [("Set-Cookie", "a=1; Path=/"), ("Set-Cookie", "b=2; Path=/; HttpOnly")]
        return 200, [("Content-Type", "text/plain"), *cookies], [b"two cookies\\n"]
    if route == "/crash":
        raise RuntimeError("the probe crashed on purpose")
    seen["cgi"] = {name: os.environ[name] for name in CGI_VARIABLES if name in os.environ}
    seen["http_proxy_in_os_environ"] = "HTTP_PROXY" in os.environ
    seen["cwd"] = os.getcwd()
    return 200, [("Content-Type", "application/json")], [json.dumps(seen).encode()]


async def asgi_app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    digest, length = hashlib.sha256(), 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        digest.update(message["body"])
        length += len(message["body"])
        if not message.get("more_body"):
            break
    path, root_path = scope["path"], scope["root_path"]
    headers = {}
    for name, value in scope["headers"]:
        if name.decode() in SELECTED:
            headers[name.decode()] = value.decode("latin-1")
    seen = {
        "interface": "asgi",
        "method": scope["method"],
        "path": path,
        "root_path": root_path,
        "route": path[len(root_path):] if path.startswith(root_path) else path,
        "query": scope["query_string"].decode("latin-1"),
        "headers": headers,
        "http_proxy": any(name == b"proxy" for name, _ in scope["headers"]),
        "body_length": length,
        "body_sha256": digest.hexdigest(),
        "scheme": scope["scheme"],
    }
    status, response_headers, chunks = answer(seen)
    raw = [(name.encode(), value.encode("latin-1")) for name, value in response_headers]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    for chunk in chunks:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


def wsgi_app(environ, start_response):
    digest, length = hashlib.sha256(), 0
    while chunk := environ["wsgi.input"].read(65536):
        digest.update(chunk)
        length += len(chunk)
    text = lambda key: environ.get(key, "").encode("latin-1").decode("utf-8")  # noqa: E731
    seen = {
        "interface": "wsgi",
        "method": environ["REQUEST_METHOD"],
        "path": text("SCRIPT_NAME") + text("PATH_INFO"),
        "root_path": text("SCRIPT_NAME"),
        "route": text("PATH_INFO"),
        "query": environ.get("QUERY_STRING", ""),
        "headers": {name: environ[key] for name, key in SELECTED.items() if environ.get(key)},
        "http_proxy": "HTTP_PROXY" in environ,
        "body_length": length,
        "body_sha256": digest.hexdigest(),
        "scheme": environ["wsgi.url_scheme"],
    }
    status, response_headers, chunks = answer(seen)
    start_response(f"{status} {HTTPStatus(status).phrase}", response_headers)
    return chunks
'''


def three_line_script(python: str, import_app: str) -> str:
    return f"#!{python}\nfrom bridges import run_cgi\n{import_app}\nraise SystemExit(run_cgi(app))\n"


def shell_wrapper(python: str, target: str) -> str:
    return f"#!/bin/sh\nexec {python} -m bridges cgi {target}\n"


def write_site(site: Path) -> Path:
    """The cgi-bin directory: probe.py and the wrappers. Returns its path."""
    cgi_bin = site / "cgi-bin"
    cgi_bin.mkdir(parents=True)
    (cgi_bin / "probe.py").write_text(PROBE)
    python = sys.executable
    wrappers = {
        # The three-line script of docs/cgi-host.md: Python puts the script's directory first on
        # sys.path, which is what makes `probe` importable.
        "asgi.cgi": three_line_script(python, "from probe import asgi_app as app"),
        # The same, not relying on that (it is off under `python -P` or PYTHONSAFEPATH).
        "wsgi.cgi": f"#!{python}\nimport os\nimport sys\n\n"
        "sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))\n\n"
        "from bridges import run_cgi  # noqa: E402\nfrom probe import wsgi_app as app  # noqa: E402\n\n"
        "raise SystemExit(run_cgi(app))\n",
        # `bridge cgi`: the host runs a CGI program with its directory as the current directory.
        "sh.cgi": shell_wrapper(python, "probe:wsgi_app"),
    }
    wrappers["nph-asgi.cgi"] = wrappers["asgi.cgi"]
    # `bridge cgi` exits with status 2 and writes nothing when it cannot import its target.
    wrappers["broken.cgi"] = shell_wrapper(python, "no_such_module:app")
    for name, text in wrappers.items():
        (cgi_bin / name).write_text(text)
        (cgi_bin / name).chmod(0o755)
    return cgi_bin


def write_certificate(directory: Path) -> tuple[Path, Path]:
    (directory / "cert.pem").write_text(CERTIFICATE)
    (directory / "key.pem").write_text(PRIVATE_KEY)
    (directory / "key.pem").chmod(0o600)
    return directory / "cert.pem", directory / "key.pem"


# ---- host configurations (the ones docs/cgi-host.md shows) ---------------------------------------


def lighttpd_cgi(cgi_bin: Path, stderr_log: Path) -> str:
    """The page's lighttpd configuration (after its `server.modules` line)."""
    return textwrap.dedent(
        f"""\
        alias.url += ( "/cgi-bin/" => "{cgi_bin}/" )
        $HTTP["url"] =~ "^/cgi-bin/" {{
            cgi.assign = ( ".cgi" => "" )
        }}
        server.breakagelog = "{stderr_log}"
        """
    )


def nginx_cgi(cgi_bin: Path, socket_path: Path) -> str:
    """The body of the page's nginx `server` block."""
    return textwrap.dedent(
        f"""\
        client_max_body_size 64m;
        root {cgi_bin.parent};
        location /cgi-bin/ {{
            fastcgi_split_path_info ^(/cgi-bin/[^/]+\\.cgi)(/.*)?$;
            include fastcgi_params;
            fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
            fastcgi_param PATH_INFO $fastcgi_path_info;
            fastcgi_pass unix:{socket_path};
        }}
        """
    )


def apache_cgi_directives(cgi_bin: Path) -> str:
    """The page's Apache configuration, after its LoadModule lines."""
    return textwrap.dedent(
        f"""\
        ScriptAlias /cgi-bin/ "{cgi_bin}/"
        <Directory "{cgi_bin}">
            Require all granted
            CGIPassAuth On
        </Directory>
        """
    )


def lighttpd_directives(cgi_bin: Path, workdir: Path, tls_port: int) -> str:
    cert, key = write_certificate(workdir)
    return lighttpd_cgi(cgi_bin, workdir / "cgi-stderr.log") + textwrap.dedent(
        f"""\
        $SERVER["socket"] == "127.0.0.1:{tls_port}" {{
            ssl.engine = "enable"
            ssl.pemfile = "{cert}"
            ssl.privkey = "{key}"
        }}
        """
    )


def nginx_server(cgi_bin: Path, socket_path: Path, workdir: Path, tls_port: int) -> str:
    cert, key = write_certificate(workdir)
    tls = f"listen 127.0.0.1:{tls_port} ssl;\nssl_certificate {cert};\nssl_certificate_key {key};\n"
    return textwrap.indent(tls + nginx_cgi(cgi_bin, socket_path), "        ")


def apache_directives(cgi_bin: Path, module: str, workdir: Path, tls_port: int) -> str:
    mpm = "prefork" if module == "cgi" else "event"  # mod_cgid for threaded MPMs, mod_cgi for prefork.
    cert, key = write_certificate(workdir)
    loads = "".join(
        f"LoadModule {name}_module {APACHE_MODULES_DIR / f'mod_{name}.so'}\n"
        for name in (f"mpm_{mpm}", "authz_core", "alias", module, "socache_shmcb", "ssl")
    )
    socket_line = f'ScriptSock "{workdir / "cgid.sock"}"\n' if module == "cgid" else ""
    return (
        loads
        + socket_line
        + apache_cgi_directives(cgi_bin)
        + textwrap.dedent(
            f"""\
            Listen 127.0.0.1:{tls_port} https
            <VirtualHost 127.0.0.1:{tls_port}>
                SSLEngine on
                SSLCertificateFile "{cert}"
                SSLCertificateKeyFile "{key}"
            </VirtualHost>
            """
        )
    )


def unprivileged_prefix(cgi_bin: Path) -> list[str]:
    """How to start Apache when we are root, so that its CGI programs can run this venv's python.

    Apache refuses to run CGI programs as root and switches to `User`, who usually cannot reach a
    python under /root (pyenv) or a pytest tmp_path (mode 0700). So Apache starts as `nobody`
    itself, keeping CAP_DAC_OVERRIDE as an ambient capability its children inherit.
    """
    nobody = pwd.getpwnam("nobody")
    group = grp.getgrgid(nobody.pw_gid).gr_name
    prefix = [
        find_binary("setpriv"),
        f"--reuid={nobody.pw_uid}",
        f"--regid={nobody.pw_gid}",
        "--clear-groups",
        "--inh-caps=+dac_override",
        "--ambient-caps=+dac_override",
    ]
    check = subprocess.run(
        [*prefix, sys.executable, "-c", "import bridges, probe"], cwd=cgi_bin, capture_output=True, timeout=20
    )
    if check.returncode != 0:
        message = (
            f"cannot run Apache's CGI programs as nobody/{group} with our python: {check.stderr[-500:]!r}"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return prefix


@contextlib.contextmanager
def apache_cgi(workdir: Path, cgi_bin: Path, module: str) -> Iterator[tuple[int, int]]:
    """Apache in one process (`-X`), mod_cgi (prefork) or mod_cgid (event); yields (http, https) ports."""
    binary = find_binary("apache2", "httpd")
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "htdocs").mkdir(exist_ok=True)
    prefix = unprivileged_prefix(cgi_bin) if os.geteuid() == 0 else []
    port, tls_port = free_port(), free_port()
    conf = workdir / "httpd.conf"
    conf.write_text(
        f'ServerRoot "{workdir}"\n'
        f'DefaultRuntimeDir "{workdir}"\n'
        f'PidFile "{workdir / "httpd.pid"}"\n'
        f'ErrorLog "{workdir / "error.log"}"\n'
        "LogLevel warn\n"
        f"Listen 127.0.0.1:{port}\n"
        "ServerName 127.0.0.1\n"
        "Timeout 30\n"
        f'DocumentRoot "{workdir / "htdocs"}"\n' + apache_directives(cgi_bin, module, workdir, tls_port)
    )
    logs = (workdir / "error.log", workdir / "stderr.log")
    with (workdir / "stderr.log").open("wb") as out:
        process = subprocess.Popen(
            [*prefix, binary, "-X", "-f", str(conf)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for_port(port, process, *logs)
        wait_for_port(tls_port, process, *logs)
        yield port, tls_port
    finally:
        stop_group(process)


@contextlib.contextmanager
def fcgiwrap_with_stderr(workdir: Path) -> Iterator[Path]:
    """fcgiwrap on a unix socket, with `-f`: CGI stderr goes to nginx's error log."""
    socket_path = workdir / "fcgiwrap.sock"
    process = subprocess.Popen(
        [find_binary("fcgiwrap"), "-f", "-c", "4", "-s", f"unix:{socket_path}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for_socket(socket_path, process)
        yield socket_path
    finally:
        stop(process)
        with contextlib.suppress(FileNotFoundError):
            socket_path.unlink()


@dataclass
class Host:
    name: str
    url: str
    tls_url: str
    cgi_bin: Path
    stderr_log: Path  # Where the CGI programs' stderr lands.
    logs: list[Path]

    def request(
        self, method: str, script: str, rest: str = "", tls: bool = False, **kwargs: Any
    ) -> httpx.Response:
        with httpx.Client(timeout=30, verify=False) as client:
            return client.request(
                method, f"{self.tls_url if tls else self.url}/cgi-bin/{script}{rest}", **kwargs
            )

    def seen(self, method: str, script: str, rest: str = "", **kwargs: Any) -> dict[str, Any]:
        response = self.request(method, script, rest, **kwargs)
        assert response.status_code == 200, self.explain(response)
        assert response.headers["content-type"] == "application/json"
        return json.loads(response.content)

    def raw_get(self, target: str) -> tuple[int, bytes]:
        """GET `target` exactly as written (HTTP clients normalise dot segments and slashes)."""
        host, port = self.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=20) as sock:
            sock.sendall(f"GET {target} HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n".encode())
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split()[1]), body

    def explain(self, response: httpx.Response) -> str:
        logs = "\n".join(
            f"--- {log}\n{log.read_text(errors='replace')[-3000:]}" for log in self.logs if log.exists()
        )
        return f"{self.name}: {response.status_code} {response.content[:500]!r}\n{logs}"


@pytest.fixture(scope="module", params=HOSTS)
def host(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    name: str = request.param
    base = tmp_path_factory.mktemp(name)
    cgi_bin = write_site(base / "site")
    workdir = base / "server"
    workdir.mkdir()
    logs = [workdir / "error.log", workdir / "stderr.log"]
    tls_port = free_port()

    def started(port: int, tls: int, stderr_log: Path) -> Host:
        return Host(name, f"http://127.0.0.1:{port}", f"https://127.0.0.1:{tls}", cgi_bin, stderr_log, logs)

    if name == "lighttpd":
        directives = lighttpd_directives(cgi_bin, workdir, tls_port)
        with lighttpd(workdir, directives, modules=("mod_alias", "mod_cgi", "mod_openssl")) as port:
            yield started(port, tls_port, workdir / "cgi-stderr.log")
    elif name.startswith("apache"):
        with apache_cgi(workdir, cgi_bin, name.partition("-")[2]) as (port, tls_port):
            yield started(port, tls_port, workdir / "error.log")
    else:
        with (
            fcgiwrap_with_stderr(base) as socket_path,
            nginx(workdir, [nginx_server(cgi_bin, socket_path, workdir, tls_port)]) as ports,
        ):
            yield started(ports[0], tls_port, workdir / "error.log")


def expected_interface(script: str) -> str:
    return "asgi" if script.endswith("asgi.cgi") else "wsgi"


@pytest.mark.timeout(30)
@pytest.mark.parametrize("script", SCRIPTS)
def test_post_request_as_the_app_sees_it(host: Host, script: str) -> None:
    body = b'{"hello": "world"}'
    seen = host.seen(
        "POST",
        script,
        "/items/1",
        params={"x": "1", "y": "a b"},
        content=body,
        headers={"X-Custom": "custom value", "Cookie": "k=v; k2=v2", "Content-Type": "application/json"},
    )
    root_path = f"/cgi-bin/{script}"
    assert seen["interface"] == expected_interface(script)
    assert seen["method"] == "POST"
    assert seen["root_path"] == root_path
    assert seen["path"] == root_path + "/items/1"
    assert seen["route"] == "/items/1"
    assert seen["query"] == "x=1&y=a+b"
    assert seen["headers"] == {
        "host": host.url.removeprefix("http://"),
        "x-custom": "custom value",
        "cookie": "k=v; k2=v2",
        "content-type": "application/json",
    }
    assert seen["body_length"] == len(body)
    assert seen["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert seen["scheme"] == "http"
    assert seen["cwd"] == str(host.cgi_bin)  # What makes `bridge cgi probe:app` work in sh.cgi.


@pytest.mark.timeout(30)
@pytest.mark.parametrize("script", SCRIPTS)
def test_https_is_seen_as_https(host: Host, script: str) -> None:
    seen = host.seen("GET", script, "/secure", tls=True)
    assert seen["scheme"] == "https", seen["cgi"]
    assert seen["cgi"].get("HTTPS") == "on"
    assert seen["headers"]["host"] == host.tls_url.removeprefix("https://")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("script", SCRIPTS)
def test_get_at_the_script_itself(host: Host, script: str) -> None:
    """No PATH_INFO: the app is asked for its own root (root_path is still the script's URL)."""
    seen = host.seen("GET", script)
    assert (seen["method"], seen["path"], seen["route"]) == ("GET", f"/cgi-bin/{script}", "")
    assert seen["root_path"] == f"/cgi-bin/{script}"
    assert seen["query"] == "" and seen["body_length"] == 0 and "content-type" not in seen["headers"]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("script", SCRIPTS)
def test_unicode_path(host: Host, script: str) -> None:
    seen = host.seen("GET", script, "/caf%C3%A9/x", params={"q": "é"})
    assert seen["path"] == f"/cgi-bin/{script}/café/x"
    assert seen["root_path"] == f"/cgi-bin/{script}"
    assert seen["route"] == "/café/x"
    assert seen["query"] == "q=%C3%A9"


@pytest.mark.timeout(30)
@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize(
    "target", ["/cgi-bin/{script}//x", "/cgi-bin/./{script}/x", "/cgi-bin/{script}/a/../x"]
)
def test_unnormalised_url_routes_like_the_host_resolved_it(host: Host, script: str, target: str) -> None:
    """The host resolves `//`, `.` and `..` into SCRIPT_NAME + PATH_INFO; the app must route on that."""
    status, body = host.raw_get(target.format(script=script))
    assert status == 200, body[:300]
    seen = json.loads(body)
    assert (seen["cgi"]["SCRIPT_NAME"], seen["cgi"]["PATH_INFO"]) == (f"/cgi-bin/{script}", "/x")
    assert (seen["root_path"], seen["route"]) == (f"/cgi-bin/{script}", "/x")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("script", SCRIPTS)
def test_10mb_upload(host: Host, script: str) -> None:
    body = os.urandom(BIG)
    seen = host.seen(
        "PUT", script, "/upload", content=body, headers={"Content-Type": "application/octet-stream"}
    )
    assert seen["body_length"] == BIG
    assert seen["body_sha256"] == hashlib.sha256(body).hexdigest()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("script", SCRIPTS)
def test_chunked_upload(host: Host, script: str) -> None:
    """No Content-Length from the client: Apache then sends no CONTENT_LENGTH (the body ends at EOF)."""
    parts = [os.urandom(100_000) for _ in range(5)]
    seen = host.seen("POST", script, "/chunked", content=iter(parts))
    assert seen["body_length"] == 500_000
    assert seen["body_sha256"] == hashlib.sha256(b"".join(parts)).hexdigest()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("script", SCRIPTS)
def test_10mb_download(host: Host, script: str) -> None:
    response = host.request("GET", script, "/big")
    assert response.status_code == 200, host.explain(response)
    assert len(response.content) == BIG
    assert response.content == BLOCK * (BIG // len(BLOCK))


@pytest.mark.timeout(30)
@pytest.mark.parametrize("script", SCRIPTS)
def test_status_codes(host: Host, script: str) -> None:
    for status in (201, 404, 500):
        response = host.request("GET", script, f"/status/{status}")
        assert response.status_code == status, host.explain(response)
        assert response.content == f"status {status}\n".encode(), host.explain(response)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("script", SCRIPTS)
def test_reason_phrase_of_a_less_common_status(host: Host, script: str) -> None:
    """Apache and nginx pass the reason phrase of the `Status:` line on to the client."""
    response = host.request("GET", script, "/status/422")
    assert response.status_code == 422
    # RFC 9110 section 15.5.21 renamed it from RFC 4918's "Unprocessable Entity".
    assert response.reason_phrase in ("Unprocessable Content", "Unprocessable Entity")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("script", SCRIPTS)
def test_two_set_cookie_headers_arrive_separately(host: Host, script: str) -> None:
    response = host.request("GET", script, "/cookies")
    assert response.status_code == 200, host.explain(response)
    cookies = [value for name, value in response.headers.raw if name.lower() == b"set-cookie"]
    assert cookies == [b"a=1; Path=/", b"b=2; Path=/; HttpOnly"]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("script", SCRIPTS)
def test_proxy_header_never_becomes_http_proxy(host: Host, script: str) -> None:
    """httpoxy (CVE-2016-5385): a `Proxy:` request header must not reach the app as HTTP_PROXY."""
    seen = host.seen("GET", script, headers={"Proxy": "http://attacker.example:3128"})
    assert seen["http_proxy"] is False  # Neither in the environ nor in the scope's headers.


@pytest.mark.timeout(30)
@pytest.mark.parametrize("script", SCRIPTS)
def test_proxy_header_is_not_left_in_os_environ(host: Host, script: str) -> None:
    """Nor in the process environment, where HTTP clients and child processes look for a proxy.

    Apache (2.4.25+) and lighttpd (1.4.41+) never set it; nginx passes every request header to
    fcgiwrap as HTTP_*, and fcgiwrap puts them all in the CGI program's environment.
    """
    seen = host.seen("GET", script, headers={"Proxy": "http://attacker.example:3128"})
    assert seen["http_proxy_in_os_environ"] is False


@pytest.mark.timeout(30)
@pytest.mark.parametrize("script", SCRIPTS)
def test_authorization_header_reaches_the_app(host: Host, script: str) -> None:
    """Apache withholds it from CGI programs unless `CGIPassAuth On`; lighttpd and nginx pass it."""
    seen = host.seen("GET", script, "/auth", headers={"Authorization": "Bearer token-123"})
    assert seen["headers"]["authorization"] == "Bearer token-123"


@pytest.mark.timeout(30)
def test_nph_script_writes_the_status_line(host: Host) -> None:
    response = host.request("GET", "nph-asgi.cgi", "/status/404")
    assert response.content == b"status 404\n"
    if host.name == "nginx-fcgiwrap":
        # FastCGI has no NPH: nginx reads the output as CGI headers, skips the status line it
        # cannot parse, and answers 200. Do not give scripts behind fcgiwrap an nph- name.
        assert response.status_code == 200
        return
    assert response.status_code == 404
    if host.name.startswith("apache"):
        assert "date" not in response.headers  # Apache sends the output as it is, its head included.


@pytest.mark.timeout(30)
@pytest.mark.parametrize("script", ["asgi.cgi", "sh.cgi"])
def test_app_crash_is_a_500_with_the_traceback_in_the_host_log(host: Host, script: str) -> None:
    response = host.request("GET", script, "/crash")
    assert response.status_code == 500
    assert response.content == b"Internal Server Error\n"
    deadline = time.monotonic() + 5
    while "the probe crashed on purpose" not in (
        host.stderr_log.read_text() if host.stderr_log.exists() else ""
    ):
        assert time.monotonic() < deadline, f"no traceback in {host.stderr_log}"
        time.sleep(0.05)


@pytest.mark.timeout(30)
def test_unimportable_target_is_a_host_error_with_one_line_in_the_log(host: Host) -> None:
    """`bridge cgi` writes nothing and exits 2: the host answers with its own error page."""
    response = host.request("GET", "broken.cgi")
    assert response.status_code == (502 if host.name == "nginx-fcgiwrap" else 500)
    message = "bridge cgi: error: could not import module 'no_such_module'"
    deadline = time.monotonic() + 5
    while message not in (host.stderr_log.read_text() if host.stderr_log.exists() else ""):
        assert time.monotonic() < deadline, f"no {message!r} in {host.stderr_log}"
        time.sleep(0.05)


@pytest.mark.timeout(10)
def test_the_page_shows_the_configurations_tested() -> None:
    """docs/cgi-host.md shows these configurations, with /srv/myapp for the temporary paths."""
    page = (Path(__file__).parent.parent / "docs" / "cgi-host.md").read_text(encoding="utf-8")
    lines = {line.strip() for line in page.splitlines()}
    cgi_bin = Path("/srv/myapp/cgi-bin")
    configs = [
        lighttpd_cgi(cgi_bin, Path("/var/log/lighttpd/cgi-stderr.log")),
        apache_cgi_directives(cgi_bin),
        nginx_cgi(cgi_bin, Path("/run/fcgiwrap.socket")),
    ]
    for config in configs:
        for line in config.splitlines():
            assert line.strip() in lines, f"{line.strip()!r} is not in docs/cgi-host.md"
    python = "/srv/myapp/.venv/bin/python"
    assert three_line_script(python, "from myapp import app") in page
    assert shell_wrapper(python, "myapp:app") in page
    assert "fcgiwrap -f -s unix:/run/fcgiwrap.socket" in page
