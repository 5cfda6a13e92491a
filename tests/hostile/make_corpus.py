"""Writes the hostile corpus (tests/hostile/files/) and its manifest. Every file here is
crafted: the bytes are what a hostile or broken peer sends, which no well-behaved real
program on loopback produces (run: python3 -m tests.hostile.make_corpus).

Manifest entry: file, command (analyze|decode), exit (expected exit code), properties
(what must hold in every format), and for some: secret (never shown), originals (never
shown with --anonymize), shows (text every human view must show)."""

from __future__ import annotations

import json
from pathlib import Path

from proxydiag.parsers import proxy_protocol as pp
from tests.craft import Conversation, write_pcap

HERE = Path(__file__).resolve().parent
FILES = HERE / "files"
SECRET = "Hx9-secret-pw"
CLIENT = ("203.0.113.61", 41000)
PROXY = ("192.0.2.10", 40000)
SERVER = ("198.51.100.20", 10025)
COMMON = ["renders", "no_raw_control", "markdown_inert", "no_secret", "anonymized"]
entries: list[dict] = []


def v2(**kw) -> bytes:
    kw.setdefault("src_addr", CLIENT[0])
    kw.setdefault("dst_addr", "198.51.100.99")
    kw.setdefault("src_port", CLIENT[1])
    kw.setdefault("dst_port", 25)
    return pp.build_v2(**kw)


def capture(name: str, header: bytes, server: bytes, client: bytes = b"EHLO client.example\r\n", port: int = 10025,
            exit: int = 1, shows: list[str] | None = None, addresses=(PROXY[0], SERVER[0]),
            segments: int = 1, originals: list[str] | None = None) -> None:
    conv = Conversation(client=(addresses[0], PROXY[1]), server=(addresses[1], port))
    conv.handshake()
    conv.client_sends(header, segments=segments) if header else None
    conv.server_sends(server)
    if client:
        conv.client_sends(client)
    conv.close(by="client")
    write_pcap(FILES / f"{name}.pcap", [conv])
    hidden = [a for a in (*addresses, *(originals or [])) if a not in ("::1",)]
    entries.append({"file": f"{name}.pcap", "command": "analyze", "exit": [0, 1] if exit == 1 else [exit],
                    "properties": COMMON, "secret": SECRET, "originals": hidden, "shows": shows or []})


def decode(name: str, data: bytes, exit: int, rules: list[str], shows: list[str] | None = None) -> None:
    (FILES / f"{name}.bin").write_bytes(data)
    entries.append({"file": f"{name}.bin", "command": "decode", "exit": [exit], "properties": ["renders", "no_raw_control"],
                    "rules": rules, "shows": shows or []})


def raw(name: str, data: bytes, exit: int, properties=("renders", "one_line_error")) -> None:
    (FILES / name).write_bytes(data)
    entries.append({"file": name, "command": "analyze", "exit": [exit], "properties": list(properties)})


GREETINGS = {
    "greeting-close-bold-markup": b"220 [/bold] mail.example ESMTP\r\n",
    "greeting-link-markup": b"220 [link=http://evil.example/]click[/link] ESMTP\r\n",
    "greeting-csi-clear-screen": b"220 \x1b[2J\x1b[31mred ESMTP\r\n",
    "greeting-osc8-hyperlink": b"220 \x1b]8;;http://evil.example/\x07x\x1b]8;;\x07 ESMTP\r\n",
    "greeting-osc52-clipboard": b"220 \x1b]52;c;cm0gLXJmIH4=\x07 ESMTP\r\n",
    "greeting-osc0-title": b"220 \x1b]0;pwned\x07 ESMTP\r\n",
    "greeting-c1-csi": "220 \u009b31m C1 ESMTP\r\n".encode(),
    "greeting-bidi-override": "220 mail \u202egnp.exe ESMTP\r\n".encode(),
    "greeting-carriage-return": b"220 ok\rFAKE VERDICT healthy ESMTP\r\n",
    "greeting-markdown-image": b"220 ![t](http://track.example/p.png) <img src=x onerror=alert(1)> ESMTP\r\n",
    "greeting-html-script": b"220 <script>alert(1)</script> <a href='http://e.example'>x</a> ESMTP\r\n",
    "greeting-markdown-link-heading": b"220 [click](http://e.example) # h | pipe | `tick` ``` www.e.example\r\n",
    "greeting-entities-autolink": b"220 &#x202e; &lt;b&gt; <http://e.example> user@e.example ESMTP\r\n",
}


def build() -> None:
    FILES.mkdir(parents=True, exist_ok=True)
    header = v2()
    for name, greeting in GREETINGS.items():
        capture(name, header, greeting, shows=["[/bold]"] if "bold" in name else ["[link=http"] if "link-markup" in name else [])
    capture("client-markdown-image", header, b"220 mail.example ESMTP\r\n", client=b"EHLO ![x](http://t.example/x.png)\r\n")
    capture("http-request-script", v2(dst_port=80), b"HTTP/1.1 400 Bad\r\n\r\n",
            client=b"GET /<script>alert(1)</script>![i](http://t.example/i) HTTP/1.1\r\nHost: e.example\r\n\r\n", port=10080)
    capture("ipv6-fd-endpoint", v2(family="TCP6", src_addr="fd12::61", dst_addr="fd12::25"), b"220 mail.example ESMTP\r\n",
            addresses=("fd12::10", "fd12::25"), shows=["fd12::25"])
    capture("ipv4-mapped-source", v2(family="TCP6", src_addr="::ffff:10.1.91.14", dst_addr="::ffff:10.1.91.15"),
            b"220 mail.example ESMTP\r\n", originals=["10.1.91.14"], shows=["::ffff:10.1.91.14"])
    capture("v2-unix-path-escapes", pp.build_v2(family="UNIX_STREAM", src_addr="/run/\x1b[2Jevil\u202e", dst_addr="/x"),
            b"220 mail.example ESMTP\r\n")
    capture("v2-authority-osc8", v2(tlvs=[(pp.PP2_TYPE_AUTHORITY, b"\x1b]8;;http://e.example\x07a\x1b]8;;\x07")]),
            b"220 mail.example ESMTP\r\n")
    capture("v2-ssl-cn-csi", v2(tlvs=[(pp.PP2_TYPE_SSL, pp.build_ssl_value(version="TLSv1.3", cn="a\x1b[2Jb\u202e"))]),
            b"220 mail.example ESMTP\r\n")
    capture("v2-netns-osc52", v2(tlvs=[(pp.PP2_TYPE_NETNS, b"\x1b]52;c;ZXZpbA==\x07")]), b"220 mail.example ESMTP\r\n")
    capture("v2-tlv-amplification", v2(family="UNSPEC", src_addr=None, dst_addr=None, tlvs=[(pp.PP2_TYPE_NOOP, b"")] * 2000),
            b"220 mail.example ESMTP\r\n")
    swallow = bytearray(v2())
    swallow[15] += len(f"a1 LOGIN user {SECRET}\r\n")
    capture("v2-length-swallows-login", bytes(swallow) + f"a1 LOGIN user {SECRET}\r\n".encode(), b"* OK IMAP ready\r\n",
            client=b"", port=10143)
    capture("imap-untagged-login", header, b"* OK IMAP ready\r\n", client=f"LOGIN user {SECRET}\r\n".encode(), port=10143)
    capture("pop3-user", header, b"+OK POP3 ready\r\n", client=f"USER {SECRET}\r\n".encode(), port=10110)
    capture("pop3-apop-user", header, b"+OK POP3 ready <1.2@e>\r\n", client=f"APOP {SECRET} 0123abcd\r\n".encode(),
            port=10110)
    capture("http-access-token", v2(dst_port=80), b"HTTP/1.1 200 OK\r\n\r\n",
            client=f"GET /?access_token={SECRET} HTTP/1.1\r\n\r\n".encode(), port=10080)
    capture("http-userinfo", v2(dst_port=80), b"HTTP/1.1 200 OK\r\n\r\n",
            client=f"GET http://user:{SECRET}@e.example/ HTTP/1.1\r\n\r\n".encode(), port=10080)
    capture("smtp-auth-plain", header, b"220 mail.example ESMTP\r\n", client=f"AUTH PLAIN {SECRET}\r\n".encode())
    capture("ehlo-ipv6-literal", header, b"220 mail.example ESMTP\r\n", client=b"EHLO [IPv6:2001:db8:55::7]\r\n",
            originals=["2001:db8:55::7"])
    capture("single-label-host", header, b"220 mx1 ESMTP\r\n", client=b"EHLO corp_host\r\n")
    capture("ipv4-before-dot-and-escape", header, b"220 from 203.0.113.99. and \x0910.9.8.7 ESMTP\r\n",
            originals=["203.0.113.99", "10.9.8.7"])
    capture("ipv4-zero-padded", header, b"220 from 203.000.113.098 ESMTP\r\n", originals=["203.0.113.98"])
    capture("v2-unique-id", v2(tlvs=[(pp.PP2_TYPE_UNIQUE_ID, b"session-7f3a9c-client-61")]), b"220 mail.example ESMTP\r\n")
    capture("v2-aws-vpce", v2(tlvs=[(pp.PP2_TYPE_AWS, b"\x01vpce-08d2bf15fefebe5a8")], with_crc32c=True),
            b"220 mail.example ESMTP\r\n")
    capture("v2-custom-tlv", v2(tlvs=[(0xE5, b"tenant-4711")]), b"220 mail.example ESMTP\r\n")
    capture("v1-zone-id", b"PROXY TCP6 fe80::1%eth0 fe80::2 1 25\r\n", b"220 mail.example ESMTP\r\n")
    capture("v2-local-short-block", pp.build_v2(command="LOCAL", family="UNSPEC")[:-0 or None].replace(b"\x20\x00", b"\x20\x11", 1),
            b"220 mail.example ESMTP\r\n")
    capture("proxy-without-space", b"PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n", b"500 5.5.2 Error\r\n")
    reverse = Conversation(client=(PROXY[0], PROXY[1]), server=(SERVER[0], 10143))
    reverse.handshake()
    opening = header + b"a1 CAPABILITY\r\n" + b"x" * 2900
    start = reverse.client_seq
    for index in reversed(range(len(opening))):
        reverse._emit(True, 0x18, opening[index:index + 1], seq=start + index, after=0.0001)
    reverse.client_seq = start + len(opening)
    reverse.server_sends(b"* OK IMAP ready\r\n")
    reverse.close(by="client")
    write_pcap(FILES / "reverse-one-byte-segments.pcap", [reverse])
    entries.append({"file": "reverse-one-byte-segments.pcap", "command": "analyze", "exit": [0, 1], "properties": COMMON,
                    "secret": SECRET, "originals": [PROXY[0], SERVER[0]], "shows": ["v2"], "lead": False})
    raw("not-a-capture.txt", b"this is tcpdump -A output, not a capture\n", 2)
    raw("gzip-capture.pcap.gz", b"\x1f\x8b\x08\x00" + b"\x00" * 20, 2)
    raw("empty.pcap", b"", 2)
    good = (FILES / "greeting-close-bold-markup.pcap").read_bytes()
    raw("truncated-mid-record.pcap", good[: len(good) - 7], 2, ("renders", "one_line_error", "no_raw_control"))
    entries.append({"file": "unknown-linktypes-65000.pcapng", "command": "analyze", "exit": [2],
                    "properties": ["renders", "one_line_error"], "generated": True})  # tests/hostile/generated.py
    decode("decode-authority-osc", v2(tlvs=[(pp.PP2_TYPE_AUTHORITY, b"\x1b]8;;http://e\x07x\x1b]8;;\x07\r\u202e".replace(b"\u202e", "\u202e".encode()))]),
           1, ["v2.authority-control"])
    decode("decode-ssl-no-version", v2(tlvs=[(pp.PP2_TYPE_SSL, pp.build_ssl_value(cn="ok"))]), 1, ["v2.ssl-version-missing"])
    decode("decode-ssl-cipher-not-ascii", v2(tlvs=[(pp.PP2_TYPE_SSL, pp.build_ssl_value(version="TLSv1.3", cipher=b"\xc3\xa9\x1b"))]),
           1, ["v2.ssl_cipher"])
    decode("decode-ssl-cn-not-utf8", v2(tlvs=[(pp.PP2_TYPE_SSL, pp.build_ssl_value(version="TLSv1.3", cn=b"\xff\xfe"))]),
           1, ["v2.ssl_cn"])
    decode("decode-netns-osc52", v2(tlvs=[(pp.PP2_TYPE_NETNS, b"\x1b]52;c;ZXZpbA==\x07")]), 1, ["v2.netns-control"])
    decode("decode-tlv-amplification", pp.build_v2(family="UNSPEC", tlvs=[(pp.PP2_TYPE_NOOP, b"")] * 21845), 1, ["v2.tlv-count"])
    decode("decode-v1-zone-id", b"PROXY TCP6 fe80::1%eth0 fe80::2 1 25\r\n", 1, ["v1.address"])
    decode("decode-local-short", b"\r\n\r\n\x00\r\nQUIT\n\x20\x11\x00\x00", 0, [])
    decode("decode-proxy-no-space", b"PROXY\r\n", 1, ["v1.single-space"])
    decode("decode-not-a-header", b"\x16\x03\x01\x00\x05hello", 1, ["signature"])
    decode("decode-ipv4-mapped", v2(family="TCP6", src_addr="::ffff:10.1.91.14", dst_addr="::1"), 0, [], ["::ffff:10.1.91.14"])
    (HERE / "manifest.json").write_text(json.dumps(entries, indent=1) + "\n")


if __name__ == "__main__":
    build()
    print(f"{len(entries)} files in {FILES}")
