"""Traefik's configuration (YAML or TOML files, and Kubernetes CRD manifests) -> ProxyConfig.

Sources (Traefik v3 reference, doc.traefik.io; traefik/traefik source):
- Install (static) configuration, "EntryPoints": `entryPoints.NAME.address` (`:25`,
  `10.0.0.2:465`), `entryPoints.NAME.proxyProtocol.trustedIPs` / `.insecure`: the entry
  point reads a PROXY header (go-proxyproto) from those sources (insecure: from anyone).
- Routing (dynamic) configuration, pkg/config/dynamic/tcp_config.go: `tcp.routers.NAME`
  with `entryPoints` (default: all), `rule` (`HostSNI(\\`*\\`)`, `HostSNI(\\`a.b\\`)`,
  `ClientIP(...)`), `service`, `tls` (`passthrough: true`: forwarded as is; otherwise
  Traefik terminates TLS); `tcp.services.NAME.loadBalancer.servers[].address`,
  `.loadBalancer.proxyProtocol.version` (deprecated form), `.loadBalancer.serversTransport`
  -> `tcp.serversTransports.NAME.proxyProtocol.version` and `.tls` (TLS to the server);
  `tcp.services.NAME.weighted.services[].name`.
- Kubernetes CRD (doc.traefik.io reference/routing-configuration/kubernetes/crd/tcp):
  `IngressRouteTCP` (spec.entryPoints, spec.routes[].match, .services[].name/port/
  proxyProtocol/serversTransport, spec.tls.passthrough) and `ServersTransportTCP`
  (spec.proxyProtocol.version, spec.tls), API groups traefik.io and traefik.containo.us.
- references.md "What proxies send": no SSL TLV ever (traefik #5859), so behind Traefik's
  TLS termination Stalwart sees plaintext; with a TLS serversTransport, before 3.5.2 the
  header goes inside the TLS stream (#11036); Traefik forwards at once only when the
  entry point has no TLS TCP routers, no HTTPS routers, and its TCP rules need no client
  bytes (`HostSNI(\\`*\\`)`, `ClientIP`) (#7730, #4875, #6786); TCP health checks never
  send a header.
- Which `proxyProtocol` counts (traefik/traefik v3.7, pkg/tcp/dialer.go, `DialerManager.Build`):
  when a service names a `serversTransport`, `proxyProtocol = st.ProxyProtocol` replaces the
  load balancer's own (deprecated) one, even when the transport has none; only without a
  transport (`default@internal`) does `loadBalancer.proxyProtocol` count. So the transport is
  read first whenever one is named, and the fix goes on the transport.

Static and dynamic configuration usually live in different files: `parse` takes the
entry points found in the other Traefik files given (`entry_points_of`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from proxydiag.configs import tree
from proxydiag.configs.model import (
    ConfigReadError,
    FrontListener,
    HeaderVersion,
    HealthCheck,
    Origin,
    Problem,
    ProxyConfig,
    Route,
    VersionFloor,
    split_host_port,
)
from proxydiag.configs.tree import Source, Tree

CRD_GROUPS = ("traefik.io/", "traefik.containo.us/")
DATA_FREE_RULE = re.compile(r"^\s*(HostSNI\(\s*`\*`\s*\)|ClientIP\([^)]*\))\s*$")


def looks_like(text: str) -> bool:
    """A static or dynamic file, or CRD manifests (compose labels: traefik_labels.looks_like)."""
    return bool(re.search(r"(?mi)^[ \t]*(\[?entryPoints\b|\[?tcp\.(routers|services)\b|kind:\s*(IngressRouteTCP|ServersTransportTCP)\b)", text)
                or (re.search(r"(?m)^tcp:\s*$", text) and re.search(r"(?m)^[ \t]+(routers|services):\s*$", text)))


def documents(text: str, path: str) -> list[Any]:
    if _is_toml(text, path):
        return [tree.toml_document(text, path)]
    return tree.yaml_documents(text, path)


def _is_toml(text: str, path: str) -> bool:
    return path.endswith(".toml") or bool(re.search(r"(?m)^[ \t]*\[[A-Za-z]", text) and not re.search(r"(?m)^\w+:\s*$", text))


@dataclass
class _Dynamic:
    """The routing configuration, gathered from files or CRD manifests."""

    routers: list[tuple[str, Tree, str]]  # name, router, "file" or "crd"
    services: dict[str, Tree]
    transports: dict[str, Tree]
    transport_blocks: dict[str, Origin] = field(default_factory=dict)  # where each transport opens
    file_transports: set[str] = field(default_factory=set)  # defined under tcp.serversTransports


def parse(text: str, path: str = "traefik.yml", entry_points: dict[str, FrontListener] | None = None) -> ProxyConfig:
    """A static or dynamic file, or CRD manifests (a compose file's labels: traefik_labels.parse)."""
    source = Source(path, text)
    docs = documents(text, path)
    own: dict[str, FrontListener] = {}
    dynamic = _Dynamic([], {}, {})
    for document in docs:
        if not isinstance(document, Tree):
            raise ConfigReadError(path, getattr(document, "line", None) or None, "expected a mapping at the top")
        own.update(file_entry_points(source, document))
        _gather(source, document, dynamic)
    if not own and not dynamic.routers and not dynamic.services:
        raise ConfigReadError(path, None, "no entryPoints, tcp routers or IngressRouteTCP: not a Traefik configuration")
    known = {**(entry_points or {}), **own}
    problems: list[Problem] = []
    routes: list[Route] = []
    https = _https_entry_points(source, docs)
    for name, router, form in dynamic.routers:
        routes += _routes(source, name, router, form, dynamic, known, https, problems)
    return ProxyConfig("traefik", path, tuple(own.values()), tuple(routes), tuple(problems),
                       _transport_floor(source, dynamic))


TRANSPORT_HEADER_SINCE = "3.5.2"  # `proxyProtocol` on a TCP serversTransport (migration notes v3.5.2)


def _transport_floor(source: Source, dynamic: _Dynamic) -> VersionFloor | None:
    """Traefik 3.5.2 or later where a file transport (not a CRD) already sends a v2 header: a
    fix can name that transport."""
    for name, transport in dynamic.transports.items():
        proxy = transport.get("proxyProtocol")
        if isinstance(proxy, Tree) and str(proxy.get("version", 2)) == "2" and name in dynamic.file_transports:
            return VersionFloor(TRANSPORT_HEADER_SINCE, source.at(transport, "proxyProtocol"), name)
    return None


# --- entry points --------------------------------------------------------------------------


def file_entry_points(source: Source, document: Tree) -> dict[str, FrontListener]:
    found = {}
    entry_points = tree.mapping(source, document, "entryPoints")
    for name, entry in entry_points.items():
        if not isinstance(entry, Tree):
            raise source.error(entry_points, f"entryPoints.{name}: expected a mapping", name)
        address = tree.text(source, entry, "address")
        if address is None:
            raise source.error(entry_points, f"entryPoints.{name}: no address", name)
        parsed = split_host_port(address.split("/")[0])
        if parsed is None or parsed[1] is None:
            raise source.error(entry, f"entryPoints.{name}.address {address!r}: no port", "address")
        proxy = tree.mapping(source, entry, "proxyProtocol")
        trusted = tree.sequence(source, proxy, "trustedIPs")
        accepts = tree.flag(proxy.get("insecure")) or bool(trusted)
        origin = _accept_origin(source, entry, proxy) if accepts else source.at(entry, "address")
        found[str(name)] = FrontListener(parsed[0], parsed[1], tls_terminated=False, accepts_header=accepts,
                                         origin=origin, trusted_sources=tuple(str(ip) for ip in trusted),
                                         header_optional=True)
    return found


def _accept_origin(source: Source, entry: Tree, proxy: Tree) -> Origin:
    """The `insecure`/`trustedIPs` line, or the whole `proxyProtocol: {...}` written on one line."""
    key = "insecure" if tree.flag(proxy.get("insecure")) else "trustedIPs"
    where = source.at(proxy, key)
    return source.at(entry, "proxyProtocol") if where.line == source.at(entry, "proxyProtocol").line else where


def _https_entry_points(source: Source, docs: list[Any]) -> set[str]:
    """Entry points with an HTTP router that has TLS: Traefik then peeks at every connection."""
    names: set[str] = set()
    for document in docs:
        routers = tree.mapping(source, tree.mapping(source, document, "http"), "routers")
        for router in routers.values():
            if isinstance(router, Tree) and router.get("tls") is not None:
                names.update(str(name) for name in tree.sequence(source, router, "entryPoints"))
    return names


# --- routing -------------------------------------------------------------------------------


def _gather(source: Source, document: Tree, dynamic: _Dynamic) -> None:
    kind = tree.text(source, document, "kind")
    api = tree.text(source, document, "apiVersion") or ""
    if kind is not None and api.startswith(CRD_GROUPS):
        name = tree.text(source, tree.mapping(source, document, "metadata"), "name") or "unnamed"
        spec = tree.mapping(source, document, "spec")
        if kind == "IngressRouteTCP":
            dynamic.routers.append((name, spec, "crd"))
        elif kind == "ServersTransportTCP":
            dynamic.transports[name] = spec
            dynamic.transport_blocks[name] = source.at(document, "spec")
        return
    tcp = tree.mapping(source, document, "tcp")
    for name, router in tree.mapping(source, tcp, "routers").items():
        if not isinstance(router, Tree):
            raise source.error(tcp, f"tcp.routers.{name}: expected a mapping")
        dynamic.routers.append((str(name), router, "file"))
    for key, store in (("services", dynamic.services), ("serversTransports", dynamic.transports)):
        block = tree.mapping(source, tcp, key)
        for name, value in block.items():
            if not isinstance(value, Tree):
                raise source.error(tcp, f"tcp.{key}.{name}: expected a mapping")
            store[str(name)] = value
            if key == "serversTransports":
                dynamic.transport_blocks[str(name)] = source.at(block, name)
                dynamic.file_transports.add(str(name))


def _routes(source: Source, name: str, router: Tree, form: str, dynamic: _Dynamic, known: dict[str, FrontListener],
            https: set[str], problems: list[Problem]) -> list[Route]:
    names = [str(item) for item in tree.sequence(source, router, "entryPoints")] or sorted(known)
    tls = router.get("tls")
    terminated = tls is not None and not (isinstance(tls, Tree) and tree.flag(tls.get("passthrough")))
    routes: list[Route] = []
    for sub, rule_key, targets in _rules(source, router, form):
        rule = tree.text(source, sub, rule_key) or ""
        for entry_name in names or [""]:  # no entry point known: a route without its front
            front = known.get(entry_name)
            if front is None and entry_name:
                problems.append(Problem(f"router {name!r}: entry point {entry_name!r} is not in the files given "
                                        "(give the static configuration too)", source.at(router, "entryPoints")))
            elif terminated and front is not None:
                front = replace(front, tls_terminated=True, origin=source.at(router, "tls"))
            wait = _wait_origin(source, router, sub, rule_key, rule, entry_name, dynamic, https)
            for target in targets:
                routes += _service_routes(source, target, front, dynamic, wait, problems, set())
    return routes


def _rules(source: Source, router: Tree, form: str) -> list[tuple[Tree, str, list[tuple[Tree, str]]]]:
    """(where the rule is, its key, the services it reaches as (mapping, key of the name))."""
    if form == "file":
        return [(router, "rule", [(router, "service")])]
    rules = []
    for route, _ in tree.items_of(source, tree.sequence(source, router, "routes"), "spec.routes"):
        services = tree.items_of(source, tree.sequence(source, route, "services"), "spec.routes[].services")
        rules.append((route, "match", [(service, "name") for service, _ in services]))
    return rules


def _wait_origin(source: Source, router: Tree, sub: Tree, rule_key: str, rule: str, entry_name: str,
                 dynamic: _Dynamic, https: set[str]) -> Any:
    """Where Traefik is made to read the client's first bytes before it connects, or None
    (a TLS router's client speaks first: its ClientHello)."""
    if router.get("tls") is not None:
        return None
    if rule and not DATA_FREE_RULE.match(rule):
        return source.at(sub, rule_key)
    for _, other, _form in dynamic.routers:
        entry_names = [str(item) for item in tree.sequence(source, other, "entryPoints")]
        if other.get("tls") is not None and (not entry_names or entry_name in entry_names):
            return source.at(other, "tls")
    if entry_name in https:
        return source.at(router, "entryPoints")
    return None


def _service_routes(source: Source, target: tuple[Tree, str], front: FrontListener | None, dynamic: _Dynamic,
                    wait: Any, problems: list[Problem], seen: set[str]) -> list[Route]:
    holder, key = target
    raw_name = tree.text(source, holder, key)
    if raw_name is None:
        return []
    name = raw_name.split("@")[0]
    if key == "name":  # a Kubernetes Service of an IngressRouteTCP
        return _crd_service_route(source, holder, name, front, dynamic, wait, problems)
    service = dynamic.services.get(name)
    if service is None or name in seen:
        problems.append(Problem(f"service {raw_name!r} is not defined in this file", source.at(holder, key)))
        return []
    seen.add(name)
    weighted = tree.mapping(source, service, "weighted")
    if weighted:
        routes = []
        for item, _ in tree.items_of(source, tree.sequence(source, weighted, "services"), "weighted.services"):
            routes += _service_routes(source, (item, "name"), front, dynamic, wait, problems, seen)
        return routes
    balancer = tree.mapping(source, service, "loadBalancer")
    header = _header(source, balancer, dynamic, problems)
    if header is None:
        return []
    check = _health_check(source, balancer)
    routes = []
    for server, line in tree.items_of(source, tree.sequence(source, balancer, "servers"), "loadBalancer.servers"):
        address = tree.text(source, server, "address")
        if address is None:
            problems.append(Problem("a server without address (url is for HTTP)", source.origin(line)))
            continue
        parsed = split_host_port(address)
        if parsed is None or parsed[1] is None:
            raise source.error(server, f"server address {address!r}: no port", "address")
        routes.append(replace(_route(source.at(server, "address"), parsed[0], parsed[1], front, header, wait,
                                     source.at(service, "loadBalancer")), health_check=check))
    return routes


def _health_check(source: Source, balancer: Tree) -> HealthCheck | None:
    """`loadBalancer.healthCheck` (TCP): never with a header (references.md)."""
    check = balancer.get("healthCheck")
    if not isinstance(check, Tree):
        return None
    port = check.get("port")
    return HealthCheck(port if isinstance(port, int) and not isinstance(port, bool) else None, sends_header=False,
                       local=False, origin=source.at(balancer, "healthCheck"))


def _crd_service_route(source: Source, service: Tree, name: str, front: FrontListener | None, dynamic: _Dynamic,
                       wait: Any, problems: list[Problem]) -> list[Route]:
    port = service.get("port")
    if not isinstance(port, int) or isinstance(port, bool):
        problems.append(Problem(f"service {name!r}: port {port!r} is named or missing; the target port is not known",
                                source.at(service, "port" if "port" in service else "name")))
        return []
    header = _header(source, service, dynamic, problems)
    if header is None:
        return []
    return [_route(source.at(service, "name"), name, port, front, header, wait, source.at(service))]


@dataclass(frozen=True)
class _Header:
    sends: HeaderVersion
    origin: Any  # Origin or None
    tls_to_server: bool
    transport: Any = None  # the serversTransport's block (Origin), where the header's fix goes


def _header(source: Source, holder: Tree, dynamic: _Dynamic, problems: list[Problem]) -> _Header | None:
    """What a load balancer (or CRD service) sends: its serversTransport's `proxyProtocol` when
    it names one (its own is then ignored), else its own (deprecated); None (said in `problems`)
    when the transport named is not in the file."""
    transport_name = tree.text(source, holder, "serversTransport")
    if transport_name is None:
        return _header_of(source, holder, tls_to_server=False, transport=None)
    name = transport_name.split("@")[0]
    transport = dynamic.transports.get(name)
    if transport is None:
        problems.append(Problem(f"serversTransport {transport_name!r} is not in this file: Traefik takes the PROXY "
                                "header from it alone, so what this service sends is not known; give that file "
                                "(or manifest) instead", source.at(holder, "serversTransport")))
        return None
    if holder.get("proxyProtocol") is not None:
        problems.append(Problem(f"proxyProtocol here is ignored: this service names serversTransport "
                                f"{transport_name!r}, whose own proxyProtocol decides (Traefik pkg/tcp/dialer.go Build)",
                                source.at(holder, "proxyProtocol")))
    return _header_of(source, transport, tls_to_server=transport.get("tls") is not None,
                      transport=dynamic.transport_blocks.get(name))


def _header_of(source: Source, owner: Tree, tls_to_server: bool, transport: Origin | None) -> _Header:
    proxy = owner.get("proxyProtocol")
    if proxy is None:
        return _Header("none", None, tls_to_server, transport)
    if not isinstance(proxy, Tree):
        raise source.error(owner, "proxyProtocol: expected a mapping", "proxyProtocol")
    version = proxy.get("version", 2)
    if version not in (1, 2, "1", "2"):
        raise source.error(proxy, f"proxyProtocol.version {version!r}: 1 or 2", "version")
    origin = source.at(proxy, "version") if "version" in proxy else source.at(owner, "proxyProtocol")
    return _Header("v1" if str(version) == "1" else "v2", origin, tls_to_server, transport)


def _route(origin: Any, address: str, port: int, front: FrontListener | None, header: _Header, wait: Any,
           block: Any) -> Route:
    return Route(
        front=front, server_address=address, server_port=port, sends=header.sends, origin=origin,
        # v3.7 pkg/tcp/dialer.go writes the header, then the TLS handshake; only releases before
        # 3.5.2, which had no transport header, sent it inside TLS (#11036)
        tls_to_server=header.tls_to_server,
        header_inside_tls=header.tls_to_server and header.sends != "none" and header.transport is None,
        waits_for_client=wait is not None, wait_origin=wait, sends_origin=header.origin,
        block_origin=header.transport or block,
    )

