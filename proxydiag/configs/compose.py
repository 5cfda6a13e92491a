"""A compose file's published ports: `services.NAME.ports` maps a port on the host to one in
the container, so a proxy on the host that connects to 127.0.0.1:40025 reaches the container's
port 25, where Stalwart's listener is bound.

Sources (the Compose specification, compose-spec/compose-spec spec.md "ports"): the short
syntax `[HOST_IP:][HOST_PORT[-RANGE]:]CONTAINER_PORT[-RANGE][/PROTOCOL]` (IPv6 host addresses
in brackets; no host port: an ephemeral one, not known from the file), and the long syntax
`{target, published, host_ip, protocol}` (`published` a number or a string, a range too).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from proxydiag.configs import tree
from proxydiag.configs.model import ConfigReadError, Origin, read_text
from proxydiag.configs.tree import Items, Source, Tree

SHORT = re.compile(r"^(?:(?P<host>\[[^\]]*\]|[^:\[\]]*):)??(?:(?P<published>\d+(?:-\d+)?):)?(?P<target>\d+(?:-\d+)?)"
                   r"(?:/(?P<protocol>\w+))?$")
MAX_RANGE = 1024
# A compose file has a top-level `services` key (in block YAML at the start of a line; in
# flow YAML or JSON quoted or after a brace). A file without one is not parsed as YAML at all:
# `check` is handed HAProxy and nginx files too.
SERVICES_KEY = re.compile(r"""(?m)^["']?services["']?[ \t]*:|[{,]\s*["']?services["']?\s*:""")


@dataclass(frozen=True)
class Published:
    """Host port `published` (on `host_address`, "" for every address) leads to `target` in
    service `service`'s container."""

    host_address: str
    published: int
    target: int
    service: str
    origin: Origin


def is_compose(document: Any) -> bool:
    services = document.get("services") if isinstance(document, Tree) else None
    return isinstance(services, Tree) and any(isinstance(service, Tree) and "ports" in service
                                              for service in services.values())


def published_ports(path: str) -> list[Published]:
    """Every TCP port a compose file publishes; [] for a file that is not one."""
    try:
        text = read_text(path)
        if not SERVICES_KEY.search(text):
            return []
        documents = tree.yaml_documents(text, path)
    except ConfigReadError:
        return []
    source = Source(path, text)
    found: list[Published] = []
    for document in documents:
        if not is_compose(document):
            continue
        for name, service in document["services"].items():
            ports = service.get("ports") if isinstance(service, Tree) else None
            if isinstance(ports, Items):
                for item, line in zip(ports, ports.item_lines):
                    found += _mappings(item, str(name), source.origin(line))
    return found


def _mappings(item: Any, service: str, origin: Origin) -> list[Published]:
    if isinstance(item, Tree):
        host, published, target, protocol = (str(item.get("host_ip") or ""), item.get("published"),
                                             item.get("target"), str(item.get("protocol") or "tcp"))
    else:
        match = SHORT.match(str(item).strip().strip("\"'"))
        if match is None:
            return []
        host, published, target, protocol = (match["host"] or "", match["published"], match["target"],
                                             match["protocol"] or "tcp")
    if published is None or target is None or protocol.lower() != "tcp":
        return []
    hosts, targets = _range(str(published)), _range(str(target))
    if not hosts or not targets or (len(targets) > 1 and len(targets) != len(hosts)):
        return []
    address = host.strip("[]")
    return [Published("" if address in ("0.0.0.0", "::") else address, port,
                      targets[index] if len(targets) > 1 else targets[0], service, origin)
            for index, port in enumerate(hosts)]


def _range(text: str) -> list[int]:
    first, _, last = text.partition("-")
    if not first.isdigit() or (last and not last.isdigit()):
        return []
    start, end = int(first), int(last or first)
    if not 0 < start <= end < 65536 or end - start >= MAX_RANGE:
        return []
    return list(range(start, end + 1))
