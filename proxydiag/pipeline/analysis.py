"""From capture files to an `Analysis`: read, decode, track, describe each connection."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

from proxydiag.capture.flows import FlowTable, TrackedConnection
from proxydiag.configs.model import Route
from proxydiag.configs.stalwart import StalwartConfig
from proxydiag.configs.stalwart import load as load_stalwart_config
from proxydiag.facts.describe import describe
from proxydiag.facts.expectations import (
    ExpectationResolver,
    TrustedEntry,
    parse_expect_options,
    parse_trusted_networks,
)
from proxydiag.facts.model import Analysis, Connection, FlowTableBounds, InputSummary
from proxydiag.facts.store import ConnectionStore
from proxydiag.pipeline.shards import Progress, track_files
from proxydiag.rules.base import Options
from proxydiag.rules.judge import OnCite, judge_all, tally_of
from proxydiag.rules.tally import Tally
from proxydiag.services import DEFAULT_TABLE, ServiceTable, parse_ports


@dataclass
class Settings:
    """Everything the command line says about how to judge the traffic."""

    expect_global: str | None = None
    expect_ports: dict[int, str] = field(default_factory=dict)
    trusted: list[TrustedEntry] | None = None
    stalwart: StalwartConfig | None = None
    options: Options = field(default_factory=Options)
    proxy_routes: tuple[Route, ...] = ()  # of the proxy configurations given with the captures

    @classmethod
    def from_options(cls, expect=(), trusted_networks=None, stalwart_config=None, ports=None, min_connections=5,
                     header_delay=1.0, greeting_timeout=5.0, internal_clients=False) -> Settings:
        expect_global, expect_ports = parse_expect_options(list(expect))
        options = Options(
            min_connections=min_connections, header_delay=header_delay, greeting_timeout=greeting_timeout,
            internal_clients=internal_clients,
        )
        if ports:
            options.services = DEFAULT_TABLE.with_ports(parse_ports(ports))
        return cls(
            expect_global=expect_global,
            expect_ports=expect_ports,
            trusted=parse_trusted_networks(trusted_networks) if trusted_networks else None,
            stalwart=load_stalwart_config(str(stalwart_config)) if stalwart_config else None,
            options=options,
        )


def diagnose(paths: Iterable[str], settings: Settings, progress: Progress | None = None, jobs: int = 1,
             on_cite: OnCite | None = None) -> Analysis:
    """Read the captures and judge them: the whole of `proxydiag analyze`. `on_cite` hears
    every connection each finding concerns (`--annotate` keeps each connection's verdict)."""
    analysis = analyze_files(paths, progress, settings.options.services, settings, jobs)
    judge_analysis(analysis, settings, on_cite)
    return analysis


def resolver_for(settings: Settings) -> ExpectationResolver:
    return ExpectationResolver(settings.expect_global, settings.expect_ports, settings.stalwart, settings.trusted)


def judge_analysis(analysis: Analysis, settings: Settings, on_cite: OnCite | None = None) -> None:
    """Judge what has been read: the first pass (the tally) was made while reading; the
    second goes over the connections in the order they started."""
    analysis.stalwart_config = settings.stalwart
    options = settings.options
    tally = analysis.tally
    if tally is None or tally.greeting_timeout != options.greeting_timeout:
        tally = analysis.tally = tally_of(analysis.connections, resolver_for(settings), options)
    resolver = replace(resolver_for(settings), endpoints=tally.expectations.endpoints)
    tally.expectations = resolver
    connections = analysis.connections
    keep = _keep_rendered(connections) if isinstance(connections, ConnectionStore) and connections.spilled else None
    analysis.findings = judge_all(_by_start(connections), tally, options, settings.stalwart, analysis.inputs,
                                  analysis.flow_table, on_judged=keep, on_cite=on_cite, proxy_routes=settings.proxy_routes)
    if isinstance(connections, ConnectionStore):  # read back for the report: as judged
        connections.prepare = lambda conn: setattr(conn, "expectation", resolver.for_connection(conn))


def _keep_rendered(store: ConnectionStore) -> Callable[[Connection], None]:
    """Each connection's JSON written as it is judged: the report reads text back, not
    connections (unpickling one costs more than judging it)."""
    from proxydiag.report.json import encode

    return lambda conn: store.keep_rendered(conn.id, encode(conn.to_dict()))


def _by_start(connections: Sequence[Connection]) -> Iterable[Connection]:
    if isinstance(connections, ConnectionStore):
        return connections.by_start()
    return sorted(connections, key=lambda conn: (conn.start_ts, conn.id))


class Reader:
    """Described connections into the store and the first pass of judging, as they finish."""

    def __init__(self, settings: Settings | None, services: ServiceTable, store: ConnectionStore | None = None) -> None:
        settings = settings if settings is not None else Settings(options=Options(services=services))
        self.services = services
        self.analysis = Analysis(connections=store if store is not None else ConnectionStore())
        self.analysis.tally = Tally(resolver_for(settings), settings.options.greeting_timeout)
        self.table = FlowTable(self.finished, services=services)
        self.then: Callable[[Connection], None] | None = None  # a live judge, for findings as they come

    def finished(self, tracked: TrackedConnection) -> None:
        self.take(describe(tracked, self.services))

    def take(self, conn: Connection) -> None:
        connections = self.analysis.connections
        assert isinstance(connections, ConnectionStore) and self.analysis.tally is not None
        connections.append(conn)
        self.analysis.tally.observe(conn, conn.tcp.dst_port in self.services)
        if self.then is not None:
            self.then(conn)

    def close_input(self, info) -> None:
        """The end of one input: its open connections are finished, and it is summarised."""
        self.table.flush()
        self.analysis.inputs.append(InputSummary(info.path, info.format, info.linktypes, info.packets, damaged=info.damaged))

    def done(self) -> Analysis:
        table, analysis = self.table, self.analysis
        analysis.unsupported_linktypes = table.unsupported_linktypes
        analysis.flow_table = FlowTableBounds(table.evicted_half_open, table.evicted_idle, table.evicted_by_cap, table.dropped)
        return analysis


def analyze_live(capture, reader: Reader) -> Analysis:
    """Track a live capture (proxydiag.capture.live.LiveCapture) until it stops."""
    try:
        reader.table.consume(0, capture)
    finally:
        capture.stop()
        reader.close_input(capture.info)
    return reader.done()


def analyze_files(paths: Iterable[str], progress: Progress | None = None,
                  services: ServiceTable = DEFAULT_TABLE, settings: Settings | None = None, jobs: int = 1) -> Analysis:
    """Track and describe every connection (in `jobs` processes), into the store and the
    first pass of judging as each is described."""
    reader = Reader(settings, services)
    summary = track_files(paths, services, progress, reader.take, jobs)
    analysis = reader.analysis
    analysis.inputs = summary.inputs
    analysis.unsupported_linktypes = summary.unsupported_linktypes
    analysis.flow_table = summary.flow_table
    return analysis
