"""Translate requests between an ASGI HTTP scope, a PEP 3333 environ and CGI/1.1 meta-variables.

Pure functions only: dicts in, dicts out, no I/O. Every adapter and host in bridges builds its
environ, scope or CGI environment here, so each rule below is written (and tested) once:

- `SCRIPT_NAME` is the mount point (`root_path`); `PATH_INFO` is `path` minus `root_path`, cut only
  at a segment boundary (root_path `/app` with path `/apple` keeps `/apple`).
- Paths in an environ are "WSGI strings" (PEP 3333, "Unicode issues"): the UTF-8 bytes of the
  decoded path, each byte as one latin-1 character. `raw_path` travels as `REQUEST_URI`/`RAW_URI`.
- `SERVER_PORT` and `REMOTE_PORT` are `str`; the scope's `server`/`client` tuples hold `int` ports.
- `Content-Type`/`Content-Length` become `CONTENT_TYPE`/`CONTENT_LENGTH`, never `HTTP_CONTENT_*`.
  Repeated `Cookie` headers are joined with `"; "` (RFC 6265 section 5.4), other repeats with `","`
  (RFC 9110 section 5.3). Header bytes are latin-1 both ways.
- `HTTP_PROXY` is never produced (httpoxy, CVE-2016-5385). Header names containing `_` are dropped
  by default, since `X-A_B` and `X-A-B` would both become `HTTP_X_A_B`; `HeaderPolicy` changes that.
- A header name repeated more than `HeaderPolicy.max_repeats` times is refused with a 431, and the
  work done is linear in the number of headers (the asgiref CVE-2025-14550 class).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ._exceptions import RemoteProtocolError

# Kept cheap to import (no typing, dataclasses or urllib at import time): a CGI process pays for
# every import on every request.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Literal

    from ._types import CGIVariables, Environ, Headers, Scope

__all__ = [
    "DEFAULT_HEADER_POLICY",
    "HeaderPolicy",
    "cgi_variables_to_environ",
    "environ_to_scope",
    "gateway_variables_to_scope",
    "headers_to_environ",
    "scope_to_cgi_variables",
    "scope_to_environ",
    "split_path",
    "to_wsgi_string",
    "from_wsgi_string",
]

# Header name classes, cached per policy: what one raw header name turns into.
_PLAIN, _CONTENT_TYPE, _CONTENT_LENGTH, _COOKIE, _DROP = range(5)
_CACHE_LIMIT = 1024
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_TOKEN_CHARS = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
# RFC 3986 section 3.3: characters a path may hold unescaped. Not "%": the paths quoted here are
# already percent-decoded, so a literal "%" in them must become "%25".
_PATH_SAFE = "/:@!$&'()*+,;=-._~"


class HeaderPolicy:
    """How request headers become `HTTP_*` variables.

    `underscores="drop"` (the default, as nginx and Apache do) ignores header names holding `_`;
    `"keep"` translates them, accepting that `X-A_B` and `X-A-B` collide.
    `max_repeats` caps how often one header name may appear before the request is refused (431).
    """

    __slots__ = ("_classes", "max_repeats", "underscores")

    def __init__(self, underscores: Literal["drop", "keep"] = "drop", max_repeats: int = 100) -> None:
        if underscores not in ("drop", "keep"):
            raise ValueError("underscores must be 'drop' or 'keep'")
        self.underscores = underscores
        self.max_repeats = max_repeats
        self._classes: dict[bytes, tuple[int, str]] = {}

    def __repr__(self) -> str:
        return f"HeaderPolicy(underscores={self.underscores!r}, max_repeats={self.max_repeats})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HeaderPolicy):
            return NotImplemented
        return (self.underscores, self.max_repeats) == (other.underscores, other.max_repeats)

    def __hash__(self) -> int:
        return hash((self.underscores, self.max_repeats))

    def classify(self, raw_name: bytes) -> tuple[int, str]:
        """Return the class of a header name and its environ key (`HTTP_X_FOO`, `CONTENT_TYPE`...)."""
        cached = self._classes.get(raw_name)
        if cached is not None:
            return cached
        result = self._classify(raw_name)
        if len(self._classes) < _CACHE_LIMIT:
            self._classes[raw_name] = result
        return result

    def _classify(self, raw_name: bytes) -> tuple[int, str]:
        lowered = raw_name.lower()
        if not lowered or not _TOKEN_CHARS.issuperset(lowered):
            return (_DROP, "")  # RFC 9110 section 5.1: a field name is a token.
        if lowered == b"content-type":
            return (_CONTENT_TYPE, "CONTENT_TYPE")
        if lowered == b"content-length":
            return (_CONTENT_LENGTH, "CONTENT_LENGTH")
        if lowered == b"proxy":
            return (_DROP, "")  # httpoxy: HTTP_PROXY would be read as a proxy setting.
        if b"_" in lowered and self.underscores == "drop":
            return (_DROP, "")
        key = "HTTP_" + lowered.decode("latin-1").upper().replace("-", "_")
        if key in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
            return (_DROP, "")  # only reachable with underscores="keep": "content_type".
        return (_COOKIE if lowered == b"cookie" else _PLAIN, key)


DEFAULT_HEADER_POLICY = HeaderPolicy()


def to_wsgi_string(text: str) -> str:
    """Return `text` as a PEP 3333 WSGI string: its UTF-8 bytes, one latin-1 character each."""
    return text.encode("utf-8", "surrogateescape").decode("latin-1")


def from_wsgi_string(wsgi_string: str) -> str:
    """Return the text a WSGI string holds (UTF-8; undecodable bytes become U+FFFD, as uvicorn does)."""
    return wsgi_string.encode("latin-1").decode("utf-8", "replace")


def split_path(path: str, root_path: str) -> tuple[str, str]:
    """Split an ASGI `path` into (SCRIPT_NAME, PATH_INFO) text, cutting `root_path` at a segment boundary.

    A path outside the mount point (root_path `/app`, path `/apple`) follows the older ASGI
    convention in which `path` did not include `root_path`: it is kept whole as PATH_INFO.
    """
    script_name = root_path.rstrip("/")
    if script_name and path.startswith(script_name):
        rest = path[len(script_name) :]
        if not rest or rest[0] == "/":
            return script_name, rest
    return script_name, path


def headers_to_environ(
    headers: Iterable[tuple[bytes, bytes]], policy: HeaderPolicy = DEFAULT_HEADER_POLICY
) -> dict[str, str]:
    """Return the `CONTENT_*` and `HTTP_*` variables for ASGI headers.

    Raises RemoteProtocolError (431) when a name repeats more than `policy.max_repeats` times, and
    (400) when `Content-Length` repeats with different values.
    """
    result: dict[str, str] = {}
    repeated: dict[str, list[str]] | None = None
    classify = policy.classify
    for raw_name, raw_value in headers:
        kind, key = classify(raw_name)
        if kind == _DROP:
            continue
        value = raw_value.decode("latin-1")
        if key not in result:
            result[key] = value
            continue
        if kind == _CONTENT_LENGTH and value != result[key]:
            raise RemoteProtocolError("conflicting Content-Length headers", status_code=400)
        if repeated is None:
            repeated = {}
        values = repeated.get(key)
        if values is None:
            values = repeated[key] = [result[key]]
        values.append(value)
        if len(values) > policy.max_repeats:
            raise RemoteProtocolError(
                f"header {raw_name.decode('latin-1')!r} repeated more than {policy.max_repeats} times",
                status_code=431,
            )
    if repeated:
        for key, values in repeated.items():
            if key != "CONTENT_LENGTH":  # identical repeats (checked above) collapse to one value
                result[key] = ("; " if key == "HTTP_COOKIE" else ",").join(values)
    return result


def _is_port(text: str) -> bool:
    """True for a port number: ASCII digits only (str.isdigit() also accepts "²", which int() refuses)."""
    return text.isascii() and text.isdigit()


def _server_name_and_port(scope: Scope, headers: Mapping[str, str]) -> tuple[str, str]:
    server = scope.get("server")
    if server is not None and server[1] is not None:
        return str(server[0]), str(server[1])
    # A unix-socket server ((path, None)) or no server at all: the Host header names the server.
    scheme = scope.get("scheme", "http")
    default_port = str(_DEFAULT_PORTS.get(scheme, 80))
    host = headers.get("HTTP_HOST", "")
    if host:
        if host.startswith("["):  # An IPv6 literal, RFC 3986 section 3.2.2.
            end = host.find("]")
            if end != -1:
                port = host[end + 2 :] if host[end + 1 : end + 2] == ":" else ""
                return host[: end + 1], port if _is_port(port) else default_port
        name, sep, port = host.rpartition(":")
        if sep and _is_port(port):
            return name, port
        if sep and not port:  # "example.com:" - an empty port means the default (RFC 3986 section 3.2.3)
            return name, default_port
        return host, default_port
    return "localhost", default_port


def _request_uri(scope: Scope) -> str:
    raw_path = scope.get("raw_path")
    if raw_path:
        target = raw_path.decode("latin-1")
    else:
        from urllib.parse import quote

        target = quote(scope["path"].encode("utf-8", "surrogateescape"), safe=_PATH_SAFE)
    query = scope.get("query_string", b"")
    return f"{target}?{query.decode('latin-1')}" if query else target


def scope_to_environ(
    scope: Scope,
    *,
    wsgi_input: Any = None,
    wsgi_errors: Any = None,
    multithread: bool = True,
    multiprocess: bool = False,
    policy: HeaderPolicy = DEFAULT_HEADER_POLICY,
) -> Environ:
    """Return the PEP 3333 environ for an ASGI HTTP scope (body stream and error stream given).

    `wsgi.input_terminated` is always True: every input stream bridges hands to an app signals
    the end of the body by returning b"", so a body of undeclared length (chunked) reads in full.
    """
    header_vars = headers_to_environ(scope["headers"], policy)
    server_name, server_port = _server_name_and_port(scope, header_vars)
    script_name, path_info = split_path(scope["path"], scope.get("root_path", ""))
    request_uri = _request_uri(scope)
    environ: Environ = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": to_wsgi_string(script_name),
        "PATH_INFO": to_wsgi_string(path_info),
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "REQUEST_URI": request_uri,
        "RAW_URI": request_uri,
        "SERVER_NAME": server_name,
        "SERVER_PORT": server_port,
        "SERVER_PROTOCOL": "HTTP/" + scope.get("http_version", "1.1"),
    }
    client = scope.get("client")
    if client is not None:
        environ["REMOTE_ADDR"] = str(client[0])
        if client[1] is not None:
            environ["REMOTE_PORT"] = str(client[1])
    environ.update(header_vars)
    environ["wsgi.version"] = (1, 0)
    environ["wsgi.url_scheme"] = scope.get("scheme", "http")
    environ["wsgi.input"] = wsgi_input
    environ["wsgi.errors"] = wsgi_errors
    environ["wsgi.multithread"] = multithread
    environ["wsgi.multiprocess"] = multiprocess
    environ["wsgi.run_once"] = False
    environ["wsgi.input_terminated"] = True
    return environ


def scope_to_cgi_variables(
    scope: Scope,
    *,
    script_name: str | None = None,
    path_info: str | None = None,
    document_root: str | None = None,
    server_software: str = "bridges",
    pass_authorization: bool = False,
    extra: Mapping[str, str] | None = None,
    policy: HeaderPolicy = DEFAULT_HEADER_POLICY,
) -> CGIVariables:
    """Return the CGI/1.1 meta-variables (RFC 3875 section 4.1) for an ASGI HTTP scope.

    `script_name`/`path_info` (text) override the split by `root_path`, for a cgi-bin that
    resolved the script itself. `PATH_TRANSLATED` is set when `document_root` is given and there
    is a PATH_INFO (section 4.1.6). `Authorization` only reaches the script as
    `HTTP_AUTHORIZATION` when `pass_authorization` is set; its scheme is `AUTH_TYPE` either way
    (section 4.1.1). `extra` is merged last (e.g. `SCRIPT_FILENAME`, `DOCUMENT_ROOT`).
    """
    header_vars = headers_to_environ(scope["headers"], policy)
    server_name, server_port = _server_name_and_port(scope, header_vars)
    if path_info is None:
        # With only `script_name` given, PATH_INFO is what follows it (so the two still add up to
        # the path); with neither, the split is by root_path.
        split_script, path_info = split_path(
            scope["path"], scope.get("root_path", "") if script_name is None else script_name
        )
        script_name = split_script if script_name is None else script_name
    elif script_name is None:
        script_name = split_path(scope["path"], scope.get("root_path", ""))[0]
    client = scope.get("client")
    scheme = scope.get("scheme", "http")
    variables: CGIVariables = {
        "GATEWAY_INTERFACE": "CGI/1.1",
        "SERVER_SOFTWARE": server_software,
        "SERVER_NAME": server_name,
        "SERVER_PORT": server_port,
        "SERVER_PROTOCOL": "HTTP/" + scope.get("http_version", "1.1"),
        "REQUEST_METHOD": scope["method"],
        "REQUEST_SCHEME": scheme,
        "REQUEST_URI": _request_uri(scope),
        "SCRIPT_NAME": to_wsgi_string(script_name),
        "PATH_INFO": to_wsgi_string(path_info),
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "REMOTE_ADDR": str(client[0]) if client is not None else "",
    }
    if client is not None and client[1] is not None:
        variables["REMOTE_PORT"] = str(client[1])
    if scheme in ("https", "wss"):
        variables["HTTPS"] = "on"
    if document_root is not None:
        variables["DOCUMENT_ROOT"] = document_root
        if path_info:
            variables["PATH_TRANSLATED"] = document_root.rstrip("/") + to_wsgi_string(path_info)
    authorization = header_vars.pop("HTTP_AUTHORIZATION", None)
    if authorization is not None:
        auth_type = authorization.split(" ", 1)[0]
        if auth_type:
            variables["AUTH_TYPE"] = auth_type
        if pass_authorization:
            variables["HTTP_AUTHORIZATION"] = authorization
    variables.update(header_vars)
    if extra:
        variables.update(extra)
    return variables


def _scheme_of(environ: Mapping[str, Any]) -> str:
    scheme = environ.get("wsgi.url_scheme")
    if scheme:
        return str(scheme)
    if str(environ.get("HTTPS", "")).lower() in ("on", "1", "yes"):
        return "https"
    return str(environ.get("REQUEST_SCHEME") or "http")


def _port(value: Any) -> int | None:
    text = str(value) if value is not None else ""
    return int(text) if _is_port(text) else None


def environ_to_scope(environ: Mapping[str, Any]) -> Scope:
    """Return the ASGI HTTP scope for a PEP 3333 environ or a set of CGI meta-variables.

    `path` is SCRIPT_NAME + PATH_INFO as text and `root_path` is SCRIPT_NAME (the ASGI spec's
    "path includes root_path"). `raw_path` comes from REQUEST_URI or RAW_URI when present, else it
    is the percent-encoded path. `HTTP_PROXY` is ignored, and so are `HTTP_CONTENT_TYPE` and
    `HTTP_CONTENT_LENGTH` when `CONTENT_TYPE`/`CONTENT_LENGTH` are present.
    """
    script_name = environ.get("SCRIPT_NAME", "")
    path_info = environ.get("PATH_INFO", "")
    full_path = from_wsgi_string(script_name + path_info)
    headers: Headers = []
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            if key == "HTTP_PROXY":
                continue
            if key in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH") and key[5:] in environ:
                continue
            name = key[5:].replace("_", "-").lower()
            headers.append((name.encode("latin-1"), str(value).encode("latin-1")))
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
            headers.append((key.replace("_", "-").lower().encode(), str(value).encode("latin-1")))
    request_uri = environ.get("REQUEST_URI") or environ.get("RAW_URI")
    if request_uri:
        raw_path = str(request_uri).split("?", 1)[0].encode("latin-1")
    else:
        from urllib.parse import quote

        raw_path = quote(script_name + path_info, safe=_PATH_SAFE, encoding="latin-1").encode("ascii")
    server_port = _port(environ.get("SERVER_PORT"))
    remote_addr = environ.get("REMOTE_ADDR")
    protocol = str(environ.get("SERVER_PROTOCOL", "HTTP/1.1"))
    http_version = protocol[5:] if protocol.startswith("HTTP/") else "1.1"
    http_version = {"2.0": "2", "3.0": "3"}.get(http_version, http_version)  # Apache: "HTTP/2.0"
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": http_version if http_version in ("1.0", "1.1", "2", "3") else "1.1",
        "method": str(environ.get("REQUEST_METHOD", "GET")).upper(),
        "scheme": _scheme_of(environ),
        "path": full_path,
        "raw_path": raw_path,
        "query_string": str(environ.get("QUERY_STRING", "")).encode("latin-1"),
        "root_path": from_wsgi_string(script_name),
        "headers": headers,
        "server": (str(environ.get("SERVER_NAME", "localhost")), server_port)
        if server_port is not None
        else None,
        "client": (str(remote_addr), _port(environ.get("REMOTE_PORT")) or 0) if remote_addr else None,
    }


def cgi_variables_to_environ(variables: Mapping[str, str]) -> Environ:
    """Return the CGI part of an environ (no `wsgi.*` keys) for meta-variables from a CGI host.

    Drops `HTTP_PROXY` and the `HTTP_CONTENT_*` twins of `CONTENT_*`; keeps every other variable.
    """
    environ: Environ = {}
    for key, value in variables.items():
        if key == "HTTP_PROXY":
            continue
        if key in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH") and key[5:] in variables:
            continue
        environ[key] = value
    return environ


# Variables a gateway passes that describe its own hop, not the request the app should see.
_GATEWAY_ONLY = frozenset({"HTTP_TRANSFER_ENCODING", "HTTP_PROXY"})


def gateway_variables_to_scope(
    variables: Mapping[str, str], *, root_path: str | None = None, script_is_mount: bool = False
) -> Scope:
    """Return the ASGI scope for CGI meta-variables from a real gateway (FastCGI params, a CGI host).

    Applies the fix-ups real servers need:
    - the path comes from `REQUEST_URI` when present (the only variable that is never rewritten);
      `root_path` is then `--root-path` if given, else SCRIPT_NAME when SCRIPT_NAME + PATH_INFO
      spell the path (lighttpd, CGI hosts), else "" (nginx's default SCRIPT_NAME is the whole
      URI; Apache's mod_proxy_fcgi splits by its DocumentRoot, which is no mount point);
    - an empty SERVER_NAME (nginx without `server_name`) falls back to SERVER_ADDR;
    - `script_is_mount` (a CGI host, which resolved the script itself): SCRIPT_NAME is the
      `root_path` and SCRIPT_NAME + PATH_INFO the `path`, whatever REQUEST_URI spells;
    - `HTTP_TRANSFER_ENCODING` is dropped: the gateway already removed the chunked framing;
    - an empty `CONTENT_LENGTH` (a streamed chunked upload) declares nothing, and the
      `HTTP_CONTENT_*` twins some servers add are ignored;
    - `HTTP_PROXY` is dropped (httpoxy); `HTTPS=on` or `REQUEST_SCHEME` give the scheme.
    """
    cleaned = {key: value for key, value in variables.items() if key not in _GATEWAY_ONLY}
    if not cleaned.get("SERVER_NAME") and cleaned.get("SERVER_ADDR"):
        cleaned["SERVER_NAME"] = cleaned["SERVER_ADDR"]  # nginx without a server_name.
    scope = environ_to_scope(cleaned)
    if script_is_mount and root_path is None:
        # A CGI host ran this very script: SCRIPT_NAME is where the app is, and SCRIPT_NAME +
        # PATH_INFO is the path as the host resolved it ("//", "./" and "../" already gone).
        return scope
    request_uri = variables.get("REQUEST_URI", "")
    if not request_uri.startswith("/"):
        if root_path is not None:
            _, path_info = split_path(scope["path"], root_path)
            scope["root_path"] = root_path.rstrip("/")
            scope["path"] = scope["root_path"] + path_info
        return scope
    from urllib.parse import unquote_to_bytes

    raw_path = request_uri.split("?", 1)[0].split("#", 1)[0]
    path = unquote_to_bytes(raw_path).decode("utf-8", "replace")
    scope["raw_path"] = raw_path.encode("latin-1")
    scope["path"] = path
    if root_path is not None:
        scope["root_path"] = root_path.rstrip("/")
        return scope
    script_name = from_wsgi_string(variables.get("SCRIPT_NAME", ""))
    path_info = from_wsgi_string(variables.get("PATH_INFO", ""))
    # Apache's mod_proxy_fcgi (SCRIPT_FILENAME "proxy:fcgi://...") splits the path by walking
    # its DocumentRoot on disk: that split says nothing about where the app is mounted.
    proxied = variables.get("SCRIPT_FILENAME", "").startswith("proxy:")
    mounted = not proxied and script_name and path_info and path == script_name.rstrip("/") + path_info
    scope["root_path"] = script_name.rstrip("/") if mounted else ""
    return scope
