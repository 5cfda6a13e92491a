"""Which server software spoke, from its own words. `certain` only when the product's name
appears literally; the other signatures are phrasings a product uses by default, so they
only say the text resembles it. Either way an administrator may have changed a greeting
(Stalwart's and Postfix's are configurable): the claim says what the text names, not what
the server is."""

from __future__ import annotations

import functools
import re
from typing import Iterable, NamedTuple

from proxydiag.jsontypes import JsonDict


class Signature(NamedTuple):
    name: str
    pattern: re.Pattern[str]
    certain: bool


def _named(name: str, *patterns: str) -> list[Signature]:
    return [Signature(name, re.compile(pattern), True) for pattern in patterns]


def _resembling(name: str, *patterns: str) -> list[Signature]:
    return [Signature(name, re.compile(pattern), False) for pattern in patterns]


STALWART_PROXY = "Stalwart proxy"  # the name of its section on the finding pages

# Most specific phrases first; a bare product name last (not when it starts a host name).
SIGNATURES: tuple[Signature, ...] = (
    *_named(
        "Stalwart",
        r"Stalwart (?:ESMTP|LMTP|IMAP4rev2|POP3|ManageSieve) at your service\.?",
        r'"IMPLEMENTATION" "Stalwart[^"]*"',
        r"IMPLEMENTATION Stalwart[^\r\n]*",
        r'realm="Stalwart[^"]*"',
    ),
    *_named(
        "Postfix",
        r"ESMTP Postfix(?: \([^)]*\))?",
    ),
    *_named(
        "Dovecot",
        r'"IMPLEMENTATION" "Dovecot[^"]*"',
        r"Dovecot(?: \([^)]*\))? ready\.?",
    ),
    *_named(
        "Exim",
        r"ESMTP Exim(?: [\w.]+)?",
    ),
    *_named(
        "Microsoft Exchange",
        r"Microsoft ESMTP MAIL Service(?: ready)?",
        r"The Microsoft Exchange (?:IMAP4|POP3) service is ready\.?",
        r"Microsoft Exchange(?: Server)?(?: \d+)?(?: (?:IMAP4|POP3))?",
    ),
    *_named(
        "Sendmail",
        r"ESMTP Sendmail [\w./-]+",
    ),
    *_named(
        "Courier",
        r"Courier-(?:IMAP|POP3|MTA) ready\.?",
    ),
    *_named(
        "Cyrus",
        r"Cyrus (?:IMAP|POP3)(?:4)?(?: Murder)?(?: v?[\w.+-]+)?(?: server ready)?",
        r'"IMPLEMENTATION" "Cyrus[^"]*"',
    ),
    *_named("Stalwart", r"\bStalwart(?: Mail Server| Server)?\b(?!\.\w)"),
    *_named("Postfix", r"\bPostfix\b(?!\.\w)"),
    *_named("Dovecot", r"\bDovecot\b(?!\.\w)"),
    *_named("Exim", r"\bExim\b(?!\.\w)"),
    *_named("Sendmail", r"\bSendmail\b(?!\.\w)"),
    *_named("Courier", r"\bCourier(?:-IMAP|-POP3|-MTA)\b"),
    *_named("Cyrus", r"\bCyrus\b(?!\.\w)"),
    # Stalwart's own proxy (stalwartlabs/proxy v1.0.0) greets submission clients itself, by
    # default in Stalwart's words without the name: src/proto/smtp.rs:111 `220 {hostname} ESMTP
    # {banner}` with src/config/mod.rs:622 `at your service.`; src/proto/smtp.rs:386 its EHLO
    # reply `{hostname} at your service, [{client_host}]` (Stalwart's says "you had me at EHLO").
    # Its IMAP, POP3 and ManageSieve greetings are Stalwart's own words (mod.rs:493, 650, 585).
    *_resembling(
        STALWART_PROXY,
        r"^(?:220 )?\S+ ESMTP at your service\.$",
        r"\S+ at your service, \[[^\]\s]*\]",
    ),
    *_resembling(
        "Stalwart",
        r"\b(?:ESMTP|LMTP|IMAP4rev2|POP3|ManageSieve) at your service\.?",
        r"you had me at (?:EHLO|HELO|LHLO)",
        r"500 5\.5\.1 Invalid command\.",
    ),
    *_resembling(
        "Postfix",
        r"5\.5\.2 Error: (?:bad syntax|command not recognized)",
        r"Error: send HELO/EHLO first",
    ),
    *_resembling(
        "Dovecot",
        r"Pre-login capabilities listed, post-login capabilities have more\.",
        r"Plaintext authentication disallowed on non-secure \(SSL/TLS\) connections\.",
    ),
    *_resembling("Courier", r"^\+OK Hello there\.$"),
)


def identify(texts: Iterable[tuple[str, str]], protocol: str | None = None) -> JsonDict | None:
    """The first product whose signature matches, certain ones before resemblances.
    `texts` are (where, text) pairs in the order they should be trusted."""
    texts = list(texts)
    for certain in (True, False):
        for where, text in texts:
            found = _first_signature(text, certain)
            if found is not None:
                signature, evidence = found
                return _finding(signature, evidence, where, protocol)
    return None


@functools.lru_cache(maxsize=4096)
def _first_signature(text: str, certain: bool) -> tuple[Signature, str] | None:
    """The first signature of that certainty the text matches, and what it matched: every
    signature is searched for in a text that names none (an unknown server's greeting and
    replies, the same on thousands of connections), so each text is searched once."""
    for signature in SIGNATURES:
        if signature.certain == certain and (match := signature.pattern.search(text)):
            return signature, match.group(0)
    return None


PROTOCOL_NAMES = {"smtp": "SMTP", "lmtp": "LMTP", "imap": "IMAP", "pop3": "POP3", "managesieve": "ManageSieve"}


def _finding(signature: Signature, evidence: str, where: str, protocol: str | None) -> JsonDict:
    place = f"{PROTOCOL_NAMES[protocol]} {where}" if protocol in PROTOCOL_NAMES else where
    verb = "names" if signature.certain else "resembles"
    suffix = "" if signature.certain else "'s"
    return {
        "name": signature.name,
        "evidence": evidence,
        "certain": signature.certain,
        "claim": f"the {place} {verb} {signature.name}{suffix}",
    }
