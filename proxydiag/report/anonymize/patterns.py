"""What --anonymize looks for: addresses, host names and header hex in text, the keys whose
strings come from the wire, and the TLVs that identify a client or an account."""

from __future__ import annotations

import ipaddress
import re
from typing import Literal

from proxydiag.parsers import proxy_protocol

# An escape `visible()` or `printable()` wrote (\x09, \u202e) is not part of the next token.
_AFTER = r"(?:(?<=\\x[0-9a-f]{2})|(?<=\\u[0-9a-f]{4})|(?<![\w.]))"
IPV4 = re.compile(_AFTER + r"(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d)")
IPV6 = re.compile(
    r"(?:(?<=IPv6:)|(?<=\\x[0-9a-f]{2})|(?<![\w:.]))(?=[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*:)[0-9A-Fa-f:.]{2,51}(?![\w:])"
)
# Where a host name may start: as an address may, or right after a mail reply's code
# (`250-mx1`, `220-mail.example.com`), whose digits and hyphen are not part of it.
HOST_AFTER = _AFTER.replace(r"(?<![\w.])", r"(?<=\d{3}-)|(?<![\w.-])") + r"(?!\d{3}-)"
HOSTNAME = re.compile(
    HOST_AFTER + r"(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.)+[A-Za-z][A-Za-z0-9-]{1,62}(?![\w-])"
)
# Where a protocol names a host: an SMTP greeting or EHLO reply (learning._reply_hosts), HELO/EHLO/
# LHLO, an HTTP Host.
REPLY_LINE = re.compile(r"(220|250)([ -])([A-Za-z0-9_][\w.-]*)")
LINE_BREAK = re.compile(r"\r?\n|(?:\\x0d)?\\x0a")  # raw, or as an escape shows it
NAMED_HOSTS = (
    re.compile(r"\b(?:EHLO|HELO|LHLO)\s+([A-Za-z0-9_][\w.-]*)", re.I),
    re.compile(r"\bHost:\s*([A-Za-z0-9_][\w.-]*)", re.I),
)
NOT_HOSTS = frozenset({"esmtp", "smtp", "lmtp", "service", "ready", "ok", "mail", "localhost", "error", "unknown"})
HEX_BLOB = re.compile(r"(?<![0-9a-fA-F])(?:[0-9a-f]{2}){6,}(?![0-9a-fA-F])")
# A value cut short by truncation: its last token before the ellipsis could be half an address.
# The cut patterns start only where a token starts and test for a digit, `.` or `:` ahead
# of the token's own characters (`[...]*[0-9.:][...]*` backtracked quadratically in a long
# token); a `.` that opens the final `...` does not count.
CUT_TOKEN = re.compile(r"(?<![0-9A-Za-z_.:\[\]-])(?=[A-Za-z_\[\]-]*[0-9.:](?!\.\.$))[0-9A-Za-z_.:\[\]-]*(?=\.\.\.$)")
# Header hex cut short for a report: its bytes are rewritten like any hex, and a last
# token that may be half a name or an address (as text inside the bytes) is left out.
HEX_BEFORE_CUT = re.compile(r"(?<![0-9A-Za-z_.:\[\]-])(?:[0-9a-f]{2}){6,}\.\.\.$")
CUT_TEXT = re.compile(r"(?<![0-9A-Za-z_.:\[\]-])(?=[A-Za-z_\[\]-]*[0-9.:])[0-9A-Za-z_.:\[\]-]*$")
# Keys whose strings come from the wire or from files (where names appear); findings quote them.
WIRE_KEYS = ("inputs", "connections", "findings", "stalwart_config", "command_line", "logs", "proxy_configs",
             "targets", "options", "endpoints", "servers_recognised")
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
# Keys whose text proxydiag wrote itself (a page's fix, with the capture's addresses put in):
# host names are learned from the wire, not from there (a TOML key would look like one).
OWN_TEXT_KEYS = frozenset({"fix"})
OPAQUE_TLVS = frozenset({"UNIQUE_ID", "CUSTOM", "EXPERIMENT", "FUTURE", "UNASSIGNED", "AWS", "AZURE", "GCP", "NETNS"})
# Cloud TLVs whose first byte names the kind of value (kept: it identifies no one).
SUBTYPED_TLVS = frozenset({proxy_protocol.PP2_TYPE_AWS, proxy_protocol.PP2_TYPE_AZURE})
# Ids the decoder gives as numbers, with the bytes they are on the wire (references.md):
# Azure's private endpoint link id is 4 bytes little-endian, GCP's PSC connection id 8 big-endian.
FIXED_WIDTH_IDS: dict[str, tuple[int, Literal["little", "big"]]] = {
    "private_endpoint_link_id": (4, "little"),
    "psc_connection_id": (8, "big"),
}


def ip_of(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address `text` spells, zero-padded IPv4 (010.000.000.001) included."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    parts = text.split(".")
    if len(parts) == 4 and all(part.isdigit() and int(part) <= 255 for part in parts):
        return ipaddress.IPv4Address(".".join(str(int(part)) for part in parts))
    return None


def ipv6_of(token: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IPv6 address in `token`, which may carry a :port (`fd12::25:10025`)."""
    if is_ip(token):
        ip = ipaddress.ip_address(token)
        return ip if ip.version == 6 else None
    head, _, port = token.rpartition(":")
    if port.isdigit() and is_ip(head) and ipaddress.ip_address(head).version == 6:
        return ipaddress.ip_address(head)
    return None


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def opaque_tlv_spans(blob: bytes) -> list[tuple[int, int]]:
    """Where the identifying bytes of the opaque TLVs lie in a header's bytes, a value cut
    short by truncation included; a cloud TLV's subtype byte is not one of them."""
    found = []
    for tlv_type, start, stop in proxy_protocol.tlv_spans(blob):
        begin, end = start + (tlv_type in SUBTYPED_TLVS), min(stop, len(blob))
        if proxy_protocol.tlv_name(tlv_type) in OPAQUE_TLVS and begin < end:
            found.append((begin, end))
    return found
