"""bridges: run any web app under any gateway interface (CGI, FastCGI, WSGI, ASGI).

Only the names in `__all__` are public; every other module and name is private.
"""

from ._exceptions import (
    BridgeError,
    ClientDisconnected,
    ConfigurationError,
    LifespanFailure,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
)
from ._version import __version__
from .asgi_to_wsgi import ASGIToWSGI
from .translate import (
    HeaderPolicy,
    environ_to_scope,
    scope_to_cgi_variables,
    scope_to_environ,
)
from .wsgi_to_asgi import FileWrapper, WSGIToASGI

__all__ = [
    "ASGIToWSGI",
    "BridgeError",
    "ClientDisconnected",
    "ConfigurationError",
    "FileWrapper",
    "HeaderPolicy",
    "LifespanFailure",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
    "WSGIToASGI",
    "__version__",
    "environ_to_scope",
    "scope_to_cgi_variables",
    "scope_to_environ",
]
