"""A captured leg as a hop: the header it carried (or began), what the listener expects of
its sender, and the listener's role, as the capture rules resolved them. The rules of
rules/hops.py judge it with the same predicates as a configuration's, a log's or a probe's hop.
"""

from __future__ import annotations

from proxydiag.facts.hop import Cite, Expects, Hop, ListenerRole, Party, Provenance, Sent
from proxydiag.facts.model import Connection, Expectation


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
                   expects: Expects | None = None, waits_for_client: bool = False, *, terminated: bool = False,
                   listener_implicit_tls: bool | None = None) -> Hop:
    """The leg as a hop; `expects` where the listener's behaviour showed it (it waited for a
    header, or its trust list left the sender out), else from the expectation given, read or
    inferred; `waits_for_client` where the legs showed the proxy forwarding only after its
    client's first bytes; `terminated` where the legs showed the client's TLS ending at the
    proxy (its front leg's ClientHello, or the public port's implicit TLS), and
    `listener_implicit_tls` where the listener's answers showed whether it wants TLS first."""
    header = conn.header
    return Hop(
        sender=Party(address=conn.tcp.src_addr, port=conn.tcp.src_port),
        listener=Party(address=conn.tcp.dst_addr, port=conn.tcp.dst_port),
        listener_role=role,
        sends=sent_by(conn),
        expects=expects or expects_of(expectation),
        inferred=expects is None and expectation is not None and expectation.inferred,
        provenance=Provenance("capture", (Cite(None, None, f"frame {conn.first_frame}"),)),
        service=conn.service,
        server_speaks_first=conn.server_speaks_first,
        client_opens_tls=conn.tls_client_hello,
        waits_for_client=waits_for_client,
        ssl_tlv=header is not None and header.ssl is not None and bool(header.ssl.client_ssl),
        passthrough=bool(conn.tls_client_hello),
        tls=upgraded_after_header(conn),
        terminated=terminated,
        listener_implicit_tls=listener_implicit_tls,
    )


def upgraded_after_header(conn: Connection) -> bool:
    """The leg itself became TLS after the header: its client's STARTTLS was accepted (Stalwart's
    proxy upgrades its backend so), and the server then knows the session is encrypted."""
    return conn.mail is not None and conn.mail.upgraded
