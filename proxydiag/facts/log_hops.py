"""Log lines as hops: where each event happened and from whom, in the words of its log, and
the hops the header errors stand for. Stalwart's `network.proxy-error` with "end of stream"
or "invalid proxy header" is a trusted peer (Stalwart reads a header only from its trusted
networks) that sent none it could read; a proxy's "not a PROXY header" error is a client
sent to a front that requires one.

Fact building only: the rules (rules/hops.py, rules/logs.py) judge what is built here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import replace

from proxydiag.facts.hop import Cite, Hop, ListenerRole, Party, Provenance
from proxydiag.logs.event import LogEvent
from proxydiag.services import DEFAULT_TABLE

MISSING_HEADER_REASONS = ("end of stream", "invalid proxy header")
HAPROXY_CLIENT_SENT_NO_HEADER = frozenset({"haproxy.proxy-not-header", "haproxy.proxy-empty", "haproxy.proxy-abort",
                                           "haproxy.proxy-timeout", "haproxy.proxy-truncated"})
SOFTWARE = {"stalwart": "Stalwart", "haproxy": "HAProxy", "nginx": "nginx"}
MAX_CITED = 5


def listener_of(event: LogEvent) -> str | None:
    """Where the event happened, in the words of its log: Stalwart's listener id and
    port, HAProxy's frontend/bind, nginx's server address."""
    fields = event.fields
    if event.source == "stalwart":
        name, port = event.text("listenerId"), event.text("localPort")
        if name and port:
            return f"{name} (port {port})"
        return name or (f"port {port}" if port else None)
    if event.source == "haproxy" and fields.get("frontend"):
        return f"{fields['frontend']}/{fields.get('bind') or fields.get('backend')}"
    if event.source == "nginx":
        return event.text("server")
    return None


def source_of(event: LogEvent) -> str | None:
    address = event.text("remoteIp") if event.source == "stalwart" else event.text("client")
    return normal_address(address) if address else None


def normal_address(address: str) -> str:
    """An address as Stalwart uses it: IPv4-mapped IPv6 turned into IPv4 (listen.rs)."""
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return address
    mapped = getattr(ip, "ipv4_mapped", None)
    return str(mapped or ip)


def is_missing_header_error(event: LogEvent) -> bool:
    """Stalwart waited for a trusted peer's header and got none it could read."""
    return event.event == "network.proxy-error" and any(reason in (event.text("reason") or "")
                                                        for reason in MISSING_HEADER_REASONS)


def is_client_without_header(event: LogEvent) -> bool:
    """A proxy's front that requires a header got bytes that are none (not a malformed header)."""
    if event.event in HAPROXY_CLIENT_SENT_NO_HEADER or event.event == "nginx.proxy-protocol-error":
        return True
    return event.event == "nginx.broken-header" and not str(event.fields.get("data", "")).startswith(("PROXY ", "\r\n\r\n"))


def _provenance(group: Sequence[LogEvent]) -> Provenance:
    cites = tuple(Cite(event.file, event.line) for event in group[:MAX_CITED])
    return Provenance("log", cites, count=len(group))


def _sender(group: Sequence[LogEvent]) -> Party:
    sources = {source_of(event) for event in group}
    only = next(iter(sources)) if len(sources) == 1 else None
    return Party(address=only)


def _listener(event: LogEvent) -> Party:
    software = SOFTWARE.get(event.source)
    if event.source == "stalwart":
        return Party(port=event.number("localPort"), name=event.text("listenerId"), software=software)
    return Party(name=listener_of(event), software=software)


def missing_header_hop(group: Sequence[LogEvent], period: float | None = None) -> Hop:
    """Stalwart's proxy errors on one listener: its trusted peers sent no header it could read;
    coming like clockwork (`period`), a checker's connections rather than clients'."""
    return replace(_header_error_hop(group, "server",
                                     unparsed=any("invalid proxy header" in (event.text("reason") or "") for event in group),
                                     tls=any(event.fields.get("tls") is True for event in group)),
                   health_check=period is not None, period_seconds=period)


def client_without_header_hop(group: Sequence[LogEvent]) -> Hop:
    """A proxy's errors on one front listener: clients sent no header where it requires one."""
    return _header_error_hop(group, "proxy")


def malformed_header_hop(group: Sequence[LogEvent]) -> Hop:
    """A proxy's errors on one front listener: its clients' headers broke the spec (HAProxy's
    "invalid PROXY protocol header", nginx's "broken header" quoting a `PROXY` line)."""
    return replace(_header_error_hop(group, "proxy", unparsed=True), malformed=True)


def _header_error_hop(group: Sequence[LogEvent], role: ListenerRole, unparsed: bool = False, tls: bool = False) -> Hop:
    """A listener that requires a header, and the senders of these lines that sent none."""
    return Hop(sender=_sender(group), listener=_listener(group[0]), listener_role=role, sends="none",
               expects="required", provenance=_provenance(group), unparsed=unparsed, tls=tls,
               service=DEFAULT_TABLE.lookup(group[0].number("localPort")))


def mx_hop(group: Sequence[LogEvent], listener_known: bool = True) -> Hop:
    """SMTP sessions refused MAIL FROM without AUTH on a listener that is no submission one:
    inbound MX mail, which came in on public port 25. Without the listener (a quoted reply
    only), its port is a guess."""
    return Hop(sender=Party(), listener=_listener(group[0]) if listener_known else Party(), listener_role="server",
               sends="none", expects=None, provenance=_provenance(group), protocol="smtp", public_port=25,
               inferred=not listener_known)


def ban_hop(group: Sequence[LogEvent], address: str, inferred: bool) -> Hop:
    """Stalwart's ban of a proxy's address (given, or inferred from one address behind nearly
    every connection) and its refusals of it: every connection from the proxy is cut."""
    refusals = sum(1 for event in group if event.event == "security.ip-blocked")
    return Hop(sender=Party(address=address), listener=Party(software="Stalwart"), listener_role="server", sends="none",
               expects=None, provenance=replace(_provenance(group), count=refusals), refused_all=True, banned=True,
               inferred=inferred)
