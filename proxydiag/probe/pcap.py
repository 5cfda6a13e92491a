"""`probe -w FILE`: the probe's own conversations as a capture that `analyze` reads.

Frames are synthesised on the raw-IP link type from the bytes each side sent, in the order
and at the times they crossed: the handshake, every data segment (split at the MSS),
the server's FIN or RST and the probe's close."""

from __future__ import annotations

import ipaddress
from typing import IO

import dpkt

from proxydiag.probe import StepRecord

LINKTYPE_RAW = 101
MSS = 1460
CLIENT_ISN, SERVER_ISN = 1_000_000, 5_000_000


class _Flow:
    def __init__(self, record: StepRecord) -> None:
        self.record = record
        self.seq = {"client": CLIENT_ISN, "server": SERVER_ISN}
        self.ends = {"client": record.local, "server": record.remote}

    def packet(self, side: str, flags: int, payload: bytes = b"") -> bytes:
        other = "server" if side == "client" else "client"
        (src, sport), (dst, dport) = self.ends[side], self.ends[other]
        tcp = dpkt.tcp.TCP(sport=sport, dport=dport, seq=self.seq[side] & 0xFFFFFFFF, flags=flags, win=65535,
                           data=payload)
        if flags & dpkt.tcp.TH_ACK:
            tcp.ack = self.seq[other] & 0xFFFFFFFF
        self.seq[side] += len(payload) + (1 if flags & (dpkt.tcp.TH_SYN | dpkt.tcp.TH_FIN) else 0)
        source, destination = ipaddress.ip_address(src), ipaddress.ip_address(dst)
        if source.version == 6:
            ip6 = dpkt.ip6.IP6(src=source.packed, dst=destination.packed, nxt=dpkt.ip.IP_PROTO_TCP, hlim=64, data=tcp)
            ip6.plen = len(tcp)
            return bytes(ip6)
        return bytes(dpkt.ip.IP(src=source.packed, dst=destination.packed, p=dpkt.ip.IP_PROTO_TCP, ttl=64, data=tcp))


def frames(record: StepRecord) -> list[tuple[float, bytes]]:
    """(timestamp, raw IP packet) for one connection of the probe."""
    if record.connect_error is not None or not record.local[0]:
        return []
    flow, t0 = _Flow(record), record.started
    out = [(t0, flow.packet("client", dpkt.tcp.TH_SYN)),
           (t0, flow.packet("server", dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK)),
           (t0, flow.packet("client", dpkt.tcp.TH_ACK))]
    for event in record.events:
        at = t0 + event.at
        if event.flag == "rst":
            out.append((at, flow.packet(event.side, dpkt.tcp.TH_RST | dpkt.tcp.TH_ACK)))
        elif event.flag == "fin":
            out.append((at, flow.packet(event.side, dpkt.tcp.TH_FIN | dpkt.tcp.TH_ACK)))
        for offset in range(0, len(event.data), MSS):
            out.append((at, flow.packet(event.side, dpkt.tcp.TH_PUSH | dpkt.tcp.TH_ACK, event.data[offset : offset + MSS])))
    return out


def write(handle: IO[bytes], records: list[StepRecord]) -> None:
    writer = dpkt.pcap.Writer(handle, linktype=LINKTYPE_RAW)
    for record in records:
        for timestamp, packet in frames(record):
            writer.writepkt(packet, ts=timestamp)
