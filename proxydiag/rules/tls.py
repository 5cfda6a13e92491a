"""PD3xx: TLS, and what the header says about it."""

from __future__ import annotations

from typing import Iterator

from proxydiag.facts.model import Connection
from proxydiag.rules.base import Context, Hit, Rule, describe_endpoint, endpoint, implicit_tls_listener
from proxydiag.rules.header import relayed


def front_was_tls(conn: Connection, ctx: Context) -> tuple[bool, str]:
    """Whether the client reached the proxy over TLS, and the evidence."""
    front = ctx.legs.front_leg(conn) if ctx.legs is not None else None
    if front is not None and front.tls_client_hello:
        return True, f"the front leg (connection {front.id}, frame {front.client_first_frame}) opens with a TLS ClientHello"
    header, public = conn.header, conn.header_service
    if front is None and header is not None and public is not None and public.implicit_tls:
        return True, f"the header's destination port {header.dst_port} is an implicit-TLS port ({public.name})"
    return False, ""


def server_confirms_plaintext(conn: Connection) -> str | None:
    """The server's own words showing it believes the stream is plaintext."""
    mail = conn.mail
    if mail is None:
        return None
    if mail.starttls_offered:
        return "the server offers STARTTLS to a client that is already encrypted"
    reply = mail.first_error.reply if mail.first_error is not None else ""
    if "clear-text" in reply or "cleartext" in reply.lower():
        return f"the server refused: {reply!r}"
    return None


class TlsFlagLost(Rule):
    code = "PD301"

    def check(self, conn: Connection, ctx: Context) -> Iterator[Hit]:
        header = conn.header
        if header is None or header.version != 2 or header.command != "PROXY":
            return
        if (header.ssl is not None and header.ssl.client_ssl) or conn.tls_client_hello:
            return  # flagged, or TLS passed through: the server does the TLS itself
        tls, evidence = front_was_tls(conn, ctx)
        if not tls:
            return
        confirmation = server_confirms_plaintext(conn)
        yield Hit(
            f"The client reached the proxy over TLS ({evidence}), but the v2 header to {describe_endpoint(conn)} has no "
            "SSL TLV with PP2_CLIENT_SSL: Stalwart treats the session as plaintext"
            + (f" ({confirmation})." if confirmation else "."),
            [conn], {"evidence": evidence, "server": confirmation, "tlvs": [t.name for t in header.tlvs]},
            group=endpoint(conn),
        )


class TlsFlagImpossibleV1(Rule):
    code = "PD302"

    def check(self, conn: Connection, ctx: Context) -> Iterator[Hit]:
        header = conn.header
        if header is None or header.version != 1 or conn.tls_client_hello:
            return
        tls, evidence = front_was_tls(conn, ctx)
        if tls:
            yield Hit(
                f"The client reached the proxy over TLS ({evidence}), but a v1 header cannot say so: "
                f"{describe_endpoint(conn)} believes the session is plaintext. Use v2 with the SSL TLV "
                "(HAProxy send-proxy-v2-ssl).",
                [conn], {"evidence": evidence}, group=endpoint(conn),
            )


class TlsToPlaintextListener(Rule):
    code = "PD303"

    def check(self, conn: Connection, ctx: Context) -> Iterator[Hit]:
        if not conn.tls_client_hello or relayed(conn, ctx):
            return
        plaintext = conn.opening.tls_answered_with_plaintext or (
            conn.greeting is not None and conn.greeting != "TLS record"
        )
        if plaintext:
            yield Hit(
                f"After the {'header' if conn.header else 'handshake'} the client sent a TLS ClientHello, but "
                f"{describe_endpoint(conn)} answered in plaintext ({conn.greeting!r}): TLS was passed through to a "
                "listener without implicit TLS.",
                [conn], {"server": conn.greeting}, group=endpoint(conn),
            )


class PlaintextToTlsListener(Rule):
    code = "PD304"

    def check(self, conn: Connection, ctx: Context) -> Iterator[Hit]:
        if conn.mid_stream or conn.opening.client_sent_tls or not implicit_tls_listener(conn, ctx):
            return
        terminated = tls_terminated_by_proxy(conn, ctx)
        if conn.client_first is None and terminated is None:
            return  # nothing sent and nothing known: an idle connection (PD402)
        alert = conn.opening.server_sent_tls and conn.greeting == "TLS record"
        silent = conn.greeting is None
        if not (alert or silent):
            return
        sent = f"sent plaintext ({conn.client_first!r})" if conn.client_first else "sent no ClientHello"
        why = f" ({terminated})" if terminated else ""
        yield Hit(
            f"After the {'header' if conn.header else 'handshake'} the client {sent} to {describe_endpoint(conn)}, which "
            f"{'answered with TLS' if alert else 'stayed silent, waiting for a ClientHello'}: the proxy terminated "
            f"TLS{why} and forwarded to an implicit-TLS listener.",
            [conn], {"client_first": conn.client_first, "tls_terminated": terminated, "server": conn.greeting},
            group=endpoint(conn),
        )


def tls_terminated_by_proxy(conn: Connection, ctx: Context) -> str | None:
    """The evidence that the proxy decrypted the client's TLS before this leg, if any."""
    header = conn.header
    if header is not None and header.ssl is not None and header.ssl.client_ssl:
        return "the header's SSL TLV says the client used TLS"
    tls, evidence = front_was_tls(conn, ctx)
    return evidence if tls else None


class TlsFlagWithoutTls(Rule):
    code = "PD305"

    def check(self, conn: Connection, ctx: Context) -> Iterator[Hit]:
        header = conn.header
        if header is None or header.ssl is None or not header.ssl.client_ssl:
            return
        front = ctx.legs.front_leg(conn) if ctx.legs is not None else None
        public = conn.header_service
        plaintext_port = public is not None and not public.implicit_tls
        if plaintext_port and (front is None or not front.tls_client_hello):
            yield Hit(
                f"The SSL TLV says the client used TLS, but the header's destination port {header.dst_port} is a "
                "plaintext port" + (" and the front leg was plaintext." if front else "."),
                [conn], {"header_dst_port": header.dst_port}, group=endpoint(conn),
            )


class ClientCertUnverified(Rule):
    code = "PD306"

    def check(self, conn: Connection, ctx: Context) -> Iterator[Hit]:
        ssl = conn.header.ssl if conn.header else None
        if ssl is not None and ssl.client & 0x06 and ssl.verify != 0:
            yield Hit(
                f"The client presented a certificate{f' (CN {ssl.cn})' if ssl.cn else ''} that the proxy did not verify "
                f"(verify = {ssl.verify}).",
                [conn], {"verify": ssl.verify, "cn": ssl.cn}, group=endpoint(conn),
            )


RULES = [
    TlsFlagLost(),
    TlsFlagImpossibleV1(),
    TlsToPlaintextListener(),
    PlaintextToTlsListener(),
    TlsFlagWithoutTls(),
    ClientCertUnverified(),
]
