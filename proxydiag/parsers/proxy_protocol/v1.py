"""Version 1: the text line (spec 2.1)."""

from __future__ import annotations

import ipaddress

from proxydiag.parsers.proxy_protocol.model import ParseResult, ProxyHeader, Violation, address_text, incomplete
from proxydiag.parsers.proxy_protocol.problems import (
    FamilyMismatch,
    Field,
    FieldCount,
    LoneLineEnd,
    Number,
    OneNumber,
    Plain,
    QuotedField,
)
from proxydiag.parsers.proxy_protocol.spec import PREFIX_V1, V1_MAX_LENGTH


def parse_v1(data: bytes) -> ParseResult:
    if len(data) < len(PREFIX_V1):
        return incomplete(1, data)
    if not data.startswith(PREFIX_V1):
        violation = Violation(5, "v1.single-space", OneNumber(Number.NO_SPACE_AFTER_PROXY, data[5]))
        return ParseResult(version=1, violations=(violation,))
    window = data[: V1_MAX_LENGTH]
    end = window.find(b"\r\n")
    if end < 0:
        return _v1_without_crlf(data, window)
    violations: list[Violation] = []
    line = data[:end]
    _check_v1_line_endings(line, violations)
    header = _parse_v1_fields(line, end + 2, violations)
    return ParseResult(version=1, header=header, violations=tuple(violations), length=end + 2)


def _v1_without_crlf(data: bytes, window: bytes) -> ParseResult:
    lone = _first_lone_line_end(window)
    if lone is not None:
        return ParseResult(
            version=1,
            violations=(Violation(lone, "v1.crlf", LoneLineEnd(ends_the_line=True)),),
            length=lone + 1,
        )
    if len(data) >= V1_MAX_LENGTH:
        return ParseResult(
            version=1,
            violations=(Violation(V1_MAX_LENGTH, "v1.max-length", Plain.NO_LINE_END),),
        )
    return incomplete(1, data)


def _first_lone_line_end(line: bytes) -> int | None:
    for index, byte in enumerate(line):
        if byte == 0x0A:
            return index
        if byte == 0x0D and line[index + 1 : index + 2] not in (b"\n", b""):
            return index
    return None


def _check_v1_line_endings(line: bytes, violations: list[Violation]) -> None:
    lone = _first_lone_line_end(line)
    if lone is not None:
        violations.append(Violation(lone, "v1.crlf", LoneLineEnd(ends_the_line=False)))
    for index, byte in enumerate(line):
        if byte > 0x7E or (byte < 0x20 and byte not in (0x0D, 0x0A)):
            violations.append(Violation(index, "v1.ascii", OneNumber(Number.NOT_ASCII, byte)))
            break


def _parse_v1_fields(line: bytes, length: int, violations: list[Violation]) -> ProxyHeader | None:
    text = line.decode("ascii", "replace")
    fields = text.split(" ")
    offsets = _field_offsets(fields)
    for index, value in enumerate(fields[1:], start=1):
        if value == "" and not (fields[1] == "UNKNOWN" and index > 1):
            violations.append(Violation(offsets[index] - 1, "v1.single-space", Plain.FIELD_SPACING))
            return None
    protocol = fields[1]
    if protocol == "UNKNOWN":
        return ProxyHeader(version=1, command="PROXY", family="UNKNOWN", length=length)
    if protocol not in ("TCP4", "TCP6"):
        violations.append(Violation(offsets[1], "v1.protocol", QuotedField(Field.UNKNOWN_PROTOCOL, protocol)))
        return None
    if len(fields) != 6:
        at = len(line) if len(fields) < 6 else offsets[6]
        violations.append(Violation(at, "v1.field-count", FieldCount(protocol, len(fields) - 2)))
        return None
    src_addr = _v1_address(fields[2], protocol, offsets[2], violations)
    dst_addr = _v1_address(fields[3], protocol, offsets[3], violations)
    src_port = _v1_port(fields[4], offsets[4], violations)
    dst_port = _v1_port(fields[5], offsets[5], violations)
    return ProxyHeader(
        version=1,
        command="PROXY",
        family=protocol,
        length=length,
        src_addr=src_addr,
        dst_addr=dst_addr,
        src_port=src_port,
        dst_port=dst_port,
    )


def _field_offsets(fields: list[str]) -> list[int]:
    offsets, position = [], 0
    for value in fields:
        offsets.append(position)
        position += len(value) + 1
    offsets.append(position)
    return offsets


def _v1_address(text: str, protocol: str, offset: int, violations: list[Violation]) -> str | None:
    if "%" in text:  # Python's ipaddress takes fe80::1%eth0; spec 2.1 has no zone ids
        violations.append(Violation(offset, "v1.address", QuotedField(Field.ZONE_ID, text)))
        return None
    if "." in text and any(len(part) > 1 and part[0] == "0" for part in text.split(".")):
        violations.append(Violation(offset, "v1.address", QuotedField(Field.LEADING_ZEROES, text)))
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        violations.append(Violation(offset, "v1.address", QuotedField(Field.NOT_AN_ADDRESS, text)))
        return None
    expected = 4 if protocol == "TCP4" else 6
    if address.version != expected:
        violations.append(Violation(offset, "v1.family-mismatch", FamilyMismatch(text, address.version, protocol)))
    return address_text(address)


def _v1_port(text: str, offset: int, violations: list[Violation]) -> int | None:
    if not text.isascii() or not text.isdigit() or int(text) > 65535:
        violations.append(Violation(offset, "v1.port", QuotedField(Field.NOT_A_PORT, text)))
        return None
    if len(text) > 1 and text[0] == "0":
        violations.append(Violation(offset, "v1.port", QuotedField(Field.PORT_LEADING_ZEROES, text)))
    return int(text)
