"""PD4xx: what the mail server did."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from proxydiag.facts.model import Connection
from proxydiag.facts.provenance import Provenance
from proxydiag.rules.base import HEALTH_CHECK_SECONDS, Context, Endpoint, Hit, Rule, endpoint, quoted, server_endpoint
from proxydiag.rules.said import Names, Said


@dataclass(frozen=True)
class RefusedAtOnce(Said):
    server: Endpoint
    greeting: str | None

    def message(self, names: Names) -> str:
        return f"{self.server.told(names)} refused the connection at once: {quoted(names, self.greeting)}."


@dataclass(frozen=True)
class ClosedBeforeAWord(Said):
    server: Endpoint
    reset: bool

    def message(self, names: Names) -> str:
        return (f"{self.server.told(names)} {'reset' if self.reset else 'closed'} the connection before "
                "any greeting or client command.")


@dataclass(frozen=True)
class ProxyBanned(Said):
    source: str
    server: Endpoint

    def message(self, names: Names) -> str:
        return (f"Every connection from {names.address(self.source)} to {self.server.told(names)} was cut off before "
                "any greeting: the server has likely banned the proxy's own address (Stalwart's auto-ban counts "
                "protocol errors against the address it sees, which is the proxy's when headers are missing or ignored).")


class ServerRejected(Rule):
    code = "PD401"

    def check(self, conn: Connection, ctx: Context) -> Iterator[Hit]:
        if conn.mid_stream or not conn.server_speaks_first and conn.greeting is None:
            return
        if conn.proxy is not None and conn.proxy.violations:
            return  # the broken header explains the refusal: PD103 / PD105 say so
        refused = conn.mail is not None and conn.mail.greeting_refused and conn.first_speaker == "server"
        if refused:
            yield Hit(
                RefusedAtOnce(server_endpoint(conn), conn.greeting),
                [conn], {"greeting": conn.greeting, "frame": conn.greeting_frame}, group=(conn.tcp.src_addr,) + endpoint(conn),
            )
        elif ctx.tally.banned(conn.tcp.src_addr, *endpoint(conn)):
            yield self._banned(conn, ctx)
        elif conn.greeting is None and conn.closed_by == "server" and conn.client_first is None:
            yield Hit(
                ClosedBeforeAWord(server_endpoint(conn), reset=conn.close_kind == "rst"),
                [conn], {"closed": conn.close_kind}, group=(conn.tcp.src_addr,) + endpoint(conn),
            )

    @staticmethod
    def _banned(conn: Connection, ctx: Context) -> Hit:
        source = conn.tcp.src_addr
        return Hit(
            ProxyBanned(source, server_endpoint(conn)),
            [conn], {"source": source, "connections": ctx.tally.sources[(source,) + endpoint(conn)].connections},
            group=("banned", source) + endpoint(conn),
        )


@dataclass(frozen=True)
class NoGreetingIn(Said):
    server: Endpoint
    waited: float  # seconds
    client_gave_up: bool

    def message(self, names: Names) -> str:
        return (f"{self.server.told(names)} sent no greeting in {self.waited:.1f} s"
                + (", and the client gave up" if self.client_gave_up else ", and the connection stayed open")
                + ".")


class NoGreeting(Rule):
    code = "PD402"

    def check(self, conn: Connection, ctx: Context) -> Iterator[Hit]:
        if conn.mid_stream or conn.greeting is not None or not conn.server_speaks_first:
            return
        if conn.client_first is None and conn.header is None:
            return  # a connect-only health check: PD403
        end = conn.close_ts if conn.close_ts is not None else conn.last_ts
        start = conn.established_ts or conn.start_ts
        waited = (end or start) - start
        if conn.closed_by == "server" or waited < ctx.options.greeting_timeout:
            return
        yield Hit(
            NoGreetingIn(server_endpoint(conn), waited, client_gave_up=conn.closed_by == "client"),
            [conn], {"waited_seconds": round(waited, 3)}, group=endpoint(conn),
        )


@dataclass(frozen=True)
class ConnectOnlyChecks(Said):
    source: str
    server: Endpoint
    expected_by: Provenance

    def message(self, names: Names) -> str:
        return (f"Connect-only checks from {names.address(self.source)} reach {self.server.told(names)}, which expects a "
                f"PROXY header ({self.expected_by.message(names)}): each one is a rejected connection in the server's log "
                "(HAProxy: check-send-proxy, or checks without their own port).")


class HealthcheckWithoutHeader(Rule):
    code = "PD403"

    def check(self, conn: Connection, ctx: Context) -> Iterator[Hit]:
        if conn.mid_stream or conn.header is not None or conn.client_first is not None or conn.greeting is not None:
            return
        if conn.close_ts is None or conn.close_ts - conn.start_ts > HEALTH_CHECK_SECONDS:
            return
        expectation = ctx.expectation(conn)
        if expectation is None or not expectation.wants_header:
            return
        yield Hit(
            ConnectOnlyChecks(conn.tcp.src_addr, server_endpoint(conn), expectation.source),
            [conn], {"closed": conn.close_kind}, group=(conn.tcp.src_addr,) + endpoint(conn),
            lowered="inferred" if expectation.inferred else None,
        )


@dataclass(frozen=True)
class StarttlsRefusedWith(Said):
    server: Endpoint
    reply: str

    def message(self, names: Names) -> str:
        return f"The client asked {self.server.told(names)} for STARTTLS and the server refused: {names.text(self.reply)!r}."


@dataclass(frozen=True)
class StarttlsNotOffered(Said):
    server: Endpoint

    def message(self, names: Names) -> str:
        return (f"{self.server.told(names)} does not offer STARTTLS although the header says the client is on plaintext: "
                "it may believe the stream is already encrypted.")


class StarttlsRefused(Rule):
    code = "PD404"

    def check(self, conn: Connection, ctx: Context) -> Iterator[Hit]:
        mail = conn.mail
        if mail is None:
            return
        if mail.starttls_requested and not mail.upgraded:
            if mail.starttls_reply is not None:
                yield Hit(
                    StarttlsRefusedWith(server_endpoint(conn), mail.starttls_reply),
                    [conn], {"reply": mail.starttls_reply}, group=endpoint(conn),
                )
            return
        header = conn.header
        plaintext_client = header is not None and header.command == "PROXY" and (header.ssl is None or not header.ssl.client_ssl)
        if mail.starttls_offered is False and plaintext_client and conn.protocol in ("smtp", "imap", "pop3", "managesieve"):
            yield Hit(
                StarttlsNotOffered(server_endpoint(conn)),
                [conn], {"capabilities": mail.capabilities}, group=endpoint(conn),
            )


RULES = [ServerRejected(), NoGreeting(), HealthcheckWithoutHeader(), StarttlsRefused()]
