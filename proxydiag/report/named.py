"""Where the evidence names hosts and people, for `--anonymize` to learn the names it
hides: host names in text (after a mail reply's code too), the host an SMTP greeting, an
EHLO reply, HELO/EHLO/LHLO or an HTTP Host names, the probe's targets, and the values of a
certificate's distinguished names."""

from __future__ import annotations

import re
from collections.abc import Iterator

from proxydiag.jsontypes import JsonValue
from proxydiag.report.pseudonyms import ip_of

# An escape `visible()` or `printable()` wrote (\x09, \u202e) is not part of the next token.
AFTER = r"(?:(?<=\\x[0-9a-f]{2})|(?<=\\u[0-9a-f]{4})|(?<![\w.]))"

# Where a host name may start: as an address may, or right after a mail reply's code
# (`250-mx1`, `220-mail.example.com`), whose digits and hyphen are not part of it.
HOST_AFTER = AFTER.replace(r"(?<![\w.])", r"(?<=\d{3}-)|(?<![\w.-])") + r"(?!\d{3}-)"
HOSTNAME = re.compile(
    HOST_AFTER + r"(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.)+[A-Za-z][A-Za-z0-9-]{1,62}(?![\w-])"
)
# Where a protocol names a host: an SMTP greeting or EHLO reply (_reply_hosts), HELO/EHLO/
# LHLO, an HTTP Host.
_REPLY_LINE = re.compile(r"(220|250)([ -])([A-Za-z0-9_][\w.-]*)")
_QUOTED_REPLY = re.compile(r"(?<=['\"])" + _REPLY_LINE.pattern)
_LINE_BREAK = re.compile(r"\r?\n|(?:\\x0d)?\\x0a")  # raw, or as an escape shows it
NAMED_HOSTS = (
    re.compile(r"\b(?:EHLO|HELO|LHLO)\s+([A-Za-z0-9_][\w.-]*)", re.I),
    re.compile(r"\bHost:\s*([A-Za-z0-9_][\w.-]*)", re.I),
)
NOT_HOSTS = frozenset({"esmtp", "smtp", "lmtp", "service", "ready", "ok", "mail", "localhost", "error", "unknown"})

QUOTE_PREFIX = re.compile(r"^(?:\S*?:\d+: |\d+(?:\.\d+)? [CS]: )")

# Not host names: file names, the rule ids of header violations (`v2.transport`), Stalwart's
# configuration keys and event ids that findings quote (`server.listener.smtp.proxy.override`,
# `security.ip-blocked`), and any name whose last label has a hyphen (no TLD has one but
# the IDN form `xn--`).
NOT_HOSTNAMES = re.compile(
    r"\.(?:md|txt|toml|json|pcap|pcapng|py|pem|conf|cfg|log|gz|zst|xz)$|^v[12]\."
    r"|^(?:server\.(?:listener|proxy|allowed-ip|http)|http\.use-x-forwarded)(?:\.|$)"
    r"|\.(?!xn--)[^.]*-[^.]*$",
    re.I,
)

def hostnames_in(texts: list[str]) -> set[str]:
    names: set[str] = set()
    for text in texts:
        names.update(name for name in HOSTNAME.findall(text) if not NOT_HOSTNAMES.search(name) and ip_of(name) is None)
        for name in [*_reply_hosts(text), *(found for pattern in NAMED_HOSTS for found in pattern.findall(text))]:
            name = name.rstrip(".-")
            if name and name.lower() not in NOT_HOSTS and ip_of(name) is None and not re.fullmatch(r"[\d.]+", name):
                names.add(name)
    return names


def _reply_hosts(text: str) -> Iterator[str]:
    """The host a mail reply names: the first word of its first line (a 220 greeting, a 250
    EHLO reply), in a line of its own (after a probe's time, a log's file and line) or
    quoted in a sentence. Its continuation lines name none: `250-PIPELINING` is a capability."""
    continued = None  # the code of the line before, when it announced more (`250-`)
    for line in _LINE_BREAK.split(text):
        match = _REPLY_LINE.match(QUOTE_PREFIX.sub("", line, count=1))
        if match and match.group(1) != continued:
            yield match.group(3)
        continued = match.group(1) if match and match.group(2) == "-" else None
    if "'" in text or '"' in text:
        yield from (match.group(3) for match in _QUOTED_REPLY.finditer(text))

def texts_under(value: JsonValue, keys: frozenset[str]) -> Iterator[str]:
    """The strings held under any of `keys` inside `value`."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in keys and isinstance(item, str):
                yield item
            else:
                yield from texts_under(item, keys)
    elif isinstance(value, list):
        for item in value:
            yield from texts_under(item, keys)


# A certificate's distinguished name as the probe reports it (RFC 4514): attributes split at
# unescaped commas and pluses. Every value names someone but the country.
_DN_ATTRIBUTE = re.compile(r"(?:\\.|[^\\,+])+")
DN_KEYS = frozenset({"subject", "issuer"})
PUBLIC_DN_TYPES = frozenset({"C"})


def target_hosts(targets: JsonValue) -> set[str]:
    """The host names of the probe's targets (`mail:25`, `[2001:db8::5]:993`): not addresses."""
    hosts = {str(target.get("target", "")).rpartition(":")[0].strip("[]") for target in targets or []
             if isinstance(target, dict)}
    return {host for host in hosts if host and ip_of(host) is None and ":" not in host}


def names_in_certificates(value: JsonValue) -> Iterator[str]:
    """The attribute values of the certificate names (`subject`, `issuer`) inside `value`."""
    for name in texts_under(value, DN_KEYS):
        for attribute in _DN_ATTRIBUTE.findall(name):
            kind, equals, text = attribute.partition("=")
            if equals and kind.strip() not in PUBLIC_DN_TYPES and len(text) >= 2 and ip_of(text) is None:
                yield text
