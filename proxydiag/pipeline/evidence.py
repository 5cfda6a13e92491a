"""Several kinds of evidence in one analysis: captures, proxy configurations and logs.

`analyze FILE...` sorts its files by content (`classify`), reads each kind with its own
reader (captures stream through `analysis.diagnose`, configurations through
`pipeline.check`, logs through `logs.document.analyze_logs`), and `combine` makes one
report of them: every finding in one list, and the evidence of one kind checked against
the others'. A route of a proxy configuration says what header its legs carry; the
capture shows what they do carry (`rules.evidence` judges where they differ). A log line and a connection
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
from proxydiag.facts.summary import Summary
from proxydiag.jsontypes import JsonDict
from proxydiag.rules.base import SEVERITIES, Finding

# A capture alone must not pay for importing the configuration and log readers (about a
# third of `analyze`'s start-up): they are imported where a configuration or a log is read.
if TYPE_CHECKING:
    from proxydiag.configs.model import ProxyConfig
    from proxydiag.logs.event import LogEvent
    from proxydiag.pipeline.check import CheckResult
    from proxydiag.pipeline.logs import LogAnalysis

Kind = Literal["capture", "config", "log"]
HEAD_BYTES = 65536  # what `classify` looks at
LOG_PROBE_RECORDS = 50  # the first records tried as log lines
CAPTURE_MAGICS = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d", b"\x0a\x0d\x0d\x0a")
MATCH_SECONDS = 5.0  # a log line and a connection this close in time may be one event
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


def combine(analysis: Analysis, checked: CheckResult | None, logs: LogAnalysis | None) -> Besides:
    """Merge the configurations' and the logs' findings into the capture's analysis (one
    list, sorted by severity then code), with the cross-evidence findings and
    attachments; return what the other kinds add to its report."""
    from proxydiag.rules.evidence import traffic_vs_configs

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
    return Besides(checked, logs)


@dataclass(frozen=True)
class Besides:
    """What proxy configurations and logs read beside the captures add to their report,
    typed: `add_to` writes it into the capture's document (schema proxydiag/1)."""

    checked: CheckResult | None = None
    logs: LogAnalysis | None = None

    def add_to(self, document: JsonDict) -> JsonDict:
        """The capture's document with the logs read as inputs and counted, then the
        configurations' sections, then the logs' verdict."""
        if self.logs is not None:
            document["inputs"] = [*document["inputs"], *(read.to_dict() for read in self.logs.reads)]
            document["summary"] = Summary.of(document["summary"]).with_log_events(len(self.logs.events)).to_dict()
        if self.checked is not None:
            document.update(self.checked.sections())
        if self.logs is not None:
            document["logs"] = self.logs.verdict.to_dict() if self.logs.verdict else {}
        return document


# --- traffic against the proxy's configuration ----------------------------------------------


def proxy_addresses(connections: Sequence[Connection], proxy_configs: Sequence[ProxyConfig]) -> frozenset[str]:
    """The proxy's addresses as the server sees them: the sources of captured connections
    that carry a PROXY header, or that go where a route of the configuration goes."""
    from proxydiag.rules.evidence import route_legs

    sending = {conn.tcp.src_addr for conn in connections if conn.header is not None}
    routed = {conn.tcp.src_addr for config in proxy_configs for route in config.routes
              for conn in route_legs(connections, route)}
    return frozenset(sending | routed)



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
    from proxydiag.rules.evidence import MAX_MATCHED

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
    from proxydiag.rules.evidence import MAX_MATCHED, TRAFFIC_CODES_WITH_LOG_LINES
    from proxydiag.rules.logs import quote

    if not events:
        return

    by_id = {conn.id: conn for conn in connections}
    for finding in findings:
        if finding.code not in TRAFFIC_CODES_WITH_LOG_LINES or "log_lines" in finding.evidence:
            continue
        conns = [by_id[number] for number in finding.connections if number in by_id]
        lines = [quote(event) for event in events if any(same_event(event, conn, ports) for conn in conns)]
        if lines:
            finding.evidence["log_lines"] = lines[:MAX_MATCHED]
