"""TCP connection tracking and reassembly of the opening of each direction.

Only the first `OPENING_LIMIT` bytes of each direction are kept: that is all the
diagnosis needs. Past that a packet costs one dictionary look-up and a flag test.
Finished connections are handed to a callback and forgotten.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Iterable

from proxydiag.packet import LINK_DECODERS, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, reverse_key, split_key, tcp_details
from proxydiag.services import DEFAULT_TABLE, ServiceTable

_CONTROL_FLAGS = TCP_SYN | TCP_FIN | TCP_RST

OPENING_LIMIT = 8192
MAX_SEGMENTS = 128
SEQ_MOD = 1 << 32
HALF_SEQ = 1 << 31
CLOSED_MEMORY = 4096  # recently closed connections remembered to swallow their stragglers



@dataclass(frozen=True, slots=True)
class Chunk:
    """Where a piece of a reassembled stream came from."""

    offset: int
    frame: int
    ts: float


@dataclass(frozen=True, slots=True)
class Stream:
    """The reassembled opening of one direction of a connection."""

    data: bytes
    chunks: tuple[Chunk, ...]
    start_seen: bool
    gap_at: int | None
    retransmissions: int
    out_of_order: int
    overlap_conflicts: int
    snapped_bytes: int
    segments: int
    fin: tuple[int, float] | None
    rst: tuple[int, float] | None

    @property
    def first_frame(self) -> int | None:
        return self.chunks[0].frame if self.chunks else None

    @property
    def first_ts(self) -> float | None:
        return self.chunks[0].ts if self.chunks else None

    def position(self, offset: int) -> Chunk | None:
        """The chunk that carried the byte at `offset`."""
        found = None
        for chunk in self.chunks:
            if chunk.offset > offset:
                break
            found = chunk
        return found


class _Direction:
    __slots__ = (
        "base",
        "start_seen",
        "segments",
        "stored",
        "full",
        "snapped",
        "fin",
        "rst",
        "count",
    )

    def __init__(self) -> None:
        self.base: int | None = None
        self.start_seen = False
        self.segments: list[tuple[int, int, float, bytes]] = []
        self.stored = 0
        self.full = False
        self.snapped = 0
        self.fin: tuple[int, float] | None = None
        self.rst: tuple[int, float] | None = None
        self.count = 0

    def add(self, seq: int, frame: int, ts: float, data: bytes, snapped: int) -> None:
        self.count += 1
        if self.base is None:
            self.base = seq
        offset = (seq - self.base) % SEQ_MOD
        if offset >= HALF_SEQ or offset >= OPENING_LIMIT:
            if offset < HALF_SEQ:
                self.full = True
            return
        self.snapped += snapped
        kept = data[: OPENING_LIMIT - offset]
        self.segments.append((offset, frame, ts, kept))
        self.stored += len(kept)
        if len(self.segments) > MAX_SEGMENTS:
            # Segments may arrive in any order (3,000 one-byte ones in reverse): the opening
            # is what matters, so the segment furthest from it makes room.
            furthest = max(range(len(self.segments)), key=lambda index: self.segments[index][0])
            self.stored -= len(self.segments.pop(furthest)[3])
        if self.stored >= OPENING_LIMIT:
            self.full = True

    def assemble(self) -> Stream:
        ordered = sorted(enumerate(self.segments), key=lambda item: (item[1][0], item[0]))
        out_of_order = sum(1 for rank, (arrival, _) in enumerate(ordered) if arrival != rank)
        data = bytearray()
        chunks: list[Chunk] = []
        gap_at = None
        retransmissions = conflicts = 0
        for _, (offset, frame, ts, payload) in ordered:
            end = offset + len(payload)
            if offset > len(data):
                gap_at = len(data)
                break
            if end <= len(data):
                retransmissions += 1
                conflicts += data[offset:end] != payload
                continue
            overlap = len(data) - offset
            if overlap and data[offset:] != payload[:overlap]:
                conflicts += 1
            chunks.append(Chunk(len(data), frame, ts))
            data += payload[overlap:]
        return Stream(
            data=bytes(data),
            chunks=tuple(chunks),
            start_seen=self.start_seen,
            gap_at=gap_at,
            retransmissions=retransmissions,
            out_of_order=out_of_order,
            overlap_conflicts=conflicts,
            snapped_bytes=self.snapped,
            segments=self.count,
            fin=self.fin,
            rst=self.rst,
        )


class _Connection:
    __slots__ = (
        "id",
        "source",
        "key",
        "first_frame",
        "first_ts",
        "syn_seen",
        "synack_seen",
        "established_ts",
        "client",
        "server",
        "closed",
    )

    def __init__(self, conn_id: int, source: int, key: bytes, frame: int, ts: float) -> None:
        self.id = conn_id
        self.source = source
        self.key = key  # oriented client -> server
        self.first_frame = frame
        self.first_ts = ts
        self.syn_seen = False
        self.synack_seen = False
        self.established_ts: float | None = None
        self.client = _Direction()
        self.server = _Direction()
        self.closed = False


@dataclass(frozen=True, slots=True)
class TrackedConnection:
    """A finished connection: its endpoints and both reassembled openings."""

    id: int
    source: int
    first_frame: int
    first_ts: float
    client_addr: str
    client_port: int
    server_addr: str
    server_port: int
    syn_seen: bool
    synack_seen: bool
    established_ts: float | None
    client: Stream
    server: Stream
    seen_until: float  # the close, or the end of the capture for connections still open

    @property
    def mid_stream(self) -> bool:
        return not (self.syn_seen or self.synack_seen)


class FlowTable:
    """Feeds decoded TCP segments into connections; calls `on_finished` for each one."""

    def __init__(self, on_finished: Callable[[TrackedConnection], None], services: ServiceTable = DEFAULT_TABLE) -> None:
        # The service table's ports orient connections whose SYN was not captured.
        self._server_ports = frozenset(services.ports())
        self._by_key: dict[bytes, tuple[_Connection, bool]] = {}
        self._closed: OrderedDict[int, _Connection] = OrderedDict()
        self._on_finished = on_finished
        self._next_id = 1
        self.unsupported_linktypes: set[int] = set()
        self._last_ts = 0.0

    def consume(self, source: int, records: Iterable[tuple], progress: Callable[[], None] | None = None) -> None:
        """Track every TCP segment of a capture's records (frame_no, ts, linktype, frame, ...).

        The hot loop: a segment of a connection whose openings are already kept costs a
        key slice and one dictionary look-up.
        """
        decoders = LINK_DECODERS
        lookup = self._by_key.get
        add = self.add
        ts = self._last_ts
        for frame_no, ts, linktype, frame, _wire_length in records:
            if not frame_no & 0xFFFF and progress is not None:
                progress()
            decoder = decoders.get(linktype)
            if decoder is None:
                self.unsupported_linktypes.add(linktype)
                continue
            located = decoder(frame)
            if located is None:
                continue
            key, flags, tcp, ip_end = located
            if not flags & _CONTROL_FLAGS:
                entry = lookup(key)
                if entry is not None:
                    conn = entry[0]
                    if conn.closed or (conn.client if entry[1] else conn.server).full:
                        continue
                    if ip_end - tcp == (frame[tcp + 12] >> 4) * 4 and conn.established_ts is not None:
                        continue  # a bare ACK of an established connection
            add(source, frame_no, ts, key, flags, frame, tcp, ip_end)
        self._last_ts = ts

    def add(self, source: int, frame_no: int, ts: float, key: bytes, flags: int, frame: bytes, tcp: int, ip_end: int) -> None:
        """One TCP segment, located in `frame` by `packet.locate_tcp`."""
        entry = self._by_key.get(key)
        seq, start, end, snapped = tcp_details(frame, tcp, ip_end)
        if entry is not None and start == end and not flags & _CONTROL_FLAGS:
            conn = entry[0]
            if conn.established_ts is not None or not conn.synack_seen:
                return  # a bare ACK teaches nothing once the handshake is known
        payload = frame[start:end]
        if entry is None or (flags & (TCP_SYN | TCP_ACK) == TCP_SYN and self._is_new_syn(entry, seq)):
            if entry is not None:
                self._finish(entry[0], ts)
            if flags & TCP_RST and not payload:
                return
            entry = self._open(source, frame_no, ts, key, flags)
        conn, from_client = entry
        direction = conn.client if from_client else conn.server
        if flags & TCP_SYN:
            self._on_syn(conn, direction, from_client, seq, flags)
            seq = (seq + 1) % SEQ_MOD
        elif conn.established_ts is None and from_client and flags & TCP_ACK and conn.synack_seen:
            conn.established_ts = ts
        if payload and not direction.full and not conn.closed:
            direction.add(seq, frame_no, ts, payload, snapped)
        if flags & TCP_FIN and direction.fin is None:
            direction.fin = (frame_no, ts)
        if flags & TCP_RST and direction.rst is None:
            direction.rst = (frame_no, ts)
        if not conn.closed and (flags & TCP_RST or (conn.client.fin and conn.server.fin)):
            self._finish(conn, ts)

    def flush(self) -> None:
        """Finish every connection still open (end of the capture)."""
        for conn in {id(c): c for c, _ in self._by_key.values()}.values():
            if not conn.closed:
                self._finish(conn, at_end=True)
        self._by_key.clear()
        self._closed.clear()

    @staticmethod
    def _is_new_syn(entry: tuple[_Connection, bool], seq: int) -> bool:
        """A SYN with another initial sequence number reuses the ports for a new
        connection; one with the same number is a retransmission, or the same packet
        seen again on a second interface (dumpcap -i lo -i any)."""
        conn, from_client = entry
        direction = conn.client if from_client else conn.server
        return direction.base is not None and (seq + 1) % SEQ_MOD != direction.base

    def _open(self, source: int, frame: int, ts: float, key: bytes, flags: int) -> tuple[_Connection, bool]:
        from_client = self._sender_is_client(key, flags)
        oriented = key if from_client else reverse_key(key)
        conn = _Connection(self._next_id, source, oriented, frame, ts)
        self._next_id += 1
        self._by_key[oriented] = (conn, True)
        self._by_key[reverse_key(oriented)] = (conn, False)
        return self._by_key[key]

    def _sender_is_client(self, key: bytes, flags: int) -> bool:
        if flags & TCP_SYN:
            return not flags & TCP_ACK
        _, src_port, _, dst_port = split_key(key)
        if (dst_port in self._server_ports) != (src_port in self._server_ports):
            return dst_port in self._server_ports
        return dst_port <= src_port

    @staticmethod
    def _on_syn(conn: _Connection, direction: _Direction, from_client: bool, seq: int, flags: int) -> None:
        if from_client:
            conn.syn_seen = True
        else:
            conn.synack_seen = True
        if not direction.segments:
            direction.base = (seq + 1) % SEQ_MOD
            direction.start_seen = True

    def _finish(self, conn: _Connection, ts: float | None = None, at_end: bool = False) -> None:
        if conn.closed:
            return
        conn.closed = True
        self._remember_closed(conn)
        client_addr, client_port, server_addr, server_port = split_key(conn.key)
        self._on_finished(
            TrackedConnection(
                id=conn.id,
                source=conn.source,
                first_frame=conn.first_frame,
                first_ts=conn.first_ts,
                client_addr=client_addr,
                client_port=client_port,
                server_addr=server_addr,
                server_port=server_port,
                syn_seen=conn.syn_seen,
                synack_seen=conn.synack_seen,
                established_ts=conn.established_ts,
                client=conn.client.assemble(),
                server=conn.server.assemble(),
                seen_until=self._last_ts if at_end else ts,
            )
        )
        conn.client.segments = conn.server.segments = []

    def _remember_closed(self, conn: _Connection) -> None:
        """Closed connections stay in the table a while, so late FINs, ACKs and
        retransmissions do not open phantom mid-stream connections."""
        self._closed[conn.id] = conn
        if len(self._closed) > CLOSED_MEMORY:
            _, oldest = self._closed.popitem(last=False)
            for key in (oldest.key, reverse_key(oldest.key)):
                if self._by_key.get(key, (None,))[0] is oldest:
                    del self._by_key[key]
