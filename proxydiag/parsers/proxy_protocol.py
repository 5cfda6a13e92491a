"""The PROXY protocol, versions 1 and 2 (HAProxy's doc/proxy-protocol.txt).

`parse(data)` is a pure function: it never raises, and reports every rule the bytes
break as a `Violation` with the byte offset and the rule's name. `build_v1` and
`build_v2` write headers for tests and for round-trip properties.
"""

from __future__ import annotations

import ipaddress
import re
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from proxydiag.parsers.redact import secret_at

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

_FIXED_V2 = struct.Struct("!12sBBH")
_TLV_HEAD = struct.Struct("!BH")
_INET4_BLOCK = struct.Struct("!4s4sHH")
_INET6_BLOCK = struct.Struct("!16s16sHH")


@dataclass(frozen=True, slots=True)
class Violation:
    offset: int
    rule: str
    message: str

    def to_dict(self) -> dict:
        return {"offset": self.offset, "rule": self.rule, "message": self.message}


# TLV types no one defines: a header whose length ran into the client's bytes reads them
# as one, so its value (which may hold "a1 LOGIN user password") is counted, not shown.
UNSHOWN_TLVS = frozenset({"UNASSIGNED", "FUTURE"})
# What a text value that reads as a client's credential command is shown as.
HIDDEN_TEXT = "(not shown: reads as a client's credential command)"


@dataclass(frozen=True, slots=True)
class Tlv:
    type: int
    offset: int
    value: bytes
    decoded: object = None
    hidden: bool = False  # its value is never shown: see _v2_tlvs

    @property
    def name(self) -> str:
        return tlv_name(self.type)

    def to_dict(self) -> dict:
        entry = {"type": self.type, "name": self.name, "length": len(self.value), "offset": self.offset}
        if self.type == PP2_TYPE_NOOP or self.name in UNSHOWN_TLVS:
            return entry
        if self.hidden:
            entry["value_hidden"] = "the value holds what reads as a client's credential command"
        elif self.decoded is not None:
            entry["value"] = self.decoded
        else:
            entry["value"] = self.value.hex()
        return entry


@dataclass(frozen=True, slots=True)
class SslInfo:
    client: int
    verify: int
    version: str | None = None
    cn: str | None = None
    cipher: str | None = None
    sig_alg: str | None = None
    key_alg: str | None = None
    group: str | None = None
    sig_scheme: str | None = None
    client_cert_length: int | None = None

    @property
    def client_ssl(self) -> bool:
        return bool(self.client & PP2_CLIENT_SSL)

    def to_dict(self) -> dict:
        return {
            "client": self.client,
            "client_ssl": self.client_ssl,
            "client_cert_conn": bool(self.client & PP2_CLIENT_CERT_CONN),
            "client_cert_sess": bool(self.client & PP2_CLIENT_CERT_SESS),
            "verify": self.verify,
            "version": self.version,
            "cn": self.cn,
            "cipher": self.cipher,
            "sig_alg": self.sig_alg,
            "key_alg": self.key_alg,
            "group": self.group,
            "sig_scheme": self.sig_scheme,
            "client_cert_length": self.client_cert_length,
        }


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    version: int
    command: str
    family: str
    length: int
    src_addr: str | None = None
    dst_addr: str | None = None
    src_port: int | None = None
    dst_port: int | None = None
    tlvs: tuple[Tlv, ...] = ()
    ssl: SslInfo | None = None
    tlvs_omitted: int = 0  # TLVs past MAX_TLVS, counted but not kept

    @property
    def carries_address(self) -> bool:
        return self.command == "PROXY" and self.src_addr is not None and not self.family.startswith("UNIX")

    def to_dict(self) -> dict:
        return {
            "version": self.version,
            "command": self.command,
            "family": self.family,
            "src_addr": self.src_addr,
            "src_port": self.src_port,
            "dst_addr": self.dst_addr,
            "dst_port": self.dst_port,
            "length": self.length,
            "tlvs": [tlv.to_dict() for tlv in self.tlvs],
            "ssl": self.ssl.to_dict() if self.ssl else None,
        } | ({"tlvs_omitted": self.tlvs_omitted} if self.tlvs_omitted else {})


@dataclass(frozen=True, slots=True)
class ParseResult:
    """What the bytes at the start of a stream say about a PROXY header.

    `version` is what the bytes claim to be (None: not a header at all). `length` is
    the number of bytes the header occupies (0 when there is none, or it is
    incomplete). `incomplete` means the data ends before the header does.
    """

    version: int | None
    header: ProxyHeader | None = None
    violations: tuple[Violation, ...] = ()
    length: int = 0
    incomplete: bool = False

    @property
    def valid(self) -> bool:
        return self.header is not None and not self.violations and not self.incomplete

    def to_dict(self, data_length: int | None = None) -> dict:
        trailing = 0 if data_length is None else max(0, data_length - self.length)
        document: dict[str, Any] = {
            "proxy_header": self.header.to_dict() if self.header else None,
            "violations": [v.to_dict() for v in self.violations],
            "trailing": trailing,
        }
        if self.header is None:
            document["reason"] = self.violations[0].message if self.violations else NOT_A_HEADER
        return document


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


def header_version_at_start(data: bytes) -> int | None:
    """1 or 2 when `data` starts like a header (or like the start of one), else None."""
    if not data:
        return None
    if data[:12] == SIGNATURE_V2[: len(data[:12])]:
        return 2
    if data[:5] == PREFIX_V1[: len(data[:5])]:
        return 1  # the spec reads "PROXY" as v1 whatever follows; the v1 rules judge the rest
    return None


def parse(data: bytes) -> ParseResult:
    """Decode the PROXY header at the start of `data`; never raises."""
    data = bytes(data)
    version = header_version_at_start(data)
    if version == 2:
        return _parse_v2(data)
    if version == 1:
        return _parse_v1(data)
    return ParseResult(version=None, violations=(Violation(0, "signature", NOT_A_HEADER),))


# --- version 1 -------------------------------------------------------------------------


def _incomplete(version: int, data: bytes, needed: str) -> ParseResult:
    violation = Violation(len(data), f"v{version}.incomplete", f"the data ends after {len(data)} bytes, {needed}")
    return ParseResult(version=version, violations=(violation,), incomplete=True)


def _parse_v1(data: bytes) -> ParseResult:
    if len(data) < len(PREFIX_V1):
        return _incomplete(1, data, "inside the 'PROXY ' prefix")
    if not data.startswith(PREFIX_V1):
        violation = Violation(5, "v1.single-space", f"'PROXY' is followed by byte 0x{data[5]:02x}; it must be one space")
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
            violations=(Violation(lone, "v1.crlf", "the line ends with a lone CR or LF; it must end with CRLF"),),
            length=lone + 1,
        )
    if len(data) >= V1_MAX_LENGTH:
        return ParseResult(
            version=1,
            violations=(
                Violation(V1_MAX_LENGTH, "v1.max-length", "no CRLF within the first 107 bytes (the v1 line limit)"),
            ),
        )
    return _incomplete(1, data, "before the CRLF that ends the line")


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
        violations.append(Violation(lone, "v1.crlf", "a lone CR or LF inside the line"))
    for index, byte in enumerate(line):
        if byte > 0x7E or (byte < 0x20 and byte not in (0x0D, 0x0A)):
            violations.append(Violation(index, "v1.ascii", f"byte 0x{byte:02x} is not printable US-ASCII"))
            break


def _parse_v1_fields(line: bytes, length: int, violations: list[Violation]) -> ProxyHeader | None:
    text = line.decode("ascii", "replace")
    fields = text.split(" ")
    offsets = _field_offsets(fields)
    for index, value in enumerate(fields[1:], start=1):
        if value == "" and not (fields[1] == "UNKNOWN" and index > 1):
            violations.append(Violation(offsets[index] - 1, "v1.single-space", "fields must be separated by exactly one space"))
            return None
    protocol = fields[1]
    if protocol == "UNKNOWN":
        return ProxyHeader(version=1, command="PROXY", family="UNKNOWN", length=length)
    if protocol not in ("TCP4", "TCP6"):
        violations.append(
            Violation(offsets[1], "v1.protocol", f"protocol {protocol!r} is not TCP4, TCP6 or UNKNOWN")
        )
        return None
    if len(fields) != 6:
        violations.append(
            Violation(
                len(line) if len(fields) < 6 else offsets[6],
                "v1.field-count",
                f"{protocol} needs 4 fields after it (source, destination, source port, destination port); found {len(fields) - 2}",
            )
        )
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
        violations.append(Violation(offset, "v1.address", f"{text!r} carries a zone id; the v1 format has none"))
        return None
    if "." in text and any(len(part) > 1 and part[0] == "0" for part in text.split(".")):
        violations.append(Violation(offset, "v1.address", f"{text!r} has leading zeroes (octal is ambiguous)"))
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        violations.append(Violation(offset, "v1.address", f"{text!r} is not an IP address"))
        return None
    expected = 4 if protocol == "TCP4" else 6
    if address.version != expected:
        violations.append(
            Violation(offset, "v1.family-mismatch", f"{text} is an IPv{address.version} address in a {protocol} line")
        )
    return address_text(address)


def _v1_port(text: str, offset: int, violations: list[Violation]) -> int | None:
    if not text.isascii() or not text.isdigit() or int(text) > 65535:
        violations.append(Violation(offset, "v1.port", f"{text!r} is not a port number (0 to 65535)"))
        return None
    if len(text) > 1 and text[0] == "0":
        violations.append(Violation(offset, "v1.port", f"port {text!r} has leading zeroes"))
    return int(text)


# --- version 2 -------------------------------------------------------------------------


def _parse_v2(data: bytes) -> ParseResult:
    if len(data) < V2_FIXED_LENGTH:
        return _incomplete(2, data, "inside the 16-byte fixed part")
    _, ver_cmd, family_byte, declared = _FIXED_V2.unpack_from(data)
    length = V2_FIXED_LENGTH + declared
    violations: list[Violation] = []
    if len(data) < length:
        # The fixed part is whole and can be trusted; the rest never arrived.
        command, family = _v2_command(ver_cmd, violations), _v2_family(family_byte, violations)
        cut = _incomplete(2, data, f"but the header declares {length}")
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
        violations.append(
            Violation(
                14,
                "v2.length",
                f"length {declared} is shorter than the {address_length}-byte address block of {family}",
            )
        )
        return ParseResult(
            version=2,
            header=ProxyHeader(version=2, command=command, family=family, length=length),
            violations=tuple(violations),
            length=length,
        )
    addresses = _v2_addresses(block, family_byte)
    tlvs, ssl, omitted = _v2_tlvs(block, V2_FIXED_LENGTH + address_length, violations)
    header = ProxyHeader(
        version=2, command=command, family=family, length=length, tlvs=tuple(tlvs), ssl=ssl, tlvs_omitted=omitted,
        **addresses,
    )
    return ParseResult(version=2, header=header, violations=tuple(violations), length=length)


def _v2_command(ver_cmd: int, violations: list[Violation]) -> str:
    if ver_cmd >> 4 != 2:
        violations.append(Violation(12, "v2.version", f"version nibble is {ver_cmd >> 4}; it must be 2"))
    command = COMMANDS.get(ver_cmd & 0x0F)
    if command is None:
        violations.append(Violation(12, "v2.command", f"command 0x{ver_cmd & 0x0F:x} is neither LOCAL (0) nor PROXY (1)"))
        return f"0x{ver_cmd & 0x0F:x}"
    return command


def _v2_family(family_byte: int, violations: list[Violation]) -> str:
    name = V2_FAMILIES.get((family_byte >> 4, family_byte & 0x0F))
    if name is not None:
        return name
    if family_byte >> 4 not in ADDRESS_BLOCK_LENGTH:
        violations.append(Violation(13, "v2.family", f"address family 0x{family_byte >> 4:x} is not UNSPEC, INET, INET6 or UNIX"))
    if family_byte & 0x0F > 2:
        violations.append(Violation(13, "v2.transport", f"transport 0x{family_byte & 0x0F:x} is not UNSPEC, STREAM or DGRAM"))
    if family_byte & 0x0F == 0 or family_byte >> 4 == 0:
        violations.append(
            Violation(13, "v2.family", f"family/transport byte 0x{family_byte:02x} mixes UNSPEC with a concrete value")
        )
    return f"0x{family_byte:02x}"


def _v2_addresses(block: bytes, family_byte: int) -> dict:
    family = family_byte >> 4
    if family == 0x1:
        src, dst, sport, dport = _INET4_BLOCK.unpack_from(block, V2_FIXED_LENGTH)
        return _address_fields(ipaddress.IPv4Address(src), ipaddress.IPv4Address(dst), sport, dport)
    if family == 0x2:
        src, dst, sport, dport = _INET6_BLOCK.unpack_from(block, V2_FIXED_LENGTH)
        return _address_fields(ipaddress.IPv6Address(src), ipaddress.IPv6Address(dst), sport, dport)
    if family == 0x3:
        start = V2_FIXED_LENGTH
        src = block[start : start + UNIX_PATH_LENGTH]
        dst = block[start + UNIX_PATH_LENGTH : start + 2 * UNIX_PATH_LENGTH]
        return {"src_addr": _unix_path(src), "dst_addr": _unix_path(dst)}
    return {}


def _address_fields(src, dst, sport: int, dport: int) -> dict:
    return {"src_addr": address_text(src), "dst_addr": address_text(dst), "src_port": sport, "dst_port": dport}


def address_text(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """An address as RFC 5952 and Wireshark write it: IPv4-mapped ones as ::ffff:10.1.91.14."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return f"::ffff:{address.ipv4_mapped}"
    return str(address)


def _unix_path(raw: bytes) -> str:
    return raw.split(b"\x00", 1)[0].decode("utf-8", "backslashreplace")


def _walk_tlvs(data: bytes, start: int, end: int, violations: list[Violation], rule: str):
    """Yield (type, value offset, value) for each TLV in data[start:end]; a TLV that
    runs past `end` is reported and ends the walk."""
    offset = start
    while offset < end:
        if end - offset < _TLV_HEAD.size:
            violations.append(Violation(offset, rule, f"{end - offset} stray byte(s) where a 3-byte TLV head is needed"))
            return
        tlv_type, tlv_length = _TLV_HEAD.unpack_from(data, offset)
        value_start = offset + _TLV_HEAD.size
        if value_start + tlv_length > end:
            violations.append(
                Violation(
                    offset,
                    rule,
                    f"TLV 0x{tlv_type:02x} ({tlv_name(tlv_type)}) declares {tlv_length} bytes but only "
                    f"{end - value_start} remain",
                )
            )
            return
        yield tlv_type, offset, data[value_start : value_start + tlv_length]
        offset = value_start + tlv_length


def _v2_tlvs(block: bytes, start: int, violations: list[Violation]) -> tuple[list[Tlv], SslInfo | None, int]:
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
            ssl = _decode_ssl(value, offset + _TLV_HEAD.size, violations)
            first_ssl = first_ssl or ssl
            tlvs.append(Tlv(tlv_type, offset, value, ssl.to_dict() if ssl else None, hidden))
        elif tlv_type == PP2_TYPE_CRC32C:
            tlvs.append(Tlv(tlv_type, offset, value, _check_crc32c(block, offset, value, violations), hidden))
        elif decoder is not None:
            tlvs.append(Tlv(tlv_type, offset, value, decoder(value, offset, violations), hidden))
        else:
            tlvs.append(Tlv(tlv_type, offset, value, None, hidden))
    if omitted:
        violations.append(
            Violation(first_omitted, "v2.tlv-count", f"{MAX_TLVS + omitted} TLVs; the {omitted} past the first {MAX_TLVS} "
                      "are counted, not shown")
        )
    return tlvs, first_ssl, omitted


_CONTROL_BYTES = re.compile(rb"[\x00-\x1f\x7f]|\xc2[\x80-\x9f]|\xd8\x9c|\xe2\x80[\x8e\x8f\xa8-\xae]|\xe2\x81[\xa6-\xa9]")


def _text(value: bytes, offset: int, violations: list[Violation], name: str, ascii_only: bool = False,
          what: str = "TLV") -> str:
    """A text value as the spec types it (US-ASCII or UTF-8); bytes that break the type
    are kept as \\x escapes, and control characters (no name or version holds one) are
    named too."""
    label = name.upper().replace("_", " ")
    try:
        text = value.decode("ascii" if ascii_only else "utf-8")
    except UnicodeDecodeError:
        encoding = "US-ASCII" if ascii_only else "UTF-8"
        violations.append(Violation(offset, f"v2.{name}", f"{label} {what} value is not {encoding}"))
        text = value.decode("ascii" if ascii_only else "utf-8", "backslashreplace")
    if secret_at(value) is not None:
        return HIDDEN_TEXT
    control = _CONTROL_BYTES.search(value)
    if control:
        violations.append(
            Violation(offset, f"v2.{name}-control", f"{label} {what} value holds control character(s) "
                      f"(the first: 0x{control.group().hex()})")
        )
    return text


def _decode_alpn(value: bytes, offset: int, violations: list[Violation]) -> str:
    return value.decode("ascii", "backslashreplace")  # a byte sequence by the spec, not text


def _decode_authority(value: bytes, offset: int, violations: list[Violation]) -> str:
    return _text(value, offset, violations, "authority")


def _decode_netns(value: bytes, offset: int, violations: list[Violation]) -> str:
    return _text(value, offset, violations, "netns", ascii_only=True)


def _decode_unique_id(value: bytes, offset: int, violations: list[Violation]) -> str:
    if len(value) > UNIQUE_ID_MAX_LENGTH:
        violations.append(
            Violation(offset, "v2.unique-id-length", f"UNIQUE_ID is {len(value)} bytes; at most 128 are allowed")
        )
    return value.hex()


def _decode_aws(value: bytes, offset: int, violations: list[Violation]) -> dict:
    if value[:1] == bytes([AWS_SUBTYPE_VPCE_ID]):
        return {"subtype": AWS_SUBTYPE_VPCE_ID, "vpce_id": _text(value[1:], offset, violations, "aws_vpce_id", ascii_only=True)}
    return {"subtype": value[0] if value else None, "data": value[1:].hex()}


def _decode_azure(value: bytes, offset: int, violations: list[Violation]) -> dict:
    if len(value) == 5 and value[0] == AZURE_SUBTYPE_PRIVATE_ENDPOINT_LINK_ID:
        return {"subtype": value[0], "private_endpoint_link_id": int.from_bytes(value[1:], "little")}
    return {"subtype": value[0] if value else None, "data": value[1:].hex()}


def _decode_gcp(value: bytes, offset: int, violations: list[Violation]) -> dict:
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
        violations.append(
            Violation(value_offset, "v2.ssl-length", f"SSL TLV is {len(value)} bytes; client and verify need 5")
        )
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
            shifted.append(Violation(sub_offset, "v2.ssl-sub-tlv-count", f"more than {MAX_TLVS} SSL sub-TLVs; the rest are not read"))
            break
        name = SSL_SUBTYPES.get(sub_type)
        if name == "client_cert":
            sub_fields["client_cert_length"] = len(sub_value)
            problem = der_sequence_problem(sub_value)
            if problem:
                shifted.append(Violation(sub_offset, "v2.ssl-client-cert", f"CLIENT_CERT sub-TLV (0x28): {problem}"))
        elif name is not None and name not in sub_fields:
            # CN is UTF-8; VERSION, CIPHER, SIG_ALG, KEY_ALG (and GROUP, SIG_SCHEME) are US-ASCII.
            sub_fields[name] = _text(sub_value, sub_offset, shifted, f"ssl_{name}", ascii_only=name != "cn", what="sub-TLV")
    violations.extend(Violation(v.offset + value_offset, v.rule, v.message) for v in shifted)
    if client & PP2_CLIENT_SSL and "version" not in sub_fields:
        violations.append(
            Violation(value_offset, "v2.ssl-version-missing",
                      "PP2_CLIENT_SSL is set but no SSL_VERSION sub-TLV follows (the spec requires it)")
        )
    return SslInfo(client=client, verify=verify, **sub_fields)


def der_sequence_problem(value: bytes) -> str | None:
    """Why `value` is not one DER SEQUENCE filling it exactly (PP2_SUBTYPE_SSL_CLIENT_CERT holds the
    client's certificate in DER, doc/proxy-protocol.txt 2.2.5), or None."""
    if len(value) < 2 or value[0] != 0x30:
        return "not a DER certificate (a certificate starts with a SEQUENCE, byte 0x30)"
    first = value[1]
    if first == 0x80 or first == 0xFF:
        return "an indefinite or reserved length, which DER forbids"
    head, length = (2, first) if first < 0x80 else (2 + (first & 0x7F), int.from_bytes(value[2:2 + (first & 0x7F)], "big"))
    if len(value) < head or head + length != len(value):
        return f"the DER length says {head + length} bytes, the sub-TLV holds {len(value)}"
    return None


def _check_crc32c(block: bytes, offset: int, value: bytes, violations: list[Violation]) -> dict:
    if len(value) != 4:
        violations.append(Violation(offset, "v2.crc32c-length", f"CRC32C TLV is {len(value)} bytes; it must be 4"))
        return {"value": None, "valid": False}  # no checksum: whatever bytes the length took in
    value_start = offset + _TLV_HEAD.size
    zeroed = block[:value_start] + b"\x00\x00\x00\x00" + block[value_start + 4 :]
    expected = crc32c(zeroed)
    received = int.from_bytes(value, "big")
    if received != expected:
        violations.append(
            Violation(value_start, "v2.crc32c", f"CRC32C is 0x{received:08x}; the header's checksum is 0x{expected:08x}")
        )
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


# --- builders --------------------------------------------------------------------------


def build_v1(family: str = "TCP4", src_addr: str = "", dst_addr: str = "", src_port: int = 0, dst_port: int = 0) -> bytes:
    if family == "UNKNOWN":
        return b"PROXY UNKNOWN\r\n"
    return f"PROXY {family} {src_addr} {dst_addr} {src_port} {dst_port}\r\n".encode("ascii")


def build_tlv(tlv_type: int, value: bytes) -> bytes:
    return _TLV_HEAD.pack(tlv_type, len(value)) + value


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
    header = _FIXED_V2.pack(SIGNATURE_V2, 0x20 | command_nibble, family_byte, len(body)) + body
    if with_crc32c:
        header = header[:-4] + crc32c(header).to_bytes(4, "big")
    return header


def _build_address_block(family: int, src_addr, dst_addr, src_port: int, dst_port: int) -> bytes:
    if family == 0x1:
        return _INET4_BLOCK.pack(
            ipaddress.IPv4Address(src_addr).packed, ipaddress.IPv4Address(dst_addr).packed, src_port, dst_port
        )
    if family == 0x2:
        return _INET6_BLOCK.pack(
            ipaddress.IPv6Address(src_addr).packed, ipaddress.IPv6Address(dst_addr).packed, src_port, dst_port
        )
    if family == 0x3:
        return _unix_block(src_addr) + _unix_block(dst_addr)
    return b""


def _unix_block(path: str | None) -> bytes:
    raw = (path or "").encode()[: UNIX_PATH_LENGTH - 1]
    return raw.ljust(UNIX_PATH_LENGTH, b"\x00")
