"""Two-leg correlation: match each back leg (proxy -> server, carrying a PROXY header)
with the front leg (client -> proxy) it relays, by the client address and port the
header names, and tell which addresses are proxies."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from proxydiag.model import Connection

RELAY_WINDOW = 2.0  # seconds between a proxy accepting a client and connecting onwards


@dataclass
class LegIndex:
    by_client: dict[tuple[str, int], list[Connection]] = field(default_factory=dict)
    by_source_addr: dict[str, list[Connection]] = field(default_factory=dict)
    proxies: set[str] = field(default_factory=set)
    onward_by_front: dict[int, Connection] = field(default_factory=dict)

    @classmethod
    def build(cls, connections: list[Connection]) -> LegIndex:
        index = cls()
        for conn in connections:
            index.by_client.setdefault((conn.tcp.src_addr, conn.tcp.src_port), []).append(conn)
            index.by_source_addr.setdefault(conn.tcp.src_addr, []).append(conn)
            if conn.header is not None:
                index.proxies.add(conn.tcp.src_addr)
        for conn in connections:
            front = index.front_leg(conn)
            if front is not None:
                index.onward_by_front.setdefault(front.id, conn)
        return index

    def is_proxy(self, address: str) -> bool:
        return address in self.proxies

    def front_leg(self, back: Connection) -> Connection | None:
        """The client's connection to the proxy that this back leg relays: its source is
        the header's source; among candidates, the one that started last before it."""
        header = back.header
        if header is None or not header.carries_address or header.src_port is None:
            return None
        candidates = [
            conn
            for conn in self.by_client.get((_unmapped(header.src_addr), header.src_port), [])
            if conn is not back and conn.start_ts <= back.start_ts + 1.0
            and (header.dst_port is None or conn.tcp.dst_port == header.dst_port)
        ]
        return max(candidates, key=lambda conn: conn.start_ts, default=None)


    def onward_leg(self, front: Connection) -> Connection | None:
        """The connection the server side of `front` opened onwards right after accepting
        it, when that server is a relay (a proxy): matched by the header when there is
        one, else by timing alone."""
        if front.id in self.onward_by_front:
            return self.onward_by_front[front.id]
        candidates = [
            conn
            for conn in self.by_source_addr.get(front.tcp.dst_addr, [])
            if conn is not front and 0 <= conn.start_ts - front.start_ts <= RELAY_WINDOW
        ]
        for conn in candidates:
            header = conn.header
            if header is not None and header.src_port == front.tcp.src_port:
                return conn
        return min(candidates, key=lambda conn: conn.start_ts, default=None)


def _unmapped(address: str) -> str:
    """An IPv4-mapped IPv6 address as the IPv4 address the front leg shows."""
    try:
        mapped = ipaddress.ip_address(address).ipv4_mapped if ":" in address else None
    except ValueError:
        return address
    return str(mapped) if mapped else address
