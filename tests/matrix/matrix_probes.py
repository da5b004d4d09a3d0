"""The four probes (one per app kind) and the small modules that mount them on each host.

Every probe answers the same routes the same way (the route is the path below the mount point):

- anything else: 200 `application/json` describing the request as the app saw it: `interface`,
  `method`, `path` (the whole decoded path), `root_path` (ASGI `root_path`, or SCRIPT_NAME),
  `route` (`path` below `root_path`), `query` (raw), `headers` (host, x-probe, content-type,
  cookie), `body_length` and `body_sha256`;
- `/status/NNN`: status NNN, body `status NNN\\n`;
- `/cookies`: two separate `Set-Cookie` headers (`a=1; Path=/`, `b=2; Path=/; HttpOnly`);
- `/stream?gate=TOKEN`: 5 MiB of `BLOCK` (64 KiB) in 80 writes, no Content-Length. After the
  first block the app waits (up to GATE_TIMEOUT) for the file GATE_DIR/TOKEN, which the client
  creates once it has received bytes. If the gate never opens (the host held the first block
  back), the remaining blocks are `!` * 64 KiB: the client sees "buffered" in the body itself,
  with no timing measured;
- `/ws` (ASGI probe, WebSocket scope only): accept, echo text messages, close.

The sources are templates: `write_apps` fills in GATE_DIR and the php-fpm socket.
"""

from __future__ import annotations

from pathlib import Path

BLOCK = bytes(range(256)) * 256  # 64 KiB
BLOCKS = 80  # 5 MiB
STREAM_SIZE = len(BLOCK) * BLOCKS
TIMED_OUT_BLOCK = b"!" * len(BLOCK)
GATE_TIMEOUT = 10  # seconds the app waits for the client to have seen the first block (polls every 20 ms)

ASGI_PROBE = r'''
"""The ASGI probe."""

import asyncio
import hashlib
import json
import os

GATE_DIR = @GATE_DIR@
BLOCK = bytes(range(256)) * 256
BLOCKS = 80
SELECTED = ("host", "x-probe", "content-type", "cookie")


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    root_path = scope.get("root_path", "")
    path = scope["path"]
    route = path[len(root_path):] if path.startswith(root_path) else path
    if scope["type"] == "websocket":
        message = await receive()
        if route != "/ws":
            await send({"type": "websocket.close", "code": 1008})
            return
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": "echo:" + (message.get("text") or "")})
    query = scope["query_string"].decode("latin-1")
    if route.startswith("/status/"):
        status = int(route[len("/status/"):])
        await start(send, status, [(b"content-type", b"text/plain")])
        await send({"type": "http.response.body", "body": b"status %d\n" % status})
        return
    if route == "/cookies":
        cookies = [(b"set-cookie", b"a=1; Path=/"), (b"set-cookie", b"b=2; Path=/; HttpOnly")]
        await start(send, 200, [(b"content-type", b"text/plain"), *cookies])
        await send({"type": "http.response.body", "body": b"two cookies\n"})
        return
    if route == "/stream":
        gate = os.path.join(GATE_DIR, query.partition("gate=")[2])
        await start(send, 200, [(b"content-type", b"application/octet-stream")])
        await send({"type": "http.response.body", "body": BLOCK, "more_body": True})
        opened = False
        for _ in range(@GATE_POLLS@):
            if os.path.exists(gate):
                opened = True
                break
            await asyncio.sleep(0.02)
        rest = BLOCK if opened else b"!" * len(BLOCK)
        for _ in range(BLOCKS - 1):
            await send({"type": "http.response.body", "body": rest, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    digest, length = hashlib.sha256(), 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return
        digest.update(message.get("body", b""))
        length += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    headers = {}
    for name, value in scope["headers"]:
        key = name.decode("latin-1").lower()
        if key in SELECTED:
            headers[key] = value.decode("latin-1")
    seen = {
        "interface": "asgi",
        "method": scope["method"],
        "path": path,
        "root_path": root_path,
        "route": route,
        "query": query,
        "headers": headers,
        "body_length": length,
        "body_sha256": digest.hexdigest(),
    }
    await start(send, 200, [(b"content-type", b"application/json")])
    await send({"type": "http.response.body", "body": json.dumps(seen).encode()})


async def start(send, status, headers):
    await send({"type": "http.response.start", "status": status, "headers": headers})
'''

WSGI_PROBE = r'''
"""The WSGI probe (PEP 3333: without CONTENT_LENGTH it reads a body only if wsgi.input_terminated)."""

import hashlib
import json
import os
import time
from http import HTTPStatus

GATE_DIR = @GATE_DIR@
BLOCK = bytes(range(256)) * 256
BLOCKS = 80
SELECTED = {"host": "HTTP_HOST", "x-probe": "HTTP_X_PROBE", "content-type": "CONTENT_TYPE",
            "cookie": "HTTP_COOKIE"}


def text(environ, key):
    return environ.get(key, "").encode("latin-1").decode("utf-8", "replace")


def stream(gate):
    yield BLOCK
    opened = False
    for _ in range(@GATE_POLLS@):
        if os.path.exists(gate):
            opened = True
            break
        time.sleep(0.02)
    rest = BLOCK if opened else b"!" * len(BLOCK)
    for _ in range(BLOCKS - 1):
        yield rest


def app(environ, start_response):
    root_path, route = text(environ, "SCRIPT_NAME"), text(environ, "PATH_INFO")
    query = environ.get("QUERY_STRING", "")
    if route.startswith("/status/"):
        status = int(route[len("/status/"):])
        start_response(f"{status} {HTTPStatus(status).phrase}", [("Content-Type", "text/plain")])
        return [b"status %d\n" % status]
    if route == "/cookies":
        cookies = [("Set-Cookie", "a=1; Path=/"), ("Set-Cookie", "b=2; Path=/; HttpOnly")]
        start_response("200 OK", [("Content-Type", "text/plain"), *cookies])
        return [b"two cookies\n"]
    if route == "/stream":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return stream(os.path.join(GATE_DIR, query.partition("gate=")[2]))
    digest, length = hashlib.sha256(), 0
    stream_in = environ["wsgi.input"]
    if environ.get("CONTENT_LENGTH"):
        left = int(environ["CONTENT_LENGTH"])
        while left > 0:
            chunk = stream_in.read(min(left, 65536))
            if not chunk:
                break
            digest.update(chunk)
            length += len(chunk)
            left -= len(chunk)
    elif environ.get("wsgi.input_terminated"):
        while chunk := stream_in.read(65536):
            digest.update(chunk)
            length += len(chunk)
    seen = {
        "interface": "wsgi",
        "method": environ["REQUEST_METHOD"],
        "path": root_path + route,
        "root_path": root_path,
        "route": route,
        "query": query,
        "headers": {name: text(environ, key) for name, key in SELECTED.items() if key in environ},
        "body_length": length,
        "body_sha256": digest.hexdigest(),
    }
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(seen).encode()]
'''

# RFC 3875: the body is CONTENT_LENGTH bytes of stdin (none without it); SCRIPT_NAME + PATH_INFO.
CGI_PROBE = r"""#!@PERL@
# The CGI probe (Perl, core modules only).
use strict;
use warnings;
use Digest::SHA;
use Encode qw(decode);
use JSON::PP;
use Time::HiRes qw(sleep);

my $GATE_DIR = @GATE_DIR@;
my $BLOCK = join('', map { chr } 0 .. 255) x 256;
my $BLOCKS = 80;
binmode STDIN;
binmode STDOUT;
$| = 1;

sub text { my ($name) = @_; return decode('UTF-8', $ENV{$name} // ''); }

my ($root_path, $route, $query) = (text('SCRIPT_NAME'), text('PATH_INFO'), $ENV{QUERY_STRING} // '');

if ($route =~ m{^/status/(\d+)$}) {
    print "Status: $1\r\nContent-Type: text/plain\r\n\r\nstatus $1\n";
    exit 0;
}
if ($route eq '/cookies') {
    print "Content-Type: text/plain\r\nSet-Cookie: a=1; Path=/\r\nSet-Cookie: b=2; Path=/; HttpOnly\r\n\r\n";
    print "two cookies\n";
    exit 0;
}
if ($route eq '/stream') {
    my ($token) = $query =~ /gate=([\w-]+)/;
    print "Content-Type: application/octet-stream\r\n\r\n", $BLOCK;
    my $opened = 0;
    for (1 .. @GATE_POLLS@) {
        if (-e "$GATE_DIR/$token") { $opened = 1; last; }
        sleep(0.02);
    }
    my $rest = $opened ? $BLOCK : ('!' x length $BLOCK);
    print $rest for 2 .. $BLOCKS;
    exit 0;
}
my ($sha, $length) = (Digest::SHA->new(256), 0);
if (defined $ENV{CONTENT_LENGTH} && $ENV{CONTENT_LENGTH} ne '') {
    my $left = $ENV{CONTENT_LENGTH};
    while ($left > 0) {
        my $got = read(STDIN, my $chunk, $left > 65536 ? 65536 : $left);
        last unless $got;
        $sha->add($chunk);
        $length += $got;
        $left -= $got;
    }
}
my %selected = (host => 'HTTP_HOST', 'x-probe' => 'HTTP_X_PROBE', 'content-type' => 'CONTENT_TYPE',
                cookie => 'HTTP_COOKIE');
my %headers = map { ($_ => text($selected{$_})) } grep { exists $ENV{$selected{$_}} } keys %selected;
my $seen = {
    interface => 'cgi', method => $ENV{REQUEST_METHOD}, path => $root_path . $route,
    root_path => $root_path, route => $route, query => $query, headers => \%headers,
    body_length => $length, body_sha256 => $sha->hexdigest,
};
print "Content-Type: application/json\r\n\r\n", JSON::PP->new->utf8->canonical->encode($seen);
"""

PHP_PROBE = r"""<?php
// The FastCGI probe, run by php-fpm. SCRIPT_NAME is the mount point (/probe.php), PATH_INFO the route.
$GATE_DIR = @GATE_DIR@;
$BLOCK = str_repeat(implode('', array_map('chr', range(0, 255))), 256);
$BLOCKS = 80;

$root_path = $_SERVER['SCRIPT_NAME'] ?? '';
$route = $_SERVER['PATH_INFO'] ?? '';
$query = $_SERVER['QUERY_STRING'] ?? '';

if (preg_match('#^/status/(\d+)$#', $route, $m)) {
    http_response_code((int) $m[1]);
    header('Content-Type: text/plain');
    echo "status {$m[1]}\n";
    exit;
}
if ($route === '/cookies') {
    header('Content-Type: text/plain');
    header('Set-Cookie: a=1; Path=/', false);
    header('Set-Cookie: b=2; Path=/; HttpOnly', false);
    echo "two cookies\n";
    exit;
}
if ($route === '/stream') {
    parse_str($query, $args);
    $gate = $GATE_DIR . '/' . basename($args['gate'] ?? 'none');
    header('Content-Type: application/octet-stream');
    while (ob_get_level()) {
        ob_end_flush();
    }
    echo $BLOCK;
    flush();
    $opened = false;
    for ($i = 0; $i < @GATE_POLLS@; $i++) {
        clearstatcache();
        if (file_exists($gate)) {
            $opened = true;
            break;
        }
        usleep(20000);
    }
    $rest = $opened ? $BLOCK : str_repeat('!', strlen($BLOCK));
    for ($i = 1; $i < $BLOCKS; $i++) {
        echo $rest;
        flush();
    }
    exit;
}
$body = file_get_contents('php://input');
$selected = ['host' => 'HTTP_HOST', 'x-probe' => 'HTTP_X_PROBE', 'content-type' => 'CONTENT_TYPE',
             'cookie' => 'HTTP_COOKIE'];
$headers = new stdClass();
foreach ($selected as $name => $key) {
    if (isset($_SERVER[$key])) {
        $headers->$name = $_SERVER[$key];
    }
}
header('Content-Type: application/json');
echo json_encode([
    'interface' => 'php', 'method' => $_SERVER['REQUEST_METHOD'], 'path' => $root_path . $route,
    'root_path' => $root_path, 'route' => $route, 'query' => $query, 'headers' => $headers,
    'body_length' => strlen($body), 'body_sha256' => hash('sha256', $body),
], JSON_UNESCAPED_SLASHES | JSON_INVALID_UTF8_SUBSTITUTE);
"""

# wsgiref has no command line that serves an app of yours: this is the smallest one.
WSGIREF_HOST = r'''
"""python wsgiref_host.py MODULE:ATTR PORT: serve a WSGI app with wsgiref.simple_server."""

import importlib
import sys
from wsgiref.simple_server import make_server

module, _, attr = sys.argv[1].partition(":")
app = getattr(importlib.import_module(module), attr)
with make_server("127.0.0.1", int(sys.argv[2]), app) as server:
    server.serve_forever()
'''

# The adapter modules: each mounts one probe on a host of another interface (public API only).
ADAPTERS = {
    "wsgi_on_asgi.py": "from bridges import WSGIToASGI\nfrom wsgi_probe import app as wsgi_app\n\n"
    "app = WSGIToASGI(wsgi_app)\n",
    "cgi_on_asgi.py": "from bridges import CGIToASGI\n\napp = CGIToASGI(@CGI_SCRIPT@)\n",
    "fastcgi_on_asgi.py": "from bridges import FastCGIToASGI\n\n"
    "app = FastCGIToASGI(@PHP_FPM@, document_root=@DOCROOT@)\n",
    "asgi_on_wsgi.py": "from asgi_probe import app as asgi_app\nfrom bridges import ASGIToWSGI\n\n"
    "app = ASGIToWSGI(asgi_app)\n",
    "cgi_on_wsgi.py": "from bridges import CGIToWSGI\n\napp = CGIToWSGI(@CGI_SCRIPT@)\n",
    "fastcgi_on_wsgi.py": "from bridges import ASGIToWSGI, FastCGIToASGI\n\n"
    "app = ASGIToWSGI(FastCGIToASGI(@PHP_FPM@, document_root=@DOCROOT@))\n",
}


def fill(template: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        template = template.replace(f"@{name}@", value)
    return template


def write_apps(apps: Path, gate_dir: Path, php_fpm_socket: Path, perl: str) -> dict[str, Path]:
    """Write the probes and adapter modules into `apps`; returns the paths the hosts need."""
    apps.mkdir(parents=True, exist_ok=True)
    cgi_script = apps / "cgi" / "probe.pl"
    docroot = apps / "php"
    cgi_script.parent.mkdir(exist_ok=True)
    docroot.mkdir(exist_ok=True)
    values = {
        "GATE_DIR": repr(str(gate_dir)),
        "CGI_SCRIPT": repr(str(cgi_script)),
        "PHP_FPM": repr(f"unix:{php_fpm_socket}"),
        "DOCROOT": repr(str(docroot)),
        "GATE_POLLS": str(GATE_TIMEOUT * 50),
    }
    (apps / "asgi_probe.py").write_text(fill(ASGI_PROBE, values))
    (apps / "wsgi_probe.py").write_text(fill(WSGI_PROBE, values))
    quoted = {"GATE_DIR": "'" + str(gate_dir) + "'", "GATE_POLLS": values["GATE_POLLS"], "PERL": perl}
    perl_source = fill(CGI_PROBE, quoted)
    cgi_script.write_text(perl_source)
    cgi_script.chmod(0o755)
    (docroot / "probe.php").write_text(fill(PHP_PROBE, quoted))
    (apps / "wsgiref_host.py").write_text(WSGIREF_HOST)
    for name, source in ADAPTERS.items():
        (apps / name).write_text(fill(source, values))
    return {"apps": apps, "cgi_script": cgi_script, "docroot": docroot}
