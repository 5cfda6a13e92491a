"""Proxy configurations (and Stalwart's) as hops: which Stalwart listener each route
reaches and what that listener makes of the route's source, which routes reach another
configuration's listener (a chain), and the hop each route, chain and front listener is.

Fact building only: the rules (rules/hops.py, rules/crosscheck.py) judge what is built here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from proxydiag.configs.compose import Published
from proxydiag.configs.model import WILDCARD_ADDRESSES, FrontListener, Origin, ProxyConfig, Route
from proxydiag.configs.stalwart import Listener, StalwartConfig
from proxydiag.configs.stalwart_lines import StalwartLines
from proxydiag.facts.hop import Cite, Expects, Hop, Party, Provenance, Sent
from proxydiag.services import DEFAULT_TABLE, ServiceTable


@dataclass(frozen=True)
class Target:
    """The Stalwart listener a route reaches, and what it makes of the route's source."""

    listener: Listener
    where: str  # file:line of the listener
    trusted: bool | None  # None: the proxy's source address is not in its configuration
    trust_text: str  # the effective trusted networks, as written
    siblings: tuple[Listener, ...] = ()  # every listener of the configuration
    port: int | None = None  # the listener's own port (the container's, behind a published port)
    published: Origin | None = None  # the compose `ports:` line that leads there


@dataclass
class Setting:
    stalwart: StalwartConfig | None = None
    server_addresses: frozenset[str] = frozenset()
    table: ServiceTable = field(default_factory=lambda: DEFAULT_TABLE)
    published: tuple[Published, ...] = ()  # compose `ports:` given with the configurations


Feeding = dict[Route, list[tuple[FrontListener, ProxyConfig]]]

# Kinds whose one proxy is written across several files (Traefik: static and dynamic).
SPLIT_KINDS = frozenset({"traefik"})


# --- chains ------------------------------------------------------------------------------


def chains(configs: Sequence[ProxyConfig]) -> Feeding:
    """Routes that reach another configuration's listener, with those listeners."""
    fed: Feeding = {}
    for config in configs:
        for route in config.routes:
            for other in configs:
                if other is config:
                    continue
                for front in other.listeners:
                    if (front.port == route.target_port and _same_host(front.address, route.server_address)
                            and not _own_listener(route, config, front, other)):
                        fed.setdefault(route, []).append((front, other))
    return fed


def same_proxy(one: ProxyConfig, other: ProxyConfig) -> bool:
    return one is other or (one.kind == other.kind and one.kind in SPLIT_KINDS)


def _own_listener(route: Route, config: ProxyConfig, front: FrontListener, other: ProxyConfig) -> bool:
    """The listener the route itself starts from, read from another file of the same proxy."""
    own = route.front
    return own is not None and same_proxy(config, other) and (own.address, own.port) == (front.address, front.port)


def _same_host(listening: str, connecting: str) -> bool:
    return listening in WILDCARD_ADDRESSES or listening == connecting


# --- the Stalwart listener a route reaches --------------------------------------------------


def target(route: Route, setting: Setting, lines: StalwartLines | None) -> Target | None:
    """The Stalwart listener the route reaches: bound at its port, or at the container port a
    compose file publishes it on."""
    found = _bound_target(route, route.target_port, route.server_address, setting, lines)
    if found is not None or route.target_port is None:
        return found
    for mapping in setting.published:
        if mapping.published == route.target_port and mapping.host_address in ("", route.server_address):
            inside = _bound_target(route, mapping.target, "", setting, lines)
            if inside is not None:
                return replace(inside, published=mapping.origin)
    return None


def _bound_target(route: Route, port: int | None, server_address: str, setting: Setting,
                  lines: StalwartLines | None) -> Target | None:
    stalwart = setting.stalwart
    if stalwart is None or lines is None or port is None:
        return None
    for listener in stalwart.listeners:
        for address, bound_port in listener.binds:
            if bound_port != port or (server_address and not _reaches(server_address, address, setting.server_addresses)):
                continue
            entries = stalwart.effective_trust(listener)
            valid = [entry for entry in entries if entry.network is not None]
            if route.source_address:
                trusted: bool | None = stalwart.trusts(listener, route.source_address)
            else:
                trusted = False if not valid else None
            trust_text = ", ".join(entry.text for entry in entries) or "none"
            return Target(listener, lines.listener(listener.id), trusted, f"{trust_text} ({lines.trust(listener)})",
                          tuple(stalwart.listeners), port)
    return None


def _reaches(server_address: str, bound: str, server_addresses: frozenset[str]) -> bool:
    if server_addresses:
        return server_address in server_addresses or server_address == bound
    return bound in WILDCARD_ADDRESSES or bound == server_address


# --- hops --------------------------------------------------------------------------------


def cite(origin: Origin) -> Cite:
    return Cite(origin.path, origin.line, origin.shown.strip())


def _provenance(*origins: Origin | None) -> Provenance:
    return Provenance("config", tuple(cite(origin) for origin in origins if origin is not None))


def _front_party(front: FrontListener, at: Origin | None = None) -> Party:
    address = None if front.address in WILDCARD_ADDRESSES else front.address
    return Party(address=address, port=front.port, at=cite(at or front.origin))


def route_hop(route: Route, found: Target) -> Hop:
    """The hop from the proxy (the route's source) to the Stalwart listener it reaches: the
    listener expects a header exactly from the sources in its trusted networks."""
    expects: Expects = "required" if found.trusted is not False else "none"
    listener = found.listener
    return Hop(
        sender=Party(address=route.source_address, at=cite(route.origin)),
        listener=_route_listener(route, found),
        listener_role="server",
        sends=route.sends,
        expects=expects,
        inferred=found.trusted is None,
        provenance=_provenance(route.origin, route.sends_origin),
        ssl_tlv=route.ssl_tlv,
        listener_implicit_tls=listener.implicit_tls,
        protocol=listener.protocol,
        service=DEFAULT_TABLE.lookup(route.target_port),
        tls=route.tls_to_server,
    )


def _route_listener(route: Route, found: Target | None) -> Party:
    """The server a route reaches: the Stalwart listener there where known, and for which
    connections a map chooses it."""
    return Party(address=route.server_address or None, port=route.target_port,
                 name=found.listener.id if found is not None else None, software="Stalwart" if found is not None else None,
                 chosen_for=route.chosen_for)


def tls_hop(route: Route, found: Target | None, table: ServiceTable = DEFAULT_TABLE) -> Hop | None:
    """The route's TLS: ended at its front (terminated) or passed through, the proxy's own TLS to
    the server, and whether the listener reached wants TLS from the first byte (Stalwart's
    listener, else the service table)."""
    front = route.front
    if front is None:
        return None
    server = table.lookup(route.target_port)
    implicit = found.listener.implicit_tls if found is not None else (server.implicit_tls if server else None)
    front_service = DEFAULT_TABLE.lookup(front.port)
    client_tls = front.tls_terminated or bool(front_service and front_service.implicit_tls)
    return Hop(
        sender=_front_party(front),
        listener=_route_listener(route, found),
        listener_role="server",
        sends=route.sends,
        expects=None,
        provenance=_provenance(front.origin, route.origin),
        service=server,
        ssl_tlv=route.ssl_tlv,
        listener_implicit_tls=implicit,
        tls=route.tls_to_server,
        terminated=front.tls_terminated,
        passthrough=client_tls and not front.tls_terminated,
    )


def front_hop(front: FrontListener) -> Hop:
    """Clients to a front listener of the proxy: a header required of them where the proxy
    accepts one (only from the listed sources, where it lists them)."""
    return Hop(
        sender=Party(),
        listener=_front_party(front),
        listener_role="proxy",
        sends="none",
        expects="required" if front.accepts_header and not front.header_optional else "optional"
        if front.accepts_header else "none",
        inferred=bool(front.trusted_sources),
        provenance=_provenance(front.origin),
    )


def chain_hop(route: Route, front: FrontListener, adds_header: bool) -> Hop:
    """One proxy's route to another proxy's front listener, which sends a header of its own
    onward or not."""
    return Hop(
        sender=Party(address=route.source_address, at=cite(route.origin)),
        listener=_front_party(front),
        listener_role="proxy",
        sends=route.sends,
        expects="required" if front.accepts_header and not front.header_optional else "optional"
        if front.accepts_header else "none",
        provenance=_provenance(front.origin, route.origin),
        adds_header=adds_header,
    )


def waiting_hop(route: Route, table: ServiceTable) -> Hop | None:
    """Clients to the route's front listener, where the proxy forwards only after their first bytes."""
    front = route.front
    if front is None:
        return None
    service = table.lookup(front.port) or table.lookup(route.target_port)
    wait = route.wait_origin or route.origin
    return Hop(
        sender=Party(),
        listener=_front_party(front, wait),
        listener_role="proxy",
        sends="none",
        expects=None,
        provenance=_provenance(wait, front.origin),
        service=service,
        server_speaks_first=service.server_speaks_first if service is not None else None,
        client_opens_tls=bool(service and service.implicit_tls and not front.tls_terminated),
        waits_for_client=route.waits_for_client,
    )


def check_hop(route: Route, checked: Target | None) -> Hop | None:
    """The route's health checks to the listener they reach (their own port's, where set): a
    header required of them where that listener trusts the proxy, or, without Stalwart's
    configuration, where the route itself sends one."""
    check = route.health_check
    if check is None:
        return None
    requires = checked.trusted if checked is not None else route.sends != "none"
    port = check.port or route.target_port
    # check-send-proxy alone sends v1: HAProxy picks v2 only for send-proxy-v2 (seen with 2.6.12)
    sends: Sent = "none" if not check.sends_header else "local" if check.local else "v1" if route.sends == "none" \
        else route.sends
    return Hop(
        sender=Party(address=route.source_address, at=cite(route.origin)),
        listener=_stalwart_party(checked, port),
        listener_role="server",
        sends=sends,
        expects="required" if requires else "none" if checked is not None and checked.trusted is False else None,
        provenance=_provenance(check.origin, route.origin),
        protocol=checked.listener.protocol if checked is not None else None,
        listener_implicit_tls=checked.listener.implicit_tls if checked is not None else None,
        health_check=True,
    )


def mx_hop(route: Route, found: Target | None, setting: Setting) -> Hop | None:
    """The clients of the route's front port to the SMTP listener behind: the Stalwart one bound
    there (its own port, the container's behind a published port), or without Stalwart's
    configuration a port that serves SMTP by convention. With Stalwart's configuration and no
    listener there, the port is translated on the way: the listener's own port is unknown."""
    front = route.front
    if front is None or (found is None and setting.stalwart is not None):
        return None
    port = found.port if found is not None and found.port is not None else route.target_port
    service = setting.table.lookup(port)
    protocol = (found.listener.protocol or "smtp") if found is not None else service.protocol if service else None
    return Hop(
        sender=Party(at=cite(front.origin)),
        listener=_stalwart_party(found, port),
        listener_role="server",
        sends=route.sends,
        expects=None,
        provenance=_provenance(front.origin, route.origin),
        protocol=protocol,
        service=service,
        public_port=front.port,
    )


def _stalwart_party(found: Target | None, port: int | None) -> Party:
    if found is None:
        return Party(port=port)
    return Party(port=port, name=found.listener.id, software="Stalwart")
