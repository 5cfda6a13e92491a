"""Traefik's Docker provider: routing given as container labels in a docker-compose file
(`compose.yaml`, `docker-compose.yml`) -> ProxyConfig, through the dynamic-file reader.

The labels of each service are turned into the `tcp.routers`/`tcp.services` mappings the
dynamic-file reader (`traefik.py`) reads, with every key's line the label's own line, so
routes, findings and fixes cite (and rewrite) the label. Entry points are not labels: they
come from Traefik's static configuration, given as a file beside the compose file or as the
Traefik container's `command:` flags in it (`--entrypoints.smtp.address=:25`).

Sources (traefik/traefik and traefik/paerser; doc.traefik.io "Traefik & Docker", routing
reference, reference/routing-configuration/other-providers/docker.md):
- Label grammar (pkg/config/label/label.go -> paerser parser): keys below the root
  `traefik` (which must be written so), split on dots; field names match case-insensitively
  (`strings.EqualFold` in nodes_metadata.go findTypedField) and so do map keys such as router
  names (element_nodes.go containsNode): `proxyprotocol`, `loadbalancer`, `entrypoints` are
  the same fields as `proxyProtocol`, `loadBalancer`, `entryPoints`. "Labels are
  case-insensitive" (docs).
- TCP (pkg/config/dynamic/tcp_config.go): `traefik.tcp.routers.R.{rule,entrypoints,service,
  tls,tls.passthrough,tls.certresolver}` (`tls` is allowEmpty: `tls=true` terminates,
  `tls=false` none); `traefik.tcp.services.S.loadbalancer.server.port`, `.server.tls` (TLS to
  the server), `.proxyprotocol.version` (ProxyProtocol.SetDefaults: version 2, so
  `loadbalancer.proxyprotocol=true` alone is v2), `.serverstransport` ("defined either with
  the File provider or the Kubernetes CRD one": TCPConfiguration.ServersTransports is
  `label:"-"`, so `traefik.tcp.serverstransports.*` labels define nothing); a service that
  names one takes its header from it alone, its `loadbalancer.proxyprotocol` labels ignored
  (v3.7 pkg/tcp/dialer.go `Build`).
- HTTP: `traefik.http.routers.R.*`, `traefik.http.services.S.loadbalancer.server.port`,
  `.server.scheme`: an HTTP router never sends a PROXY header.
- pkg/provider/docker: `traefik.enable` (overrides `providers.docker.exposedByDefault`,
  default true); a container with TCP labels and no TCP service label gets one service named
  after the container (config.go buildTCPServiceConfiguration); a router without `service`
  gets the container's only service, and is dropped with several or with an empty rule
  (pkg/provider/configuration.go BuildTCPRouterConfiguration); the server is the container's
  address on its network (`traefik.docker.network`, else the first) and the port label, else
  the lowest port the container exposes (getPort) -- here only the ports the compose file
  shows (`expose`, `ports`); those the image EXPOSEs are not in it, which is said.
- Static configuration as flags (doc.traefik.io install-configuration, CLI tab):
  `--entrypoints.NAME.address`, `--entrypoints.NAME.proxyprotocol.trustedips=a,b`,
  `--entrypoints.NAME.proxyprotocol.insecure`, `--entrypoints.NAME.http.tls*`,
  `--providers.docker.exposedbydefault`.

traefik_compose.py reads the compose file (labels, flags, containers); this module turns
the labels into routes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from proxydiag.configs import traefik, tree
from proxydiag.configs.model import ConfigReadError, FrontListener, Problem, ProxyConfig, Route
from proxydiag.configs.traefik_compose import (
    Compose,
    Container,
    Label,
    container_of,
    entry_points_of,
    labels_of,
    read_labels,
    runs_traefik,
)
from proxydiag.configs.tree import Items, Source, Tree
from proxydiag.services import DEFAULT_TABLE


def is_compose(document: Any) -> bool:
    """A compose file: a top-level `services:` mapping whose services carry Traefik labels
    or run Traefik itself."""
    services = document.get("services") if isinstance(document, Tree) else None
    if not isinstance(services, Tree) or "tcp" in document or "http" in document:
        return False
    return any(isinstance(service, Tree) and (labels_of(service) or runs_traefik(service))
               for service in services.values())


def looks_like(text: str) -> bool:
    return bool(re.search(r"(?m)^services:\s*(#.*)?$", text)
                and re.search(r"(?m)^[ \t]*((-[ \t]*)?|labels:[ \t]*[{\[][^\n]*?)[\"']?traefik\.(tcp|http)\.", text))


# --- the file -> ProxyConfig ---------------------------------------------------------------


def entry_points(source: Source, document: Tree) -> dict[str, FrontListener]:
    """The entry points the Traefik container's command defines (for the other files given)."""
    return entry_points_of(Compose(source, tree.mapping(source, document, "services")))


def parse(source: Source, document: Tree, entry_points: dict[str, FrontListener] | None = None) -> ProxyConfig:
    compose = Compose(source, tree.mapping(source, document, "services"))
    compose.network_names = {str(name): str(network["name"])
                             for name, network in tree.mapping(source, document, "networks").items()
                             if isinstance(network, Tree) and network.get("name")}
    own = entry_points_of(compose)
    known = {**(entry_points or {}), **own}
    routes: list[Route] = []
    first_label: int | None = None
    for name, service in compose.services.items():
        if not isinstance(service, Tree):
            continue
        labels = read_labels(compose, str(name), service)
        if not labels or not _enabled(compose, str(name), labels):
            continue
        first_label = first_label or labels[0].line
        container = container_of(compose, str(name), service, labels)
        found = _gather(compose, str(name), labels)
        routes += _tcp_routes(compose, container, found["tcp"], found["http"], known)
        routes += _http_routes(compose, container, found["http"], known)
    if routes and not known and not any("entry point" in problem.message for problem in compose.problems):
        compose.problems.append(Problem(
            "entry point addresses are not in the files given (labels name entry points; Traefik's static "
            "configuration defines them): give traefik.yml too, or the Traefik container's --entrypoints flags",
            compose.origin(first_label or 1)))
    if not routes and not own and not compose.problems:
        raise ConfigReadError(source.path, None, "a compose file without Traefik routers or a Traefik command")
    return ProxyConfig("traefik", source.path, tuple(own.values()), tuple(routes), tuple(compose.problems))


def _enabled(compose: Compose, name: str, labels: list[Label]) -> bool:
    enable = next((label for label in labels if label.path == ("enable",)), None)
    if enable is not None:
        return tree.flag(enable.value)
    if not compose.exposed_by_default:
        compose.problems.append(Problem(f"service {name!r}: no traefik.enable=true while exposedByDefault is false: "
                                        "Traefik ignores its labels", compose.origin(labels[0].line)))
        return False
    return True


# --- routing: labels -> the dynamic-file shape ---------------------------------------------


@dataclass
class _Service:
    name: str
    block: int  # the first label of the service
    port: tuple[str, int] | None = None
    tls: tuple[str, int] | None = None  # tcp server.tls / http server.scheme
    proxy_on: tuple[str, int] | None = None  # loadbalancer.proxyprotocol=true (version 2)
    proxy_version: tuple[str, int] | None = None
    transport: tuple[str, int] | None = None


@dataclass
class _Labels:
    routers: dict[str, Tree] = field(default_factory=dict)
    services: dict[str, _Service] = field(default_factory=dict)


def _gather(compose: Compose, name: str, labels: list[Label]) -> dict[str, _Labels]:
    """The container's routers and services, by protocol (`tcp`, `http`)."""
    found = {"tcp": _Labels(), "http": _Labels()}
    for label in labels:
        if label.path[:2] == ("tcp", "serverstransports"):
            compose.problems.append(Problem(
                f"service {name!r}: Traefik defines no serversTransport from labels (tcp_config.go: label:\"-\"); "
                "define it in a dynamic file (`tcp.serversTransports`) and give that file too",
                compose.origin(label.line)))
            continue
        if len(label.path) < 4 or label.path[0] not in found:
            continue
        protocol, kind, item, rest = label.path[0], label.path[1], label.path[2], ".".join(label.path[3:])
        if kind == "routers":
            _router_label(found[protocol].routers.setdefault(item, Tree(label.line)), rest, label)
        elif kind == "services":
            service = found[protocol].services.setdefault(item, _Service(label.key.split(".")[3], label.line))
            _service_label(service, rest, label)
    return found


def _router_label(router: Tree, attribute: str, label: Label) -> None:
    def put(key: str, value: Any) -> None:
        router[key] = value
        router.key_lines[key] = label.line

    if attribute == "rule":
        put("rule", label.value)
    elif attribute == "entrypoints":
        names = Items(label.line)
        for part in label.value.split(","):
            if part.strip():
                names.append(part.strip())
                names.item_lines.append(label.line)
        put("entryPoints", names)
    elif attribute == "service":
        put("service", label.value)
    elif attribute == "tls" or attribute.startswith("tls."):
        if attribute == "tls" and label.value.lower() not in ("", "true"):
            router["tls_off"] = True
            return
        tls = router.get("tls")
        if not isinstance(tls, Tree):
            put("tls", Tree(label.line))
            tls = router["tls"]
        if attribute == "tls":  # the line a fix turns into passthrough
            router.key_lines["tls"] = label.line
        if attribute == "tls.passthrough":
            tls["passthrough"] = tree.flag(label.value)
            tls.key_lines["passthrough"] = label.line


# Service labels read, and the field of `_Service` each sets.
SERVICE_LABELS = {
    "loadbalancer.server.port": "port",
    "loadbalancer.server.tls": "tls",  # TCP: TLS to the server
    "loadbalancer.server.scheme": "tls",  # HTTP: `https` is TLS to the server
    "loadbalancer.proxyprotocol": "proxy_on",
    "loadbalancer.proxyprotocol.version": "proxy_version",
    "loadbalancer.serverstransport": "transport",
}


def _service_label(service: _Service, attribute: str, label: Label) -> None:
    if attribute in SERVICE_LABELS:
        setattr(service, SERVICE_LABELS[attribute], (label.value, label.line))


# --- routes ---------------------------------------------------------------------------------


def _tcp_routes(compose: Compose, container: Container, labels: _Labels, http: _Labels,
                known: dict[str, FrontListener]) -> list[Route]:
    if not labels.routers and not labels.services:
        return []
    services = dict(labels.services)
    if not services:  # one service named after the container, with its default port
        services[""] = _Service(container.name, min(router.line for router in labels.routers.values()))
    dynamic = traefik._Dynamic([], {}, {})
    transport_tls: set[str] = set()
    for key, service in services.items():
        balancer = _balancer(compose, container, service)
        if balancer is not None:
            dynamic.services[key] = balancer
            if service.tls is not None and tree.flag(service.tls[0]):
                transport_tls.add(key)
    for name, router in labels.routers.items():
        if router.pop("tls_off", False):
            router.pop("tls", None)
        if not router.get("rule"):
            compose.problems.append(Problem(f"TCP router {name!r} has no rule: Traefik drops it", compose.origin(router.line)))
            continue
        if "service" not in router:
            if len(services) > 1:
                compose.problems.append(Problem(f"TCP router {name!r} names no service and the container has several: "
                                                "Traefik drops it", compose.origin(router.line)))
                continue
            router["service"] = next(iter(services))
            router.key_lines["service"] = router.key_lines["rule"]
        else:
            router["service"] = str(router["service"]).lower()
        if router["service"] in set(services) - set(dynamic.services):
            continue  # its service's port or header is not known: said already
        dynamic.routers.append((name, router, "file"))
    https = compose.https | {str(point) for router in http.routers.values() if router.get("tls") is not None
                             for point in router.get("entryPoints", [])}
    routes = []
    for name, router, form in dynamic.routers:
        for route in traefik._routes(compose.source, name, router, form, dynamic, known, https, compose.problems):
            if str(router["service"]).split("@")[0] in transport_tls:
                route = replace(route, tls_to_server=True, header_inside_tls=route.sends != "none")
            routes.append(_sourced(compose, container, route))
    return routes


def _balancer(compose: Compose, container: Container, service: _Service) -> Tree | None:
    """The service as the dynamic file writes it: `loadBalancer: {servers: [{address}], proxyProtocol}`,
    each key at its label's line; None (said in the problems) where the port or the header is not known."""
    port = _port(compose, container, service)
    if port is None:
        return None
    if service.transport is not None:
        ignored = service.proxy_version or service.proxy_on
        compose.problems.append(Problem(
            f"service {service.name!r} uses serversTransport {service.transport[0]!r}, which is not in this file "
            "(Traefik takes it from a dynamic file or a CRD): what it sends is not known; give that file instead"
            + ("; its proxyProtocol decides, the loadbalancer.proxyprotocol label here is ignored "
               "(Traefik pkg/tcp/dialer.go Build)" if ignored else ""),
            compose.origin(service.transport[1])))
        return None
    server = Tree(port[1])
    server["address"] = f"{container.address}:{port[0]}"
    server.key_lines["address"] = port[1]
    servers = Items(port[1])
    servers.append(server)
    servers.item_lines.append(port[1])
    balancer = Tree(service.block)
    balancer["servers"] = servers
    proxy = Tree(service.block)
    if service.proxy_version is not None:
        proxy["version"] = service.proxy_version[0]
        proxy.key_lines["version"] = service.proxy_version[1]
    on = service.proxy_version or service.proxy_on
    if on is not None and (service.proxy_version is not None or tree.flag(on[0])):
        balancer["proxyProtocol"] = proxy
        balancer.key_lines["proxyProtocol"] = on[1]
    holder = Tree(service.block)
    holder["loadBalancer"] = balancer
    holder.key_lines["loadBalancer"] = port[1] if service.port is not None else service.block
    return holder


def _port(compose: Compose, container: Container, service: _Service) -> tuple[str, int] | None:
    if service.port is not None:
        if not service.port[0].isdigit():
            compose.problems.append(Problem(f"service {service.name!r}: port {service.port[0]!r} is not a number",
                                            compose.origin(service.port[1])))
            return None
        return service.port
    ports = container.ports
    if len(ports) == 1 and ports[0][0] > 0:
        compose.problems.append(Problem(
            f"service {service.name!r} has no port label: Traefik takes the lowest port the container exposes, here "
            f"{ports[0][0]} as far as this file shows (ports the image EXPOSEs are not in it)", compose.origin(ports[0][1])))
        return str(ports[0][0]), ports[0][1]
    compose.problems.append(Problem(
        f"service {service.name!r} has no port label and the container's port is not known from this file (Traefik "
        "takes the lowest port it exposes, the image's included): add loadbalancer.server.port",
        compose.origin(service.block)))
    return None


def _http_routes(compose: Compose, container: Container, labels: _Labels,
                 known: dict[str, FrontListener]) -> list[Route]:
    """HTTP routers: Traefik speaks HTTP to the server, never with a PROXY header."""
    routes = []
    for name, router in labels.routers.items():
        wanted = str(router["service"]).split("@")[0].lower() if "service" in router else None
        if wanted is None and len(labels.services) > 1:
            compose.problems.append(Problem(f"HTTP router {name!r} names no service and the container has several",
                                            compose.origin(router.line)))
            continue
        service = labels.services.get(wanted) if wanted else next(iter(labels.services.values()), None)
        if service is None and wanted is None:
            service = _Service(container.name, router.line)
        if service is None:
            compose.problems.append(Problem(f"service {wanted!r} is not defined in this file", compose.origin(router.line)))
            continue
        port = _port(compose, container, service)
        if port is None:
            continue
        names = [str(item) for item in router.get("entryPoints", [])] or sorted(known)
        for point in names or [""]:
            front = known.get(point)
            if front is None and point:
                compose.problems.append(Problem(f"router {name!r}: entry point {point!r} is not in the files given "
                                                "(give the static configuration too)", compose.origin(router.line)))
            elif front is not None:
                implicit = DEFAULT_TABLE.lookup(front.port)
                terminated = router.get("tls") is not None or point in compose.https or bool(implicit and implicit.implicit_tls)
                front = replace(front, tls_terminated=terminated)
            https = service.tls is not None and service.tls[0].lower() == "https"
            route = Route(front, container.address, int(port[0]), "none", compose.origin(port[1]), tls_to_server=https,
                          block_origin=compose.origin(port[1]))
            routes.append(_sourced(compose, container, route))
    return routes


def _sourced(compose: Compose, container: Container, route: Route) -> Route:
    """Traefik's own address on the container's network, where the compose file fixes it."""
    if container.source is None or container.source_line is None:
        return route
    return replace(route, source_address=container.source, source_origin=compose.origin(container.source_line))
