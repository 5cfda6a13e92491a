"""From capture files to an `Analysis`: read, decode, track, describe each connection."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from proxydiag import proxy_protocol
from proxydiag.flows import FlowTable, Stream, TrackedConnection
from proxydiag.model import Analysis, Connection, Endpoints, InputSummary
from proxydiag.redact import first_line
from proxydiag.sources import CaptureError, CaptureReader, open_capture

# Port -> protocol, used when the bytes do not tell.
PORT_PROTOCOLS = {
    25: "smtp",
    587: "submission",
    465: "submissions",
    24: "lmtp",
    143: "imap",
    993: "imaps",
    110: "pop3",
    995: "pop3s",
    4190: "managesieve",
    80: "http",
    8080: "http",
    443: "https",
}


@dataclass
class Progress:
    """Called now and then with (input index, bytes read, total bytes or None, connections seen)."""

    callback: Callable[[int, int, int | None, int], None]


def analyze_files(paths: Iterable[str], progress: Progress | None = None) -> Analysis:
    analysis = Analysis()
    table = FlowTable(lambda tracked: analysis.connections.append(describe(tracked)))
    for index, path in enumerate(paths):
        try:
            reader = open_capture(path)
        except CaptureError as error:
            analysis.inputs.append(InputSummary(path, None, [], 0, error=str(error)))
            continue
        with reader:
            table.consume(index, reader, _progress_reporter(index, reader, analysis, progress))
        table.flush()
        info = reader.info
        analysis.inputs.append(InputSummary(info.path, info.format, info.linktypes, info.packets, damaged=info.damaged))
    analysis.connections.sort(key=lambda conn: (conn.input, conn.first_frame))
    analysis.unsupported_linktypes = table.unsupported_linktypes
    return analysis


def _progress_reporter(index: int, reader: CaptureReader, analysis: Analysis, progress: Progress | None):
    if progress is None:
        return None
    return lambda: progress.callback(index, reader.info.bytes_read, reader.info.size, len(analysis.connections))


def describe(tracked: TrackedConnection) -> Connection:
    """What a finished connection shows: header, first words of each side, closing."""
    conn = Connection(
        id=tracked.id,
        input=tracked.source,
        first_frame=tracked.first_frame,
        start_ts=tracked.first_ts,
        tcp=Endpoints(tracked.client_addr, tracked.client_port, tracked.server_addr, tracked.server_port),
        mid_stream=tracked.mid_stream,
        established_ts=tracked.established_ts,
        reassembly=_reassembly_facts(tracked),
    )
    client, server = tracked.client, tracked.server
    application = _read_headers(conn, client)
    _describe_client(conn, client, application)
    _describe_server(conn, server)
    conn.first_speaker = _first_speaker(client, server)
    conn.protocol = guess_protocol(client.data[application:], server.data, tracked.server_port)
    conn.closed_by, conn.close_kind, conn.close_ts = _closing(client, server)
    return conn


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
        else:
            conn.extra_headers.append(result)
        if not result.length:
            break
        offset += result.length
    return offset


def _describe_client(conn: Connection, client: Stream, application: int) -> None:
    data = client.data[application:]
    if not data:
        return
    chunk = client.position(application)
    conn.client_first_frame = chunk.frame if chunk else None
    conn.client_first_ts = chunk.ts if chunk else None
    if is_tls_record(data):
        conn.tls_client_hello = data[5:6] == b"\x01"
        conn.client_first = "TLS ClientHello" if conn.tls_client_hello else "TLS record"
    else:
        conn.client_first = first_line(data)


def _describe_server(conn: Connection, server: Stream) -> None:
    if not server.data:
        return
    conn.greeting_frame = server.first_frame
    conn.greeting_ts = server.first_ts
    conn.greeting = "TLS record" if is_tls_record(server.data) else first_line(server.data)


def _first_speaker(client: Stream, server: Stream) -> str | None:
    if client.first_ts is None and server.first_ts is None:
        return None
    if server.first_ts is None:
        return "client"
    if client.first_ts is None:
        return "server"
    return "client" if (client.first_ts, client.first_frame) <= (server.first_ts, server.first_frame) else "server"


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
    facts = {}
    for side, stream in (("client", tracked.client), ("server", tracked.server)):
        facts[side] = {
            "start_seen": stream.start_seen,
            "gap_at": stream.gap_at,
            "retransmissions": stream.retransmissions,
            "out_of_order": stream.out_of_order,
            "overlap_conflicts": stream.overlap_conflicts,
            "snapped_bytes": stream.snapped_bytes,
        }
    return facts


def is_tls_record(data: bytes) -> bool:
    return len(data) >= 3 and data[0] in (0x14, 0x15, 0x16, 0x17) and data[1] == 0x03 and data[2] <= 0x04


def guess_protocol(client_data: bytes, server_data: bytes, server_port: int) -> str | None:
    """The application protocol from the bytes first, the port second."""
    if is_tls_record(client_data) or is_tls_record(server_data):
        return "tls"
    if server_data.startswith((b"220 ", b"220-")):
        return "lmtp" if client_data[:4].upper() == b"LHLO" else "smtp"
    if server_data.startswith(b"* "):
        return "imap"
    if server_data.startswith(b"+OK"):
        return "pop3"
    if server_data.startswith(b'"IMPLEMENTATION"') or server_data.startswith(b'"SIEVE"'):
        return "managesieve"
    if server_data.startswith(b"HTTP/") or client_data.split(b" ", 1)[0] in (
        b"GET",
        b"POST",
        b"PUT",
        b"HEAD",
        b"OPTIONS",
        b"DELETE",
        b"PATCH",
    ):
        return "http"
    return PORT_PROTOCOLS.get(server_port)
