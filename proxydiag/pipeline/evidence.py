"""Several kinds of evidence in one analysis: captures, proxy configurations and logs.

`analyze FILE...` sorts its files by content (`classify`), reads each kind with its own
reader (captures stream through `analysis.diagnose`, configurations through
`pipeline.check`, logs through `logs.document.analyze_logs`), and `combine` makes one
report of them: every finding in one list, and the evidence of one kind checked against
the others'. A route of a proxy configuration says what header its legs carry; the
capture shows what they do carry (PD606 when they differ). A log line and a connection
are the same event when they name the same port (or the same client) within a few
seconds: log findings cite the connections, traffic findings the log lines.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timezone
from functools import cache
from typing import TYPE_CHECKING, Literal

from proxydiag.facts.model import Analysis, Connection
from proxydiag.rules.base import SEVERITIES, Finding
from proxydiag.services import DEFAULT_TABLE

# A capture alone must not pay for importing the configuration and log readers (about a
# third of `analyze`'s start-up): they are imported where a configuration or a log is read.
if TYPE_CHECKING:
    from proxydiag.configs.model import ProxyConfig, Route
    from proxydiag.logs.event import LogEvent
    from proxydiag.pipeline.check import CheckResult
    from proxydiag.pipeline.logs import LogAnalysis

Kind = Literal["capture", "config", "log"]
HEAD_BYTES = 65536  # what `classify` looks at
LOG_PROBE_RECORDS = 50  # the first records tried as log lines
CAPTURE_MAGICS = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d", b"\x0a\x0d\x0d\x0a")
MATCH_SECONDS = 5.0  # a log line and a connection this close in time may be one event
MAX_MATCHED = 10  # connections or log lines attached to one finding
TRAFFIC_CODES_WITH_LOG_LINES = frozenset({"PD101", "PD102", "PD401"})
# Every keyword that opens an HAProxy section; only proxies' sections have names in logs.
SECTION = re.compile(r"^\s*(frontend|backend|listen|defaults|global|resolvers|peers|userlist|mailers|program|cache|ring"
                     r"|http-errors|crt-store|traces)\b(?:\s+(\S+))?")
PROXY_SECTIONS = frozenset({"frontend", "backend", "listen"})


def classify(head: bytes) -> Kind:
    """What a file is, from its first bytes: a capture (pcap/pcapng magic), a proxy
    configuration, or a log. Anything else is handed to the capture reader, whose error
    says what the file looks like (compressed, printed tcpdump output, ...)."""
    if head.startswith(CAPTURE_MAGICS) or b"\0" in head[:4096]:
        return "capture"
    from proxydiag import configs

    text = head.decode("utf-8", errors="replace")
    if configs.detect_kind(text) is not None:
        return "config"
    if _has_log_line(text):
        return "log"
    return "capture"


def _has_log_line(text: str) -> bool:
    from proxydiag.logs.reader import parse_record, records

    for index, (number, record) in enumerate(records(text)):
        if index >= LOG_PROBE_RECORDS:
            return False
        if parse_record(record, "", number, timezone.utc) is not None:
            return True
    return False


@dataclass
class Sorted:
    captures: list[str] = field(default_factory=list)
    configs: list[str] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)

    @property
    def besides_captures(self) -> bool:
        return bool(self.configs or self.logs)


def sort_inputs(paths: Sequence[str], read_head: Callable[[str], bytes | None]) -> Sorted:
    """Each file to its reader; standard input, pipes and unreadable files stay captures
    (the capture reader streams the ones and says what is wrong with the others)."""
    result = Sorted()
    for path in paths:
        try:
            head = None if path == "-" else read_head(path)
        except OSError:
            head = None
        kind: Kind = "capture" if head is None else classify(head)
        {"capture": result.captures, "config": result.configs, "log": result.logs}[kind].append(path)
    return result


def read_head(path: str) -> bytes | None:
    """The first bytes of a regular file; None for a pipe or a device, whose bytes are
    read once, by the capture reader."""
    if not stat.S_ISREG(os.stat(path).st_mode):
        return None
    with open(path, "rb") as handle:
        return handle.read(HEAD_BYTES)


# --- one report ---------------------------------------------------------------------------


def combine(analysis: Analysis, checked: CheckResult | None, logs: LogAnalysis | None) -> dict:
    """Merge the configurations' and the logs' findings into the capture's analysis (one
    list, sorted by severity then code), with the cross-evidence findings and
    attachments; return the document keys the other kinds add."""
    proxy_configs = checked.configs if checked else []
    events = logs.events if logs else []
    findings = [*analysis.findings]
    findings += traffic_vs_configs(analysis.connections, proxy_configs)
    findings += checked.findings if checked else []
    log_findings = logs.verdict.findings if logs and logs.verdict else []
    ports = PortNames.of(proxy_configs)
    attach_connections(log_findings, events, analysis.connections, ports)
    attach_log_lines(findings, events, analysis.connections, ports)
    findings += log_findings
    findings.sort(key=lambda finding: (SEVERITIES.index(finding.severity), finding.code))
    analysis.findings = findings
    extra: dict = {}
    if checked is not None:
        extra["proxy_configs"] = [config.to_dict() for config in checked.configs]
        extra["proxy_config_errors"] = [str(error) for error in checked.errors]
    if logs is not None:
        extra["log_inputs"] = [read.to_dict() for read in logs.reads]
        extra["logs"] = logs.verdict.to_dict() if logs.verdict else {}
        extra["log_events"] = len(events)
    return extra


def add_to_document(document: dict, extra: dict) -> dict:
    """The capture's document with the other kinds' inputs, sections and counts."""
    extra = dict(extra)
    document["inputs"] = [*document["inputs"], *extra.pop("log_inputs", [])]
    if "log_events" in extra:
        document["summary"]["log_events"] = extra.pop("log_events")
    document.update(extra)
    return document


# --- traffic against the proxy's configuration ----------------------------------------------


def traffic_vs_configs(connections: Sequence[Connection], proxy_configs: Sequence[ProxyConfig]) -> list[Finding]:
    """PD606 where the capture contradicts a proxy configuration: a route's legs carry
    another header than the route sends, or clients reach a port of the proxy that no
    listener of the configurations binds."""
    from proxydiag.configs.model import WILDCARD_ADDRESSES

    findings: list[Finding] = []
    proxy_addresses: set[str] = set()
    routed_ports: set[int] = set()
    for config in proxy_configs:
        for route in config.routes:
            legs = route_legs(connections, route)
            proxy_addresses.update(conn.tcp.src_addr for conn in legs)
            if route.target_port is not None:
                routed_ports.add(route.target_port)
            finding = _header_contradiction(route, legs)
            if finding is not None:
                findings.append(finding)
    listening = {listener.port for config in proxy_configs for listener in config.listeners}
    proxy_addresses.update(listener.address for config in proxy_configs for listener in config.listeners
                           if listener.address not in WILDCARD_ADDRESSES)
    findings.extend(_unrouted_ports(connections, proxy_addresses, listening, routed_ports, proxy_configs))
    return findings


def route_legs(connections: Sequence[Connection], route: Route) -> list[Connection]:
    """The captured connections from the proxy to a route's server."""
    return [conn for conn in connections if not conn.mid_stream and conn.tcp.dst_port == route.target_port
            and conn.tcp.dst_addr == route.server_address]


def proxy_addresses(connections: Sequence[Connection], proxy_configs: Sequence[ProxyConfig]) -> frozenset[str]:
    """The proxy's addresses as the server sees them: the sources of captured connections
    that carry a PROXY header, or that go where a route of the configuration goes."""
    sending = {conn.tcp.src_addr for conn in connections if conn.header is not None}
    routed = {conn.tcp.src_addr for config in proxy_configs for route in config.routes
              for conn in route_legs(connections, route)}
    return frozenset(sending | routed)


def observed_header(conn: Connection) -> str:
    header = conn.header
    return f"v{header.version}" if header is not None else "none"


def _header_contradiction(route: Route, legs: list[Connection]) -> Finding | None:
    if route.health_check is not None and not route.health_check.sends_header:
        legs = [conn for conn in legs if conn.header is not None or conn.client_first is not None]
    wrong = [conn for conn in legs if observed_header(conn) != route.sends]
    if not wrong:
        return None
    seen = sorted({observed_header(conn) for conn in wrong})
    said = "no PROXY header" if route.sends == "none" else f"a {route.sends} PROXY header"
    carried = " or ".join("no header" if version == "none" else f"a {version} header" for version in seen)
    evidence = {"proxy": route.origin.cite(), "configured": route.sends,
                "observed": {version: sum(1 for conn in wrong if observed_header(conn) == version) for version in seen}}
    if route.sends_origin is not None and route.sends_origin != route.origin:
        evidence["header"] = route.sends_origin.cite()
    return _finding(
        f"{route.origin} sends {said} to {route.endpoint}, but {len(wrong)} of the {len(legs)} captured "
        f"connection(s) to it carry {carried}: the proxy runs another configuration than this file (not "
        "reloaded, another host, or the wrong file).", wrong, evidence)


def _unrouted_ports(connections: Sequence[Connection], proxy_addresses: set[str], listening: set[int],
                    routed: set[int], proxy_configs: Sequence[ProxyConfig]) -> Iterable[Finding]:
    """Clients reaching a port of the proxy that no listener binds, and the proxy reaching
    a server port that no route targets."""
    files = ", ".join(config.path for config in proxy_configs)
    fronts: dict[int, list[Connection]] = {}
    backs: dict[int, list[Connection]] = {}
    for conn in connections:
        port = conn.tcp.dst_port
        if conn.mid_stream or DEFAULT_TABLE.lookup(port) is None:
            continue
        if conn.tcp.dst_addr in proxy_addresses:
            if port not in listening | routed:
                fronts.setdefault(port, []).append(conn)
        elif conn.tcp.src_addr in proxy_addresses and port not in routed:
            backs.setdefault(port, []).append(conn)
    for port, group in sorted(fronts.items()):
        yield _finding(
            f"The capture shows {len(group)} connection(s) to the proxy's port {port} "
            f"({group[0].tcp.dst_addr}), which no listener of {files} binds: the proxy runs another "
            "configuration than this file, or the capture holds another proxy's traffic.",
            group, {"port": port, "proxy_configs": files})
    for port, group in sorted(backs.items()):
        yield _finding(
            f"The proxy ({group[0].tcp.src_addr}) opened {len(group)} connection(s) to {group[0].tcp.dst_addr}:{port}, "
            f"which no route of {files} targets: the proxy runs another configuration than this file.",
            group, {"server_port": port, "proxy_configs": files})


def _finding(message: str, conns: list[Connection], evidence: dict) -> Finding:
    from proxydiag.rules import catalog

    page = catalog.load_pages().get("PD606")
    cited = conns[:MAX_MATCHED]
    return Finding(
        code="PD606", slug=page.slug if page else "traffic-vs-config", severity=page.severity if page else "error",
        message=message, connections=[conn.id for conn in cited], frames=[conn.first_frame for conn in cited],
        count=len(conns), evidence={**evidence, "frames": [conn.first_frame for conn in cited]},
        fix=("Align the running proxy with the file: reload it (haproxy -c -f FILE, then systemctl reload "
             "haproxy; nginx -t, then nginx -s reload), or give proxydiag the file the proxy runs."),
        doc="docs/findings/PD606.md")


# --- logs against connections ---------------------------------------------------------------


@dataclass(frozen=True)
class PortNames:
    """HAProxy's section names (a log line's frontend and backend) to the ports the
    configuration gives them."""

    ports: dict[str, frozenset[int]]

    @classmethod
    def of(cls, proxy_configs: Sequence[ProxyConfig]) -> PortNames:
        ports: dict[str, set[int]] = {}
        for config in proxy_configs:
            for listener in config.listeners:
                name = section_of(listener.origin.path, listener.origin.line)
                if name:
                    ports.setdefault(name, set()).add(listener.port)
            for route in config.routes:
                name = section_of(route.origin.path, route.origin.line)
                if name and route.target_port is not None:
                    ports.setdefault(name, set()).add(route.target_port)
        return cls({name: frozenset(values) for name, values in ports.items()})

    def of_event(self, event: LogEvent) -> frozenset[int]:
        local = event.number("localPort")
        found = {local} if local is not None else set()
        for key in ("frontend", "backend"):
            name = event.text(key)
            if name:
                found |= self.ports.get(name, frozenset())
        return frozenset(found)


def section_of(path: str, line: int) -> str | None:
    """The HAProxy section (frontend, backend, listen) a line of a file belongs to."""
    for text in reversed(_lines(path)[: max(line - 1, 0)]):
        match = SECTION.match(text)
        if match:
            return match.group(2) if match.group(1) in PROXY_SECTIONS else None
    return None


@cache
def _lines(path: str) -> list[str]:
    from proxydiag.parsers.userinput import read_text_bounded

    try:
        return read_text_bounded(path).splitlines()
    except OSError:
        return []


def same_event(event: LogEvent, conn: Connection, ports: PortNames) -> bool:
    """One event seen twice: close in time, and the same client (address and port) or
    the same listening port."""
    if event.timestamp is None or abs(event.timestamp.timestamp() - conn.start_ts) > MATCH_SECONDS:
        return False
    client = event.text("client") or event.text("remoteIp")
    client_port = event.number("client_port") or event.number("remotePort")
    if client is not None and client_port is not None:
        header = conn.header
        if (client, client_port) == (conn.tcp.src_addr, conn.tcp.src_port):
            return True
        if header is not None and (client, client_port) == (header.src_addr, header.src_port):
            return True
    return conn.tcp.dst_port in ports.of_event(event)


def attach_connections(findings: Iterable[Finding], events: Sequence[LogEvent], connections: Sequence[Connection],
                       ports: PortNames) -> None:
    """A log finding cites the connections its lines were about (`connections_matched`)."""
    by_where = {event.where(): event for event in events}
    for finding in findings:
        cited = [by_where[where] for where in _quoted_places(finding) if where in by_where]
        matched = [conn.id for conn in connections if any(same_event(event, conn, ports) for event in cited)]
        if matched:
            finding.evidence["connections_matched"] = matched[:MAX_MATCHED]


def _quoted_places(finding: Finding) -> list[str]:
    """file:line of each log line a log finding quotes (`quote` writes them first)."""
    places = []
    for line in finding.evidence.get("log_lines", []):
        place, separator, _ = line.partition(": ")
        if separator:
            places.append(place)
    return places


def attach_log_lines(findings: Iterable[Finding], events: Sequence[LogEvent], connections: Sequence[Connection],
                     ports: PortNames) -> None:
    """A traffic finding of a missing, unexpected or banned header quotes the log lines of
    its connections (`log_lines`)."""
    if not events:
        return
    from proxydiag.rules.logs import quote

    by_id = {conn.id: conn for conn in connections}
    for finding in findings:
        if finding.code not in TRAFFIC_CODES_WITH_LOG_LINES or "log_lines" in finding.evidence:
            continue
        conns = [by_id[number] for number in finding.connections if number in by_id]
        lines = [quote(event) for event in events if any(same_event(event, conn, ports) for conn in conns)]
        if lines:
            finding.evidence["log_lines"] = lines[:MAX_MATCHED]
