"""Version 2's TLVs (doc/proxy-protocol.txt 2.2 and its subsections): walking them, decoding each
known type, the SSL TLV's sub-TLVs, and the CRC32C checksum."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from proxydiag.jsontypes import JsonDict
from proxydiag.parsers.proxy_protocol.model import HIDDEN_TEXT, SslInfo, Tlv, Violation
from proxydiag.parsers.proxy_protocol.problems import (
    ClientCertificate,
    Crc32cMismatch,
    NotDer,
    Number,
    OneNumber,
    Plain,
    TextValue,
    TlvOverrun,
    TooManyTlvs,
)
from proxydiag.parsers.proxy_protocol.spec import (
    ADDRESS_BLOCK_LENGTH,
    AWS_SUBTYPE_VPCE_ID,
    AZURE_SUBTYPE_PRIVATE_ENDPOINT_LINK_ID,
    MAX_TLVS,
    PP2_CLIENT_SSL,
    PP2_TYPE_ALPN,
    PP2_TYPE_AUTHORITY,
    PP2_TYPE_AWS,
    PP2_TYPE_AZURE,
    PP2_TYPE_CRC32C,
    PP2_TYPE_GCP,
    PP2_TYPE_NETNS,
    PP2_TYPE_SSL,
    PP2_TYPE_UNIQUE_ID,
    SSL_FIXED_LENGTH,
    SSL_SUBTYPES,
    TLV_HEAD,
    UNIQUE_ID_MAX_LENGTH,
    V2_FIXED_LENGTH,
    header_version_at_start,
)
from proxydiag.parsers.redact import secret_at


def tlv_spans(data: bytes) -> Iterator[tuple[int, int, int]]:
    """The TLVs of the v2 header at the start of `data`, as (type, value start, value
    end), within the declared length and the bytes there are: the last value may be cut
    short (its end past `len(data)`), as in evidence truncated for a report."""
    if header_version_at_start(data) != 2 or len(data) < V2_FIXED_LENGTH:
        return
    end = min(len(data), V2_FIXED_LENGTH + int.from_bytes(data[14:16], "big"))
    offset = V2_FIXED_LENGTH + ADDRESS_BLOCK_LENGTH.get(data[13] >> 4, 0)
    while offset + 3 <= end:
        length = int.from_bytes(data[offset + 1 : offset + 3], "big")
        yield data[offset], offset + 3, offset + 3 + length
        offset += 3 + length


def _walk_tlvs(data: bytes, start: int, end: int, violations: list[Violation], rule: str):
    """Yield (type, value offset, value) for each TLV in data[start:end]; a TLV that
    runs past `end` is reported and ends the walk."""
    offset = start
    while offset < end:
        if end - offset < TLV_HEAD.size:
            violations.append(Violation(offset, rule, OneNumber(Number.STRAY_BYTES, end - offset)))
            return
        tlv_type, tlv_length = TLV_HEAD.unpack_from(data, offset)
        value_start = offset + TLV_HEAD.size
        if value_start + tlv_length > end:
            violations.append(Violation(offset, rule, TlvOverrun(tlv_type, tlv_length, end - value_start)))
            return
        yield tlv_type, offset, data[value_start : value_start + tlv_length]
        offset = value_start + tlv_length


def v2_tlvs(block: bytes, start: int, violations: list[Violation]) -> tuple[list[Tlv], SslInfo | None, int]:
    """The TLVs after the address block (the first MAX_TLVS of them), the first SSL TLV
    decoded, and how many TLVs were only counted."""
    tlvs: list[Tlv] = []
    first_ssl = None
    omitted = 0
    for tlv_type, offset, value in _walk_tlvs(block, start, len(block), violations, "v2.tlv-length"):
        if len(tlvs) >= MAX_TLVS:
            omitted += 1
            if omitted == 1:
                first_omitted = offset
            continue
        decoder = _TLV_DECODERS.get(tlv_type)
        # A header whose length ran into the client's bytes holds the client's command (`a1
        # LOGIN user password`) in this value: decoded as ever (the SSL flags still count),
        # its bytes are never shown, and no text field carries it (_text).
        hidden = secret_at(value) is not None
        if tlv_type == PP2_TYPE_SSL:
            ssl = _decode_ssl(value, offset + TLV_HEAD.size, violations)
            first_ssl = first_ssl or ssl
            tlvs.append(Tlv(tlv_type, offset, value, ssl.to_dict() if ssl else None, hidden))
        elif tlv_type == PP2_TYPE_CRC32C:
            tlvs.append(Tlv(tlv_type, offset, value, _check_crc32c(block, offset, value, violations), hidden))
        elif decoder is not None:
            tlvs.append(Tlv(tlv_type, offset, value, decoder(value, offset, violations), hidden))
        else:
            tlvs.append(Tlv(tlv_type, offset, value, None, hidden))
    if omitted:
        violations.append(Violation(first_omitted, "v2.tlv-count", TooManyTlvs(omitted)))
    return tlvs, first_ssl, omitted


_CONTROL_BYTES = re.compile(rb"[\x00-\x1f\x7f]|\xc2[\x80-\x9f]|\xd8\x9c|\xe2\x80[\x8e\x8f\xa8-\xae]|\xe2\x81[\xa6-\xa9]")


def _text(value: bytes, offset: int, violations: list[Violation], name: str, ascii_only: bool = False,
          sub_tlv: bool = False) -> str:
    """A text value as the spec types it (US-ASCII or UTF-8); bytes that break the type
    are kept as \\x escapes, and control characters (no name or version holds one) are
    named too."""
    try:
        text = value.decode("ascii" if ascii_only else "utf-8")
    except UnicodeDecodeError:
        violations.append(Violation(offset, f"v2.{name}", TextValue(name, sub_tlv, ascii_only)))
        text = value.decode("ascii" if ascii_only else "utf-8", "backslashreplace")
    if secret_at(value) is not None:
        return HIDDEN_TEXT
    control = _CONTROL_BYTES.search(value)
    if control:
        violations.append(Violation(offset, f"v2.{name}-control", TextValue(name, sub_tlv, ascii_only, control.group())))
    return text


def _decode_alpn(value: bytes, offset: int, violations: list[Violation]) -> str:
    return value.decode("ascii", "backslashreplace")  # a byte sequence by the spec, not text


def _decode_authority(value: bytes, offset: int, violations: list[Violation]) -> str:
    return _text(value, offset, violations, "authority")


def _decode_netns(value: bytes, offset: int, violations: list[Violation]) -> str:
    return _text(value, offset, violations, "netns", ascii_only=True)


def _decode_unique_id(value: bytes, offset: int, violations: list[Violation]) -> str:
    if len(value) > UNIQUE_ID_MAX_LENGTH:
        violations.append(Violation(offset, "v2.unique-id-length", OneNumber(Number.UNIQUE_ID_LENGTH, len(value))))
    return value.hex()


def _decode_aws(value: bytes, offset: int, violations: list[Violation]) -> JsonDict:
    if value[:1] == bytes([AWS_SUBTYPE_VPCE_ID]):
        return {"subtype": AWS_SUBTYPE_VPCE_ID, "vpce_id": _text(value[1:], offset, violations, "aws_vpce_id", ascii_only=True)}
    return {"subtype": value[0] if value else None, "data": value[1:].hex()}


def _decode_azure(value: bytes, offset: int, violations: list[Violation]) -> JsonDict:
    if len(value) == 5 and value[0] == AZURE_SUBTYPE_PRIVATE_ENDPOINT_LINK_ID:
        return {"subtype": value[0], "private_endpoint_link_id": int.from_bytes(value[1:], "little")}
    return {"subtype": value[0] if value else None, "data": value[1:].hex()}


def _decode_gcp(value: bytes, offset: int, violations: list[Violation]) -> JsonDict:
    if len(value) == 8:
        return {"psc_connection_id": int.from_bytes(value, "big")}
    return {"data": value.hex()}


_TLV_DECODERS = {
    PP2_TYPE_ALPN: _decode_alpn,
    PP2_TYPE_AUTHORITY: _decode_authority,
    PP2_TYPE_UNIQUE_ID: _decode_unique_id,
    PP2_TYPE_NETNS: _decode_netns,
    PP2_TYPE_AWS: _decode_aws,
    PP2_TYPE_AZURE: _decode_azure,
    PP2_TYPE_GCP: _decode_gcp,
}


def _decode_ssl(value: bytes, value_offset: int, violations: list[Violation]) -> SslInfo | None:
    if len(value) < SSL_FIXED_LENGTH:
        violations.append(Violation(value_offset, "v2.ssl-length", OneNumber(Number.SSL_LENGTH, len(value))))
        return None
    client = value[0]
    verify = int.from_bytes(value[1:5], "big")
    sub_fields: dict[str, Any] = {}
    # Offsets inside the SSL value are shifted so that violations name the header's byte.
    shifted: list[Violation] = []
    for count, (sub_type, sub_offset, sub_value) in enumerate(
        _walk_tlvs(value, SSL_FIXED_LENGTH, len(value), shifted, "v2.ssl-sub-tlv-length")
    ):
        if count >= MAX_TLVS:
            shifted.append(Violation(sub_offset, "v2.ssl-sub-tlv-count", Plain.TOO_MANY_SSL_SUB_TLVS))
            break
        name = SSL_SUBTYPES.get(sub_type)
        if name == "client_cert":
            sub_fields["client_cert_length"] = len(sub_value)
            problem = der_sequence_problem(sub_value)
            if problem:
                shifted.append(Violation(sub_offset, "v2.ssl-client-cert", ClientCertificate(problem)))
        elif name is not None and name not in sub_fields:
            # CN is UTF-8; VERSION, CIPHER, SIG_ALG, KEY_ALG (and GROUP, SIG_SCHEME) are US-ASCII.
            sub_fields[name] = _text(sub_value, sub_offset, shifted, f"ssl_{name}", ascii_only=name != "cn", sub_tlv=True)
    violations.extend(replace(v, offset=v.offset + value_offset) for v in shifted)
    if client & PP2_CLIENT_SSL and "version" not in sub_fields:
        violations.append(Violation(value_offset, "v2.ssl-version-missing", Plain.SSL_VERSION_MISSING))
    return SslInfo(client=client, verify=verify, **sub_fields)


def der_sequence_problem(value: bytes) -> NotDer | None:
    """Why `value` is not one DER SEQUENCE filling it exactly (PP2_SUBTYPE_SSL_CLIENT_CERT holds the
    client's certificate in DER, doc/proxy-protocol.txt 2.2.5), or None."""
    if len(value) < 2 or value[0] != 0x30:
        return NotDer(len(value), starts_with_sequence=False)
    first = value[1]
    if first == 0x80 or first == 0xFF:
        return NotDer(len(value), definite=False)
    head, length = (2, first) if first < 0x80 else (2 + (first & 0x7F), int.from_bytes(value[2:2 + (first & 0x7F)], "big"))
    if len(value) < head or head + length != len(value):
        return NotDer(len(value), said=head + length)
    return None


def _check_crc32c(block: bytes, offset: int, value: bytes, violations: list[Violation]) -> JsonDict:
    if len(value) != 4:
        violations.append(Violation(offset, "v2.crc32c-length", OneNumber(Number.CRC32C_LENGTH, len(value))))
        return {"value": None, "valid": False}  # no checksum: whatever bytes the length took in
    value_start = offset + TLV_HEAD.size
    zeroed = block[:value_start] + b"\x00\x00\x00\x00" + block[value_start + 4 :]
    expected = crc32c(zeroed)
    received = int.from_bytes(value, "big")
    if received != expected:
        violations.append(Violation(value_start, "v2.crc32c", Crc32cMismatch(received, expected)))
    return {"value": f"0x{received:08x}", "valid": received == expected}


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as RFC 4960 appendix B computes it."""
    crc = 0xFFFFFFFF
    table = _CRC32C_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF
