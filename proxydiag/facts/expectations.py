"""What each listener expects: a PROXY header of a version, any header, or none.

In order of authority: `--expect PORT=VALUE`, `--expect VALUE`, the Stalwart
configuration (a leg from a trusted source must carry a header, any other must not),
`--trusted-networks`, and last an inference from the majority of the connections each
server endpoint received (weaker: findings resting on it say so and are one severity
lower).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from proxydiag.configs.stalwart import StalwartConfig, TrustedEntry, parse_trusted_entry
from proxydiag.facts.model import Connection, Expectation
from proxydiag.facts.provenance import ExpectOption, Majority, StalwartListener, TrustedNetworksOption

EXPECT_VALUES = ("v1", "v2", "any", "none")


class ExpectationError(ValueError):
    pass




def parse_expect_options(values: list[str]) -> tuple[str | None, dict[int, str]]:
    """`--expect v2 --expect 587=v1` -> ("v2", {587: "v1"})."""
    global_value, per_port = None, {}
    for value in values:
        port, sep, wanted = value.partition("=")
        wanted = (wanted if sep else port).strip().lower()
        if wanted not in EXPECT_VALUES:
            raise ExpectationError(f"--expect {value}: use v1, v2, any or none, optionally as PORT=VALUE")
        if not sep:
            global_value = wanted
        elif port.strip().isdigit() and 0 < int(port) < 65536:
            per_port[int(port)] = wanted
        else:
            raise ExpectationError(f"--expect {value}: {port!r} is not a port number")
    return global_value, per_port


def parse_trusted_networks(text: str) -> list[TrustedEntry]:
    entries = [parse_trusted_entry(item, "--trusted-networks") for item in text.split(",") if item.strip()]
    broken = [entry for entry in entries if entry.problem]
    if broken:
        raise ExpectationError(f"--trusted-networks: {broken[0].problem}")
    return entries


@dataclass
class EndpointStats:
    """Small counters per server endpoint (address, port): all that inference and the
    aggregate findings need, whatever the size of the capture."""

    connections: int = 0
    with_header: int = 0
    local: int = 0
    versions: Counter[int] = field(default_factory=Counter)
    header_sources: Counter[str] = field(default_factory=Counter)
    v1_unknown: int = 0  # `PROXY UNKNOWN` lines among the v1 headers
    senders: set[str] = field(default_factory=set)  # the legs' own sources of the headers, the first two


    def add(self, conn: Connection) -> None:
        if conn.mid_stream or (conn.header is None and conn.client_first is None):
            return  # a connect-only check or an idle connection says nothing about headers
        self.connections += 1
        header = conn.header
        if header is None:
            return
        self.with_header += 1
        self.versions[header.version] += 1
        self.v1_unknown += header.version == 1 and header.family == "UNKNOWN"
        if len(self.senders) < 2:
            self.senders.add(conn.tcp.src_addr)
        if header.command == "LOCAL":
            self.local += 1
        elif header.src_addr is not None and (len(self.header_sources) < 64 or header.src_addr in self.header_sources):
            self.header_sources[header.src_addr] += 1


@dataclass
class ExpectationResolver:
    global_value: str | None = None
    per_port: dict[int, str] = field(default_factory=dict)
    config: StalwartConfig | None = None
    trusted: list[TrustedEntry] | None = None
    endpoints: dict[tuple[str, int], EndpointStats] = field(default_factory=dict)

    def observe(self, conn: Connection) -> None:
        self.endpoints.setdefault((conn.tcp.dst_addr, conn.tcp.dst_port), EndpointStats()).add(conn)

    def stats(self, conn: Connection) -> EndpointStats:
        return self.endpoints.get((conn.tcp.dst_addr, conn.tcp.dst_port), EndpointStats())

    def for_connection(self, conn: Connection) -> Expectation | None:
        port = conn.tcp.dst_port
        if port in self.per_port:
            return Expectation(self.per_port[port], ExpectOption(self.per_port[port], port))
        if self.global_value:
            return Expectation(self.global_value, ExpectOption(self.global_value))
        if self.config is not None:
            listener = self.config.listener_for_port(port)
            if listener is not None:
                trusted = self.config.trusts(listener, conn.tcp.src_addr)
                return Expectation("any" if trusted else "none",
                                   StalwartListener(listener.id, self.config.path, conn.tcp.src_addr, trusted))
        if self.trusted is not None:
            trusted = any(entry.matches(conn.tcp.src_addr) for entry in self.trusted)
            return Expectation("any" if trusted else "none", TrustedNetworksOption(trusted))
        return self._inferred(conn)

    def _inferred(self, conn: Connection) -> Expectation | None:
        stats = self.stats(conn)
        with_header, without = stats.with_header, stats.connections - stats.with_header
        if with_header == without:
            return None
        wants = with_header > without
        majority = with_header if wants else without
        return Expectation(
            "any" if wants else "none",
            Majority(majority, stats.connections, conn.tcp.dst_addr, conn.tcp.dst_port, wants),
            inferred=True,
        )
