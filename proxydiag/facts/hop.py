"""The central fact, whatever showed it: a hop from a sender to a listener.

A capture, a proxy configuration, a log line and a probe step each show a hop: who sends
(an ordinary client, or a proxy), the header it puts first (none, v1, v2, LOCAL), TLS on
the way, what the listener expects of this sender and the service behind it. Each hop
keeps its `Provenance`: the frames, the configuration lines, the log lines or the probe
steps it was read from. The rules judge hops; the readers only build them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from proxydiag.services import Service

ListenerRole = Literal["proxy", "server"]  # a proxy's front, or the mail server (or a proxy standing for it)
Sent = Literal["none", "v1", "v2", "local"]
Expects = Literal["required", "optional", "none"]
EvidenceKind = Literal["capture", "config", "log", "probe"]


@dataclass(frozen=True)
class Cite:
    """One place the fact was read from: a file (a capture, a configuration, a log) and its
    line, with the text there; or a probe step (no file) and what it showed."""

    path: str | None
    line: int | None
    text: str = ""

    def plain(self) -> str:
        where = f"{self.path}:{self.line}" if self.path is not None and self.line is not None else self.path or ""
        return f"{where}: {self.text}" if where and self.text else where or self.text


@dataclass(frozen=True)
class Provenance:
    """Where a hop was read: the kind of evidence and its citations, first the one that decides."""

    kind: EvidenceKind
    cites: tuple[Cite, ...] = ()
    count: int = 1  # connections (or log lines) the hop stands for

    def cited(self) -> list[str]:
        return [cite.plain() for cite in self.cites]


@dataclass(frozen=True)
class Party:
    """A sender or a listener, as the evidence names it: an address and port, a name (a
    Stalwart listener id, a proxy's frontend, a configuration line), and for which
    connections where a map chooses it ("SNI mail.example.com")."""

    address: str | None = None
    port: int | None = None
    name: str | None = None  # a listener id, a frontend, a server block
    software: str | None = None  # Stalwart, HAProxy, nginx, ... where known
    at: Cite | None = None  # the configuration line that makes it
    chosen_for: str | None = None


@dataclass(frozen=True)
class Hop:
    """A sender and a listener, as one kind of evidence showed them: the header the sender puts
    first, what the listener expects of this sender (its trust decides it for Stalwart), TLS on
    the way, and the listener's service facts. A field the evidence does not show keeps its
    default (None: unknown)."""

    sender: Party
    listener: Party
    listener_role: ListenerRole
    sends: Sent
    expects: Expects | None  # of this sender; None: unknown
    provenance: Provenance
    inferred: bool = False  # what decides was guessed (the sender's address unknown to the listener's trust, ...)
    ssl_tlv: bool = False  # the header says the client used TLS
    listener_implicit_tls: bool | None = None
    server_speaks_first: bool | None = None  # the service behind the listener greets first
    client_opens_tls: bool = False  # the client's first bytes are a TLS ClientHello (implicit TLS not terminated)
    waits_for_client: bool = False  # the listener (a proxy) forwards only after its client's first bytes
    protocol: str | None = None  # the listener's protocol (smtp, imap, ...) where known
    service: Service | None = None  # the listener's port in the service table
    unparsed: bool = False  # bytes came that did not parse: no header, or a malformed one
    malformed: bool = False  # what the sender put first was a header that breaks the spec (a parser's or a proxy's word)
    refuses_local: bool = False  # the listener takes the sender's v2 PROXY header but refuses a v2 LOCAL one
    tls: bool = False  # the sender speaks TLS to the listener itself (its own handshake)
    starttls: bool = False  # the sender's STARTTLS was accepted after the header: the listener knows TLS is on
    plaintext: bool = False  # the sender's first bytes after the header were plaintext (a capture saw them)
    replies: tuple[str, ...] = ()  # the listener's answers to the header's bytes, as it wrote them
    health_check: bool = False  # the sender's own checks (connect, or LOCAL), not clients' sessions
    period_seconds: float | None = None  # the checks' interval, where the evidence shows it
    public_port: int | None = None  # the port the clients reached in front (the header's destination)
    terminated: bool = False  # the sender (a proxy) ends its clients' TLS and sends on what it decrypted
    passthrough: bool = False  # the sender passes its clients' TLS through (so the listener gets TLS)
    tlv_ignored: bool = False  # the listener answers the same with the SSL TLV as without it
    adds_header: bool | None = None  # the listener (a proxy) sends a header of its own onward; None: unknown
    refused_all: bool = False  # the listener cut every connection of the sender before any greeting
    banned: bool = False  # it said why: it banned the sender's address
