"""PD101-PD103, PD106, PD109, PD110, PD203, PD206, PD209, PD301-PD304, PD401, PD403 judged from hops, whatever
showed them: one rule per code.

A proxy configuration, a log and a probe build `Hop`s (facts/hop.py); each rule here reads
them and returns a typed hit. The sentence is written from the hop's fields through
`Names`, so `--anonymize` renames addresses, paths and quoted text before any text exists.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import ClassVar

from proxydiag.facts.hop import Cite, Hop, Party
from proxydiag.rules.base import Lowered
from proxydiag.rules.said import Names, Said, endpoint

MAX_REPLIES = 3


def told_cite(names: Names, cite: Cite) -> str:
    """`haproxy.cfg:5`, the path through `names` (the line's text stays in the evidence)."""
    if cite.path is None:
        return names.text(cite.text)
    return f"{names.path(cite.path)}:{cite.line}" if cite.line is not None else names.path(cite.path)


def told_party(names: Names, party: Party, default: str) -> str:
    """A sender or listener in words: its software and name, where it is, and for which
    connections a map chooses it."""
    head = " ".join(part for part in (party.software, "listener" if party.name is not None else None,
                                       repr(names.text(party.name)) if party.name is not None else None) if part)
    where = ([endpoint(names, party.address, party.port)] if party.address else
             [f"port {party.port}"] if party.port is not None else [])
    if party.chosen_for:
        where.append(names.text(party.chosen_for))
    if party.at is not None and not head:
        head = told_cite(names, party.at)
    if not head:
        head = default if not where else ""
    if not where:
        return head
    return f"{head} ({', '.join(where)})" if head else ", ".join(where)


def counted(hop: Hop) -> str:
    """How many connections (log lines) the hop stands for, where evidence counts them."""
    return f" ({hop.provenance.count} connection(s))" if hop.provenance.kind in ("log", "capture") else ""


@dataclass(frozen=True)
class HopHit:
    """One rule firing on one hop."""

    code: str
    said: Said
    hop: Hop
    lowered: Lowered | None = None


@dataclass(frozen=True)
class HopSaid(Said):
    """A hit on a hop: its sender and listener in words, where the evidence does not name them
    the defaults of the hit kind."""

    hop: Hop
    UNNAMED: ClassVar[tuple[str, str]] = ("the proxy", "the listener")  # the sender, the listener

    def message(self, names: Names) -> str:
        sender, listener = self.UNNAMED
        return self.told(told_party(names, self.hop.sender, sender), told_party(names, self.hop.listener, listener),
                         names)

    @abstractmethod
    def told(self, sender: str, listener: str, names: Names) -> str:
        """The sentence, given the sender and the listener in words."""


@dataclass(frozen=True)
class MissingHeaderSaid(HopSaid):
    UNNAMED = ("the peer", "the listener")

    def told(self, sender: str, listener: str, names: Names) -> str:
        hop = self.hop
        expects = ("expects one from it if it connects from one of the listener's trusted networks"
                   if hop.inferred else "expects one from it")
        tls = " (implicit TLS)" if hop.tls else ""
        note = (" The bytes did not parse: no header at all, or a malformed one (PD103); a capture tells them apart."
                if hop.unparsed else "")
        return (f"{sender} sends no PROXY header{tls} to {listener}, which {expects}{counted(hop)}: the listener "
                f"waits for a header and the session hangs without a greeting.{note}")


@dataclass(frozen=True)
class ExpectsHeaderFromClientSaid(HopSaid):
    UNNAMED = ("mail clients and MTAs", "the proxy")

    def told(self, sender: str, listener: str, names: Names) -> str:
        hop = self.hop
        from_whom = " (only from the sources it trusts: a balancer in front?)" if hop.inferred else ""
        sends = "send" if hop.sender == Party() else "sends"
        return (f"{listener} expects a PROXY header from whoever connects{from_whom}, but {sender} {sends} none"
                f"{counted(hop)}, so the proxy refuses them. It should send headers to the server, not accept them "
                "(unless a load balancer in front sends them: give its configuration too).")


@dataclass(frozen=True)
class UnexpectedHeaderSaid(HopSaid):
    def told(self, sender: str, listener: str, names: Names) -> str:
        hop = self.hop
        why = (f"whose trusted networks do not hold the sender's address {names.address(hop.sender.address)}"
               if hop.sender.address else "which trusts no proxy from there")
        return (f"{sender} sends a {hop.sends} PROXY header to {listener}, {why}{counted(hop)}: the listener reads "
                f"the header as protocol data ({answer_to_a_header(hop, names)}).")


def answer_to_a_header(hop: Hop, names: Names) -> str:
    """What the listener said to the header's bytes, or what Stalwart says to them
    (references.md, "When the peer is not trusted")."""
    if hop.replies:
        return "it answered " + "; ".join(repr(names.text(reply)) for reply in hop.replies[:MAX_REPLIES])
    if hop.listener_implicit_tls:
        return "the TLS handshake fails on it: \"received corrupt message of type InvalidContentType\""
    protocol = (hop.protocol or "").lower()
    if protocol in ("smtp", "lmtp"):
        return ("it greets, answers 500 5.5.1 three times and says 221 Bye (the v2 signature holds QUIT)"
                if hop.sends == "v2" else "it answers 500 5.5.1 to the header line, and the session goes on")
    return {"imap": "IMAP answers BAD [PARSE]", "pop3": "POP3 answers -ERR", "http": "HTTP reads it as a broken request",
            "https": "HTTP reads it as a broken request"}.get(protocol, "it reads the header as commands")


@dataclass(frozen=True)
class WaitsForClientSaid(HopSaid):
    UNNAMED = ("the proxy", "the proxy")

    def told(self, sender: str, listener: str, names: Names) -> str:
        return (f"{listener} connects to the server (or greets) only after its client's first bytes, but clients of a "
                "server-speaks-first protocol wait for the greeting: sessions stall until the client gives up (or "
                "for ever).")


@dataclass(frozen=True)
class CheckWithoutHeaderSaid(HopSaid):
    UNNAMED = ("a proxy", "the listener")

    def told(self, sender: str, listener: str, names: Names) -> str:
        hop = self.hop
        every = f" every {hop.period_seconds:g} s" if hop.period_seconds is not None else ""
        return (f"Health checks of {sender} connect to {listener}{every} without a PROXY header, where one is required"
                f"{counted(hop)}: each check is a failed connection in Stalwart's log and counts towards banning the "
                "checker's address.")


@dataclass(frozen=True)
class MxPortRemappedSaid(HopSaid):
    UNNAMED = ("", "an SMTP listener")

    def told(self, sender: str, listener: str, names: Names) -> str:
        hop = self.hop
        front = f" ({sender})" if sender else ""
        own = "" if hop.listener.port is not None else " bound to another port"
        refused = " (its log shows MX mail asked to authenticate)" if hop.provenance.kind == "log" else ""
        return (f"Public port 25{front} reaches {listener}{own}{refused}{counted(hop)}. Stalwart's default rules test the "
                "listener's own port: with it not 25, inbound MX mail must authenticate (503 5.5.1) and SPF/DMARC/iprev "
                "are skipped.")


@dataclass(frozen=True)
class TemplateSaid(HopSaid):
    """A hit kind whose sentences name only the sender, the listener and how many connections:
    `TEMPLATES[self.which()]`."""

    TEMPLATES: ClassVar[tuple[str, ...]] = ("",)

    def which(self) -> int:
        return 0

    def told(self, sender: str, listener: str, names: Names) -> str:
        return self.TEMPLATES[self.which()].format(sender=sender, listener=listener, counted=counted(self.hop))


@dataclass(frozen=True)
class PlaintextToTlsSaid(TemplateSaid):
    TEMPLATES = ("{sender} terminates TLS and forwards plaintext to {listener}, which expects TLS from the first byte: the "
                "handshake fails.",)


@dataclass(frozen=True)
class TlsFlagImpossibleSaid(TemplateSaid):
    TEMPLATES = ("{sender} terminates TLS and sends a v1 header to {listener}, which cannot say so: Stalwart treats these "
                "clients as plaintext (STARTTLS offered again, AUTH PLAIN/LOGIN refused).",)


@dataclass(frozen=True)
class UntrustedSourceSaid(TemplateSaid):
    TEMPLATES = ("{sender} sends a PROXY header to {listener}, whose trusted networks do not hold the sender's address: "
                 "Stalwart will refuse the header and read it as protocol data.",)


@dataclass(frozen=True)
class TlsToPlaintextSaid(HopSaid):
    def told(self, sender: str, listener: str, names: Names) -> str:
        how = "passes its clients' TLS through to it" if self.hop.passthrough else "speaks TLS to it"
        return f"TLS reaches {listener}, which does not do implicit TLS: {sender} {how}."


@dataclass(frozen=True)
class TlsFlagLostSaid(TemplateSaid):
    TEMPLATES = (
        "{sender} terminates TLS but its v2 header to {listener} carries no SSL TLV: Stalwart treats these clients as "
        "plaintext (STARTTLS offered again, AUTH PLAIN/LOGIN refused).",
        "{listener} offers the same with the SSL TLV (client used TLS) as without it, STARTTLS included: it ignores the "
        "header's TLS flag, so behind a TLS-terminating proxy it takes every client for a plaintext one.")

    def which(self) -> int:
        return int(self.hop.tlv_ignored)


@dataclass(frozen=True)
class DuplicateHeaderSaid(TemplateSaid):
    UNNAMED = ("a proxy in front", "the proxy")
    TEMPLATES = (
        "{listener} answers a PROXY header from its client as commands: right for a public port, but a proxy put in front "
        "of it that sends headers (a chain) would have them read as mail commands behind its own header; the inner proxy "
        "must then accept them.",
        "Two hops add a header: {sender} sends one to {listener}, which does not accept it and adds its own: the server "
        "gets the outer header as data after the inner one.")

    def which(self) -> int:
        return int(bool(self.hop.adds_header))


@dataclass(frozen=True)
class RefusedSaid(TemplateSaid):
    UNNAMED = ("this host", "the listener")
    TEMPLATES = (
        "{listener} cut every connection from {sender} without a greeting, with and without a header: it takes "
        "connections (headers) only from other sources (e.g. Dovecot's haproxy_trusted_networks), or has banned this "
        "host.",
        "{listener} has banned the proxy's own address {sender}{counted}: protocol errors counted against the proxy "
        "(headers missing or ignored) lead to this; every client behind the proxy is cut off.")

    def which(self) -> int:
        return int(self.hop.banned)


@dataclass(frozen=True)
class MalformedHeaderSaid(TemplateSaid):
    UNNAMED = ("the sender", "the listener")
    TEMPLATES = ("{sender} sends a malformed PROXY header to {listener}{counted}: the listener refuses it.",)


@dataclass(frozen=True)
class LocalCommandSaid(TemplateSaid):
    UNNAMED = ("a proxy", "the listener")
    TEMPLATES = (
        "{sender} sends v2 LOCAL headers (its own connections, health checks) to {listener}{counted}.",
        "{listener} takes a v2 PROXY header but not a v2 LOCAL one: health checks that send LOCAL headers fail "
        "against it.")

    def which(self) -> int:
        return int(self.hop.refuses_local)


def header_malformed(hop: Hop) -> bool:
    """The sender's header breaks the spec: a capture's parser shows where, a proxy's log says
    so. The probe cannot show it (it sends only well-formed headers), nor Stalwart's log (its
    "invalid proxy header" is also a missing one: PD101, `unparsed`)."""
    return hop.malformed


def local_command(hop: Hop) -> bool:
    """A v2 LOCAL header reaches the listener (a capture sees a proxy's checks send them), or
    the listener refuses one where it takes v2 PROXY (the probe sends both). The logs proxydiag
    reads have no line for a LOCAL header."""
    return hop.sends == "local" or hop.refuses_local


def untrusted_source(hop: Hop) -> bool:
    """A header from a sender whose known address the listener does not trust (a header that
    did not parse is PD103's)."""
    return header_unexpected(hop) and hop.sender.address is not None and not hop.unparsed


def refused(hop: Hop) -> bool:
    """The server refuses every connection of the sender before a word: banned, or trusting others only."""
    return hop.listener_role == "server" and hop.refused_all


def plaintext_to_tls_listener(hop: Hop) -> bool:
    """Plaintext reaches a listener that wants TLS from the first byte: the sender ends its
    clients' TLS and sends on what it decrypted, or a capture saw its plaintext."""
    return bool(hop.listener_implicit_tls) and (hop.terminated or hop.plaintext) and not hop.tls


def tls_to_plaintext_listener(hop: Hop) -> bool:
    """TLS (the sender's own, or its clients' passed through) reaches a listener without implicit TLS."""
    return hop.listener_implicit_tls is False and (hop.tls or hop.passthrough)


def _plain_behind_termination(hop: Hop) -> bool:
    """The listener gets plaintext and a header that parsed: what the header says of TLS is all
    it learns (its accepted STARTTLS tells it the rest)."""
    return (not hop.listener_implicit_tls and not hop.tls and not hop.passthrough and not hop.starttls
            and not hop.unparsed)


def tls_flag_lost(hop: Hop) -> bool:
    """The client's TLS ends at the sender and the listener will not learn it: a v2 header
    without the SSL TLV, or a listener that ignores the TLV."""
    return _plain_behind_termination(hop) and ((hop.terminated and hop.sends == "v2" and not hop.ssl_tlv)
                                               or (hop.ssl_tlv and hop.tlv_ignored))


def tls_flag_impossible(hop: Hop) -> bool:
    """The client's TLS ends at the sender, whose v1 header cannot say so."""
    return _plain_behind_termination(hop) and hop.terminated and hop.sends == "v1"


def duplicate_header(hop: Hop) -> bool:
    """A header reaches a proxy that does not take one and (may) put its own first: the server
    gets two."""
    return (hop.listener_role == "proxy" and hop.sends not in ("none", "local") and hop.expects == "none"
            and hop.adds_header is not False)


def header_missing(hop: Hop) -> bool:
    """The mail server's listener requires a header of this sender, which sends none in its
    clients' sessions (its own checks are PD403's)."""
    return (hop.listener_role == "server" and hop.sends == "none" and hop.expects == "required"
            and not hop.health_check)


def check_without_header(hop: Hop) -> bool:
    """A proxy's health checks reach a listener that requires a header of it, without one."""
    return hop.health_check and hop.sends == "none" and hop.expects == "required"


def mx_port_remapped(hop: Hop) -> bool:
    """Public port 25 reaches an SMTP listener whose own port is another."""
    own = hop.listener.port
    return (hop.public_port == 25 and own != 25 and (own is not None or hop.inferred)
            and (hop.protocol or "").lower() == "smtp")


def header_unexpected(hop: Hop) -> bool:
    """A header reaches the mail server's listener, which does not take one from this sender."""
    return hop.listener_role == "server" and hop.sends != "none" and hop.expects == "none"


def header_demanded_of_clients(hop: Hop) -> bool:
    """A proxy's front requires a header of whoever connects, and its senders send none (a
    malformed one is PD103's)."""
    return hop.listener_role == "proxy" and hop.sends == "none" and hop.expects == "required" and not hop.malformed


def waits_for_client(hop: Hop) -> bool:
    """A proxy forwards only after its client's first bytes, on a protocol where the server
    speaks first (a client opening with TLS speaks first by design)."""
    return hop.waits_for_client and bool(hop.server_speaks_first) and not hop.client_opens_tls


@dataclass(frozen=True)
class HopRule:
    """A code of the catalog judged from one hop: `applies` is its whole predicate; a hop whose
    expectation was guessed gives the page's severity one step lower."""

    code: str
    applies: Callable[[Hop], bool]
    said: Callable[[Hop], Said]
    lowered: Callable[[Hop], Lowered | None] = lambda hop: "inferred" if hop.inferred else None

    def judge(self, hop: Hop) -> HopHit | None:
        if not self.applies(hop):
            return None
        return HopHit(self.code, self.said(hop), hop, self.lowered(hop))


def tlv_conditional(hop: Hop) -> Lowered | None:
    """A listener that ignores the SSL TLV hurts only once a TLS-terminating proxy is in front."""
    return "conditional" if hop.tlv_ignored else None


def chain_conditional(hop: Hop) -> Lowered | None:
    """A proxy that may or may not add its own header: two headers only if it does."""
    return "conditional" if hop.adds_header is None else None


HEALTH_CHECK_WITHOUT_HEADER = HopRule("PD403", check_without_header, CheckWithoutHeaderSaid)
MX_PORT_REMAPPED = HopRule("PD209", mx_port_remapped, MxPortRemappedSaid)
MISSING_HEADER = HopRule("PD101", header_missing, MissingHeaderSaid)
UNEXPECTED_HEADER = HopRule("PD102", header_unexpected, UnexpectedHeaderSaid)
EXPECTS_HEADER_FROM_CLIENT = HopRule("PD109", header_demanded_of_clients, ExpectsHeaderFromClientSaid)
WAITS_FOR_CLIENT = HopRule("PD110", waits_for_client, WaitsForClientSaid)
PLAINTEXT_TO_TLS_LISTENER = HopRule("PD304", plaintext_to_tls_listener, PlaintextToTlsSaid)
TLS_TO_PLAINTEXT_LISTENER = HopRule("PD303", tls_to_plaintext_listener, TlsToPlaintextSaid)
TLS_FLAG_LOST = HopRule("PD301", tls_flag_lost, TlsFlagLostSaid, tlv_conditional)
TLS_FLAG_IMPOSSIBLE = HopRule("PD302", tls_flag_impossible, TlsFlagImpossibleSaid)
DUPLICATE_HEADER = HopRule("PD106", duplicate_header, DuplicateHeaderSaid, chain_conditional)
UNTRUSTED_PROXY_SOURCE = HopRule("PD206", untrusted_source, UntrustedSourceSaid)
SERVER_REJECTED = HopRule("PD401", refused, RefusedSaid)
TLS_RULES = (PLAINTEXT_TO_TLS_LISTENER, TLS_TO_PLAINTEXT_LISTENER, TLS_FLAG_IMPOSSIBLE, TLS_FLAG_LOST)
# Not in HOP_RULES: each kind of evidence shows them in its own way, and a configuration neither
# (its LOCAL checks are by design; PD203 is for what traffic shows).
MALFORMED_HEADER = HopRule("PD103", header_malformed, MalformedHeaderSaid)
LOCAL_COMMAND = HopRule("PD203", local_command, LocalCommandSaid)
HOP_RULES: tuple[HopRule, ...] = (MISSING_HEADER, UNEXPECTED_HEADER, EXPECTS_HEADER_FROM_CLIENT, WAITS_FOR_CLIENT,
                                  HEALTH_CHECK_WITHOUT_HEADER, MX_PORT_REMAPPED, DUPLICATE_HEADER, SERVER_REJECTED, UNTRUSTED_PROXY_SOURCE,
                                  *TLS_RULES)


def judge_hops(hops: Iterable[Hop], rules: Iterable[HopRule] = HOP_RULES) -> Iterator[HopHit]:
    """Every hit of every rule on every hop, hop by hop."""
    chosen = tuple(rules)
    for hop in hops:
        for rule in chosen:
            hit = rule.judge(hop)
            if hit is not None:
                yield hit
