"""The `Opening` family: what the first bytes of each direction of a connection say.

Every field is its own JSON key in `to_dict()`, in declaration order. Client text has
already been masked when it is stored here; `scrub` is the last line of defence for
credentials a server echoes back (some POP3 servers repeat the user name)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from proxydiag.jsontypes import JsonDict
from proxydiag.parsers.protocols.fields import JsonFields
from proxydiag.parsers.protocols.tls import TlsOpening
from proxydiag.parsers.redact import MASK


@dataclass(slots=True)
class Exchange(JsonFields):
    """A server reply and the client command it answered (masked), or None when the
    client's stream holds no command for it (a PROXY header read as commands, TLS bytes)."""

    command: str | None
    reply: str


@dataclass(slots=True)
class Opening(JsonFields):
    protocol: str | None = None  # smtp, lmtp, imap, pop3, managesieve, http; None: unknown
    recognised_from: str | None = None  # server_bytes, client_bytes, alpn, port
    server_port: int | None = None
    implicit_tls_port: bool = False
    # Every direction that carried bytes began with a TLS record.
    tls_from_first_byte: bool = False
    client_sent_tls: bool = False
    server_sent_tls: bool = False
    # The client opened with TLS and the server answered in plain text (a greeting, errors).
    tls_answered_with_plaintext: bool = False
    client_first_line: str | None = None  # None when the client said nothing or spoke TLS
    server_first_line: str | None = None  # None when the server said nothing or spoke TLS
    tls: TlsOpening | None = None
    software: JsonDict | None = None


@dataclass(slots=True)
class MailOpening(Opening):
    """SMTP, LMTP, IMAP, POP3 and ManageSieve: a greeting, capabilities, commands."""

    greeting: str | None = None  # the greeting's text, lines joined by a space
    greeting_code: str | None = None  # 220, OK, PREAUTH, BYE, +OK, -ERR, NO ...
    greeting_refused: bool = False
    capabilities: list[str] = field(default_factory=list)
    starttls_offered: bool | None = None  # None: no capability list was seen
    auth_mechanisms: list[str] = field(default_factory=list)
    starttls_requested: bool = False
    starttls_reply: str | None = None
    upgraded: bool = False  # STARTTLS/STLS accepted: the rest of both streams is TLS
    auth_method: str | None = None  # SASL mechanism, or LOGIN / USER / APOP commands
    auth_reply: str | None = None
    commands: list[str] = field(default_factory=list)  # verbs in order; "?" for unknown ones
    first_error: Exchange | None = None
    # Replies to no command of the client's stream, sent before the replies to its
    # commands: a PROXY header (stripped from the client side) read as commands, TLS bytes
    # read as text, or a server hanging up on its own.
    replies_before_commands: list[str] = field(default_factory=list)

    def note_error(self, command: str | None, reply: str) -> None:
        if self.first_error is None:
            self.first_error = Exchange(command, reply)


def scrub(value, secrets: list[str]):
    """`value` with every occurrence of a secret replaced by the mask, longest first."""
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, MASK)
        return value
    if isinstance(value, list):
        return [scrub(item, secrets) for item in value]
    if isinstance(value, dict):
        return {key: scrub(item, secrets) for key, item in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            setattr(value, f.name, scrub(getattr(value, f.name), secrets))
    return value
