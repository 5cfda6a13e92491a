"""Proxy configurations against Stalwart's: the findings the traffic would show, judged
from the files before any capture.

Each route of a proxy configuration is matched to the Stalwart listener it reaches (by
port; with `server_addresses`, only routes to those addresses, for NAT), then judged with
the catalog's codes and the semantics of the traffic rules: a listener expects a header
exactly from the sources in its trusted networks (spec/findings.md, references.md
"Stalwart"). Without a Stalwart configuration, what the proxy configuration alone shows
is judged against the service table. Two configurations where one's routes reach the
other's listeners are a chain of two hops.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from proxydiag.configs import fixes
from proxydiag.configs.compose import Published
from proxydiag.configs.model import WILDCARD_ADDRESSES, FrontListener, Origin, ProxyConfig, Route
from proxydiag.configs.stalwart import Listener, StalwartConfig
from proxydiag.configs.stalwart_lines import StalwartLines
from proxydiag.rules.base import Finding
from proxydiag.rules.finding import make_finding
from proxydiag.services import DEFAULT_TABLE, Service, ServiceTable


@dataclass(frozen=True)
class Judgement:
    """One finding on the configurations, with the edits that fix it."""

    code: str
    message: str
    evidence: dict[str, str]
    edits: tuple[fixes.LineEdit, ...] = ()
    advice: str = ""
    inferred: bool = False


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


def check(configs: Sequence[ProxyConfig], setting: Setting) -> list[Judgement]:
    """Every judgement over the given proxy configurations (in the order found)."""
    lines = StalwartLines.of(setting.stalwart) if setting.stalwart is not None else None
    judgements: list[Judgement] = []
    feeding = _chains(configs)
    for config in configs:
        for front in config.listeners:
            judgements.extend(_judge_front(front, config, configs, feeding))
        for route in config.routes:
            if route in feeding:
                judgements.extend(_judge_hop(route, config, feeding[route], configs))
                continue
            target = _target(route, setting, lines) if setting.stalwart is not None else None
            if target is None and _another_service(route, config, setting, lines):
                continue
            if setting.stalwart is not None and target is None:
                judgements.extend(_judge_unknown_port(route, setting))
            judgements.extend(_judge_route(route, config, target, setting))
    return _unique(judgements)


def _another_service(route: Route, config: ProxyConfig, setting: Setting, lines: StalwartLines | None) -> bool:
    """A server chosen at run time (an nginx map value) that is no Stalwart listener while
    another choice of the same line is one: the other service sharing the port (a web
    server behind the same SNI map), judged by nobody here."""
    if route.chosen_by is None or setting.stalwart is None:
        return False
    return any(_target(other, setting, lines) is not None for other in _chosen_with(route, config))


def _chosen_with(route: Route, config: ProxyConfig) -> list[Route]:
    """The other servers chosen at run time on the same line, from the same listener."""
    if route.chosen_by is None:
        return []
    return [other for other in config.routes if other.chosen_by is not None and other.block_origin == route.block_origin
            and other.front == route.front and other.endpoint != route.endpoint]


def _reached(route: Route) -> str:
    """The route's server, and for which connections where a map chooses it."""
    return f"{route.endpoint}, {route.chosen_for}" if route.chosen_for else route.endpoint


# --- chains ------------------------------------------------------------------------------


def _chains(configs: Sequence[ProxyConfig]) -> dict[Route, list[tuple[FrontListener, ProxyConfig]]]:
    """Routes that reach another configuration's listener, with those listeners."""
    fed: dict[Route, list[tuple[FrontListener, ProxyConfig]]] = {}
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


# Kinds whose one proxy is written across several files (Traefik: static and dynamic).
SPLIT_KINDS = frozenset({"traefik"})


def _same_proxy(one: ProxyConfig, other: ProxyConfig) -> bool:
    return one is other or (one.kind == other.kind and one.kind in SPLIT_KINDS)


def _own_listener(route: Route, config: ProxyConfig, front: FrontListener, other: ProxyConfig) -> bool:
    """The listener the route itself starts from, read from another file of the same proxy."""
    own = route.front
    return own is not None and _same_proxy(config, other) and (own.address, own.port) == (front.address, front.port)


def _same_host(listening: str, connecting: str) -> bool:
    return listening in WILDCARD_ADDRESSES or listening == connecting


def _judge_hop(route: Route, config: ProxyConfig, hops: list[tuple[FrontListener, ProxyConfig]],
               configs: Sequence[ProxyConfig]) -> Iterable[Judgement]:
    for front, inner in hops:
        inner_routes = [r for other in configs if _same_proxy(other, inner) for r in other.routes
                        if r.front is not None and (r.front.address, r.front.port) == (front.address, front.port)]
        if route.sends == "none" and front.accepts_header and not front.header_optional:
            yield Judgement(
                "PD109",
                f"{inner.path} expects a PROXY header on {front.endpoint}, but the proxy in front ({route.origin}) "
                "sends none: every connection is refused there.",
                {"inner_listener": front.origin.cite(), "outer_route": route.origin.cite()},
                fixes.set_header(route, config.kind, "v2", _terminates(route), config.version_floor),
            )
        sending = [r for r in inner_routes if r.sends != "none"]
        if route.sends != "none" and not front.accepts_header and sending:
            yield Judgement(
                "PD106",
                f"Two hops add a header: {route.origin} sends one to {front.endpoint}, which does not accept it "
                f"({front.origin}), and {sending[0].origin} adds its own: the server gets the outer header as data "
                "after the inner one.",
                {"outer_route": route.origin.cite(), "inner_listener": front.origin.cite(),
                 "inner_route": sending[0].origin.cite()},
                fixes.accept_header(front, inner.kind),
            )


# --- front listeners ---------------------------------------------------------------------


def _judge_front(front: FrontListener, config: ProxyConfig, configs: Sequence[ProxyConfig],
                 feeding: dict[Route, list[tuple[FrontListener, ProxyConfig]]]) -> Iterable[Judgement]:
    fed = any(front is hop_front for hops in feeding.values() for hop_front, _ in hops)
    if not front.accepts_header or front.header_optional or fed:
        return
    behind_something = bool(front.trusted_sources)
    yield Judgement(
        "PD109",
        f"{front.origin} makes the proxy expect a PROXY header from whoever connects to {front.endpoint}"
        + (" (from " + ", ".join(front.trusted_sources) + ")" if behind_something else "")
        + ": mail clients and MTAs send none, so the proxy refuses them. "
        "It should send headers to the server, not accept them (unless a load balancer in front sends them: give its "
        "configuration too).",
        {"listener": front.origin.cite()},
        fixes.stop_accepting(front, config.kind),
        inferred=behind_something,
    )


# --- routes ------------------------------------------------------------------------------


def _target(route: Route, setting: Setting, lines: StalwartLines | None) -> Target | None:
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


def _judge_unknown_port(route: Route, setting: Setting) -> Iterable[Judgement]:
    """A route to a mail port that no Stalwart listener binds: the wrong file, a listener
    bound elsewhere, or a NAT (`--server-address`)."""
    if route.target_port not in setting.table:
        return
    if setting.server_addresses and route.server_address not in setting.server_addresses:
        return
    path = setting.stalwart.path if setting.stalwart is not None else "the Stalwart configuration"
    yield Judgement(
        "PD608",
        f"{route.origin} forwards to port {route.target_port}, which no listener in {path} binds"
        + (f" at {route.server_address}" if setting.server_addresses else "")
        + ": is this the right file, a listener bound elsewhere, or an address translated on the way "
        "(--server-address)?",
        {"proxy": route.origin.cite()},
        inferred=True,
    )


def _judge_route(route: Route, config: ProxyConfig, target: Target | None, setting: Setting) -> Iterable[Judgement]:
    server = setting.table.lookup(route.target_port)
    yield from _judge_header(route, config, target)
    yield from _judge_tls(route, config, target, server)
    yield from _judge_waiting(route, config, setting.table)
    yield from _judge_mx_port(route, config, target, setting)
    yield from _judge_health_check(route, config, target, setting)


def _both(route: Route, target: Target | None) -> dict[str, str]:
    evidence = {"proxy": route.origin.cite()}
    if route.sends_origin is not None and route.sends_origin != route.origin:
        evidence["header"] = route.sends_origin.cite()
    if route.chosen_by is not None:
        if route.chosen_by != route.origin:
            evidence["chosen"] = route.chosen_by.cite()
        evidence["chosen_for"] = route.chosen_for or ""
        if route.block_origin is not None and route.block_origin not in (route.origin, route.chosen_by):
            evidence["proxy_pass"] = route.block_origin.cite()
    if target is not None:
        evidence["stalwart"] = f"{target.where}: listener {target.listener.id!r}, trusted networks {target.trust_text}"
        if target.published is not None:
            evidence["published"] = target.published.cite()
    return evidence


def _answer_to_a_header(listener: Listener, version: str) -> str:
    """What a Stalwart listener that does not trust the sender makes of a header
    (references.md, "When the peer is not trusted")."""
    if listener.implicit_tls:
        return "the TLS handshake fails on it: \"received corrupt message of type InvalidContentType\""
    protocol = (listener.protocol or "").lower()
    if protocol in ("smtp", "lmtp"):
        return ("it greets, answers 500 5.5.1 three times and says 221 Bye (the v2 signature holds QUIT)"
                if version == "v2" else "it answers 500 5.5.1 to the header line, and the session goes on")
    return {"imap": "IMAP answers BAD [PARSE]", "pop3": "POP3 answers -ERR", "http": "HTTP reads it as a broken request",
            "https": "HTTP reads it as a broken request"}.get(protocol, "it reads the header as commands")


def _judge_header(route: Route, config: ProxyConfig, target: Target | None) -> Iterable[Judgement]:
    if target is None:
        return
    listener, source = target.listener, route.source_address
    if route.sends != "none":
        if target.trusted is False:
            evidence = {**_both(route, target), "source": source or "(not set; the listener trusts no one)"}
            why = (f"whose trusted networks do not contain the proxy's source {source}" if source
                   else "which trusts no proxy at all")
            message = (f"{route.origin} sends a {route.sends} PROXY header to Stalwart listener {listener.id!r} "
                       f"({_reached(route)}), {why}: Stalwart reads the header as protocol data")
            advice = fixes.trust_advice(target.where, source, listener)
            yield Judgement("PD102", f"{message} ({_answer_to_a_header(listener, route.sends)}).", evidence,
                            fixes.remove_header(route, config.kind), _shared(route, config, False) + advice)
            if source:
                yield Judgement("PD206", message + ".", evidence, (), advice)
        return
    if target.trusted is None and not route.source_address:
        yield Judgement(
            "PD101",
            f"{route.origin} sends no PROXY header to Stalwart listener {listener.id!r} ({_reached(route)}); if the proxy "
            f"connects from one of its trusted networks ({target.trust_text}), Stalwart waits for a header and the "
            "session hangs without a greeting.",
            _both(route, target), fixes.set_header(route, config.kind, "v2", _terminates(route), config.version_floor),
            _shared(route, config, True), inferred=True,
        )
    elif target.trusted:
        yield Judgement(
            "PD101",
            f"{route.origin} sends no PROXY header to Stalwart listener {listener.id!r} ({_reached(route)}), which trusts "
            f"the proxy's source {route.source_address}: Stalwart waits for a header and the session hangs without a "
            "greeting.",
            {**_both(route, target), "source": route.source_address or ""},
            fixes.set_header(route, config.kind, "v2", _terminates(route), config.version_floor), _shared(route, config, True),
        )


def _shared(route: Route, config: ProxyConfig, adding: bool) -> str:
    """What a header switched on or off for one server chosen at run time does to the others:
    nginx sets `proxy_protocol` for the whole server block."""
    others = sorted({f"{other.endpoint} ({other.chosen_for or other.origin})" for other in _chosen_with(route, config)})
    if not others:
        return ""
    where = f" ({route.block_origin})" if route.block_origin is not None else ""
    if adding:
        return (f"The header goes to every server this proxy_pass{where} chooses, not only Stalwart: "
                f"{'; '.join(others)} get it too and must accept it (a web server behind: nginx `listen ... "
                "proxy_protocol;`, Apache `RemoteIPProxyProtocol On`).")
    return (f"Without it, every server this proxy_pass{where} chooses gets no header: {'; '.join(others)} too. ")


def _terminates(route: Route) -> bool:
    return route.front is not None and route.front.tls_terminated


def _judge_tls(route: Route, config: ProxyConfig, target: Target | None, server: Service | None) -> Iterable[Judgement]:
    front = route.front
    if front is None:
        return
    implicit = target.listener.implicit_tls if target is not None else (server.implicit_tls if server else None)
    where = f"Stalwart listener {target.listener.id!r}" if target is not None else f"port {route.target_port}"
    front_service = DEFAULT_TABLE.lookup(front.port)
    client_tls = front.tls_terminated or bool(front_service and front_service.implicit_tls)
    if implicit and front.tls_terminated and not route.tls_to_server:
        yield Judgement(
            "PD304",
            f"The proxy terminates TLS on {front.endpoint} ({front.origin}) and forwards plaintext to {where} "
            f"({_reached(route)}), which expects TLS from the first byte: the handshake fails.",
            {**_both(route, target), "front": front.origin.cite()},
            fixes.plaintext_to_implicit(route, config.kind, _plain_port(route, target), config.version_floor),
        )
        return
    if implicit is False and (route.tls_to_server or (client_tls and not front.tls_terminated)):
        yield Judgement(
            "PD303",
            f"TLS reaches {where} ({_reached(route)}), which does not do implicit TLS: "
            + (f"the proxy speaks TLS to it ({route.origin})." if route.tls_to_server else
               f"{front.endpoint} passes the client's TLS through ({front.origin})."),
            {**_both(route, target), "front": front.origin.cite()},
            fixes.point_to_port(route, config.kind, _implicit_port(route, target)),
        )
        return
    if implicit or not front.tls_terminated or route.tls_to_server:
        return
    if route.sends == "v1":
        yield Judgement(
            "PD302",
            f"The proxy terminates TLS on {front.endpoint} ({front.origin}) and sends a v1 header ({route.origin}), which "
            f"cannot say so: Stalwart treats these clients at {_reached(route)} as plaintext (STARTTLS offered again, "
            "AUTH PLAIN/LOGIN refused).",
            {**_both(route, target), "front": front.origin.cite()},
            fixes.carry_tls(route, config.kind, _implicit_port(route, target), config.version_floor),
            fixes.tls_advice(config.kind, _implicit_port(route, target), config.version_floor),
        )
    elif route.sends == "v2" and not route.ssl_tlv:
        yield Judgement(
            "PD301",
            f"The proxy terminates TLS on {front.endpoint} ({front.origin}) but its v2 header ({route.origin}) carries no "
            f"SSL TLV: Stalwart treats these clients at {_reached(route)} as plaintext (STARTTLS offered again, AUTH "
            "PLAIN/LOGIN refused).",
            {**_both(route, target), "front": front.origin.cite()},
            fixes.carry_tls(route, config.kind, _implicit_port(route, target), config.version_floor),
            fixes.tls_advice(config.kind, _implicit_port(route, target), config.version_floor),
        )


def _implicit_port(route: Route, target: Target | None) -> int | None:
    """The port of the implicit-TLS listener serving the same service, where known."""
    return _sibling_port(route, target, implicit=True)


def _plain_port(route: Route, target: Target | None) -> int | None:
    return _sibling_port(route, target, implicit=False)


def _sibling_port(route: Route, target: Target | None, implicit: bool) -> int | None:
    """A listener of the same protocol with (or without) implicit TLS; of the same service
    family as the front port (465 and 587, not 25) where the service table knows it."""
    if target is None:
        return None
    front = DEFAULT_TABLE.lookup(route.front.port) if route.front is not None else None
    ports = sorted(port for listener in target.siblings
                   if listener.implicit_tls == implicit and listener.protocol == target.listener.protocol
                   for port in listener.ports)
    same_family = [port for port in ports if front is not None and _family(port) in (None, front.family)]
    candidates = same_family if front is not None else ports
    return candidates[0] if candidates else None


def _family(port: int) -> str | None:
    service = DEFAULT_TABLE.lookup(port)
    return service.family if service else None


def _judge_waiting(route: Route, config: ProxyConfig, table: ServiceTable) -> Iterable[Judgement]:
    front = route.front
    if not route.waits_for_client or front is None:
        return
    service = table.lookup(front.port) or table.lookup(route.target_port)
    client_speaks_first = service is None or not service.server_speaks_first or (
        service.implicit_tls and not front.tls_terminated)
    if service is None or client_speaks_first:
        return
    wait = route.wait_origin or route.origin
    yield Judgement(
        "PD110",
        f"{wait} makes the proxy wait for the client's first bytes on {front.endpoint} before it connects to "
        f"the server, but {service.name} clients wait for the server's greeting first: the session stalls "
        "until the delay runs out (or for ever).",
        {"proxy": wait.cite(), "front": front.origin.cite()},
        fixes.stop_waiting(route, config.kind),
    )


def _judge_mx_port(route: Route, config: ProxyConfig, target: Target | None, setting: Setting) -> Iterable[Judgement]:
    """Public 25 forwarded to an SMTP listener on another port. The listener is the Stalwart
    one bound there; without Stalwart's configuration, a port that serves SMTP by
    convention (10025, 2525, 587). A port no listener binds is translated on the way (a
    Kubernetes NodePort, a published container port): the listener's own port is unknown."""
    front = route.front
    port = target.port if target is not None and target.port is not None else route.target_port
    if front is None or front.port != 25 or port is None or port == 25:
        return
    if target is not None and (target.listener.protocol or "smtp").lower() != "smtp":
        return
    service = setting.table.lookup(port)
    if target is None and (setting.stalwart is not None or service is None or service.protocol != "smtp"):
        return
    yield Judgement(
        "PD209",
        f"Public port 25 ({front.origin}) reaches "
        + (f"Stalwart listener {target.listener.id!r} on port {port}" if target else f"an SMTP listener on port {port}")
        + f" ({route.origin}). Stalwart's default rules test the listener's own port: with it not 25, inbound MX mail "
        "must authenticate (503 5.5.1) and SPF/DMARC/iprev are skipped.",
        {**_both(route, target), "front": front.origin.cite()},
        () if target is not None and target.published is not None else fixes.point_to_port(route, config.kind, 25),
        (f"Publish the container's port 25 there instead ({target.published}), or "
         + fixes.mx_port_advice(target.where).removeprefix("and ") if target and target.published else
         fixes.mx_port_advice(target.where if target else None)),
    )


def _judge_health_check(route: Route, config: ProxyConfig, target: Target | None, setting: Setting) -> Iterable[Judgement]:
    check = route.health_check
    if check is None or check.sends_header:
        return
    port = check.port or route.target_port
    checked = target
    if setting.stalwart is not None and check.port is not None and check.port != route.target_port:
        checked = _target(Route(route.front, route.server_address, check.port, "none", route.origin,
                                source_address=route.source_address), setting, StalwartLines.of(setting.stalwart))
    requires = checked.trusted if checked is not None else route.sends != "none"
    if not requires:
        return
    yield Judgement(
        "PD403",
        f"Health checks of {route.origin} connect to port {port} without a PROXY header, where one is required"
        + (f" (Stalwart listener {checked.listener.id!r} trusts {route.source_address})" if checked else
           " (the route itself sends one)")
        + ": each check is a failed connection in Stalwart's log and counts towards banning the proxy.",
        _both(route, checked),
        fixes.check_with_header(route, config.kind),
    )


# --- findings ----------------------------------------------------------------------------


def _unique(judgements: list[Judgement]) -> list[Judgement]:
    seen: set[tuple[str, str]] = set()
    unique = []
    for judgement in judgements:
        key = (judgement.code, judgement.message)
        if key not in seen:
            seen.add(key)
            unique.append(judgement)
    return unique


def to_finding(judgement: Judgement) -> Finding:
    """A judgement as the reports show findings: the fix is the user's own lines, changed."""
    return make_finding(judgement.code, judgement.message, dict(judgement.evidence),
                        lowered="inferred" if judgement.inferred else None,
                        fix=fixes.render(judgement.edits, judgement.advice))


def origin_lines(origins: Iterable[Origin]) -> list[str]:
    return [origin.cite() for origin in origins]
