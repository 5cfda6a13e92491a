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
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from proxydiag.configs import traefik, tree
from proxydiag.configs.model import (
    ConfigReadError,
    FrontListener,
    Origin,
    Problem,
    ProxyConfig,
    Route,
    split_host_port,
)
from proxydiag.configs.tree import Items, Source, Tree
from proxydiag.services import DEFAULT_TABLE

FLAG = re.compile(r"^--?([A-Za-z0-9_.\-\[\]]+)(?:=(.*))?$")


def is_compose(document: Any) -> bool:
    """A compose file: a top-level `services:` mapping whose services carry Traefik labels
    or run Traefik itself."""
    services = document.get("services") if isinstance(document, Tree) else None
    if not isinstance(services, Tree) or "tcp" in document or "http" in document:
        return False
    return any(isinstance(service, Tree) and (_labels(service) or _runs_traefik(service))
               for service in services.values())


def looks_like(text: str) -> bool:
    return bool(re.search(r"(?m)^services:\s*(#.*)?$", text)
                and re.search(r"(?m)^[ \t]*((-[ \t]*)?|labels:[ \t]*[{\[][^\n]*?)[\"']?traefik\.(tcp|http)\.", text))


# --- the compose file as Traefik sees it ---------------------------------------------------


@dataclass(frozen=True)
class _Label:
    key: str  # as written
    path: tuple[str, ...]  # below the root, lower case
    value: str
    line: int


@dataclass
class _Compose:
    source: Source
    services: Tree
    exposed_by_default: bool = True
    problems: list[Problem] = field(default_factory=list)
    https: set[str] = field(default_factory=set)  # entry points whose HTTP routers have TLS
    network_names: dict[str, str] = field(default_factory=dict)  # `networks.X.name`

    def origin(self, line: int) -> Origin:
        return self.source.origin(line)


def _labels(service: Tree) -> list[tuple[str, Any, int]]:
    """(key, value, line) of a service's `labels`, as a list of `key=value` or a mapping."""
    labels = service.get("labels")
    found: list[tuple[str, Any, int]] = []
    if isinstance(labels, Items):
        for item, line in zip(labels, labels.item_lines):
            if isinstance(item, str):
                key, _, value = item.partition("=")
                found.append((key.strip(), value.strip(), line))
    elif isinstance(labels, Tree):
        found = [(str(key), value, labels.key_lines.get(key, labels.line)) for key, value in labels.items()]
    return [label for label in found if label[0].lower().startswith("traefik.")]


def _runs_traefik(service: Tree) -> bool:
    image = service.get("image")
    return isinstance(image, str) and bool(re.search(r"(^|/)traefik(:|@|$)", image.strip()))


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _read_labels(compose: _Compose, name: str, service: Tree) -> list[_Label]:
    labels = []
    for key, value, line in _labels(service):
        root, _, rest = key.partition(".")
        if root != "traefik":  # paerser: "invalid label root", and the container is skipped
            compose.problems.append(Problem(f"service {name!r}: label {key!r}: Traefik reads only labels rooted at "
                                            "'traefik' (lower case) and ignores this container's labels",
                                            compose.origin(line)))
            return []
        labels.append(_Label(key, tuple(part.lower() for part in rest.split(".")), _text(value).strip(), line))
    return labels


# --- static configuration: the Traefik container's command ---------------------------------


def _flags(compose: _Compose, service: Tree) -> list[tuple[str, str, int]]:
    """(name in lower case, value, line) of each `--flag[=value]` of the command."""
    command = service.get("command")
    items: list[tuple[str, int]] = []
    if isinstance(command, Items):
        items = [(str(item), line) for item, line in zip(command, command.item_lines)]
    elif isinstance(command, str):
        start = service.key_lines.get("command", service.line)
        items = [(word, _line_of(compose.source, word, start)) for word in command.split()]
    flags = []
    for text, line in items:
        match = FLAG.match(text.strip())
        if match:
            flags.append((match.group(1).lower(), (match.group(2) or "true").strip(), line))
    return flags


def _line_of(source: Source, word: str, start: int) -> int:
    """The first line from `start` on that holds `word` (a flag of a one-string command)."""
    for number in range(max(start, 1), len(source.lines) + 1):
        if word in source.lines[number - 1]:
            return number
    return start


def _entry_points_of(compose: _Compose) -> dict[str, FrontListener]:
    found: dict[str, FrontListener] = {}
    for service in compose.services.values():
        if not isinstance(service, Tree) or not _runs_traefik(service):
            continue
        points: dict[str, dict[str, tuple[str, int]]] = {}
        for name, value, line in _flags(compose, service):
            parts = name.split(".")
            if parts[:1] == ["entrypoints"] and len(parts) >= 3:
                points.setdefault(parts[1], {})[".".join(parts[2:])] = (value, line)
            elif name == "providers.docker.exposedbydefault":
                compose.exposed_by_default = tree.flag(value)
        for point, settings in points.items():
            front = _front(compose, point, settings)
            if front is not None:
                found[point] = front
    return found


def _front(compose: _Compose, point: str, settings: dict[str, tuple[str, int]]) -> FrontListener | None:
    if any(key == "http.tls" or key.startswith("http.tls.") for key in settings):
        compose.https.add(point)
    if "address" not in settings:
        return None
    address, line = settings["address"]
    parsed = split_host_port(address.split("/")[0])
    if parsed is None or parsed[1] is None:
        raise ConfigReadError(compose.source.path, line, f"--entrypoints.{point}.address {address!r}: no port")
    trusted_flag = settings.get("proxyprotocol.trustedips")
    insecure_flag = settings.get("proxyprotocol.insecure")
    insecure = insecure_flag is not None and tree.flag(insecure_flag[0])
    trusted = tuple(ip.strip() for ip in trusted_flag[0].split(",") if ip.strip()) if trusted_flag else ()
    accepts = insecure or bool(trusted)
    where = (insecure_flag if insecure else trusted_flag) if accepts else None
    return FrontListener(parsed[0], parsed[1], tls_terminated=False, accepts_header=accepts,
                         origin=compose.origin(where[1] if where else line), trusted_sources=trusted,
                         header_optional=True)


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


def _gather(compose: _Compose, name: str, labels: list[_Label]) -> dict[str, _Labels]:
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


def _router_label(router: Tree, attribute: str, label: _Label) -> None:
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


def _service_label(service: _Service, attribute: str, label: _Label) -> None:
    if attribute in SERVICE_LABELS:
        setattr(service, SERVICE_LABELS[attribute], (label.value, label.line))


# --- the container ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Container:
    name: str
    service: Tree
    address: str  # on the network Traefik reaches it by
    source: str | None  # Traefik's own address there, where the file fixes it
    source_line: int | None
    ports: tuple[tuple[int, int], ...]  # (port, line) the compose file shows it exposing


def _container(compose: _Compose, name: str, service: Tree, labels: list[_Label]) -> _Container:
    wanted = next((label.value for label in labels if label.path == ("docker", "network")), None)
    own = _addresses(compose, service)
    traefik_addresses = [_addresses(compose, other) for other in compose.services.values()
                         if isinstance(other, Tree) and _runs_traefik(other) and other is not service]
    shared = [net for net in own if any(net in theirs for theirs in traefik_addresses)]
    order = ([net for net in own if wanted in (net, _network_name(compose, net))] if wanted else []) + shared + list(own)
    network = order[0] if order else None
    address = own.get(network, (None, 0))[0] if network else None
    source = next((theirs[network] for theirs in traefik_addresses if network in theirs and theirs[network][0]), None)
    return _Container(name, service, address or name, source[0] if source else None, source[1] if source else None,
                      _exposed(service))


def _addresses(compose: _Compose, service: Tree) -> dict[str, tuple[str | None, int]]:
    """Network -> (ipv4_address or None, its line), in the order written; `default` when none."""
    networks = service.get("networks")
    if isinstance(networks, Items):
        return {str(name): (None, line) for name, line in zip(networks, networks.item_lines)}
    if isinstance(networks, Tree):
        found: dict[str, tuple[str | None, int]] = {}
        for name, settings in networks.items():
            address = settings.get("ipv4_address") if isinstance(settings, Tree) else None
            line = settings.key_lines.get("ipv4_address", networks.key_lines.get(name, 0)) if isinstance(settings, Tree) \
                else networks.key_lines.get(name, 0)
            found[str(name)] = (str(address) if address else None, line)
        return found
    return {"default": (None, service.line)}


def _network_name(compose: _Compose, network: str) -> str | None:
    return compose.network_names.get(network)


def _exposed(service: Tree) -> tuple[tuple[int, int], ...]:
    """Container ports of `expose` and `ports` (`"25:25"`, `"127.0.0.1:8080:8080/tcp"`, `{target: 25}`)."""
    found: dict[int, int] = {}
    for key in ("expose", "ports"):
        items = service.get(key)
        if not isinstance(items, Items):
            continue
        for item, line in zip(items, items.item_lines):
            target = item.get("target") if isinstance(item, Tree) else str(item).split("/")[0].rsplit(":", 1)[-1]
            text = str(target).strip()
            if text.isdigit():
                found.setdefault(int(text), line)
            elif "-" in text:  # a range: more than one port
                found.setdefault(-1, line)
                found.setdefault(-2, line)
    return tuple(sorted(found.items()))


# --- routes ---------------------------------------------------------------------------------


def entry_points(source: Source, document: Tree) -> dict[str, FrontListener]:
    """The entry points the Traefik container's command defines (for the other files given)."""
    return _entry_points_of(_Compose(source, tree.mapping(source, document, "services")))


def parse(source: Source, document: Tree, entry_points: dict[str, FrontListener] | None = None) -> ProxyConfig:
    compose = _Compose(source, tree.mapping(source, document, "services"))
    compose.network_names = {str(name): str(network["name"])
                             for name, network in tree.mapping(source, document, "networks").items()
                             if isinstance(network, Tree) and network.get("name")}
    own = _entry_points_of(compose)
    known = {**(entry_points or {}), **own}
    routes: list[Route] = []
    first_label: int | None = None
    for name, service in compose.services.items():
        if not isinstance(service, Tree):
            continue
        labels = _read_labels(compose, str(name), service)
        if not labels or not _enabled(compose, str(name), labels):
            continue
        first_label = first_label or labels[0].line
        container = _container(compose, str(name), service, labels)
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


def _enabled(compose: _Compose, name: str, labels: list[_Label]) -> bool:
    enable = next((label for label in labels if label.path == ("enable",)), None)
    if enable is not None:
        return tree.flag(enable.value)
    if not compose.exposed_by_default:
        compose.problems.append(Problem(f"service {name!r}: no traefik.enable=true while exposedByDefault is false: "
                                        "Traefik ignores its labels", compose.origin(labels[0].line)))
        return False
    return True


def _tcp_routes(compose: _Compose, container: _Container, labels: _Labels, http: _Labels,
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


def _balancer(compose: _Compose, container: _Container, service: _Service) -> Tree | None:
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


def _port(compose: _Compose, container: _Container, service: _Service) -> tuple[str, int] | None:
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


def _http_routes(compose: _Compose, container: _Container, labels: _Labels,
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


def _sourced(compose: _Compose, container: _Container, route: Route) -> Route:
    """Traefik's own address on the container's network, where the compose file fixes it."""
    if container.source is None or container.source_line is None:
        return route
    return replace(route, source_address=container.source, source_origin=compose.origin(container.source_line))
