"""`sniff` as a long-running sensor: what it sees goes to sinks as events (a connection
judged, a finding raised or grown, a heartbeat of counters) for log pipelines (JSON
lines) and Prometheus (an exporter), instead of one report at the end.

`SniffEvents` turns the live judgement of each connection into those events; the sinks
know nothing of where they come from.
"""

from __future__ import annotations

import ipaddress
import re
import signal
import sys
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

from proxydiag import __version__
from proxydiag.jsontypes import JsonDict
from proxydiag.outputs import open_appending
from proxydiag.report.json import checked_line
from proxydiag.report.model import Report

if TYPE_CHECKING:
    from proxydiag.capture.flows import FlowTable
    from proxydiag.capture.live import LiveCapture
    from proxydiag.facts.model import Analysis, Connection
    from proxydiag.pipeline.analysis import Reader, Settings
    from proxydiag.report.anonymize import Anonymizer
    from proxydiag.rules.base import Finding
    from proxydiag.rules.judge import Judge

EVENT_SCHEMA = "proxydiag.event/1"
MAX_LISTENERS = 256  # distinct listener labels; later ones are counted as "other"
OTHER = "other"


class SensorError(Exception):
    """The sensor cannot start (an address, a file): one line for the user."""


class Sink(Protocol):
    def start(self, info: JsonDict) -> None: ...

    def connection(self, conn: Connection, findings: list[Finding]) -> None:
        """A connection was judged; `findings`: those it is cited in."""

    def finding(self, finding: Finding, first: bool, listener: str | None, added: int) -> None:
        """A finding was raised (`first`) or its count grew by `added`; `listener`: the
        server endpoint its first connection reached (None: no connection)."""

    def heartbeat(self, counters: JsonDict) -> None: ...

    def stop(self, report: Report) -> None:
        """The capture ended; `report`: the final report without its connections."""


def listener_of(conn: Connection) -> str:
    """The server endpoint: ADDR:PORT, [ADDR]:PORT for IPv6."""
    addr = conn.tcp.dst_addr
    return f"[{addr}]:{conn.tcp.dst_port}" if ":" in addr else f"{addr}:{conn.tcp.dst_port}"


def header_version(conn: Connection) -> str:
    version = conn.proxy.version if conn.proxy is not None else None
    return str(version) if version in (1, 2) else "none"


def service_of(conn: Connection) -> str:
    return conn.service.name if conn.service is not None else "unknown"


def rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")


def parse_listen_address(text: str) -> tuple[str, int]:
    """ADDR:PORT (IPv4 or a host name), [ADDR]:PORT (IPv6), as for --metrics. The
    address is required: an exporter on every interface is a choice to spell out
    (0.0.0.0:PORT)."""
    host, colon, port = text.rpartition(":")
    if not colon or not host:
        raise ValueError(f"{text!r} is not ADDR:PORT (e.g. 127.0.0.1:9465, [::1]:9465)")
    if not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r}: the port must be a number from 1 to 65535")
    if host.startswith("[") and host.endswith("]"):
        try:
            return str(ipaddress.IPv6Address(host[1:-1])), int(port)
        except ValueError:
            raise ValueError(f"{text!r}: {host} is not an IPv6 address") from None
    if ":" in host or not _HOSTNAME.fullmatch(host):
        raise ValueError(f"{text!r}: {host!r} is not an address or host name (IPv6 goes in brackets)")
    return host, int(port)


class SniffEvents:
    """Events of a sniff whose connections are judged once each, as they end (a
    `judging.Judge` on the end-time clock, against the tally so far): each connection is
    told once, with the findings its judgement raised or grew; each finding when it is
    raised, then whenever it grows. The stop event carries the final report, judged
    whole as `analyze` judges the `-w` file."""

    def __init__(self, sinks: Iterable[Sink], heartbeat_seconds: float, counters: Callable[[], JsonDict],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.sinks, self.heartbeat_seconds, self.counters, self.clock = list(sinks), heartbeat_seconds, counters, clock
        self.told = 0  # connections
        self._hits: list[Finding] = []  # of the connection being judged
        self._last_heartbeat = clock()
        self._judge: Judge | None = None

    def live_judge(self, reader: Reader, settings: Settings) -> Judge:
        from proxydiag.rules.judge import Judge, by_end

        assert reader.analysis.tally is not None
        self._judge = Judge(reader.analysis.tally, settings.options, settings.stalwart, clock=by_end,
                            on_hit=self.hit, on_judged=self.judged)
        return self._judge

    def start(self, info: JsonDict) -> None:
        for sink in self.sinks:
            sink.start(info)

    def hit(self, finding: Finding, first: bool, conn: Connection | None, added: int) -> None:
        listener = listener_of(conn) if conn is not None else None
        if conn is not None:
            self._hits.append(finding)
        if first or added:
            for sink in self.sinks:
                sink.finding(finding, first, listener, added)

    def judged(self, conn: Connection) -> None:
        hits, self._hits = self._hits, []
        self.told += 1
        for sink in self.sinks:
            sink.connection(conn, hits)

    def tick(self) -> None:
        if self._judge is not None:  # live, the capture's clock is the wall clock
            self._judge.advance(time.time())
        if self.clock() - self._last_heartbeat >= self.heartbeat_seconds:
            self._heartbeat()

    def finish(self, analysis: Analysis) -> None:
        """After the capture: the connections still waiting judged, the last counters, the
        end with the report of the whole run."""
        if self._judge is not None:
            self._judge.findings()
        self._heartbeat()
        report = final_report(analysis)
        for sink in self.sinks:
            sink.stop(report)

    def _heartbeat(self) -> None:
        self._last_heartbeat = self.clock()
        counters = self.counters()
        for sink in self.sinks:
            sink.heartbeat(counters)


def final_report(analysis: Analysis) -> Report:
    """The told report without its connections (each was an event of its own), every
    finding with the listener of the first connection it cites."""
    return Report(final_document(analysis), findings=analysis.findings)


def final_document(analysis: Analysis) -> JsonDict:
    document = analysis.to_dict(lazy=True)
    del document["connections"]
    document["findings"] = [{**item, "listener": _listener(analysis, finding)}
                            for item, finding in zip(document["findings"], analysis.findings, strict=True)]
    return document


def _listener(analysis: Analysis, finding: Finding) -> str | None:
    """Connections are numbered in report order from 1: the first cited is found by its number."""
    if not finding.connections:
        return None
    return listener_of(analysis.connections[finding.connections[0] - 1])


def capture_counters(capture: LiveCapture, table: FlowTable, connections: int) -> JsonDict:
    """The heartbeat's numbers: cumulative since the start, except `open_flows`."""
    return {
        "packets": capture.info.packets,
        "connections": connections,
        "open_flows": table.open_flows,
        "capture_dropped": capture.dropped(),
        "flow_table_evictions": {"half_open": table.evicted_half_open, "idle": table.evicted_idle,
                                 "cap": table.evicted_by_cap},
    }


class AnnounceSink:
    """One line per new finding (warnings and errors), as sniff always printed them."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def start(self, info: JsonDict) -> None:
        pass

    def connection(self, conn: Connection, findings: list[Finding]) -> None:
        pass

    def finding(self, finding: Finding, first: bool, listener: str | None, added: int) -> None:
        if first and finding.severity != "info":
            self.stream.write(f"{finding.severity.upper():7} {finding.code} {finding.slug}: {finding.message}\n")
            self.stream.flush()

    def heartbeat(self, counters: JsonDict) -> None:
        pass

    def stop(self, report: Report) -> None:
        pass


class JsonlSink:
    """One JSON object per line and event, flushed as written: `schema`, `event`, `time`
    (RFC 3339, UTC), then the event's own keys (docs/sensor.md). Escaped like every JSON
    proxydiag writes; with an anonymizer, every event passes through it. Written to a
    file, the file is reopened on SIGHUP (after logrotate moved it)."""

    def __init__(self, path: Path | None = None, anonymizer: Anonymizer | None = None,
                 now: Callable[[], float] = time.time) -> None:
        self.path, self.anonymizer, self.now = path, anonymizer, now
        self._handle: IO[str] = self._open() if path is not None else sys.stdout
        self._reopen = False

    def request_reopen(self) -> None:
        """From a signal handler: the next event goes to a freshly opened file."""
        self._reopen = True

    def start(self, info: JsonDict) -> None:
        self._write("start", {"version": __version__, "options": self._private_options(info)})

    def connection(self, conn: Connection, findings: list[Finding]) -> None:
        listener = listener_of(conn)
        self._write("connection", {
            "listener": self._private_text(listener),
            "service": service_of(conn),
            "proxy_header": header_version(conn),
            "findings": [{"code": finding.code, "severity": finding.severity} for finding in findings],
            "connection": self.anonymizer.connection(conn.to_dict()) if self.anonymizer else conn.to_dict(),
        })

    def finding(self, finding: Finding, first: bool, listener: str | None, added: int) -> None:
        from proxydiag.report.views import told_findings

        (item,) = [told.to_dict() for told in told_findings([finding])]
        self._write("finding", {
            "first": first,
            "added": added,
            "listener": self._private_text(listener) if listener else None,
            "finding": self.anonymizer.findings([item], [finding])[0] if self.anonymizer else item,
        })

    def heartbeat(self, counters: JsonDict) -> None:
        self._write("heartbeat", {"counters": counters})

    def stop(self, report: Report) -> None:
        from proxydiag.report.json import document_of

        document = document_of(report)
        self._write("stop", {"report": self.anonymizer.document(document, findings=report.typed()) if self.anonymizer
                             else document})
        if self.path is not None:
            self._handle.close()

    def _write(self, event: str, payload: JsonDict) -> None:
        if self._reopen and self.path is not None:
            self._reopen = False
            self._handle.close()
            self._handle = self._open()
        line = checked_line({"schema": EVENT_SCHEMA, "event": event, "time": rfc3339(self.now()), **payload})
        self._handle.write(line + "\n")
        self._handle.flush()

    def _open(self) -> IO[str]:
        assert self.path is not None
        try:
            return open_appending(self.path)
        except OSError as error:
            raise SensorError(f"cannot write {self.path}: {error.strerror or error}") from None

    def _private_text(self, text: str) -> str:
        return self.anonymizer.text(text) if self.anonymizer else text

    def _private_options(self, info: JsonDict) -> JsonDict:
        if self.anonymizer is None:
            return info
        written = [info["write"]] if info.get("write") else []  # the -w file's name is the user's too
        return self.anonymizer.document({"options": info}, written)["options"]


class MetricsSink:
    """A Prometheus exporter of its own registry, served over HTTP while sniff runs.
    Labels are bounded: listeners (server endpoints, never clients) up to
    MAX_LISTENERS, then "other"; codes, severities, services, header versions and
    eviction reasons are small fixed sets."""

    def __init__(self, host: str, port: int, anonymizer: Anonymizer | None = None,
                 max_listeners: int = MAX_LISTENERS) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Info, disable_created_metrics, start_http_server

        disable_created_metrics()  # no proxydiag_*_created series beside each counter
        self.anonymizer, self.max_listeners = anonymizer, max_listeners
        self._listeners: dict[str, str] = {}
        self.registry = registry = CollectorRegistry()
        self.connections = Counter("proxydiag_connections", "TCP connections judged, by server endpoint and service.",
                                   ["listener", "service"], registry=registry)
        self.headers = Counter("proxydiag_proxy_headers", "Connections by the PROXY header they carried (1, 2, none).",
                               ["version", "listener"], registry=registry)
        self.findings = Counter("proxydiag_findings", "Connections counted in findings, by code and severity.",
                                ["code", "severity", "listener"], registry=registry)
        self.packets = Counter("proxydiag_capture_packets", "Packets captured.", registry=registry)
        self.dropped = Counter("proxydiag_capture_dropped_packets",
                               "Packets lost by the capture (kernel buffer or analysis queue full).", registry=registry)
        self.evictions = Counter("proxydiag_flow_table_evictions", "Flows the bounded flow table let go early, by reason.",
                                 ["reason"], registry=registry)
        self.open_flows = Gauge("proxydiag_open_flows", "TCP flows being tracked.", registry=registry)
        self.up = Gauge("proxydiag_up", "1 while the capture runs.", registry=registry)
        Info("proxydiag_build", "The proxydiag version.", registry=registry).info({"version": __version__})
        self._totals: dict[str, int] = {}
        try:
            start_http_server(port, addr=host, registry=registry)
        except OSError as error:
            raise SensorError(f"cannot serve metrics on {host}:{port}: {error.strerror or error}") from None

    def start(self, info: JsonDict) -> None:
        self.up.set(1)

    def connection(self, conn: Connection, findings: list[Finding]) -> None:
        listener = self._label(listener_of(conn))
        self.connections.labels(listener=listener, service=service_of(conn)).inc()
        self.headers.labels(version=header_version(conn), listener=listener).inc()

    def finding(self, finding: Finding, first: bool, listener: str | None, added: int) -> None:
        label = self._label(listener) if listener else "none"
        self.findings.labels(code=finding.code, severity=finding.severity, listener=label).inc(added)

    def heartbeat(self, counters: JsonDict) -> None:
        self._advance(self.packets, "packets", counters["packets"])
        self._advance(self.dropped, "dropped", counters["capture_dropped"])
        for reason, total in counters["flow_table_evictions"].items():
            self._advance(self.evictions.labels(reason=reason), f"evicted-{reason}", total)
        self.open_flows.set(counters["open_flows"])

    def stop(self, report: Report) -> None:
        self.up.set(0)

    def _advance(self, counter: Any, key: str, total: int) -> None:
        """A counter follows a cumulative total."""
        counter.inc(max(0, total - self._totals.get(key, 0)))
        self._totals[key] = max(total, self._totals.get(key, 0))

    def _label(self, listener: str) -> str:
        if listener not in self._listeners:
            if len(self._listeners) >= self.max_listeners:
                return OTHER
            self._listeners[listener] = self.anonymizer.text(listener) if self.anonymizer else listener
        return self._listeners[listener]


def on_signals(stop: Callable[[], None], reopen: Callable[[], None] | None) -> None:
    """SIGTERM ends the capture as Ctrl-C does (the final report is written); SIGHUP
    reopens the events file, if there is one."""
    signal.signal(signal.SIGTERM, lambda *_: stop())
    if reopen is not None:
        signal.signal(signal.SIGHUP, lambda *_: reopen())
