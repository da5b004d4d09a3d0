"""Trusted proxy headers: take the client address and scheme from X-Forwarded-* or Forwarded.

Pure functions over an ASGI scope. Headers are believed only when the direct peer is a trusted
proxy; then the client is the right-most address in the chain that is not itself trusted (so a
client cannot forge its address by sending its own X-Forwarded-For). RFC 7239 `Forwarded` wins
over the X-Forwarded-* pair when both are present.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Literal

from ._types import Scope

__all__ = ["Trusted", "apply_proxy_headers", "is_trusted", "parse_forwarded"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Trusted = Sequence[Network] | Literal["*"]


def is_trusted(host: str, trusted: Trusted) -> bool:
    """Whether `host` (an IP address text) is one of the trusted proxies."""
    if trusted == "*":
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return any(address in network for network in trusted)


def parse_forwarded(value: str) -> list[dict[str, str]]:
    """Parse an RFC 7239 Forwarded header into one dict per hop (keys lower-cased, quotes removed)."""
    hops: list[dict[str, str]] = []
    for element in value.split(","):
        hop: dict[str, str] = {}
        for pair in element.split(";"):
            name, sep, item = pair.strip().partition("=")
            if sep and name:
                hop[name.strip().lower()] = item.strip().strip('"')
        if hop:
            hops.append(hop)
    return hops


def _strip_port(node: str) -> str:
    if node.startswith("["):
        return node[1 : node.find("]")] if "]" in node else node
    if node.count(":") == 1:
        return node.split(":", 1)[0]
    return node


def apply_proxy_headers(scope: Scope, trusted: Trusted) -> None:
    """Rewrite `scope["client"]` and `scope["scheme"]` from proxy headers if the peer is trusted."""
    client = scope.get("client")
    if client is None:
        if trusted != "*":  # A unix-socket peer has no address: only "trust everyone" covers it.
            return
    elif not is_trusted(client[0], trusted):
        return
    forwarded_parts: list[str] = []
    for_parts: list[str] = []
    x_proto = None
    for name, value in scope["headers"]:
        if name == b"forwarded":
            forwarded_parts.append(value.decode("latin-1"))
        elif name == b"x-forwarded-for":
            for_parts.append(value.decode("latin-1"))
        elif name == b"x-forwarded-proto":
            x_proto = value.decode("latin-1")
    forwarded = ",".join(forwarded_parts) if forwarded_parts else None
    x_for = ",".join(for_parts) if for_parts else None
    chain: list[str] = []
    proto = None
    if forwarded is not None:
        hops = parse_forwarded(forwarded)
        chain = [_strip_port(hop["for"]) for hop in hops if "for" in hop]
        protos = [hop["proto"] for hop in hops if "proto" in hop]
        proto = protos[-1] if protos else None
    elif x_for is not None or x_proto is not None:
        chain = [item.strip() for item in (x_for or "").split(",") if item.strip()]
        proto = x_proto.split(",")[-1].strip() if x_proto else None
    if proto:
        proto = proto.lower()
        if proto in ("http", "https", "ws", "wss"):
            websocket = scope["type"] == "websocket"
            scope["scheme"] = {"http": "ws", "https": "wss"}.get(proto, proto) if websocket else proto
    for host in reversed(chain):
        if not is_trusted(host, trusted):
            scope["client"] = (host, 0)
            return
    if chain:
        scope["client"] = (chain[0], 0)
