"""Crafted TCP conversations written as pcap files, for situations no real proxy on
loopback produces (malformed headers, CRC mismatches, split headers, bans, ...).

    conv = Conversation(client=("203.0.113.9", 40000), server=("192.0.2.25", 25))
    conv.handshake()
    conv.client_sends(build_v2(...))
    conv.server_sends(b"220 mail.example.test Stalwart ESMTP at your service\\r\\n", after=0.01)
    conv.close(by="client")
    write_pcap(path, [conv])
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import dpkt

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10


def _ip_packet(src: str, dst: str, sport: int, dport: int, seq: int, ack: int, flags: int, payload: bytes) -> bytes:
    import ipaddress

    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq % 2**32, ack % 2**32, 5 << 4, flags, 65535, 0, 0) + payload
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    if s.version == 4:
        header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0, s.packed, d.packed)
        return b"\x00" * 12 + b"\x08\x00" + header + tcp
    header = struct.pack("!IHBB16s16s", 6 << 28, len(tcp), 6, 64, s.packed, d.packed)
    return b"\x00" * 12 + b"\x86\xdd" + header + tcp


@dataclass
class Conversation:
    client: tuple[str, int]
    server: tuple[str, int]
    start: float = 1_700_000_000.0
    client_isn: int = 1000
    server_isn: int = 500000
    frames: list[tuple[float, bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.now = self.start
        self.client_seq = self.client_isn
        self.server_seq = self.server_isn

    def _emit(self, from_client: bool, flags: int, payload: bytes = b"", after: float = 0.001, seq: int | None = None) -> None:
        self.now += after
        src, dst = (self.client, self.server) if from_client else (self.server, self.client)
        own = self.client_seq if from_client else self.server_seq
        other = self.server_seq if from_client else self.client_seq
        frame = _ip_packet(src[0], dst[0], src[1], dst[1], own if seq is None else seq, other, flags, payload)
        self.frames.append((self.now, frame))
        if seq is None:
            advance = len(payload) + (1 if flags & (SYN | FIN) else 0)
            if from_client:
                self.client_seq += advance
            else:
                self.server_seq += advance

    def handshake(self, after: float = 0.0) -> Conversation:
        self._emit(True, SYN, after=after)
        self._emit(False, SYN | ACK)
        self._emit(True, ACK)
        return self

    def client_sends(self, data: bytes, after: float = 0.001, segments: int = 1) -> Conversation:
        size = -(-len(data) // segments)
        for index in range(0, len(data), size):
            self._emit(True, PSH | ACK, data[index : index + size], after=after if index == 0 else 0.0005)
        return self

    def server_sends(self, data: bytes, after: float = 0.001) -> Conversation:
        self._emit(False, PSH | ACK, data, after=after)
        return self

    def wait(self, seconds: float) -> Conversation:
        self.now += seconds
        return self

    def close(self, by: str = "client", reset: bool = False, after: float = 0.001) -> Conversation:
        from_client = by == "client"
        if reset:
            self._emit(from_client, RST | ACK, after=after)
        else:
            self._emit(from_client, FIN | ACK, after=after)
            self._emit(not from_client, FIN | ACK)
            self._emit(from_client, ACK)
        return self


def write_pcap(path: Path, conversations: list[Conversation]) -> Path:
    frames = sorted((ts, frame) for conv in conversations for ts, frame in conv.frames)
    with open(path, "wb") as handle:
        writer = dpkt.pcap.Writer(handle, nano=False)
        for ts, frame in frames:
            writer.writepkt(frame, ts=ts)
    return path
