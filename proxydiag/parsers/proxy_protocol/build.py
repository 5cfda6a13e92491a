"""Headers written on purpose: for the probe's steps, the tests' round trips and the benchmark."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from proxydiag.parsers.proxy_protocol.spec import (
    COMMANDS,
    FIXED_V2,
    INET4_BLOCK,
    INET6_BLOCK,
    PP2_CLIENT_SSL,
    PP2_TYPE_CRC32C,
    SIGNATURE_V2,
    SSL_SUBTYPE_BY_NAME,
    TLV_HEAD,
    UNIX_PATH_LENGTH,
    V2_FAMILY_BYTES,
)
from proxydiag.parsers.proxy_protocol.tlvs import crc32c


def build_v1(family: str = "TCP4", src_addr: str = "", dst_addr: str = "", src_port: int = 0, dst_port: int = 0) -> bytes:
    if family == "UNKNOWN":
        return b"PROXY UNKNOWN\r\n"
    return f"PROXY {family} {src_addr} {dst_addr} {src_port} {dst_port}\r\n".encode("ascii")


def build_tlv(tlv_type: int, value: bytes) -> bytes:
    return TLV_HEAD.pack(tlv_type, len(value)) + value


def build_ssl_value(client: int = PP2_CLIENT_SSL, verify: int = 0, **sub_tlvs: str | bytes) -> bytes:
    """The value of a PP2_TYPE_SSL TLV; sub_tlvs by name: version="TLSv1.3", cn=..."""
    body = b"".join(
        build_tlv(SSL_SUBTYPE_BY_NAME[name], value.encode() if isinstance(value, str) else value)
        for name, value in sub_tlvs.items()
    )
    return bytes([client]) + verify.to_bytes(4, "big") + body


def build_v2(
    command: str = "PROXY",
    family: str = "TCP4",
    src_addr: str | None = None,
    dst_addr: str | None = None,
    src_port: int = 0,
    dst_port: int = 0,
    tlvs: Sequence[tuple[int, bytes]] = (),
    with_crc32c: bool = False,
) -> bytes:
    command_nibble = {name: code for code, name in COMMANDS.items()}[command]
    family_byte = V2_FAMILY_BYTES[family]
    addresses = _build_address_block(family_byte >> 4, src_addr, dst_addr, src_port, dst_port)
    body = addresses + b"".join(build_tlv(t, v) for t, v in tlvs)
    if with_crc32c:
        body += build_tlv(PP2_TYPE_CRC32C, b"\x00\x00\x00\x00")
    header = FIXED_V2.pack(SIGNATURE_V2, 0x20 | command_nibble, family_byte, len(body)) + body
    if with_crc32c:
        header = header[:-4] + crc32c(header).to_bytes(4, "big")
    return header


def _build_address_block(family: int, src_addr, dst_addr, src_port: int, dst_port: int) -> bytes:
    if family == 0x1:
        return INET4_BLOCK.pack(
            ipaddress.IPv4Address(src_addr).packed, ipaddress.IPv4Address(dst_addr).packed, src_port, dst_port
        )
    if family == 0x2:
        return INET6_BLOCK.pack(
            ipaddress.IPv6Address(src_addr).packed, ipaddress.IPv6Address(dst_addr).packed, src_port, dst_port
        )
    if family == 0x3:
        return _unix_block(src_addr) + _unix_block(dst_addr)
    return b""


def _unix_block(path: str | None) -> bytes:
    raw = (path or "").encode()[: UNIX_PATH_LENGTH - 1]
    return raw.ljust(UNIX_PATH_LENGTH, b"\x00")
