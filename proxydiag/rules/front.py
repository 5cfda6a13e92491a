"""PD109, PD110: a proxy's front that behaves as the mail server's side should: it demands
from clients the header it should send, or it waits for the client before connecting on."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Iterator

from proxydiag.facts.capture_hops import connection_hop
from proxydiag.facts.model import Connection
from proxydiag.rules import tally
from proxydiag.rules.base import Context, Endpoint, Hit, Rule, endpoint, quoted, server_endpoint
from proxydiag.rules.hops import EXPECTS_HEADER_FROM_CLIENT, WAITS_FOR_CLIENT
from proxydiag.rules.said import AS_THEY_ARE, Names, Said

TOO_SOON = re.compile(rb"talk(ing)? too soon|pregreet|before (the )?greeting|wait for (the )?greeting", re.I)


@dataclass(frozen=True)
class FrontDemandsHeader(Said):
    server: Endpoint
    why: Said  # why the listener is a proxy's front (`front_of_a_proxy`)
    closed: bool  # the listener closed, rather than kept silent
    client_first: str | None

    def message(self, names: Names) -> str:
        before = f" after {quoted(names, self.client_first)}" if self.client_first else ""
        return (f"{self.server.told(names)} is a proxy's front ({self.why.message(names)}), yet it "
                f"{'closed' if self.closed else 'kept silent on'} this client connection without a word{before}: "
                "it was told to accept PROXY headers from clients (HAProxy `bind ... accept-proxy`, nginx `listen ... "
                "proxy_protocol`, a Traefik entry point with proxyProtocol) instead of sending them to the mail server.")


class ProxyExpectsHeaderFromClient(Rule):
    code = "PD109"

    def check(self, conn: Connection, ctx: Context) -> Iterator[Hit]:
        expectation = ctx.expectation(conn)
        if expectation is not None and not expectation.inferred:
            return  # the user named this listener a mail server's: PD101 judges it
        if not refused_without_a_word(conn, ctx):
            return
        why = front_of_a_proxy(conn, ctx)
        if why is None or not EXPECTS_HEADER_FROM_CLIENT.applies(connection_hop(conn, None, "proxy", "required")):
            return
        yield Hit(
            FrontDemandsHeader(server_endpoint(conn), why, conn.closed_by == "server", conn.client_first),
            [conn], {"client_first": conn.client_first, "closed": conn.close_kind, "closed_by": conn.closed_by,
                     "why": why.message(AS_THEY_ARE)},
            group=endpoint(conn),
        )


def refused_without_a_word(conn: Connection, ctx: Context) -> bool:
    return tally.refused_without_a_word(conn, ctx.options.greeting_timeout)


@dataclass(frozen=True)
class SendsHeadersItself(Said):
    address: str

    def message(self, names: Names) -> str:
        return f"{names.address(self.address)} sends PROXY headers to the mail server"


@dataclass(frozen=True)
class PublicPortLocalTest(Said):
    port: int
    service: str
    client: str

    def message(self, names: Names) -> str:
        return (f"port {self.port} is the public {self.service} port, and the client {names.address(self.client)} "
                "is a local test")


@dataclass(frozen=True)
class PublicPortSilence(Said):
    port: int
    service: str
    clients: int

    def message(self, names: Names) -> str:
        return f"port {self.port} is the public {self.service} port, and {self.clients} clients get the same silence"


def front_of_a_proxy(conn: Connection, ctx: Context) -> Said | None:
    """Why this leg's listener is a proxy's front rather than the mail server, or None.

    Stalwart demands a header only from its trusted proxies, and greets everyone else:
    a listener that demands one from an ordinary client is a proxy. Known for sure when
    the listener's address sends PROXY headers itself; otherwise when it listens on a
    public mail port (the 10000+ ports are the mail server's, in Stalwart's layout) and
    the client is plainly not a proxy: a local test (loopback, or the listener's own
    address), or one of several clients it treats alike."""
    legs = ctx.legs
    if legs is not None and legs.is_proxy(conn.tcp.dst_addr):
        return SendsHeadersItself(conn.tcp.dst_addr)
    service = conn.service
    if service is None or service.shifted or not service.internet_facing or conn.tcp.dst_port != service.public_port:
        return None
    if (legs is not None and (legs.is_proxy(conn.tcp.src_addr) or legs.onward_leg(conn) is not None)) or (
        ctx.config is not None and ctx.config.listener_for_port(conn.tcp.dst_port) is not None
    ):
        return None  # a proxy's leg, a relayed connection, or Stalwart's own listener
    if is_local_client(conn.tcp.src_addr, conn.tcp.dst_addr):
        return PublicPortLocalTest(conn.tcp.dst_port, service.name, conn.tcp.src_addr)
    clients = ctx.tally.refused_sources(endpoint(conn))
    if len(clients) >= 2:
        return PublicPortSilence(conn.tcp.dst_port, service.name, len(clients))
    return None


def is_local_client(src: str, dst: str) -> bool:
    """A client on the same host as the listener: loopback, or the listener's own address."""
    try:
        address = ipaddress.ip_address(src)
    except ValueError:
        return False
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return (mapped or address).is_loopback or src == dst


@dataclass(frozen=True)
class HeaderWithFirstCommand(Said):
    server: Endpoint
    client_first: str | None
    too_soon: bool  # the server complained the client spoke too soon
    greeting: str | None

    def message(self, names: Names) -> str:
        words = f" The server said {quoted(names, self.greeting)}." if self.too_soon else ""
        return (f"The proxy sent the PROXY header to {self.server.told(names)} together with the client's first command "
                f"({quoted(names, self.client_first)}), before any greeting: it connects to the server only once the "
                f"client speaks, which a mail client never does first.{words}")


@dataclass(frozen=True)
class ConnectedAfterClient(Said):
    proxy: Endpoint  # the front leg's listener
    back: int  # the connection to the server
    client_first: str | None
    idle: float  # seconds from the front handshake to the client's first bytes

    def message(self, names: Names) -> str:
        return (f"The proxy {self.proxy.told(names)} connected to the server (connection {self.back}) only after the "
                f"client's first bytes ({quoted(names, self.client_first)}, {self.idle:.1f} s after the handshake): a "
                "mail client waits for the greeting first, so sessions hang until the client gives up.")


class ProxyWaitsForClient(Rule):
    code = "PD110"

    def check(self, conn: Connection, ctx: Context) -> Iterator[Hit]:
        yield from self._with_first_command(conn)
        yield from self._two_legs(conn, ctx)

    @staticmethod
    def _with_first_command(conn: Connection) -> Iterator[Hit]:
        """The header came in one segment with the client's first command, before any greeting."""
        if conn.header is None or not conn.server_speaks_first:
            return
        same_segment = conn.client_first is not None and conn.client_first_frame == conn.header_frames[0]
        before_greeting = conn.greeting_ts is None or (conn.client_first_ts or 0) <= conn.greeting_ts
        too_soon = conn.server_text is not None and TOO_SOON.search(conn.server_text.encode())
        if ((same_segment and before_greeting) or too_soon) and WAITS_FOR_CLIENT.applies(
                connection_hop(conn, None, waits_for_client=True)):
            yield Hit(
                HeaderWithFirstCommand(server_endpoint(conn), conn.client_first, bool(too_soon), conn.greeting),
                [conn], {"client_first": conn.client_first, "frame": conn.client_first_frame}, group=endpoint(conn),
            )

    @staticmethod
    def _two_legs(back: Connection, ctx: Context) -> Iterator[Hit]:
        """The proxy opened the back leg only after the client had spoken on the front."""
        front = ctx.legs.front_leg(back) if ctx.legs is not None else None
        if front is None or front.client_first_ts is None or front.mid_stream or front.tls_client_hello:
            return  # a TLS client speaks first by design; the proxy connects once TLS is up
        if front.greeting_ts is not None and front.greeting_ts <= front.client_first_ts:
            return  # the proxy greeted the client itself (nginx mail): nobody was left waiting
        if back.start_ts > front.client_first_ts and WAITS_FOR_CLIENT.applies(
                connection_hop(back, None, waits_for_client=True)):
            idle = front.client_first_ts - (front.established_ts or front.start_ts)
            yield Hit(
                ConnectedAfterClient(server_endpoint(front), back.id, front.client_first, idle),
                [back, front], {"front_leg": front.id, "back_leg": back.id, "idle_seconds": round(idle, 3)},
                group=endpoint(back),
            )
