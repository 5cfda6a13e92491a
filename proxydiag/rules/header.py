"""PD1xx: the PROXY header itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from proxydiag.facts.capture_hops import connection_hop, sent_by
from proxydiag.facts.expectations import EndpointStats
from proxydiag.facts.model import Connection
from proxydiag.facts.provenance import Provenance
from proxydiag.parsers.protocols.http import HttpOpening
from proxydiag.parsers.protocols.software import STALWART_PROXY
from proxydiag.rules.base import (
    HEALTH_CHECK_SECONDS,
    Context,
    Endpoint,
    Hit,
    Rule,
    endpoint,
    header_hex,
    implicit_tls_listener,
    quoted,
    server_endpoint,
)
from proxydiag.rules.front import ProxyExpectsHeaderFromClient, ProxyWaitsForClient, front_of_a_proxy
from proxydiag.rules.hops import MISSING_HEADER, UNEXPECTED_HEADER
from proxydiag.rules.said import Names, Said
from proxydiag.rules.stalwart_reader import stalwart_reading


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


TLS_NOTE = (" The client's first bytes are a TLS ClientHello: the proxy speaks TLS to the server (Traefik "
            "serversTransport with TLS), so any header travels inside the encrypted stream.")


@dataclass(frozen=True)
class StartsWithoutHeader(Said):
    server: Endpoint
    client_first: str
    expected_by: Provenance
    client_hello: bool  # the client's first bytes are a TLS ClientHello

    def message(self, names: Names) -> str:
        return (f"Connection to {self.server.told(names)} starts with {quoted(names, self.client_first)} instead of a "
                f"PROXY header, but the listener expects one ({self.expected_by.message(names)})."
                + (TLS_NOTE if self.client_hello else ""))


@dataclass(frozen=True)
class NeverGreeted(Said):
    client_first: str
    server: Endpoint
    answer: str | None  # the server's only words, if any
    client_hello: bool

    def message(self, names: Names) -> str:
        answer = f" (its only answer: {quoted(names, self.answer)})" if self.answer else ""
        return (f"The client spoke first ({quoted(names, self.client_first)}) and {self.server.told(names)} never "
                f"greeted{answer}: the listener is waiting for a PROXY header that never came."
                + (TLS_NOTE if self.client_hello else ""))


@dataclass(frozen=True)
class ProxySentNothing(Said):
    server: Endpoint
    expected_by: Provenance
    waited: float  # seconds
    answer: str | None

    def message(self, names: Names) -> str:
        answer = f", then answered {quoted(names, self.answer)}" if self.answer else ""
        return (f"The proxy sent nothing to {self.server.told(names)}, which expects a PROXY header "
                f"({self.expected_by.message(names)}): the listener waited {self.waited:.1f} s for the header without "
                f"greeting{answer}.")


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
        hello = bool(conn.tls_client_hello)
        evidence = {"client_first": conn.client_first, "client_first_frame": conn.client_first_frame}
        if expectation is not None and MISSING_HEADER.applies(connection_hop(conn, expectation)):
            yield Hit(
                StartsWithoutHeader(server_endpoint(conn), conn.client_first, expectation.source, hello),
                [conn], evidence | {"expectation": expectation.to_dict()}, group=endpoint(conn),
                lowered="inferred" if expectation.inferred else None,
            )
        elif self.waited_for_a_header(conn, ctx) and MISSING_HEADER.applies(connection_hop(conn, None, expects="required")):
            yield Hit(
                NeverGreeted(conn.client_first, server_endpoint(conn), conn.greeting, hello),
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
        yield Hit(
            ProxySentNothing(server_endpoint(conn), expectation.source, end - start, conn.greeting),
            [conn], {"client_first": None, "server": conn.greeting, "waited_seconds": round(end - start, 3),
                     "expectation": expectation.to_dict()},
            group=endpoint(conn), lowered="inferred" if expectation.inferred else None,
        )


@dataclass(frozen=True)
class HeaderRefused(Said):
    server: Endpoint
    version: int
    answered: tuple[str, ...]  # the server's replies to the header's bytes, the first three
    greeted_first: bool  # no replies: it greeted before the header (else a TLS alert or a reset)
    proxy: str

    def message(self, names: Names) -> str:
        reason = (
            f"answered the header bytes as commands ({'; '.join(names.text(reply) for reply in self.answered)})"
            if self.answered
            else "greeted before the header arrived"
            if self.greeted_first
            else "answered the header with a TLS alert or a reset"
        )
        return (f"{self.server.told(names)} received a PROXY v{self.version} header it does not expect: the server "
                f"{reason}. For Stalwart this means the proxy's address ({names.address(self.proxy)}) is not in its "
                "trusted networks.")


@dataclass(frozen=True)
class HeaderNotExpected(Said):
    server: Endpoint
    version: int
    expected_by: Provenance

    def message(self, names: Names) -> str:
        return (f"{self.server.told(names)} received a PROXY v{self.version} header but does not expect one "
                f"({self.expected_by.message(names)}).")


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
            yield Hit(
                HeaderRefused(server_endpoint(conn), header.version, tuple(answered[:3]), greeted_first, conn.tcp.src_addr),
                [conn], evidence, group=endpoint(conn),
            )
        elif UNEXPECTED_HEADER.applies(connection_hop(conn, expectation)) and expectation is not None:
            yield Hit(
                HeaderNotExpected(server_endpoint(conn), header.version, expectation.source),
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


@dataclass(frozen=True)
class Malformed(Said):
    version: int | None
    server: Endpoint
    problem: str  # the first violation, in the parser's words
    offset: int
    rule: str
    stalwart: str | None  # what Stalwart's own reader makes of it

    def message(self, names: Names) -> str:
        return (f"Malformed PROXY v{self.version} header to {self.server.told(names)}: {names.text(self.problem)} "
                f"(byte {self.offset}, rule {self.rule})." + (f" {names.text(self.stalwart)}." if self.stalwart else ""))


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
                Malformed(parsed.version, server_endpoint(conn), first.message, first.offset, first.rule,
                          reading.says if reading else None),
                [conn],
                {"violations": [v.to_dict() for v in violations], "header": header_hex(conn),
                 **({"stalwart": reading.says} if reading else {})},
                group=endpoint(conn),
                lowered="accepted by Stalwart" if reading and reading.accepted else None,
            )


@dataclass(frozen=True)
class OtherVersion(Said):
    server: Endpoint
    expected: str
    expected_by: Provenance
    received: int

    def message(self, names: Names) -> str:
        return (f"{self.server.told(names)} expects PROXY {self.expected} ({self.expected_by.message(names)}) but received "
                f"v{self.received}.")


@dataclass(frozen=True)
class MixedVersions(Said):
    server: Endpoint
    v1: int  # headers of each version
    v2: int

    def message(self, names: Names) -> str:
        return (f"{self.server.told(names)} receives both PROXY v1 ({self.v1}) and v2 ({self.v2}) headers: two proxies, "
                "or two server lines, are configured differently.")


@dataclass(frozen=True)
class UnknownFallback(Said):
    """One sender's v2 headers and v1 `PROXY UNKNOWN` lines: Stalwart's proxy falls back to the
    latter when the client's address family is not its listener's (src/net/proxy_protocol.rs:151-158)."""

    server: Endpoint
    sender: str  # the one source of every leg carrying a header
    v1: int  # all of them PROXY UNKNOWN
    v2: int

    def message(self, names: Names) -> str:
        return (f"{self.server.told(names)} receives v2 headers ({self.v2}) and v1 PROXY UNKNOWN lines ({self.v1}) from "
                f"one sender, {names.address(self.sender)}: Stalwart's proxy sends PROXY UNKNOWN when the client's "
                "address family is not that of the address it reached: one proxy, by design, and those lines carry no "
                "client address (PD104's page, section Stalwart proxy).")


def stalwart_proxy_fallback(stats: EndpointStats) -> bool:
    """Every v1 header is PROXY UNKNOWN and every header came from one sender."""
    return stats.v1_unknown == stats.versions[1] and len(stats.senders) == 1


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
                OtherVersion(server_endpoint(conn), expectation.value, expectation.source, header.version),
                [conn], {"received": header.version, "expected": expectation.value}, group=endpoint(conn),
            )

    @staticmethod
    def _mixed(conn: Connection, ctx: Context) -> Iterator[Hit]:
        stats = ctx.expectations.stats(conn)
        if conn.header is not None and len(stats.versions) > 1 and stalwart_proxy_fallback(stats):
            yield Hit(
                UnknownFallback(server_endpoint(conn), conn.tcp.src_addr, stats.versions[1], stats.versions[2]),
                [conn], {"versions": dict(stats.versions)}, group=("mixed",) + endpoint(conn), lowered="mixed versions",
                proxy=STALWART_PROXY,
            )
        elif conn.header is not None and len(stats.versions) > 1:
            yield Hit(
                MixedVersions(server_endpoint(conn), stats.versions[1], stats.versions[2]),
                [conn], {"versions": dict(stats.versions)}, group=("mixed",) + endpoint(conn), lowered="mixed versions",
            )


@dataclass(frozen=True)
class HeaderInSegments(Said):
    length: int
    server: Endpoint
    segments: int

    def message(self, names: Names) -> str:
        return (f"The {self.length}-byte PROXY header to {self.server.told(names)} arrived in {self.segments} "
                "segments instead of one; receivers that read it with a single recv() reject it.")


@dataclass(frozen=True)
class HeaderCutShort(Said):
    received: int  # bytes of the header that arrived
    version: int | None
    server: Endpoint
    reset: bool
    answer: str | None

    def message(self, names: Names) -> str:
        return (f"Only the first {self.received} bytes of the PROXY v{self.version} header reached "
                f"{self.server.told(names)} before the server {'reset' if self.reset else 'closed'} the "
                "connection: the proxy split the header, and the server read it with a single recv() and gave up"
                + (f" ({quoted(names, self.answer)})." if self.answer else "."))


class ProxyHeaderSplit(Rule):
    code = "PD105"

    def check(self, conn: Connection, ctx: Context) -> Iterator[Hit]:
        header = conn.header
        if header is not None and conn.header_segments > 1:
            yield Hit(
                HeaderInSegments(header.length, server_endpoint(conn), conn.header_segments),
                [conn], {"segments": conn.header_segments, "length": header.length}, group=endpoint(conn),
            )
        elif conn.proxy is not None and split_then_rejected(conn):
            received = len(conn.header_bytes or b"")
            yield Hit(
                HeaderCutShort(received, conn.proxy.version, server_endpoint(conn), conn.close_kind == "rst", conn.greeting),
                [conn], {"received_bytes": received, "header": header_hex(conn), "server": conn.greeting},
                group=endpoint(conn),
            )


@dataclass(frozen=True)
class SeveralHeaders(Said):
    headers: int
    server: Endpoint

    def message(self, names: Names) -> str:
        return (f"{self.headers} PROXY headers on one connection to {self.server.told(names)}: two proxies in a chain "
                "both send one, and the inner one does not accept the outer one's.")


class DuplicateProxyHeader(Rule):
    code = "PD106"

    def check(self, conn: Connection, ctx: Context) -> Iterator[Hit]:
        extras = [parsed.header for parsed in conn.extra_headers if parsed.header]
        if conn.header is None or not extras:
            return
        yield Hit(
            SeveralHeaders(1 + len(extras), server_endpoint(conn)),
            [conn], {"headers": [conn.header.to_dict(), *[h.to_dict() for h in extras]]}, group=endpoint(conn),
        )


@dataclass(frozen=True)
class GreetedBeforeHeader(Said):
    server: Endpoint
    greeting: str | None
    before: float  # seconds between the greeting and the header

    def message(self, names: Names) -> str:
        return (f"{self.server.told(names)} greeted ({quoted(names, self.greeting)}) {self.before:.3f} s before "
                "the PROXY header arrived: the listener is not waiting for a header.")


class GreetingBeforeProxyHeader(Rule):
    code = "PD107"

    def check(self, conn: Connection, ctx: Context) -> Iterator[Hit]:
        if conn.header is None or conn.greeting_ts is None or conn.header_ts is None:
            return
        if conn.greeting_ts < conn.header_ts:
            yield Hit(
                GreetedBeforeHeader(server_endpoint(conn), conn.greeting, conn.header_ts - conn.greeting_ts),
                [conn], {"greeting": conn.greeting, "greeting_frame": conn.greeting_frame}, group=endpoint(conn),
            )


@dataclass(frozen=True)
class HeaderLate(Said):
    server: Endpoint
    delay: float  # seconds after the handshake
    limit: float  # --header-delay

    def message(self, names: Names) -> str:
        return (f"The PROXY header to {self.server.told(names)} came {self.delay:.2f} s after the handshake "
                f"(more than {self.limit:g} s); receivers time out waiting for it.")


class ProxyHeaderLate(Rule):
    code = "PD108"

    def check(self, conn: Connection, ctx: Context) -> Iterator[Hit]:
        start = conn.established_ts
        if conn.header is None or start is None or conn.header_ts is None:
            return
        delay = conn.header_ts - start
        if delay > ctx.options.header_delay:
            yield Hit(
                HeaderLate(server_endpoint(conn), delay, ctx.options.header_delay),
                [conn], {"delay_seconds": round(delay, 3)}, group=endpoint(conn),
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
