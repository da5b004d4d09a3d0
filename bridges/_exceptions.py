"""The one error hierarchy of bridges.

Every error bridges raises on purpose derives from `BridgeError`::

    BridgeError
    ├── ConfigurationError        bad options, an import string that names no app (CLI exit 2)
    ├── LifespanFailure           the app's lifespan startup failed or timed out
    ├── ProtocolError             a gateway protocol (HTTP, ASGI, WSGI, CGI, FastCGI) was broken
    │   ├── LocalProtocolError    ...by our side: the app we host sent something invalid
    │   └── RemoteProtocolError   ...by the peer: a client, server or backend sent something invalid;
    │                             `status_code` is the HTTP status to answer with (400, 431, 502, ...)
    └── ClientDisconnected        the client went away; also an `OSError`, as ASGI 2.4 asks of `send()`

Local errors mean "fix the app or the configuration"; remote errors mean "the other end
misbehaved" and are answered (4xx/5xx) or logged, never allowed to crash the process.
"""

from __future__ import annotations

__all__ = [
    "BridgeError",
    "ClientDisconnected",
    "ConfigurationError",
    "LifespanFailure",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
]


class BridgeError(Exception):
    """Root of every error bridges raises on purpose."""


class ConfigurationError(BridgeError):
    """An option, a target or an app given to bridges cannot be used as it is."""


class LifespanFailure(BridgeError):
    """The app's lifespan startup failed (`lifespan.startup.failed`, an exception, or a time-out)."""


class ProtocolError(BridgeError):
    """A gateway protocol was broken; see the two subclasses for which side broke it."""


class LocalProtocolError(ProtocolError):
    """The app we host broke its protocol (e.g. two `start_response` calls, ASGI messages out of order)."""


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol; `status_code` is what to answer it with."""

    def __init__(self, message: str, *, status_code: int = 400) -> None:
        super().__init__(message)
        self.status_code = status_code


class ClientDisconnected(BridgeError, OSError):
    """The client closed the connection; reading the body or sending the response is pointless."""
