"""Tests for bridges.translate, the pure scope <-> environ <-> CGI translation.

Layout:

1. the small helpers (WSGI strings, split_path, headers_to_environ, HeaderPolicy);
2. whole-dict tables: scope_to_environ, scope_to_cgi_variables and environ_to_scope, each case
   compared as one complete dict against an expected dict written out literally;
3. header limits: 431 for too many repeats, 400 for conflicting Content-Length, linear work;
4. round trips scope -> environ -> scope, by example and as a hypothesis property;
5. references: wsgiref (setup_testing_defaults, validate.check_environ) and a2wsgi's build_environ,
   with every difference from a2wsgi written down and judged.
"""

from __future__ import annotations

import io
import string
import wsgiref.util
import wsgiref.validate
from typing import Any
from urllib.parse import quote, unquote, unquote_to_bytes

import pytest
from a2wsgi.wsgi import build_environ as a2wsgi_build_environ
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridges import (
    HeaderPolicy,
    RemoteProtocolError,
    environ_to_scope,
    scope_to_cgi_variables,
    scope_to_environ,
)
from bridges.translate import (
    DEFAULT_HEADER_POLICY,
    cgi_variables_to_environ,
    from_wsgi_string,
    headers_to_environ,
    split_path,
    to_wsgi_string,
)

# --------------------------------------------------------------------------------------------------
# Shared fixtures
# --------------------------------------------------------------------------------------------------

WSGI_INPUT = io.BytesIO()
WSGI_ERRORS = io.StringIO()
ASGI = {"version": "3.0", "spec_version": "2.4"}  # what environ_to_scope announces


def wsgi_keys(scheme: str = "http") -> dict[str, Any]:
    """The `wsgi.*` part of every environ scope_to_environ builds with the default options."""
    return {
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scheme,
        "wsgi.input": WSGI_INPUT,
        "wsgi.errors": WSGI_ERRORS,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
    }


def http_scope(**fields: Any) -> dict[str, Any]:
    """A complete HTTP scope as a TCP server hands it over, with `fields` replaced."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": dict(ASGI),
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"example.com")],
        "server": ("127.0.0.1", 8000),
        "client": ("10.0.0.7", 51234),
    }
    scope.update(fields)
    return scope


def server_scope(
    target: bytes,
    headers: list[tuple[bytes, bytes]],
    *,
    method: str = "GET",
    root_path: str = "",
    scheme: str = "http",
    http_version: str = "1.1",
) -> dict[str, Any]:
    """The scope uvicorn's h11 protocol builds for a request target (uvicorn 0.3x, h11_impl.py).

    Only `asgi` differs: uvicorn says spec_version "2.3", environ_to_scope says "2.4".
    """
    raw_path, _, query_string = target.partition(b"?")
    path = unquote(raw_path.decode("ascii"))
    return {
        "type": "http",
        "asgi": dict(ASGI),
        "http_version": http_version,
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 40312),
        "scheme": scheme,
        "method": method,
        "root_path": root_path,
        "path": root_path + path,
        "raw_path": root_path.encode("ascii") + raw_path,
        "query_string": query_string,
        "headers": [(name.lower(), value) for name, value in headers],
    }


def sorted_headers(scope: dict[str, Any]) -> dict[str, Any]:
    """`scope` with its headers sorted: header order carries no meaning across an environ."""
    return {**scope, "headers": sorted(scope["headers"])}


def round_trip(scope: dict[str, Any], policy: HeaderPolicy = DEFAULT_HEADER_POLICY) -> dict[str, Any]:
    environ = scope_to_environ(scope, wsgi_input=WSGI_INPUT, wsgi_errors=WSGI_ERRORS, policy=policy)
    return dict(environ_to_scope(environ))


# --------------------------------------------------------------------------------------------------
# 1. Helpers: WSGI strings, split_path, headers_to_environ, HeaderPolicy
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "wsgi_string"),
    [
        pytest.param("/plain", "/plain", id="ascii"),
        pytest.param("/café", "/caf\xc3\xa9", id="latin-1-letter"),
        pytest.param("/日本", "/\xe6\x97\xa5\xe6\x9c\xac", id="cjk"),
        pytest.param("/😀", "/\xf0\x9f\x98\x80", id="astral"),
        pytest.param("", "", id="empty"),
    ],
)
def test_wsgi_strings_are_utf8_bytes_as_latin1(text: str, wsgi_string: str) -> None:
    assert to_wsgi_string(text) == wsgi_string
    assert wsgi_string.encode("latin-1") == text.encode("utf-8")
    assert from_wsgi_string(wsgi_string) == text


def test_from_wsgi_string_replaces_invalid_utf8() -> None:
    assert from_wsgi_string("/caf\xe9") == "/caf\ufffd"  # a lone latin-1 byte is not UTF-8


@pytest.mark.parametrize(
    ("path", "root_path", "expected"),
    [
        pytest.param("/users/1", "", ("", "/users/1"), id="no-root"),
        pytest.param("/app/users", "/app", ("/app", "/users"), id="mounted"),
        pytest.param("/app", "/app", ("/app", ""), id="exactly-the-root"),
        pytest.param("/app/", "/app", ("/app", "/"), id="root-and-slash"),
        pytest.param("/apple", "/app", ("/app", "/apple"), id="prefix-not-at-segment-boundary"),
        pytest.param("/app/x", "/app/", ("/app", "/x"), id="root-with-trailing-slash"),
        pytest.param("/app", "/app/", ("/app", ""), id="trailing-slash-root-exact"),
        pytest.param("/x", "/", ("", "/x"), id="root-is-slash"),
        pytest.param("/APP/x", "/app", ("/app", "/APP/x"), id="case-sensitive"),
        pytest.param("/a/b/c", "/a/b", ("/a/b", "/c"), id="two-segment-root"),
        pytest.param("/café/menü", "/café", ("/café", "/menü"), id="non-ascii"),
    ],
)
def test_split_path(path: str, root_path: str, expected: tuple[str, str]) -> None:
    assert split_path(path, root_path) == expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param([], {}, id="none"),
        pytest.param(
            [(b"content-type", b"text/plain"), (b"content-length", b"3"), (b"x-a", b"1")],
            {"CONTENT_TYPE": "text/plain", "CONTENT_LENGTH": "3", "HTTP_X_A": "1"},
            id="content-headers-without-http-prefix",
        ),
        pytest.param(
            [(b"cookie", b"a=1"), (b"Cookie", b"b=2"), (b"cookie", b"c=3")],
            {"HTTP_COOKIE": "a=1; b=2; c=3"},
            id="cookies-joined-with-semicolon",
        ),
        pytest.param(
            [(b"accept", b"text/html"), (b"ACCEPT", b"application/json")],
            {"HTTP_ACCEPT": "text/html,application/json"},
            id="others-joined-with-comma",
        ),
        pytest.param(
            [(b"content-length", b"5"), (b"Content-Length", b"5")],
            {"CONTENT_LENGTH": "5"},
            id="identical-content-length-collapses",
        ),
        pytest.param([(b"x-name", b"caf\xe9")], {"HTTP_X_NAME": "caf\xe9"}, id="latin-1-value"),
        pytest.param(
            [(b"proxy", b"http://evil"), (b"PROXY", b"http://evil"), (b"x-a_b", b"1"), (b"bad name", b"1")],
            {},
            id="dropped-names",
        ),
        pytest.param([(b"", b"x"), (b"x:y", b"1"), (b"caf\xe9", b"1")], {}, id="non-token-names"),
    ],
)
def test_headers_to_environ(headers: list[tuple[bytes, bytes]], expected: dict[str, str]) -> None:
    assert headers_to_environ(headers) == expected


def test_header_values_are_latin1_both_ways() -> None:
    environ = scope_to_environ(http_scope(headers=[(b"x-name", b"caf\xe9 \xff")]))
    assert environ["HTTP_X_NAME"] == "caf\xe9 \xff"
    assert environ_to_scope(environ)["headers"] == [(b"x-name", b"caf\xe9 \xff")]


def test_policy_keep_underscores_translates_them() -> None:
    keep = HeaderPolicy(underscores="keep")
    headers = [(b"x-a_b", b"1"), (b"x-a-b", b"2"), (b"x_forwarded_for", b"10.0.0.1")]
    assert headers_to_environ(headers, keep) == {"HTTP_X_A_B": "1,2", "HTTP_X_FORWARDED_FOR": "10.0.0.1"}
    assert headers_to_environ(headers) == {"HTTP_X_A_B": "2"}  # the default drops the `_` names


def test_policy_keep_still_refuses_proxy_and_content_twins() -> None:
    keep = HeaderPolicy(underscores="keep")
    headers = [(b"proxy", b"http://evil"), (b"content_type", b"text/evil"), (b"content_length", b"9")]
    assert headers_to_environ(headers, keep) == {}


def test_policy_caches_do_not_leak_between_policies() -> None:
    keep = HeaderPolicy(underscores="keep")
    assert keep.classify(b"x-cache_probe")[1] == "HTTP_X_CACHE_PROBE"
    assert headers_to_environ([(b"x-cache_probe", b"1")]) == {}
    assert headers_to_environ([(b"x-cache_probe", b"1")], keep) == {"HTTP_X_CACHE_PROBE": "1"}


def test_policy_classifies_correctly_past_its_cache_limit() -> None:
    policy = HeaderPolicy()
    names = [f"x-filler-{i}".encode() for i in range(3000)]
    assert headers_to_environ([(name, b"v") for name in names], policy) == {
        f"HTTP_X_FILLER_{i}": "v" for i in range(3000)
    }
    late = [(b"Content-Type", b"a/b"), (b"proxy", b"p"), (b"x-late_one", b"1"), (b"Cookie", b"c=1")]
    assert headers_to_environ(late, policy) == {"CONTENT_TYPE": "a/b", "HTTP_COOKIE": "c=1"}


def test_policy_is_a_value() -> None:
    assert HeaderPolicy() == DEFAULT_HEADER_POLICY
    assert HeaderPolicy(underscores="keep") != DEFAULT_HEADER_POLICY
    assert hash(HeaderPolicy(max_repeats=5)) == hash(HeaderPolicy(max_repeats=5))


# --------------------------------------------------------------------------------------------------
# 2a. scope_to_environ: whole environ dicts
# --------------------------------------------------------------------------------------------------

ENVIRON_CASES = [
    pytest.param(
        http_scope(path="/hello", raw_path=b"/hello"),
        {
            "REQUEST_METHOD": "GET",
            "SCRIPT_NAME": "",
            "PATH_INFO": "/hello",
            "QUERY_STRING": "",
            "REQUEST_URI": "/hello",
            "RAW_URI": "/hello",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "10.0.0.7",
            "REMOTE_PORT": "51234",
            "HTTP_HOST": "example.com",
            **wsgi_keys(),
        },
        id="plain-get",
    ),
    pytest.param(
        http_scope(path="/search", raw_path=b"/search", query_string=b"q=a+b&x=%C3%A9"),
        {
            "REQUEST_METHOD": "GET",
            "SCRIPT_NAME": "",
            "PATH_INFO": "/search",
            "QUERY_STRING": "q=a+b&x=%C3%A9",
            "REQUEST_URI": "/search?q=a+b&x=%C3%A9",
            "RAW_URI": "/search?q=a+b&x=%C3%A9",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "10.0.0.7",
            "REMOTE_PORT": "51234",
            "HTTP_HOST": "example.com",
            **wsgi_keys(),
        },
        id="query-string",
    ),
    pytest.param(
        http_scope(path="/raw", raw_path=b"/raw", query_string=b"q=\xe9"),
        {
            "REQUEST_METHOD": "GET",
            "SCRIPT_NAME": "",
            "PATH_INFO": "/raw",
            "QUERY_STRING": "q=\xe9",
            "REQUEST_URI": "/raw?q=\xe9",
            "RAW_URI": "/raw?q=\xe9",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "10.0.0.7",
            "REMOTE_PORT": "51234",
            "HTTP_HOST": "example.com",
            **wsgi_keys(),
        },
        id="non-ascii-query-bytes-as-latin-1",
    ),
    pytest.param(
        http_scope(root_path="/app", path="/app/users/1", raw_path=b"/app/users/1"),
        {
            "REQUEST_METHOD": "GET",
            "SCRIPT_NAME": "/app",
            "PATH_INFO": "/users/1",
            "QUERY_STRING": "",
            "REQUEST_URI": "/app/users/1",
            "RAW_URI": "/app/users/1",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "10.0.0.7",
            "REMOTE_PORT": "51234",
            "HTTP_HOST": "example.com",
            **wsgi_keys(),
        },
        id="mounted",
    ),
    pytest.param(
        http_scope(root_path="/app", path="/apple", raw_path=b"/apple"),
        {
            "REQUEST_METHOD": "GET",
            "SCRIPT_NAME": "/app",
            "PATH_INFO": "/apple",
            "QUERY_STRING": "",
            "REQUEST_URI": "/apple",
            "RAW_URI": "/apple",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "10.0.0.7",
            "REMOTE_PORT": "51234",
            "HTTP_HOST": "example.com",
            **wsgi_keys(),
        },
        id="mounted-prefix-not-at-segment-boundary",
    ),
    pytest.param(
        http_scope(root_path="/app", path="/app", raw_path=b"/app", query_string=b"a=1"),
        {
            "REQUEST_METHOD": "GET",
            "SCRIPT_NAME": "/app",
            "PATH_INFO": "",
            "QUERY_STRING": "a=1",
            "REQUEST_URI": "/app?a=1",
            "RAW_URI": "/app?a=1",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "10.0.0.7",
            "REMOTE_PORT": "51234",
            "HTTP_HOST": "example.com",
            **wsgi_keys(),
        },
        id="mounted-exact-root",
    ),
    pytest.param(
        http_scope(root_path="/app/", path="/app/x", raw_path=b"/app/x"),
        {
            "REQUEST_METHOD": "GET",
            "SCRIPT_NAME": "/app",
            "PATH_INFO": "/x",
            "QUERY_STRING": "",
            "REQUEST_URI": "/app/x",
            "RAW_URI": "/app/x",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "10.0.0.7",
            "REMOTE_PORT": "51234",
            "HTTP_HOST": "example.com",
            **wsgi_keys(),
        },
        id="root-path-with-trailing-slash",
    ),
    pytest.param(
        http_scope(root_path="/", path="/x", raw_path=b"/x"),
        {
            "REQUEST_METHOD": "GET",
            "SCRIPT_NAME": "",
            "PATH_INFO": "/x",
            "QUERY_STRING": "",
            "REQUEST_URI": "/x",
            "RAW_URI": "/x",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "10.0.0.7",
            "REMOTE_PORT": "51234",
            "HTTP_HOST": "example.com",
            **wsgi_keys(),
        },
        id="root-path-slash-is-empty-script-name",
    ),
    pytest.param(
        http_scope(path="/café", raw_path=b"/caf%C3%A9"),
        {
            "REQUEST_METHOD": "GET",
            "SCRIPT_NAME": "",
            "PATH_INFO": "/caf\xc3\xa9",
            "QUERY_STRING": "",
            "REQUEST_URI": "/caf%C3%A9",
            "RAW_URI": "/caf%C3%A9",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "10.0.0.7",
            "REMOTE_PORT": "51234",
            "HTTP_HOST": "example.com",
            **wsgi_keys(),
        },
        id="utf8-path-as-wsgi-string",
    ),
    pytest.param(
        {**http_scope(path="/日本", query_string=b"k=v"), "raw_path": None},
        {
            "REQUEST_METHOD": "GET",
            "SCRIPT_NAME": "",
            "PATH_INFO": "/\xe6\x97\xa5\xe6\x9c\xac",
            "QUERY_STRING": "k=v",
            "REQUEST_URI": "/%E6%97%A5%E6%9C%AC?k=v",
            "RAW_URI": "/%E6%97%A5%E6%9C%AC?k=v",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "10.0.0.7",
            "REMOTE_PORT": "51234",
            "HTTP_HOST": "example.com",
            **wsgi_keys(),
        },
        id="cjk-path-without-raw-path-is-quoted",
    ),
    pytest.param(
        http_scope(root_path="/café", path="/café/menü", raw_path=b"/caf%C3%A9/men%C3%BC"),
        {
            "REQUEST_METHOD": "GET",
            "SCRIPT_NAME": "/caf\xc3\xa9",
            "PATH_INFO": "/men\xc3\xbc",
            "QUERY_STRING": "",
            "REQUEST_URI": "/caf%C3%A9/men%C3%BC",
            "RAW_URI": "/caf%C3%A9/men%C3%BC",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "10.0.0.7",
            "REMOTE_PORT": "51234",
            "HTTP_HOST": "example.com",
            **wsgi_keys(),
        },
        id="non-ascii-mount-point",
    ),
    pytest.param(
        {key: value for key, value in http_scope(path="/100%/a b?#").items() if key != "raw_path"},
        {
            "REQUEST_METHOD": "GET",
            "SCRIPT_NAME": "",
            "PATH_INFO": "/100%/a b?#",
            "QUERY_STRING": "",
            "REQUEST_URI": "/100%25/a%20b%3F%23",
            "RAW_URI": "/100%25/a%20b%3F%23",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "10.0.0.7",
            "REMOTE_PORT": "51234",
            "HTTP_HOST": "example.com",
            **wsgi_keys(),
        },
        id="decoded-percent-and-reserved-chars-requoted",
    ),
    pytest.param(
        http_scope(
            method="POST",
            path="/form",
            raw_path=b"/form",
            headers=[
                (b"host", b"example.com"),
                (b"content-type", b"application/x-www-form-urlencoded"),
                (b"content-length", b"7"),
            ],
        ),
        {
            "REQUEST_METHOD": "POST",
            "SCRIPT_NAME": "",
            "PATH_INFO": "/form",
            "QUERY_STRING": "",
            "REQUEST_URI": "/form",
            "RAW_URI": "/form",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "10.0.0.7",
            "REMOTE_PORT": "51234",
            "HTTP_HOST": "example.com",
            "CONTENT_TYPE": "application/x-www-form-urlencoded",
            "CONTENT_LENGTH": "7",
            **wsgi_keys(),
        },
        id="post-content-headers-not-duplicated",
    ),
    pytest.param(
        http_scope(
            headers=[
                (b"host", b"example.com"),
                (b"cookie", b"a=1"),
                (b"accept", b"text/html"),
                (b"cookie", b"b=2"),
                (b"accept", b"application/json"),
                (b"content-length", b"0"),
                (b"content-length", b"0"),
            ]
        ),
        {
            "REQUEST_METHOD": "GET",
            "SCRIPT_NAME": "",
            "PATH_INFO": "/",
            "QUERY_STRING": "",
            "REQUEST_URI": "/",
            "RAW_URI": "/",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "10.0.0.7",
            "REMOTE_PORT": "51234",
            "HTTP_HOST": "example.com",
            "HTTP_COOKIE": "a=1; b=2",
            "HTTP_ACCEPT": "text/html,application/json",
            "CONTENT_LENGTH": "0",
            **wsgi_keys(),
        },
        id="repeated-headers-joined",
    ),
    pytest.param(
        http_scope(
            headers=[
                (b"host", b"example.com"),
                (b"proxy", b"http://evil.example:3128"),
                (b"x-forwarded_for", b"6.6.6.6"),
                (b"x_real_ip", b"6.6.6.6"),
                (b"bad header", b"1"),
                (b"x-name", b"caf\xe9"),
            ]
        ),
        {
            "REQUEST_METHOD": "GET",
            "SCRIPT_NAME": "",
            "PATH_INFO": "/",
            "QUERY_STRING": "",
            "REQUEST_URI": "/",
            "RAW_URI": "/",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "10.0.0.7",
            "REMOTE_PORT": "51234",
            "HTTP_HOST": "example.com",
            "HTTP_X_NAME": "caf\xe9",
            **wsgi_keys(),
        },
        id="httpoxy-underscores-and-invalid-names-dropped",
    ),
    pytest.param(
        http_scope(
            headers=[(b"Host", b"example.com"), (b"User-Agent", b"curl/8"), (b"Content-Type", b"text/plain")]
        ),
        {
            "REQUEST_METHOD": "GET",
            "SCRIPT_NAME": "",
            "PATH_INFO": "/",
            "QUERY_STRING": "",
            "REQUEST_URI": "/",
            "RAW_URI": "/",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "10.0.0.7",
            "REMOTE_PORT": "51234",
            "HTTP_HOST": "example.com",
            "HTTP_USER_AGENT": "curl/8",
            "CONTENT_TYPE": "text/plain",
            **wsgi_keys(),
        },
        id="mixed-case-header-names",
    ),
    pytest.param(
        http_scope(server=("/run/app.sock", None), headers=[(b"host", b"example.com:8080")]),
        {
            "REQUEST_METHOD": "GET",
            "SCRIPT_NAME": "",
            "PATH_INFO": "/",
            "QUERY_STRING": "",
            "REQUEST_URI": "/",
            "RAW_URI": "/",
            "SERVER_NAME": "example.com",
            "SERVER_PORT": "8080",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "10.0.0.7",
            "REMOTE_PORT": "51234",
            "HTTP_HOST": "example.com:8080",
            **wsgi_keys(),
        },
        id="unix-socket-host-with-port",
    ),
    pytest.param(
        http_scope(server=("/run/app.sock", None), headers=[(b"host", b"example.com")]),
        {
            "REQUEST_METHOD": "GET",
            "SCRIPT_NAME": "",
            "PATH_INFO": "/",
            "QUERY_STRING": "",
            "REQUEST_URI": "/",
            "RAW_URI": "/",
            "SERVER_NAME": "example.com",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "10.0.0.7",
            "REMOTE_PORT": "51234",
            "HTTP_HOST": "example.com",
            **wsgi_keys(),
        },
        id="unix-socket-host-without-port",
    ),
    pytest.param(
        http_scope(server=("/run/app.sock", None), headers=[(b"host", b"[::1]:8080")]),
        {
            "REQUEST_METHOD": "GET",
            "SCRIPT_NAME": "",
            "PATH_INFO": "/",
            "QUERY_STRING": "",
            "REQUEST_URI": "/",
            "RAW_URI": "/",
            "SERVER_NAME": "[::1]",
            "SERVER_PORT": "8080",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "10.0.0.7",
            "REMOTE_PORT": "51234",
            "HTTP_HOST": "[::1]:8080",
            **wsgi_keys(),
        },
        id="unix-socket-ipv6-host",
    ),
    pytest.param(
        http_scope(scheme="https", server=("/run/app.sock", None), headers=[(b"host", b"[2001:db8::1]")]),
        {
            "REQUEST_METHOD": "GET",
            "SCRIPT_NAME": "",
            "PATH_INFO": "/",
            "QUERY_STRING": "",
            "REQUEST_URI": "/",
            "RAW_URI": "/",
            "SERVER_NAME": "[2001:db8::1]",
            "SERVER_PORT": "443",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "10.0.0.7",
            "REMOTE_PORT": "51234",
            "HTTP_HOST": "[2001:db8::1]",
            **wsgi_keys("https"),
        },
        id="unix-socket-ipv6-host-without-port-https",
    ),
    pytest.param(
        http_scope(scheme="https", server=("/run/app.sock", None), headers=[], client=None),
        {
            "REQUEST_METHOD": "GET",
            "SCRIPT_NAME": "",
            "PATH_INFO": "/",
            "QUERY_STRING": "",
            "REQUEST_URI": "/",
            "RAW_URI": "/",
            "SERVER_NAME": "localhost",
            "SERVER_PORT": "443",
            "SERVER_PROTOCOL": "HTTP/1.1",
            **wsgi_keys("https"),
        },
        id="unix-socket-no-host-https-no-client",
    ),
    pytest.param(
        http_scope(server=("/run/app.sock", None), headers=[(b"host", b"example.com:")]),
        {
            "REQUEST_METHOD": "GET",
            "SCRIPT_NAME": "",
            "PATH_INFO": "/",
            "QUERY_STRING": "",
            "REQUEST_URI": "/",
            "RAW_URI": "/",
            "SERVER_NAME": "example.com",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "10.0.0.7",
            "REMOTE_PORT": "51234",
            "HTTP_HOST": "example.com:",
            **wsgi_keys(),
        },
        id="unix-socket-host-with-empty-port",
    ),
    pytest.param(
        http_scope(http_version="2", scheme="https", server=("203.0.113.5", 443), client=("::1", 60000)),
        {
            "REQUEST_METHOD": "GET",
            "SCRIPT_NAME": "",
            "PATH_INFO": "/",
            "QUERY_STRING": "",
            "REQUEST_URI": "/",
            "RAW_URI": "/",
            "SERVER_NAME": "203.0.113.5",
            "SERVER_PORT": "443",
            "SERVER_PROTOCOL": "HTTP/2",
            "REMOTE_ADDR": "::1",
            "REMOTE_PORT": "60000",
            "HTTP_HOST": "example.com",
            **wsgi_keys("https"),
        },
        id="http2-https",
    ),
    pytest.param(
        {"type": "http", "method": "HEAD", "path": "/min", "headers": []},
        {
            "REQUEST_METHOD": "HEAD",
            "SCRIPT_NAME": "",
            "PATH_INFO": "/min",
            "QUERY_STRING": "",
            "REQUEST_URI": "/min",
            "RAW_URI": "/min",
            "SERVER_NAME": "localhost",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            **wsgi_keys(),
        },
        id="minimal-scope-defaults",
    ),
    pytest.param(
        http_scope(http_version="1.0", headers=[], client=("peer", None), server=("example.org", 8443)),
        {
            "REQUEST_METHOD": "GET",
            "SCRIPT_NAME": "",
            "PATH_INFO": "/",
            "QUERY_STRING": "",
            "REQUEST_URI": "/",
            "RAW_URI": "/",
            "SERVER_NAME": "example.org",
            "SERVER_PORT": "8443",
            "SERVER_PROTOCOL": "HTTP/1.0",
            "REMOTE_ADDR": "peer",
            **wsgi_keys(),
        },
        id="http10-client-without-port",
    ),
]


@pytest.mark.parametrize(("scope", "expected"), ENVIRON_CASES)
def test_scope_to_environ(scope: dict[str, Any], expected: dict[str, Any]) -> None:
    environ = scope_to_environ(scope, wsgi_input=WSGI_INPUT, wsgi_errors=WSGI_ERRORS)
    assert environ == expected
    assert type(environ["SERVER_PORT"]) is str
    wsgiref.validate.check_environ(environ)  # the stdlib's PEP 3333 checker agrees


def test_scope_to_environ_options() -> None:
    environ = scope_to_environ(
        http_scope(), wsgi_input=WSGI_INPUT, wsgi_errors=WSGI_ERRORS, multithread=False, multiprocess=True
    )
    assert (environ["wsgi.multithread"], environ["wsgi.multiprocess"]) == (False, True)
    assert environ["wsgi.input_terminated"] is True
    assert environ["wsgi.input"] is WSGI_INPUT
    assert environ["wsgi.errors"] is WSGI_ERRORS


def test_scope_to_environ_policy_keep() -> None:
    scope = http_scope(headers=[(b"host", b"h"), (b"x_real_ip", b"1.2.3.4"), (b"proxy", b"p")])
    environ = scope_to_environ(scope, policy=HeaderPolicy(underscores="keep"))
    assert {key: value for key, value in environ.items() if key.startswith("HTTP_")} == {
        "HTTP_HOST": "h",
        "HTTP_X_REAL_IP": "1.2.3.4",
    }


def test_scope_to_environ_does_not_mutate_scope() -> None:
    scope = http_scope(headers=[(b"cookie", b"a=1"), (b"cookie", b"b=2")])
    before = {**scope, "headers": list(scope["headers"])}
    scope_to_environ(scope)
    assert scope == before


def test_hostile_host_port_is_not_a_port() -> None:
    # "\xb2" is latin-1 "²": str.isdigit() says yes, int() says no. It must not become a port.
    scope = http_scope(server=("/run/app.sock", None), headers=[(b"host", b"example.com:\xb2")])
    environ = scope_to_environ(scope)
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("example.com:\xb2", "80")
    assert environ_to_scope(environ)["server"] == ("example.com:\xb2", 80)
    assert environ_to_scope({"SERVER_PORT": "\xb2", "REMOTE_ADDR": "1.2.3.4", "REMOTE_PORT": "\xb9"}) == {
        "type": "http",
        "asgi": ASGI,
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "",
        "raw_path": b"",
        "query_string": b"",
        "root_path": "",
        "headers": [],
        "server": None,
        "client": ("1.2.3.4", 0),
    }


# --------------------------------------------------------------------------------------------------
# 2b. scope_to_cgi_variables: whole meta-variable dicts
# --------------------------------------------------------------------------------------------------

CGI_CASES = [
    pytest.param(
        http_scope(path="/hello", raw_path=b"/hello", query_string=b"a=1"),
        {},
        {
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_SOFTWARE": "bridges",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REQUEST_METHOD": "GET",
            "REQUEST_SCHEME": "http",
            "REQUEST_URI": "/hello?a=1",
            "SCRIPT_NAME": "",
            "PATH_INFO": "/hello",
            "QUERY_STRING": "a=1",
            "REMOTE_ADDR": "10.0.0.7",
            "REMOTE_PORT": "51234",
            "HTTP_HOST": "example.com",
        },
        id="plain-get",
    ),
    pytest.param(
        http_scope(client=None, http_version="1.0", headers=[]),
        {"server_software": "bridges-test/1.0"},
        {
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_SOFTWARE": "bridges-test/1.0",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.0",
            "REQUEST_METHOD": "GET",
            "REQUEST_SCHEME": "http",
            "REQUEST_URI": "/",
            "SCRIPT_NAME": "",
            "PATH_INFO": "/",
            "QUERY_STRING": "",
            "REMOTE_ADDR": "",
        },
        id="no-client-remote-addr-empty",
    ),
    pytest.param(
        http_scope(scheme="https", server=("203.0.113.5", 443)),
        {},
        {
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_SOFTWARE": "bridges",
            "SERVER_NAME": "203.0.113.5",
            "SERVER_PORT": "443",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REQUEST_METHOD": "GET",
            "REQUEST_SCHEME": "https",
            "REQUEST_URI": "/",
            "SCRIPT_NAME": "",
            "PATH_INFO": "/",
            "QUERY_STRING": "",
            "REMOTE_ADDR": "10.0.0.7",
            "REMOTE_PORT": "51234",
            "HTTPS": "on",
            "HTTP_HOST": "example.com",
        },
        id="https-on",
    ),
    pytest.param(
        http_scope(root_path="/cgi", path="/cgi/info/x", raw_path=b"/cgi/info/x"),
        {"document_root": "/srv/www/"},
        {
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_SOFTWARE": "bridges",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REQUEST_METHOD": "GET",
            "REQUEST_SCHEME": "http",
            "REQUEST_URI": "/cgi/info/x",
            "SCRIPT_NAME": "/cgi",
            "PATH_INFO": "/info/x",
            "QUERY_STRING": "",
            "REMOTE_ADDR": "10.0.0.7",
            "REMOTE_PORT": "51234",
            "DOCUMENT_ROOT": "/srv/www/",
            "PATH_TRANSLATED": "/srv/www/info/x",
            "HTTP_HOST": "example.com",
        },
        id="path-translated-with-document-root",
    ),
    pytest.param(
        http_scope(root_path="/cgi", path="/cgi", raw_path=b"/cgi"),
        {"document_root": "/srv/www"},
        {
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_SOFTWARE": "bridges",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REQUEST_METHOD": "GET",
            "REQUEST_SCHEME": "http",
            "REQUEST_URI": "/cgi",
            "SCRIPT_NAME": "/cgi",
            "PATH_INFO": "",
            "QUERY_STRING": "",
            "REMOTE_ADDR": "10.0.0.7",
            "REMOTE_PORT": "51234",
            "DOCUMENT_ROOT": "/srv/www",
            "HTTP_HOST": "example.com",
        },
        id="no-path-translated-without-path-info",
    ),
    pytest.param(
        http_scope(root_path="/cgi", path="/cgi/info/x", raw_path=b"/cgi/info/x"),
        {},
        {
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_SOFTWARE": "bridges",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REQUEST_METHOD": "GET",
            "REQUEST_SCHEME": "http",
            "REQUEST_URI": "/cgi/info/x",
            "SCRIPT_NAME": "/cgi",
            "PATH_INFO": "/info/x",
            "QUERY_STRING": "",
            "REMOTE_ADDR": "10.0.0.7",
            "REMOTE_PORT": "51234",
            "HTTP_HOST": "example.com",
        },
        id="no-path-translated-without-document-root",
    ),
    pytest.param(
        http_scope(path="/menü", raw_path=b"/men%C3%BC"),
        {"document_root": "/srv"},
        {
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_SOFTWARE": "bridges",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REQUEST_METHOD": "GET",
            "REQUEST_SCHEME": "http",
            "REQUEST_URI": "/men%C3%BC",
            "SCRIPT_NAME": "",
            "PATH_INFO": "/men\xc3\xbc",
            "QUERY_STRING": "",
            "REMOTE_ADDR": "10.0.0.7",
            "REMOTE_PORT": "51234",
            "DOCUMENT_ROOT": "/srv",
            "PATH_TRANSLATED": "/srv/men\xc3\xbc",
            "HTTP_HOST": "example.com",
        },
        id="non-ascii-path-info",
    ),
    pytest.param(
        http_scope(headers=[(b"host", b"example.com"), (b"authorization", b"Basic dXNlcjpwdw==")]),
        {},
        {
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_SOFTWARE": "bridges",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REQUEST_METHOD": "GET",
            "REQUEST_SCHEME": "http",
            "REQUEST_URI": "/",
            "SCRIPT_NAME": "",
            "PATH_INFO": "/",
            "QUERY_STRING": "",
            "REMOTE_ADDR": "10.0.0.7",
            "REMOTE_PORT": "51234",
            "AUTH_TYPE": "Basic",
            "HTTP_HOST": "example.com",
        },
        id="authorization-withheld-auth-type-kept",
    ),
    pytest.param(
        http_scope(headers=[(b"host", b"example.com"), (b"Authorization", b"Bearer abc.def")]),
        {"pass_authorization": True},
        {
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_SOFTWARE": "bridges",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REQUEST_METHOD": "GET",
            "REQUEST_SCHEME": "http",
            "REQUEST_URI": "/",
            "SCRIPT_NAME": "",
            "PATH_INFO": "/",
            "QUERY_STRING": "",
            "REMOTE_ADDR": "10.0.0.7",
            "REMOTE_PORT": "51234",
            "AUTH_TYPE": "Bearer",
            "HTTP_AUTHORIZATION": "Bearer abc.def",
            "HTTP_HOST": "example.com",
        },
        id="authorization-passed",
    ),
    pytest.param(
        http_scope(path="/cgi-bin/env.py/extra/path", raw_path=b"/cgi-bin/env.py/extra/path"),
        {
            "script_name": "/cgi-bin/env.py",
            "path_info": "/extra/path",
            "document_root": "/var/www",
            "extra": {
                "SCRIPT_FILENAME": "/usr/lib/cgi-bin/env.py",
                "SERVER_SOFTWARE": "Apache",
                "HTTP_HOST": "internal.example",
            },
        },
        {
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_SOFTWARE": "Apache",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REQUEST_METHOD": "GET",
            "REQUEST_SCHEME": "http",
            "REQUEST_URI": "/cgi-bin/env.py/extra/path",
            "SCRIPT_NAME": "/cgi-bin/env.py",
            "PATH_INFO": "/extra/path",
            "QUERY_STRING": "",
            "REMOTE_ADDR": "10.0.0.7",
            "REMOTE_PORT": "51234",
            "DOCUMENT_ROOT": "/var/www",
            "PATH_TRANSLATED": "/var/www/extra/path",
            "SCRIPT_FILENAME": "/usr/lib/cgi-bin/env.py",
            "HTTP_HOST": "internal.example",
        },
        id="script-name-path-info-override-and-extra-last",
    ),
    pytest.param(
        http_scope(path="/x/y", raw_path=b"/x/y"),
        {"script_name": "/x"},
        {
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_SOFTWARE": "bridges",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REQUEST_METHOD": "GET",
            "REQUEST_SCHEME": "http",
            "REQUEST_URI": "/x/y",
            "SCRIPT_NAME": "/x",
            "PATH_INFO": "/y",
            "QUERY_STRING": "",
            "REMOTE_ADDR": "10.0.0.7",
            "REMOTE_PORT": "51234",
            "HTTP_HOST": "example.com",
        },
        id="script-name-override-alone-splits-path-after-it",
    ),
    pytest.param(
        http_scope(root_path="/app", path="/app/run/more", raw_path=b"/app/run/more"),
        {"path_info": "/more"},
        {
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_SOFTWARE": "bridges",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REQUEST_METHOD": "GET",
            "REQUEST_SCHEME": "http",
            "REQUEST_URI": "/app/run/more",
            "SCRIPT_NAME": "/app",
            "PATH_INFO": "/more",
            "QUERY_STRING": "",
            "REMOTE_ADDR": "10.0.0.7",
            "REMOTE_PORT": "51234",
            "HTTP_HOST": "example.com",
        },
        id="path-info-override-alone-keeps-root-path-script-name",
    ),
    pytest.param(
        http_scope(
            method="POST",
            server=("/run/cgi.sock", None),
            headers=[
                (b"host", b"[::1]:8080"),
                (b"content-type", b"application/json"),
                (b"content-length", b"2"),
                (b"proxy", b"http://evil"),
                (b"x-forwarded_for", b"6.6.6.6"),
                (b"cookie", b"a=1"),
                (b"cookie", b"b=2"),
            ],
        ),
        {},
        {
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_SOFTWARE": "bridges",
            "SERVER_NAME": "[::1]",
            "SERVER_PORT": "8080",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REQUEST_METHOD": "POST",
            "REQUEST_SCHEME": "http",
            "REQUEST_URI": "/",
            "SCRIPT_NAME": "",
            "PATH_INFO": "/",
            "QUERY_STRING": "",
            "REMOTE_ADDR": "10.0.0.7",
            "REMOTE_PORT": "51234",
            "HTTP_HOST": "[::1]:8080",
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": "2",
            "HTTP_COOKIE": "a=1; b=2",
        },
        id="post-unix-socket-headers",
    ),
]


@pytest.mark.parametrize(("scope", "options", "expected"), CGI_CASES)
def test_scope_to_cgi_variables(
    scope: dict[str, Any], options: dict[str, Any], expected: dict[str, str]
) -> None:
    variables = scope_to_cgi_variables(scope, **options)
    assert variables == expected
    assert all(type(value) is str for value in variables.values())


def test_cgi_variables_policy_keep() -> None:
    scope = http_scope(headers=[(b"x_real_ip", b"1.2.3.4")])
    assert scope_to_cgi_variables(scope)["REMOTE_ADDR"] == "10.0.0.7"
    assert "HTTP_X_REAL_IP" not in scope_to_cgi_variables(scope)
    assert (
        scope_to_cgi_variables(scope, policy=HeaderPolicy(underscores="keep"))["HTTP_X_REAL_IP"] == "1.2.3.4"
    )


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        pytest.param(
            {"REQUEST_METHOD": "GET", "HTTP_PROXY": "http://evil", "HTTP_HOST": "h"},
            {"REQUEST_METHOD": "GET", "HTTP_HOST": "h"},
            id="httpoxy",
        ),
        pytest.param(
            {
                "CONTENT_TYPE": "a/b",
                "HTTP_CONTENT_TYPE": "c/d",
                "CONTENT_LENGTH": "1",
                "HTTP_CONTENT_LENGTH": "2",
            },
            {"CONTENT_TYPE": "a/b", "CONTENT_LENGTH": "1"},
            id="content-twins-dropped",
        ),
        pytest.param(
            {"CONTENT_LENGTH": "", "HTTP_CONTENT_LENGTH": "5"},
            {"CONTENT_LENGTH": ""},
            id="empty-content-length-still-wins",
        ),
        pytest.param(
            {"HTTP_CONTENT_TYPE": "c/d", "GATEWAY_INTERFACE": "CGI/1.1"},
            {"HTTP_CONTENT_TYPE": "c/d", "GATEWAY_INTERFACE": "CGI/1.1"},
            id="twin-without-content-type-kept",
        ),
    ],
)
def test_cgi_variables_to_environ(variables: dict[str, str], expected: dict[str, str]) -> None:
    assert cgi_variables_to_environ(variables) == expected


# --------------------------------------------------------------------------------------------------
# 2c. environ_to_scope: whole scope dicts (headers compared sorted: environ keys carry no order)
# --------------------------------------------------------------------------------------------------

SCOPE_CASES = [
    pytest.param(
        # What wsgiref.util.setup_testing_defaults({}) builds.
        {
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PROTOCOL": "HTTP/1.0",
            "HTTP_HOST": "127.0.0.1",
            "REQUEST_METHOD": "GET",
            "SCRIPT_NAME": "",
            "PATH_INFO": "/",
            "wsgi.version": (1, 0),
            "wsgi.run_once": 0,
            "wsgi.multithread": 0,
            "wsgi.multiprocess": 0,
            "wsgi.input": WSGI_INPUT,
            "wsgi.errors": WSGI_ERRORS,
            "wsgi.url_scheme": "http",
            "SERVER_PORT": "80",
        },
        {
            "type": "http",
            "asgi": ASGI,
            "http_version": "1.0",
            "method": "GET",
            "scheme": "http",
            "path": "/",
            "raw_path": b"/",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"127.0.0.1")],
            "server": ("127.0.0.1", 80),
            "client": None,
        },
        id="wsgiref-testing-defaults",
    ),
    pytest.param(
        {
            "REQUEST_METHOD": "POST",
            "SCRIPT_NAME": "/app",
            "PATH_INFO": "/caf\xc3\xa9",
            "QUERY_STRING": "x=1&y=%20",
            "REQUEST_URI": "/app/caf%C3%A9?x=1&y=%20",
            "SERVER_NAME": "example.com",
            "SERVER_PORT": "8080",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "192.0.2.1",
            "REMOTE_PORT": "40000",
            "CONTENT_TYPE": "text/plain",
            "CONTENT_LENGTH": "11",
            "HTTP_HOST": "example.com:8080",
            "HTTP_X_FORWARDED_FOR": "198.51.100.2",
            "wsgi.url_scheme": "http",
        },
        {
            "type": "http",
            "asgi": ASGI,
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/app/café",
            "raw_path": b"/app/caf%C3%A9",
            "query_string": b"x=1&y=%20",
            "root_path": "/app",
            "headers": [
                (b"content-length", b"11"),
                (b"content-type", b"text/plain"),
                (b"host", b"example.com:8080"),
                (b"x-forwarded-for", b"198.51.100.2"),
            ],
            "server": ("example.com", 8080),
            "client": ("192.0.2.1", 40000),
        },
        id="pep3333-mounted-post-request-uri",
    ),
    pytest.param(
        {
            "REQUEST_METHOD": "GET",
            "SCRIPT_NAME": "",
            "PATH_INFO": "/\xe6\x97\xa5\xe6\x9c\xac/a b",
            "QUERY_STRING": "",
            "SERVER_NAME": "localhost",
            "SERVER_PORT": "80",
            "wsgi.url_scheme": "http",
        },
        {
            "type": "http",
            "asgi": ASGI,
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": "/日本/a b",
            "raw_path": b"/%E6%97%A5%E6%9C%AC/a%20b",
            "query_string": b"",
            "root_path": "",
            "headers": [],
            "server": ("localhost", 80),
            "client": None,
        },
        id="no-request-uri-raw-path-quoted",
    ),
    pytest.param(
        {
            "REQUEST_METHOD": "GET",
            "SCRIPT_NAME": "",
            "PATH_INFO": "/100%/x",
            "QUERY_STRING": "",
            "SERVER_NAME": "localhost",
            "SERVER_PORT": "80",
        },
        {
            "type": "http",
            "asgi": ASGI,
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": "/100%/x",
            "raw_path": b"/100%25/x",
            "query_string": b"",
            "root_path": "",
            "headers": [],
            "server": ("localhost", 80),
            "client": None,
        },
        id="literal-percent-in-path-info-requoted",
    ),
    pytest.param(
        {
            "REQUEST_METHOD": "GET",
            "SCRIPT_NAME": "",
            "PATH_INFO": "/g",
            "QUERY_STRING": "a=b",
            "RAW_URI": "/g?a=b",
            "SERVER_NAME": "0.0.0.0",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "REMOTE_PORT": "55555",
            "HTTP_HOST": "localhost:8000",
            "wsgi.url_scheme": "http",
        },
        {
            "type": "http",
            "asgi": ASGI,
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": "/g",
            "raw_path": b"/g",
            "query_string": b"a=b",
            "root_path": "",
            "headers": [(b"host", b"localhost:8000")],
            "server": ("0.0.0.0", 8000),
            "client": ("127.0.0.1", 55555),
        },
        id="gunicorn-raw-uri",
    ),
    pytest.param(
        {
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_SOFTWARE": "Apache/2.4",
            "REQUEST_METHOD": "get",
            "SCRIPT_NAME": "/cgi-bin/app.cgi",
            "PATH_INFO": "/x",
            "QUERY_STRING": "",
            "REQUEST_URI": "/cgi-bin/app.cgi/x",
            "SERVER_NAME": "www.example.com",
            "SERVER_PORT": "443",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "203.0.113.9",
            "REMOTE_PORT": "61000",
            "HTTPS": "on",
            "HTTP_HOST": "www.example.com",
            "HTTP_PROXY": "http://evil.example:3128",
            "DOCUMENT_ROOT": "/var/www",
        },
        {
            "type": "http",
            "asgi": ASGI,
            "http_version": "1.1",
            "method": "GET",
            "scheme": "https",
            "path": "/cgi-bin/app.cgi/x",
            "raw_path": b"/cgi-bin/app.cgi/x",
            "query_string": b"",
            "root_path": "/cgi-bin/app.cgi",
            "headers": [(b"host", b"www.example.com")],
            "server": ("www.example.com", 443),
            "client": ("203.0.113.9", 61000),
        },
        id="cgi-https-on-and-httpoxy",
    ),
    pytest.param(
        {
            "GATEWAY_INTERFACE": "CGI/1.1",
            "REQUEST_METHOD": "PUT",
            "REQUEST_SCHEME": "https",
            "SCRIPT_NAME": "/s",
            "PATH_INFO": "",
            "QUERY_STRING": "",
            "SERVER_NAME": "h",
            "SERVER_PORT": "8443",
            "SERVER_PROTOCOL": "HTTP/2.0",
            "REMOTE_ADDR": "",
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": "2",
            "HTTP_CONTENT_TYPE": "text/evil",
            "HTTP_CONTENT_LENGTH": "999",
        },
        {
            "type": "http",
            "asgi": ASGI,
            "http_version": "2",
            "method": "PUT",
            "scheme": "https",
            "path": "/s",
            "raw_path": b"/s",
            "query_string": b"",
            "root_path": "/s",
            "headers": [(b"content-length", b"2"), (b"content-type", b"application/json")],
            "server": ("h", 8443),
            "client": None,
        },
        id="cgi-request-scheme-http2-content-twins-ignored",
    ),
    pytest.param(
        {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/",
            "SERVER_PROTOCOL": "HTTP/1.0",
            "SERVER_PORT": "80",
            "CONTENT_TYPE": "",
            "CONTENT_LENGTH": "",
            "HTTP_CONTENT_LENGTH": "5",
            "HTTPS": "off",
        },
        {
            "type": "http",
            "asgi": ASGI,
            "http_version": "1.0",
            "method": "GET",
            "scheme": "http",
            "path": "/",
            "raw_path": b"/",
            "query_string": b"",
            "root_path": "",
            "headers": [],
            "server": ("localhost", 80),
            "client": None,
        },
        id="empty-content-length-no-header",
    ),
    pytest.param(
        {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/",
            "HTTP_CONTENT_TYPE": "text/plain",
            "HTTP_COOKIE": "a=1; b=2",
            "HTTP_X_NAME": "caf\xe9",
            "REMOTE_ADDR": "10.1.1.1",
            "SERVER_PROTOCOL": "HTTP/3",
        },
        {
            "type": "http",
            "asgi": ASGI,
            "http_version": "3",
            "method": "GET",
            "scheme": "http",
            "path": "/",
            "raw_path": b"/",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"content-type", b"text/plain"), (b"cookie", b"a=1; b=2"), (b"x-name", b"caf\xe9")],
            "server": None,
            "client": ("10.1.1.1", 0),
        },
        id="twin-alone-used-latin-1-value-no-ports",
    ),
    pytest.param(
        {"REQUEST_METHOD": "OPTIONS", "SERVER_PROTOCOL": "SPDY/3", "SERVER_PORT": ""},
        {
            "type": "http",
            "asgi": ASGI,
            "http_version": "1.1",
            "method": "OPTIONS",
            "scheme": "http",
            "path": "",
            "raw_path": b"",
            "query_string": b"",
            "root_path": "",
            "headers": [],
            "server": None,
            "client": None,
        },
        id="sparse-environ-defaults",
    ),
]


@pytest.mark.parametrize(("environ", "expected"), SCOPE_CASES)
def test_environ_to_scope(environ: dict[str, Any], expected: dict[str, Any]) -> None:
    assert sorted_headers(dict(environ_to_scope(environ))) == sorted_headers(expected)


def test_environ_to_scope_matches_wsgiref_testing_defaults() -> None:
    environ: dict[str, Any] = {}
    wsgiref.util.setup_testing_defaults(environ)
    assert environ_to_scope(environ) == {
        "type": "http",
        "asgi": ASGI,
        "http_version": "1.0",
        "method": "GET",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1")],
        "server": ("127.0.0.1", 80),
        "client": None,
    }


@pytest.mark.parametrize(
    ("environ", "scheme"),
    [
        pytest.param({"wsgi.url_scheme": "https", "HTTPS": "off"}, "https", id="url-scheme-wins"),
        pytest.param({"HTTPS": "on"}, "https", id="https-on"),
        pytest.param({"HTTPS": "ON"}, "https", id="https-on-uppercase"),
        pytest.param({"HTTPS": "1"}, "https", id="https-1"),
        pytest.param({"HTTPS": "off"}, "http", id="https-off"),
        pytest.param({"REQUEST_SCHEME": "https"}, "https", id="request-scheme"),
        pytest.param({}, "http", id="default"),
    ],
)
def test_environ_to_scope_scheme(environ: dict[str, Any], scheme: str) -> None:
    assert environ_to_scope(environ)["scheme"] == scheme


def test_environ_to_scope_never_produces_proxy_header() -> None:
    scope = environ_to_scope({"HTTP_PROXY": "http://evil", "HTTP_X_A": "1"})
    assert scope["headers"] == [(b"x-a", b"1")]


# --------------------------------------------------------------------------------------------------
# 3. Header limits and linear work
# --------------------------------------------------------------------------------------------------


def test_max_repeats_boundary() -> None:
    policy = HeaderPolicy(max_repeats=3)
    assert headers_to_environ([(b"x-a", b"1")] * 3, policy) == {"HTTP_X_A": "1,1,1"}
    with pytest.raises(RemoteProtocolError) as caught:
        headers_to_environ([(b"x-a", b"1")] * 4, policy)
    assert caught.value.status_code == 431


def test_default_max_repeats_is_100() -> None:
    assert headers_to_environ([(b"x-a", b"v")] * 100) == {"HTTP_X_A": ",".join(["v"] * 100)}
    with pytest.raises(RemoteProtocolError) as caught:
        headers_to_environ([(b"x-a", b"v")] * 101)
    assert caught.value.status_code == 431


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param([(b"cookie", b"a=1")] * 6, id="cookie"),
        pytest.param([(b"X-A", b"1"), (b"x-a", b"2")] * 3, id="case-insensitive"),
        pytest.param([(b"content-length", b"0")] * 6, id="identical-content-length"),
        pytest.param([(b"content-type", b"a/b")] * 6, id="content-type"),
    ],
)
def test_max_repeats_counts_every_name(headers: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        headers_to_environ(headers, HeaderPolicy(max_repeats=5))
    assert caught.value.status_code == 431


def test_repeat_limit_applies_to_every_translation() -> None:
    scope = http_scope(headers=[(b"x-a", b"1")] * 101)
    for translate in (scope_to_environ, scope_to_cgi_variables):
        with pytest.raises(RemoteProtocolError) as caught:
            translate(scope)
        assert caught.value.status_code == 431


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param([(b"content-length", b"5"), (b"content-length", b"6")], id="different"),
        pytest.param([(b"Content-Length", b"5"), (b"content-length", b"05")], id="different-spelling"),
        pytest.param([(b"content-length", b"5")] * 3 + [(b"content-length", b"")], id="late-empty"),
    ],
)
def test_conflicting_content_length_is_400(headers: list[tuple[bytes, bytes]]) -> None:
    for translate in (scope_to_environ, scope_to_cgi_variables):
        with pytest.raises(RemoteProtocolError) as caught:
            translate(http_scope(headers=headers))
        assert caught.value.status_code == 400


@pytest.mark.timeout(5)
def test_many_distinct_headers_translate_linearly() -> None:
    count = 100_000
    headers = [(f"x-h-{i}".encode(), f"v{i}".encode()) for i in range(count)]
    environ = scope_to_environ(http_scope(headers=headers), policy=HeaderPolicy(underscores="keep"))
    http_vars = {key: value for key, value in environ.items() if key.startswith("HTTP_X_H_")}
    assert http_vars == {f"HTTP_X_H_{i}": f"v{i}" for i in range(count)}
    scope = environ_to_scope(environ)
    assert len(scope["headers"]) == count
    assert sorted(scope["headers"]) == sorted(headers)


@pytest.mark.timeout(5)
def test_many_repeats_of_one_header_translate_linearly() -> None:
    count = 10_000
    # 4,000-byte values: re-joining the value on every repeat would copy ~200 GB and time out.
    values = [f"{i:05d}".encode() * 800 for i in range(count)]
    policy = HeaderPolicy(max_repeats=20_000)
    headers = [(b"x-many", value) for value in values]
    environ = scope_to_environ(http_scope(headers=headers), policy=policy)
    assert environ["HTTP_X_MANY"] == ",".join(value.decode() for value in values)
    cookies = [(b"cookie", b"c%d=%d" % (i, i)) for i in range(count)]
    variables = scope_to_cgi_variables(http_scope(headers=cookies), policy=policy)
    assert variables["HTTP_COOKIE"] == "; ".join(f"c{i}={i}" for i in range(count))


# --------------------------------------------------------------------------------------------------
# 4. Round trips
# --------------------------------------------------------------------------------------------------

SERVER_SCOPES = [
    pytest.param(server_scope(b"/", [(b"host", b"example.com")]), id="root"),
    pytest.param(
        server_scope(b"/search?q=caf%C3%A9&n=1", [(b"host", b"example.com"), (b"accept", b"*/*")]),
        id="query",
    ),
    pytest.param(
        server_scope(b"/caf%C3%A9/%E6%97%A5%E6%9C%AC", [(b"host", b"example.com")], root_path="/app"),
        id="mounted-non-ascii",
    ),
    pytest.param(server_scope(b"", [(b"host", b"example.com")], root_path="/app"), id="mounted-exact"),
    pytest.param(
        server_scope(
            b"/upload",
            [
                (b"Host", b"example.com"),
                (b"Content-Type", b"multipart/form-data; boundary=x"),
                (b"Content-Length", b"1234"),
                (b"Cookie", b"session=abc; theme=dark"),
                (b"Authorization", b"Basic dXNlcjpwdw=="),
                (b"X-Name", b"caf\xe9"),
            ],
            method="POST",
            scheme="https",
        ),
        id="post-https",
    ),
    pytest.param(server_scope(b"/a%2Fb%20c", [(b"host", b"h")], http_version="1.0"), id="encoded-slash"),
    pytest.param(server_scope(b"/v", [(b"host", b"h")], http_version="2"), id="http2"),
]


@pytest.mark.parametrize("scope", SERVER_SCOPES)
def test_server_scope_round_trips_unchanged(scope: dict[str, Any]) -> None:
    assert sorted_headers(round_trip(scope)) == sorted_headers(scope)


NORMALISED_SCOPES = [
    pytest.param(
        http_scope(
            root_path="/app/",
            path="/app/x",
            raw_path=None,
            headers=[(b"Host", b"h"), (b"Cookie", b"a=1"), (b"cookie", b"b=2"), (b"x_y", b"1")],
        ),
        id="trailing-slash-root-cookies-underscore",
    ),
    pytest.param(
        http_scope(
            server=("/run/app.sock", None),
            client=("peer", None),
            headers=[(b"host", b"[::1]:8080"), (b"proxy", b"p"), (b"accept", b"a"), (b"accept", b"b")],
        ),
        id="unix-socket",
    ),
    pytest.param(http_scope(root_path="/app", path="/apple", raw_path=b"/apple"), id="outside-mount-point"),
    pytest.param(
        {"type": "http", "method": "GET", "path": "/100%/é", "headers": [(b"content-length", b"0")] * 2},
        id="minimal-scope",
    ),
]


@pytest.mark.parametrize("scope", NORMALISED_SCOPES)
def test_round_trip_is_stable_after_one_pass(scope: dict[str, Any]) -> None:
    once = round_trip(scope)
    assert round_trip(once) == once


def test_round_trip_normalises_as_documented() -> None:
    scope = NORMALISED_SCOPES[0].values[0]
    assert round_trip(scope) == {
        "type": "http",
        "asgi": ASGI,
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/app/x",
        "raw_path": b"/app/x",
        "query_string": b"",
        "root_path": "/app",
        "headers": [(b"host", b"h"), (b"cookie", b"a=1; b=2")],
        "server": ("127.0.0.1", 8000),
        "client": ("10.0.0.7", 51234),
    }


# Property: generated paths (any text but surrogates, which no decoded URL holds), mount points,
# query strings and headers survive scope -> environ -> scope, and the environ holds WSGI strings.

_tricky = st.sampled_from(["%", "%41", "%2F", "%25", "?", "#", ";", " ", "+", "é", "日本", "\x00", "\x7f"])
_segment = st.lists(
    st.characters(exclude_categories=("Cs",), exclude_characters="/") | _tricky, max_size=6
).map("".join)
_segments = st.lists(_segment, min_size=1, max_size=4)
_name_chars = string.ascii_lowercase + string.digits + "-!#$%&'*+.^`|~"
_header_name = st.text(st.sampled_from(_name_chars), min_size=1, max_size=12).filter(
    lambda name: name not in ("proxy", "content-length")
)
_header_value = st.binary(max_size=16).filter(lambda value: b"," not in value)


@st.composite
def _scopes(draw: st.DrawFn) -> tuple[dict[str, Any], bool]:
    root = "/" + "/".join(draw(_segments)) if draw(st.booleans()) else ""
    rest = "/" + "/".join(draw(_segments)) if draw(st.booleans()) or not root else ""
    trailing = "/" if root and draw(st.booleans()) else ""
    path = root + rest
    with_raw_path = draw(st.booleans())
    headers = draw(st.dictionaries(_header_name, _header_value, max_size=6))
    scope = http_scope(
        method=draw(st.sampled_from(["GET", "POST", "DELETE", "PATCH"])),
        scheme=draw(st.sampled_from(["http", "https"])),
        http_version=draw(st.sampled_from(["1.0", "1.1", "2"])),
        root_path=root + trailing,
        path=path,
        raw_path=quote(path.encode("utf-8")).encode("ascii") if with_raw_path else None,
        query_string=draw(st.binary(max_size=24).filter(lambda query: b"#" not in query)),
        headers=[(name.encode("latin-1"), value) for name, value in headers.items()],
        server=(draw(st.sampled_from(["127.0.0.1", "example.com"])), draw(st.integers(1, 65535))),
        client=draw(st.none() | st.tuples(st.sampled_from(["10.0.0.1", "::1"]), st.integers(1, 65535))),
    )
    return scope, with_raw_path


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_scopes())
def test_property_round_trip(case: tuple[dict[str, Any], bool]) -> None:
    scope, with_raw_path = case
    environ = scope_to_environ(scope, wsgi_input=WSGI_INPUT, wsgi_errors=WSGI_ERRORS)
    script_name, path_info = environ["SCRIPT_NAME"], environ["PATH_INFO"]

    # WSGI strings: latin-1 encodable, and together the UTF-8 bytes of the path.
    assert (script_name + path_info).encode("latin-1").decode("utf-8") == scope["path"]
    assert script_name == to_wsgi_string(scope["root_path"].rstrip("/"))
    assert path_info.encode("latin-1") == scope["path"].encode("utf-8")[len(script_name) :]
    assert not path_info or path_info.startswith("/")
    target = environ["REQUEST_URI"].split("?", 1)[0]
    assert unquote_to_bytes(target) == scope["path"].encode("utf-8")
    assert all(type(value) is str for key, value in environ.items() if "." not in key)
    assert "HTTP_PROXY" not in environ
    assert "HTTP_CONTENT_TYPE" not in environ and "HTTP_CONTENT_LENGTH" not in environ

    back = dict(environ_to_scope(environ))
    expected = {**scope, "root_path": scope["root_path"].rstrip("/")}
    if not with_raw_path:
        expected["raw_path"] = target.encode("ascii")
    assert sorted_headers(back) == sorted_headers(expected)
    assert round_trip(back) == back


@settings(max_examples=200, deadline=None)
@given(
    path=st.text(st.characters(exclude_categories=("Cs",)), max_size=20).map(lambda text: "/" + text),
    headers=st.lists(
        st.tuples(st.sampled_from([b"Cookie", b"cookie", b"X-A", b"x_b", b"proxy", b"Host"]), _header_value),
        max_size=8,
    ),
    unix=st.booleans(),
)
def test_property_round_trip_stable_after_one_pass(
    path: str, headers: list[tuple[bytes, bytes]], unix: bool
) -> None:
    scope = {"type": "http", "method": "GET", "path": path, "headers": headers}
    if unix:
        scope["server"] = ("/run/app.sock", None)
    once = round_trip(scope)
    assert once["path"] == path
    assert all(name in (b"cookie", b"x-a", b"host") for name, _ in once["headers"])
    assert round_trip(once) == once


@settings(max_examples=200, deadline=None)
@given(
    path=st.text(st.characters(exclude_categories=("Cs",)), max_size=20).map(lambda text: "/" + text),
    root=_segment.map(lambda text: "/" + text),
)
def test_property_cgi_paths_are_wsgi_strings(path: str, root: str) -> None:
    variables = scope_to_cgi_variables(
        http_scope(path=root + path, root_path=root, raw_path=None), document_root="/srv"
    )
    script_name, path_info = variables["SCRIPT_NAME"], variables["PATH_INFO"]
    assert (script_name + path_info).encode("latin-1").decode("utf-8") == root + path
    assert variables["PATH_TRANSLATED"] == "/srv" + path_info
    assert all(type(value) is str for value in variables.values())


# --------------------------------------------------------------------------------------------------
# 5. Reference: a2wsgi 1.10.10 build_environ
# --------------------------------------------------------------------------------------------------

COMPARED_KEYS = (
    "REQUEST_METHOD",
    "SCRIPT_NAME",
    "PATH_INFO",
    "QUERY_STRING",
    "CONTENT_TYPE",
    "CONTENT_LENGTH",
    "SERVER_NAME",
    "SERVER_PORT",
    "SERVER_PROTOCOL",
    "REMOTE_ADDR",
    "REMOTE_PORT",
)


def _key_fields(environ: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in environ.items() if key in COMPARED_KEYS or key.startswith("HTTP_")}


def _both(scope: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    ours = _key_fields(scope_to_environ(scope, wsgi_input=WSGI_INPUT, wsgi_errors=WSGI_ERRORS))
    theirs = _key_fields(a2wsgi_build_environ(scope, WSGI_INPUT))  # type: ignore[arg-type]
    return ours, theirs


@pytest.fixture
def no_script_name_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # a2wsgi overrides SCRIPT_NAME from os.environ["SCRIPT_NAME"] when it is set.
    monkeypatch.delenv("SCRIPT_NAME", raising=False)


@pytest.mark.usefixtures("no_script_name_env")
@pytest.mark.parametrize(
    "scope",
    [
        pytest.param(SERVER_SCOPES[1].values[0], id="query"),
        pytest.param(SERVER_SCOPES[2].values[0], id="mounted-non-ascii"),
        pytest.param(
            server_scope(
                b"/upload?x=1",
                [
                    (b"host", b"example.com"),
                    (b"content-type", b"text/plain"),
                    (b"content-length", b"3"),
                    (b"accept", b"a"),
                    (b"accept", b"b"),
                    (b"x-name", b"caf\xe9"),
                ],
                method="POST",
                http_version="1.0",
            ),
            id="post",
        ),
    ],
)
def test_agrees_with_a2wsgi_on_ordinary_requests(scope: dict[str, Any]) -> None:
    ours, theirs = _both(scope)
    assert ours == theirs


@pytest.mark.usefixtures("no_script_name_env")
def test_differences_from_a2wsgi() -> None:
    scope = server_scope(
        b"/apple",
        [
            (b"host", b"example.com:8080"),
            (b"cookie", b"a=1"),
            (b"cookie", b"b=2"),
            (b"proxy", b"http://evil.example:3128"),
            (b"x-forwarded_for", b"6.6.6.6"),
        ],
    )
    scope.update(root_path="/app", server=("/run/app.sock", None))
    ours, theirs = _both(scope)
    differences = {key: (ours.get(key), theirs.get(key)) for key in ours.keys() | theirs.keys()}
    differences = {key: pair for key, pair in differences.items() if pair[0] != pair[1]}
    assert differences == {
        # root_path "/app" is not a segment prefix of "/apple": a2wsgi cuts the string anyway and
        # hands the app PATH_INFO "le", which does not even start with "/" (PEP 3333 / RFC 3875
        # section 4.1.5 require it). Keeping "/apple" is right.
        "PATH_INFO": ("/apple", "le"),
        # For a unix-socket server ("/run/app.sock", None) a2wsgi puts the socket path in SERVER_NAME
        # and "0" in SERVER_PORT; URL reconstruction (PEP 3333) then yields http://example.com:8080
        # only via HTTP_HOST. SERVER_NAME/PORT from the Host header are the right values.
        "SERVER_NAME": ("example.com", "/run/app.sock"),
        "SERVER_PORT": ("8080", "0"),
        # RFC 6265 section 5.4: a user agent sends one Cookie header whose pairs are separated by
        # "; ". a2wsgi joins repeats with "," which makes "a=1,b=2" a single cookie "a" with value
        # "1,b=2". Ours is right.
        "HTTP_COOKIE": ("a=1; b=2", "a=1,b=2"),
        # httpoxy (CVE-2016-5385): a client-sent "Proxy:" header becomes HTTP_PROXY, which CGI-era
        # libraries read as the outgoing proxy. a2wsgi passes it through; that is their bug.
        "HTTP_PROXY": (None, "http://evil.example:3128"),
        # "X-Forwarded_For" would be indistinguishable from "X-Forwarded-For" in the environ, so a
        # client could spoof the header a proxy sets. nginx and Apache drop such names; so do we.
        "HTTP_X_FORWARDED_FOR": (None, "6.6.6.6"),
    }


@pytest.mark.usefixtures("no_script_name_env")
def test_differences_from_a2wsgi_trailing_slash_root_path() -> None:
    scope = server_scope(b"/x", [(b"host", b"h")])
    scope.update(root_path="/app/", path="/app/x", raw_path=b"/app/x")
    ours, theirs = _both(scope)
    # a2wsgi keeps SCRIPT_NAME "/app/" and PATH_INFO "x": SCRIPT_NAME + PATH_INFO is still the path,
    # but a PATH_INFO without its leading "/" breaks routers (and PEP 3333 / RFC 3875 4.1.5).
    assert (ours["SCRIPT_NAME"], ours["PATH_INFO"]) == ("/app", "/x")
    assert (theirs["SCRIPT_NAME"], theirs["PATH_INFO"]) == ("/app/", "x")
    assert {key: value for key, value in ours.items() if key not in ("SCRIPT_NAME", "PATH_INFO")} == {
        key: value for key, value in theirs.items() if key not in ("SCRIPT_NAME", "PATH_INFO")
    }


@pytest.mark.usefixtures("no_script_name_env")
def test_differences_from_a2wsgi_non_ascii_query_string() -> None:
    scope = server_scope(b"/q", [(b"host", b"h")])
    scope["query_string"] = b"name=caf\xe9"  # a raw byte some clients send unescaped
    # PEP 3333: environ strings hold bytes as latin-1, so every query byte is representable.
    assert scope_to_environ(scope)["QUERY_STRING"] == "name=caf\xe9"
    # a2wsgi decodes the query string as ASCII and fails on the request; ours is right.
    with pytest.raises(UnicodeDecodeError):
        a2wsgi_build_environ(scope, WSGI_INPUT)  # type: ignore[arg-type]
