"""The pure half of `proxydiag probe`: targets, the plan of connections, the bytes each
step sends, when a reply is complete, and what each step's outcome says.

No I/O here: `probe.py` talks to the listener and hands the bytes to these functions."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from proxydiag.parsers.proxy_protocol import PP2_TYPE_SSL, build_ssl_value, build_v1, build_v2
from proxydiag.services import DEFAULT_TABLE, Service

# Documentation addresses (RFC 5737, RFC 3849): the client and server a probe's header names.
DOC_CLIENT_V4, DOC_SERVER_V4 = "192.0.2.1", "192.0.2.10"
DOC_CLIENT_V6, DOC_SERVER_V6 = "2001:db8::1", "2001:db8::10"
DOC_CLIENT_PORT = 40000

# One connection per step, in this order: the listener's own behaviour first, then each kind
# of header. LOCAL last: some receivers handle it worst (Postfix 3.7 dies on v2 LOCAL).
PLAN = ("none", "v1", "v2", "v2-ssl", "v2-local")
HEADER_STEPS = PLAN[1:]


class TargetError(ValueError):
    """A target the user typed that is not HOST:PORT."""


@dataclass(frozen=True, slots=True)
class Target:
    host: str  # a name, an IPv4 address or an IPv6 address (without brackets)
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


_HOST_NAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62}[A-Za-z0-9_])?"
                        r"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62}[A-Za-z0-9_])?)*\.?$")


def parse_target(text: str) -> Target:
    """`HOST:PORT`, `[IPv6]:PORT`. Raises TargetError with a message fit for the user."""
    text = text.strip()
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise TargetError(f"{text!r}: write an IPv6 target as [ADDRESS]:PORT")
        port_text = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise TargetError(f"{text!r}: {host!r} is not an IPv6 address") from None
    else:
        host, colon, port_text = text.rpartition(":")
        if not colon or not host:
            raise TargetError(f"{text!r}: give HOST:PORT (e.g. mail.example.com:25 or [2001:db8::5]:993)")
        if ":" in host:
            raise TargetError(f"{text!r}: put an IPv6 address in brackets, e.g. [{host}]:{port_text}")
        if not _HOST_NAME.match(host):
            raise TargetError(f"{text!r}: {host!r} is not a host name or address")
    if not port_text.isascii() or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise TargetError(f"{text!r}: {port_text!r} is not a port number (1-65535)")
    return Target(host, int(port_text))


def service_of(port: int) -> Service | None:
    return DEFAULT_TABLE.lookup(port)


def role_of(service: Service | None) -> str:
    """`front`: a public mail port, where real clients connect (a proxy's front port, or a
    server reached directly); `server`: a listener behind a proxy (10000+ ports, others)."""
    if service is not None and service.internet_facing and not service.shifted:
        return "front"
    return "server"


def build_header(step: str, ipv6: bool, dst_port: int) -> bytes:
    """The header a step sends: documentation addresses as the client and the server."""
    family = "TCP6" if ipv6 else "TCP4"
    client, server = (DOC_CLIENT_V6, DOC_SERVER_V6) if ipv6 else (DOC_CLIENT_V4, DOC_SERVER_V4)
    if step == "v1":
        return build_v1(family, client, server, DOC_CLIENT_PORT, dst_port)
    if step == "v2-local":
        return build_v2(command="LOCAL", family="UNSPEC")
    tlvs = [(PP2_TYPE_SSL, build_ssl_value(version="TLSv1.3"))] if step == "v2-ssl" else []
    return build_v2(family=family, src_addr=client, dst_addr=server, src_port=DOC_CLIENT_PORT, dst_port=dst_port,
                    tlvs=tlvs)


# What the probe says, per protocol: its first command (it asks for the capabilities), how
# it asks for STARTTLS, and how it leaves.
IMAP_TAG = b"p1"
COMMANDS = {
    "smtp": {"hello": b"EHLO probe.proxydiag.invalid\r\n", "starttls": b"STARTTLS\r\n", "quit": b"QUIT\r\n"},
    "lmtp": {"hello": b"LHLO probe.proxydiag.invalid\r\n", "starttls": b"STARTTLS\r\n", "quit": b"QUIT\r\n"},
    "imap": {"hello": b"p1 CAPABILITY\r\n", "starttls": b"p2 STARTTLS\r\n", "quit": b"p3 LOGOUT\r\n"},
    "pop3": {"hello": b"CAPA\r\n", "starttls": b"STLS\r\n", "quit": b"QUIT\r\n"},
    "managesieve": {"hello": b"CAPABILITY\r\n", "starttls": b"STARTTLS\r\n", "quit": b"LOGOUT\r\n"},
    "http": {"hello": b"HEAD / HTTP/1.0\r\nHost: probe.proxydiag.invalid\r\n\r\n", "starttls": b"", "quit": b""},
}
UNKNOWN_PROTOCOL_HELLO = b"QUIT\r\n"  # understood by SMTP, POP3; a harmless error elsewhere


def command(protocol: str | None, what: str) -> bytes:
    if protocol in COMMANDS:
        return COMMANDS[protocol][what]
    return UNKNOWN_PROTOCOL_HELLO if what == "hello" else b""


_SMTP_LAST_LINE = re.compile(rb"(?:^|\n)\d{3}(?: [^\n]*)?\r?\n$")
_TAGGED = re.compile(rb"(?:^|\n)p\d (?:OK|NO|BAD)\b[^\n]*\n$", re.I)
_SIEVE_END = re.compile(rb'(?:^|\n)(?:OK|NO|BYE)\b[^\n]*\n$', re.I)


def _last_line(data: bytes) -> bytes:
    """The last line of `data` (which ends with a newline): a reply ends there, so it is all
    that needs reading, however long the reply has gone on."""
    return data[data.rfind(b"\n", 0, len(data) - 1) + 1 :]


def greeting_complete(protocol: str | None, data: bytes) -> bool:
    """Whether `data` holds the whole greeting: SMTP's last line (`220 ...`), ManageSieve's
    closing `OK`, one line for IMAP and POP3 (and for a protocol not known yet)."""
    if not data.endswith(b"\n"):
        return False
    if protocol in ("smtp", "lmtp"):
        return bool(_SMTP_LAST_LINE.search(_last_line(data)))
    if protocol == "managesieve":
        return bool(_SIEVE_END.search(_last_line(data)))
    return True


def reply_complete(protocol: str | None, what: str, data: bytes) -> bool:
    """Whether `data` (what the server sent since the probe's command) ends the reply to it."""
    if not data.endswith(b"\n"):
        return False
    if protocol in ("smtp", "lmtp"):
        return bool(_SMTP_LAST_LINE.search(_last_line(data)))
    if protocol == "imap":
        return bool(_TAGGED.search(_last_line(data)))
    if protocol == "pop3":
        multi_line = what == "hello" and data.startswith(b"+OK")
        return data.endswith(b"\n.\r\n") or data == b".\r\n" if multi_line else True
    if protocol == "managesieve":
        return bool(_SIEVE_END.search(_last_line(data)))
    if protocol == "http":
        return b"\r\n\r\n" in data
    return True
