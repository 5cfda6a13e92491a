"""The result of an analysis: what every report renders."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from proxydiag.facts.encoded import Encoded
from proxydiag.facts.provenance import Provenance
from proxydiag.jsontypes import JsonDict
from proxydiag.names import AS_THEY_ARE
from proxydiag.parsers.protocols.base import MailOpening, Opening
from proxydiag.parsers.proxy_protocol import ParseResult, ProxyHeader
from proxydiag.services import Service

if TYPE_CHECKING:
    from proxydiag.configs.stalwart import StalwartConfig

SCHEMA = "proxydiag/1"


@dataclass(frozen=True)
class Expectation:
    value: str  # v1, v2, any, none
    source: Provenance  # where it came from; the JSON document tells it as it is
    inferred: bool = False

    @property
    def wants_header(self) -> bool:
        return self.value != "none"

    def to_dict(self) -> JsonDict:
        return {"value": self.value, "source": self.source.message(AS_THEY_ARE), "inferred": self.inferred}


@dataclass(slots=True)
class InputSummary:
    path: str
    format: str | None
    linktypes: list[int]
    packets: int
    damaged: str | None = None
    error: str | None = None

    def to_dict(self) -> JsonDict:
        return {
            "path": self.path,
            "format": self.format,
            "linktype": self.linktypes[0] if self.linktypes else None,
            "linktypes": self.linktypes,
            "packets": self.packets,
            "damaged": self.damaged,
            "error": self.error,
        }


@dataclass(slots=True)
class FlowTableBounds:
    """What the bounded flow table let go of (flows.FlowLimits): nothing when the capture
    fitted."""

    evicted_half_open: int = 0  # SYN-only flows dropped by age, never described
    evicted_idle: int = 0  # quiet flows described early, their end unseen
    evicted_by_cap: int = 0  # flows let go because the table was full
    dropped: int = 0  # flows never described at all

    @property
    def hit(self) -> bool:
        return bool(self.evicted_half_open or self.evicted_idle or self.evicted_by_cap or self.dropped)

    def to_dict(self) -> dict[str, int]:
        return {"evicted_half_open": self.evicted_half_open, "evicted_idle": self.evicted_idle,
                "evicted_by_cap": self.evicted_by_cap, "dropped": self.dropped}


@dataclass(slots=True)
class Endpoints:
    src_addr: str
    src_port: int
    dst_addr: str
    dst_port: int

    def to_dict(self) -> JsonDict:
        return {"src_addr": self.src_addr, "src_port": self.src_port, "dst_addr": self.dst_addr, "dst_port": self.dst_port}


@dataclass(slots=True)
class Connection:
    """One TCP connection: the typed facts every rule reads.

    Everything here is derived once, from the two reassembled openings, by
    `facts.describe`: the PROXY header(s), who spoke first, the first words of each
    side (client text masked by the recognisers, the only masking path), TLS seen from
    either side, and the services the listener's port and the header's destination port
    name in the service table."""

    id: int
    input: int
    first_frame: int
    start_ts: float
    tcp: Endpoints
    mid_stream: bool
    proxy: ParseResult | None = None
    extra_headers: list[ParseResult] = field(default_factory=list)
    header_frames: list[int | None] = field(default_factory=list)
    header_ts: float | None = None
    header_bytes: bytes | None = None
    header_segments: int = 0
    protocol: str | None = None
    client_first: str | None = None
    client_first_frame: int | None = None
    client_first_ts: float | None = None
    greeting: str | None = None
    greeting_frame: int | None = None
    greeting_ts: float | None = None
    server_text: str | None = None
    replies_to_header: list[str] = field(default_factory=list)
    opening: Opening = field(default_factory=Opening)
    expectation: Expectation | None = None  # set when judged
    service: Service | None = None  # what the listener's port means (service table)
    header_service: Service | None = None  # what the header's destination port means
    first_speaker: str | None = None
    tls_client_hello: bool = False  # the client's first application bytes are a TLS ClientHello
    closed_by: str | None = None
    close_kind: str | None = None
    close_ts: float | None = None
    established_ts: float | None = None
    last_ts: float | None = None
    reassembly: dict[str, dict[str, Any]] = field(default_factory=dict)
    evicted: str | None = None  # let go by the bounded flow table while open (idle, cap)

    @property
    def timing_greeting_after(self) -> float | None:
        return _delay(self.established_ts or self.start_ts, self.greeting_ts)

    def _tls_summary(self) -> JsonDict:
        return _tls_summary_of(self)

    @property
    def header(self) -> ProxyHeader | None:
        return self.proxy.header if self.proxy else None

    @property
    def mail(self) -> MailOpening | None:
        """The mail-protocol facts (greeting, capabilities, STARTTLS, errors), if any."""
        return self.opening if isinstance(self.opening, MailOpening) else None

    @property
    def server_speaks_first(self) -> bool:
        """The client waits for a greeting: from the recognised protocol, else the port."""
        if self.protocol in SERVER_SPEAKS_FIRST_PROTOCOLS:
            return True
        return self.protocol is None and self.service is not None and self.service.server_speaks_first

    @property
    def implicit_tls_expected(self) -> bool:
        """The listener wants TLS from the first byte: its own port says so, or, where the
        table does not know that port, the header's destination port does."""
        if self.service is not None:
            return self.service.implicit_tls
        return self.header_service is not None and self.header_service.implicit_tls

    @property
    def client_gap(self) -> int | None:
        gap = self.reassembly.get("client", {}).get("gap_at")
        return gap if isinstance(gap, int) else None

    @property
    def client_snapped(self) -> bool:
        return bool(self.reassembly.get("client", {}).get("snapped_bytes"))

    def to_dict(self) -> JsonDict:
        return {
            "id": self.id,
            "input": self.input,
            "first_frame": self.first_frame,
            "start_time": self.start_ts,
            "tcp": self.tcp.to_dict(),
            "mid_stream": self.mid_stream,
            "protocol": self.protocol,
            "expectation": self.expectation.to_dict() if self.expectation is not None else None,
            "proxy_header": self.header.to_dict() if self.header else None,
            "proxy_header_frames": self.header_frames,
            "proxy_header_violations": [v.to_dict() for v in self.proxy.violations] if self.proxy else [],
            "proxy_header_incomplete": bool(self.proxy and self.proxy.incomplete),
            "extra_proxy_headers": [extra.header.to_dict() for extra in self.extra_headers if extra.header],
            "first_speaker": self.first_speaker,
            "client_first": self.client_first,
            "client_first_frame": self.client_first_frame,
            "greeting": self.greeting,
            "greeting_frame": self.greeting_frame,
            "header_answered_as_command": bool(self.replies_to_header),
            "replies_to_header": self.replies_to_header,
            "timing": {
                "established": self.established_ts,
                "header_after": _delay(self.established_ts or self.start_ts, self.header_ts),
                "greeting_after": self.timing_greeting_after,
                "client_first_after": _delay(self.established_ts or self.start_ts, self.client_first_ts),
            },
            "tls": self._tls_summary(),
            "opening": self.opening.to_dict(),
            "closed_by": self.closed_by,
            "close": self.close_kind,
            "close_time": self.close_ts,
            "reassembly": self.reassembly,
            "evicted": self.evicted,
        }


SERVER_SPEAKS_FIRST_PROTOCOLS = frozenset({"smtp", "lmtp", "imap", "pop3", "managesieve"})


def _tls_summary_of(conn: Connection) -> JsonDict:
    tls = conn.opening.tls
    summary: dict[str, Any] = {"client_hello": conn.tls_client_hello}
    if tls is not None:
        summary.update(tls.to_dict())
    return summary


def _delay(start: float | None, end: float | None) -> float | None:
    if start is None or end is None:
        return None
    return round(end - start, 6)


@dataclass(slots=True)
class Analysis:
    inputs: list[InputSummary] = field(default_factory=list)
    stalwart_config: StalwartConfig | None = None
    connections: Sequence[Connection] = field(default_factory=list)  # a store.ConnectionStore once read
    findings: list[Any] = field(default_factory=list)  # rules.base.Finding
    tally: Any = None  # tally.Tally: what the first pass of judging counted
    unsupported_linktypes: set[int] = field(default_factory=set)
    flow_table: FlowTableBounds = field(default_factory=FlowTableBounds)

    @property
    def damaged(self) -> bool:
        return any(item.damaged or item.error for item in self.inputs)

    def connection_dicts(self, encoded: bool = False) -> Iterator[Any]:
        """Each connection's dict, read afresh from the store at each call."""
        rendered = getattr(self.connections, "rendered", lambda: None)()  # a store.ConnectionStore's
        if rendered is None:
            return (conn.to_dict() for conn in self.connections)
        if encoded:
            return (Encoded(text) for text in rendered)
        return (json.loads(text) for text in rendered)

    def to_dict(self, lazy: bool = False, encoded: bool = False) -> dict[str, Any]:
        """The JSON document; with `lazy`, connections come as an iterator of dicts (with
        `encoded`, of facts.encoded.Encoded text where judging wrote it)."""
        severities = [finding.severity for finding in self.findings]
        return {
            "schema": SCHEMA,
            "inputs": [item.to_dict() for item in self.inputs],
            "summary": {
                "connections": len(self.connections),
                "with_proxy_header": self.tally.with_header if self.tally is not None else
                sum(1 for conn in self.connections if conn.header),
                "errors": severities.count("error"),
                "warnings": severities.count("warning"),
                "infos": severities.count("info"),
            },
            "stalwart_config": self.stalwart_config.to_dict() if self.stalwart_config is not None else None,
            "flow_table": self.flow_table.to_dict(),
            "connections": self.connection_dicts(encoded) if lazy else list(self.connection_dicts(False)),
            "findings": [finding.to_dict() for finding in self.findings],
        }
