"""bridges: run any web app under any gateway interface (CGI, FastCGI, WSGI, ASGI).

Only the names in `__all__` are public; every other module and name is private. Names are
imported on first use (PEP 562), so `import bridges` stays cheap for one-request CGI processes.
"""

from __future__ import annotations

import importlib

from ._version import __version__

TYPE_CHECKING = False  # Not typing.TYPE_CHECKING: importing typing costs a CGI process ~6 ms.
if TYPE_CHECKING:
    from typing import Any

    from ._exceptions import (
        BridgeError,
        ClientDisconnected,
        ConfigurationError,
        LifespanFailure,
        LocalProtocolError,
        ProtocolError,
        RemoteProtocolError,
    )
    from .asgi_to_wsgi import ASGIToWSGI
    from .cgi_host import run_cgi
    from .cgi_runner import CGIToASGI, CGIToWSGI
    from .config import Config
    from .fastcgi_client import FastCGIToASGI
    from .server import serve
    from .translate import HeaderPolicy, environ_to_scope, scope_to_cgi_variables, scope_to_environ
    from .wsgi_to_asgi import FileWrapper, WSGIToASGI

__all__ = [
    "ASGIToWSGI",
    "BridgeError",
    "CGIToASGI",
    "CGIToWSGI",
    "ClientDisconnected",
    "Config",
    "ConfigurationError",
    "FastCGIToASGI",
    "FileWrapper",
    "HeaderPolicy",
    "LifespanFailure",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
    "WSGIToASGI",
    "__version__",
    "environ_to_scope",
    "run_cgi",
    "scope_to_cgi_variables",
    "scope_to_environ",
    "serve",
]

_HOMES = {
    "ASGIToWSGI": ".asgi_to_wsgi",
    "BridgeError": "._exceptions",
    "CGIToASGI": ".cgi_runner",
    "CGIToWSGI": ".cgi_runner",
    "ClientDisconnected": "._exceptions",
    "Config": ".config",
    "ConfigurationError": "._exceptions",
    "FastCGIToASGI": ".fastcgi_client",
    "FileWrapper": ".wsgi_to_asgi",
    "HeaderPolicy": ".translate",
    "LifespanFailure": "._exceptions",
    "LocalProtocolError": "._exceptions",
    "ProtocolError": "._exceptions",
    "RemoteProtocolError": "._exceptions",
    "WSGIToASGI": ".wsgi_to_asgi",
    "environ_to_scope": ".translate",
    "run_cgi": ".cgi_host",
    "scope_to_cgi_variables": ".translate",
    "scope_to_environ": ".translate",
    "serve": ".server",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'bridges' has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
