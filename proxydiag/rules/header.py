"""PD1xx: the PROXY header itself."""

from __future__ import annotations

import ipaddress
import re
from typing import Iterator

from proxydiag.facts.capture_hops import connection_hop, sent_by
from proxydiag.facts.model import Connection
from proxydiag.parsers.protocols.http import HttpOpening
from proxydiag.rules import tally
from proxydiag.rules.base import (
    HEALTH_CHECK_SECONDS,
    Context,
    Hit,
    Rule,
    describe_endpoint,
    endpoint,
    header_hex,
    implicit_tls_listener,
)
from proxydiag.rules.hops import EXPECTS_HEADER_FROM_CLIENT, MISSING_HEADER, UNEXPECTED_HEADER, WAITS_FOR_CLIENT
from proxydiag.rules.stalwart_reader import stalwart_reading

TOO_SOON = re.compile(rb"talk(ing)? too soon|pregreet|before (the )?greeting|wait for (the )?greeting", re.I)


def split_then_rejected(conn: Connection) -> bool:
    """The header's first piece arrived, then the server closed before the rest."""
    parsed = conn.proxy
    return (
        parsed is not None
        and parsed.incomplete
        and conn.header_bytes is not None
        and len(conn.header_bytes) > (len(b"PROXY ") if parsed.version == 1 else 16 - 1)
        and conn.closed_by == "server"
        and conn.client_gap is None
    )


def relayed(conn: Connection, ctx: Context) -> bool:
    """A front leg whose proxy connected onwards: what its server said is the mail
    server's doing, judged on the onward leg."""
    return ctx.legs is not None and ctx.legs.onward_leg(conn) is not None


def greeted(conn: Connection) -> bool:
    """Whether the server's first words were a welcome (not silence, an error or a refusal)."""
    if conn.greeting is None or (conn.mail is not None and conn.mail.greeting_refused):
        return False
    return not conn.greeting.startswith(("4", "5", "-ERR", "* BYE", "* BAD", "NO ", "BYE"))


class MissingProxyHeader(Rule):
    code = "PD101"

    def check(self, conn: Connection, ctx: Context) -> Iterator[Hit]:
        if conn.mid_stream or sent_by(conn) != "none":
            return
        expectation = ctx.expectation(conn)
        if conn.client_first is None:
            yield from self.silent_leg(conn, ctx)
            return
        if (expectation is None or expectation.inferred) and front_of_a_proxy(conn, ctx):
            return  # a proxy's front refusing ordinary clients: PD109
        tls_note = (
            " The client's first bytes are a TLS ClientHello: the proxy speaks TLS to the server (Traefik serversTransport "
            "with TLS), so any header travels inside the encrypted stream."
            if conn.tls_client_hello
            else ""
        )
        evidence = {"client_first": conn.client_first, "client_first_frame": conn.client_first_frame}
        if expectation is not None and MISSING_HEADER.applies(connection_hop(conn, expectation)):
            yield Hit(
                f"Connection to {describe_endpoint(conn)} starts with {conn.client_first!r} instead of a PROXY header, "
                f"but the listener expects one ({expectation.source}).{tls_note}",
                [conn], evidence | {"expectation": expectation.to_dict()}, group=endpoint(conn),
                lowered="inferred" if expectation.inferred else None,
            )
        elif self.waited_for_a_header(conn, ctx) and MISSING_HEADER.applies(connection_hop(conn, None, expects="required")):
            answer = f" (its only answer: {conn.greeting!r})" if conn.greeting else ""
            yield Hit(
                f"The client spoke first ({conn.client_first!r}) and {describe_endpoint(conn)} never greeted{answer}: "
                f"the listener is waiting for a PROXY header that never came.{tls_note}",
                [conn], evidence | {"server": conn.greeting}, group=endpoint(conn),
            )

    @staticmethod
    def waited_for_a_header(conn: Connection, ctx: Context) -> bool:
        """The client spoke first on a server-speaks-first protocol and was never greeted: the
        listener behaves as one that requires a header."""
        return conn.server_speaks_first and conn.first_speaker == "client" and not greeted(conn) and not relayed(conn, ctx)

    def silent_leg(self, conn: Connection, ctx: Context) -> Iterator[Hit]:
        """Nothing at all from the proxy, to a listener that expects a header: the
        listener waits for it and never greets (Stalwart hangs; Postfix gives up with a
        421). A connect-only check (closed within a second) is PD403's."""
        expectation = ctx.expectation(conn)
        if expectation is None or not MISSING_HEADER.applies(connection_hop(conn, expectation)) or greeted(conn) \
                or conn.closed_by is None:
            return
        end = conn.greeting_ts if conn.greeting_ts is not None else conn.close_ts
        start = conn.established_ts or conn.start_ts
        if end is None or end - start <= HEALTH_CHECK_SECONDS:
            return
        answer = f", then answered {conn.greeting!r}" if conn.greeting else ""
        yield Hit(
            f"The proxy sent nothing to {describe_endpoint(conn)}, which expects a PROXY header ({expectation.source}): "
            f"the listener waited {end - start:.1f} s for the header without greeting{answer}.",
            [conn], {"client_first": None, "server": conn.greeting, "waited_seconds": round(end - start, 3),
                     "expectation": expectation.to_dict()},
            group=endpoint(conn), lowered="inferred" if expectation.inferred else None,
        )


class UnexpectedProxyHeader(Rule):
    code = "PD102"

    def check(self, conn: Connection, ctx: Context) -> Iterator[Hit]:
        header = conn.header
        if header is None:
            return
        expectation = ctx.expectation(conn)
        answered = refusals_of_header(conn, wants_header=bool(expectation and expectation.value != "none" and not expectation.inferred))
        greeted_first = conn.greeting_ts is not None and conn.header_ts is not None and conn.greeting_ts < conn.header_ts
        tls_refused = implicit_tls_listener(conn, ctx) and refused_tls_at_once(conn)
        evidence = {"header": header_hex(conn), "greeting": conn.greeting, "replies_to_header": answered[:5]}
        if (answered or greeted_first or tls_refused) and not relayed(conn, ctx):
            reason = (
                f"answered the header bytes as commands ({'; '.join(answered[:3])})"
                if answered
                else "greeted before the header arrived"
                if greeted_first
                else "answered the header with a TLS alert or a reset"
            )
            yield Hit(
                f"{describe_endpoint(conn)} received a PROXY v{header.version} header it does not expect: the server "
                f"{reason}. For Stalwart this means the proxy's address ({conn.tcp.src_addr}) is not in its trusted "
                "networks.",
                [conn], evidence, group=endpoint(conn),
            )
        elif UNEXPECTED_HEADER.applies(connection_hop(conn, expectation)) and expectation is not None:
            yield Hit(
                f"{describe_endpoint(conn)} received a PROXY v{header.version} header but does not expect one "
                f"({expectation.source}).",
                [conn], evidence | {"expectation": expectation.to_dict()}, group=endpoint(conn),
                lowered="inferred" if expectation.inferred else None,
            )


SIEVE_REFUSALS = ("NO", "BYE")  # RFC 5804: a ManageSieve server refuses with NO, hangs up with BYE


def refusals_of_header(conn: Connection, wants_header: bool = False) -> list[str]:
    """The server's refusals of the header's bytes, in its protocol's words: SMTP/LMTP 4xx/5xx,
    IMAP BAD, POP3 -ERR (as the analysis found them), ManageSieve NO and BYE, HTTP 400 (not
    where the listener is known to want the header: then the 400 answers the request)."""
    if conn.replies_to_header or conn.header is None or conn.tls_client_hello or conn.extra_headers:
        return conn.replies_to_header
    before = conn.mail.replies_before_commands if conn.mail is not None else []
    sieve = [reply for reply in before if reply.split(" ", 1)[0].upper() in SIEVE_REFUSALS]
    if sieve:
        return sieve
    opening = conn.opening
    if isinstance(opening, HttpOpening) and opening.status_code == 400 and not wants_header:
        return [opening.status_line or "HTTP 400"]
    return []


def refused_tls_at_once(conn: Connection) -> bool:
    """An implicit-TLS listener that ended the connection after the header without a
    handshake: an alert instead of a ServerHello, or a reset before any answer, while the
    client offered TLS or nothing (plaintext from the client is PD304's story)."""
    if conn.closed_by != "server" or (conn.client_first is not None and not conn.opening.client_sent_tls):
        return False
    tls = conn.opening.tls
    alert_only = conn.opening.server_sent_tls and (tls is None or tls.server_hello is None)
    return alert_only or (conn.close_kind == "rst" and conn.greeting is None)


class MalformedProxyHeader(Rule):
    code = "PD103"

    def check(self, conn: Connection, ctx: Context) -> Iterator[Hit]:
        for parsed in filter(None, [conn.proxy, *conn.extra_headers]):
            violations = list(parsed.violations)
            if not violations:
                continue
            if parsed.incomplete and conn.client_snapped:
                continue  # cut by the snap length: PD901, not the proxy's fault
            if parsed.incomplete and split_then_rejected(conn):
                continue  # PD105: the rest never came because the server gave up first
            first = violations[0]
            reading = stalwart_reading(parsed, conn.header_bytes or b"") if parsed is conn.proxy else None
            yield Hit(
                f"Malformed PROXY v{parsed.version} header to {describe_endpoint(conn)}: {first.message} "
                f"(byte {first.offset}, rule {first.rule})." + (f" {reading.says}." if reading else ""),
                [conn],
                {"violations": [v.to_dict() for v in violations], "header": header_hex(conn),
                 **({"stalwart": reading.says} if reading else {})},
                group=endpoint(conn),
                lowered="accepted by Stalwart" if reading and reading.accepted else None,
            )


class ProxyVersionMismatch(Rule):
    code = "PD104"

    def check(self, conn: Connection, ctx: Context) -> Iterator[Hit]:
        yield from self._mismatch(conn, ctx)
        yield from self._mixed(conn, ctx)

    @staticmethod
    def _mismatch(conn: Connection, ctx: Context) -> Iterator[Hit]:
        header = conn.header
        expectation = ctx.expectation(conn)
        if header is None or expectation is None or expectation.value not in ("v1", "v2"):
            return
        if f"v{header.version}" != expectation.value:
            yield Hit(
                f"{describe_endpoint(conn)} expects PROXY {expectation.value} ({expectation.source}) but received v{header.version}.",
                [conn], {"received": header.version, "expected": expectation.value}, group=endpoint(conn),
            )

    @staticmethod
    def _mixed(conn: Connection, ctx: Context) -> Iterator[Hit]:
        stats = ctx.expectations.stats(conn)
        if conn.header is not None and len(stats.versions) > 1:
            yield Hit(
                f"{describe_endpoint(conn)} receives both PROXY v1 ({stats.versions[1]}) and v2 "
                f"({stats.versions[2]}) headers: two proxies, or two server lines, are configured differently.",
                [conn], {"versions": dict(stats.versions)}, group=("mixed",) + endpoint(conn), lowered="mixed versions",
            )


class ProxyHeaderSplit(Rule):
    code = "PD105"

    def check(self, conn: Connection, ctx: Context) -> Iterator[Hit]:
        header = conn.header
        if header is not None and conn.header_segments > 1:
            yield Hit(
                f"The {header.length}-byte PROXY header to {describe_endpoint(conn)} arrived in {conn.header_segments} "
                "segments instead of one; receivers that read it with a single recv() reject it.",
                [conn], {"segments": conn.header_segments, "length": header.length}, group=endpoint(conn),
            )
        elif conn.proxy is not None and split_then_rejected(conn):
            received = len(conn.header_bytes or b"")
            yield Hit(
                f"Only the first {received} bytes of the PROXY v{conn.proxy.version} header reached "
                f"{describe_endpoint(conn)} before the server {'reset' if conn.close_kind == 'rst' else 'closed'} the "
                "connection: the proxy split the header, and the server read it with a single recv() and gave up"
                + (f" ({conn.greeting!r})." if conn.greeting else "."),
                [conn], {"received_bytes": received, "header": header_hex(conn), "server": conn.greeting},
                group=endpoint(conn),
            )


class DuplicateProxyHeader(Rule):
    code = "PD106"

    def check(self, conn: Connection, ctx: Context) -> Iterator[Hit]:
        extras = [parsed.header for parsed in conn.extra_headers if parsed.header]
        if conn.header is None or not extras:
            return
        yield Hit(
            f"{1 + len(extras)} PROXY headers on one connection to {describe_endpoint(conn)}: two proxies in a chain "
            "both send one, and the inner one does not accept the outer one's.",
            [conn], {"headers": [conn.header.to_dict(), *[h.to_dict() for h in extras]]}, group=endpoint(conn),
        )


class GreetingBeforeProxyHeader(Rule):
    code = "PD107"

    def check(self, conn: Connection, ctx: Context) -> Iterator[Hit]:
        if conn.header is None or conn.greeting_ts is None or conn.header_ts is None:
            return
        if conn.greeting_ts < conn.header_ts:
            yield Hit(
                f"{describe_endpoint(conn)} greeted ({conn.greeting!r}) {conn.header_ts - conn.greeting_ts:.3f} s before "
                "the PROXY header arrived: the listener is not waiting for a header.",
                [conn], {"greeting": conn.greeting, "greeting_frame": conn.greeting_frame}, group=endpoint(conn),
            )


class ProxyHeaderLate(Rule):
    code = "PD108"

    def check(self, conn: Connection, ctx: Context) -> Iterator[Hit]:
        start = conn.established_ts
        if conn.header is None or start is None or conn.header_ts is None:
            return
        delay = conn.header_ts - start
        if delay > ctx.options.header_delay:
            yield Hit(
                f"The PROXY header to {describe_endpoint(conn)} came {delay:.2f} s after the handshake "
                f"(more than {ctx.options.header_delay:g} s); receivers time out waiting for it.",
                [conn], {"delay_seconds": round(delay, 3)}, group=endpoint(conn),
            )


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
        before = f" after {conn.client_first!r}" if conn.client_first else ""
        yield Hit(
            f"{describe_endpoint(conn)} is a proxy's front ({why}), yet it "
            f"{'closed' if conn.closed_by == 'server' else 'kept silent on'} this client connection without a word{before}: "
            "it was told to accept PROXY headers from clients (HAProxy `bind ... accept-proxy`, nginx `listen ... "
            "proxy_protocol`, a Traefik entry point with proxyProtocol) instead of sending them to the mail server.",
            [conn], {"client_first": conn.client_first, "closed": conn.close_kind, "closed_by": conn.closed_by, "why": why},
            group=endpoint(conn),
        )


def refused_without_a_word(conn: Connection, ctx: Context) -> bool:
    return tally.refused_without_a_word(conn, ctx.options.greeting_timeout)


def front_of_a_proxy(conn: Connection, ctx: Context) -> str | None:
    """Why this leg's listener is a proxy's front rather than the mail server, or None.

    Stalwart demands a header only from its trusted proxies, and greets everyone else:
    a listener that demands one from an ordinary client is a proxy. Known for sure when
    the listener's address sends PROXY headers itself; otherwise when it listens on a
    public mail port (the 10000+ ports are the mail server's, in Stalwart's layout) and
    the client is plainly not a proxy: a local test (loopback, or the listener's own
    address), or one of several clients it treats alike."""
    legs = ctx.legs
    if legs is not None and legs.is_proxy(conn.tcp.dst_addr):
        return f"{conn.tcp.dst_addr} sends PROXY headers to the mail server"
    service = conn.service
    if service is None or service.shifted or not service.internet_facing or conn.tcp.dst_port != service.public_port:
        return None
    if (legs is not None and (legs.is_proxy(conn.tcp.src_addr) or legs.onward_leg(conn) is not None)) or (
        ctx.config is not None and ctx.config.listener_for_port(conn.tcp.dst_port) is not None
    ):
        return None  # a proxy's leg, a relayed connection, or Stalwart's own listener
    if is_local_client(conn.tcp.src_addr, conn.tcp.dst_addr):
        return f"port {conn.tcp.dst_port} is the public {service.name} port, and the client {conn.tcp.src_addr} is a local test"
    clients = ctx.tally.refused_sources(endpoint(conn))
    if len(clients) >= 2:
        return f"port {conn.tcp.dst_port} is the public {service.name} port, and {len(clients)} clients get the same silence"
    return None


def is_local_client(src: str, dst: str) -> bool:
    """A client on the same host as the listener: loopback, or the listener's own address."""
    try:
        address = ipaddress.ip_address(src)
    except ValueError:
        return False
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return (mapped or address).is_loopback or src == dst


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
            words = f" The server said {conn.greeting!r}." if too_soon else ""
            yield Hit(
                f"The proxy sent the PROXY header to {describe_endpoint(conn)} together with the client's first command "
                f"({conn.client_first!r}), before any greeting: it connects to the server only once the client speaks, "
                f"which a mail client never does first.{words}",
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
                f"The proxy {describe_endpoint(front)} connected to the server (connection {back.id}) only after the "
                f"client's first bytes ({front.client_first!r}, {idle:.1f} s after the handshake): a mail client waits "
                "for the greeting first, so sessions hang until the client gives up.",
                [back, front], {"front_leg": front.id, "back_leg": back.id, "idle_seconds": round(idle, 3)},
                group=endpoint(back),
            )


RULES = [
    MissingProxyHeader(),
    UnexpectedProxyHeader(),
    MalformedProxyHeader(),
    ProxyVersionMismatch(),
    ProxyHeaderSplit(),
    DuplicateProxyHeader(),
    GreetingBeforeProxyHeader(),
    ProxyHeaderLate(),
    ProxyExpectsHeaderFromClient(),
    ProxyWaitsForClient(),
]
