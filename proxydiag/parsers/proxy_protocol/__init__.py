"""The PROXY protocol, versions 1 and 2 (HAProxy's doc/proxy-protocol.txt).

`parse(data)` is a pure function: it never raises, and reports every rule the bytes
break as a `Violation` with the byte offset and the rule's name. `build_v1` and
`build_v2` write headers for tests and for round-trip properties.

This package's namespace is the protocol as the rest of proxydiag sees it; the modules
behind it are the spec's numbers (spec), the results (model), each version's reader
(v1, v2), the TLVs (tlvs) and the builders (build).
"""

from __future__ import annotations

from proxydiag.parsers.proxy_protocol.build import build_ssl_value, build_tlv, build_v1, build_v2
from proxydiag.parsers.proxy_protocol.model import (
    HIDDEN_TEXT,
    UNSHOWN_TLVS,
    ParseResult,
    ProxyHeader,
    SslInfo,
    Tlv,
    Violation,
    address_text,
)
from proxydiag.parsers.proxy_protocol.problems import Plain, Problem
from proxydiag.parsers.proxy_protocol.spec import (
    ADDRESS_BLOCK_LENGTH,
    AWS_SUBTYPE_VPCE_ID,
    AZURE_SUBTYPE_PRIVATE_ENDPOINT_LINK_ID,
    COMMANDS,
    MAX_HEADER_LENGTH,
    MAX_TLVS,
    NOT_A_HEADER,
    PP2_CLIENT_CERT_CONN,
    PP2_CLIENT_CERT_SESS,
    PP2_CLIENT_SSL,
    PP2_TYPE_ALPN,
    PP2_TYPE_AUTHORITY,
    PP2_TYPE_AWS,
    PP2_TYPE_AZURE,
    PP2_TYPE_CRC32C,
    PP2_TYPE_GCP,
    PP2_TYPE_NETNS,
    PP2_TYPE_NOOP,
    PP2_TYPE_SSL,
    PP2_TYPE_UNIQUE_ID,
    PREFIX_V1,
    SIGNATURE_V2,
    SSL_SUBTYPE_BY_NAME,
    SSL_SUBTYPES,
    TLV_NAMES,
    UNIQUE_ID_MAX_LENGTH,
    V1_MAX_LENGTH,
    V2_FAMILIES,
    V2_FAMILY_BYTES,
    V2_FIXED_LENGTH,
    header_version_at_start,
    tlv_name,
)
from proxydiag.parsers.proxy_protocol.tlvs import crc32c, der_sequence_problem, tlv_spans
from proxydiag.parsers.proxy_protocol.v1 import parse_v1
from proxydiag.parsers.proxy_protocol.v2 import parse_v2

__all__ = [
    "ADDRESS_BLOCK_LENGTH", "AWS_SUBTYPE_VPCE_ID", "AZURE_SUBTYPE_PRIVATE_ENDPOINT_LINK_ID", "COMMANDS", "HIDDEN_TEXT",
    "MAX_HEADER_LENGTH", "MAX_TLVS", "NOT_A_HEADER", "PP2_CLIENT_CERT_CONN", "PP2_CLIENT_CERT_SESS", "PP2_CLIENT_SSL",
    "PP2_TYPE_ALPN", "PP2_TYPE_AUTHORITY", "PP2_TYPE_AWS", "PP2_TYPE_AZURE", "PP2_TYPE_CRC32C", "PP2_TYPE_GCP",
    "PP2_TYPE_NETNS", "PP2_TYPE_NOOP", "Problem", "PP2_TYPE_SSL", "PP2_TYPE_UNIQUE_ID", "PREFIX_V1", "SIGNATURE_V2",
    "SSL_SUBTYPES", "SSL_SUBTYPE_BY_NAME", "TLV_NAMES", "UNIQUE_ID_MAX_LENGTH", "UNSHOWN_TLVS", "V1_MAX_LENGTH",
    "V2_FAMILIES", "V2_FAMILY_BYTES", "V2_FIXED_LENGTH", "ParseResult", "ProxyHeader", "SslInfo", "Tlv", "Violation",
    "address_text", "build_ssl_value", "build_tlv", "build_v1", "build_v2", "crc32c", "der_sequence_problem",
    "header_version_at_start", "parse", "tlv_name", "tlv_spans",
]


def parse(data: bytes) -> ParseResult:
    """Decode the PROXY header at the start of `data`; never raises."""
    data = bytes(data)
    version = header_version_at_start(data)
    if version == 2:
        return parse_v2(data)
    if version == 1:
        return parse_v1(data)
    return ParseResult(version=None, violations=(Violation(0, "signature", Plain.NOT_A_HEADER),))
