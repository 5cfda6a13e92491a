"""PD4xx: what the mail server did."""

from __future__ import annotations

from typing import Iterator

from proxydiag.facts.model import Connection
from proxydiag.rules.base import HEALTH_CHECK_SECONDS, Context, Hit, Rule, describe_endpoint, endpoint


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
                f"{describe_endpoint(conn)} refused the connection at once: {conn.greeting!r}.",
                [conn], {"greeting": conn.greeting, "frame": conn.greeting_frame}, group=(conn.tcp.src_addr,) + endpoint(conn),
            )
        elif ctx.tally.banned(conn.tcp.src_addr, *endpoint(conn)):
            yield self._banned(conn, ctx)
        elif conn.greeting is None and conn.closed_by == "server" and conn.client_first is None:
            yield Hit(
                f"{describe_endpoint(conn)} {'reset' if conn.close_kind == 'rst' else 'closed'} the connection before "
                "any greeting or client command.",
                [conn], {"closed": conn.close_kind}, group=(conn.tcp.src_addr,) + endpoint(conn),
            )

    @staticmethod
    def _banned(conn: Connection, ctx: Context) -> Hit:
        source = conn.tcp.src_addr
        return Hit(
            f"Every connection from {source} to {describe_endpoint(conn)} was cut off before any greeting: "
            "the server has likely banned the proxy's own address (Stalwart's auto-ban counts protocol errors "
            "against the address it sees, which is the proxy's when headers are missing or ignored).",
            [conn], {"source": source, "connections": ctx.tally.sources[(source,) + endpoint(conn)].connections},
            group=("banned", source) + endpoint(conn),
        )


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
            f"{describe_endpoint(conn)} sent no greeting in {waited:.1f} s"
            + (", and the client gave up" if conn.closed_by == "client" else ", and the connection stayed open")
            + ".",
            [conn], {"waited_seconds": round(waited, 3)}, group=endpoint(conn),
        )


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
            f"Connect-only checks from {conn.tcp.src_addr} reach {describe_endpoint(conn)}, which expects a PROXY "
            f"header ({expectation.source}): each one is a rejected connection in the server's log "
            "(HAProxy: check-send-proxy, or checks without their own port).",
            [conn], {"closed": conn.close_kind}, group=(conn.tcp.src_addr,) + endpoint(conn),
            lowered="inferred" if expectation.inferred else None,
        )


class StarttlsRefused(Rule):
    code = "PD404"

    def check(self, conn: Connection, ctx: Context) -> Iterator[Hit]:
        mail = conn.mail
        if mail is None:
            return
        if mail.starttls_requested and not mail.upgraded:
            if mail.starttls_reply is not None:
                yield Hit(
                    f"The client asked {describe_endpoint(conn)} for STARTTLS and the server refused: {mail.starttls_reply!r}.",
                    [conn], {"reply": mail.starttls_reply}, group=endpoint(conn),
                )
            return
        header = conn.header
        plaintext_client = header is not None and header.command == "PROXY" and (header.ssl is None or not header.ssl.client_ssl)
        if mail.starttls_offered is False and plaintext_client and conn.protocol in ("smtp", "imap", "pop3", "managesieve"):
            yield Hit(
                f"{describe_endpoint(conn)} does not offer STARTTLS although the header says the client is on plaintext: "
                "it may believe the stream is already encrypted.",
                [conn], {"capabilities": mail.capabilities}, group=endpoint(conn),
            )


RULES = [ServerRejected(), NoGreeting(), HealthcheckWithoutHeader(), StarttlsRefused()]
