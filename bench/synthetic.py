"""Write a large synthetic capture of proxied mail connections for the benchmark.

Each connection: handshake, a v2 PROXY header, an SMTP greeting, EHLO, MAIL, RCPT and
DATA with their replies, then bulk message segments (what makes real captures large),
then FIN both ways.
"""

from __future__ import annotations

import argparse
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proxydiag.proxy_protocol import build_v2  # noqa: E402

ETHER = b"\x00" * 12 + b"\x08\x00"


def ipv4_tcp(src: int, dst: int, sport: int, dport: int, seq: int, ack: int, flags: int, payload: bytes) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0)
    total = 20 + len(tcp) + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 0, 0, 64, 6, 0, src.to_bytes(4, "big"), dst.to_bytes(4, "big"))
    return ETHER + ip + tcp + payload


def connection(index: int, bulk_segments: int):
    client, server = 0x0A000000 + (index % 65000) + 2, 0x0A0100FE
    sport = 1024 + index % 60000
    header = build_v2(src_addr=f"203.0.113.{index % 250 + 1}", dst_addr="192.0.2.10", src_port=sport, dst_port=25)
    c, s = 1000, 5000
    yield ipv4_tcp(client, server, sport, 25, c, 0, 0x02, b"")
    yield ipv4_tcp(server, client, 25, sport, s, c + 1, 0x12, b"")
    c += 1
    s += 1
    yield ipv4_tcp(client, server, sport, 25, c, s, 0x10, b"")
    yield ipv4_tcp(client, server, sport, 25, c, s, 0x18, header)
    c += len(header)
    greeting = b"220 mail.example.test Stalwart ESMTP at your service\r\n"
    yield ipv4_tcp(server, client, 25, sport, s, c, 0x18, greeting)
    s += len(greeting)
    for command, reply in (
        (b"EHLO client.example\r\n", b"250-mail.example.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n"),
        (b"MAIL FROM:<alice@example.net>\r\n", b"250 2.1.0 OK\r\n"),
        (b"RCPT TO:<bob@example.test>\r\n", b"250 2.1.5 OK\r\n"),
        (b"DATA\r\n", b"354 Start mail input; end with <CRLF>.<CRLF>\r\n"),
    ):
        yield ipv4_tcp(client, server, sport, 25, c, s, 0x18, command)
        c += len(command)
        yield ipv4_tcp(server, client, 25, sport, s, c, 0x18, reply)
        s += len(reply)
    body = (b"x" * 68 + b"\r\n") * 20
    for _ in range(bulk_segments):
        yield ipv4_tcp(client, server, sport, 25, c, s, 0x10, body)
        c += len(body)
    yield ipv4_tcp(client, server, sport, 25, c, s, 0x11, b"")
    yield ipv4_tcp(server, client, 25, sport, s, c + 1, 0x11, b"")


def write(path: Path, megabytes: int, bulk_segments: int) -> None:
    limit = megabytes << 20
    written, index, ts = 24, 0, 1_700_000_000.0
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        while written < limit:
            for frame in connection(index, bulk_segments):
                ts += 0.00001
                seconds = int(ts)
                out.write(struct.pack("<IIII", seconds, int((ts - seconds) * 1e6), len(frame), len(frame)) + frame)
                written += 16 + len(frame)
            index += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("output", type=Path)
    parser.add_argument("--megabytes", type=int, default=600)
    parser.add_argument("--bulk-segments", type=int, default=40)
    args = parser.parse_args()
    write(args.output, args.megabytes, args.bulk_segments)


if __name__ == "__main__":
    main()
