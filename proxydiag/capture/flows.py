"""TCP connection tracking and reassembly of the opening of each direction.

Only the first `OPENING_LIMIT` bytes of each direction are kept: that is all the
diagnosis needs. Past that a packet costs one dictionary look-up and a flag test.
Finished connections are handed to a callback and forgotten.

The table is bounded (`FlowLimits`): flows quiet for too long (in capture time, the
packets' timestamps) and, past a cap on open flows, the oldest ones are evicted. An
evicted flow that carried data or completed its handshake is handed to the callback
like a finished one, marked `evicted`; a half-open flow (no data, no handshake: a SYN
flood, stray ACKs) is dropped and only counted.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from dataclasses import dataclass
from itertools import islice
from typing import Callable, Iterable

from proxydiag.capture.packet import LINK_DECODERS, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, reverse_key, split_key, tcp_details
from proxydiag.capture.reassembly import NO_SEGMENTS, SEQ_MOD, SILENT, Direction, Stream
from proxydiag.services import DEFAULT_TABLE, ServiceTable

_CONTROL_FLAGS = TCP_SYN | TCP_FIN | TCP_RST

CLOSED_MEMORY = 4096  # recently closed connections remembered to swallow their stragglers
CAP_LOW_WATERMARK = 0.9  # a full table is evicted down to this share of the cap, not one flow at a time

EVICTED_IDLE = "idle"
EVICTED_BY_CAP = "cap"


@dataclass(frozen=True, slots=True)
class FlowLimits:
    """How much the flow table holds; timeouts are in capture time."""

    max_open: int = 75_000
    max_buffered_bytes: int = 64 << 20  # openings held at once: 75,000 flows of 16 KiB would be 1.2 GB
    half_open_timeout: float = 120.0  # no data and no handshake: outlives a client's SYN retries (about 127 s on Linux)
    idle_timeout: float = 600.0  # no packet at all: longer than SMTP's command timeouts (RFC 5321 4.5.3.2)

    @property
    def sweep_interval(self) -> float:
        return min(self.half_open_timeout, self.idle_timeout) / 2





class _Connection:
    __slots__ = (
        "id",
        "source",
        "key",
        "reverse_key",
        "first_frame",
        "first_ts",
        "syn_seen",
        "synack_seen",
        "established_ts",
        "client",
        "server",
        "closed",
        "last_ts",
    )

    def __init__(self, conn_id: int, source: int, key: bytes, frame: int, ts: float) -> None:
        self.id = conn_id
        self.source = source
        self.key = key  # oriented client -> server
        self.reverse_key = reverse_key(key)
        self.first_frame = frame
        self.first_ts = ts
        self.last_ts = ts
        self.syn_seen = False
        self.synack_seen = False
        self.established_ts: float | None = None
        self.client = self.server = SILENT
        self.closed = False

    @property
    def half_open(self) -> bool:
        """Neither data nor a completed handshake: nothing to describe."""
        return self.established_ts is None and not self.client.count and not self.server.count


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
    seen_until: float  # the close, the last packet of an evicted flow, or the end of the capture
    evicted: str | None = None  # EVICTED_IDLE or EVICTED_BY_CAP: let go while open, its end not seen

    @property
    def mid_stream(self) -> bool:
        return not (self.syn_seen or self.synack_seen)


def shard_of(key: bytes, shards: int) -> int:
    """Which of `shards` workers tracks the flow of a packet key (packet.locate_tcp): the
    same for both directions. The sum of the key's bytes and the XOR of its two ports do
    not change when the endpoints swap places; multiplying by 2^32 over the golden ratio
    spreads them (addresses and ports that step together keep the sum's parity)."""
    mixed = sum(key) << 16 | (key[-4] ^ key[-2]) << 8 | (key[-3] ^ key[-1])
    return (mixed * _GOLDEN >> 16) % shards


_GOLDEN = 0x9E3779B1
_OWNERS_REMEMBERED = 1 << 16


class FlowTable:
    """Feeds decoded TCP segments into connections; calls `on_finished` for each one.

    Bounded by `limits`; what the bounds cost is counted: `evicted_half_open` (dropped
    by age, never described), `evicted_idle` (described, marked evicted) and
    `evicted_by_cap` (evicted because `max_open` flows were open or their openings
    held `max_buffered_bytes`; of them
    `dropped_by_cap` were half-open and never described); `dropped_at_end` counts the
    half-open flows still open at the end once such flows had been evicted.
    """

    def __init__(self, on_finished: Callable[[TrackedConnection], None], limits: FlowLimits | None = None, *,
                 services: ServiceTable = DEFAULT_TABLE) -> None:
        self.limits = limits or FlowLimits()
        # The service table's ports orient connections whose SYN was not captured.
        self._server_ports = frozenset(services.ports())
        self._by_key: dict[bytes, _Connection] = {}  # both directions' keys; conn.key is the client's
        self._open: dict[int, _Connection] = {}  # by id, oldest first
        self._closed: OrderedDict[int, _Connection] = OrderedDict()
        self._on_finished = on_finished
        self._next_id = 1
        self.unsupported_linktypes: set[int] = set()
        self._last_ts = 0.0
        self._next_sweep: float | None = None
        self.evicted_half_open = 0
        self.evicted_idle = 0
        self.evicted_by_cap = 0
        self.dropped_by_cap = 0
        self.dropped_at_end = 0
        self._buffered = 0  # bytes of the openings of open flows

    @property
    def open_flows(self) -> int:
        return len(self._open)

    @property
    def opened(self) -> int:
        """Flows opened so far: each one is handed to the callback once or counted in `dropped`."""
        return self._next_id - 1

    @property
    def bound_hit(self) -> bool:
        return bool(self.evicted_half_open or self.evicted_idle or self.evicted_by_cap)

    @property
    def dropped(self) -> int:
        """Flows never handed to the callback."""
        return self.evicted_half_open + self.dropped_by_cap + self.dropped_at_end

    def consume(self, source: int, records: Iterable[tuple[int, float, int, bytes, int]],
                progress: Callable[[], None] | None = None, shard: tuple[int, int] = (0, 1)) -> None:
        """Track every TCP segment of a capture's records (frame_no, ts, linktype, frame, ...).

        With `shard` (index, count), only the flows whose `shard_of` is index are tracked;
        every record still moves the clock, so flows are swept at the same moments as in
        one table of all flows.

        The hot loop: a segment of a connection whose openings are already kept costs a
        key slice, one dictionary look-up and a timestamp store.
        """
        shard_index, shards = shard
        owners: dict[bytes, bool] = {}  # packet key -> tracked by this shard, for the keys seen lately
        decoders = LINK_DECODERS
        lookup = self._by_key.get
        add = self.add
        ts = self._last_ts
        next_sweep = self._next_sweep
        for frame_no, ts, linktype, frame, _wire_length in records:
            if not frame_no & 0xFFFF and progress is not None:
                progress()
            if next_sweep is None or ts >= next_sweep:
                next_sweep = self._sweep(ts)
            decoder = decoders.get(linktype)
            if decoder is None:
                self.unsupported_linktypes.add(linktype)
                continue
            located = decoder(frame)
            if located is None:
                continue
            key, flags, tcp, ip_end = located
            if shards > 1:
                mine = owners.get(key)
                if mine is None:
                    if len(owners) >= _OWNERS_REMEMBERED:
                        owners.clear()
                    mine = owners[key] = shard_of(key, shards) == shard_index
                if not mine:
                    continue
            if not flags & _CONTROL_FLAGS:
                conn = lookup(key)
                if conn is not None:
                    conn.last_ts = ts
                    if conn.closed or (conn.client if key == conn.key else conn.server).full:
                        continue
                    if ip_end - tcp == (frame[tcp + 12] >> 4) * 4 and conn.established_ts is not None:
                        continue  # a bare ACK of an established connection
            add(source, frame_no, ts, key, flags, frame, tcp, ip_end)
        self._last_ts = ts
        self._next_sweep = next_sweep

    def add(self, source: int, frame_no: int, ts: float, key: bytes, flags: int, frame: bytes, tcp: int, ip_end: int) -> None:
        """One TCP segment, located in `frame` by `packet.locate_tcp`."""
        conn = self._by_key.get(key)
        seq, start, end, snapped = tcp_details(frame, tcp, ip_end)
        if conn is not None:
            conn.last_ts = ts
            if start == end and not flags & _CONTROL_FLAGS and (conn.established_ts is not None or not conn.synack_seen):
                return  # a bare ACK teaches nothing once the handshake is known
        payload = frame[start:end]
        if conn is None or (flags & (TCP_SYN | TCP_ACK) == TCP_SYN and self._is_new_syn(conn, key, seq)):
            if conn is not None:
                self._finish(conn, ts)
            if flags & TCP_RST and not payload:
                return
            conn = self._open_flow(source, frame_no, ts, key, flags)
        from_client = key == conn.key
        direction = conn.client if from_client else conn.server
        if direction is SILENT and (payload or flags & _CONTROL_FLAGS):
            direction = self._speaking(conn, from_client)
        if flags & TCP_SYN:
            self._on_syn(conn, direction, from_client, seq, flags)
            seq = (seq + 1) % SEQ_MOD
        elif conn.established_ts is None and from_client and flags & TCP_ACK and conn.synack_seen:
            conn.established_ts = ts
        if payload and not direction.full and not conn.closed:
            stored = direction.stored
            direction.add(seq, frame_no, ts, payload, snapped)
            self._buffered += direction.stored - stored
            if self._buffered > self.limits.max_buffered_bytes:
                self._shed_openings()
        if flags & TCP_FIN and direction.fin is None:
            direction.fin = (frame_no, ts)
        if flags & TCP_RST and direction.rst is None:
            direction.rst = (frame_no, ts)
        if not conn.closed and (flags & TCP_RST or (conn.client.fin and conn.server.fin)):
            self._finish(conn, ts)

    def flush(self) -> None:
        """Finish every connection still open (end of the capture). Once half-open flows
        were being evicted, those still open are more of the same and are dropped too."""
        flooded = self.evicted_half_open or self.dropped_by_cap
        for conn in list(self._open.values()):
            if flooded and conn.half_open:
                self._forget(conn)
                self.dropped_at_end += 1
            else:
                self._finish(conn, at_end=True)
        self._by_key.clear()
        self._closed.clear()
        self._buffered = 0
        self._next_sweep = None

    def _sweep(self, now: float) -> float:
        """Evict the flows quiet for longer than their timeout; return when to sweep next."""
        limits = self.limits
        half_open_before, idle_before = now - limits.half_open_timeout, now - limits.idle_timeout
        quiet = [conn for conn in self._open.values() if conn.last_ts < half_open_before]
        for conn in quiet:
            if conn.half_open:
                self._forget(conn)
                self.evicted_half_open += 1
            elif conn.last_ts < idle_before:
                self._evict(conn, EVICTED_IDLE)
                self.evicted_idle += 1
        return now + limits.sweep_interval

    def _make_room(self) -> None:
        """The table is full: half-open flows go first, oldest first, then the flows
        quiet the longest, down to the low watermark."""
        excess = len(self._open) - int(self.limits.max_open * CAP_LOW_WATERMARK)
        half_open = list(islice((conn for conn in self._open.values() if conn.half_open), excess))
        for conn in half_open:
            self._forget(conn)
        rest = heapq.nsmallest(excess - len(half_open), self._open.values(), key=lambda conn: conn.last_ts)
        for conn in rest:
            self._evict(conn, EVICTED_BY_CAP)
        self.evicted_by_cap += len(half_open) + len(rest)
        self.dropped_by_cap += len(half_open)

    def _shed_openings(self) -> None:
        """The openings held are over budget: the flows quiet the longest are handed over,
        down to the low watermark."""
        target = self.limits.max_buffered_bytes * CAP_LOW_WATERMARK
        for conn in sorted((conn for conn in self._open.values() if conn.client.stored or conn.server.stored),
                           key=lambda conn: conn.last_ts):
            if self._buffered <= target:
                break
            self._evict(conn, EVICTED_BY_CAP)
            self.evicted_by_cap += 1

    def _forget(self, conn: _Connection) -> None:
        """Let a flow go without describing it."""
        conn.closed = True
        del self._open[conn.id]
        self._unmap(conn)

    def _unmap(self, conn: _Connection) -> None:
        for key in (conn.key, conn.reverse_key):
            if self._by_key.get(key) is conn:
                del self._by_key[key]

    def _evict(self, conn: _Connection, reason: str) -> None:
        self._finish(conn, conn.last_ts, evicted=reason)

    @staticmethod
    def _is_new_syn(conn: _Connection, key: bytes, seq: int) -> bool:
        """A SYN with another initial sequence number reuses the ports for a new
        connection; one with the same number is a retransmission, or the same packet
        seen again on a second interface (dumpcap -i lo -i any)."""
        direction = conn.client if key == conn.key else conn.server
        return direction.base is not None and (seq + 1) % SEQ_MOD != direction.base

    def _open_flow(self, source: int, frame: int, ts: float, key: bytes, flags: int) -> _Connection:
        if len(self._open) >= self.limits.max_open:
            self._make_room()
        from_client = self._sender_is_client(key, flags)
        oriented = key if from_client else reverse_key(key)
        conn = _Connection(self._next_id, source, oriented, frame, ts)
        self._open[conn.id] = conn
        self._next_id += 1
        self._by_key[oriented] = self._by_key[conn.reverse_key] = conn
        return conn

    def _sender_is_client(self, key: bytes, flags: int) -> bool:
        if flags & TCP_SYN:
            return not flags & TCP_ACK
        _, src_port, _, dst_port = split_key(key)
        if (dst_port in self._server_ports) != (src_port in self._server_ports):
            return dst_port in self._server_ports
        return dst_port <= src_port

    @staticmethod
    def _speaking(conn: _Connection, from_client: bool) -> Direction:
        """The direction's own state, made when it first has something to say."""
        direction = Direction()
        if from_client:
            conn.client = direction
        else:
            conn.server = direction
        return direction

    @staticmethod
    def _on_syn(conn: _Connection, direction: Direction, from_client: bool, seq: int, flags: int) -> None:
        if from_client:
            conn.syn_seen = True
        else:
            conn.synack_seen = True
        if direction.segments is NO_SEGMENTS:
            direction.base = (seq + 1) % SEQ_MOD
            direction.start_seen = True

    def _finish(self, conn: _Connection, ts: float | None = None, at_end: bool = False, evicted: str | None = None) -> None:
        if conn.closed:
            return
        conn.closed = True
        del self._open[conn.id]
        self._buffered -= conn.client.stored + conn.server.stored
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
                seen_until=self._last_ts if at_end or ts is None else ts,
                evicted=evicted,
            )
        )
        for direction in (conn.client, conn.server):
            if direction is not SILENT:
                direction.segments = NO_SEGMENTS

    def _remember_closed(self, conn: _Connection) -> None:
        """Closed connections stay in the table a while, so late FINs, ACKs and
        retransmissions do not open phantom mid-stream connections."""
        self._closed[conn.id] = conn
        if len(self._closed) > CLOSED_MEMORY:
            _, oldest = self._closed.popitem(last=False)
            self._unmap(oldest)
