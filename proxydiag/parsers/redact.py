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


def _escape_control(match: re.Match[str]) -> str:
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
