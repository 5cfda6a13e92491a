"""Client text inside log lines, masked as the capture recognisers mask it.

A log line quotes what a client sent: nginx's `broken header: "..."` holds the client's
first bytes raw (a login, an AUTH payload, an HTTP request with its Authorization header);
Stalwart's raw-input events and HAProxy's HTTP logs quote commands and request lines. Every
quoted string and every line after the first of a record is treated as client text: each
line masked as a client command line (`protocols.text.mask_client_line`: AUTH, LOGIN, USER,
PASS, APOP, Authorization, Cookie), each request target's query values and user part masked
(`protocols.http.mask_target`), and every credential the protocol recognisers find in that
text (SASL continuations, decoded forms) scrubbed wherever it stands.
"""

from __future__ import annotations

import re

from proxydiag.parsers.protocols import client_secrets
from proxydiag.parsers.protocols.base import scrub
from proxydiag.parsers.protocols.http import mask_target
from proxydiag.parsers.protocols.text import mask_client_line
from proxydiag.parsers.redact import MASK

# What ends a piece of client text inside a log line: a quote (plain or escaped, as JSON and
# Stalwart's text format write it inside strings), a line break (real or escaped).
_QUOTE = re.compile(r'\\?"')
_LINE_BREAK = re.compile(r"\\r\\n|\\n|\\r|\r\n|\n|\r")
# What separates the words of a line: a URL or path with a query is one of them.
_WORD_BREAK = re.compile(r"([\s\"'<>]+)")
# Credential headers wherever a line quotes them: the scheme stays, the rest is masked.
_AUTHORIZATION = re.compile(r"(?i)\b((?:Proxy-)?Authorization:[ \t]*[A-Za-z0-9._~+/-]+)[ \t]+[^\s\"',;]+")
_COOKIE = re.compile(r"(?i)\b((?:Set-)?Cookie:)[^\"\r\n\\]+")
# A credential without its header's name: HAProxy logs captured headers as `{Basic dXNl...}`.
_SCHEME_TOKEN = re.compile(r"(?i)(?<![\w-])(Basic|Bearer)[ \t]+[A-Za-z0-9+/=._~-]{6,}")


def mask_log_text(text: str, all_client: bool = False) -> str:
    """`text` (a log record, or with `all_client` a field that is wholly the client's
    bytes) with every credential in its client text masked."""
    pieces = _QUOTE.split(text)
    quotes = _QUOTE.findall(text)
    out: list[str] = []
    secrets: set[str] = set()
    for index, piece in enumerate(pieces):
        client = all_client or index > 0
        out.append(_mask_piece(piece, client, secrets))
        if index < len(quotes):
            out.append(quotes[index])
    masked = "".join(out)
    return scrub(masked, sorted(secrets, key=len, reverse=True)) if secrets else masked


def _mask_piece(piece: str, client: bool, secrets: set[str]) -> str:
    """One stretch between quotes: its lines masked; the credentials its lines carry,
    as the recognisers see them, added to `secrets`."""
    lines = _LINE_BREAK.split(piece)
    breaks = _LINE_BREAK.findall(piece)
    if client or len(lines) > 1:
        secrets |= client_secrets("\r\n".join(lines[0 if client else 1 :]).encode("utf-8", "surrogateescape"))
    out: list[str] = []
    for index, line in enumerate(lines):
        out.append(_mask_line(line) if client or index > 0 else _mask_anywhere(line))
        if index < len(breaks):
            out.append(breaks[index])
    return "".join(out)


def _mask_line(line: str) -> str:
    """A line of client text: a command's credentials, then what may stand anywhere."""
    text = line.lstrip()
    if not text:
        return line
    return _mask_anywhere(line[: len(line) - len(text)] + mask_client_line(text))


def _mask_anywhere(text: str) -> str:
    """Query values, Authorization and Cookie values wherever they stand in `text`."""
    if "?" in text and "=" in text:  # a URL's query values may be tokens (access_token=...)
        text = "".join(mask_target(word) if "?" in word and "=" in word else word for word in _WORD_BREAK.split(text))
    for pattern in (_AUTHORIZATION, _COOKIE, _SCHEME_TOKEN):
        text = pattern.sub(lambda match: f"{match.group(1)} {MASK}", text)
    return text
