"""TLS as far as it is readable on the wire: records, the ClientHello (versions, SNI,
ALPN, SSLv2-compatible form), the ServerHello's chosen version, and unencrypted alerts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from proxydiag.parsers.protocols.fields import MAX_ITEMS, JsonFields, show

CHANGE_CIPHER_SPEC, ALERT, HANDSHAKE, APPLICATION_DATA, HEARTBEAT = 20, 21, 22, 23, 24
RECORD_TYPES = frozenset({CHANGE_CIPHER_SPEC, ALERT, HANDSHAKE, APPLICATION_DATA, HEARTBEAT})
CLIENT_HELLO, SERVER_HELLO = 1, 2
EXT_SERVER_NAME, EXT_ALPN, EXT_SUPPORTED_VERSIONS = 0, 16, 43
SNI_HOST_NAME = 0
RECORD_HEADER = 5
MAX_RECORD = 2**14 + 2048  # largest ciphertext record TLS allows
SSL2_CLIENT_HELLO = 1
MAX_RECORDS = 256

VERSIONS = {
    0x0002: "SSL 2.0",
    0x0300: "SSL 3.0",
    0x0301: "TLS 1.0",
    0x0302: "TLS 1.1",
    0x0303: "TLS 1.2",
    0x0304: "TLS 1.3",
}
ALERT_LEVELS = {1: "warning", 2: "fatal"}
ALERT_DESCRIPTIONS = {
    0: "close_notify",
    10: "unexpected_message",
    20: "bad_record_mac",
    21: "decryption_failed",
    22: "record_overflow",
    30: "decompression_failure",
    40: "handshake_failure",
    41: "no_certificate",
    42: "bad_certificate",
    43: "unsupported_certificate",
    44: "certificate_revoked",
    45: "certificate_expired",
    46: "certificate_unknown",
    47: "illegal_parameter",
    48: "unknown_ca",
    49: "access_denied",
    50: "decode_error",
    51: "decrypt_error",
    60: "export_restriction",
    70: "protocol_version",
    71: "insufficient_security",
    80: "internal_error",
    86: "inappropriate_fallback",
    90: "user_canceled",
    100: "no_renegotiation",
    109: "missing_extension",
    110: "unsupported_extension",
    111: "certificate_unobtainable",
    112: "unrecognized_name",
    113: "bad_certificate_status_response",
    114: "bad_certificate_hash_value",
    115: "unknown_psk_identity",
    116: "certificate_required",
    120: "no_application_protocol",
    121: "ech_required",
}


def version_name(value: int) -> str:
    if value in VERSIONS:
        return VERSIONS[value]
    if value >> 8 == 0x7F:  # TLS 1.3 drafts
        return f"TLS 1.3 draft {value & 0xFF}"
    return f"0x{value:04x}"


def is_grease(value: int) -> bool:
    """RFC 8701 reserved values (0x0a0a, 0x1a1a, ...), sent to keep servers tolerant."""
    return value & 0x0F0F == 0x0A0A and value >> 8 == value & 0xFF


@dataclass(slots=True)
class ClientHello(JsonFields):
    legacy_version: str | None = None
    supported_versions: list[str] = field(default_factory=list)
    server_name: str | None = None
    alpn: list[str] = field(default_factory=list)
    sslv2_compatible: bool = False


@dataclass(slots=True)
class ServerHello(JsonFields):
    legacy_version: str | None = None
    version: str | None = None  # supported_versions when present, else the legacy field
    alpn: str | None = None


@dataclass(slots=True)
class Alert(JsonFields):
    sender: str  # client or server
    level: str
    description: str


@dataclass(slots=True)
class TlsOpening(JsonFields):
    client_hello: ClientHello | None = None
    server_hello: ServerHello | None = None
    alerts: list[Alert] = field(default_factory=list)


class Record(NamedTuple):
    content_type: int
    fragment: bytes  # may be cut short when the capture kept only the opening


def is_record_start(data: bytes) -> bool:
    return len(data) >= 3 and data[0] in RECORD_TYPES and data[1] == 3 and data[2] <= 4


def is_sslv2_client_hello(data: bytes) -> bool:
    """SSLv2 record header (high bit set, 15-bit length), CLIENT-HELLO, then a version."""
    if len(data) < 5 or not data[0] & 0x80 or data[2] != SSL2_CLIENT_HELLO:
        return False
    length = (data[0] & 0x7F) << 8 | data[1]
    return length >= 9 and int.from_bytes(data[3:5], "big") in VERSIONS


def starts_with_tls(data: bytes) -> bool:
    return is_record_start(data) or is_sslv2_client_hello(data)


def records(data: bytes) -> list[Record]:
    """The TLS records at the start of `data`, until something is not one."""
    found: list[Record] = []
    offset = 0
    while offset + RECORD_HEADER <= len(data) and len(found) < MAX_RECORDS:
        if not is_record_start(data[offset : offset + 3]):
            break
        length = int.from_bytes(data[offset + 3 : offset + 5], "big")
        if length > MAX_RECORD:
            break
        start = offset + RECORD_HEADER
        found.append(Record(data[offset], data[start : start + length]))
        offset = start + length
    return found


class _Short(Exception):
    """A structure ran past the bytes available; caught inside this module."""


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, count: int) -> bytes:
        if count > self.remaining():
            raise _Short
        chunk = self.data[self.pos : self.pos + count]
        self.pos += count
        return chunk

    def number(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def vector(self, length_size: int) -> bytes:
        return self.take(self.number(length_size))


def handshake_bytes(side: list[Record]) -> bytes:
    """The plaintext handshake stream: handshake records up to the first change of
    cipher spec or encrypted record, after which nothing is readable."""
    parts = []
    for record in side:
        if record.content_type in (CHANGE_CIPHER_SPEC, APPLICATION_DATA):
            break
        if record.content_type == HANDSHAKE:
            parts.append(record.fragment)
    return b"".join(parts)


def handshake_message(stream: bytes, wanted: int) -> bytes | None:
    """The body of the first handshake message of type `wanted` (possibly truncated)."""
    reader = _Reader(stream)
    while reader.remaining() >= 4:
        kind, length = reader.number(1), reader.number(3)
        body = reader.data[reader.pos : reader.pos + length]
        if kind == wanted:
            return body
        reader.pos += length
    return None


def extensions(reader: _Reader) -> list[tuple[int, bytes]]:
    """Extensions that arrived whole; a truncated tail is dropped."""
    found: list[tuple[int, bytes]] = []
    start = reader.pos
    try:
        block = _Reader(reader.vector(2))
    except _Short:
        block = _Reader(reader.data[start + 2 :])
    while block.remaining() >= 4 and len(found) < MAX_ITEMS:
        try:
            found.append((block.number(2), block.vector(2)))
        except _Short:
            break
    return found


def parse_client_hello(body: bytes) -> ClientHello:
    hello = ClientHello()
    reader = _Reader(body)
    try:
        hello.legacy_version = version_name(reader.number(2))
        reader.take(32)  # random
        reader.vector(1)  # session id
        reader.vector(2)  # cipher suites
        reader.vector(1)  # compression methods
    except _Short:
        return hello
    for kind, value in extensions(reader):
        _client_extension(hello, kind, value)
    return hello


def _client_extension(hello: ClientHello, kind: int, value: bytes) -> None:
    try:
        if kind == EXT_SERVER_NAME:
            hello.server_name = _server_name(_Reader(value))
        elif kind == EXT_ALPN:
            hello.alpn = _protocol_names(_Reader(value))
        elif kind == EXT_SUPPORTED_VERSIONS:
            versions = _Reader(_Reader(value).vector(1))
            while versions.remaining() >= 2:
                number = versions.number(2)
                if not is_grease(number):
                    hello.supported_versions.append(version_name(number))
    except _Short:
        pass


def _server_name(reader: _Reader) -> str | None:
    names = _Reader(reader.vector(2))
    while names.remaining() >= 3:
        kind, name = names.number(1), names.vector(2)
        if kind == SNI_HOST_NAME:
            return show(name)
    return None


def _protocol_names(reader: _Reader) -> list[str]:
    names = _Reader(reader.vector(2))
    found: list[str] = []
    while names.remaining() and len(found) < MAX_ITEMS:
        found.append(show(names.vector(1)))
    return found


def parse_sslv2_client_hello(data: bytes) -> ClientHello:
    return ClientHello(legacy_version=version_name(int.from_bytes(data[3:5], "big")), sslv2_compatible=True)


def parse_server_hello(body: bytes) -> ServerHello:
    hello = ServerHello()
    reader = _Reader(body)
    try:
        legacy = reader.number(2)
        hello.legacy_version = hello.version = version_name(legacy)
        reader.take(32)  # random
        reader.vector(1)  # session id
        reader.take(3)  # cipher suite, compression method
    except _Short:
        return hello
    for kind, value in extensions(reader):
        try:
            if kind == EXT_SUPPORTED_VERSIONS:
                hello.version = version_name(_Reader(value).number(2))
            elif kind == EXT_ALPN:
                names = _protocol_names(_Reader(value))
                hello.alpn = names[0] if names else None
        except _Short:
            pass
    return hello


def plaintext_alerts(sender: str, side: list[Record]) -> list[Alert]:
    """Alerts sent before encryption began; an encrypted alert is longer than two bytes."""
    found = []
    for record in side:
        if record.content_type in (CHANGE_CIPHER_SPEC, APPLICATION_DATA):
            break
        if record.content_type == ALERT and len(record.fragment) == 2:
            level, description = record.fragment
            found.append(
                Alert(
                    sender,
                    ALERT_LEVELS.get(level, f"unknown({level})"),
                    ALERT_DESCRIPTIONS.get(description, f"unknown({description})"),
                )
            )
    return found


def read_tls(client: bytes, server: bytes) -> TlsOpening | None:
    """What the TLS bytes at the start of each direction show; None when neither
    direction starts with TLS."""
    if not starts_with_tls(client) and not starts_with_tls(server):
        return None
    client_records, server_records = records(client), records(server)
    opening = TlsOpening()
    if is_sslv2_client_hello(client):
        opening.client_hello = parse_sslv2_client_hello(client)
    else:
        body = handshake_message(handshake_bytes(client_records), CLIENT_HELLO)
        opening.client_hello = parse_client_hello(body) if body is not None else None
    body = handshake_message(handshake_bytes(server_records), SERVER_HELLO)
    opening.server_hello = parse_server_hello(body) if body is not None else None
    opening.alerts = plaintext_alerts("client", client_records) + plaintext_alerts("server", server_records)
    return opening


def client_alpn(client: bytes) -> list[str]:
    """The ALPN names a ClientHello at the start of `client` offers, if any."""
    if not is_record_start(client):
        return []
    body = handshake_message(handshake_bytes(records(client)), CLIENT_HELLO)
    return parse_client_hello(body).alpn if body is not None else []
