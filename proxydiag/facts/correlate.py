"""Legs and chains: match each leg a proxy opened with the leg it relays, hop by hop,
so that client -> relay -> proxy -> server is one chain and each hop can be judged.

A leg carrying a PROXY header is matched by the client address and port the header
names; a leg without one (a plain L4 relay forwards the bytes untouched) by timing,
by the relay's address, and by the same conversation on both sides."""

from __future__ import annotations

import ipaddress
from collections import deque
from collections.abc import Container, Iterable
from typing import Hashable, TypeVar

from proxydiag.facts.model import Connection

RELAY_WINDOW = 2.0  # seconds between a proxy accepting a client and connecting onwards


class LegIndex:
    """The legs of a window of connections, by the addresses that match them. Judging
    adds connections in the order they started and removes them once no leg judged
    later can be their partner, so the index holds a window, not the capture."""

    def __init__(self, proxies: Container[str] = frozenset()) -> None:
        self.by_client: dict[tuple[str, int], deque[Connection]] = {}
        self.by_source_addr: dict[str, deque[Connection]] = {}
        self.by_dest_addr: dict[str, deque[Connection]] = {}
        self.proxies = proxies  # addresses that sent PROXY headers anywhere in the capture
        self.onward_by_front: dict[int, Connection] = {}

    @classmethod
    def build(cls, connections: Iterable[Connection], proxies: Container[str] | None = None) -> LegIndex:
        """The index of every connection given (all at once: small inputs and tests)."""
        connections = list(connections)
        index = cls(proxies if proxies is not None else {conn.tcp.src_addr for conn in connections if conn.header})
        for conn in connections:
            index.add(conn)
        return index

    def add(self, conn: Connection) -> None:
        _push(self.by_client, (conn.tcp.src_addr, conn.tcp.src_port), conn)
        _push(self.by_source_addr, conn.tcp.src_addr, conn)
        _push(self.by_dest_addr, conn.tcp.dst_addr, conn)
        front = self.front_leg(conn)
        if front is not None:
            self.onward_by_front.setdefault(front.id, conn)

    def remove(self, conn: Connection) -> None:
        """Let go of a connection added earlier (the oldest first, as the window moves)."""
        _pull(self.by_client, (conn.tcp.src_addr, conn.tcp.src_port), conn)
        _pull(self.by_source_addr, conn.tcp.src_addr, conn)
        _pull(self.by_dest_addr, conn.tcp.dst_addr, conn)
        if self.onward_by_front.get(conn.id) is not None:
            del self.onward_by_front[conn.id]

    def is_proxy(self, address: str) -> bool:
        return address in self.proxies

    def front_leg(self, back: Connection) -> Connection | None:
        """The client's connection to the proxy that this back leg relays: its source is
        the header's source; among candidates, the one that started last before it."""
        header = back.header
        if header is None or header.src_addr is None or header.src_port is None:
            return None
        candidates = [
            conn
            for conn in self.by_client.get((_unmapped(header.src_addr), header.src_port), [])
            if conn is not back and conn.start_ts <= back.start_ts + 1.0
            and (header.dst_port is None or conn.tcp.dst_port == header.dst_port)
        ]
        return max(candidates, key=lambda conn: conn.start_ts, default=None)

    def previous_hop(self, leg: Connection) -> Connection | None:
        """The leg that `leg`'s source accepted and relayed by opening `leg`: by the
        header where `leg` carries one, else the connection into `leg`'s source address
        that started last within the relay window before it and shows the same
        conversation (a connection never relays into the listener it arrived on)."""
        if leg.header is not None:
            return self.front_leg(leg)
        candidates = [
            conn
            for conn in self.by_dest_addr.get(leg.tcp.src_addr, [])
            if conn is not leg
            and (conn.tcp.dst_addr, conn.tcp.dst_port) != (leg.tcp.dst_addr, leg.tcp.dst_port)
            and 0 <= leg.start_ts - conn.start_ts <= RELAY_WINDOW
            and same_conversation(conn, leg)
        ]
        return max(candidates, key=lambda conn: conn.start_ts, default=None)

    def chain(self, leg: Connection, limit: int = 8) -> list[Connection]:
        """Every captured hop that ends with `leg`, the real client's first."""
        hops = [leg]
        while len(hops) < limit and (previous := self.previous_hop(hops[0])) is not None and previous not in hops:
            hops.insert(0, previous)
        return hops

    def conversation(self, leg: Connection, limit: int = 8) -> list[Connection]:
        """Every captured hop of the conversation `leg` belongs to, the real client's
        first: its chain, then each onward leg whose own previous hop is the last one
        (matched both ways, so a leg that merely started soon after is not taken)."""
        hops = self.chain(leg, limit)
        while len(hops) < limit and (onward := self.onward_leg(hops[-1])) is not None and onward not in hops:
            if self.previous_hop(onward) is not hops[-1]:
                break
            hops.append(onward)
        return hops

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


K = TypeVar("K", bound=Hashable)


def _push(index: dict[K, deque[Connection]], key: K, conn: Connection) -> None:
    index.setdefault(key, deque()).append(conn)


def _pull(index: dict[K, deque[Connection]], key: K, conn: Connection) -> None:
    legs = index.get(key)
    if not legs:
        return
    if legs[0] is conn:
        legs.popleft()
    else:  # by identity: two connections may hold equal facts
        position = next((at for at, leg in enumerate(legs) if leg is conn), None)
        if position is not None:
            del legs[position]
    if not legs:
        del index[key]


def same_conversation(first: Connection, second: Connection) -> bool:
    """Two legs carry the same bytes where both show them in clear (a relay that
    terminates TLS changes the bytes of one side only, and is not contradicted)."""
    for mine, theirs in ((first.greeting, second.greeting), (first.client_first, second.client_first)):
        readable = mine is not None and theirs is not None and not mine.startswith("TLS") and not theirs.startswith("TLS")
        if readable and mine != theirs:
            return False
    return True


def _unmapped(address: str) -> str:
    """An IPv4-mapped IPv6 address as the IPv4 address the front leg shows."""
    try:
        mapped = ipaddress.IPv6Address(address).ipv4_mapped if ":" in address else None
    except ValueError:
        return address
    return str(mapped) if mapped else address
