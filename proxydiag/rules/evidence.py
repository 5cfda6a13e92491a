"""Traffic against the proxy configurations given with it: a route's legs carry another
header than the route sends, or clients reach a port of the proxy that no listener of the
configurations binds (`analyze` with captures and configurations together)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from proxydiag.configs.model import WILDCARD_ADDRESSES, ProxyConfig, Route
from proxydiag.facts.model import Connection
from proxydiag.jsontypes import JsonDict
from proxydiag.rules.base import Finding
from proxydiag.rules.finding import make_finding
from proxydiag.rules.said import Names, Said, endpoint
from proxydiag.services import DEFAULT_TABLE

MAX_MATCHED = 10  # connections attached to one finding
# Traffic findings that quote the log lines of their connections, where logs are given too.
TRAFFIC_CODES_WITH_LOG_LINES = frozenset({"PD101", "PD102", "PD401"})


def traffic_vs_configs(connections: Sequence[Connection], proxy_configs: Sequence[ProxyConfig]) -> list[Finding]:
    """PD607 where the capture contradicts a proxy configuration: a route's legs carry
    another header than the route sends, or clients reach a port of the proxy that no
    listener of the configurations binds."""
    findings: list[Finding] = []
    proxy_addresses: set[str] = set()
    routed_ports: set[int] = set()
    for config in proxy_configs:
        for route in config.routes:
            legs = route_legs(connections, route)
            proxy_addresses.update(conn.tcp.src_addr for conn in legs)
            if route.target_port is not None:
                routed_ports.add(route.target_port)
            finding = _header_contradiction(route, legs)
            if finding is not None:
                findings.append(finding)
    listening = {listener.port for config in proxy_configs for listener in config.listeners}
    proxy_addresses.update(listener.address for config in proxy_configs for listener in config.listeners
                           if listener.address not in WILDCARD_ADDRESSES)
    findings.extend(_unrouted_ports(connections, proxy_addresses, listening, routed_ports, proxy_configs))
    return findings


def route_legs(connections: Sequence[Connection], route: Route) -> list[Connection]:
    """The captured connections from the proxy to a route's server."""
    return [conn for conn in connections if not conn.mid_stream and conn.tcp.dst_port == route.target_port
            and conn.tcp.dst_addr == route.server_address]


def observed_header(conn: Connection) -> str:
    header = conn.header
    return f"v{header.version}" if header is not None else "none"


def _header_contradiction(route: Route, legs: list[Connection]) -> Finding | None:
    if route.health_check is not None and not route.health_check.sends_header:
        legs = [conn for conn in legs if conn.header is not None or conn.client_first is not None]
    wrong = [conn for conn in legs if observed_header(conn) != route.sends]
    if not wrong:
        return None
    seen = sorted({observed_header(conn) for conn in wrong})
    evidence = {"proxy": route.origin.cite(), "configured": route.sends,
                "observed": {version: sum(1 for conn in wrong if observed_header(conn) == version) for version in seen}}
    if route.sends_origin is not None and route.sends_origin != route.origin:
        evidence["header"] = route.sends_origin.cite()
    said = RouteContradictedSaid(route.origin.path, route.origin.line, route.server_address, route.target_port,
                                 route.sends, tuple(seen), len(wrong), len(legs))
    return _finding("PD607", said, wrong, evidence)


@dataclass(frozen=True)
class RouteContradictedSaid(Said):
    path: str
    line: int
    address: str
    port: int | None
    configured: str  # none, v1, v2
    seen: tuple[str, ...]
    wrong: int
    captured: int

    def message(self, names: Names) -> str:
        said = "no PROXY header" if self.configured == "none" else f"a {self.configured} PROXY header"
        carried = " or ".join("no header" if version == "none" else f"a {version} header" for version in self.seen)
        return (f"{names.path(self.path)}:{self.line} sends {said} to {endpoint(names, self.address, self.port)}, but "
                f"{self.wrong} of the {self.captured} captured connection(s) to it carry {carried}: the proxy runs "
                "another configuration than this file (not reloaded, another host, or the wrong file).")


@dataclass(frozen=True)
class UnconfiguredPortSaid(Said):
    """Connections to (or from) the proxy at a port no listener (route) of the files has."""

    files: tuple[str, ...]
    count: int
    address: str  # the proxy's listening address, or the server it connected to
    port: int
    proxy: str | None = None  # the proxy's address, where it connected onwards

    def message(self, names: Names) -> str:
        files = ", ".join(names.path(path) for path in self.files)
        if self.proxy is None:
            return (f"The capture shows {self.count} connection(s) to the proxy's port {self.port} "
                    f"({names.address(self.address)}), which no listener of {files} binds: the proxy runs another "
                    "configuration than this file, or the capture holds another proxy's traffic.")
        return (f"The proxy ({names.address(self.proxy)}) opened {self.count} connection(s) to "
                f"{endpoint(names, self.address, self.port)}, which no route of {files} targets: the proxy runs another "
                "configuration than this file.")


def _unrouted_ports(connections: Sequence[Connection], proxy_addresses: set[str], listening: set[int],
                    routed: set[int], proxy_configs: Sequence[ProxyConfig]) -> Iterable[Finding]:
    """Clients reaching a port of the proxy that no listener binds, and the proxy reaching
    a server port that no route targets."""
    files = ", ".join(config.path for config in proxy_configs)
    fronts: dict[int, list[Connection]] = {}
    backs: dict[int, list[Connection]] = {}
    for conn in connections:
        port = conn.tcp.dst_port
        if conn.mid_stream or DEFAULT_TABLE.lookup(port) is None:
            continue
        if conn.tcp.dst_addr in proxy_addresses:
            if port not in listening | routed:
                fronts.setdefault(port, []).append(conn)
        elif conn.tcp.src_addr in proxy_addresses and port not in routed:
            backs.setdefault(port, []).append(conn)
    paths = tuple(config.path for config in proxy_configs)
    for port, group in sorted(fronts.items()):
        yield _finding("PD607", UnconfiguredPortSaid(paths, len(group), group[0].tcp.dst_addr, port), group,
                       {"port": port, "proxy_configs": files})
    for port, group in sorted(backs.items()):
        yield _finding("PD607", UnconfiguredPortSaid(paths, len(group), group[0].tcp.dst_addr, port, group[0].tcp.src_addr),
                       group, {"server_port": port, "proxy_configs": files})


def _finding(code: str, message: Said, conns: list[Connection], evidence: JsonDict) -> Finding:
    cited = conns[:MAX_MATCHED]
    return make_finding(code, message, {**evidence, "frames": [conn.first_frame for conn in cited]},
                        connections=[conn.id for conn in cited], frames=[conn.first_frame for conn in cited],
                        count=len(conns))
