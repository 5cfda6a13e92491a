"""One behaviour per test: every finding of the catalog (docs/findings, PD101..PD904) is
built from crafted TCP conversations (tests/craft.py) and/or a Stalwart configuration
written to tmp_path, run through `diagnose`, and checked for its code, severity, cited
connections and evidence; each has a near-miss control where the code must be absent."""

from __future__ import annotations

import ipaddress
import itertools
import json
import struct
import textwrap
from pathlib import Path

import pytest

from proxydiag.facts.model import Analysis
from proxydiag.parsers.proxy_protocol import (
    PP2_CLIENT_CERT_CONN,
    PP2_CLIENT_SSL,
    PP2_TYPE_SSL,
    build_ssl_value,
    build_v1,
    build_v2,
)
from proxydiag.pipeline.analysis import Settings, diagnose
from proxydiag.rules.base import Finding
from proxydiag.rules.registry import ALL_RULES, RULES_BY_CODE
from tests.craft import Conversation, write_pcap

# --- the cast ----------------------------------------------------------------------------

T0 = 1_700_000_000.0
CLIENT = "203.0.113.9"  # a public mail client (documentation range)
CLIENT2 = "198.51.100.7"  # another one
PUBLIC = "192.0.2.10"  # the proxy's public address: what clients connect to (header destination)
PROXY = "10.0.0.5"  # the proxy's address towards Stalwart
OTHER_PROXY = "10.0.0.6"
EDGE = "192.168.1.10"  # a proxy on a LAN (two-leg captures: clients and Stalwart both reach it)
MAIL = "10.0.0.25"  # Stalwart

# --- what the servers say (references.md) ------------------------------------------------

SMTP_GREETING = b"220 mail.example.test Stalwart ESMTP at your service\r\n"
EHLO = b"EHLO client.example.org\r\n"
EHLO_REPLY_PLAIN = (
    b"250-mail.example.test you had me at EHLO\r\n250-8BITMIME\r\n250-PIPELINING\r\n"
    b"250-STARTTLS\r\n250 SIZE 104857600\r\n"
)
EHLO_REPLY_NO_STARTTLS = b"250-mail.example.test you had me at EHLO\r\n250-8BITMIME\r\n250 SIZE 104857600\r\n"
# Stalwart reading a v2 header as SMTP: the signature's pieces, the last one `QUIT\n`.
STALWART_ANSWERS_V2 = SMTP_GREETING + b"500 5.5.1 Invalid command.\r\n" * 3 + b"221 2.0.0 Bye.\r\n"
POSTFIX_GREETING = b"220 mail.example.test ESMTP Postfix (Debian/GNU)\r\n"
POSTFIX_ANSWERS_V2 = POSTFIX_GREETING + b"500 5.5.2 Error: bad syntax\r\n" * 3 + b"221 2.0.0 Bye\r\n"
IMAP_GREETING = (
    b"* OK [CAPABILITY IMAP4rev2 IMAP4rev1 ENABLE SASL-IR LITERAL+ ID UTF8=ACCEPT STARTTLS LOGINDISABLED] "
    b"Stalwart IMAP4rev2 at your service.\r\n"
)
IMAP_GREETING_TLS = (
    b"* OK [CAPABILITY IMAP4rev2 IMAP4rev1 ENABLE SASL-IR LITERAL+ ID UTF8=ACCEPT AUTH=PLAIN AUTH=OAUTHBEARER] "
    b"Stalwart IMAP4rev2 at your service.\r\n"
)
HTTP_REQUEST = b"GET /.well-known/jmap HTTP/1.1\r\nHost: mail.example.test\r\nUser-Agent: curl/7.88.1\r\n\r\n"
HTTP_401 = (
    b'HTTP/1.1 401 Unauthorized\r\nwww-authenticate: Basic realm="Stalwart Server"\r\n'
    b"content-length: 0\r\n\r\n"
)


def client_hello() -> bytes:
    """A minimal TLS 1.2 ClientHello record (one cipher suite, no extensions)."""
    body = struct.pack("!H", 0x0303) + bytes(32) + b"\x00" + struct.pack("!H", 2) + b"\x13\x01" + b"\x01\x00"
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(handshake)) + handshake


def server_hello() -> bytes:
    body = struct.pack("!H", 0x0303) + bytes(32) + b"\x00" + b"\x13\x01" + b"\x00"
    handshake = b"\x02" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x03" + struct.pack("!H", len(handshake)) + handshake


TLS_ALERT = b"\x15\x03\x03\x00\x02\x02\x32"  # fatal decode_error: rustls given non-TLS bytes


# --- headers -----------------------------------------------------------------------------


def v2(src=CLIENT, sport=50000, dst=PUBLIC, dport=25, *, tlvs=(), command="PROXY", family=None) -> bytes:
    if family is None:
        family = "TCP6" if ":" in src else "TCP4"
    if command == "LOCAL" or family == "UNSPEC":
        return build_v2(command=command, family="UNSPEC")
    return build_v2(command=command, family=family, src_addr=src, dst_addr=dst, src_port=sport, dst_port=dport, tlvs=list(tlvs))


def v1(src=CLIENT, sport=50000, dst=PUBLIC, dport=25) -> bytes:
    return build_v1("TCP6" if ":" in src else "TCP4", src, dst, sport, dport)


def ssl_tlv(client=PP2_CLIENT_SSL, verify=0, **sub) -> tuple[int, bytes]:
    return PP2_TYPE_SSL, build_ssl_value(client=client, verify=verify, **sub)


# --- conversations -----------------------------------------------------------------------

_ports = itertools.count(41000)


def leg(src: str, server: tuple[str, int], *, at: float = 0.0, sport: int | None = None, handshake: bool = True) -> Conversation:
    """A TCP connection from `src` (a fresh ephemeral port) to `server`, `at` seconds after T0."""
    conv = Conversation(client=(src, sport or next(_ports)), server=server, start=T0 + at)
    if handshake:
        conv.handshake()
    return conv


def smtp_session(src=PROXY, port=25, header: bytes | None = None, *, at=0.0, ehlo_reply=EHLO_REPLY_PLAIN) -> Conversation:
    """A proxied SMTP session that goes right: header, greeting, EHLO, 250, QUIT."""
    conv = leg(src, (MAIL, port), at=at)
    if header is not None:
        conv.client_sends(header)
    conv.server_sends(SMTP_GREETING, after=0.002)
    conv.client_sends(EHLO).server_sends(ehlo_reply)
    conv.client_sends(b"QUIT\r\n").server_sends(b"221 2.0.0 Bye.\r\n")
    return conv.close(by="server")


def imap_session(src=PROXY, port=143, header: bytes | None = None, *, at=0.0, greeting=IMAP_GREETING) -> Conversation:
    conv = leg(src, (MAIL, port), at=at)
    if header is not None:
        conv.client_sends(header)
    conv.server_sends(greeting, after=0.002)
    conv.client_sends(b"a1 LOGOUT\r\n")
    conv.server_sends(b"* BYE Stalwart IMAP4rev2 bids you farewell.\r\na1 OK LOGOUT completed.\r\n")
    return conv.close(by="server")


def health_check(src=PROXY, port=25, *, at=0.0) -> Conversation:
    """HAProxy `check port N`: SYN, SYN-ACK, ACK, then a reset from the proxy."""
    return leg(src, (MAIL, port), at=at).close(by="client", reset=True, after=0.002)


def snap(conv: Conversation, keep: int) -> Conversation:
    """Cut the first data-carrying frame to `keep` bytes, as a short snap length does (the
    IP header still gives the full length)."""
    for index, (ts, frame) in enumerate(conv.frames):
        if len(frame) > 54:
            conv.frames[index] = (ts, frame[:keep])
            return conv
    raise AssertionError("no data frame to cut")


# --- running and reading -----------------------------------------------------------------


def run(tmp_path: Path, *convs: Conversation, **settings) -> Analysis:
    """`diagnose` over the conversations written as one pcap; settings as `Settings.from_options`."""
    path = write_pcap(tmp_path / f"capture-{next(_ports)}.pcap", list(convs))
    return diagnose([str(path)], Settings.from_options(**settings))


def run_file(path: Path, **settings) -> Analysis:
    return diagnose([str(path)], Settings.from_options(**settings))


def findings(analysis: Analysis, code: str) -> list[Finding]:
    return [finding for finding in analysis.findings if finding.code == code]


def one(analysis: Analysis, code: str) -> Finding:
    found = findings(analysis, code)
    assert len(found) == 1, f"expected one {code}, got {len(found)}: {summary(analysis)}"
    return found[0]


def absent(analysis: Analysis, code: str) -> None:
    assert not findings(analysis, code), f"{code} must not fire: {summary(analysis)}"


def check(analysis: Analysis, code: str, severity: str, *convs: Conversation, inferred: bool = False) -> Finding:
    """The one finding with `code`: its severity, whether it rests on an inferred
    expectation, and the connections it cites (none for configuration-only findings)."""
    finding = one(analysis, code)
    assert finding.severity == severity, summary(analysis)
    assert finding.inferred is inferred, summary(analysis)
    assert finding.connections == ids(analysis, *convs), summary(analysis)
    return finding


def summary(analysis: Analysis) -> list[str]:
    return [f"{f.code}/{f.severity}{'/inferred' if f.inferred else ''} {f.connections}: {f.message}" for f in analysis.findings]


def ids(analysis: Analysis, *convs: Conversation) -> list[int]:
    """The connection ids the analysis gave these conversations."""
    wanted = {(conv.client, conv.server) for conv in convs}
    found = sorted(
        conn.id for conn in analysis.connections
        if ((conn.tcp.src_addr, conn.tcp.src_port), (conn.tcp.dst_addr, conn.tcp.dst_port)) in wanted
    )
    assert len(found) == len(convs), "every conversation should be one connection"
    return found


def toml_config(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def json_config(tmp_path: Path, document, name: str = "registry.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(document, indent=2), encoding="utf-8")
    return path


# A 0.15 configuration in the style of Stalwart's proxy guide: listeners on 10000 + port,
# the proxy network trusted server-wide.
TOML_PROXY_GUIDE = """\
    [server]
    hostname = "mail.example.test"

    [server.proxy]
    trusted-networks = ["10.0.0.0/24", "127.0.0.0/8"]

    [server.listener.smtp]
    bind = ["[::]:10025"]
    protocol = "smtp"

    [server.listener.imap]
    bind = ["[::]:10143"]
    protocol = "imap"

    [server.listener.imaps]
    bind = ["[::]:10993"]
    protocol = "imap"
    tls.implicit = true

    [server.listener.http]
    bind = ["[::]:8080"]
    protocol = "http"
    proxy.trusted-networks = ["10.0.0.0/24"]
    """


def listener(name, bind, protocol, **more) -> dict:
    return {"@type": "NetworkListener", "name": name, "bind": bind, "protocol": protocol, **more}


# --- the catalog itself ------------------------------------------------------------------

CATALOG = {
    "PD101": ("missing-proxy-header", "error"),
    "PD102": ("unexpected-proxy-header", "error"),
    "PD103": ("malformed-proxy-header", "error"),
    "PD104": ("proxy-version-mismatch", "error"),
    "PD105": ("proxy-header-split", "warning"),
    "PD106": ("duplicate-proxy-header", "error"),
    "PD107": ("greeting-before-proxy-header", "warning"),
    "PD108": ("proxy-header-late", "warning"),
    "PD109": ("proxy-expects-header-from-client", "error"),
    "PD110": ("proxy-waits-for-client", "error"),
    "PD201": ("client-address-is-proxy", "error"),
    "PD202": ("single-client-address", "warning"),
    "PD203": ("local-command", "info"),
    "PD204": ("unknown-client-address", "warning"),
    "PD205": ("private-client-address", "warning"),
    "PD206": ("untrusted-proxy-source", "error"),
    "PD207": ("mapped-ipv4-address", "info"),
    "PD208": ("destination-mismatch", "warning"),
    "PD209": ("mx-port-remapped", "warning"),
    "PD301": ("tls-flag-lost", "error"),
    "PD302": ("tls-flag-impossible-v1", "warning"),
    "PD303": ("tls-to-plaintext-listener", "error"),
    "PD304": ("plaintext-to-tls-listener", "error"),
    "PD305": ("tls-flag-without-tls", "warning"),
    "PD306": ("client-cert-unverified", "info"),
    "PD401": ("server-rejected", "error"),
    "PD402": ("no-greeting", "warning"),
    "PD403": ("healthcheck-without-header", "warning"),
    "PD404": ("starttls-refused", "warning"),
    "PD501": ("http-client-address-lost", "warning"),
    "PD502": ("http-forwarded-conflict", "warning"),
    "PD601": ("trusted-network-matches-nothing", "error"),
    "PD602": ("empty-override-ignored", "warning"),
    "PD603": ("proxy-override-ignored", "warning"),
    "PD604": ("proxy-required-on-http", "warning"),
    "PD605": ("forwarded-trusted-from-anyone", "warning"),
    "PD606": ("traffic-vs-config", "error"),
    "PD608": ("unknown-listener-port", "error"),
    "PD901": ("capture-truncated", "info"),
    "PD902": ("mid-stream", "info"),
    "PD903": ("no-mail-traffic", "warning"),
    "PD904": ("capture-damaged", "warning"),
    "PD905": ("flow-table-bounded", "warning"),
}


def test_one_rule_per_catalog_code():
    codes = [rule.code for rule in ALL_RULES]
    assert sorted(codes) == sorted(CATALOG)
    assert len(codes) == len(set(codes)), "a code is claimed by two rules"
    assert set(RULES_BY_CODE) == set(CATALOG)


@pytest.mark.parametrize("code", sorted(CATALOG))
def test_rule_slug_and_severity_match_the_catalog(code):
    rule = RULES_BY_CODE[code]
    assert (rule.slug, rule.severity) == CATALOG[code]


def test_a_clean_proxied_session_has_no_error_or_warning(tmp_path):
    convs = [smtp_session(header=v2(src=CLIENT, sport=50000 + n), at=n) for n in range(3)]
    analysis = run(tmp_path, *convs, expect=["v2"])
    assert [f for f in analysis.findings if f.severity != "info"] == [], summary(analysis)


# === PD1xx: the PROXY header itself =======================================================


def test_pd101_mail_command_where_expect_v2_wants_a_header(tmp_path):
    conv = leg(PROXY, (MAIL, 25)).client_sends(EHLO).wait(6).close()
    analysis = run(tmp_path, conv, expect=["v2"])
    finding = check(analysis, "PD101", "error", conv)
    assert finding.evidence["client_first"] == "EHLO client.example.org"
    assert "--expect v2" in finding.message


def test_pd101_absent_when_the_header_is_there(tmp_path):
    absent(run(tmp_path, smtp_session(header=v2()), expect=["v2"]), "PD101")


def test_pd101_client_hello_first_says_the_header_travels_inside_tls(tmp_path):
    conv = leg(PROXY, (MAIL, 10993)).client_sends(client_hello()).close(by="server", reset=True)
    finding = check(run(tmp_path, conv, expect=["v2"]), "PD101", "error", conv)
    assert finding.evidence["client_first"] == "TLS ClientHello"
    assert "inside the encrypted stream" in finding.message


def test_pd101_without_expectation_client_spoke_first_and_server_never_greeted(tmp_path):
    conv = leg(PROXY, (MAIL, 25)).client_sends(EHLO).wait(6).close()
    finding = check(run(tmp_path, conv), "PD101", "error", conv)
    assert "never greeted" in finding.message


def test_pd101_absent_without_expectation_when_the_server_greets(tmp_path):
    conv = leg(PROXY, (MAIL, 25)).client_sends(EHLO).server_sends(SMTP_GREETING).server_sends(EHLO_REPLY_PLAIN).close()
    absent(run(tmp_path, conv), "PD101")


def test_pd101_on_an_inferred_expectation_is_a_warning(tmp_path):
    with_header = [smtp_session(header=v2(sport=50000 + n), at=n) for n in range(3)]
    bare = leg(PROXY, (MAIL, 25), at=5).client_sends(EHLO).wait(6).close()
    finding = check(run(tmp_path, *with_header, bare), "PD101", "warning", bare, inferred=True)
    assert "inferred" in finding.message


def test_pd101_trusted_networks_make_the_header_mandatory(tmp_path):
    conv = leg(PROXY, (MAIL, 25)).client_sends(EHLO).wait(6).close()
    finding = check(run(tmp_path, conv, trusted_networks="10.0.0.0/24"), "PD101", "error", conv)
    assert "--trusted-networks" in finding.message


def test_pd101_absent_from_a_source_outside_the_trusted_networks(tmp_path):
    absent(run(tmp_path, smtp_session(), trusted_networks="192.168.0.0/16"), "PD101")


def test_pd101_stalwart_config_trusts_the_source_so_the_header_is_mandatory(tmp_path):
    config = toml_config(tmp_path, TOML_PROXY_GUIDE)
    conv = leg(PROXY, (MAIL, 10025)).client_sends(EHLO).wait(6).close()
    finding = check(run(tmp_path, conv, stalwart_config=config), "PD101", "error", conv)
    assert "Stalwart listener 'smtp'" in finding.message


def test_pd102_stalwart_answers_a_v2_header_with_three_500_and_bye(tmp_path):
    conv = leg(PROXY, (MAIL, 25)).client_sends(v2()).server_sends(STALWART_ANSWERS_V2).close(by="server")
    finding = check(run(tmp_path, conv), "PD102", "error", conv)
    assert finding.evidence["replies_to_header"][:3] == ["500 5.5.1 Invalid command."] * 3
    assert PROXY in finding.message and "trusted networks" in finding.message


def test_pd102_postfix_answers_a_v2_header_with_bad_syntax(tmp_path):
    conv = leg(PROXY, (MAIL, 25)).client_sends(v2()).server_sends(POSTFIX_ANSWERS_V2).close(by="server")
    finding = check(run(tmp_path, conv), "PD102", "error", conv)
    assert "500 5.5.2 Error: bad syntax" in finding.evidence["replies_to_header"]


def test_pd102_stalwart_answers_a_v1_header_with_one_500_and_goes_on(tmp_path):
    conv = leg(PROXY, (MAIL, 25)).client_sends(v1())
    conv.server_sends(SMTP_GREETING + b"500 5.5.1 Invalid command.\r\n")
    conv.client_sends(EHLO).server_sends(EHLO_REPLY_PLAIN).close()
    finding = check(run(tmp_path, conv), "PD102", "error", conv)
    assert finding.evidence["replies_to_header"] == ["500 5.5.1 Invalid command."]


def test_pd102_expect_none_and_a_header_arrives(tmp_path):
    conv = smtp_session(header=v2())
    finding = check(run(tmp_path, conv, expect=["none"]), "PD102", "error", conv)
    assert "--expect none" in finding.message


def test_pd102_on_an_inferred_none_is_a_warning(tmp_path):
    bare = [smtp_session(at=n) for n in range(3)]
    odd = smtp_session(header=v2(), at=5)
    check(run(tmp_path, *bare, odd), "PD102", "warning", odd, inferred=True)


def test_pd102_absent_when_the_header_is_accepted(tmp_path):
    absent(run(tmp_path, smtp_session(header=v2()), expect=["v2"]), "PD102")


def test_pd102_absent_when_the_errors_answer_tls_bytes_after_an_accepted_header(tmp_path):
    # Dovecot with haproxy=yes (references.md): valid header, greeting, then TLS bytes -> `* BAD`.
    dovecot = (b"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS AUTH=PLAIN] "
               b"Dovecot (Debian) ready.\r\n")
    conv = leg(PROXY, (MAIL, 143)).client_sends(v2(dport=993)).server_sends(dovecot)
    conv.client_sends(client_hello()).server_sends(b"* BAD Error in IMAP command received by server.\r\n").close()
    analysis = run(tmp_path, conv, expect=["v2"])
    one(analysis, "PD303")
    absent(analysis, "PD102")


def test_pd102_implicit_tls_listener_resets_after_the_header(tmp_path):
    conv = leg(PROXY, (MAIL, 993)).client_sends(v2(dport=993)).client_sends(client_hello())
    conv.close(by="server", reset=True)
    check(run(tmp_path, conv), "PD102", "error", conv)


def test_pd102_implicit_tls_listener_answers_the_header_with_an_alert(tmp_path):
    conv = leg(PROXY, (MAIL, 993)).client_sends(v2(dport=993) + client_hello()).server_sends(TLS_ALERT).close(by="server")
    finding = check(run(tmp_path, conv), "PD102", "error", conv)
    assert "TLS" in finding.message


def test_pd103_v1_with_a_bad_address_names_byte_and_rule(tmp_path):
    conv = leg(PROXY, (MAIL, 25)).client_sends(b"PROXY TCP4 203.0.113.999 192.0.2.10 50000 25\r\n").wait(3).close()
    finding = check(run(tmp_path, conv), "PD103", "error", conv)
    first = finding.evidence["violations"][0]
    assert (first["offset"], first["rule"]) == (11, "v1.address")
    assert "byte 11" in finding.message


def test_pd103_v2_with_a_wrong_crc32c(tmp_path):
    header = bytearray(build_v2(src_addr=CLIENT, dst_addr=PUBLIC, src_port=50000, dst_port=25, with_crc32c=True))
    header[17] ^= 0x01  # one bit of the source address changes after the checksum was computed
    conv = leg(PROXY, (MAIL, 25)).client_sends(bytes(header)).server_sends(SMTP_GREETING).close()
    finding = check(run(tmp_path, conv), "PD103", "error", conv)
    assert finding.evidence["violations"][0]["rule"] == "v2.crc32c"


def test_pd103_absent_for_a_valid_header_with_crc32c_and_vendor_tlv(tmp_path):
    header = build_v2(src_addr=CLIENT, dst_addr=PUBLIC, src_port=50000, dst_port=25,
                      tlvs=[(0xEA, b"\x01vpce-08d2bf15fac5001c9")], with_crc32c=True)
    absent(run(tmp_path, smtp_session(header=header), expect=["v2"]), "PD103")


def test_pd103_absent_when_the_snap_length_cut_the_header(tmp_path):
    conv = smtp_session(header=v2(tlvs=[ssl_tlv(version="TLSv1.3", cn="client.example.org")]))
    snap(conv, keep=54 + 20)
    analysis = run(tmp_path, conv, expect=["v2"])
    one(analysis, "PD901")
    absent(analysis, "PD103")


def test_pd104_expect_v2_and_a_v1_header_arrives(tmp_path):
    conv = smtp_session(header=v1())
    finding = check(run(tmp_path, conv, expect=["v2"]), "PD104", "error", conv)
    assert finding.evidence == {"received": 1, "expected": "v2"}


def test_pd104_absent_when_the_version_matches(tmp_path):
    absent(run(tmp_path, smtp_session(header=v2()), expect=["v2"]), "PD104")


def test_pd104_absent_with_expect_any(tmp_path):
    absent(run(tmp_path, smtp_session(header=v1()), expect=["any"]), "PD104")


def test_pd104_per_port_expect_overrides_the_global_one(tmp_path):
    submission = smtp_session(port=587, header=v1(dport=587))
    mx = smtp_session(header=v1(sport=50001), at=1)
    finding = check(run(tmp_path, submission, mx, expect=["v2", "587=v1"]), "PD104", "error", mx)
    assert "--expect v2" in finding.message


def test_pd104_both_versions_on_one_endpoint_is_a_warning_without_expectation(tmp_path):
    first, second = smtp_session(header=v1(sport=50001)), smtp_session(header=v2(sport=50002), at=1)
    finding = check(run(tmp_path, first, second), "PD104", "warning", first, second)
    assert finding.evidence == {"versions": {1: 1, 2: 1}}


def test_pd105_header_split_over_two_segments(tmp_path):
    conv = leg(PROXY, (MAIL, 25)).client_sends(v2(), segments=2).server_sends(SMTP_GREETING).close()
    finding = check(run(tmp_path, conv, expect=["v2"]), "PD105", "warning", conv)
    assert finding.evidence == {"segments": 2, "length": 28}


def test_pd105_absent_for_a_header_in_one_segment(tmp_path):
    absent(run(tmp_path, smtp_session(header=v2()), expect=["v2"]), "PD105")


def test_pd106_two_headers_from_a_proxy_chain(tmp_path):
    inner = v2(src=EDGE, sport=40000, dst=PROXY, dport=25)  # the inner proxy's own header
    outer = v1(src=CLIENT)  # the outer proxy's, relayed as data
    conv = leg(PROXY, (MAIL, 25)).client_sends(inner + outer).server_sends(SMTP_GREETING).close()
    finding = check(run(tmp_path, conv, expect=["v2"]), "PD106", "error", conv)
    assert [(h["version"], h["src_addr"]) for h in finding.evidence["headers"]] == [(2, EDGE), (1, CLIENT)]


def test_pd106_absent_for_one_header_then_mail_commands(tmp_path):
    absent(run(tmp_path, smtp_session(header=v2()), expect=["v2"]), "PD106")


def test_pd107_greeting_before_the_header(tmp_path):
    conv = leg(PROXY, (MAIL, 25)).server_sends(SMTP_GREETING)
    conv.client_sends(v2(), after=0.05).server_sends(b"500 5.5.1 Invalid command.\r\n" * 3 + b"221 2.0.0 Bye.\r\n")
    conv.close(by="server")
    finding = check(run(tmp_path, conv), "PD107", "warning", conv)
    assert finding.evidence["greeting"] == SMTP_GREETING.decode().strip()


def test_pd107_absent_when_the_header_comes_first(tmp_path):
    absent(run(tmp_path, smtp_session(header=v2())), "PD107")


def test_pd108_header_late_after_the_handshake(tmp_path):
    conv = leg(PROXY, (MAIL, 25)).wait(1.5).client_sends(v2()).server_sends(SMTP_GREETING).close()
    finding = check(run(tmp_path, conv, expect=["v2"]), "PD108", "warning", conv)
    assert finding.evidence["delay_seconds"] == pytest.approx(1.501, abs=0.01)


def test_pd108_absent_within_the_delay(tmp_path):
    conv = leg(PROXY, (MAIL, 25)).wait(0.5).client_sends(v2()).server_sends(SMTP_GREETING).close()
    absent(run(tmp_path, conv, expect=["v2"]), "PD108")


def test_pd108_absent_with_a_longer_header_delay_option(tmp_path):
    conv = leg(PROXY, (MAIL, 25)).wait(1.5).client_sends(v2()).server_sends(SMTP_GREETING).close()
    absent(run(tmp_path, conv, expect=["v2"], header_delay=2.0), "PD108")


def pd109_proxy_elsewhere(at=1.0) -> Conversation:
    """EDGE is known as a proxy: it sends headers to Stalwart for other clients."""
    return imap_session(src=EDGE, port=10143, header=v2(src=CLIENT2, dport=143), at=at)


def test_pd109_proxy_resets_a_client_hello_instead_of_forwarding_it(tmp_path):
    front = leg(CLIENT, (EDGE, 993)).client_sends(client_hello()).close(by="server", reset=True)
    analysis = run(tmp_path, front, pd109_proxy_elsewhere())
    finding = check(analysis, "PD109", "error", front)
    assert finding.evidence.items() >= {"client_first": "TLS ClientHello", "closed": "rst"}.items()


def test_pd109_absent_when_the_proxy_relays(tmp_path):
    front = leg(CLIENT, (EDGE, 993)).client_sends(client_hello()).server_sends(server_hello(), after=0.01).close()
    absent(run(tmp_path, front, pd109_proxy_elsewhere()), "PD109")


def test_pd109_absent_when_the_closing_side_is_not_known_as_a_proxy(tmp_path):
    front = leg(CLIENT, (EDGE, 993)).client_sends(client_hello()).close(by="server", reset=True)
    absent(run(tmp_path, front), "PD109")


def test_pd110_header_and_client_command_in_one_segment_before_the_greeting(tmp_path):
    conv = leg(PROXY, (MAIL, 25)).client_sends(v2() + EHLO).server_sends(SMTP_GREETING + EHLO_REPLY_PLAIN).close()
    finding = check(run(tmp_path, conv, expect=["v2"]), "PD110", "error", conv)
    assert finding.evidence["client_first"] == "EHLO client.example.org"


def test_pd110_server_says_you_talk_too_soon(tmp_path):
    conv = leg(PROXY, (MAIL, 25)).client_sends(v2()).client_sends(EHLO)
    conv.server_sends(b"421 4.7.0 mail.example.test Error: You talk too soon\r\n").close(by="server")
    finding = check(run(tmp_path, conv, expect=["v2"]), "PD110", "error", conv)
    assert "You talk too soon" in finding.message


def test_pd110_absent_when_the_client_waits_for_the_greeting(tmp_path):
    absent(run(tmp_path, smtp_session(header=v2()), expect=["v2"]), "PD110")


def test_pd110_two_leg_back_leg_opens_only_after_the_client_spoke(tmp_path):
    front = leg(CLIENT, (PUBLIC, 25)).wait(5).client_sends(EHLO)  # 5 s of silence, then the client gives in
    back = leg(PROXY, (MAIL, 25), at=5.01)
    back.client_sends(v2(src=CLIENT, sport=front.client[1], dst=PUBLIC, dport=25))
    back.client_sends(EHLO, after=0.0005).server_sends(SMTP_GREETING).server_sends(EHLO_REPLY_PLAIN).close()
    front.server_sends(SMTP_GREETING + EHLO_REPLY_PLAIN, after=0.02).close()
    finding = one(run(tmp_path, front, back), "PD110")
    assert finding.severity == "error"


# === PD2xx: what the header says about the client =========================================


def test_pd201_header_names_the_proxy_itself(tmp_path):
    conv = smtp_session(header=v2(src=PROXY, dst=MAIL))
    finding = check(run(tmp_path, conv, expect=["v2"]), "PD201", "error", conv)
    assert finding.evidence == {"header_src": PROXY, "tcp_src": PROXY}


def test_pd201_header_names_another_proxy_of_the_chain(tmp_path):
    other = smtp_session(src=OTHER_PROXY, header=v2(src=CLIENT))  # OTHER_PROXY sends headers itself
    chained = smtp_session(header=v2(src=OTHER_PROXY, sport=40001), at=1)
    finding = check(run(tmp_path, other, chained, expect=["v2"]), "PD201", "error", chained)
    assert "another proxy" in finding.message


def test_pd201_absent_when_the_header_names_the_real_client(tmp_path):
    absent(run(tmp_path, smtp_session(header=v2(src=CLIENT)), expect=["v2"]), "PD201")


def test_pd202_every_header_carries_the_same_client(tmp_path):
    convs = [smtp_session(header=v2(src=CLIENT2, sport=50000 + n), at=n) for n in range(5)]
    finding = check(run(tmp_path, *convs, expect=["v2"]), "PD202", "warning", *convs)
    assert finding.evidence == {"header_src": CLIENT2, "headers": 5}


def test_pd202_absent_below_min_connections(tmp_path):
    convs = [smtp_session(header=v2(src=CLIENT2, sport=50000 + n), at=n) for n in range(4)]
    absent(run(tmp_path, *convs, expect=["v2"]), "PD202")


def test_pd202_min_connections_option_lowers_the_threshold(tmp_path):
    convs = [smtp_session(header=v2(src=CLIENT2, sport=50000 + n), at=n) for n in range(3)]
    check(run(tmp_path, *convs, expect=["v2"], min_connections=3), "PD202", "warning", *convs)


def test_pd202_absent_with_varied_clients(tmp_path):
    convs = [smtp_session(header=v2(src=f"203.0.113.{10 + n}"), at=n) for n in range(5)]
    absent(run(tmp_path, *convs, expect=["v2"]), "PD202")


def test_pd203_some_local_health_checks_are_info(tmp_path):
    check_conn, real = smtp_session(header=v2(command="LOCAL")), smtp_session(header=v2(), at=1)
    finding = check(run(tmp_path, check_conn, real, expect=["v2"]), "PD203", "info", check_conn)
    assert finding.evidence == {"local": 1, "connections": 2}


def test_pd203_only_local_headers_escalate_to_warning(tmp_path):
    convs = [smtp_session(header=v2(command="LOCAL"), at=n) for n in range(2)]
    finding = check(run(tmp_path, *convs, expect=["v2"]), "PD203", "warning", *convs)
    assert finding.message.startswith("Every connection")


def test_pd203_absent_without_local_headers(tmp_path):
    absent(run(tmp_path, smtp_session(header=v2()), expect=["v2"]), "PD203")


def test_pd204_v1_unknown(tmp_path):
    conv = smtp_session(header=build_v1("UNKNOWN"))
    finding = check(run(tmp_path, conv, expect=["v1"]), "PD204", "warning", conv)
    assert finding.evidence == {"family": "UNKNOWN"}


def test_pd204_v2_proxy_command_with_af_unspec(tmp_path):
    conv = smtp_session(header=v2(family="UNSPEC"))
    finding = check(run(tmp_path, conv, expect=["v2"]), "PD204", "warning", conv)
    assert finding.evidence == {"family": "UNSPEC"}


def test_pd204_absent_for_local_with_af_unspec(tmp_path):
    absent(run(tmp_path, smtp_session(header=v2(command="LOCAL")), expect=["v2"]), "PD204")


def test_pd205_private_client_address_on_port_25(tmp_path):
    conv = smtp_session(header=v2(src="192.168.7.7"))
    finding = check(run(tmp_path, conv, expect=["v2"]), "PD205", "warning", conv)
    assert finding.evidence == {"header_src": "192.168.7.7", "port": 25}


def test_pd205_cgnat_client_address_on_imaps(tmp_path):
    conv = imap_session(header=v2(src="100.64.3.4", dport=993, tlvs=[ssl_tlv()]), greeting=IMAP_GREETING_TLS)
    check(run(tmp_path, conv, expect=["v2"]), "PD205", "warning", conv)


def test_pd205_absent_with_internal_clients(tmp_path):
    absent(run(tmp_path, smtp_session(header=v2(src="192.168.7.7")), expect=["v2"], internal_clients=True), "PD205")


def test_pd205_absent_for_public_clients_in_documentation_ranges(tmp_path):
    convs = [smtp_session(header=v2(src=CLIENT)), smtp_session(header=v2(src=CLIENT2), at=1)]
    absent(run(tmp_path, *convs, expect=["v2"]), "PD205")


def test_pd205_absent_on_a_port_that_does_not_serve_the_internet(tmp_path):
    conv = leg(PROXY, (MAIL, 4190)).client_sends(v2(src="192.168.7.7", dport=4190))
    conv.server_sends(b'"IMPLEMENTATION" "Stalwart ManageSieve"\r\nOK "Stalwart ManageSieve at your service."\r\n').close()
    absent(run(tmp_path, conv, expect=["v2"]), "PD205")


def test_pd206_proxy_outside_trusted_networks(tmp_path):
    conv = smtp_session(header=v2())
    finding = check(run(tmp_path, conv, trusted_networks="192.168.0.0/16"), "PD206", "error", conv)
    assert finding.evidence["tcp_src"] == PROXY and "192.168.0.0/16" in finding.evidence["trusted_networks"]


def test_pd206_proxy_outside_the_stalwart_016_trusted_networks(tmp_path):
    config = json_config(tmp_path, [
        {"@type": "SystemSettings", "proxyTrustedNetworks": {"192.168.0.0/16": True}},
        listener("smtp", {"[::]:25": True}, "smtp"),
    ])
    conv = smtp_session(header=v2())
    finding = check(run(tmp_path, conv, stalwart_config=config), "PD206", "error", conv)
    assert "listener 'smtp'" in finding.message


def test_pd206_absent_for_a_trusted_proxy(tmp_path):
    absent(run(tmp_path, smtp_session(header=v2()), trusted_networks="10.0.0.0/24"), "PD206")


def test_pd206_absent_when_only_expect_none_is_given(tmp_path):
    absent(run(tmp_path, smtp_session(header=v2()), expect=["none"]), "PD206")


def test_pd206_trusted_networks_still_judged_when_expect_is_given(tmp_path):
    conv = smtp_session(header=v2())
    check(run(tmp_path, conv, expect=["v2"], trusted_networks="192.168.0.0/16"), "PD206", "error", conv)


def test_pd207_ipv4_mapped_client_address(tmp_path):
    conv = smtp_session(header=v2(src="::ffff:203.0.113.9", dst="::ffff:192.0.2.10"))
    finding = check(run(tmp_path, conv, expect=["v2"]), "PD207", "info", conv)
    assert ipaddress.ip_address(finding.evidence["header_src"]) == ipaddress.ip_address("::ffff:203.0.113.9")


def test_pd207_absent_for_a_native_ipv6_client(tmp_path):
    absent(run(tmp_path, smtp_session(header=v2(src="2001:db8::9", dst="2001:db8::10")), expect=["v2"]), "PD207")


def test_pd208_pop3s_header_arrives_at_an_imap_listener(tmp_path):
    conv = imap_session(header=v2(dport=995, tlvs=[ssl_tlv()]), greeting=IMAP_GREETING_TLS)
    finding = check(run(tmp_path, conv, expect=["v2"]), "PD208", "warning", conv)
    assert finding.evidence == {"header_dst_port": 995, "protocol": "imap"}


def test_pd208_public_25_forwarded_to_submission(tmp_path):
    conv = smtp_session(port=587, header=v2(dport=25))
    finding = check(run(tmp_path, conv, expect=["v2"]), "PD208", "warning", conv)
    assert finding.evidence == {"header_dst_port": 25, "listener_port": 587}


def test_pd208_absent_for_tls_terminated_993_on_the_plain_imap_listener(tmp_path):
    conv = imap_session(header=v2(dport=993, tlvs=[ssl_tlv()]), greeting=IMAP_GREETING_TLS)
    analysis = run(tmp_path, conv, expect=["v2"])
    absent(analysis, "PD208")
    absent(analysis, "PD301")


def test_pd209_public_25_reaches_a_listener_on_10025_which_demands_auth(tmp_path):
    conv = leg(PROXY, (MAIL, 10025)).client_sends(v2()).server_sends(SMTP_GREETING)
    conv.client_sends(EHLO).server_sends(EHLO_REPLY_PLAIN)
    conv.client_sends(b"MAIL FROM:<alice@example.org>\r\n").server_sends(b"503 5.5.1 You must authenticate first.\r\n").close()
    finding = check(run(tmp_path, conv, expect=["v2"]), "PD209", "warning", conv)
    assert finding.evidence == {"listener_port": 10025, "saw_503": True}
    assert "503 5.5.1 You must authenticate first." in finding.message


def test_pd209_without_the_503_still_warns(tmp_path):
    conv = smtp_session(port=10025, header=v2())
    finding = check(run(tmp_path, conv, expect=["v2"]), "PD209", "warning", conv)
    assert finding.evidence["saw_503"] is False


def test_pd209_absent_when_the_listener_is_on_25(tmp_path):
    absent(run(tmp_path, smtp_session(header=v2()), expect=["v2"]), "PD209")


# === PD3xx: TLS ==========================================================================


def test_pd301_v2_header_for_993_without_ssl_tlv(tmp_path):
    conv = imap_session(header=v2(dport=993))
    finding = check(run(tmp_path, conv, expect=["v2"]), "PD301", "error", conv)
    assert finding.evidence["evidence"].startswith("the header's destination port 993 is an implicit-TLS port")
    assert finding.evidence["confirmation"] == "the server offers STARTTLS to a client that is already encrypted"


def test_pd301_absent_with_the_ssl_tlv_client_ssl_bit(tmp_path):
    conv = imap_session(header=v2(dport=993, tlvs=[ssl_tlv(version="TLSv1.3", cipher="TLS_AES_256_GCM_SHA384")]),
                        greeting=IMAP_GREETING_TLS)
    absent(run(tmp_path, conv, expect=["v2"]), "PD301")


def two_leg_imap(front_tls: bool, *, mapped: bool = False, front_port: int = 8993) -> tuple[Conversation, Conversation]:
    """A client reaches EDGE:front_port (TLS or plain), EDGE relays to Stalwart's plain 143 with a v2 header."""
    front = leg(CLIENT, (EDGE, front_port))
    if front_tls:
        front.client_sends(client_hello()).server_sends(server_hello(), after=0.002)
    else:
        front.server_sends(IMAP_GREETING, after=0.02).client_sends(b"a1 LOGOUT\r\n")
    src, dst = (f"::ffff:{CLIENT}", f"::ffff:{EDGE}") if mapped else (CLIENT, EDGE)
    back = imap_session(src=EDGE, port=143, header=v2(src=src, sport=front.client[1], dst=dst, dport=front_port), at=0.01)
    front.close(after=1)
    return front, back


def test_pd301_two_leg_front_leg_opens_with_a_client_hello(tmp_path):
    front, back = two_leg_imap(front_tls=True)
    analysis = run(tmp_path, front, back, expect=["143=v2"])
    finding = check(analysis, "PD301", "error", back)
    assert finding.evidence["evidence"].startswith(f"the front leg (connection {ids(analysis, front)[0]}")


def test_pd301_absent_when_the_front_leg_was_plaintext(tmp_path):
    front, back = two_leg_imap(front_tls=False)
    absent(run(tmp_path, front, back, expect=["143=v2"]), "PD301")


def test_pd301_two_leg_with_an_ipv4_mapped_header_address(tmp_path):
    front, back = two_leg_imap(front_tls=True, mapped=True)
    check(run(tmp_path, front, back, expect=["143=v2"]), "PD301", "error", back)


def test_pd301_absent_for_tls_passthrough_to_an_implicit_tls_listener(tmp_path):
    # Stalwart's documented HAProxy setup: send-proxy-v2 (no -ssl) in TCP mode to 10993.
    conv = leg(PROXY, (MAIL, 10993)).client_sends(v2(dport=993)).client_sends(client_hello())
    conv.server_sends(server_hello()).close()
    absent(run(tmp_path, conv, expect=["v2"]), "PD301")


def test_pd302_v1_header_for_an_implicit_tls_port(tmp_path):
    conv = imap_session(header=v1(dport=993))
    finding = check(run(tmp_path, conv, expect=["v1"]), "PD302", "warning", conv)
    assert "993" in finding.evidence["evidence"]


def test_pd302_absent_for_v1_on_a_plaintext_port(tmp_path):
    absent(run(tmp_path, imap_session(header=v1(dport=143)), expect=["v1"]), "PD302")


def test_pd302_absent_for_tls_passthrough_with_v1(tmp_path):
    conv = leg(PROXY, (MAIL, 10993)).client_sends(v1(dport=993)).client_sends(client_hello())
    conv.server_sends(server_hello()).close()
    absent(run(tmp_path, conv, expect=["v1"]), "PD302")


def test_pd303_client_hello_after_the_header_answered_in_plaintext(tmp_path):
    conv = leg(PROXY, (MAIL, 10025)).client_sends(v2(dport=465)).client_sends(client_hello())
    conv.server_sends(SMTP_GREETING + b"500 5.5.1 Invalid command.\r\n").close(by="server")
    finding = check(run(tmp_path, conv, expect=["v2"]), "PD303", "error", conv)
    assert finding.evidence == {"server": SMTP_GREETING.decode().strip()}


def test_pd303_absent_when_the_listener_answers_with_tls(tmp_path):
    conv = leg(PROXY, (MAIL, 10465)).client_sends(v2(dport=465)).client_sends(client_hello())
    conv.server_sends(server_hello()).close()
    absent(run(tmp_path, conv, expect=["v2"]), "PD303")


def test_pd304_plaintext_http_answered_with_a_tls_alert(tmp_path):
    conv = leg(PROXY, (MAIL, 443)).client_sends(v2(dport=443, tlvs=[ssl_tlv()])).client_sends(HTTP_REQUEST)
    conv.server_sends(TLS_ALERT).close(by="server")
    finding = check(run(tmp_path, conv, expect=["v2"]), "PD304", "error", conv)
    assert finding.evidence["client_first"] == "GET /.well-known/jmap HTTP/1.1"
    assert "answered with TLS" in finding.message


def test_pd304_silent_implicit_tls_listener_from_the_stalwart_config(tmp_path):
    config = toml_config(tmp_path, TOML_PROXY_GUIDE + """
        [server.listener.https]
        bind = ["[::]:10443"]
        protocol = "http"
        tls.implicit = true
        """)
    conv = leg(PROXY, (MAIL, 10443)).client_sends(v2(dport=443, tlvs=[ssl_tlv()])).client_sends(HTTP_REQUEST)
    conv.wait(3).close()
    finding = check(run(tmp_path, conv, stalwart_config=config), "PD304", "error", conv)
    assert "waiting for a ClientHello" in finding.message


def test_pd304_absent_when_the_plain_listener_answers_in_plaintext(tmp_path):
    conv = leg(PROXY, (MAIL, 8080)).client_sends(v2(dport=443, tlvs=[ssl_tlv()])).client_sends(HTTP_REQUEST)
    conv.server_sends(HTTP_401).close()
    absent(run(tmp_path, conv, expect=["v2"]), "PD304")


def test_pd305_ssl_tlv_on_a_plaintext_destination_port(tmp_path):
    conv = smtp_session(header=v2(tlvs=[ssl_tlv()]), ehlo_reply=EHLO_REPLY_NO_STARTTLS)
    finding = check(run(tmp_path, conv, expect=["v2"]), "PD305", "warning", conv)
    assert finding.evidence == {"header_dst_port": 25}


def test_pd305_absent_for_an_implicit_tls_destination_port(tmp_path):
    conv = smtp_session(port=10587, header=v2(dport=465, tlvs=[ssl_tlv()]), ehlo_reply=EHLO_REPLY_NO_STARTTLS)
    absent(run(tmp_path, conv, expect=["v2"]), "PD305")


def test_pd306_client_certificate_not_verified(tmp_path):
    tlv = ssl_tlv(client=PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN, verify=20, cn="alice.example.org")
    conv = imap_session(header=v2(dport=993, tlvs=[tlv]), greeting=IMAP_GREETING_TLS)
    finding = check(run(tmp_path, conv, expect=["v2"]), "PD306", "info", conv)
    assert finding.evidence == {"verify": 20, "cn": "alice.example.org"}


def test_pd306_absent_for_a_verified_certificate(tmp_path):
    tlv = ssl_tlv(client=PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN, verify=0, cn="alice.example.org")
    conv = imap_session(header=v2(dport=993, tlvs=[tlv]), greeting=IMAP_GREETING_TLS)
    absent(run(tmp_path, conv, expect=["v2"]), "PD306")


def test_pd306_absent_when_no_certificate_was_presented(tmp_path):
    conv = imap_session(header=v2(dport=993, tlvs=[ssl_tlv(verify=1)]), greeting=IMAP_GREETING_TLS)
    absent(run(tmp_path, conv, expect=["v2"]), "PD306")


# === PD4xx: what the mail server did ======================================================


def test_pd401_refusal_greeting_without_a_header(tmp_path):
    conv = leg(CLIENT, (MAIL, 25)).server_sends(b"554 5.7.1 mail.example.test Your IP address is blocked.\r\n")
    conv.close(by="server")
    finding = check(run(tmp_path, conv), "PD401", "error", conv)
    assert finding.evidence["greeting"] == "554 5.7.1 mail.example.test Your IP address is blocked."


def test_pd401_imap_bye_greeting(tmp_path):
    conv = leg(CLIENT, (MAIL, 143)).server_sends(b"* BYE Too many concurrent IMAP connections.\r\n").close(by="server")
    check(run(tmp_path, conv), "PD401", "error", conv)


def test_pd401_refusal_greeting_right_after_the_header(tmp_path):
    conv = leg(PROXY, (MAIL, 25)).client_sends(v2())
    conv.server_sends(b"421 4.3.2 mail.example.test Too many concurrent connections.\r\n").close(by="server")
    finding = check(run(tmp_path, conv, expect=["v2"]), "PD401", "error", conv)
    assert "Too many concurrent connections." in finding.message


def test_pd401_pop3_err_greeting_right_after_the_header(tmp_path):
    conv = leg(PROXY, (MAIL, 110)).client_sends(v2(dport=110))
    conv.server_sends(b"-ERR [SYS/TEMP] Too many connections.\r\n").close(by="server")
    check(run(tmp_path, conv, expect=["v2"]), "PD401", "error", conv)


def test_pd401_absent_when_the_client_spoke_before_a_refusal(tmp_path):
    # the 5xx answers the client's command, it is not a refusal at connect time
    conv = leg(CLIENT, (MAIL, 25)).client_sends(EHLO).server_sends(b"554 5.7.1 mail.example.test No thanks.\r\n").close()
    absent(run(tmp_path, conv), "PD401")


def test_pd401_reset_right_after_the_header(tmp_path):
    conv = leg(PROXY, (MAIL, 25)).client_sends(v2()).close(by="server", reset=True)
    finding = check(run(tmp_path, conv, expect=["v2"]), "PD401", "error", conv)
    assert finding.evidence == {"closed": "rst"}


def test_pd401_every_connection_of_the_proxy_cut_off(tmp_path):
    convs = [leg(PROXY, (MAIL, 25), at=n).close(by="server", reset=True) for n in range(4)]
    check(run(tmp_path, *convs), "PD401", "error", *convs)


def test_pd401_every_connection_cut_off_says_the_proxy_is_likely_banned(tmp_path):
    convs = [leg(PROXY, (MAIL, 25), at=n).close(by="server", reset=True) for n in range(4)]
    finding = one(run(tmp_path, *convs), "PD401")
    assert "banned" in finding.message


def test_pd401_absent_for_a_welcome(tmp_path):
    absent(run(tmp_path, smtp_session(header=v2()), expect=["v2"]), "PD401")


def test_pd402_no_greeting_and_the_client_gives_up(tmp_path):
    conv = leg(PROXY, (MAIL, 25)).client_sends(v2()).wait(6).close()
    finding = check(run(tmp_path, conv, expect=["v2"]), "PD402", "warning", conv)
    assert finding.evidence["waited_seconds"] == pytest.approx(6.0, abs=0.01)


def test_pd402_absent_when_the_client_leaves_before_the_timeout(tmp_path):
    conv = leg(PROXY, (MAIL, 25)).client_sends(v2()).wait(2).close()
    absent(run(tmp_path, conv, expect=["v2"]), "PD402")


def test_pd402_absent_with_a_longer_greeting_timeout(tmp_path):
    conv = leg(PROXY, (MAIL, 25)).client_sends(v2()).wait(6).close()
    absent(run(tmp_path, conv, expect=["v2"], greeting_timeout=10), "PD402")


def test_pd402_absent_when_the_capture_ends_before_the_timeout(tmp_path):
    conv = leg(PROXY, (MAIL, 25)).client_sends(v2()).wait(0.3)
    absent(run(tmp_path, conv, expect=["v2"]), "PD402")


def test_pd403_connect_only_health_check_where_a_header_is_expected(tmp_path):
    conv = health_check()
    finding = check(run(tmp_path, conv, expect=["v2"]), "PD403", "warning", conv)
    assert finding.evidence == {"closed": "rst"}


def test_pd403_absent_when_the_listener_expects_no_header(tmp_path):
    absent(run(tmp_path, health_check(), expect=["none"]), "PD403")


def test_pd403_absent_for_a_connection_held_longer_than_a_second(tmp_path):
    conv = leg(PROXY, (MAIL, 25)).wait(2).close(reset=True)
    absent(run(tmp_path, conv, expect=["v2"]), "PD403")


def test_pd403_on_an_inferred_expectation_is_info(tmp_path):
    sessions = [smtp_session(header=v2(sport=50000 + n), at=n) for n in range(3)]
    probe = health_check(at=5)
    check(run(tmp_path, *sessions, probe), "PD403", "info", probe, inferred=True)


def test_pd404_starttls_refused(tmp_path):
    conv = leg(PROXY, (MAIL, 25)).client_sends(v2()).server_sends(SMTP_GREETING)
    conv.client_sends(EHLO).server_sends(EHLO_REPLY_PLAIN)
    conv.client_sends(b"STARTTLS\r\n").server_sends(b"454 4.7.0 TLS not available due to local problem\r\n").close()
    finding = check(run(tmp_path, conv, expect=["v2"]), "PD404", "warning", conv)
    assert finding.evidence == {"reply": "454 4.7.0 TLS not available due to local problem"}


def test_pd404_starttls_not_offered_to_a_plaintext_client(tmp_path):
    conv = smtp_session(header=v2(), ehlo_reply=EHLO_REPLY_NO_STARTTLS)
    check(run(tmp_path, conv, expect=["v2"]), "PD404", "warning", conv)


def test_pd404_absent_when_starttls_is_offered(tmp_path):
    absent(run(tmp_path, smtp_session(header=v2()), expect=["v2"]), "PD404")


def test_pd404_absent_when_the_header_says_the_client_used_tls(tmp_path):
    conv = smtp_session(header=v2(dport=465, tlvs=[ssl_tlv()]), ehlo_reply=EHLO_REPLY_NO_STARTTLS)
    absent(run(tmp_path, conv, expect=["v2"]), "PD404")


# === PD5xx: HTTP =========================================================================


def http_session(*, header: bytes | None = None, extra: bytes = b"", port=8080) -> Conversation:
    conv = leg(PROXY, (MAIL, port))
    if header is not None:
        conv.client_sends(header)
    conv.client_sends(HTTP_REQUEST[:-2] + extra + b"\r\n").server_sends(HTTP_401)
    return conv.close()


def test_pd501_http_request_with_neither_header_nor_forwarding_fields(tmp_path):
    conv = http_session()
    finding = check(run(tmp_path, conv), "PD501", "warning", conv)
    assert finding.evidence["request"] == "GET /.well-known/jmap HTTP/1.1"


def test_pd501_absent_with_x_forwarded_for(tmp_path):
    absent(run(tmp_path, http_session(extra=b"X-Forwarded-For: 203.0.113.9\r\n")), "PD501")


def test_pd501_absent_with_a_proxy_header(tmp_path):
    absent(run(tmp_path, http_session(header=v2(dport=443, tlvs=[ssl_tlv()])), expect=["v2"]), "PD501")


def test_pd502_proxy_header_and_x_forwarded_for_disagree(tmp_path):
    conv = http_session(header=v2(dport=443, tlvs=[ssl_tlv()]), extra=b"X-Forwarded-For: 198.51.100.7, 10.0.0.5\r\n")
    finding = check(run(tmp_path, conv, expect=["v2"]), "PD502", "warning", conv)
    assert finding.evidence == {"proxy_header_src": CLIENT, "forwarded_for": ["198.51.100.7", "10.0.0.5"]}


def test_pd502_absent_when_both_name_the_same_client(tmp_path):
    conv = http_session(header=v2(dport=443, tlvs=[ssl_tlv()]), extra=b"X-Forwarded-For: 203.0.113.9\r\n")
    absent(run(tmp_path, conv, expect=["v2"]), "PD502")


def test_pd502_absent_for_a_forwarded_ipv6_with_port_naming_the_header_source(tmp_path):
    conv = http_session(header=v2(src="2001:db8::9", dst="2001:db8::10", dport=443, tlvs=[ssl_tlv()]),
                        extra=b'Forwarded: for="[2001:db8::9]:50000";proto=https\r\n')
    absent(run(tmp_path, conv, expect=["v2"]), "PD502")


def test_pd502_forwarded_ipv6_node_with_port_against_another_header_source(tmp_path):
    conv = http_session(header=v2(src="2001:db8::9", dst="2001:db8::10", dport=443, tlvs=[ssl_tlv()]),
                        extra=b'Forwarded: for="[2001:db8::77]:50000";proto=https\r\n')
    finding = check(run(tmp_path, conv, expect=["v2"]), "PD502", "warning", conv)
    assert finding.evidence["forwarded_for"] == ["2001:db8::77"]


# === PD6xx: the Stalwart configuration ====================================================


def test_pd601_toml_entries_that_trust_no_one(tmp_path):
    entries = '"0.0.0.0/0", "10.0.0.0/24", "0.0.0.0", ""'
    config = toml_config(tmp_path, TOML_PROXY_GUIDE.replace('"10.0.0.0/24", "127.0.0.0/8"', entries))
    analysis = run(tmp_path, smtp_session(port=10025, header=v2()), stalwart_config=config)
    found = findings(analysis, "PD601")
    assert {f.evidence["entry"] for f in found} == {"0.0.0.0/0", "0.0.0.0", ""}
    assert {f.severity for f in found} == {"error"}
    assert all(f.connections == [] for f in found)
    assert any("shorter than /8" in f.message for f in found)


def test_pd601_json_ipv6_everyone_and_a_listener_override_under_slash_8(tmp_path):
    config = json_config(tmp_path, [
        {"@type": "SystemSettings", "proxyTrustedNetworks": {"10.0.0.0/24": True, "::/0": True}},
        listener("submissions", {"[::]:10465": True}, "smtp", tlsImplicit=True, overrideProxyTrustedNetworks={"10.0.0.0/7": True}),
    ])
    found = findings(run(tmp_path, smtp_session(), stalwart_config=config), "PD601")
    assert sorted(f.evidence["entry"] for f in found) == ["10.0.0.0/7", "::/0"]


def test_pd601_absent_for_valid_entries(tmp_path):
    config = toml_config(tmp_path, TOML_PROXY_GUIDE)
    absent(run(tmp_path, smtp_session(port=10025, header=v2()), stalwart_config=config), "PD601")


def test_pd602_empty_override_map_in_016(tmp_path):
    config = json_config(tmp_path, [
        {"@type": "SystemSettings", "proxyTrustedNetworks": {"10.0.0.0/24": True}},
        listener("smtp", {"[::]:25": True}, "smtp", overrideProxyTrustedNetworks={}),
    ])
    finding = check(run(tmp_path, smtp_session(header=v2()), stalwart_config=config), "PD602", "warning")
    assert finding.evidence == {"listener": "smtp"}


def test_pd602_empty_override_list_in_a_jmap_response(tmp_path):
    config = json_config(tmp_path, {"methodResponses": [
        ["x:SystemSettings/get", {"list": [{"proxyTrustedNetworks": {"10.0.0.0/24": True}}]}, "0"],
        ["x:NetworkListener/get", {"list": [
            {"name": "smtp", "bind": {"[::]:25": True}, "protocol": "smtp", "overrideProxyTrustedNetworks": {}},
            {"name": "imap", "bind": {"[::]:143": True}, "protocol": "imap"},
        ]}, "1"],
    ]})
    finding = check(run(tmp_path, smtp_session(header=v2()), stalwart_config=config), "PD602", "warning")
    assert finding.evidence == {"listener": "smtp"}


def test_pd602_absent_for_a_non_empty_override(tmp_path):
    config = json_config(tmp_path, [
        {"@type": "SystemSettings", "proxyTrustedNetworks": {"10.0.0.0/24": True}},
        listener("smtp", {"[::]:25": True}, "smtp", overrideProxyTrustedNetworks={"10.0.0.5": True}),
    ])
    absent(run(tmp_path, smtp_session(header=v2()), stalwart_config=config), "PD602")


def test_pd603_proxy_override_toggle_in_015(tmp_path):
    config = toml_config(tmp_path, TOML_PROXY_GUIDE + """
        [server.listener.imap.proxy]
        override = true
        """)
    finding = check(run(tmp_path, smtp_session(port=10025, header=v2()), stalwart_config=config), "PD603", "warning")
    assert finding.evidence == {"listener": "imap"}


def test_pd603_absent_without_the_toggle(tmp_path):
    config = toml_config(tmp_path, TOML_PROXY_GUIDE)
    absent(run(tmp_path, smtp_session(port=10025, header=v2()), stalwart_config=config), "PD603")


TOML_GLOBAL_HTTP = TOML_PROXY_GUIDE.replace('proxy.trusted-networks = ["10.0.0.0/24"]\n', "")


def test_pd604_global_trust_makes_headers_mandatory_on_http(tmp_path):
    config = toml_config(tmp_path, TOML_GLOBAL_HTTP)
    finding = check(run(tmp_path, smtp_session(port=10025, header=v2()), stalwart_config=config), "PD604", "warning")
    assert finding.evidence == {"listener": "http", "trusted_networks": ["10.0.0.0/24", "127.0.0.0/8"]}


def test_pd604_http_proxy_sends_no_header(tmp_path):
    config = toml_config(tmp_path, TOML_GLOBAL_HTTP)
    conv = leg(PROXY, (MAIL, 8080)).client_sends(HTTP_REQUEST).close(by="server", reset=True, after=0.01)
    finding = check(run(tmp_path, conv, stalwart_config=config), "PD604", "warning", conv)
    assert "carried none" in finding.message


def test_pd604_absent_when_the_http_listener_has_its_own_list(tmp_path):
    config = toml_config(tmp_path, TOML_PROXY_GUIDE)
    absent(run(tmp_path, smtp_session(port=10025, header=v2()), stalwart_config=config), "PD604")


def test_pd604_absent_when_the_global_list_trusts_no_one(tmp_path):
    config = toml_config(tmp_path, TOML_GLOBAL_HTTP.replace('"10.0.0.0/24", "127.0.0.0/8"', '"0.0.0.0/0"'))
    analysis = run(tmp_path, smtp_session(port=10025), stalwart_config=config)
    one(analysis, "PD601")
    absent(analysis, "PD604")


def test_pd605_use_x_forwarded_in_015(tmp_path):
    config = toml_config(tmp_path, TOML_PROXY_GUIDE + "\n[http]\nuse-x-forwarded = true\n")
    finding = check(run(tmp_path, smtp_session(port=10025, header=v2()), stalwart_config=config), "PD605", "warning")
    assert finding.evidence == {"setting": "http.use-x-forwarded"}


def test_pd605_use_x_forwarded_in_016(tmp_path):
    config = json_config(tmp_path, [{"@type": "Http", "useXForwarded": True}, listener("http", {"[::]:8080": True}, "http")])
    finding = check(run(tmp_path, smtp_session(), stalwart_config=config), "PD605", "warning")
    assert finding.evidence == {"setting": "Http.useXForwarded"}


def test_pd605_absent_when_off(tmp_path):
    config = toml_config(tmp_path, TOML_PROXY_GUIDE + "\n[http]\nuse-x-forwarded = false\n")
    absent(run(tmp_path, smtp_session(port=10025, header=v2()), stalwart_config=config), "PD605")


def test_pd606_headers_from_a_source_the_listener_does_not_trust(tmp_path):
    config = toml_config(tmp_path, TOML_PROXY_GUIDE)
    conv = smtp_session(src="172.16.0.9", port=10025, header=v2())
    finding = check(run(tmp_path, conv, stalwart_config=config), "PD606", "error", conv)
    assert finding.evidence == {"listener": "smtp", "source": "172.16.0.9"}


def test_pd606_no_header_from_a_trusted_source(tmp_path):
    config = toml_config(tmp_path, TOML_PROXY_GUIDE)
    conv = leg(PROXY, (MAIL, 10025)).client_sends(EHLO).wait(6).close()
    finding = check(run(tmp_path, conv, stalwart_config=config), "PD606", "error", conv)
    assert finding.evidence == {"listener": "smtp", "source": PROXY}


def test_pd608_headers_reach_a_port_no_listener_binds(tmp_path):
    config = toml_config(tmp_path, TOML_PROXY_GUIDE)
    conv = smtp_session(port=10587, header=v2(dport=587))
    analysis = run(tmp_path, conv, stalwart_config=config)
    finding = check(analysis, "PD608", "error", conv)
    assert finding.evidence == {"port": 10587}
    absent(analysis, "PD606")


def test_pd606_listener_override_trusts_the_source_in_016(tmp_path):
    config = json_config(tmp_path, [
        {"@type": "SystemSettings", "proxyTrustedNetworks": {"192.168.0.0/16": True}},
        listener("smtp", {"[::]:25": True}, "smtp", overrideProxyTrustedNetworks={"10.0.0.5": True}),
    ])
    absent(run(tmp_path, smtp_session(header=v2()), stalwart_config=config), "PD606")


def test_pd606_absent_when_traffic_agrees_with_the_config(tmp_path):
    config = toml_config(tmp_path, TOML_PROXY_GUIDE)
    convs = [smtp_session(port=10025, header=v2()), imap_session(port=10143, header=v2(dport=143), at=1)]
    absent(run(tmp_path, *convs, stalwart_config=config), "PD606")


def test_pd608_mail_listener_greets_on_a_port_the_file_does_not_bind(tmp_path):
    config = toml_config(tmp_path, TOML_PROXY_GUIDE)
    conv = smtp_session(port=2525)
    check(run(tmp_path, conv, stalwart_config=config), "PD608", "error", conv)


# === PD9xx: the capture ===================================================================


def test_pd901_snap_length_cut_the_header(tmp_path):
    conv = leg(PROXY, (MAIL, 25)).client_sends(v2(tlvs=[ssl_tlv(version="TLSv1.3", cn="client.example.org")]))
    conv.server_sends(SMTP_GREETING)
    snap(conv, keep=54 + 20)
    finding = check(run(tmp_path, conv, expect=["v2"]), "PD901", "info", conv)
    assert finding.evidence == {"connections": 1}


def test_pd901_absent_for_whole_frames(tmp_path):
    absent(run(tmp_path, smtp_session(header=v2()), expect=["v2"]), "PD901")


def test_pd902_connection_started_before_the_capture(tmp_path):
    conv = leg(PROXY, (MAIL, 25), handshake=False)
    conv.client_sends(b"RCPT TO:<bob@example.test>\r\n").server_sends(b"250 2.1.5 OK\r\n").close()
    finding = check(run(tmp_path, conv), "PD902", "info", conv)
    assert finding.evidence == {"connections": 1}


def test_pd902_absent_when_the_handshake_was_captured(tmp_path):
    absent(run(tmp_path, smtp_session()), "PD902")


def test_pd903_only_ssh_in_the_capture(tmp_path):
    conv = leg(CLIENT2, (MAIL, 22)).server_sends(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n")
    conv.client_sends(b"SSH-2.0-OpenSSH_9.6\r\n").close()
    finding = check(run(tmp_path, conv), "PD903", "warning")
    assert finding.evidence == {"busiest_ports": {22: 1}}


def test_pd903_absent_with_mail_traffic(tmp_path):
    ssh = leg(CLIENT2, (MAIL, 22)).server_sends(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n").close()
    absent(run(tmp_path, ssh, smtp_session(at=1)), "PD903")


def test_pd904_file_cut_in_the_middle_of_a_record(tmp_path):
    whole = write_pcap(tmp_path / "whole.pcap", [smtp_session(header=v2())])
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(whole.read_bytes()[:-10])
    finding = check(run_file(cut, expect=["v2"]), "PD904", "warning")
    assert finding.evidence["input"] == str(cut)
    assert "middle" in finding.evidence["problem"]


def test_pd904_absent_for_an_intact_file(tmp_path):
    absent(run(tmp_path, smtp_session(header=v2()), expect=["v2"]), "PD904")


def test_pd905_half_open_flows_forgotten_by_age(tmp_path):
    """SYNs no one answered, then traffic ten minutes of capture time later: the flow
    table forgets the half-open flows (memory stays flat under a SYN flood) and says so."""
    syns = [Conversation(client=("203.0.113.50", 41000 + index), server=(MAIL, 25), start=T0) for index in range(5)]
    for conv in syns:
        conv._emit(True, 0x02)  # a bare SYN
    later = smtp_session(header=v2(), at=600.0)
    analysis = run(tmp_path, *syns, later, expect=["v2"])
    finding = check(analysis, "PD905", "warning")
    assert finding.evidence["evicted_half_open"] == 5 and finding.evidence["dropped"] >= 5
    assert [conn.tcp.src_port for conn in analysis.connections] == [later.client[1]], "the session is still judged"


def test_pd905_absent_when_the_capture_fits(tmp_path):
    absent(run(tmp_path, smtp_session(header=v2()), smtp_session(header=v2(), at=700.0), expect=["v2"]), "PD905")


# Stalwart reads headers with proxy-header 0.1.2 (tibordp/proxy-header): the byte after PROXY is
# not checked, v2 family bytes outside 00/11/12/21/22/31/32 are refused whatever the command, an
# SSL TLV under 5 bytes is skipped (plaintext).
def test_pd103_says_stalwart_reads_a_v1_line_without_its_space(tmp_path):
    conv = leg(PROXY, (MAIL, 25)).client_sends(b"PROXY\tTCP4 203.0.113.7 192.0.2.10 50000 25\r\n").wait(3).close()
    finding = check(run(tmp_path, conv), "PD103", "warning", conv)
    assert "does not check the byte after PROXY" in finding.evidence["stalwart"]


def test_pd103_says_stalwart_refuses_af_unspec_with_stream_even_for_local(tmp_path):
    header = bytearray(build_v2(command="LOCAL", family="UNSPEC"))
    header[13] = 0x01
    conv = leg(PROXY, (MAIL, 25)).client_sends(bytes(header)).wait(3).close()
    finding = check(run(tmp_path, conv), "PD103", "error", conv)
    assert "0x01" in finding.evidence["stalwart"] and "refuses" in finding.evidence["stalwart"]


def test_pd103_says_a_short_ssl_tlv_counts_as_plaintext(tmp_path):
    conv = leg(PROXY, (MAIL, 25)).client_sends(v2(tlvs=[(0x20, b"\x01\x00")])).server_sends(SMTP_GREETING).close()
    finding = check(run(tmp_path, conv), "PD103", "warning", conv)
    assert "plaintext" in finding.evidence["stalwart"]


# A header read as commands is refused in each protocol's own words (Stalwart's IMAP, POP3,
# ManageSieve, LMTP and HTTP sessions; references.md "When the peer is not trusted").
SIEVE_GREETING = (b'"IMPLEMENTATION" "Stalwart ManageSieve"\r\n"SASL" "PLAIN"\r\n"STARTTLS"\r\n'
                  b'"VERSION" "1.0"\r\nOK "Stalwart ManageSieve at your service."\r\n')


@pytest.mark.parametrize("port, greeting, answer, word", [
    (143, IMAP_GREETING, b"* BAD [PARSE] Invalid command.\r\n", "* BAD"),
    (110, b"+OK Stalwart POP3 at your service.\r\n", b"-ERR Unknown command.\r\n-ERR Unknown command.\r\n", "-ERR"),
    (4190, SIEVE_GREETING, b'NO "Invalid command."\r\nBYE "Too many invalid commands."\r\n', "NO"),
    (24, b"220 mail.example.test Stalwart LMTP at your service\r\n", b"500 5.5.1 Invalid command.\r\n", "500"),
])
def test_pd102_each_protocol_refuses_the_header_in_its_own_words(tmp_path, port, greeting, answer, word):
    conv = leg(PROXY, (MAIL, port)).client_sends(v2(dport=port)).server_sends(greeting + answer).close(by="server")
    finding = check(run(tmp_path, conv), "PD102", "error", conv)
    assert any(reply.startswith(word) for reply in finding.evidence["replies_to_header"]), finding.evidence


def test_pd102_http_answers_the_header_with_400(tmp_path):
    conv = leg(PROXY, (MAIL, 8080)).client_sends(v1(dport=8080) + HTTP_REQUEST)
    conv.server_sends(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").close(by="server")
    finding = check(run(tmp_path, conv), "PD102", "error", conv)
    assert "400" in " ".join(finding.evidence["replies_to_header"])


def test_pd102_http_400_is_no_refusal_of_a_header_the_listener_wants(tmp_path):
    conv = leg(PROXY, (MAIL, 8080)).client_sends(v1(dport=8080) + HTTP_REQUEST)
    conv.server_sends(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n").close(by="server")
    absent(run(tmp_path, conv, expect=["v1"]), "PD102")
