"""The PROXY protocol parser: every rule of the specification, published vectors,
and properties over arbitrary bytes."""

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxydiag.names import AS_THEY_ARE
from proxydiag.parsers.proxy_protocol import (
    PP2_TYPE_ALPN,
    PP2_TYPE_AUTHORITY,
    PP2_TYPE_AWS,
    PP2_TYPE_AZURE,
    PP2_TYPE_GCP,
    PP2_TYPE_NETNS,
    PP2_TYPE_NOOP,
    PP2_TYPE_SSL,
    PP2_TYPE_UNIQUE_ID,
    SIGNATURE_V2,
    build_ssl_value,
    build_tlv,
    build_v1,
    build_v2,
    crc32c,
    parse,
)

# go-proxyproto tlvparse/aws_test.go, from aws/elastic-load-balancing-tools: real AWS
# NLB headers with a valid CRC32C, a VPC endpoint id TLV and NOOP padding.
AWS_VPCE_EXAMPLE = bytes.fromhex(
    "0d0a0d0a000d0a515549540a21110054ac1f0771ac1f0a1fc8f20050030004e8d6892dea0017017670"
    "63652d3038643262663135666163353030316339040024" + "00" * 36
)
AWS_VPCE_CAPTURE = bytes.fromhex(
    "0d0a0d0a000d0a515549540a21110054c0a82c0ac0a82c07cc3e241b030004b9286fa6ea0017017670"
    "63652d3030656166633435386563393762383333040024" + "00" * 36
)


def rules(data: bytes) -> list[str]:
    return [violation.rule for violation in parse(data).violations]


# --- version 1 -------------------------------------------------------------------------


def test_v1_tcp4_fields():
    result = parse(b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n")
    assert result.valid and result.length == 47
    header = result.header
    assert (header.version, header.command, header.family) == (1, "PROXY", "TCP4")
    assert (header.src_addr, header.dst_addr, header.src_port, header.dst_port) == ("192.168.0.1", "192.168.0.11", 56324, 443)
    assert header.tlvs == () and header.ssl is None


def test_v1_tcp6_and_unknown():
    header = parse(b"PROXY TCP6 2001:db8::1 2001:db8::2 1 25\r\n").header
    assert (header.family, header.src_addr, header.dst_port) == ("TCP6", "2001:db8::1", 25)
    unknown = parse(b"PROXY UNKNOWN ffff:: ffff:: 65535 65535\r\n")
    assert unknown.valid and unknown.header.family == "UNKNOWN" and unknown.header.src_addr is None
    assert parse(b"PROXY UNKNOWN\r\n").valid


@pytest.mark.parametrize(
    ("line", "rule", "offset"),
    [
        (b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", "v1.single-space", 18),
        (b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "v1.protocol", 6),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "v1.field-count", 28),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "v1.field-count", 31),
        (b"PROXY TCP4 1.2.3.999 5.6.7.8 1 2\r\n", "v1.address", 11),
        (b"PROXY TCP4 1.2.3.04 5.6.7.8 1 2\r\n", "v1.address", 11),
        (b"PROXY TCP4 1.2.3.4 ::1 1 2\r\n", "v1.family-mismatch", 19),
        (b"PROXY TCP6 ::1 1.2.3.4 1 2\r\n", "v1.family-mismatch", 15),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "v1.port", 27),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 025\r\n", "v1.port", 29),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "v1.crlf", 30),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", "v1.single-space", 30),
    ],
)
def test_v1_rules(line, rule, offset):
    violations = parse(line).violations
    assert (violations[0].rule, violations[0].offset) == (rule, offset)


def test_v1_line_over_107_bytes():
    line = b"PROXY UNKNOWN " + b"x" * 120 + b"\r\n"
    result = parse(line)
    assert [v.rule for v in result.violations] == ["v1.max-length"] and result.header is None


def test_v1_worst_case_107_bytes_is_valid():
    address = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
    line = f"PROXY UNKNOWN {address} {address} 65535 65535\r\n".encode()
    assert len(line) == 107 and parse(line).valid


def test_v1_incomplete_line():
    result = parse(b"PROXY TCP4 1.2.3.4")
    assert result.incomplete and result.header is None and rules(b"PROXY TCP4 1.2.3.4") == ["v1.incomplete"]


def test_not_a_header():
    for data in (b"", b"EHLO example.com\r\n", b"\x16\x03\x01\x02\x00", b"PROXX TCP4"):
        result = parse(data)
        assert result.version is None and result.header is None and result.length == 0


# --- version 2 -------------------------------------------------------------------------


@pytest.mark.parametrize("vector", [AWS_VPCE_EXAMPLE, AWS_VPCE_CAPTURE])
def test_aws_nlb_vectors(vector):
    result = parse(vector)
    assert result.valid, result.violations
    names = [tlv.name for tlv in result.header.tlvs]
    assert names == ["CRC32C", "AWS", "NOOP"]
    assert result.header.tlvs[0].decoded["valid"] is True
    assert result.header.tlvs[1].decoded["vpce_id"].startswith("vpce-0")


@pytest.mark.parametrize("control", [b"\x00", b"\x1b", b"\x7f"])
def test_a_control_byte_in_the_aws_vpc_endpoint_id_is_named(control):
    result = parse(build_v2("PROXY", "TCP4", "192.0.2.1", "192.0.2.2", 40000, 25,
                            tlvs=[(PP2_TYPE_AWS, b"\x01vpce-0" + control + b"abc")]))
    assert not result.valid
    assert [violation.rule for violation in result.violations] == ["v2.aws_vpce_id-control"]


def test_aws_vector_with_flipped_byte_fails_crc32c():
    damaged = bytearray(AWS_VPCE_EXAMPLE)
    damaged[17] ^= 0x01  # inside the source address
    violations = parse(bytes(damaged)).violations
    assert [v.rule for v in violations] == ["v2.crc32c"] and violations[0].offset == 31


def test_crc32c_known_answer():
    # RFC 3720 B.4: 32 bytes of zeroes
    assert crc32c(b"\x00" * 32) == 0x8A9136AA
    assert crc32c(b"123456789") == 0xE3069283


def test_v2_ssl_tlv_with_sub_tlvs():
    ssl = build_ssl_value(
        client=0x07, verify=1, version="TLSv1.3", cn="client.example", cipher="TLS_AES_256_GCM_SHA384",
        sig_alg="RSA-SHA256", key_alg="RSA2048",
    )
    data = build_v2(src_addr="203.0.113.7", dst_addr="192.0.2.10", src_port=40000, dst_port=465, tlvs=[(PP2_TYPE_SSL, ssl)])
    header = parse(data).header
    assert header.ssl.client_ssl and header.ssl.verify == 1
    assert header.ssl.to_dict()["client_cert_conn"] and header.ssl.to_dict()["client_cert_sess"]
    assert (header.ssl.version, header.ssl.cn, header.ssl.cipher) == ("TLSv1.3", "client.example", "TLS_AES_256_GCM_SHA384")
    assert (header.ssl.sig_alg, header.ssl.key_alg) == ("RSA-SHA256", "RSA2048")


def test_v2_local_unspec_health_check():
    result = parse(build_v2(command="LOCAL", family="UNSPEC") + b"EHLO")
    assert result.valid and result.length == 16
    assert (result.header.command, result.header.family, result.header.src_addr) == ("LOCAL", "UNSPEC", None)


def test_v2_unix_and_vendor_tlvs():
    data = build_v2(
        family="UNIX_STREAM",
        src_addr="/run/client.sock",
        dst_addr="/run/stalwart.sock",
        tlvs=[
            (PP2_TYPE_AZURE, b"\x01" + (0x12345678).to_bytes(4, "little")),
            (PP2_TYPE_GCP, (18446744072646845442).to_bytes(8, "big")),
            (PP2_TYPE_NETNS, b"blue"),
            (PP2_TYPE_AUTHORITY, b"mail.example.com"),
            (PP2_TYPE_ALPN, b"imap"),
        ],
    )
    header = parse(data).header
    assert (header.src_addr, header.dst_addr) == ("/run/client.sock", "/run/stalwart.sock")
    decoded = {tlv.name: tlv.decoded for tlv in header.tlvs}
    assert decoded["AZURE"]["private_endpoint_link_id"] == 0x12345678
    assert decoded["GCP"]["psc_connection_id"] == 18446744072646845442
    assert (decoded["NETNS"], decoded["AUTHORITY"], decoded["ALPN"]) == ("blue", "mail.example.com", "imap")


@pytest.mark.parametrize(
    ("mutate", "rule", "offset"),
    [
        (lambda h: h[:12] + b"\x11" + h[13:], "v2.version", 12),
        (lambda h: h[:12] + b"\x22" + h[13:], "v2.command", 12),
        (lambda h: h[:13] + b"\x41" + h[14:], "v2.family", 13),
        (lambda h: h[:13] + b"\x13" + h[14:], "v2.transport", 13),
        (lambda h: h[:14] + b"\x00\x08" + h[16:24], "v2.length", 14),
    ],
)
def test_v2_fixed_part_rules(mutate, rule, offset):
    header = build_v2(src_addr="1.2.3.4", dst_addr="5.6.7.8", src_port=1, dst_port=2)
    violation = parse(mutate(header)).violations[0]
    assert (violation.rule, violation.offset) == (rule, offset)


def test_v2_tlv_running_past_the_header():
    header = build_v2(src_addr="1.2.3.4", dst_addr="5.6.7.8", src_port=1, dst_port=2, tlvs=[(PP2_TYPE_NOOP, b"abc")])
    broken = header[:14] + (len(header) - 16).to_bytes(2, "big") + header[16:-6] + b"\x04\x00\x09abc"
    violation = parse(broken).violations[0]
    assert (violation.rule, violation.offset) == ("v2.tlv-length", 28)


def test_v2_ssl_sub_tlv_running_past_the_ssl_tlv():
    ssl = b"\x01\x00\x00\x00\x00" + b"\x21\x00\x20TLS"
    data = build_v2(src_addr="1.2.3.4", dst_addr="5.6.7.8", src_port=1, dst_port=2, tlvs=[(PP2_TYPE_SSL, ssl)])
    violation = parse(data).violations[0]
    assert (violation.rule, violation.offset) == ("v2.ssl-sub-tlv-length", 28 + 3 + 5)


def test_v2_unique_id_over_128_bytes():
    data = build_v2(src_addr="1.2.3.4", dst_addr="5.6.7.8", tlvs=[(PP2_TYPE_UNIQUE_ID, b"x" * 129)])
    assert rules(data) == ["v2.unique-id-length"]


def test_v2_incomplete():
    data = build_v2(src_addr="1.2.3.4", dst_addr="5.6.7.8")
    for cut in (5, 15, 20):
        result = parse(data[:cut])
        assert result.incomplete and result.version == 2 and result.length == 0


def test_v2_signature_then_garbage_is_reported_not_raised():
    result = parse(SIGNATURE_V2 + b"\xff\xff\x00\x00")
    assert {"v2.version", "v2.command", "v2.family", "v2.transport"} <= set(rules(SIGNATURE_V2 + b"\xff\xff\x00\x00"))
    assert result.header is not None


# --- properties ------------------------------------------------------------------------

ipv4 = st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))
ipv6 = st.integers(0, 2**128 - 1).map(lambda n: str(ipaddress.IPv6Address(n)))
ports = st.integers(0, 65535)
trailing = st.binary(max_size=64)


@given(st.sampled_from(["TCP4", "TCP6", "UNKNOWN"]), st.data(), trailing)
def test_v1_round_trip(family, data, tail):
    address = ipv6 if family == "TCP6" else ipv4
    src, dst = data.draw(address), data.draw(address)
    sport, dport = data.draw(ports), data.draw(ports)
    built = build_v1(family, src, dst, sport, dport)
    result = parse(built + tail)
    assert result.valid and result.length == len(built)
    if family != "UNKNOWN":
        header = result.header
        assert (header.family, header.src_addr, header.dst_addr, header.src_port, header.dst_port) == (
            family, src, dst, sport, dport,
        )


ssl_values = st.builds(
    build_ssl_value,
    client=st.integers(0, 7),
    verify=st.integers(0, 2**32 - 1),
    version=st.sampled_from(["TLSv1.2", "TLSv1.3"]),
    cipher=st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ_-0123456789", max_size=40),
)
simple_tlvs = st.tuples(
    st.sampled_from([PP2_TYPE_ALPN, PP2_TYPE_NOOP, PP2_TYPE_UNIQUE_ID, 0xE5, 0xF1]),
    st.binary(max_size=100),
)
# AWS's value is a subtype byte, then its data: subtype 0x01 is the VPC endpoint id, US-ASCII
# text ("vpce-08d2bf15fac5001c9"; a control byte in it is a violation of its own).
aws_values = st.one_of(
    st.binary(max_size=100).filter(lambda value: value[:1] != b"\x01"),
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40).map(lambda vpce: b"\x01" + vpce.encode()),
)
tlv_lists = st.lists(
    st.one_of(simple_tlvs, aws_values.map(lambda value: (PP2_TYPE_AWS, value)), ssl_values.map(lambda value: (PP2_TYPE_SSL, value))),
    max_size=4,
)


@given(
    st.sampled_from(["TCP4", "UDP4", "TCP6", "UDP6", "UNIX_STREAM", "UNIX_DGRAM", "UNSPEC"]),
    st.sampled_from(["PROXY", "LOCAL"]),
    st.data(),
    tlv_lists,
    st.booleans(),
    trailing,
)
def test_v2_round_trip(family, command, data, tlvs, with_crc, tail):
    if family.endswith("4"):
        src, dst = data.draw(ipv4), data.draw(ipv4)
    elif family.endswith("6"):
        src, dst = data.draw(ipv6), data.draw(ipv6)
    elif family.startswith("UNIX"):
        path = st.text(alphabet="abcdefghijklmnopqrstuvwxyz/._-", max_size=100)
        src, dst = data.draw(path), data.draw(path)
    else:
        src = dst = None
    sport, dport = data.draw(ports), data.draw(ports)
    built = build_v2(command, family, src, dst, sport, dport, tlvs=tlvs, with_crc32c=with_crc)
    result = parse(built + tail)
    assert result.valid, result.violations
    assert result.length == len(built)
    header = result.header
    assert (header.version, header.command, header.family) == (2, command, family)
    if family != "UNSPEC":
        assert (header.src_addr, header.dst_addr) == (src, dst)
    expected_types = [tlv_type for tlv_type, _ in tlvs] + ([3] if with_crc else [])
    assert [tlv.type for tlv in header.tlvs] == expected_types
    first_ssl = next((value for tlv_type, value in tlvs if tlv_type == PP2_TYPE_SSL), None)
    assert (header.ssl is None) == (first_ssl is None)
    if first_ssl:
        assert header.ssl.client == first_ssl[0]


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(data):
    result = parse(data)
    assert result.length <= len(data)
    for violation in result.violations:
        assert 0 <= violation.offset <= max(len(data), 107)


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_after_a_signature_never_raise(data):
    for prefix in (SIGNATURE_V2, b"PROXY "):
        result = parse(prefix + data)
        assert result.version in (1, 2)
        assert result.length <= len(prefix) + len(data)


@settings(max_examples=300)
@given(st.integers(16, 27), st.integers(1, 255), tlv_lists)
def test_any_change_to_the_address_block_breaks_the_checksum(position, flip, tlvs):
    header = bytearray(build_v2(src_addr="10.0.0.1", dst_addr="10.0.0.2", src_port=1, dst_port=2, tlvs=tlvs, with_crc32c=True))
    header[position] ^= flip
    assert "v2.crc32c" in rules(bytes(header))


def test_build_tlv_layout():
    assert build_tlv(0x01, b"h2") == b"\x01\x00\x02h2"


# HAProxy doc/proxy-protocol.txt 2.2.5 (2026 revision): SSL sub-TLVs 0x26 GROUP, 0x27 SIG_SCHEME
# (US-ASCII) and 0x28 CLIENT_CERT, the client's certificate in DER.
DER_CERT = bytes.fromhex("3006020101020102")  # SEQUENCE { INTEGER 1, INTEGER 2 }: the shape of one


def with_client_cert(cert: bytes) -> bytes:
    value = build_ssl_value(client=0x07, version="TLSv1.3", group="X25519", sig_scheme="ecdsa_secp256r1_sha256",
                            client_cert=cert)
    return build_v2(src_addr="203.0.113.7", dst_addr="192.0.2.10", src_port=40000, dst_port=25, tlvs=[(PP2_TYPE_SSL, value)])


def test_ssl_group_sig_scheme_and_client_cert_are_named():
    result = parse(with_client_cert(DER_CERT))
    assert result.violations == ()
    ssl = result.header.ssl
    assert (ssl.group, ssl.sig_scheme, ssl.client_cert_length) == ("X25519", "ecdsa_secp256r1_sha256", len(DER_CERT))


@pytest.mark.parametrize("cert, words", [
    (b"\x02\x01\x01", "SEQUENCE"),
    (bytes.fromhex("3005020101"), "DER length says 7 bytes"),
    (bytes.fromhex("3080020101"), "indefinite"),
    (b"-----BEGIN CERTIFICATE-----", "SEQUENCE"),
])
def test_client_cert_that_is_no_der_certificate_is_a_violation(cert, words):
    (violation,) = parse(with_client_cert(cert)).violations
    assert violation.rule == "v2.ssl-client-cert" and words in violation.message(AS_THEY_ARE)
    header = with_client_cert(cert)
    assert header[violation.offset] == 0x28  # the offset names the sub-TLV's own type byte
