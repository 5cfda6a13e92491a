"""What the rules must know of every connection before judging any one of them.

Judging runs in two passes over the connections: this first one keeps small counters
(per server endpoint, per source), never the connections themselves, so that memory
stays flat however large the capture; the second judges each connection against them.
Keys are capped (`MAX_KEYS`): past that, a new endpoint or source is counted in the
totals only."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from proxydiag.facts.expectations import ExpectationResolver
from proxydiag.facts.model import Connection

MAX_KEYS = 65_536  # endpoints, or (source, endpoint) pairs, followed one by one
MAX_REFUSED_SOURCES = 16  # "N clients get the same silence" needs only a few
MAX_PORTS = 4_096


def refused_without_a_word(conn: Connection, greeting_timeout: float) -> bool:
    """The listener sent nothing to a client that sent no header, and the connection
    ended: the listener hung up, or the client spoke (or waited past the greeting
    timeout) and gave up."""
    if conn.mid_stream or conn.proxy is not None or conn.greeting is not None or conn.closed_by is None:
        return False
    if conn.closed_by == "server" or conn.client_first is not None:
        return True
    start = conn.established_ts or conn.start_ts
    return conn.close_ts is not None and conn.close_ts - start >= greeting_timeout


def cut_off_before_greeting(conn: Connection) -> bool:
    """The server closed a connection that carried no header before saying or hearing a word."""
    return conn.greeting is None and conn.closed_by == "server" and conn.client_first is None and conn.header is None


@dataclass(slots=True)
class SourceTally:
    """One source's connections to one endpoint whose server speaks first."""

    connections: int = 0
    all_cut_off: bool = True


@dataclass
class Tally:
    expectations: ExpectationResolver
    greeting_timeout: float = 5.0
    connections: int = 0
    with_header: int = 0
    snapped: int = 0
    mid_stream: int = 0
    mail: int = 0
    proxies: set[str] = field(default_factory=set)  # addresses that sent PROXY headers
    refused: dict[tuple[str, int], set[str]] = field(default_factory=dict)
    sources: dict[tuple[str, str, int], SourceTally] = field(default_factory=dict)
    ports: Counter[int] = field(default_factory=Counter)  # server ports, for "the busiest ports"

    def observe(self, conn: Connection, is_mail_port: bool) -> None:
        self.connections += 1
        self.expectations.observe(conn)
        self.snapped += any(side.get("snapped_bytes") for side in conn.reassembly.values())
        self.mid_stream += conn.mid_stream
        self.mail += bool(conn.protocol or is_mail_port or conn.header)
        if len(self.ports) < MAX_PORTS or conn.tcp.dst_port in self.ports:
            self.ports[conn.tcp.dst_port] += 1
        if conn.header is not None:
            self.with_header += 1
            if len(self.proxies) < MAX_KEYS:
                self.proxies.add(conn.tcp.src_addr)
        self._refused(conn)
        self._source(conn)

    def _refused(self, conn: Connection) -> None:
        if not refused_without_a_word(conn, self.greeting_timeout):
            return
        endpoint = (conn.tcp.dst_addr, conn.tcp.dst_port)
        sources = self.refused.get(endpoint)
        if sources is None:
            if len(self.refused) >= MAX_KEYS:
                return
            sources = self.refused[endpoint] = set()
        if len(sources) < MAX_REFUSED_SOURCES:
            sources.add(conn.tcp.src_addr)

    def _source(self, conn: Connection) -> None:
        if conn.mid_stream or not conn.server_speaks_first:
            return
        key = (conn.tcp.src_addr, conn.tcp.dst_addr, conn.tcp.dst_port)
        tally = self.sources.get(key)
        if tally is None:
            if len(self.sources) >= MAX_KEYS:
                return
            tally = self.sources[key] = SourceTally()
        tally.connections += 1
        tally.all_cut_off = tally.all_cut_off and cut_off_before_greeting(conn)

    def is_proxy(self, address: str) -> bool:
        return address in self.proxies

    def refused_sources(self, endpoint: tuple[str, int]) -> set[str]:
        return self.refused.get(endpoint, set())

    def banned(self, source: str, addr: str, port: int) -> bool:
        """Every connection (three or more, none with a header) from this source to this
        endpoint was cut off before any greeting: the mark of a banned proxy."""
        tally = self.sources.get((source, addr, port))
        return tally is not None and tally.connections >= 3 and tally.all_cut_off
