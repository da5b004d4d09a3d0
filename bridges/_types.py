"""Type aliases shared by every module: ASGI, WSGI and CGI shapes in one place."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from types import TracebackType
from typing import Any, Protocol

# ASGI (https://asgi.readthedocs.io/en/latest/specs/main.html)
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

# WSGI (PEP 3333)
Environ = dict[str, Any]
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
OptExcInfo = ExcInfo | tuple[None, None, None]
WriteCallable = Callable[[bytes], object]


class StartResponse(Protocol):
    def __call__(
        self,
        status: str,
        headers: list[tuple[str, str]],
        exc_info: OptExcInfo | None = ...,
        /,
    ) -> WriteCallable: ...


WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

# CGI/1.1 meta-variables (RFC 3875 section 4.1): names to str values.
CGIVariables = dict[str, str]
