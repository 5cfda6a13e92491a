"""PD3xx: TLS, and what the header says about it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from proxydiag.facts.capture_hops import connection_hop
from proxydiag.facts.model import Connection
from proxydiag.rules.base import (
    Context,
    Endpoint,
    Hit,
    Rule,
    endpoint,
    implicit_tls_listener,
    quoted,
    server_endpoint,
)
from proxydiag.rules.header import relayed
from proxydiag.rules.hops import (
    PLAINTEXT_TO_TLS_LISTENER,
    TLS_FLAG_IMPOSSIBLE,
    TLS_FLAG_LOST,
    TLS_TO_PLAINTEXT_LISTENER,
)
from proxydiag.rules.said import AS_THEY_ARE, Names, Said


@dataclass(frozen=True)
class FrontLegTls(Said):
    front: int  # the front leg's connection
    frame: int | None  # its ClientHello's

    def message(self, names: Names) -> str:
        return f"the front leg (connection {self.front}, frame {self.frame}) opens with a TLS ClientHello"


@dataclass(frozen=True)
class ImplicitTlsPort(Said):
    port: int | None  # the header's destination port
    service: str

    def message(self, names: Names) -> str:
        return f"the header's destination port {self.port} is an implicit-TLS port ({self.service})"


@dataclass(frozen=True)
class SslTlvSaysTls(Said):
    def message(self, names: Names) -> str:
        return "the header's SSL TLV says the client used TLS"


def front_was_tls(conn: Connection, ctx: Context) -> Said | None:
    """The evidence that the client reached the proxy over TLS, if any."""
    front = ctx.legs.front_leg(conn) if ctx.legs is not None else None
    if front is not None and front.tls_client_hello:
        return FrontLegTls(front.id, front.client_first_frame)
    header, public = conn.header, conn.header_service
    if front is None and header is not None and public is not None and public.implicit_tls:
        return ImplicitTlsPort(header.dst_port, public.name)
    return None


@dataclass(frozen=True)
class OffersStarttls(Said):
    def message(self, names: Names) -> str:
        return "the server offers STARTTLS to a client that is already encrypted"


@dataclass(frozen=True)
class RefusedClearText(Said):
    reply: str

    def message(self, names: Names) -> str:
        return f"the server refused: {quoted(names, self.reply)}"


def server_confirms_plaintext(conn: Connection) -> Said | None:
    """The server's own words showing it believes the stream is plaintext."""
    mail = conn.mail
    if mail is None:
        return None
    if mail.starttls_offered:
        return OffersStarttls()
    reply = mail.first_error.reply if mail.first_error is not None else ""
    if "clear-text" in reply or "cleartext" in reply.lower():
        return RefusedClearText(reply)
    return None


def told(said: Said | None) -> str | None:
    """A clause as the JSON evidence keeps it: as it is."""
    return said.message(AS_THEY_ARE) if said is not None else None


@dataclass(frozen=True)
class TlsFlagMissing(Said):
    evidence: Said  # how the client's TLS to the proxy shows
    server: Endpoint
    confirmation: Said | None  # the server's own words, if they show it believes plaintext

    def message(self, names: Names) -> str:
        return (f"The client reached the proxy over TLS ({self.evidence.message(names)}), but the v2 header to "
                f"{self.server.told(names)} has no SSL TLV with PP2_CLIENT_SSL: Stalwart treats the session as plaintext"
                + (f" ({self.confirmation.message(names)})." if self.confirmation else "."))


class TlsFlagLost(Rule):
    code = "PD301"

    def check(self, conn: Connection, ctx: Context) -> Iterator[Hit]:
        header = conn.header
        evidence = front_was_tls(conn, ctx) if header is not None else None
        if header is None or evidence is None or not TLS_FLAG_LOST.applies(connection_hop(conn, None, terminated=True)):
            return  # flagged, or TLS passed through or started on this leg: the server does the TLS itself
        confirmation = server_confirms_plaintext(conn)
        yield Hit(
            TlsFlagMissing(evidence, server_endpoint(conn), confirmation),
            [conn], {"evidence": told(evidence), "confirmation": told(confirmation), "tlvs": [t.name for t in header.tlvs]},
            group=endpoint(conn),
        )


@dataclass(frozen=True)
class V1CannotSayTls(Said):
    evidence: Said
    server: Endpoint

    def message(self, names: Names) -> str:
        return (f"The client reached the proxy over TLS ({self.evidence.message(names)}), but a v1 header cannot say so: "
                f"{self.server.told(names)} believes the session is plaintext. Use v2 with the SSL TLV "
                "(HAProxy send-proxy-v2-ssl).")


class TlsFlagImpossibleV1(Rule):
    code = "PD302"

    def check(self, conn: Connection, ctx: Context) -> Iterator[Hit]:
        evidence = front_was_tls(conn, ctx) if conn.header is not None else None
        if evidence is not None and TLS_FLAG_IMPOSSIBLE.applies(connection_hop(conn, None, terminated=True)):
            yield Hit(
                V1CannotSayTls(evidence, server_endpoint(conn)),
                [conn], {"evidence": told(evidence)}, group=endpoint(conn),
            )


@dataclass(frozen=True)
class PlaintextAnswerToTls(Said):
    after_header: bool  # the ClientHello followed a header, not just the handshake
    server: Endpoint
    answer: str | None

    def message(self, names: Names) -> str:
        return (f"After the {'header' if self.after_header else 'handshake'} the client sent a TLS ClientHello, but "
                f"{self.server.told(names)} answered in plaintext ({quoted(names, self.answer)}): TLS was passed through "
                "to a listener without implicit TLS.")


class TlsToPlaintextListener(Rule):
    code = "PD303"

    def check(self, conn: Connection, ctx: Context) -> Iterator[Hit]:
        if not conn.tls_client_hello or relayed(conn, ctx):
            return
        plaintext = conn.opening.tls_answered_with_plaintext or (
            conn.greeting is not None and conn.greeting != "TLS record"
        )
        if plaintext and TLS_TO_PLAINTEXT_LISTENER.applies(connection_hop(conn, None, listener_implicit_tls=False)):
            yield Hit(
                PlaintextAnswerToTls(conn.header is not None, server_endpoint(conn), conn.greeting),
                [conn], {"server": conn.greeting}, group=endpoint(conn),
            )


@dataclass(frozen=True)
class PlaintextToImplicitTls(Said):
    after_header: bool
    client_first: str | None  # the plaintext sent, if any
    server: Endpoint
    alert: bool  # the listener answered with TLS, rather than staying silent
    terminated: Said | None  # the evidence that the proxy decrypted the client's TLS

    def message(self, names: Names) -> str:
        sent = f"sent plaintext ({quoted(names, self.client_first)})" if self.client_first else "sent no ClientHello"
        why = f" ({self.terminated.message(names)})" if self.terminated else ""
        return (f"After the {'header' if self.after_header else 'handshake'} the client {sent} to "
                f"{self.server.told(names)}, which "
                f"{'answered with TLS' if self.alert else 'stayed silent, waiting for a ClientHello'}: the proxy "
                f"terminated TLS{why} and forwarded to an implicit-TLS listener.")


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
            return  # the listener's answer does not show it waiting for TLS
        hop = connection_hop(conn, None, terminated=True, listener_implicit_tls=True)
        if not PLAINTEXT_TO_TLS_LISTENER.applies(hop):
            return
        yield Hit(
            PlaintextToImplicitTls(conn.header is not None, conn.client_first, server_endpoint(conn), alert, terminated),
            [conn], {"client_first": conn.client_first, "tls_terminated": told(terminated), "server": conn.greeting},
            group=endpoint(conn),
        )


def tls_terminated_by_proxy(conn: Connection, ctx: Context) -> Said | None:
    """The evidence that the proxy decrypted the client's TLS before this leg, if any."""
    header = conn.header
    if header is not None and header.ssl is not None and header.ssl.client_ssl:
        return SslTlvSaysTls()
    return front_was_tls(conn, ctx)


@dataclass(frozen=True)
class TlsFlagOnPlaintextPort(Said):
    port: int | None  # the header's destination port
    front_plaintext: bool  # the front leg was seen, in plaintext

    def message(self, names: Names) -> str:
        return (f"The SSL TLV says the client used TLS, but the header's destination port {self.port} is a "
                "plaintext port" + (" and the front leg was plaintext." if self.front_plaintext else "."))


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
                TlsFlagOnPlaintextPort(header.dst_port, front_plaintext=front is not None),
                [conn], {"header_dst_port": header.dst_port}, group=endpoint(conn),
            )


@dataclass(frozen=True)
class CertificateUnverified(Said):
    cn: str | None  # the certificate's common name, as the TLV gives it
    verify: int

    def message(self, names: Names) -> str:
        return (f"The client presented a certificate{f' (CN {names.text(self.cn)})' if self.cn else ''} that the proxy "
                f"did not verify (verify = {self.verify}).")


class ClientCertUnverified(Rule):
    code = "PD306"

    def check(self, conn: Connection, ctx: Context) -> Iterator[Hit]:
        ssl = conn.header.ssl if conn.header else None
        if ssl is not None and ssl.client & 0x06 and ssl.verify != 0:
            yield Hit(
                CertificateUnverified(ssl.cn, ssl.verify),
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
