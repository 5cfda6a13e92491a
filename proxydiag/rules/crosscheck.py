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
from dataclasses import dataclass, replace

from proxydiag.configs import fixes
from proxydiag.configs.model import FrontListener, Origin, ProxyConfig, Route
from proxydiag.configs.stalwart_lines import StalwartLines
from proxydiag.facts.config_hops import (
    Feeding,
    Setting,
    Target,
    chain_hop,
    chains,
    check_hop,
    cite,
    front_hop,
    mx_hop,
    route_hop,
    same_proxy,
    tls_hop,
    waiting_hop,
)
from proxydiag.facts.config_hops import (
    target as find_target,
)
from proxydiag.facts.hop import Cite
from proxydiag.parsers.protocols.software import STALWART_PROXY
from proxydiag.rules.base import Finding
from proxydiag.rules.catalog import find_page
from proxydiag.rules.finding import make_finding
from proxydiag.rules.hops import (
    DUPLICATE_HEADER,
    EXPECTS_HEADER_FROM_CLIENT,
    HEALTH_CHECK_WITHOUT_HEADER,
    MISSING_HEADER,
    MX_PORT_REMAPPED,
    PLAINTEXT_TO_TLS_LISTENER,
    TLS_RULES,
    TLS_TO_PLAINTEXT_LISTENER,
    UNEXPECTED_HEADER,
    UNTRUSTED_PROXY_SOURCE,
    WAITS_FOR_CLIENT,
    HopHit,
    judge_hops,
    told_cite,
)
from proxydiag.rules.said import AS_THEY_ARE, Names, Said
from proxydiag.services import DEFAULT_TABLE, ServiceTable

__all__ = ["Judgement", "Setting", "check", "origin_lines", "to_finding"]


@dataclass(frozen=True)
class Judgement:
    """One finding on the configurations, with the edits that fix it."""

    code: str
    said: Said  # what the rule said, typed
    evidence: dict[str, str]
    edits: tuple[fixes.LineEdit, ...] = ()
    advice: str = ""
    inferred: bool = False
    proxy: str | None = None  # the finding pages' section of the configuration's proxy, for the page's fix

    @property
    def message(self) -> str:
        return self.said.message(AS_THEY_ARE)

    @classmethod
    def of_said(cls, code: str, said: Said, evidence: dict[str, str], inferred: bool = False) -> Judgement:
        return cls(code, said, evidence, inferred=inferred)

    @classmethod
    def of_hit(cls, hit: HopHit, evidence: dict[str, str], edits: tuple[fixes.LineEdit, ...] = (),
               advice: str = "") -> Judgement:
        return cls(hit.code, hit.said, evidence, edits, advice, hit.lowered == "inferred")


def check(configs: Sequence[ProxyConfig], setting: Setting) -> list[Judgement]:
    """Every judgement over the given proxy configurations (in the order found)."""
    lines = StalwartLines.of(setting.stalwart) if setting.stalwart is not None else None
    judgements: list[Judgement] = []
    feeding = chains(configs)
    for config in configs:
        proxy = page_section(config)
        judgements.extend(replace(judgement, proxy=proxy) for judgement in _judge_config(config, configs, feeding, setting, lines))
    return _unique(judgements)


def _judge_config(config: ProxyConfig, configs: Sequence[ProxyConfig], feeding: Feeding, setting: Setting,
                  lines: StalwartLines | None) -> Iterable[Judgement]:
    for front in config.listeners:
        yield from _judge_front(front, config, configs, feeding)
    for route in config.routes:
        if route in feeding:
            yield from _judge_hop(route, config, feeding[route], configs)
            continue
        target = find_target(route, setting, lines) if setting.stalwart is not None else None
        if target is None and _another_service(route, config, setting, lines):
            continue
        if setting.stalwart is not None and target is None:
            yield from _judge_unknown_port(route, setting)
        yield from _judge_route(route, config, target, setting)


# The finding pages' "Fix on the proxy" section of each configuration kind (rules/catalog.py);
# Kubernetes Service annotations configure the cloud controllers' load balancers.
PAGE_SECTIONS = {"haproxy": "HAProxy", "nginx": "nginx", "traefik": "Traefik", "caddy": "Caddy", "envoy": "Envoy",
                 "kubernetes": "Cloud load balancers", "stalwart-proxy": STALWART_PROXY, "stunnel": "stunnel"}


def page_section(config: ProxyConfig) -> str | None:
    """The pages' section for this configuration's proxy, with the release its file shows
    (`HAProxy 2.2+`), so that a page's fix is printed for that proxy alone."""
    section = PAGE_SECTIONS.get(config.kind)
    if section is None or config.version_floor is None:
        return section
    return f"{section} {config.version_floor.version}+"


def _another_service(route: Route, config: ProxyConfig, setting: Setting, lines: StalwartLines | None) -> bool:
    """A server chosen at run time (an nginx map value) that is no Stalwart listener while
    another choice of the same line is one: the other service sharing the port (a web
    server behind the same SNI map), judged by nobody here."""
    if route.chosen_by is None or setting.stalwart is None:
        return False
    return any(find_target(other, setting, lines) is not None for other in _chosen_with(route, config))


def _chosen_with(route: Route, config: ProxyConfig) -> list[Route]:
    """The other servers chosen at run time on the same line, from the same listener."""
    if route.chosen_by is None:
        return []
    return [other for other in config.routes if other.chosen_by is not None and other.block_origin == route.block_origin
            and other.front == route.front and other.endpoint != route.endpoint]


def _judge_hop(route: Route, config: ProxyConfig, hops: list[tuple[FrontListener, ProxyConfig]],
               configs: Sequence[ProxyConfig]) -> Iterable[Judgement]:
    for front, inner in hops:
        inner_routes = [r for other in configs if same_proxy(other, inner) for r in other.routes
                        if r.front is not None and (r.front.address, r.front.port) == (front.address, front.port)]
        sending = [r for r in inner_routes if r.sends != "none"]
        hop = chain_hop(route, front, adds_header=bool(sending))
        for hit in judge_hops([hop], (EXPECTS_HEADER_FROM_CLIENT, DUPLICATE_HEADER)):
            if hit.code == DUPLICATE_HEADER.code:
                yield Judgement.of_hit(hit, {"outer_route": route.origin.cite(), "inner_listener": front.origin.cite(),
                                             "inner_route": sending[0].origin.cite()}, fixes.accept_header(front, inner.kind))
            else:
                yield Judgement.of_hit(
                    hit, {"inner_listener": front.origin.cite(), "outer_route": route.origin.cite()},
                    fixes.set_header(route, config.kind, "v2", _terminates(route), config.version_floor))


# --- front listeners ---------------------------------------------------------------------


def _judge_front(front: FrontListener, config: ProxyConfig, configs: Sequence[ProxyConfig],
                 feeding: Feeding) -> Iterable[Judgement]:
    if any(front is hop_front for hops in feeding.values() for hop_front, _ in hops):
        return  # another configuration's proxy sends to it: judged as that chain's hop
    hit = EXPECTS_HEADER_FROM_CLIENT.judge(front_hop(front))
    if hit is not None:
        yield Judgement.of_hit(hit, {"listener": front.origin.cite()}, fixes.stop_accepting(front, config.kind))


# --- routes ------------------------------------------------------------------------------


def _judge_unknown_port(route: Route, setting: Setting) -> Iterable[Judgement]:
    """A route to a mail port that no Stalwart listener binds: the wrong file, a listener
    bound elsewhere, or a NAT (`--server-address`)."""
    if route.target_port not in setting.table:
        return
    if setting.server_addresses and route.server_address not in setting.server_addresses:
        return
    yield Judgement.of_said("PD608", UnboundPortSaid(
        cite(route.origin), route.target_port, setting.stalwart.path if setting.stalwart is not None else None,
        route.server_address if setting.server_addresses else None), {"proxy": route.origin.cite()}, inferred=True)


@dataclass(frozen=True)
class UnboundPortSaid(Said):
    route: Cite
    port: int | None
    stalwart: str | None  # the Stalwart configuration's path
    server_address: str | None  # where `--server-address` names the server

    def message(self, names: Names) -> str:
        path = names.path(self.stalwart) if self.stalwart is not None else "the Stalwart configuration"
        at = f" at {names.address(self.server_address)}" if self.server_address else ""
        return (f"{told_cite(names, self.route)} forwards to port {self.port}, which no listener in {path} binds{at}: is "
                "this the right file, a listener bound elsewhere, or an address translated on the way (--server-address)?")


def _judge_route(route: Route, config: ProxyConfig, target: Target | None, setting: Setting) -> Iterable[Judgement]:
    yield from _judge_header(route, config, target)
    yield from _judge_tls(route, config, target, setting.table)
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


def _judge_header(route: Route, config: ProxyConfig, target: Target | None) -> Iterable[Judgement]:
    if target is None:
        return
    hop = route_hop(route, target)
    missing = MISSING_HEADER.judge(hop)
    if missing is not None:
        yield Judgement.of_hit(
            missing, {**_both(route, target), **({"source": route.source_address} if route.source_address else {})},
            fixes.set_header(route, config.kind, "v2", _terminates(route), config.version_floor),
            _shared(route, config, True))
    unexpected = UNEXPECTED_HEADER.judge(hop)
    if unexpected is None:
        return
    evidence = {**_both(route, target), "source": route.source_address or "(not set; the listener trusts no one)"}
    advice = fixes.trust_advice(target.where, route.source_address, target.listener, config.kind)
    yield Judgement.of_hit(unexpected, evidence, fixes.remove_header(route, config.kind),
                           _shared(route, config, False) + advice)
    untrusted = UNTRUSTED_PROXY_SOURCE.judge(hop)
    if untrusted is not None:
        yield Judgement.of_hit(untrusted, evidence, (), advice)


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


def _judge_tls(route: Route, config: ProxyConfig, target: Target | None, table: ServiceTable) -> Iterable[Judgement]:
    hop = tls_hop(route, target, table)
    hit = next(judge_hops([hop], TLS_RULES), None) if hop is not None else None
    if hit is None or route.front is None:
        return
    evidence = {**_both(route, target), "front": route.front.origin.cite()}
    implicit_port = _implicit_port(route, target)
    if hit.code == PLAINTEXT_TO_TLS_LISTENER.code:
        edits = fixes.plaintext_to_implicit(route, config.kind, _plain_port(route, target), config.version_floor)
        yield Judgement.of_hit(hit, evidence, edits)
    elif hit.code == TLS_TO_PLAINTEXT_LISTENER.code:
        yield Judgement.of_hit(hit, evidence, fixes.point_to_port(route, config.kind, implicit_port))
    else:
        yield Judgement.of_hit(hit, evidence, fixes.carry_tls(route, config.kind, implicit_port, config.version_floor),
                               fixes.tls_advice(config.kind, implicit_port, config.version_floor))


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
    hop = waiting_hop(route, table)
    hit = WAITS_FOR_CLIENT.judge(hop) if hop is not None else None
    if hit is None or route.front is None:
        return
    yield Judgement.of_hit(hit, {"proxy": (route.wait_origin or route.origin).cite(), "front": route.front.origin.cite()},
                           fixes.stop_waiting(route, config.kind))


def _judge_mx_port(route: Route, config: ProxyConfig, target: Target | None, setting: Setting) -> Iterable[Judgement]:
    hop = mx_hop(route, target, setting)
    hit = MX_PORT_REMAPPED.judge(hop) if hop is not None else None
    if hit is None or route.front is None:
        return
    published = target.published if target is not None else None
    yield Judgement.of_hit(
        hit, {**_both(route, target), "front": route.front.origin.cite()},
        () if published is not None else fixes.point_to_port(route, config.kind, 25),
        (f"Publish the container's port 25 there instead ({published}), or "
         + fixes.mx_port_advice(target.where).removeprefix("and ") if target and published else
         fixes.mx_port_advice(target.where if target else None)),
    )


def _judge_health_check(route: Route, config: ProxyConfig, target: Target | None, setting: Setting) -> Iterable[Judgement]:
    check = route.health_check
    checked = target
    if check is not None and setting.stalwart is not None and check.port is not None and check.port != route.target_port:
        checked = find_target(Route(route.front, route.server_address, check.port, "none", route.origin,
                                    source_address=route.source_address), setting, StalwartLines.of(setting.stalwart))
    hop = check_hop(route, checked)
    hit = HEALTH_CHECK_WITHOUT_HEADER.judge(hop) if hop is not None else None
    if hit is not None:
        yield Judgement.of_hit(hit, _both(route, checked), fixes.check_with_header(route, config.kind))
    own_header = hop is not None and checked is not None and (route.sends == "none" or checked is not target)
    unexpected = UNEXPECTED_HEADER.judge(hop) if hop is not None and own_header else None
    if unexpected is not None and checked is not None and check is not None:  # traffic's own header is _judge_header's
        yield Judgement.of_hit(unexpected, {**_both(route, checked), "health_check": check.origin.cite()},
                               fixes.check_without_header(route, config.kind))


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
    return make_finding(judgement.code, judgement.said, dict(judgement.evidence),
                        lowered="inferred" if judgement.inferred else None,
                        fix=_fix_text(judgement), proxy=judgement.proxy)


def _fix_text(judgement: Judgement) -> str | None:
    """The user's lines changed, then the advice; with no edit of theirs the page's fix for
    their proxy (None: the views print it), before any advice, which offers another way ("Or, ...")."""
    if judgement.edits or not judgement.advice:
        return fixes.render(judgement.edits, judgement.advice) or None
    page = find_page(judgement.code)
    return "\n\n".join(part for part in (page.fix_for(judgement.proxy) if page else "", judgement.advice) if part)


def origin_lines(origins: Iterable[Origin]) -> list[str]:
    return [origin.cite() for origin in origins]
