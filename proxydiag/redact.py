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


def mask_line(line: str) -> str:
    """The line with any credential it carries replaced by ****."""
    for pattern in _SECRET_COMMANDS:
        match = pattern.match(line)
        if match:
            return match.group("keep") + (f" {MASK}" if match.group("secret") else "")
    return line


_UNPRINTABLE = re.compile(rb"[^\x20-\x7e]")


def printable(data: bytes, limit: int = 200) -> str:
    """Bytes as one line of text: printable ASCII kept, the rest escaped."""
    shown = _UNPRINTABLE.sub(lambda match: b"\\x%02x" % match.group()[0], bytes(data[:limit])).decode("ascii")
    return shown + ("..." if len(data) > limit else "")


def first_line(data: bytes, limit: int = 200) -> str:
    """The first line of a text stream, masked and escaped, without its line end."""
    end = data.find(b"\n")
    line = data if end < 0 else data[:end]
    return mask_line(printable(line.rstrip(b"\r"), limit))
