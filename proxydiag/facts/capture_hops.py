"""A captured leg as a hop: the header it carried (or began), what the listener expects of
its sender, and the listener's role, as the capture rules resolved them; TLS on the leg and
the listener's answer to it. The rules of rules/hops.py judge it with the same predicates as
a configuration's, a log's or a probe's hop.
"""

from __future__ import annotations

from dataclasses import replace

from proxydiag.facts.hop import Cite, Expects, Hop, ListenerRole, Party, Provenance, Sent
from proxydiag.facts.model import Connection, Expectation
from proxydiag.parsers.proxy_protocol import ParseResult


def sent_by(conn: Connection) -> Sent:
    """The header the leg's client put first: a whole one, or the start of one (its version)."""
    header = conn.header
    if header is not None:
        return "local" if header.command == "LOCAL" else "v1" if header.version == 1 else "v2"
    version = conn.proxy.version if conn.proxy is not None else None
    return "none" if not version else "v1" if version == 1 else "v2"


def expects_of(expectation: Expectation | None) -> Expects | None:
    if expectation is None:
        return None
    return "required" if expectation.wants_header else "none"


def connection_hop(conn: Connection, expectation: Expectation | None, role: ListenerRole = "server",
                   expects: Expects | None = None, waits_for_client: bool = False) -> Hop:
    """The leg as a hop; `expects` where the listener's behaviour showed it (it waited for a
    header), else from the expectation given, read or inferred; `waits_for_client` where the
    legs showed the proxy forwarding only after its client's first bytes."""
    return Hop(
        sender=Party(address=conn.tcp.src_addr, port=conn.tcp.src_port),
        listener=Party(address=conn.tcp.dst_addr, port=conn.tcp.dst_port),
        listener_role=role,
        sends=sent_by(conn),
        expects=expects or expects_of(expectation),
        inferred=expects is None and expectation is not None and expectation.inferred,
        provenance=Provenance("capture", frames(conn)),
        service=conn.service,
        server_speaks_first=conn.server_speaks_first,
        client_opens_tls=conn.tls_client_hello,
        waits_for_client=waits_for_client,
        ssl_tlv=conn.header is not None and conn.header.ssl is not None and conn.header.ssl.client_ssl,
        tls=conn.tls_client_hello,
        starttls=conn.mail is not None and conn.mail.upgraded,
        plaintext=plaintext_sent(conn),
        unparsed=conn.header is None and sent_by(conn) != "none",
    )


def frames(conn: Connection) -> tuple[Cite, ...]:
    """The leg's first frame, then those of the sender's first bytes and the listener's first
    answer where the capture holds them."""
    seen = ((conn.first_frame, ""), (conn.client_first_frame, "the sender's first bytes"),
            (conn.greeting_frame, "the listener's first answer"))
    return tuple(Cite(None, None, f"frame {frame}" + (f": {what}" if what else "")) for frame, what in seen
                 if frame is not None)


def plaintext_sent(conn: Connection) -> bool:
    """The sender's first bytes after the header were plaintext, not TLS."""
    return conn.client_first is not None and not conn.tls_client_hello and not conn.opening.client_sent_tls


def answered_in_plaintext(conn: Connection) -> bool:
    """The listener answered in plaintext (to a ClientHello, where one came)."""
    return conn.opening.tls_answered_with_plaintext or (conn.greeting is not None and conn.greeting != "TLS record")


def listener_tls_shown(conn: Connection, expected: bool, relayed: bool) -> bool | None:
    """Whether the listener does implicit TLS, as its answer shows it over what the
    configuration or the service table `expected`: a plaintext answer to a ClientHello says no
    (unless a proxy `relayed` it from further on: None); to plaintext, a TLS record or silence
    says the expectation holds, a plaintext greeting that it does not. None where the capture
    cannot tell (mid-stream, TLS records without a ClientHello)."""
    if conn.tls_client_hello:
        return False if not relayed and answered_in_plaintext(conn) else None
    if conn.mid_stream or conn.opening.client_sent_tls:
        return None
    if not expected:
        return False
    return (conn.opening.server_sent_tls and conn.greeting == "TLS record") or conn.greeting is None


def tls_hop(conn: Connection, terminated: bool, implicit_tls_expected: bool, relayed: bool) -> Hop:
    """The leg as a hop with what the capture shows of TLS: `terminated` where the evidence
    shows the proxy decrypted its client's TLS (the front leg's ClientHello, the SSL TLV, an
    implicit-TLS public port), the listener's implicit TLS as its answer shows it."""
    return replace(connection_hop(conn, conn.expectation), terminated=terminated,
                   listener_implicit_tls=listener_tls_shown(conn, implicit_tls_expected, relayed))


def trust_hop(conn: Connection, trusted: bool) -> Hop:
    """The leg as a hop to a Stalwart listener that reads a header only from the sources it trusts."""
    return connection_hop(conn, None, expects="required" if trusted else "none")


def malformed_hop(conn: Connection, parsed: ParseResult, explained: bool) -> Hop:
    """The leg as a hop with one of its headers (the first, or one after it): malformed where the
    parser found a violation that is the sender's doing, not `explained` otherwise (a header cut
    by the capture's snap length, or whose rest never came because the server gave up first)."""
    sends: Sent = "v1" if parsed.version == 1 else "v2"
    if parsed.header is not None and parsed.header.command == "LOCAL":
        sends = "local"
    return replace(connection_hop(conn, None), sends=sends, malformed=bool(parsed.violations) and not explained,
                   unparsed=parsed.header is None)
