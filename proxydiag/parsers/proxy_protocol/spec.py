"""The PROXY protocol's numbers and names, as HAProxy's doc/proxy-protocol.txt defines them."""

from __future__ import annotations

import struct

SIGNATURE_V2 = b"\r\n\r\n\x00\r\nQUIT\n"
PREFIX_V1 = b"PROXY "
V1_MAX_LENGTH = 107
V2_FIXED_LENGTH = 16
UNIQUE_ID_MAX_LENGTH = 128
MAX_TLVS = 64  # kept per header (and per SSL TLV); past it only counted: a 64 KiB header holds 21,845 empty TLVs
MAX_HEADER_LENGTH = V2_FIXED_LENGTH + 0xFFFF  # the largest header there can be (65,551 bytes)
NOT_A_HEADER = "the data starts with neither the v2 signature (0d0a0d0a000d0a515549540a) nor 'PROXY'"

COMMANDS = {0x0: "LOCAL", 0x1: "PROXY"}

# (address family nibble, transport nibble) -> the name used in reports
V2_FAMILIES = {
    (0x0, 0x0): "UNSPEC",
    (0x1, 0x1): "TCP4",
    (0x1, 0x2): "UDP4",
    (0x2, 0x1): "TCP6",
    (0x2, 0x2): "UDP6",
    (0x3, 0x1): "UNIX_STREAM",
    (0x3, 0x2): "UNIX_DGRAM",
}
V2_FAMILY_BYTES = {name: (af << 4) | tp for (af, tp), name in V2_FAMILIES.items()}
ADDRESS_BLOCK_LENGTH = {0x0: 0, 0x1: 12, 0x2: 36, 0x3: 216}
UNIX_PATH_LENGTH = 108

PP2_TYPE_ALPN = 0x01
PP2_TYPE_AUTHORITY = 0x02
PP2_TYPE_CRC32C = 0x03
PP2_TYPE_NOOP = 0x04
PP2_TYPE_UNIQUE_ID = 0x05
PP2_TYPE_SSL = 0x20
PP2_TYPE_NETNS = 0x30
PP2_TYPE_GCP = 0xE0
PP2_TYPE_AWS = 0xEA
PP2_TYPE_AZURE = 0xEE

TLV_NAMES = {
    PP2_TYPE_ALPN: "ALPN",
    PP2_TYPE_AUTHORITY: "AUTHORITY",
    PP2_TYPE_CRC32C: "CRC32C",
    PP2_TYPE_NOOP: "NOOP",
    PP2_TYPE_UNIQUE_ID: "UNIQUE_ID",
    PP2_TYPE_SSL: "SSL",
    PP2_TYPE_NETNS: "NETNS",
    PP2_TYPE_GCP: "GCP",
    PP2_TYPE_AWS: "AWS",
    PP2_TYPE_AZURE: "AZURE",
}

PP2_CLIENT_SSL = 0x01
PP2_CLIENT_CERT_CONN = 0x02
PP2_CLIENT_CERT_SESS = 0x04

SSL_SUBTYPES = {
    0x21: "version",
    0x22: "cn",
    0x23: "cipher",
    0x24: "sig_alg",
    0x25: "key_alg",
    0x26: "group",
    0x27: "sig_scheme",
    0x28: "client_cert",
}
SSL_SUBTYPE_BY_NAME = {name: code for code, name in SSL_SUBTYPES.items()}
SSL_FIXED_LENGTH = 5  # client (1) + verify (4)

AWS_SUBTYPE_VPCE_ID = 0x01
AZURE_SUBTYPE_PRIVATE_ENDPOINT_LINK_ID = 0x01

FIXED_V2 = struct.Struct("!12sBBH")
TLV_HEAD = struct.Struct("!BH")
INET4_BLOCK = struct.Struct("!4s4sHH")
INET6_BLOCK = struct.Struct("!16s16sHH")


def tlv_name(tlv_type: int) -> str:
    if tlv_type in TLV_NAMES:
        return TLV_NAMES[tlv_type]
    if 0xE0 <= tlv_type <= 0xEF:
        return "CUSTOM"
    if 0xF0 <= tlv_type <= 0xF7:
        return "EXPERIMENT"
    if tlv_type >= 0xF8:
        return "FUTURE"
    return "UNASSIGNED"


def header_version_at_start(data: bytes) -> int | None:
    """1 or 2 when `data` starts like a header (or like the start of one), else None."""
    if not data:
        return None
    if data[:12] == SIGNATURE_V2[: len(data[:12])]:
        return 2
    if data[:5] == PREFIX_V1[: len(data[:5])]:
        return 1  # the spec reads "PROXY" as v1 whatever follows; the v1 rules judge the rest
    return None
