"""pcapng blocks as bytes: a section header, interface descriptions and enhanced packets
with their options (little-endian, the layout of the pcapng specification,
draft-ietf-opsawg-pcapng, sections 3.5, 4.1, 4.2 and 4.3). Pure functions: whoever
writes a file joins them."""

from __future__ import annotations

import struct
from collections.abc import Iterable

SECTION_HEADER, INTERFACE_DESCRIPTION, ENHANCED_PACKET = 0x0A0D0D0A, 1, 6
BYTE_ORDER_MAGIC = 0x1A2B3C4D
OPT_END, OPT_COMMENT = 0, 1
SHB_USERAPPL = 4
IF_TSRESOL, IF_TSOFFSET = 9, 14
MAX_OPTION_VALUE = 0xFFFF  # an option's length is 16 bits

_U32 = struct.Struct("<I")
_OPTION_HEAD = struct.Struct("<HH")


def padding(length: int) -> bytes:
    """The zero bytes that bring `length` to a multiple of 4."""
    return b"\x00" * (-length % 4)


def option(code: int, value: bytes) -> bytes:
    """One option: code, length, the value padded to 32 bits."""
    if len(value) > MAX_OPTION_VALUE:
        raise ValueError(f"option {code} holds {len(value)} bytes; an option holds at most {MAX_OPTION_VALUE}")
    return _OPTION_HEAD.pack(code, len(value)) + value + padding(len(value))


def options(pairs: Iterable[tuple[int, bytes]]) -> bytes:
    """The options of a block, ended by opt_endofopt; nothing at all when there are none."""
    encoded = b"".join(option(code, value) for code, value in pairs)
    return encoded + option(OPT_END, b"") if encoded else b""


def block(block_type: int, body: bytes) -> bytes:
    """A block: type, total length, the body (a multiple of 4 bytes), the length again."""
    length = _U32.pack(12 + len(body))
    return _U32.pack(block_type) + length + body + length


def section_header(application: str) -> bytes:
    """A section header of unknown length, naming the application that wrote the file."""
    body = struct.pack("<IHHq", BYTE_ORDER_MAGIC, 1, 0, -1)
    return block(SECTION_HEADER, body + options([(SHB_USERAPPL, application.encode())]))


def interface_description(linktype: int, snaplen: int, tsresol: int, tsoffset: int = 0,
                          more: Iterable[tuple[int, bytes]] = ()) -> bytes:
    """An interface: its link type, snap length, timestamp resolution (the if_tsresol
    byte) and offset, and any further options given as they were read."""
    pairs = [(IF_TSRESOL, bytes([tsresol]))]
    if tsoffset:
        pairs.append((IF_TSOFFSET, struct.pack("<q", tsoffset)))
    return block(INTERFACE_DESCRIPTION, struct.pack("<HHI", linktype, 0, snaplen) + options([*pairs, *more]))


def enhanced_packet(interface: int, ticks: int, frame: bytes, wire_length: int, comments: Iterable[str] = ()) -> bytes:
    """A packet of `interface`, at `ticks` in that interface's units, with a comment
    option (opt_comment, UTF-8) per comment."""
    head = struct.pack("<IIIII", interface, ticks >> 32, ticks & 0xFFFFFFFF, len(frame), wire_length)
    tail = options((OPT_COMMENT, comment.encode("utf-8", "backslashreplace")) for comment in comments)
    return block(ENHANCED_PACKET, head + frame + padding(len(frame)) + tail)
