"""Fact builders: the facts each rule reads, made directly, without a pcap, a file, a log
or a live listener (a Connection, a proxy route, a log event, a probe step)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from proxydiag.configs.model import FrontListener, HeaderVersion, Origin, ProxyConfig, Route
from proxydiag.facts.hop import EvidenceKind, Expects, Hop, ListenerRole, Party, Provenance, Sent
from proxydiag.facts.model import Connection, Endpoints
from proxydiag.logs.event import LogEvent
from proxydiag.parsers.protocols import recognise
from proxydiag.parsers.proxy_protocol import PP2_TYPE_SSL, build_ssl_value, build_v1, build_v2, parse
from proxydiag.probe import StepRecord, TargetProbe
from proxydiag.probe.steps import Target
from proxydiag.services import DEFAULT_TABLE

T0 = datetime(2026, 1, 5, 10, 0, 0, tzinfo=UTC)


def connection(number: int = 1, src: tuple[str, int] = ("198.51.100.2", 40000), dst: tuple[str, int] = ("192.0.2.10", 10025),
               header: str = "none", client_first: str | None = None, greeting: str | None = None,
               mid_stream: bool = False, protocol: str | None = "smtp", client: str = "203.0.113.7") -> Connection:
    """One leg as `facts.describe` would describe it: `header` is none, v1, v1-unknown or v2 (from the
    client to `dst`, naming `client`; the header's destination is `dst`'s address where it is
    of the client's family, else that family's documentation address)."""
    family = "TCP6" if ":" in client else "TCP4"
    to = dst[0] if (":" in dst[0]) == (family == "TCP6") else "2001:db8::10" if family == "TCP6" else "192.0.2.10"
    header_bytes = {"none": None,
                    "v1": build_v1(family, client, to, 40000, 25),
                    "v2": build_v2("PROXY", family, client, to, 40000, 25),
                    "v1-unknown": build_v1("UNKNOWN")}[header]
    start = 1_700_000_000.0 + number
    return Connection(
        id=number, input=0, first_frame=number * 10, start_ts=start, tcp=Endpoints(*src, *dst), established_ts=start,
        mid_stream=mid_stream, proxy=parse(header_bytes) if header_bytes else None, header_bytes=header_bytes,
        header_frames=[number * 10 + 3] if header_bytes else [], header_ts=start + 0.01 if header_bytes else None,
        header_segments=1 if header_bytes else 0,
        client_first=client_first, client_first_frame=number * 10 + 4 if client_first else None,
        client_first_ts=start + 0.02 if client_first else None,
        greeting=greeting, protocol=protocol, service=DEFAULT_TABLE.lookup(dst[1]),
    )


def origin(line: int = 1, text: str = "", path: str = "haproxy.cfg") -> Origin:
    return Origin(path, line, text)


def front(port: int = 25, address: str = "", accepts_header: bool = False, tls_terminated: bool = False) -> FrontListener:
    return FrontListener(address=address, port=port, tls_terminated=tls_terminated, accepts_header=accepts_header,
                         origin=origin(2, f"bind {address or '*'}:{port}" + (" accept-proxy" if accepts_header else "")))


def route(server: tuple[str, int] = ("192.0.2.10", 10025), sends: HeaderVersion = "v2", front_port: int = 25,
          source: str | None = None) -> Route:
    """A route of a proxy configuration: from a front listener to one server, and the header it sends."""
    keyword = {"v1": " send-proxy", "v2": " send-proxy-v2", "none": ""}[sends]
    return Route(front=front(front_port), server_address=server[0], server_port=server[1], sends=sends,
                 origin=origin(5, f"server s {server[0]}:{server[1]}{keyword}"), source_address=source)


def proxy_config(*routes: Route, path: str = "haproxy.cfg", kind: str = "haproxy") -> ProxyConfig:
    listeners = tuple({(r.front.address, r.front.port): r.front for r in routes if r.front is not None}.values())
    return ProxyConfig(kind=kind, path=path, listeners=listeners, routes=routes)


def log_event(event: str, source: str = "haproxy", seconds: float = 0.0, **fields: str | int | bool) -> LogEvent:
    """One log line's event as a reader returns it."""
    return LogEvent(timestamp=T0 + timedelta(seconds=seconds), source=source, event=event, fields=dict(fields),
                    raw=f"{event} {fields}", file=f"{source}.log", line=1 + int(seconds))


def probe_step(step: str, server_text: bytes = b"", client_text: bytes = b"", port: int = 25,
               ended_by: str | None = None, spoke_before_greeting: bool = False) -> StepRecord:
    """One probe connection: the header its step sends, what each side wrote, how it ended."""
    addresses = ("192.0.2.1", "192.0.2.10", 40000, port)
    headers = {"none": b"", "v1": build_v1("TCP4", *addresses), "v2": build_v2("PROXY", "TCP4", *addresses),
               "v2-ssl": build_v2("PROXY", "TCP4", *addresses, tlvs=[(PP2_TYPE_SSL, build_ssl_value(version="TLSv1.3"))]),
               "v2-local": build_v2("LOCAL", "UNSPEC")}
    return StepRecord(step=step, header=headers[step], client_text=client_text, server_text=server_text,
                      first_server_byte=0.01 if server_text else None, ended_by=ended_by, ended_at=0.5,
                      spoke_before_greeting=spoke_before_greeting,
                      opening=recognise(client_text, server_text, port))


def target_probe(host: str, port: int, *records: StepRecord, role: str | None = None) -> TargetProbe:
    return TargetProbe(Target(host, port), address=host, records=list(records), role=role)


def hop(sends: Sent = "none", expects: Expects | None = "required", role: ListenerRole = "server",
        kind: EvidenceKind = "config", inferred: bool = False, **facts: object) -> Hop:
    """A hop from a proxy (10.0.0.2) to a listener (10.0.0.3:10025), as any evidence could show it."""
    return Hop(sender=Party(address="10.0.0.2"), listener=Party(address="10.0.0.3", port=10025, name="smtp"),
               listener_role=role, sends=sends, expects=expects, provenance=Provenance(kind),
               inferred=inferred, **facts)  # type: ignore[arg-type]
