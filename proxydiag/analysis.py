"""From capture files to an `Analysis`: read, decode, track, describe each connection."""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

from proxydiag import proxy_protocol
from proxydiag.expectations import ExpectationResolver, parse_expect_options, parse_trusted_networks
from proxydiag.flows import FlowTable, Stream, TrackedConnection
from proxydiag.model import Analysis, Connection, Endpoints, FlowTableBounds, InputSummary
from proxydiag.protocols import Opening, recognise
from proxydiag.protocols.tls import starts_with_tls
from proxydiag.redact import first_line, printable
from proxydiag.judging import OnCite, judge_all, tally_of
from proxydiag.rules.base import Options
from proxydiag.services import DEFAULT_TABLE, ServiceTable, parse_ports
from proxydiag.stalwart_config import StalwartConfig
from proxydiag.stalwart_config import load as load_stalwart_config
from proxydiag.store import ConnectionStore
from proxydiag.tally import Tally

SERVER_TEXT_LIMIT = 2048  # what rules may search in the server's words


@dataclass
class Progress:
    """Called now and then with (input index, bytes read, total bytes or None, connections seen)."""

    callback: Callable[[int, int, int | None, int], None]


@dataclass
class Settings:
    """Everything the command line says about how to judge the traffic."""

    expect_global: str | None = None
    expect_ports: dict[int, str] = field(default_factory=dict)
    trusted: list | None = None
    stalwart: StalwartConfig | None = None
    options: Options = field(default_factory=Options)

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
                                  analysis.flow_table, on_judged=keep, on_cite=on_cite)
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
    """Track a live capture (proxydiag.live.LiveCapture) until it stops."""
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
    from proxydiag.shards import track_files

    reader = Reader(settings, services)
    summary = track_files(paths, services, progress, reader.take, jobs)
    analysis = reader.analysis
    analysis.inputs = summary.inputs
    analysis.unsupported_linktypes = summary.unsupported_linktypes
    analysis.flow_table = summary.flow_table
    return analysis


def describe(tracked: TrackedConnection, services: ServiceTable = DEFAULT_TABLE) -> Connection:
    """What a finished connection shows: header, first words of each side, closing."""
    conn = Connection(
        id=tracked.id,
        input=tracked.source,
        first_frame=tracked.first_frame,
        start_ts=tracked.first_ts,
        tcp=Endpoints(sys.intern(tracked.client_addr), tracked.client_port, sys.intern(tracked.server_addr),
                      tracked.server_port),
        mid_stream=tracked.mid_stream,
        established_ts=tracked.established_ts,
        reassembly=_reassembly_facts(tracked),
        evicted=tracked.evicted,
    )
    client, server = tracked.client, tracked.server
    application = _read_headers(conn, client)
    conn.service = services.lookup(tracked.server_port)
    conn.header_service = services.lookup(conn.header.dst_port) if conn.header is not None else None
    conn.opening = share_strings(recognise(client.data[application:], server.data, tracked.server_port, services))
    conn.protocol = protocol_spoken(conn.opening)
    _describe_client(conn, client, application)
    _describe_server(conn, server)
    conn.first_speaker = _first_speaker(conn)
    conn.replies_to_header = replies_to_header(conn)
    conn.closed_by, conn.close_kind, conn.close_ts = _closing(client, server)
    conn.last_ts = tracked.seen_until
    return conn


def share_again(conn: Connection) -> Connection:
    """A connection that crossed from another process (pickled) shares what `describe`
    shares among connections again: its texts and its reassembly facts."""
    tcp = conn.tcp
    conn.tcp = Endpoints(sys.intern(tcp.src_addr), tcp.src_port, sys.intern(tcp.dst_addr), tcp.dst_port)
    conn.greeting = None if conn.greeting is None else sys.intern(conn.greeting)
    conn.server_text = None if conn.server_text is None else sys.intern(conn.server_text)
    if conn.opening is not None:
        share_strings(conn.opening)
    conn.reassembly = {side: _shared_facts(tuple(facts.values())) for side, facts in conn.reassembly.items()}
    return conn


def share_strings(value):
    """The same greeting, capability or verb seen on thousands of connections is kept once."""
    intern = sys.intern
    for name in _field_names(type(value)):
        current = getattr(value, name)
        kind = type(current)
        if kind is str:
            setattr(value, name, intern(current))
        elif kind is list:
            if current and all(type(text) is str for text in current):
                setattr(value, name, [intern(text) for text in current])
        elif current is not None and kind not in _SCALARS and dataclasses.is_dataclass(current):
            share_strings(current)
    return value


_SCALARS = frozenset({bool, int, float, bytes, dict, tuple})


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(item.name for item in dataclasses.fields(cls))
    return names


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def replies_to_header(conn: Connection) -> list[str]:
    """The server's error replies to the PROXY header's own bytes, when it read them as
    commands: errors sent before the replies to the client's real commands."""
    if conn.header is None or conn.tls_client_hello or conn.extra_headers:
        return []  # the errors answer the TLS bytes, or the second header (PD106)
    replies = conn.mail.replies_before_commands if conn.mail is not None else []
    return [reply for reply in replies if reply[:1] in ("4", "5") or reply.startswith(("-ERR", "* BAD", "* BYE")) or " BAD " in reply[:16]]


def _read_headers(conn: Connection, client: Stream) -> int:
    """Parse the PROXY header(s) at the start of the client's stream; return where the
    application data begins."""
    if not client.start_seen or not client.data:
        return 0
    offset = 0
    while offset < len(client.data):
        result = proxy_protocol.parse(client.data[offset:])
        if result.version is None:
            break
        chunk = client.position(offset)
        conn.header_frames.append(chunk.frame if chunk else None)
        if conn.proxy is None:
            conn.proxy = result
            conn.header_ts = chunk.ts if chunk else None
            conn.header_bytes = client.data[: result.length or proxy_protocol.V1_MAX_LENGTH]
            conn.header_segments = sum(1 for piece in client.chunks if piece.offset < max(result.length, 1))
        else:
            conn.extra_headers.append(result)
        if result.incomplete:
            return len(client.data)  # everything the client sent belongs to the unfinished header
        if not result.length:
            break
        offset += result.length
        if swallowed_client_text(result, client.data[offset - result.length : offset]):
            return _past_line(client.data, offset)
    return offset


_END_UNRELIABLE = frozenset({"v2.tlv-length", "v2.length", "v2.version"})
_LINE_TAIL = re.compile(rb"\r\n[\x20-\x7e]{2,}\Z")  # a CRLF, then text to the header's end


def swallowed_client_text(result: proxy_protocol.ParseResult, header_bytes: bytes = b"") -> bool:
    """A v2 header whose length may have run into the client's own bytes: its TLV area
    does not parse as TLVs, its length is shorter than its address block (a LOCAL one
    too, which the spec has accepted), it is no version 2, or its last bytes are a line
    of text (an address block the proxy never sent, filled by the client's command). The
    line the header's end cut in two is then a fragment of a command whose start (a verb
    such as LOGIN, which marks its arguments as secrets) is gone."""
    header = result.header
    if result.version != 2:
        return False
    short_local = header is not None and header.command == "LOCAL" and header.family != "UNSPEC" and not header.src_addr
    text_tail = _LINE_TAIL.search(header_bytes[proxy_protocol.V2_FIXED_LENGTH :]) is not None
    return short_local or text_tail or any(violation.rule in _END_UNRELIABLE for violation in result.violations)


def _past_line(data: bytes, offset: int) -> int:
    """Where the line that `offset` falls in ends (the fragment is never shown)."""
    end = data.find(b"\n", offset)
    return len(data) if end < 0 else end + 1


def _describe_client(conn: Connection, client: Stream, application: int) -> None:
    """Where and when the client's first application bytes came, and what they were, as
    the recognisers read them (masked there, once)."""
    if not client.data[application:]:
        return
    chunk = client.position(application)
    conn.client_first_frame = chunk.frame if chunk else None
    conn.client_first_ts = chunk.ts if chunk else None
    conn.tls_client_hello = client_hello_first(conn.opening)
    conn.client_first = client_first_words(conn.opening)


def protocol_spoken(opening: Opening) -> str | None:
    """What the bytes show: a stream that is TLS from its first byte is `tls`, whatever
    its port suggests (ALPN may still name the protocol inside)."""
    if opening.tls_from_first_byte and opening.recognised_from in ("port", None):
        return "tls"
    return opening.protocol


def client_hello_first(opening: Opening) -> bool:
    """The client's first application bytes are a TLS ClientHello (SSLv2-compatible ones
    included), as the TLS reader parsed it."""
    return opening.client_sent_tls and opening.tls is not None and opening.tls.client_hello is not None


def client_first_words(opening: Opening) -> str | None:
    if opening.client_sent_tls:
        return "TLS ClientHello" if client_hello_first(opening) else "TLS record"
    return opening.client_first_line


def _describe_server(conn: Connection, server: Stream) -> None:
    if not server.data:
        return
    conn.greeting_frame = server.first_frame
    conn.greeting_ts = server.first_ts
    conn.greeting = sys.intern("TLS record" if starts_with_tls(server.data) else first_line(server.data))
    conn.server_text = None if starts_with_tls(server.data) else sys.intern(printable(server.data, SERVER_TEXT_LIMIT))


def _first_speaker(conn: Connection) -> str | None:
    """Who spoke first after the PROXY header: the header is the proxy's, not the client's."""
    client = (conn.client_first_ts, conn.client_first_frame)
    server = (conn.greeting_ts, conn.greeting_frame)
    if client[0] is None:
        return "server" if server[0] is not None else None
    if server[0] is None:
        return "client"
    return "client" if client <= server else "server"


def _closing(client: Stream, server: Stream) -> tuple[str | None, str | None, float | None]:
    events = []
    for side, stream in (("client", client), ("server", server)):
        if stream.rst:
            events.append((stream.rst[1], stream.rst[0], side, "rst"))
        if stream.fin:
            events.append((stream.fin[1], stream.fin[0], side, "fin"))
    if not events:
        return None, None, None
    ts, _, side, kind = min(events)
    return side, kind, ts


def _reassembly_facts(tracked: TrackedConnection) -> dict:
    return {"client": _stream_facts(tracked.client), "server": _stream_facts(tracked.server)}


def _stream_facts(stream: Stream) -> dict:
    return _shared_facts((stream.start_seen, stream.gap_at, stream.retransmissions, stream.out_of_order,
                          stream.overlap_conflicts, stream.snapped_bytes))


def _shared_facts(facts: tuple) -> dict:
    if facts not in _FACTS:  # most streams share one of a few dicts (never mutated)
        _FACTS[facts] = dict(zip(_FACT_NAMES, facts, strict=False))
    return _FACTS[facts]


_FACT_NAMES = ("start_seen", "gap_at", "retransmissions", "out_of_order", "overlap_conflicts", "snapped_bytes")
_FACTS: dict[tuple, dict] = {}
