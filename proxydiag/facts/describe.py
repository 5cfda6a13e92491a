"""A tracked TCP connection described as the facts every rule reads (`Connection`): the
PROXY header(s), who spoke first, the first words of each side as the recognisers masked
them, TLS, how it closed, what reassembly met."""

from __future__ import annotations

import dataclasses
import functools
import re
import sys

from proxydiag.capture.flows import TrackedConnection
from proxydiag.capture.reassembly import Stream
from proxydiag.facts.model import Connection, Endpoints
from proxydiag.parsers import proxy_protocol
from proxydiag.parsers.protocols import Opening, recognise
from proxydiag.parsers.protocols.fields import field_names
from proxydiag.parsers.protocols.tls import starts_with_tls
from proxydiag.parsers.redact import first_line, printable
from proxydiag.services import DEFAULT_TABLE, ServiceTable

SERVER_TEXT_LIMIT = 2048  # what rules may search in the server's words


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
    conn.opening = recognised(bytes(client.data[application:]), bytes(server.data), tracked.server_port, services)
    conn.protocol = protocol_spoken(conn.opening)
    _describe_client(conn, client, application)
    _describe_server(conn, server)
    conn.first_speaker = _first_speaker(conn)
    conn.replies_to_header = replies_to_header(conn)
    conn.closed_by, conn.close_kind, conn.close_ts = _closing(client, server)
    conn.last_ts = tracked.seen_until
    return conn


# Distinct openings remembered. A busy server opens thousands of connections with the same
# greeting and replies, and its clients often send the same first words: those are
# recognised once. Each entry holds its two openings (up to 8 KiB each): at most about 4 MiB.
OPENINGS_REMEMBERED = 256


@functools.lru_cache(maxsize=OPENINGS_REMEMBERED)
def recognised(client: bytes, server: bytes, server_port: int, services: ServiceTable) -> Opening:
    """`recognise`, once per distinct (client bytes, server bytes, port, service table):
    connections that open alike share one `Opening`, which nothing changes once described."""
    return share_strings(recognise(client, server, server_port, services))


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
    for name in field_names(type(value)):
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


def replies_to_header(conn: Connection) -> list[str]:
    """The server's error replies to the PROXY header's own bytes, when it read them as
    commands: errors sent before the replies to the client's real commands."""
    if conn.header is None or conn.tls_client_hello or conn.extra_headers:
        return []  # the errors answer the TLS bytes, or the second header (duplicate-proxy-header)
    replies = conn.mail.replies_before_commands if conn.mail is not None else []
    return [reply for reply in replies if reply[:1] in ("4", "5") or reply.startswith(("-ERR", "* BAD", "* BYE")) or " BAD " in reply[:16]]


def _read_headers(conn: Connection, client: Stream) -> int:
    """Parse the PROXY header(s) at the start of the client's stream; return where the
    application data begins."""
    if not client.start_seen or not client.data:
        return 0
    offset = 0
    while offset < len(client.data):
        if proxy_protocol.header_version_at_start(client.data[offset : offset + 12]) is None:
            break  # what `parse` would say, without copying the rest of the opening
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
    conn.greeting, conn.server_text = server_words(bytes(server.data))


@functools.lru_cache(maxsize=OPENINGS_REMEMBERED)
def server_words(data: bytes) -> tuple[str, str | None]:
    """(greeting, the text rules may search) of a server's opening, once per distinct opening."""
    if starts_with_tls(data):
        return "TLS record", None
    return sys.intern(first_line(data)), sys.intern(printable(data, SERVER_TEXT_LIMIT))


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


StreamFacts = dict[str, bool | int | None]  # one side's reassembly facts, named as in _FACT_NAMES


def _reassembly_facts(tracked: TrackedConnection) -> dict[str, StreamFacts]:
    return {"client": _stream_facts(tracked.client), "server": _stream_facts(tracked.server)}


def _stream_facts(stream: Stream) -> StreamFacts:
    return _shared_facts((stream.start_seen, stream.gap_at, stream.retransmissions, stream.out_of_order,
                          stream.overlap_conflicts, stream.snapped_bytes))


def _shared_facts(facts: tuple[bool | int | None, ...]) -> StreamFacts:
    if facts not in _FACTS:  # most streams share one of a few dicts (never mutated)
        _FACTS[facts] = dict(zip(_FACT_NAMES, facts, strict=False))
    return _FACTS[facts]


_FACT_NAMES = ("start_seen", "gap_at", "retransmissions", "out_of_order", "overlap_conflicts", "snapped_bytes")
_FACTS: dict[tuple[bool | int | None, ...], StreamFacts] = {}
