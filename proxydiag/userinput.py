"""Turn what a user pastes into `proxydiag decode` into bytes: hex, a hexdump (xxd,
hexdump -C, Wireshark's "copy as hex dump"), a v1 text line, or raw bytes."""

from __future__ import annotations

import re

from proxydiag.proxy_protocol import SIGNATURE_V2


class InputError(ValueError):
    """The text is neither hex, a hexdump nor a PROXY line."""


_HEX_PAIRS = re.compile(r"^(?:[0-9a-fA-F]{2})+$")
_HEX_NOISE = re.compile(r"0x|\\x|[\s:,]")


def bytes_from_input(raw: bytes) -> tuple[bytes, list[str]]:
    """The header bytes the user meant, and notes on how they were read."""
    if raw.startswith(SIGNATURE_V2[:4]):
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


def _from_hexdump(lines: list[str]) -> bytes | None:
    rows = _without_offsets([_hex_tokens(line) for line in lines])
    if rows is None:
        return None
    joined = "".join("".join(tokens) for tokens in rows)
    if not joined or not _HEX_PAIRS.match(joined):
        return None
    return bytes.fromhex(joined)


def _hex_tokens(line: str) -> list[str]:
    """The leading hex tokens of a hexdump line: stops at the ASCII column, which sits
    after a wider gap and (xxd, Wireshark) holds one character per byte of the row, so
    that an ASCII column that happens to look like hex ("00") is not read as data."""
    line = line.split("|", 1)[0]
    offset, _, rest = line.strip().partition(" ")
    tokens = [offset] if re.fullmatch(r"[0-9a-fA-F]+:?", offset) else []
    if not tokens:
        rest = line
    data_bytes = 0
    for segment in re.split(r"\s{2,}", rest.strip()):
        words = segment.split()
        if not words or not all(_HEX_PAIRS.match(word) for word in words):
            break
        if tokens and data_bytes and len(words) == 1 and len(words[0]) == data_bytes:
            break  # the ASCII column of the bytes already read
        tokens.extend(words)
        data_bytes += sum(len(word) for word in words) // 2
    return tokens


def _without_offsets(rows: list[list[str]]) -> list[list[str]] | None:
    """The rows without their offset column, or None when they have none (each row of
    a hexdump starts with the running byte count)."""
    expected = 0
    stripped = []
    for tokens in rows:
        if not tokens:
            continue
        first = tokens[0].rstrip(":")
        if len(first) < 4 or int(first, 16) != expected:
            return None
        rest = tokens[1:]
        expected += sum(len(token) for token in rest) // 2
        stripped.append(rest)
    return stripped
