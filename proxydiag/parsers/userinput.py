"""Turn what a user pastes into `proxydiag decode` into bytes: hex, a hexdump (xxd,
hexdump -C, Wireshark's "copy as hex dump"), a v1 text line, or raw bytes."""

from __future__ import annotations

import errno
import re
from typing import BinaryIO

from proxydiag.parsers.proxy_protocol import MAX_HEADER_LENGTH, SIGNATURE_V2

RAW_READ_LIMIT = MAX_HEADER_LENGTH + 64  # the largest header, and a glimpse of what follows it
TEXT_READ_LIMIT = 6 * MAX_HEADER_LENGTH  # the largest header as an xxd or hexdump -C listing


class InputError(ValueError):
    """The text is neither hex, a hexdump nor a PROXY line."""


_HEX_PAIRS = re.compile(r"^(?:[0-9a-fA-F]{2})+$")
_HEX_NOISE = re.compile(r"0x|\\x|[\s:,]")


def read_bounded(stream: BinaryIO) -> tuple[bytes, bool]:
    """What `decode -` reads from a stream: raw bytes up to the largest header and a
    little more, text up to the largest header's hexdump; never all of /dev/zero.
    Also says whether the stream had more."""
    data = _read_up_to(stream, RAW_READ_LIMIT)
    if len(data) == RAW_READ_LIMIT and _looks_like_text(data):
        data += _read_up_to(stream, TEXT_READ_LIMIT - len(data))
    limit = TEXT_READ_LIMIT if _looks_like_text(data) else RAW_READ_LIMIT
    return data, len(data) >= limit and bool(stream.read(1))


def _read_up_to(stream: BinaryIO, size: int) -> bytes:
    pieces, wanted = [], size
    while wanted > 0:
        piece = stream.read(wanted)
        if not piece:
            break
        pieces.append(piece)
        wanted -= len(piece)
    return b"".join(pieces)


def _looks_like_text(data: bytes) -> bool:
    return not data.startswith(SIGNATURE_V2[:4]) and data.isascii() and b"\x00" not in data


def bytes_from_input(raw: bytes) -> tuple[bytes, list[str]]:
    """The header bytes the user meant, and notes on how they were read."""
    if not _looks_like_text(raw):
        return raw, ["read as raw bytes"]
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return raw, ["read as raw bytes"]
    return bytes_from_text(text)


def bytes_from_text(text: str) -> tuple[bytes, list[str]]:
    stripped = text.strip("\r\n\t ")
    if stripped.startswith("PROXY"):
        return _v1_line(text)
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise InputError("nothing to decode: give hex (0d0a0d0a...), a hexdump, or a 'PROXY ...' line")
    data = _from_hexdump(lines)
    if data is not None:
        return data, ["read as a hexdump"]
    joined = _HEX_NOISE.sub("", "".join(lines))
    if _HEX_PAIRS.match(joined):
        return bytes.fromhex(joined), ["read as hex"]
    raise InputError("not hex, a hexdump or a 'PROXY ...' line; paste the bytes as hex (e.g. 0d0a0d0a000d0a51...)")


def _v1_line(text: str) -> tuple[bytes, list[str]]:
    line = text.lstrip(" \t")
    if "\\r\\n" in line:
        return line.split("\\r\\n", 1)[0].encode("latin-1") + b"\r\n", ["read as a v1 line (\\r\\n unescaped)"]
    if "\r\n" in line:
        return line.encode("latin-1"), ["read as a v1 line"]
    line = line.rstrip("\r\n")
    return line.encode("latin-1") + b"\r\n", ["read as a v1 line; CRLF added (text copied from a log loses it)"]


# hexdump -C's |ascii| column; the look-behind starts a match only where blanks start
# (a run of blanks with no column after it was rescanned from each of its blanks).
_HEXDUMP_C_ASCII = re.compile(r"(?<!\s)\s+\|.*\|\s*$")
_ROW = re.compile(r"(?<!\s)\s*([0-9a-fA-F]{4,}):?(?:\s(.*))?")


def _from_hexdump(lines: list[str]) -> bytes | None:
    """A hexdump whose rows start with their offset (xxd, hexdump -C, Wireshark). The
    offsets say how many bytes each row holds; the last row's ASCII column is found at
    the column where the previous row's began."""
    rows = []
    for line in lines:
        match = _ROW.fullmatch(_HEXDUMP_C_ASCII.sub("", line.rstrip("\r\n")))
        if match is None:
            return None
        rows.append((int(match.group(1), 16), match.group(2) or ""))
    data = bytearray()
    ascii_column = None
    for index, (offset, rest) in enumerate(rows):
        if offset != len(data):
            return None
        wanted = rows[index + 1][0] - offset if index + 1 < len(rows) else None
        row: bytes | None
        if wanted is None and ascii_column is not None:
            row, end = _leading_hex(rest[:ascii_column]), ascii_column
        else:
            row, end = _row_bytes(rest, wanted)
        if row is None:
            return None
        if wanted is not None:
            ascii_column = end
        data += row
    return bytes(data) if data else None


def _row_bytes(rest: str, wanted: int | None) -> tuple[bytes | None, int]:
    """The bytes of one row's hex area and the column where it ends. With `wanted`
    unknown (a lone last row), the ASCII column is recognised by its length: one
    character per byte, after a gap of two spaces or more."""
    if wanted is None:
        return _lone_row(rest)
    found = bytearray()
    end = 0
    for match in re.finditer(r"\S+", rest):
        if len(found) >= wanted or not _HEX_PAIRS.fullmatch(match.group()):
            break
        found += bytes.fromhex(match.group())
        end = match.end()
    return (bytes(found), end) if len(found) == wanted else (None, end)


def _lone_row(rest: str) -> tuple[bytes | None, int]:
    """A row whose length nothing gives: its hex words end at the gap after which as many
    characters follow as the words hold bytes. The words are counted once, gap by gap."""
    counted, held = 0, 0
    for gap in re.finditer(r"\s{2,}", rest):
        for word in rest[counted:gap.start()].split():
            if not _HEX_PAIRS.fullmatch(word):
                return _leading_hex(rest), len(rest)
            held += len(word) // 2
        counted = gap.start()
        if held and gap.start() + 2 <= len(rest) - held <= gap.end():
            return _hex_words(rest[:gap.start()]), gap.start()
    return _leading_hex(rest), len(rest)


def _leading_hex(text: str) -> bytes:
    words = []
    for word in text.split():
        if not _HEX_PAIRS.fullmatch(word):
            break
        words.append(word)
    return bytes.fromhex("".join(words))


def _hex_words(text: str) -> bytes | None:
    words = text.split()
    if not words or not all(_HEX_PAIRS.fullmatch(word) for word in words):
        return None
    return bytes.fromhex("".join(words))


CONFIG_READ_LIMIT = 16 << 20  # no proxy or Stalwart configuration comes near it
LOG_READ_LIMIT = 512 << 20  # logs are read whole: a longer one is cut to the part that matters first


def read_file_bounded(path: str, limit: int = CONFIG_READ_LIMIT, what: str = "a configuration") -> bytes:
    """A file's bytes, at most `limit` of them: a device or a pipe that never ends
    (/dev/zero) is refused after `limit` bytes, not read until memory runs out. Raises
    OSError with a message for one line."""
    with open(path, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"larger than {limit >> 20} MiB: not {what} proxydiag reads whole"
                      + ("; give the part that matters (grep, tail)" if what == "a log" else ""))
    return data


def read_text_bounded(path: str, limit: int = CONFIG_READ_LIMIT, errors: str = "replace") -> str:
    return read_file_bounded(path, limit).decode("utf-8", errors=errors)
