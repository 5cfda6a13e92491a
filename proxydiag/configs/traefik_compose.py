"""A docker-compose file as Traefik's Docker provider sees it: each container's `traefik.*`
labels, the Traefik container's `command:` flags (its static configuration: entry points,
exposedByDefault), and where a container is on its networks and which ports it shows.
traefik_labels.py turns these into routes; the sources are cited there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from proxydiag.configs import tree
from proxydiag.configs.model import ConfigReadError, FrontListener, Origin, Problem, split_host_port
from proxydiag.configs.tree import Items, Source, Tree

FLAG = re.compile(r"^--?([A-Za-z0-9_.\-\[\]]+)(?:=(.*))?$")


@dataclass(frozen=True)
class Label:
    key: str  # as written
    path: tuple[str, ...]  # below the root, lower case
    value: str
    line: int


@dataclass
class Compose:
    source: Source
    services: Tree
    exposed_by_default: bool = True
    problems: list[Problem] = field(default_factory=list)
    https: set[str] = field(default_factory=set)  # entry points whose HTTP routers have TLS
    network_names: dict[str, str] = field(default_factory=dict)  # `networks.X.name`

    def origin(self, line: int) -> Origin:
        return self.source.origin(line)


def labels_of(service: Tree) -> list[tuple[str, Any, int]]:
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


def runs_traefik(service: Tree) -> bool:
    image = service.get("image")
    return isinstance(image, str) and bool(re.search(r"(^|/)traefik(:|@|$)", image.strip()))


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def read_labels(compose: Compose, name: str, service: Tree) -> list[Label]:
    labels = []
    for key, value, line in labels_of(service):
        root, _, rest = key.partition(".")
        if root != "traefik":  # paerser: "invalid label root", and the container is skipped
            compose.problems.append(Problem(f"service {name!r}: label {key!r}: Traefik reads only labels rooted at "
                                            "'traefik' (lower case) and ignores this container's labels",
                                            compose.origin(line)))
            return []
        labels.append(Label(key, tuple(part.lower() for part in rest.split(".")), _text(value).strip(), line))
    return labels


# --- static configuration: the Traefik container's command ---------------------------------


def _flags(compose: Compose, service: Tree) -> list[tuple[str, str, int]]:
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


def entry_points_of(compose: Compose) -> dict[str, FrontListener]:
    found: dict[str, FrontListener] = {}
    for service in compose.services.values():
        if not isinstance(service, Tree) or not runs_traefik(service):
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


def _front(compose: Compose, point: str, settings: dict[str, tuple[str, int]]) -> FrontListener | None:
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



# --- the container ----------------------------------------------------------------------


@dataclass(frozen=True)
class Container:
    name: str
    service: Tree
    address: str  # on the network Traefik reaches it by
    source: str | None  # Traefik's own address there, where the file fixes it
    source_line: int | None
    ports: tuple[tuple[int, int], ...]  # (port, line) the compose file shows it exposing


def container_of(compose: Compose, name: str, service: Tree, labels: list[Label]) -> Container:
    wanted = next((label.value for label in labels if label.path == ("docker", "network")), None)
    own = _addresses(compose, service)
    traefik_addresses = [_addresses(compose, other) for other in compose.services.values()
                         if isinstance(other, Tree) and runs_traefik(other) and other is not service]
    shared = [net for net in own if any(net in theirs for theirs in traefik_addresses)]
    order = ([net for net in own if wanted in (net, _network_name(compose, net))] if wanted else []) + shared + list(own)
    network = order[0] if order else None
    address = own.get(network, (None, 0))[0] if network else None
    source = next((theirs[network] for theirs in traefik_addresses if network in theirs and theirs[network][0]), None)
    return Container(name, service, address or name, source[0] if source else None, source[1] if source else None,
                      _exposed(service))


def _addresses(compose: Compose, service: Tree) -> dict[str, tuple[str | None, int]]:
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


def _network_name(compose: Compose, network: str) -> str | None:
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
