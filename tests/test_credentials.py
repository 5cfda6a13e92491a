"""Credentials seen on the wire are never printed, in any output format.

The shipped captures carry alice's password in cleartext: AUTH PLAIN on SMTP
(haproxy-v2-smtp session 3, the back leg of haproxy-v2ssl-smtps), AUTHENTICATE PLAIN
on IMAP and AUTH PLAIN on POP3 (haproxy-v2-imap), IMAP LOGIN through nginx."""

import base64
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from proxydiag.parsers import redact
from proxydiag.parsers.header_evidence import header_evidence

CAPTURES = Path(__file__).resolve().parent.parent / "captures"
USER, PASSWORD = "alice@example.test", "Tr0ub4dor&3xample"
SECRETS = [
    PASSWORD,
    base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode(),
    base64.b64encode(f"{USER}\0{USER}\0{PASSWORD}".encode()).decode(),
    base64.b64encode(PASSWORD.encode()).decode(),
]
FORMATS = ["rich", "json"]


def captures_with_credentials() -> list[Path]:
    found = [path for path in sorted(CAPTURES.glob("*.pcap*")) if PASSWORD.encode() in path.read_bytes()
             or any(secret.encode() in path.read_bytes() for secret in SECRETS[1:])]
    assert found, "the shipped captures should carry the test password somewhere"
    return found


@pytest.mark.parametrize("capture", captures_with_credentials(), ids=lambda path: path.name)
@pytest.mark.parametrize("fmt", FORMATS)
def test_no_output_format_prints_a_credential(capture, fmt):
    result = subprocess.run(
        [sys.executable, "-m", "proxydiag", "analyze", str(capture), "--format", fmt, "--fail-on", "never"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    for secret in SECRETS:
        assert secret not in output
    assert "PROXY" in output or "proxy_header" in output  # a real report, not an empty one


@pytest.mark.parametrize(("port", "greeting", "swallowed", "after"), [
    (10143, b"* OK IMAP ready\r\n", b"\r\na1 LOGIN user ", b"\r\na2 LOGOUT\r\n"),
    (10025, b"220 mail.example.test ESMTP\r\n", b"\r\nAUTH PLAIN ", b"\r\nQUIT\r\n"),
    (10110, b"+OK POP3 ready\r\n", b"\r\nUSER alice\r\nPASS ", b"\r\nQUIT\r\n"),
    (10025, b"220 mail.example.test ESMTP\r\n", b"\r\nAUTH LOGIN\r\n", b"\r\nQUIT\r\n"),
    (5000, b"", b"\r\na1 LOGIN user ", b"\r\n"),  # a port nobody knows, a silent server
])
def test_a_header_that_swallows_the_start_of_a_login_line_never_shows_the_rest(tmp_path, port, greeting, swallowed, after):
    """A v2 header whose length covers the start of a credential line (the verb that
    marks its arguments as secrets) leaves only the secret on its line: no recogniser can
    tell what it is, so the cut line is never shown."""
    from tests.craft import Conversation, write_pcap

    secret = "U3dhbGxvd2VkUGE1NQ"
    header = b"\r\n\r\n\x00\r\nQUIT\n" + b"\x20\x00" + len(swallowed).to_bytes(2, "big")
    conv = Conversation(client=("203.0.113.9", 40000), server=("192.0.2.25", port))
    conv.handshake()
    if greeting:
        conv.server_sends(greeting)
    conv.client_sends(header + swallowed + secret.encode() + after)
    conv.close(by="client")
    path = write_pcap(tmp_path / "swallowed.pcap", [conv])
    for fmt in ("json", "markdown", "rich"):
        result = subprocess.run([sys.executable, "-m", "proxydiag", "analyze", str(path), "--format", fmt],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode in (0, 1), result.stderr
        assert secret not in result.stdout and secret.encode().hex() not in result.stdout, fmt


def _mask_line_by_every_pattern(line: str) -> str:
    for pattern in redact._SECRET_COMMANDS:
        match = pattern.match(line)
        if match:
            return match.group("keep") + (f" {redact.MASK}" if match.group("secret") else "")
    return line


_WORDS = st.sampled_from(["AUTH", "auth", "LOGIN", "UID", "PASS", "pAsS", "APOP", "Cookie:", "Set-Cookie:", "Authorization:",
                          "Proxy-Authorization:", "AUTHENTICATE", "EHLO", "a1", "PLAIN", "secret", "\u017f", "\u212a"])


_SPELLING = st.text(alphabet="PASpasLOGINloginAUTHauthCKIEckie:- \u017f\u212a\u0131", max_size=8)  # with re.I's folds


@given(st.lists(st.one_of(_WORDS, _SPELLING, st.text(max_size=6)), max_size=6).map(" ".join))
@example("pa\u017fs secret")  # the long s: PASS to re.I
def test_mask_line_s_shortcut_masks_what_every_pattern_masks(line):
    """Lines without a credential's word skip the patterns: never one that carries one."""
    assert redact.mask_line(line) == _mask_line_by_every_pattern(line)


@given(st.binary(max_size=300), st.integers(0, 300))
def test_printable_escapes_as_the_regular_expression_did(data, limit):
    expected = re.sub(rb"[^\x20-\x7e]", lambda match: b"\\x%02x" % match.group()[0], data[:limit]).decode("ascii")
    assert redact.printable(data, limit) == expected + ("..." if len(data) > limit else "")


_TLV_TYPES = st.sampled_from([0x01, 0x02, 0x03, 0x04, 0x05, 0x20, 0x30, 0xE0, 0xEA, 0xEE, 0x11, 0xF0])


@given(tlvs=st.lists(st.tuples(_TLV_TYPES, st.binary(max_size=12)), max_size=3), last_type=_TLV_TYPES,
       before=st.binary(max_size=4), tail=st.integers(0, 6), family=st.sampled_from([0x11, 0x21, 0x00]))
@example(tlvs=[], last_type=0x03, before=b"\x07\x00\x00\xff.", tail=0, family=0x11)  # the fuzzer's CRC32C
def test_a_tlv_whose_length_runs_over_the_client_s_login_never_shows_it(tlvs, last_type, before, tail, family):
    """The last TLV's length takes in the client's `a1 LOGIN user password` line, wherever
    it starts: no decoded value, no text view and no evidence hex shows the password."""
    from proxydiag.parsers import proxy_protocol
    from proxydiag.report.text import describe_header

    secret = b"Zq7-s3cret-PW"
    login = b"a1 LOGIN user " + secret + b"\r\n"
    block = {0x11: bytes(12), 0x21: bytes(36), 0x00: b""}[family]
    body = block + b"".join(bytes([kind]) + len(value).to_bytes(2, "big") + value for kind, value in tlvs)
    swallowed = before + login
    body += bytes([last_type]) + len(swallowed).to_bytes(2, "big")
    header = b"\r\n\r\n\x00\r\nQUIT\n\x21" + bytes([family]) + (len(body) + len(swallowed) - tail).to_bytes(2, "big") + body
    data = header + swallowed
    result = proxy_protocol.parse(data)
    shown = [repr(result.header.to_dict()) if result.header else "", header_evidence(data[: result.length or len(data)])]
    shown += describe_header(result.header) if result.header else []
    for text in shown:
        assert secret.decode() not in text and secret.hex() not in text.lower()


def test_an_ssl_tlv_holding_a_login_line_keeps_its_flags_and_never_shows_the_line():
    """Hiding is for the eyes only: the SSL TLV still says the client used TLS (PD301 and
    the TLS rules read that), while its CN, which holds the client's LOGIN, is not shown."""
    from proxydiag.parsers import proxy_protocol
    from proxydiag.report.text import describe_header

    secret = "Zq7-s3cret-PW"
    value = proxy_protocol.build_ssl_value(version="TLSv1.3", cn=f"x\r\na1 LOGIN user {secret}")
    header = proxy_protocol.build_v2(src_addr="203.0.113.7", dst_addr="192.0.2.10", src_port=1, dst_port=993,
                                     tlvs=[(proxy_protocol.PP2_TYPE_SSL, value)])
    parsed = proxy_protocol.parse(header).header
    assert parsed is not None and parsed.ssl is not None and parsed.ssl.client_ssl and parsed.ssl.version == "TLSv1.3"
    shown = [repr(parsed.to_dict()), *describe_header(parsed), repr(parsed.ssl)]
    assert not any(secret in text for text in shown)
    # a certificate's own words are not a command: "Pass" in a CN is shown as it is
    ordinary = proxy_protocol.build_ssl_value(cn="Pass-Through Root CA")
    plain = proxy_protocol.parse(proxy_protocol.build_v2(src_addr="203.0.113.7", dst_addr="192.0.2.10", src_port=1,
                                                         dst_port=993, tlvs=[(proxy_protocol.PP2_TYPE_SSL, ordinary)]))
    assert plain.header is not None and plain.header.ssl is not None and plain.header.ssl.cn == "Pass-Through Root CA"
