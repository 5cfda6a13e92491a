"""Write synthetic captures for the benchmark, with their truth beside them.

    python bench/synthetic.py OUT.pcap --kind sessions --megabytes 153
    python bench/synthetic.py OUT.pcap --kind syn-flood --syns 1000000
    python bench/synthetic.py OUT.pcap --kind tlv-amplification

sessions: proxied SMTP connections (handshake, a v2 PROXY header, greeting, EHLO, MAIL,
    RCPT and DATA with their replies, bulk message segments (what makes real captures
    large), FIN both ways), `--concurrency` of them interleaved, until the file holds
    `--megabytes`.
syn-flood: `--syns` SYNs from distinct source ports that nobody answers (half-open
    flows), with `--sessions` ordinary proxied sessions spread among them.
tlv-amplification: `--sessions` proxied sessions whose v2 header carries `--tlvs` empty
    NOOP TLVs each (3 bytes per TLV on the wire, one entry each in a parser's output).

OUT.truth.json records what was written: the kind, the packet and connection counts,
how many connections carry a header, so a run can be checked, not only timed.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proxydiag.parsers.proxy_protocol import PP2_TYPE_NOOP, build_tlv, build_v2  # noqa: E402

ETHER = b"\x00" * 12 + b"\x08\x00"
SYN, FIN_ACK, SYN_ACK, ACK, PUSH_ACK = 0x02, 0x11, 0x12, 0x10, 0x18
SERVER = 0x0A0100FE  # 10.1.0.254, the Stalwart host behind the proxy
MSS = 1448
FRAME_GAP = 0.00001  # seconds between frames: 100,000 packets a second
PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)
RECORD_HEADER = struct.Struct("<IIII")
TCP_HEADER = struct.Struct("!HHIIBBHHH")
IP_HEADER = struct.Struct("!BBHHHBBH4s4s")

GREETING = b"220 mail.example.test Stalwart ESMTP at your service\r\n"
DIALOGUE = (
    (b"EHLO client.example\r\n", b"250-mail.example.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n"),
    (b"MAIL FROM:<alice@example.net>\r\n", b"250 2.1.0 OK\r\n"),
    (b"RCPT TO:<bob@example.test>\r\n", b"250 2.1.5 OK\r\n"),
    (b"DATA\r\n", b"354 Start mail input; end with <CRLF>.<CRLF>\r\n"),
)
BODY_SEGMENT = (b"x" * 68 + b"\r\n") * 20


def ipv4_tcp(src: int, dst: int, sport: int, dport: int, seq: int, ack: int, flags: int, payload: bytes = b"") -> bytes:
    tcp = TCP_HEADER.pack(sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0)
    ip = IP_HEADER.pack(0x45, 0, 40 + len(payload), 0, 0, 64, 6, 0, src.to_bytes(4, "big"), dst.to_bytes(4, "big"))
    return ETHER + ip + tcp + payload


def proxy_host(index: int) -> int:
    """The proxy's address for connection `index`: 10.0.x.y, so 4-tuples stay distinct."""
    return 0x0A000000 + (index % 65000) + 2


def session(index: int, bulk_segments: int, tlvs: int = 0) -> Iterator[bytes]:
    """One proxied SMTP session, frame by frame, from the proxy to the server's port 25."""
    client, sport = proxy_host(index), 1024 + index % 60000
    header = build_v2(src_addr=f"203.0.113.{index % 250 + 1}", dst_addr="192.0.2.10", src_port=sport, dst_port=25,
                      tlvs=[(PP2_TYPE_NOOP, b"")] * tlvs)
    c, s = 1000, 5000

    def client_sends(payload: bytes, flags: int = PUSH_ACK) -> bytes:
        nonlocal c
        frame = ipv4_tcp(client, SERVER, sport, 25, c, s, flags, payload)
        c += len(payload)
        return frame

    def server_sends(payload: bytes) -> bytes:
        nonlocal s
        frame = ipv4_tcp(SERVER, client, 25, sport, s, c, PUSH_ACK, payload)
        s += len(payload)
        return frame

    yield ipv4_tcp(client, SERVER, sport, 25, c, 0, SYN)
    yield ipv4_tcp(SERVER, client, 25, sport, s, c + 1, SYN_ACK)
    c, s = c + 1, s + 1
    yield client_sends(b"", ACK)
    for start in range(0, len(header), MSS):
        yield client_sends(header[start : start + MSS])
    yield server_sends(GREETING)
    for command, reply in DIALOGUE:
        yield client_sends(command)
        yield server_sends(reply)
    for _ in range(bulk_segments):
        yield client_sends(BODY_SEGMENT, ACK)
    yield ipv4_tcp(client, SERVER, sport, 25, c, s, FIN_ACK)
    yield ipv4_tcp(SERVER, client, 25, sport, s, c + 1, FIN_ACK)


def half_open(index: int) -> Iterator[bytes]:
    """A SYN from a spoofed-looking source that nobody answers."""
    source = 0xC6120000 + index // 60000  # 198.18.0.0/15, the benchmarking range
    yield ipv4_tcp(source, SERVER, 1024 + index % 60000, 25, index * 7919 % 2**32, 0, SYN)


def interleave(flows: Iterator[Iterator[bytes]], concurrency: int) -> Iterator[bytes]:
    """Frames of up to `concurrency` flows at a time, round robin, as a busy host sees them."""
    active: list[Iterator[bytes]] = []
    exhausted = False
    while active or not exhausted:
        while not exhausted and len(active) < concurrency:
            nxt = next(flows, None)
            if nxt is None:
                exhausted = True
            else:
                active.append(nxt)
        for flow in list(active):
            frame = next(flow, None)
            if frame is None:
                active.remove(flow)
            else:
                yield frame


class PcapWriter:
    def __init__(self, path: Path) -> None:
        self._out = open(path, "wb")  # noqa: SIM115 - closed by close()
        self._out.write(PCAP_HEADER)
        self.size = len(PCAP_HEADER)
        self.packets = 0
        self._ts = 1_700_000_000.0

    def write(self, frame: bytes) -> None:
        self._ts += FRAME_GAP
        seconds = int(self._ts)
        self._out.write(RECORD_HEADER.pack(seconds, int((self._ts - seconds) * 1e6), len(frame), len(frame)) + frame)
        self.size += RECORD_HEADER.size + len(frame)
        self.packets += 1

    def close(self) -> None:
        self._out.close()


def write_sessions(out: PcapWriter, megabytes: float, bulk_segments: int, concurrency: int) -> dict:
    limit = int(megabytes * 2**20)
    started = 0

    def sessions() -> Iterator[Iterator[bytes]]:
        nonlocal started
        while out.size < limit:
            yield session(started, bulk_segments)
            started += 1

    for frame in interleave(sessions(), concurrency):
        out.write(frame)
    return {"connections": started, "proxied_connections": started, "half_open": 0}


def write_syn_flood(out: PcapWriter, syns: int, sessions: int) -> dict:
    every = max(1, syns // max(sessions, 1))

    def flows() -> Iterator[Iterator[bytes]]:
        made = 0
        for index in range(syns):
            yield half_open(index)
            if index % every == 0 and made < sessions:
                yield session(made, bulk_segments=2)
                made += 1

    for frame in interleave(flows(), 64):
        out.write(frame)
    made = min(sessions, (syns + every - 1) // every)
    return {"connections": made, "proxied_connections": made, "half_open": syns}


def write_tlv_amplification(out: PcapWriter, sessions: int, tlvs: int) -> dict:
    for frame in interleave((session(index, bulk_segments=0, tlvs=tlvs) for index in range(sessions)), 16):
        out.write(frame)
    return {"connections": sessions, "proxied_connections": sessions, "half_open": 0, "tlvs_per_header": tlvs}


def truth_path(capture: Path) -> Path:
    return capture.with_name(capture.stem + ".truth.json")


def generate(path: Path, kind: str, *, megabytes: float = 153, bulk_segments: int = 20, concurrency: int = 50,
             syns: int = 1_000_000, sessions: int | None = None, tlvs: int = 2700) -> dict:
    """Write the capture and its truth file; return the truth."""
    out = PcapWriter(path)
    try:
        if kind == "sessions":
            truth = write_sessions(out, megabytes, bulk_segments, concurrency)
        elif kind == "syn-flood":
            truth = write_syn_flood(out, syns, 1000 if sessions is None else sessions)
        elif kind == "tlv-amplification":
            truth = write_tlv_amplification(out, 3000 if sessions is None else sessions, tlvs)
        else:
            raise ValueError(f"unknown kind {kind!r}")
    finally:
        out.close()
    truth = {"kind": kind, "packets": out.packets, "bytes": out.size, **truth}
    truth_path(path).write_text(json.dumps(truth, indent=2) + "\n")
    return truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", type=Path)
    parser.add_argument("--kind", choices=("sessions", "syn-flood", "tlv-amplification"), default="sessions")
    parser.add_argument("--megabytes", type=float, default=153, help="sessions: size of the capture")
    parser.add_argument("--bulk-segments", type=int, default=20, help="sessions: message segments per session")
    parser.add_argument("--concurrency", type=int, default=50, help="sessions: connections interleaved")
    parser.add_argument("--syns", type=int, default=1_000_000, help="syn-flood: unanswered SYNs")
    parser.add_argument("--sessions", type=int, default=None,
                        help="syn-flood: real sessions among the SYNs (1000); tlv-amplification: headers (3000)")
    parser.add_argument("--tlvs", type=int, default=2700, help="tlv-amplification: empty TLVs per header")
    args = parser.parse_args()
    truth = generate(args.output, args.kind, megabytes=args.megabytes, bulk_segments=args.bulk_segments,
                     concurrency=args.concurrency, syns=args.syns, sessions=args.sessions, tlvs=args.tlvs)
    print(json.dumps(truth))


if __name__ == "__main__":
    main()
