"""Link/IP/TCP decoding and the reassembly of connection openings, on frames built
with scapy (the link types and TCP misbehaviour no loopback capture produces)."""

import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw

from proxydiag.capture.flows import EVICTED_BY_CAP, EVICTED_IDLE, FlowLimits, FlowTable
from proxydiag.capture.packet import (
    LINKTYPE_ETHERNET,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
    locate_tcp,
    split_key,
    tcp_details,
)
from proxydiag.capture.reassembly import MAX_SEGMENTS, OPENING_LIMIT
from proxydiag.facts.describe import describe
from proxydiag.parsers.proxy_protocol import build_v1

CLIENT, SERVER = "192.0.2.1", "192.0.2.25"


def tcp(src=CLIENT, dst=SERVER, sport=40000, dport=25, flags="PA", seq=0, payload=b""):
    return bytes(IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=1) / Raw(payload))


def sll(ip_packet: bytes) -> bytes:
    return struct.pack("!HHH8sH", 0, 772, 6, b"\x00" * 8, 0x0800) + ip_packet


def sll2(ip_packet: bytes) -> bytes:
    return struct.pack("!HHIHBB8s", 0x0800, 0, 1, 772, 0, 6, b"\x00" * 8) + ip_packet


def segment(linktype: int, frame: bytes):
    """(key, flags, payload start, payload end, missing) as the tracker sees them."""
    key, flags, tcp, ip_end = locate_tcp(linktype, frame)
    _seq, start, end, missing = tcp_details(frame, tcp, ip_end)
    return key, flags, start, end, missing


def test_every_link_type_yields_the_same_segment():
    ip_packet = tcp(payload=b"EHLO x\r\n")
    frames = {
        LINKTYPE_ETHERNET: bytes(Ether() / Dot1Q(vlan=5) / Dot1Q(vlan=7) / IP(ip_packet)),
        LINKTYPE_LINUX_SLL: sll(ip_packet),
        LINKTYPE_LINUX_SLL2: sll2(ip_packet),
        LINKTYPE_NULL: struct.pack("<I", 2) + ip_packet,
        LINKTYPE_LOOP: struct.pack(">I", 2) + ip_packet,
        LINKTYPE_RAW: ip_packet,
    }
    for linktype, frame in frames.items():
        start, end, missing = segment(linktype, frame)[2:]
        assert split_key(segment(linktype, frame)[0]) == (CLIENT, 40000, SERVER, 25), linktype
        assert frame[start:end] == b"EHLO x\r\n" and missing == 0, linktype


def test_ethernet_padding_is_not_payload():
    frame = bytes(Ether() / IP(tcp(flags="A"))) + b"\x00" * 6  # padded to 60 bytes on the wire
    _key, _flags, start, end, _missing = segment(LINKTYPE_ETHERNET, frame)
    assert start == end


def test_ipv6_with_extension_header_and_bsd_null_af_inet6():
    packet = bytes(IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrDestOpt() / TCP(sport=1, dport=993) / Raw(b"x"))
    for family in (24, 28, 30):
        key = segment(LINKTYPE_NULL, struct.pack("<I", family) + packet)[0]
        assert split_key(key) == ("2001:db8::1", 1, "2001:db8::2", 993)


def test_snapped_payload_is_counted():
    frame = tcp(payload=b"x" * 100)[:60]
    *_, start, end, missing = segment(LINKTYPE_RAW, frame)
    assert end - start == 20 and missing == 80


def test_non_tcp_and_garbage_are_ignored():
    assert locate_tcp(LINKTYPE_RAW, bytes(IP(proto=17) / Raw(b"x" * 20))) is None
    assert locate_tcp(LINKTYPE_ETHERNET, b"\x00" * 10) is None
    assert locate_tcp(LINKTYPE_RAW, bytes(IP(frag=10) / TCP())) is None  # not the first fragment
    assert locate_tcp(999, tcp()) is None


@settings(max_examples=500)
@given(st.sampled_from([0, 1, 101, 108, 113, 276, 228, 229]), st.binary(max_size=120))
def test_decoder_never_raises(linktype, frame):
    locate_tcp(linktype, frame)


# --- reassembly ------------------------------------------------------------------------


class Capture:
    """Feeds packets into a FlowTable the way analysis does."""

    def __init__(self, limits: FlowLimits | None = None):
        self.finished = []
        self.table = FlowTable(self.finished.append, limits)
        self.frame = 0

    def send(self, packet: bytes, ts: float | None = None):
        self.frame += 1
        self.table.consume(0, [(self.frame, ts if ts is not None else self.frame / 10, LINKTYPE_RAW, packet, len(packet))])

    def done(self):
        self.table.flush()
        return self.finished


def handshake(cap: Capture, client_isn: int, server_isn: int, sport=40000):
    cap.send(tcp(flags="S", seq=client_isn, sport=sport))
    cap.send(tcp(src=SERVER, dst=CLIENT, sport=25, dport=sport, flags="SA", seq=server_isn))
    cap.send(tcp(flags="A", seq=(client_isn + 1) % 2**32, sport=sport))


def test_out_of_order_retransmitted_and_overlapping_segments():
    cap = Capture()
    isn = 1000
    handshake(cap, isn, 5000)
    data = build_v1("TCP4", "203.0.113.9", "192.0.2.25", 1234, 25) + b"EHLO client.example\r\n"
    cap.send(tcp(seq=isn + 1 + 10, payload=data[10:30]))  # arrives first
    cap.send(tcp(seq=isn + 1, payload=data[:12]))  # overlaps the next one by 2 bytes
    cap.send(tcp(seq=isn + 1 + 10, payload=data[10:30]))  # retransmission
    cap.send(tcp(seq=isn + 1 + 30, payload=data[30:]))
    (tracked,) = cap.done()
    assert tracked.client.data == data
    assert tracked.client.out_of_order >= 1 and tracked.client.retransmissions == 1
    assert tracked.client.gap_at is None and tracked.client.overlap_conflicts == 0
    conn = describe(tracked)
    assert conn.header.src_addr == "203.0.113.9" and conn.client_first == "EHLO client.example"


def test_sequence_numbers_wrapping_around():
    cap = Capture()
    isn = 2**32 - 5
    handshake(cap, isn, 7)
    cap.send(tcp(seq=(isn + 1) % 2**32, payload=b"abcdefgh"))  # crosses 2**32
    cap.send(tcp(seq=(isn + 9) % 2**32, payload=b"ijkl"))
    (tracked,) = cap.done()
    assert tracked.client.data == b"abcdefghijkl"


def test_missing_segment_is_flagged():
    cap = Capture()
    handshake(cap, 10, 20)
    cap.send(tcp(seq=11, payload=b"PROXY TCP4 "))
    cap.send(tcp(seq=11 + 30, payload=b"later"))
    (tracked,) = cap.done()
    assert tracked.client.data == b"PROXY TCP4 " and tracked.client.gap_at == 11


def test_conflicting_overlap_is_counted():
    cap = Capture()
    handshake(cap, 10, 20)
    cap.send(tcp(seq=11, payload=b"abcdef"))
    cap.send(tcp(seq=14, payload=b"XYZghi"))
    (tracked,) = cap.done()
    assert tracked.client.data == b"abcdefghi" and tracked.client.overlap_conflicts == 1


def test_mid_stream_connection_is_oriented_by_the_mail_port():
    cap = Capture()
    cap.send(tcp(src=SERVER, dst=CLIENT, sport=25, dport=40000, seq=99, payload=b"250 OK\r\n"))
    (tracked,) = cap.done()
    assert tracked.mid_stream and (tracked.server_port, tracked.client_port) == (25, 40000)
    assert not tracked.server.start_seen


def test_only_the_opening_is_kept():
    cap = Capture()
    handshake(cap, 0, 0)
    for index in range(20):
        cap.send(tcp(seq=1 + index * 1000, payload=b"x" * 1000))
    (tracked,) = cap.done()
    assert len(tracked.client.data) == OPENING_LIMIT


def test_port_reuse_starts_a_new_connection_and_rst_closes():
    cap = Capture()
    handshake(cap, 100, 200)
    cap.send(tcp(src=SERVER, dst=CLIENT, sport=25, dport=40000, flags="R", seq=201))
    handshake(cap, 9000, 300)
    cap.send(tcp(flags="FA", seq=9001))
    cap.send(tcp(src=SERVER, dst=CLIENT, sport=25, dport=40000, flags="FA", seq=301))
    first, second = cap.done()
    assert describe(first).closed_by == "server" and describe(first).close_kind == "rst"
    assert describe(second).closed_by == "client" and describe(second).close_kind == "fin"
    assert first.id != second.id


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=3000), st.randoms(use_true_random=False), st.integers(0, 2**32 - 1))
def test_any_segmentation_and_order_reassembles_the_same_bytes(payload, rng, isn):
    cap = Capture()
    handshake(cap, isn, 1)
    cuts = sorted({0, len(payload), *(rng.randrange(len(payload)) for _ in range(rng.randrange(6)))})
    pieces = [(cuts[i], payload[cuts[i] : cuts[i + 1]]) for i in range(len(cuts) - 1)]
    rng.shuffle(pieces)
    for offset, piece in pieces + pieces[:1]:
        cap.send(tcp(seq=(isn + 1 + offset) % 2**32, payload=piece))
    (tracked,) = cap.done()
    assert tracked.client.data == payload and tracked.client.gap_at is None


# --- the bounded table -------------------------------------------------------------------

SMALL = FlowLimits(max_open=10, half_open_timeout=30.0, idle_timeout=100.0)


def syn(sport: int, ts: float, cap: Capture):
    cap.send(tcp(flags="S", seq=sport * 1000, sport=sport), ts)


def conversation(cap: Capture, sport: int, ts: float, payload: bytes = b"PROXY TCP4 1.2.3.4 5.6.7.8 1 25\r\n"):
    """A handshake and one segment of data from the client, all at `ts`."""
    isn = sport * 1000
    cap.send(tcp(flags="S", seq=isn, sport=sport), ts)
    cap.send(tcp(src=SERVER, dst=CLIENT, sport=25, dport=sport, flags="SA", seq=7), ts)
    cap.send(tcp(flags="A", seq=isn + 1, sport=sport), ts)
    cap.send(tcp(seq=isn + 1, sport=sport, payload=payload), ts)


def test_half_open_flows_are_dropped_by_age_and_only_counted():
    cap = Capture(SMALL)
    syn(1000, 0.0, cap)
    conversation(cap, 2000, 10.0)
    syn(3000, 50.0, cap)  # 50 s of capture time later: the first SYN is 20 s past its timeout
    assert cap.table.evicted_half_open == 1 and cap.table.open_flows == 2
    cap.done()
    assert [t.client_port for t in cap.finished] == [2000]  # the SYN still open at the end went the same way
    assert cap.table.dropped_at_end == 1 and cap.table.dropped == 2


def test_without_evictions_every_flow_is_described():
    cap = Capture(SMALL)
    syn(1000, 0.0, cap)
    conversation(cap, 2000, 10.0)
    cap.done()
    assert [t.client_port for t in cap.finished] == [1000, 2000] and not cap.table.bound_hit


def test_an_idle_flow_with_data_is_described_as_evicted():
    cap = Capture(SMALL)
    conversation(cap, 2000, 0.0)
    syn(3000, 150.0, cap)
    assert cap.table.evicted_idle == 1
    (evicted,) = cap.finished
    assert evicted.evicted == EVICTED_IDLE and evicted.client.data.startswith(b"PROXY TCP4")
    assert evicted.seen_until == 0.0 and evicted.client.fin is None


def test_a_flow_that_keeps_talking_is_not_idle():
    cap = Capture(SMALL)
    conversation(cap, 2000, 0.0)
    for second in range(20, 400, 20):
        cap.send(tcp(seq=2000 * 1000 + 1, sport=2000, flags="A"), float(second))  # keep-alives
    assert cap.table.evicted_idle == 0 and cap.table.open_flows == 1


def test_a_full_table_drops_half_open_flows_first():
    cap = Capture(SMALL)
    conversation(cap, 2000, 0.0)
    for sport in range(3000, 3030):
        syn(sport, 1.0, cap)
    table = cap.table
    assert table.open_flows <= SMALL.max_open and table.evicted_by_cap == table.dropped_by_cap > 0
    cap.done()
    assert any(t.client_port == 2000 and t.evicted is None for t in cap.finished)
    assert table.dropped_at_end > 0 and not any(t.client_port >= 3000 for t in cap.finished)  # a flood's leftovers
    assert len(cap.finished) + table.dropped == table.opened


def test_a_full_table_of_talking_flows_hands_the_oldest_over():
    cap = Capture(SMALL)
    for index, sport in enumerate(range(2000, 2025)):
        conversation(cap, sport, float(index))
    table = cap.table
    assert table.open_flows <= SMALL.max_open and table.dropped_by_cap == 0
    evicted = [t for t in cap.finished if t.evicted == EVICTED_BY_CAP]
    assert len(evicted) == table.evicted_by_cap > 0
    assert max(t.client_port for t in evicted) < min(port for port in range(2000, 2025) if port not in
                                                       {t.client_port for t in evicted})  # oldest first
    cap.done()
    assert sorted(t.client_port for t in cap.finished) == list(range(2000, 2025))


def test_openings_over_their_byte_budget_hand_the_quietest_flows_over():
    cap = Capture(FlowLimits(max_buffered_bytes=3000))
    for index, sport in enumerate(range(2000, 2010)):
        conversation(cap, sport, float(index), payload=b"x" * 1000)
    table = cap.table
    evicted = sorted(t.client_port for t in cap.finished if t.evicted == EVICTED_BY_CAP)
    assert evicted == list(range(2000, 2000 + len(evicted))) and len(evicted) == table.evicted_by_cap >= 7
    assert table.open_flows <= 3
    cap.done()
    assert sorted(t.client_port for t in cap.finished) == list(range(2000, 2010))
    assert all(t.client.data == b"x" * 1000 for t in cap.finished)


flow_plans = st.lists(
    st.tuples(st.floats(0, 400, allow_nan=False), st.booleans(), st.integers(0, 3)),  # start, talks, keep-alives
    min_size=1, max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(flow_plans, st.integers(2, 8), st.floats(5, 60), st.floats(5, 200), st.integers(10, 100))
def test_eviction_never_loses_a_connection_that_carried_data(plans, max_open, half_open_timeout, idle_timeout, budget):
    cap = Capture(FlowLimits(max_open=max_open, half_open_timeout=half_open_timeout, idle_timeout=idle_timeout,
                             max_buffered_bytes=budget))
    events = []
    for index, (start, talks, keepalives) in enumerate(plans):
        sport = 10000 + index
        events.append((start, sport, "open", talks))
        events.extend((start + 7.0 * (n + 1), sport, "ack", talks) for n in range(keepalives))
    for ts, sport, kind, talks in sorted(events):
        if kind == "open" and talks:
            conversation(cap, sport, ts, payload=b"EHLO %d\r\n" % sport)
        elif kind == "open":
            syn(sport, ts, cap)
        elif talks:
            cap.send(tcp(flags="A", seq=sport * 1000 + 1, sport=sport), ts)
    cap.done()
    table = cap.table
    described = {t.client_port: t for t in cap.finished}
    for index, (_start, talks, _keepalives) in enumerate(plans):
        if talks:
            assert described[10000 + index].client.data == b"EHLO %d\r\n" % (10000 + index)
    assert len(cap.finished) + table.dropped == table.opened
    assert sum(1 for t in cap.finished if t.evicted) == table.evicted_idle + table.evicted_by_cap - table.dropped_by_cap
    assert table.open_flows == 0


def test_tiny_segments_cannot_grow_a_connection_past_its_bound():
    cap = Capture()
    handshake(cap, 0, 0)
    for index in range(MAX_SEGMENTS * 4):
        cap.send(tcp(seq=1 + index, payload=b"x"))
    (tracked,) = cap.done()
    assert len(tracked.client.data) == MAX_SEGMENTS
    assert tracked.client.segments == MAX_SEGMENTS + 1  # the one past the bound ends the opening: the rest only looked up
