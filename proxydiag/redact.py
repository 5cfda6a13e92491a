"""Credentials never leave proxydiag: every excerpt of client text passes through here
before any report sees it."""

from __future__ import annotations

import re

MASK = "****"

# Each pattern keeps the command and its mechanism or user-visible part; `secret` is masked.
_SECRET_COMMANDS = (
    re.compile(r"^(?P<keep>AUTH\s+\S+)(?P<secret>\s+.*)?$", re.I),  # SMTP/POP3 AUTH mech [initial]
    re.compile(r"^(?P<keep>\S+\s+(?:UID\s+)?LOGIN)(?P<secret>\s+.*)?$", re.I),  # IMAP tag LOGIN user pass
    re.compile(r"^(?P<keep>\S+\s+AUTHENTICATE\s+\S+)(?P<secret>\s+.*)?$", re.I),  # IMAP
    re.compile(r"^(?P<keep>AUTHENTICATE\s+\S+)(?P<secret>\s+.*)?$", re.I),  # ManageSieve
    re.compile(r"^(?P<keep>PASS)(?P<secret>\s+.*)?$", re.I),  # POP3
    re.compile(r"^(?P<keep>APOP\s+\S+)(?P<secret>\s+.*)?$", re.I),
    re.compile(r"^(?P<keep>(?:Proxy-)?Authorization:\s*\S+)(?P<secret>\s+.*)?$", re.I),
    re.compile(r"^(?P<keep>(?:Set-)?Cookie:)(?P<secret>.*)$", re.I),
)


def _holds_a_secret_word(upper: str) -> bool:
    """A word one of the patterns needs: an ASCII line with none of them carries no credential."""
    return "AUTH" in upper or "LOGIN" in upper or "PASS" in upper or "APOP" in upper or "COOKIE" in upper


# A credential-bearing command or header anywhere in some bytes (not only at a line's
# start): what a PROXY header whose length ran into the client's bytes may hold inside a
# TLV value, at whatever offset the true end of the header left it.
_SECRET_ANYWHERE = re.compile(rb"(?i)(?:(?<![a-z])(?:AUTH|AUTHENTICATE|LOGIN|PASS|APOP)[ \t]|(?:Authorization|Cookie):)")


def secret_at(data: bytes) -> int | None:
    """Where a command that carries a credential may start in `data` (None: nowhere)."""
    match = _SECRET_ANYWHERE.search(data)
    return match.start() if match else None


def mask_line(line: str) -> str:
    """The line with any credential it carries replaced by ****."""
    if line.isascii() and not _holds_a_secret_word(line.upper()):  # re.I folds a few non-ASCII letters onto them
        return line
    for pattern in _SECRET_COMMANDS:
        match = pattern.match(line)
        if match:
            return match.group("keep") + (f" {MASK}" if match.group("secret") else "")
    return line


_PRINTABLE_BYTES = bytes(range(0x20, 0x7F))
_ESCAPES = {code: f"\\x{code:02x}" for code in range(256) if not 0x20 <= code < 0x7F}  # by latin-1 code point


def printable(data: bytes, limit: int = 200) -> str:
    """Bytes as one line of text: printable ASCII kept, the rest escaped."""
    head = bytes(data[:limit])
    if head.translate(None, _PRINTABLE_BYTES):  # something to escape (most text has nothing)
        shown = head.decode("latin-1").translate(_ESCAPES)
    else:
        shown = head.decode("ascii")
    return shown + ("..." if len(data) > limit else "")


def first_line(data: bytes, limit: int = 200) -> str:
    """The first line of a text stream, masked and escaped, without its line end."""
    end = data.find(b"\n")
    line = data if end < 0 else data[:end]
    return mask_line(printable(line.rstrip(b"\r"), limit))


# Characters that steer a terminal or reorder what a reader sees: C0 controls, DEL, C1
# controls (ESC's 8-bit forms), the bidi embeddings, overrides and isolates, the bidi
# marks, and the line and paragraph separators.
_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029"
_CONTROL = re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI}]")
_CONTROL_BUT_LINES = re.compile(f"[\x00-\x09\x0b-\x1f\x7f-\x9f{_BIDI}]")


def _escape_control(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str, keep_newlines: bool = False) -> str:
    """Text with every control and bidi character shown as an escape (`\\x1b`,
    `\\u202e`): what a stranger wrote can never steer a terminal or reorder a line.
    A backslash stays as it is: the escapes show what was there, they are not a code."""
    pattern = _CONTROL_BUT_LINES if keep_newlines else _CONTROL
    return pattern.sub(_escape_control, text) if pattern.search(text) else text


def has_control(text: str) -> bool:
    """True when `text` holds a character that `visible` would escape (newlines too)."""
    return _CONTROL.search(text) is not None


_V1_FIELDS = re.compile(rb"PROXY(?: [!-~]{1,39}){0,5}(?:\r\n)?")


def header_evidence(data: bytes, limit: int = 64) -> str:
    """The hex of a PROXY header for a report: only the bytes that read as the header's
    own structure. A header whose length swallows the client's first command (`a1
    LOGIN user pass`) must not carry that command into the evidence, so whatever does
    not parse as fields or known TLVs is counted, not shown."""
    from proxydiag import proxy_protocol

    shown = data[: _structured_length(data, proxy_protocol)]
    secret = secret_at(shown)
    shown = shown if secret is None else shown[:secret]
    text = shown[:limit].hex() + ("..." if len(shown) > limit else "")
    hidden = len(data) - len(shown)
    return text + (f" (+{hidden} bytes not shown)" if hidden else "")


def _structured_length(data: bytes, pp) -> int:
    version = pp.header_version_at_start(data)
    if version == 1:
        match = _V1_FIELDS.match(data)
        return min(match.end() if match else 0, pp.V1_MAX_LENGTH)
    if version != 2 or len(data) < pp.V2_FIXED_LENGTH:
        return min(len(data), pp.V2_FIXED_LENGTH)
    end = pp.V2_FIXED_LENGTH + int.from_bytes(data[14:16], "big")
    offset = pp.V2_FIXED_LENGTH + pp.ADDRESS_BLOCK_LENGTH.get(data[13] >> 4, 0)
    if offset > end or end > len(data) or data[12] >> 4 != 2:
        return pp.V2_FIXED_LENGTH  # cut short or no v2 header after all: past the fixed part may be the client's bytes
    for tlv_type, _start, stop in pp.tlv_spans(data):
        if pp.tlv_name(tlv_type) in ("UNASSIGNED", "FUTURE") or stop > end:
            break
        offset = stop
    return offset
