"""One typed model of the proxy side, whatever proxy the configuration came from.

A reader turns a configuration file into a `ProxyConfig`: the listeners clients (or
another proxy) connect to, and the routes from each listener to a back-end server, with
what the proxy sends there. Every fact keeps where it was written (`Origin`: file, line
and the line as written), so a finding can cite it and a fix can rewrite it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from proxydiag.configs.citation import shown_line
from proxydiag.jsontypes import JsonDict
from proxydiag.parsers.userinput import read_text_bounded

HeaderVersion = Literal["none", "v1", "v2"]
WILDCARD_ADDRESSES = frozenset({"", "*", "0.0.0.0", "::"})


class ConfigReadError(ValueError):
    """The file cannot be read as the configuration it claims to be: one line for the user,
    naming the file and, where known, the line."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path, self.line, self.reason = path, line, message
        super().__init__(f"{path}:{line}: {message}" if line else f"{path}: {message}")


def read_text(path: str) -> str:
    """A configuration file's text (bytes that are not UTF-8 shown as U+FFFD), or the one-line error."""
    try:
        return read_text_bounded(path)
    except OSError as error:
        raise ConfigReadError(path, None, f"cannot read ({error.strerror or error})") from None


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a fact was written: the file, the 1-based line, that line's text (the fact a
    fix edits; never shown whole: `shown`), and the key it is about, where the file is
    structured."""

    path: str
    line: int
    text: str = ""
    focus: str = ""

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"

    @property
    def shown(self) -> str:
        """The line as a report may quote it: no comment, no secret, bounded."""
        return shown_line(self.text, self.focus)

    def cite(self) -> str:
        """`haproxy.cfg:12: server s1 10.0.0.3:10025 send-proxy` for evidence."""
        shown = self.shown.strip()
        return f"{self}: {shown}" if shown else str(self)


@dataclass(frozen=True, slots=True)
class FrontListener:
    """Where the proxy accepts connections."""

    address: str  # "" or "*" or "0.0.0.0" or "::": every address
    port: int
    tls_terminated: bool  # the proxy does the TLS handshake with the client
    accepts_header: bool  # the proxy expects a PROXY header from whoever connects
    origin: Origin
    trusted_sources: tuple[str, ...] = ()  # nginx set_real_ip_from: who may send that header
    # A header is used when it comes, and nobody is refused without one (a Traefik entry
    # point's `proxyProtocol`: go-proxyproto's USE for `trustedIPs` or everyone with
    # `insecure`, IGNORE for the rest).
    header_optional: bool = False
    # Its own certificate lines (nginx `ssl_certificate`, `ssl_certificate_key` in its server block,
    # no other `ssl` listener there): what passing TLS through removes with `ssl`.
    certificate_origins: tuple[Origin, ...] = ()

    @property
    def endpoint(self) -> str:
        return endpoint_text(self.address, self.port)


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """The proxy's own connections to a server to see whether it is up."""

    port: int | None  # None: the server's port
    sends_header: bool
    local: bool  # the header is a v2 LOCAL one (HAProxy)
    origin: Origin


@dataclass(frozen=True, slots=True)
class Route:
    """From a front listener to one back-end server, and what travels on the way."""

    front: FrontListener | None
    server_address: str
    server_port: int | None  # None: the client's destination port (HAProxy `server s 10.0.0.3`)
    sends: HeaderVersion
    origin: Origin  # the server / proxy_pass / connect line
    ssl_tlv: bool = False
    ssl_cn: bool = False
    ssl_cipher: bool = False
    tls_to_server: bool = False  # the proxy speaks TLS to the server
    header_inside_tls: bool = False  # and sends the header inside it (Traefik before 3.5.2)
    source_address: str | None = None  # the proxy's address towards the server, where set
    waits_for_client: bool = False  # inspect delay / SNI routing / preread: forwards only after client bytes
    health_check: HealthCheck | None = None
    sends_origin: Origin | None = None  # where the header was switched on (or could be)
    source_origin: Origin | None = None
    wait_origin: Origin | None = None
    block_origin: Origin | None = None  # the block (backend, server {}) a directive may be added to
    # One of several servers chosen at run time (an nginx `map` entry): the line that picks
    # this one, and which connections it picks it for ("SNI mail.example.com"); the others
    # chosen there are routes of the same `block_origin`.
    chosen_by: Origin | None = None
    chosen_for: str | None = None

    @property
    def target_port(self) -> int | None:
        if self.server_port is not None:
            return self.server_port
        return self.front.port if self.front is not None else None

    @property
    def endpoint(self) -> str:
        return endpoint_text(self.server_address, self.target_port)


@dataclass(frozen=True, slots=True)
class Problem:
    """Something the reader saw but could not model (a host name, a variable address)."""

    message: str
    origin: Origin


@dataclass(frozen=True, slots=True)
class VersionFloor:
    """The proxy is at least `version`: the configuration uses something only it has, at `origin`."""

    version: str
    origin: Origin
    name: str = ""  # what there can be reused by a fix (a Traefik serversTransport that sends v2)


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    kind: str  # haproxy, nginx, stunnel
    path: str
    listeners: tuple[FrontListener, ...] = ()
    routes: tuple[Route, ...] = ()
    problems: tuple[Problem, ...] = field(default_factory=tuple)
    version_floor: VersionFloor | None = None  # what the file shows of the proxy's version, where it does

    def to_dict(self) -> JsonDict:
        return {
            "kind": self.kind,
            "path": self.path,
            "listeners": [listener.endpoint for listener in self.listeners],
            "routes": [
                {"front": route.front.endpoint if route.front else None, "server": route.endpoint, "sends": route.sends,
                 "ssl_tlv": route.ssl_tlv, "where": str(route.origin),
                 **({"chosen_for": route.chosen_for} if route.chosen_for else {})}
                for route in self.routes
            ],
            "problems": [f"{problem.origin}: {problem.message}" for problem in self.problems],
        }


def endpoint_text(address: str, port: int | None) -> str:
    shown = f"[{address}]" if ":" in address else (address or "*")
    return f"{shown}:{port}" if port is not None else shown


def split_host_port(text: str) -> tuple[str, int | None] | None:
    """`10.0.0.3:25`, `[::1]:25`, `:25`, `*:25`, `25`, `10.0.0.3` -> (address, port);
    None when the port is not a number."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    elif text.isdigit():
        host, port_text = "", text
    else:
        host, port_text = text, ""
    if not port_text:
        return host, None
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        return None
    return host, int(port_text)
