"""HTTP/1.x openings: the first request (request line, Host, forwarding headers) and the
first response (status, realm). Credentials in Authorization, Proxy-Authorization,
Cookie and Set-Cookie, in the target's query values and in a URL's user part are masked."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import NamedTuple

from proxydiag.parsers.protocols.base import Opening
from proxydiag.parsers.protocols.text import (
    MAX_ITEMS,
    Cursor,
    Parsed,
    mask_client_line,
    secret_forms,
    show,
)
from proxydiag.parsers.redact import MASK

MAX_HEADERS = 100
# Header name -> Opening field holding its comma-separated values.
FORWARDING_HEADERS = {"forwarded": "forwarded", "x-forwarded-for": "x_forwarded_for", "x-real-ip": "x_real_ip"}
CREDENTIAL_HEADERS = {"authorization": "authorization", "proxy-authorization": "proxy_authorization"}
# Schemes are kept in the masked value: they say what kind of credential was sent.
AUTH_SCHEMES = frozenset(
    {
        "basic",
        "bearer",
        "digest",
        "negotiate",
        "ntlm",
        "hoba",
        "mutual",
        "scram-sha-1",
        "scram-sha-256",
        "vapid",
        "dpop",
        "aws4-hmac-sha256",
        "token",
    }
)

_REQUEST_LINE = re.compile(rb"^([!#$%&'*+.^_`|~0-9A-Za-z-]+) (\S+) (HTTP/\d+(?:\.\d+)?)$")
_STATUS_LINE = re.compile(rb"^(HTTP/\d+(?:\.\d+)?) (\d{3})(?: (.*))?$", re.S)
_HEADER = re.compile(rb"^([!#$%&'*+.^_`|~0-9A-Za-z-]+)[ \t]*:(.*)$", re.S)
_REALM = re.compile(rb'realm\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))', re.I)
_URL_USER = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/?#@]*@")


@dataclass(slots=True)
class HttpOpening(Opening):
    method: str | None = None
    target: str | None = None  # query values and URL user parts masked
    http_version: str | None = None
    host: str | None = None
    forwarded: list[str] = field(default_factory=list)
    x_forwarded_for: list[str] = field(default_factory=list)
    x_real_ip: list[str] = field(default_factory=list)
    authorization: str | None = None  # scheme kept, credentials masked: "Basic ****"
    proxy_authorization: str | None = None
    cookie: str | None = None  # cookie names kept: "sid=****; lang=****"
    status_code: int | None = None
    status_line: str | None = None
    www_authenticate_realm: str | None = None
    server_header: str | None = None
    set_cookie: list[str] = field(default_factory=list)  # "sid=****" per header


class Message(NamedTuple):
    start_line: bytes | None
    headers: list[tuple[str, bytes]]  # (lower-case name, value)


def read_message(data: bytes) -> Message:
    """The start line and header fields, up to the empty line; folded lines joined."""
    cursor = Cursor(data)
    start = cursor.line()
    headers: list[tuple[str, bytes]] = []
    while start is not None and len(headers) < MAX_HEADERS and (line := cursor.line()):
        if line[:1] in (b" ", b"\t") and headers:
            name, value = headers[-1]
            headers[-1] = (name, value + b" " + line.strip())
            continue
        match = _HEADER.match(line)
        if match:
            headers.append((match.group(1).lower().decode("latin-1"), match.group(2).strip(b" \t")))
    return Message(start, headers)


def list_values(value: bytes) -> list[str]:
    """The comma-separated items of a header value; commas inside quoted strings stay."""
    items, start, quoted, escaped = [], 0, False, False
    for index, byte in enumerate(value):
        if escaped:
            escaped = False
        elif quoted and byte == 0x5C:  # backslash: a quoted pair
            escaped = True
        elif byte == 0x22:  # double quote
            quoted = not quoted
        elif byte == 0x2C and not quoted:  # comma
            items.append(value[start:index])
            start = index + 1
    items.append(value[start:])
    return [show(item.strip()) for item in items if item.strip()][:MAX_ITEMS]


def mask_target(target: str) -> str:
    target = _URL_USER.sub(lambda match: f"{match.group('scheme')}{MASK}@", target)
    path, question, query = target.partition("?")
    if not question:
        return target
    masked = [part.split("=", 1)[0] + f"={MASK}" if "=" in part else part for part in query.split("&")]
    return f"{path}?{'&'.join(masked)}"


def mask_authorization(value: bytes) -> tuple[str, set[str]]:
    """The value as shown ("Basic ****") and the credential's forms (Basic decoded too)."""
    words = value.split(None, 1)
    if not words:
        return MASK, set()
    scheme = words[0].decode("latin-1")
    secrets = secret_forms(value)
    if len(words) == 1 or scheme.lower() not in AUTH_SCHEMES:
        return MASK, secrets
    secrets |= secret_forms(words[1])
    if scheme.lower() == "basic":
        secrets |= _basic_parts(words[1])
    return f"{show(words[0])} {MASK}", secrets


def _basic_parts(token: bytes) -> set[str]:
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return set()
    forms = set()
    for part in (decoded, *decoded.split(b":", 1)):
        forms |= secret_forms(part)
    return forms


def mask_cookie(value: bytes) -> tuple[str, set[str]]:
    """A Cookie header as "name=****; ..." and the values' forms."""
    return _masked_pairs(value, value.split(b";"))


def mask_set_cookie(value: bytes) -> tuple[str, set[str]]:
    """A Set-Cookie header as "name=****" (its attributes dropped) and the value's forms."""
    return _masked_pairs(value, value.split(b";", 1)[:1])


def _masked_pairs(value: bytes, pairs: list[bytes]) -> tuple[str, set[str]]:
    shown, secrets = [], secret_forms(value)
    for pair in pairs[:MAX_ITEMS]:
        name, equals, secret = pair.strip().partition(b"=")
        if equals:
            secrets |= secret_forms(secret)
            shown.append(f"{show(name)}={MASK}")
        elif name:
            shown.append(MASK)
    return "; ".join(shown) or MASK, secrets


class _Reader:
    def __init__(self, client: bytes, server: bytes) -> None:
        self.opening = HttpOpening(protocol="http")
        self.client, self.server = client, server
        self.secrets: set[str] = set()
        self.texts: list[tuple[str, str]] = []

    def run(self) -> Parsed:
        self.request(read_message(self.client))
        self.response(read_message(self.server))
        return Parsed(self.opening, frozenset(self.secrets), tuple(self.texts))

    def request(self, message: Message) -> None:
        if message.start_line is None:
            return
        opening = self.opening
        match = _REQUEST_LINE.match(message.start_line)
        if match:
            opening.method, opening.http_version = show(match.group(1)), show(match.group(3))
            opening.target = mask_target(show(match.group(2)))
            opening.client_first_line = f"{opening.method} {opening.target} {opening.http_version}"
        else:
            opening.client_first_line = mask_client_line(show(message.start_line))
        for name, value in message.headers:
            self.request_header(name, value)

    def request_header(self, name: str, value: bytes) -> None:
        opening = self.opening
        if name == "host" and opening.host is None:
            opening.host = show(value)
        elif name in FORWARDING_HEADERS:
            values = getattr(opening, FORWARDING_HEADERS[name])
            values.extend(list_values(value)[: MAX_ITEMS - len(values)])
        elif name in CREDENTIAL_HEADERS:
            shown, secrets = mask_authorization(value)
            setattr(opening, CREDENTIAL_HEADERS[name], shown)
            self.secrets |= secrets
        elif name == "cookie":
            opening.cookie, secrets = mask_cookie(value)
            self.secrets |= secrets

    def response(self, message: Message) -> None:
        if message.start_line is None:
            return
        opening = self.opening
        match = _STATUS_LINE.match(message.start_line)
        if not match:
            return
        opening.status_code = int(match.group(2))
        opening.status_line = show(message.start_line)
        for name, value in message.headers:
            self.response_header(name, value)

    def response_header(self, name: str, value: bytes) -> None:
        opening = self.opening
        if name == "www-authenticate":
            self.texts.append(("WWW-Authenticate header", show(value)))
            realm = _REALM.search(value)
            if realm and opening.www_authenticate_realm is None:
                opening.www_authenticate_realm = show(realm.group(1) if realm.group(1) is not None else realm.group(2))
        elif name == "server" and opening.server_header is None:
            opening.server_header = show(value)
            self.texts.append(("Server header", opening.server_header))
        elif name == "set-cookie" and len(opening.set_cookie) < MAX_ITEMS:
            shown, secrets = mask_set_cookie(value)
            opening.set_cookie.append(shown)
            self.secrets |= secrets


def recognise_http(client: bytes, server: bytes) -> Parsed:
    return _Reader(client, server).run()
