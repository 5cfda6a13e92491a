"""Which proxy a capture shows, and the fix printed for it (issue 29 items 8 and 9): Stalwart's
own proxy (stalwartlabs/proxy v1.0.0) where its own words or commands are on the wire, and
the version an HTTP `Server` header gives.

No program of stalwartlabs/proxy runs here (Rust, not in Debian): its bytes are written as its
source at the v1.0.0 tag writes them, cited beside each."""

from __future__ import annotations

import ipaddress
import json
import os
import struct
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from proxydiag.parsers.protocols import recognise
from proxydiag.rules import catalog
from proxydiag.rules.registry import proxy_of_server_header, recognise_proxy
from tests.craft import Conversation, write_pcap

REPO = Path(__file__).resolve().parents[1]
CLIENT, PROXY, PROXY_BACK, STALWART = "203.0.113.7", "192.0.2.5", "10.0.0.2", "10.0.0.3"

# proxy-header 0.1.2 src/v2.rs:112-141, called by stalwartlabs/proxy src/net/proxy_protocol.rs:159-161
# (`ProxyHeader::with_address(ProxiedAddress::stream(src, dst)).encode_v2`): the signature, 0x21
# (v2, PROXY), 0x11 (TCP over IPv4), the length 12, the client's address and the address it
# reached (the proxy's listener), no TLV.
SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def stalwart_proxy_v2(src: str, src_port: int, dst: str, dst_port: int) -> bytes:
    return (SIGNATURE + b"\x21\x11" + struct.pack("!H", 12) + ipaddress.ip_address(src).packed
            + ipaddress.ip_address(dst).packed + struct.pack("!HH", src_port, dst_port))


# src/proto/smtp.rs:111 (`220 {hostname} ESMTP {banner}`, the banner `at your service.` by
# default: src/config/mod.rs:622) and :386 (`{hostname} at your service, [{client_host}]`).
PROXY_GREETING = b"220 mail.example.com ESMTP at your service.\r\n"
PROXY_EHLO = (b"250-mail.example.com at your service, [client.example]\r\n250-ENHANCEDSTATUSCODES\r\n"
              b"250 AUTH OAUTHBEARER XOAUTH2\r\n")
STALWART_GREETING = b"220 mail.example.com Stalwart ESMTP at your service\r\n"
STALWART_EHLO = b"250-mail.example.com you had me at EHLO\r\n250 AUTH PLAIN\r\n"


def analyze(path: Path) -> list[dict]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, "-m", "proxydiag", "analyze", str(path), "--fail-on", "never", "-F", "json"],
                            capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    return json.loads(result.stdout)["findings"]


def finding(findings: list[dict], code: str) -> dict:
    found = [each for each in findings if each["code"] == code]
    assert found, f"no {code} among {[each['code'] for each in findings]}"
    return found[0]


# --- the proxy's own words ---------------------------------------------------------------------


def test_the_proxy_s_submission_greeting_and_ehlo_reply_name_it():
    opening = recognise(b"EHLO client.example\r\n", PROXY_GREETING + PROXY_EHLO, 587)
    assert opening.software is not None and opening.software["name"] == "Stalwart proxy"
    greeting_only = recognise(b"", PROXY_GREETING, 587)
    assert greeting_only.software is not None and greeting_only.software["name"] == "Stalwart proxy"
    ehlo_only = recognise(b"EHLO client.example\r\n", b"220 mx.example.com ESMTP\r\n" + PROXY_EHLO, 587)
    assert ehlo_only.software is not None and ehlo_only.software["name"] == "Stalwart proxy"


def test_stalwart_s_own_submission_words_stay_stalwart_s():
    opening = recognise(b"EHLO client.example\r\n", STALWART_GREETING + STALWART_EHLO, 587)
    assert opening.software is not None and opening.software["name"] == "Stalwart"


def test_the_proxy_s_imap_greeting_is_stalwart_s_own_words():
    """src/config/mod.rs:493: `Stalwart IMAP4rev2 at your service.`, Stalwart's banner: the
    greeting alone cannot tell them apart (said on the pages), and is not taken for the proxy."""
    greeting = (b"* OK [CAPABILITY IMAP4rev2 IMAP4rev1 ENABLE SASL-IR LITERAL+ ID UTF8=ACCEPT JMAPACCESS "
                b"AUTH=OAUTHBEARER AUTH=XOAUTH2 LOGINDISABLED STARTTLS] Stalwart IMAP4rev2 at your service.\r\n")
    assert recognise(b"", greeting, 143).software["name"] == "Stalwart"


# --- recognise_proxy ---------------------------------------------------------------------------


def leg(number: int, header: bytes | None = None, client_first: str | None = None, software: str | None = None,
        server_header: str | None = None) -> SimpleNamespace:
    from proxydiag.parsers.proxy_protocol import parse

    return SimpleNamespace(id=number, header=parse(header).header if header else None, client_first=client_first,
                           opening=SimpleNamespace(software={"name": software} if software else None,
                                                   server_header=server_header))


def test_a_header_without_tlvs_names_no_proxy_by_itself():
    back = leg(2, stalwart_proxy_v2(CLIENT, 40000, PROXY, 587))
    assert recognise_proxy(back) is None
    assert recognise_proxy(back, [back]) is None


def test_the_leg_before_names_the_proxy_that_sent_the_header():
    front, back = leg(1, software="Stalwart proxy"), leg(2, stalwart_proxy_v2(CLIENT, 40000, PROXY, 587))
    assert recognise_proxy(back, [front, back]) == "Stalwart proxy"


def test_the_server_of_a_header_s_own_leg_is_not_its_sender():
    """A proxy chained behind another (HAProxy -> Stalwart's proxy): the leg's server received
    the header, it did not send it."""
    front, middle = leg(1), leg(2, stalwart_proxy_v2(CLIENT, 40000, PROXY, 587), software="Stalwart proxy")
    assert recognise_proxy(middle, [front, middle]) is None


def test_a_front_leg_relayed_onwards_names_its_own_server():
    front, back = leg(1, server_header="nginx/1.31.4"), leg(2)
    assert recognise_proxy(front, [front, back]) == "nginx 1.31.4+"
    assert recognise_proxy(front, [front]) is None  # not relayed: its server may be Stalwart itself


@pytest.mark.parametrize("command", ["P1 STARTTLS", "F1 ID (\"x-originating-ip\" \"203.0.113.7\")"])
def test_the_proxy_s_own_commands_to_the_backend_name_it(command):
    """src/proto/imap.rs:455 (`P1 STARTTLS`, a backend with `tls = "starttls"`) and
    src/proto/forward.rs:163 (`F1 ID ...`, the client passed by IMAP ID)."""
    assert recognise_proxy(leg(1, stalwart_proxy_v2(CLIENT, 40000, PROXY, 993), client_first=command)) == "Stalwart proxy"
    assert recognise_proxy(leg(1, client_first="a1 STARTTLS")) is None


@pytest.mark.parametrize(("value", "proxy"), [
    ("nginx/1.31.4", "nginx 1.31.4+"), ("nginx/1.22.1 (Debian)", "nginx 1.22.1+"), ("nginx", "nginx"),
    ("Caddy", "Caddy"), ("envoy", "Envoy"), ("Apache/2.4.62", None), ("Stalwart", None), ("nginx/1.31.4x", None),
    ("nginxish/1.0", None), ("", None), (None, None),
])
def test_server_header_tokens(value, proxy):
    assert proxy_of_server_header(value) == proxy


def test_the_version_a_server_header_gives_picks_the_page_s_block():
    pd301 = catalog.load_pages()["PD301"]
    assert "proxy_protocol v2;" in pd301.fix_for(proxy_of_server_header("nginx/1.31.4"))
    older = pd301.fix_for(proxy_of_server_header("nginx/1.30.2"))
    assert "proxy_protocol v2;" not in older and older == pd301.fix_for("nginx")


def test_the_stalwart_proxy_section_is_printed_for_it():
    fix = catalog.load_pages()["PD301"].fix_for("Stalwart proxy")
    assert fix.startswith("Stalwart proxy:") and 'tls = "starttls"' in fix and "send-proxy" not in fix


# --- captures ----------------------------------------------------------------------------------


def test_two_legs_of_stalwart_s_proxy_print_its_fix(tmp_path):
    """The proxy greets and authenticates the client itself (src/proto/smtp.rs:98-245), then
    opens the backend: its v2 header first (src/outbound.rs:45-51), which an untrusting Stalwart
    answers as commands."""
    front = Conversation(client=(CLIENT, 40000), server=(PROXY, 587))
    front.handshake().server_sends(PROXY_GREETING).client_sends(b"EHLO client.example\r\n").server_sends(PROXY_EHLO)
    front.client_sends(b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n", after=0.2)
    back = Conversation(client=(PROXY_BACK, 50000), server=(STALWART, 587), start=front.now + 0.01)
    back.handshake().client_sends(stalwart_proxy_v2(CLIENT, 40000, PROXY, 587)).server_sends(STALWART_GREETING)
    back.server_sends(b"500 5.5.1 Invalid command.\r\n" * 3 + b"221 2.0.0 Bye.\r\n").close(by="server")
    front.server_sends(b"421 4.3.0 backend unavailable\r\n", after=0.1).close(by="server")
    pd102 = finding(analyze(write_pcap(tmp_path / "stalwart-proxy.pcap", [front, back])), "PD102")
    assert pd102["proxy"] == "Stalwart proxy"
    assert "proxy_protocol = false" in pd102["fix"] and "send-proxy" not in pd102["fix"]


def test_the_back_leg_alone_names_it_by_its_starttls(tmp_path):
    """The proxy reads the backend's greeting, then sends its own `P1 STARTTLS`
    (src/proto/imap.rs:446-455); an untrusting Stalwart answers the header as commands."""
    back = Conversation(client=(PROXY_BACK, 50001), server=(STALWART, 143))
    back.handshake().client_sends(stalwart_proxy_v2(CLIENT, 40001, PROXY, 993))
    back.server_sends(b"* OK [CAPABILITY IMAP4rev2 IMAP4rev1 STARTTLS LOGINDISABLED] Stalwart IMAP4rev2 at your service.\r\n")
    back.client_sends(b"P1 STARTTLS\r\n").server_sends(b"* BAD Invalid command.\r\n" * 3).close()
    pd102 = finding(analyze(write_pcap(tmp_path / "p1.pcap", [back])), "PD102")
    assert pd102["proxy"] == "Stalwart proxy" and pd102["fix"].startswith("Stalwart proxy:")


IMAP_GREETING = b"* OK [CAPABILITY IMAP4rev2 IMAP4rev1 STARTTLS LOGINDISABLED] Stalwart IMAP4rev2 at your service.\r\n"


def imap_legs(proxy_greets_first: bool) -> list[Conversation]:
    """A client's IMAP session through a proxy to an untrusting Stalwart. Stalwart's proxy greets
    in Stalwart's words (src/config/mod.rs:493, src/proto/imap.rs:120-127) and opens the backend
    only once the client authenticated; a relay opens it at once and passes Stalwart's greeting on."""
    front = Conversation(client=(CLIENT, 40002), server=(PROXY, 143)).handshake()
    if proxy_greets_first:
        front.server_sends(IMAP_GREETING).client_sends(b"a1 AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n", after=0.3)
    back = Conversation(client=(PROXY_BACK, 50002), server=(STALWART, 143), start=front.now + 0.01)
    back.handshake().client_sends(stalwart_proxy_v2(CLIENT, 40002, PROXY, 143)).server_sends(IMAP_GREETING)
    if not proxy_greets_first:
        front.server_sends(IMAP_GREETING, after=back.now - front.now + 0.001)
    back.server_sends(b"* BAD Invalid command.\r\n" * 3).close(by="server")
    front.close(by="server", after=back.now - front.now + 0.01)
    return [front, back]


@pytest.mark.parametrize(("proxy_greets_first", "named"), [(True, "Stalwart proxy"), (False, None)])
def test_stalwart_s_words_before_the_backend_opened_are_its_proxy_s(tmp_path, proxy_greets_first, named):
    pd102 = finding(analyze(write_pcap(tmp_path / "imap.pcap", imap_legs(proxy_greets_first))), "PD102")
    assert pd102["proxy"] == named
    assert pd102["fix"].startswith("Stalwart proxy:" if named else "HAProxy:")


def test_an_nginx_front_names_nginx_and_its_version(tmp_path):
    front = Conversation(client=(CLIENT, 41000), server=(PROXY, 80))
    front.handshake().client_sends(b"GET /.well-known/jmap HTTP/1.1\r\nHost: mail.example.com\r\n\r\n")
    back = Conversation(client=(PROXY, 52000), server=(STALWART, 8080), start=front.now + 0.01)
    back.handshake().client_sends(b"GET /.well-known/jmap HTTP/1.1\r\nHost: mail.example.com\r\n\r\n")
    back.server_sends(b"HTTP/1.1 200 OK\r\nServer: Stalwart\r\nContent-Length: 2\r\n\r\n{}").close(by="server")
    front.server_sends(b"HTTP/1.1 200 OK\r\nServer: nginx/1.31.4\r\nContent-Length: 2\r\n\r\n{}", after=0.05).close()
    findings = analyze(write_pcap(tmp_path / "nginx-http.pcap", [front, back]))
    pd501 = finding(findings, "PD501")
    assert pd501["proxy"] == "nginx 1.31.4+"
    assert pd501["fix"].startswith("nginx:") and "HAProxy:" not in pd501["fix"]


# --- TLS to Stalwart by the proxy's own STARTTLS (issue 29) ------------------------------------


def imaps_back_leg(starttls_answer: bytes | None, header: bytes = stalwart_proxy_v2(CLIENT, 40003, PROXY, 993)) -> Conversation:
    """A client of the proxy's implicit-TLS 993 reaches a trusting Stalwart on 143: the proxy's v2
    header (no SSL TLV), Stalwart's greeting, then the proxy's `P1 STARTTLS`
    (src/proto/imap.rs:446-457) and, when Stalwart accepts, its ClientHello."""
    from tests.test_rules import client_hello

    back = Conversation(client=(PROXY_BACK, 50003), server=(STALWART, 143))
    back.handshake().client_sends(header).server_sends(IMAP_GREETING)
    back.client_sends(b"P1 STARTTLS\r\n")
    if starttls_answer is not None:
        back.server_sends(starttls_answer)
        if b" OK " in starttls_answer:
            back.client_sends(client_hello())
    return back.close(by="server")


@pytest.mark.parametrize("header", [stalwart_proxy_v2(CLIENT, 40003, PROXY, 993),
                                    f"PROXY TCP4 {CLIENT} {PROXY} 40003 993\r\n".encode()], ids=["v2", "v1"])
def test_a_back_leg_the_proxy_upgrades_with_starttls_is_tls_to_stalwart(tmp_path, header):
    back = imaps_back_leg(b"P1 OK Begin TLS negotiation now.\r\n", header)
    codes = [each["code"] for each in analyze(write_pcap(tmp_path / "upgraded.pcap", [back]))]
    assert "PD301" not in codes and "PD302" not in codes


@pytest.mark.parametrize("answer", [b"P1 NO STARTTLS refused.\r\n", None])
def test_a_back_leg_whose_starttls_was_not_accepted_still_lost_the_tls_flag(tmp_path, answer):
    findings = analyze(write_pcap(tmp_path / "refused.pcap", [imaps_back_leg(answer)]))
    assert finding(findings, "PD301")["proxy"] == "Stalwart proxy"
