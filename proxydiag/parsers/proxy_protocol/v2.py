"""Version 2: the binary header's fixed part and address block (spec 2.2); its TLVs are in tlvs.py."""

from __future__ import annotations

import ipaddress
from typing import TypedDict

from proxydiag.parsers.proxy_protocol.model import ParseResult, ProxyHeader, Violation, address_text, incomplete
from proxydiag.parsers.proxy_protocol.problems import (
    Number,
    OneNumber,
    ShortAddressBlock,
)
from proxydiag.parsers.proxy_protocol.spec import (
    ADDRESS_BLOCK_LENGTH,
    COMMANDS,
    FIXED_V2,
    INET4_BLOCK,
    INET6_BLOCK,
    UNIX_PATH_LENGTH,
    V2_FAMILIES,
    V2_FIXED_LENGTH,
)
from proxydiag.parsers.proxy_protocol.tlvs import v2_tlvs


class AddressFields(TypedDict, total=False):
    """The address block's fields, as ProxyHeader takes them."""

    src_addr: str
    dst_addr: str
    src_port: int
    dst_port: int


def parse_v2(data: bytes) -> ParseResult:
    if len(data) < V2_FIXED_LENGTH:
        return incomplete(2, data)
    _, ver_cmd, family_byte, declared = FIXED_V2.unpack_from(data)
    length = V2_FIXED_LENGTH + declared
    violations: list[Violation] = []
    if len(data) < length:
        # The fixed part is whole and can be trusted; the rest never arrived.
        command, family = _v2_command(ver_cmd, violations), _v2_family(family_byte, violations)
        cut = incomplete(2, data, declared=length)
        return ParseResult(
            version=2, header=ProxyHeader(version=2, command=command, family=family, length=length),
            violations=tuple(violations) + cut.violations, incomplete=True,
        )
    block = data[:length]
    command = _v2_command(ver_cmd, violations)
    family = _v2_family(family_byte, violations)
    address_length = ADDRESS_BLOCK_LENGTH.get(family_byte >> 4, 0)
    if declared < address_length and command == "LOCAL":
        # Spec 2.2: a receiver must accept LOCAL whatever the family, and ignore the
        # address block (HAProxy does the same).
        return ParseResult(
            version=2,
            header=ProxyHeader(version=2, command=command, family=family, length=length),
            violations=tuple(violations),
            length=length,
        )
    if declared < address_length:
        violations.append(Violation(14, "v2.length", ShortAddressBlock(declared, address_length, family)))
        return ParseResult(
            version=2,
            header=ProxyHeader(version=2, command=command, family=family, length=length),
            violations=tuple(violations),
            length=length,
        )
    addresses = _v2_addresses(block, family_byte)
    tlvs, ssl, omitted = v2_tlvs(block, V2_FIXED_LENGTH + address_length, violations)
    header = ProxyHeader(
        version=2, command=command, family=family, length=length, tlvs=tuple(tlvs), ssl=ssl, tlvs_omitted=omitted,
        **addresses,
    )
    return ParseResult(version=2, header=header, violations=tuple(violations), length=length)


def _v2_command(ver_cmd: int, violations: list[Violation]) -> str:
    if ver_cmd >> 4 != 2:
        violations.append(Violation(12, "v2.version", OneNumber(Number.VERSION_NIBBLE, ver_cmd >> 4)))
    command = COMMANDS.get(ver_cmd & 0x0F)
    if command is None:
        violations.append(Violation(12, "v2.command", OneNumber(Number.COMMAND, ver_cmd & 0x0F)))
        return f"0x{ver_cmd & 0x0F:x}"
    return command


def _v2_family(family_byte: int, violations: list[Violation]) -> str:
    name = V2_FAMILIES.get((family_byte >> 4, family_byte & 0x0F))
    if name is not None:
        return name
    if family_byte >> 4 not in ADDRESS_BLOCK_LENGTH:
        violations.append(Violation(13, "v2.family", OneNumber(Number.FAMILY, family_byte >> 4)))
    if family_byte & 0x0F > 2:
        violations.append(Violation(13, "v2.transport", OneNumber(Number.TRANSPORT, family_byte & 0x0F)))
    if family_byte & 0x0F == 0 or family_byte >> 4 == 0:
        violations.append(Violation(13, "v2.family", OneNumber(Number.UNSPEC_MIXED, family_byte)))
    return f"0x{family_byte:02x}"


def _v2_addresses(block: bytes, family_byte: int) -> AddressFields:
    family = family_byte >> 4
    if family == 0x1:
        src, dst, sport, dport = INET4_BLOCK.unpack_from(block, V2_FIXED_LENGTH)
        return _address_fields(ipaddress.IPv4Address(src), ipaddress.IPv4Address(dst), sport, dport)
    if family == 0x2:
        src, dst, sport, dport = INET6_BLOCK.unpack_from(block, V2_FIXED_LENGTH)
        return _address_fields(ipaddress.IPv6Address(src), ipaddress.IPv6Address(dst), sport, dport)
    if family == 0x3:
        start = V2_FIXED_LENGTH
        src = block[start : start + UNIX_PATH_LENGTH]
        dst = block[start + UNIX_PATH_LENGTH : start + 2 * UNIX_PATH_LENGTH]
        return {"src_addr": _unix_path(src), "dst_addr": _unix_path(dst)}
    return {}


def _address_fields(src, dst, sport: int, dport: int) -> AddressFields:
    return {"src_addr": address_text(src), "dst_addr": address_text(dst), "src_port": sport, "dst_port": dport}


def _unix_path(raw: bytes) -> str:
    return raw.split(b"\x00", 1)[0].decode("utf-8", "backslashreplace")
