"""What the opening of a connection says, protocol by protocol.

`recognise(client, server, server_port)` takes the first bytes of each direction of one
TCP connection (any PROXY header already removed from the client's side) and returns an
`Opening`: the protocol (from the bytes first, the port second), the greeting and
capabilities, STARTTLS, authentication (always masked), the first error and what
provoked it, the TLS handshake as far as it is readable, and the server software.

Pure: no I/O, and no bytes make it raise. Nothing a client sends as a credential (AUTH
payloads and SASL continuations, LOGIN, USER, PASS and APOP arguments, Authorization and
Cookie values) appears anywhere in the result."""

from __future__ import annotations

import re

from proxydiag.parsers.protocols import software
from proxydiag.parsers.protocols.base import Exchange, MailOpening, Opening, scrub
from proxydiag.parsers.protocols.http import HttpOpening, recognise_http
from proxydiag.parsers.protocols.imap import ImapOpening, recognise_imap
from proxydiag.parsers.protocols.pop3 import Pop3Opening, recognise_pop3
from proxydiag.parsers.protocols.sieve import SieveOpening, recognise_sieve
from proxydiag.parsers.protocols.smtp import SmtpOpening, recognise_smtp
from proxydiag.parsers.protocols.text import Cursor, Parsed, mask_client_line, show
from proxydiag.parsers.protocols.tls import Alert, ClientHello, ServerHello, TlsOpening, client_alpn, read_tls, starts_with_tls
from proxydiag.parsers.redact import first_line, secret_at
from proxydiag.services import DEFAULT_TABLE, ServiceTable

__all__ = [
    "Alert",
    "ClientHello",
    "Exchange",
    "HttpOpening",
    "ImapOpening",
    "MailOpening",
    "Opening",
    "Pop3Opening",
    "ServerHello",
    "SieveOpening",
    "SmtpOpening",
    "TlsOpening",
    "client_secrets",
    "recognise",
]

# (pattern, protocol): what the server's first bytes look like.
SERVER_SIGNATURES = (
    (re.compile(rb"^\d{3}(?:[ -]|\r?\n|$)"), "smtp"),
    (re.compile(rb"^\* (?:OK|PREAUTH|BYE)\b", re.I), "imap"),
    (re.compile(rb"^(?:\+OK|-ERR)(?=[\s\[]|$)", re.I), "pop3"),
    (re.compile(rb'^"[A-Za-z0-9-]+"(?: |\r?\n|$)'), "managesieve"),
    (re.compile(rb'^(?:OK|NO|BYE)(?: \([^)]*\))? "', re.I), "managesieve"),
    (re.compile(rb"^HTTP/\d"), "http"),
)
# What the client's first bytes look like, for when the server said nothing telling.
CLIENT_SIGNATURES = (
    (re.compile(rb"^[!#$%&'*+.^_`|~0-9A-Za-z-]+ \S+ HTTP/\d+(?:\.\d+)?(?:\r?\n|$)"), "http"),
    (re.compile(rb"^LHLO\b", re.I), "lmtp"),
    (re.compile(rb"^(?:EHLO|HELO)\b", re.I), "smtp"),
    (re.compile(rb"^(?!AUTH )[^\s*+\"]+ (?:CAPABILITY|STARTTLS|LOGIN|AUTHENTICATE|ID|NOOP|LOGOUT)\b", re.I), "imap"),
    (re.compile(rb"^(?:CAPA|STLS|USER|APOP)\b", re.I), "pop3"),
)
ALPN_PROTOCOLS = {
    "imap": "imap",
    "pop3": "pop3",
    "managesieve": "managesieve",
    "http/1.0": "http",
    "http/1.1": "http",
    "h2": "http",
}
_LMTP_GREETING = re.compile(rb"^\d{3}[ -][^\r\n]*\bLMTP\b")

RECOGNISERS = {
    "smtp": recognise_smtp,
    "lmtp": lambda client, server: recognise_smtp(client, server, "lmtp"),
    "imap": recognise_imap,
    "pop3": recognise_pop3,
    "managesieve": recognise_sieve,
    "http": recognise_http,
}


def choose_protocol(client_text: bytes, server_text: bytes, client: bytes, port: int | None,
                    services: ServiceTable = DEFAULT_TABLE) -> tuple[str | None, str | None]:
    """(protocol, what told it): the server's bytes, the client's, ALPN, then the port."""
    port_protocol = services.protocol(port)
    for pattern, protocol in SERVER_SIGNATURES:
        if pattern.match(server_text):
            if protocol == "smtp" and _is_lmtp(client_text, server_text, port_protocol):
                protocol = "lmtp"
            return protocol, "server_bytes"
    for pattern, protocol in CLIENT_SIGNATURES:
        if pattern.match(client_text):
            return protocol, "client_bytes"
    for name in client_alpn(client):
        if name in ALPN_PROTOCOLS:
            return ALPN_PROTOCOLS[name], "alpn"
    if port_protocol is not None:
        return port_protocol, "port"
    return None, None


def _is_lmtp(client_text: bytes, server_text: bytes, port_protocol: str | None) -> bool:
    return client_text[:4].upper() == b"LHLO" or port_protocol == "lmtp" or bool(_LMTP_GREETING.match(server_text))


def recognise(client: bytes, server: bytes, server_port: int, services: ServiceTable = DEFAULT_TABLE) -> Opening:
    """The opening of one connection; `client` starts after any PROXY header."""
    client, server = bytes(client or b""), bytes(server or b"")
    client_tls, server_tls = starts_with_tls(client), starts_with_tls(server)
    client_text = b"" if client_tls else client
    server_text = b"" if server_tls else server
    protocol, source = choose_protocol(client_text, server_text, client, server_port, services)
    parsed = RECOGNISERS[protocol](client_text, server_text) if protocol else Parsed(Opening())
    opening = parsed.opening
    opening.protocol, opening.recognised_from, opening.server_port = protocol, source, server_port
    opening.implicit_tls_port = services.implicit_tls(server_port)
    opening.client_sent_tls, opening.server_sent_tls = client_tls, server_tls
    spoken = [started_tls for data, started_tls in ((client, client_tls), (server, server_tls)) if data]
    opening.tls_from_first_byte = bool(spoken) and all(spoken)
    opening.tls_answered_with_plaintext = client_tls and bool(server) and not server_tls
    opening.server_first_line = first_line(server) if server_text else None
    if client_text and opening.client_first_line is None:
        # A first line can never be a SASL continuation: show it, masked like any command.
        opening.client_first_line = mask_client_line(show(Cursor(client_text).line() or b""))
    opening.tls = read_tls(
        _tls_part(client, client_tls, parsed.client_tls_from), _tls_part(server, server_tls, parsed.server_tls_from)
    )
    texts = parsed.server_texts
    if not texts and opening.server_first_line:
        texts = (("first line", opening.server_first_line),)
    opening.software = software.identify(texts, protocol)
    if not parsed.secrets:
        return opening
    return scrub(opening, sorted(parsed.secrets, key=len, reverse=True))


def client_secrets(client: bytes, services: ServiceTable = DEFAULT_TABLE) -> frozenset[str]:
    """The credentials the recognisers find in a client's bytes seen without the server's
    (quoted in a log): by the protocol the bytes show, else, when a command that carries a
    credential stands in them, by every mail protocol's."""
    protocol, _ = choose_protocol(client, b"", client, None, services)
    if protocol is not None:
        return RECOGNISERS[protocol](client, b"").secrets
    if secret_at(client) is None:
        return frozenset()
    return frozenset().union(*(RECOGNISERS[name](client, b"").secrets for name in ("smtp", "imap", "pop3", "managesieve")))


def _tls_part(data: bytes, started_tls: bool, upgraded_at: int | None) -> bytes:
    if started_tls:
        return data
    return data[upgraded_at:] if upgraded_at is not None else b""
