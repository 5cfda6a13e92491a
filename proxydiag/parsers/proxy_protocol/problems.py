"""What broke a rule of a PROXY header, as typed fields (offsets, lengths, byte values, the TLV
type, the wire text): the parsers build one only where they find a violation, and its sentence
is written when a view asks, through the `Names` it is given (an address as an address, wire
text as quoted text), so that `--anonymize` tells it from the fields, never from finished prose."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from proxydiag.names import Names
from proxydiag.parsers.proxy_protocol.spec import MAX_TLVS, NOT_A_HEADER, PREFIX_V1, UNIQUE_ID_MAX_LENGTH, V1_MAX_LENGTH, tlv_name


class Problem:
    """One kind of violation: its fields, and `message(names)`."""

    __slots__ = ()

    def message(self, names: Names) -> str:
        raise NotImplementedError


class Plain(Problem, Enum):
    """A violation that names nothing but the spec's own numbers."""

    NOT_A_HEADER = NOT_A_HEADER
    NO_LINE_END = f"no CRLF within the first {V1_MAX_LENGTH} bytes (the v1 line limit)"
    FIELD_SPACING = "fields must be separated by exactly one space"
    TOO_MANY_SSL_SUB_TLVS = f"more than {MAX_TLVS} SSL sub-TLVs; the rest are not read"
    SSL_VERSION_MISSING = "PP2_CLIENT_SSL is set but no SSL_VERSION sub-TLV follows (the spec requires it)"

    def message(self, names: Names) -> str:
        return str(self.value)


class Number(Enum):
    """What one number of the header (a byte's value, a length) breaks: the sentence it goes in."""

    NO_SPACE_AFTER_PROXY = "'PROXY' is followed by byte 0x{:02x}; it must be one space"
    NOT_ASCII = "byte 0x{:02x} is not printable US-ASCII"
    VERSION_NIBBLE = "version nibble is {}; it must be 2"
    COMMAND = "command 0x{:x} is neither LOCAL (0) nor PROXY (1)"
    FAMILY = "address family 0x{:x} is not UNSPEC, INET, INET6 or UNIX"
    TRANSPORT = "transport 0x{:x} is not UNSPEC, STREAM or DGRAM"
    UNSPEC_MIXED = "family/transport byte 0x{:02x} mixes UNSPEC with a concrete value"
    STRAY_BYTES = "{} stray byte(s) where a 3-byte TLV head is needed"
    UNIQUE_ID_LENGTH = f"UNIQUE_ID is {{}} bytes; at most {UNIQUE_ID_MAX_LENGTH} are allowed"
    SSL_LENGTH = "SSL TLV is {} bytes; client and verify need 5"
    CRC32C_LENGTH = "CRC32C TLV is {} bytes; it must be 4"


@dataclass(frozen=True, slots=True)
class OneNumber(Problem):
    broken: Number
    value: int

    def message(self, names: Names) -> str:
        return str(self.broken.value).format(self.value)


@dataclass(frozen=True, slots=True)
class Incomplete(Problem):
    version: int
    received: int  # bytes there are
    declared: int | None = None  # the length a whole v2 fixed part declares

    def message(self, names: Names) -> str:
        if self.declared is not None:
            needed = f"but the header declares {self.declared}"
        elif self.version == 2:
            needed = "inside the 16-byte fixed part"
        elif self.received < len(PREFIX_V1):
            needed = "inside the 'PROXY ' prefix"
        else:
            needed = "before the CRLF that ends the line"
        return f"the data ends after {self.received} bytes, {needed}"


# --- version 1 --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class LoneLineEnd(Problem):
    ends_the_line: bool  # the line ends with it (no CRLF at all), or it stands inside the line

    def message(self, names: Names) -> str:
        if self.ends_the_line:
            return "the line ends with a lone CR or LF; it must end with CRLF"
        return "a lone CR or LF inside the line"


class Field(Enum):
    """What a field of the line, quoted as it came, breaks: the sentence it goes in."""

    UNKNOWN_PROTOCOL = "protocol {!r} is not TCP4, TCP6 or UNKNOWN"
    ZONE_ID = "{!r} carries a zone id; the v1 format has none"
    LEADING_ZEROES = "{!r} has leading zeroes (octal is ambiguous)"
    NOT_AN_ADDRESS = "{!r} is not an IP address"
    NOT_A_PORT = "{!r} is not a port number (0 to 65535)"
    PORT_LEADING_ZEROES = "port {!r} has leading zeroes"


@dataclass(frozen=True, slots=True)
class QuotedField(Problem):
    broken: Field
    field: str  # wire text, told as quoted text

    def message(self, names: Names) -> str:
        return str(self.broken.value).format(names.text(self.field))


@dataclass(frozen=True, slots=True)
class FieldCount(Problem):
    family: str  # TCP4 or TCP6
    found: int  # fields after it

    def message(self, names: Names) -> str:
        return (f"{self.family} needs 4 fields after it (source, destination, source port, destination port); "
                f"found {self.found}")


@dataclass(frozen=True, slots=True)
class FamilyMismatch(Problem):
    address: str  # as the line writes it
    version: int  # the address's
    family: str  # the line's: TCP4 or TCP6

    def message(self, names: Names) -> str:
        return f"{names.address(self.address)} is an IPv{self.version} address in a {self.family} line"


# --- version 2: the fixed part and the address block ------------------------------------------

@dataclass(frozen=True, slots=True)
class ShortAddressBlock(Problem):
    declared: int
    needed: int
    family: str  # the spec's name of the family, or its byte

    def message(self, names: Names) -> str:
        return f"length {self.declared} is shorter than the {self.needed}-byte address block of {self.family}"


# --- version 2: the TLVs ----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class TlvOverrun(Problem):
    tlv_type: int
    declared: int
    remaining: int

    def message(self, names: Names) -> str:
        return (f"TLV 0x{self.tlv_type:02x} ({tlv_name(self.tlv_type)}) declares {self.declared} bytes but only "
                f"{self.remaining} remain")


@dataclass(frozen=True, slots=True)
class TooManyTlvs(Problem):
    omitted: int

    def message(self, names: Names) -> str:
        return f"{MAX_TLVS + self.omitted} TLVs; the {self.omitted} past the first {MAX_TLVS} are counted, not shown"


@dataclass(frozen=True, slots=True)
class TextValue(Problem):
    """A text TLV (or SSL sub-TLV) value that breaks its type: not in its encoding, or holding
    a control character (`control`: the first one's bytes)."""

    name: str  # the field's name: authority, netns, ssl_cn ...
    sub_tlv: bool
    ascii_only: bool
    control: bytes | None = None

    def message(self, names: Names) -> str:
        label = f"{self.name.upper().replace('_', ' ')} {'sub-TLV' if self.sub_tlv else 'TLV'} value"
        if self.control is not None:
            return f"{label} holds control character(s) (the first: 0x{self.control.hex()})"
        return f"{label} is not {'US-ASCII' if self.ascii_only else 'UTF-8'}"


@dataclass(frozen=True, slots=True)
class NotDer(Problem):
    """Why a value is not one DER SEQUENCE filling it exactly: it does not start with one,
    its length is indefinite or reserved, or the length it says (`said`) is not what it holds."""

    held: int
    starts_with_sequence: bool = True
    definite: bool = True
    said: int | None = None

    def message(self, names: Names) -> str:
        if not self.starts_with_sequence:
            return "not a DER certificate (a certificate starts with a SEQUENCE, byte 0x30)"
        if not self.definite:
            return "an indefinite or reserved length, which DER forbids"
        return f"the DER length says {self.said} bytes, the sub-TLV holds {self.held}"


@dataclass(frozen=True, slots=True)
class ClientCertificate(Problem):
    der: NotDer

    def message(self, names: Names) -> str:
        return f"CLIENT_CERT sub-TLV (0x28): {self.der.message(names)}"


@dataclass(frozen=True, slots=True)
class Crc32cMismatch(Problem):
    received: int
    expected: int

    def message(self, names: Names) -> str:
        return f"CRC32C is 0x{self.received:08x}; the header's checksum is 0x{self.expected:08x}"
