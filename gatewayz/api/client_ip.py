"""Who the client is on the network: the socket peer, unless that peer is a trusted reverse proxy.

Behind trusted proxies, X-Forwarded-For is read from the right (each proxy appends the address it saw), skipping
trusted hops: the first untrusted address is the client. Anything left of it was written by the client and is
never believed, so a spoofed header from an untrusted peer changes nothing. Every place that needs the client's
address (limits, allowlists, key restrictions, the account routes) asks `TrustedProxies.client_ip`."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
UNKNOWN = "unknown"
_SCOPE_KEY = "gw.client_ip"


def parse_address(text: str) -> Address | None:
    """An address as a proxy writes it: bare, `[v6]`, `[v6]:port` or `v4:port`; None when it is not one."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


class TrustedProxies:
    def __init__(self, networks: Iterable[str]) -> None:
        self._networks = tuple(ipaddress.ip_network(n, strict=False) for n in networks)

    def trusts(self, addr: Address) -> bool:
        return any(addr in net for net in self._networks)

    def client_ip(self, scope: Any) -> str:
        """The client's address as text (computed once per request, kept in the scope)."""
        known = scope.get(_SCOPE_KEY)
        if known is None:
            known = scope[_SCOPE_KEY] = self._resolve(scope)
        return str(known)

    def _resolve(self, scope: Any) -> str:
        client = scope.get("client")
        peer = str(client[0]) if client else UNKNOWN
        if not self._networks:
            return peer
        addr = parse_address(peer)
        if addr is None or not self.trusts(addr):
            return peer
        hops = [h for name, value in scope["headers"] if name == b"x-forwarded-for"
                for h in value.decode("latin-1").split(",")]
        for hop in reversed(hops):
            parsed = parse_address(hop)
            if parsed is None:
                break  # garbage left of a trusted hop: the last address we could believe is the client
            addr = parsed
            if not self.trusts(addr):
                break
        return str(addr)
