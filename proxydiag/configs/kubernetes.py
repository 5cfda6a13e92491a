"""Kubernetes Service manifests (type LoadBalancer) with the cloud annotations that make the
load balancer send PROXY headers -> ProxyConfig. Traefik's IngressRouteTCP manifests are
read by traefik.py.

Each `spec.ports[]` entry is a front listener (the load balancer's `port`; address
`spec.loadBalancerIP` where set) and a route to the Service's pods on `targetPort`
(default: `port`; a named targetPort cannot be resolved from the Service alone). The
pods' address is not in the manifest: routes carry the Service's name, which matches a
Stalwart listener bound to every address.

Annotations (each cloud controller's documentation):
- AWS (kubernetes/kubernetes PR #24569, in-tree controller; aws-load-balancer-controller
  docs "Service annotations"): `service.beta.kubernetes.io/aws-load-balancer-proxy-protocol:
  "*"`. On a Classic ELB (no type annotation) the header is v1 (ELB "Configure proxy
  protocol"); on an NLB (`aws-load-balancer-type: nlb` or `external`, with
  `aws-load-balancer-nlb-target-type: ip|instance`) it is v2, as it is with
  `aws-load-balancer-target-group-attributes: proxy_protocol_v2.enabled=true`. An NLB sends
  the header with the client's first data unless
  `proxy_protocol_v2.client_to_server.header_placement=on_first_ack` (references.md,
  server-speaks-first traps). TLS is terminated on `aws-load-balancer-ssl-ports` (default
  every port) when `aws-load-balancer-ssl-cert` is set.
- DigitalOcean (digitalocean-cloud-controller-manager docs/controllers/services/
  annotations.md): `service.beta.kubernetes.io/do-loadbalancer-enable-proxy-protocol:
  "true"` (v1); the load balancer's health checks then carry the header too (unless turned
  off on the load balancer); TLS terminated on `do-loadbalancer-tls-ports` with a
  `do-loadbalancer-certificate-id`, unless `do-loadbalancer-tls-passthrough: "true"`.
- Linode (linode-cloud-controller-manager cloud/annotations/annotations.go and
  cloud/linode/loadbalancers.go): per port `linode-loadbalancer-port-N:
  '{"proxy-protocol": "v2", ...}'`, else `service.beta.kubernetes.io/
  linode-loadbalancer-default-proxy-protocol: none|v1|v2`, else the deprecated
  `linode-loadbalancer-proxy-protocol` as a fallback (the e2e test sets both: the default
  key wins).
- Hetzner (hcloud-cloud-controller-manager internal/annotation/load_balancer.go):
  `load-balancer.hetzner.cloud/uses-proxyprotocol: "true"`; the version is not
  documented: v1 is assumed (it matters only behind TLS termination: tls-flag-impossible-v1 or tls-flag-lost).
- OVHcloud: MKS 1.31+ runs the OpenStack controller (Octavia): `loadbalancer.openstack.org/
  proxy-protocol: "true"|"v1"|"v2"` (true: v1); before, the OVH controller's
  `service.beta.kubernetes.io/ovh-loadbalancer-proxy-protocol: v1|v2|v2-ssl|v2-ssl-cn`
  (hyphens, as the OVH load balancer API's ProxyProtocolVersionEnum; `-ssl` adds the SSL TLV
  where the load balancer terminates TLS).
- Scaleway (scaleway-cloud-controller-manager scaleway/loadbalancers.go, `getProxyProtocol`,
  `isPortInRange`, `getSendProxyV2`): `service.beta.kubernetes.io/scw-loadbalancer-proxy-
  protocol-v1` / `-v2`: Go's `strconv.ParseBool` words (`true`, `false`, `t`, `F`, ...; not
  `1`/`0`, which are ports), `*`, or a comma-separated list of service ports (a port in both
  is refused); neither set: the deprecated `scw-loadbalancer-send-proxy-v2` (ParseBool, `1`
  and `0` included, else a port list) is still read.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

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
    read_text,
)
from proxydiag.configs.tree import Source, Tree

AWS = "service.beta.kubernetes.io/aws-load-balancer-"
DO = "service.beta.kubernetes.io/do-loadbalancer-"
LINODE = "service.beta.kubernetes.io/linode-loadbalancer-"
HETZNER = "load-balancer.hetzner.cloud/"
OPENSTACK = "loadbalancer.openstack.org/proxy-protocol"
OVH_LEGACY = "service.beta.kubernetes.io/ovh-loadbalancer-proxy-protocol"
SCALEWAY = "service.beta.kubernetes.io/scw-loadbalancer-proxy-protocol-"
SCALEWAY_LEGACY = "service.beta.kubernetes.io/scw-loadbalancer-send-proxy-v2"


def looks_like(text: str) -> bool:
    return bool(re.search(r"(?m)^[ \t]*apiVersion\s*:", text) and re.search(r"(?m)^[ \t]*kind[ \t]*:[ \t]*[\"']?Service[\"']?[ \t\r]*$", text))


def load(path: str) -> ProxyConfig:
    return parse(read_text(path), path)


@dataclass(frozen=True)
class _Header:
    sends: HeaderVersion
    origin: Origin | None
    ssl_tlv: bool = False
    waits: Origin | None = None  # an NLB sending the header with the client's first data
    health_check: HealthCheck | None = None


def parse(text: str, path: str = "service.yaml") -> ProxyConfig:
    source = Source(path, text)
    listeners: list[FrontListener] = []
    routes: list[Route] = []
    problems: list[Problem] = []
    services = 0
    for document in tree.yaml_documents(text, path):
        if not isinstance(document, Tree):
            raise ConfigReadError(path, getattr(document, "line", None) or None, "expected a mapping (a manifest)")
        for item in _manifests(source, document):
            if tree.text(source, item, "kind") != "Service":
                continue
            services += 1
            spec = tree.mapping(source, item, "spec")
            if tree.text(source, spec, "type") != "LoadBalancer":
                continue
            _service(source, item, spec, listeners, routes, problems)
    if not services:
        raise ConfigReadError(path, None, "no Service manifest")
    return ProxyConfig("kubernetes", path, tuple(listeners), tuple(routes), tuple(problems))


def _manifests(source: Source, document: Tree) -> list[Tree]:
    """A manifest, or the items of a `kind: List`."""
    if tree.text(source, document, "kind") == "List":
        return [item for item, _ in tree.items_of(source, tree.sequence(source, document, "items"), "items")]
    return [document]


def _service(source: Source, service: Tree, spec: Tree, listeners: list[FrontListener], routes: list[Route],
             problems: list[Problem]) -> None:
    metadata = tree.mapping(source, service, "metadata")
    name = tree.text(source, metadata, "name") or "service"
    annotations = tree.mapping(source, metadata, "annotations")
    address = tree.text(source, spec, "loadBalancerIP") or ""
    for port_entry, line in tree.items_of(source, tree.sequence(source, spec, "ports"), "spec.ports"):
        port = _number(source, port_entry, "port")
        if port is None:
            raise source.error(port_entry, "ports[]: no port", "port")
        header = _header(source, annotations, port)
        terminated = _tls_terminated(source, annotations, port, tree.text(source, port_entry, "name"))
        front = FrontListener(address, port, tls_terminated=terminated is not None, accepts_header=False,
                              origin=terminated or source.origin(line))
        listeners.append(front)
        target = port_entry.get("targetPort", port)
        if isinstance(target, str) and target.isdigit():
            target = int(target)
        if not isinstance(target, int) or isinstance(target, bool):
            problems.append(Problem(f"service {name!r}: targetPort {target!r} is a name; the port it reaches is in "
                                    "the pods' manifests", source.at(port_entry, "targetPort")))
            continue
        routes.append(Route(front, name, target, header.sends, source.at(port_entry, "targetPort" if "targetPort" in port_entry else "port"),
                            ssl_tlv=header.ssl_tlv, sends_origin=header.origin, waits_for_client=header.waits is not None,
                            wait_origin=header.waits, block_origin=source.at(metadata, "annotations"),
                            health_check=header.health_check))


def _number(source: Source, holder: Tree, key: str) -> int | None:
    value = holder.get(key)
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 65536:
        raise source.error(holder, f"{key} {value!r}: not a port number", key)
    return value


def _annotation(source: Source, annotations: Tree, key: str) -> str | None:
    value = annotations.get(key)
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if not isinstance(value, (str, int, float)):
        raise source.error(annotations, f"annotation {key}: expected a string", key)
    return str(value).strip()


def _port_listed(value: str, port: int, name: str | None = None) -> bool:
    items = {item.strip() for item in value.split(",")}
    return "*" in items or str(port) in items or (name is not None and name in items)


def _header(source: Source, annotations: Tree, port: int) -> _Header:
    """What the cloud's load balancer sends to the pods on this port."""
    def at(key: str) -> Origin:
        return source.at(annotations, key)

    def value(key: str) -> str | None:
        return _annotation(source, annotations, key)

    aws_type = (value(AWS + "type") or "").lower()
    nlb = aws_type in ("nlb", "external", "nlb-ip")
    attributes = value(AWS + "target-group-attributes") or ""
    if "proxy_protocol_v2.enabled=true" in attributes.replace(" ", ""):
        waits = None if "header_placement=on_first_ack" in attributes else at(AWS + "target-group-attributes")
        return _Header("v2", at(AWS + "target-group-attributes"), waits=waits)
    if value(AWS + "proxy-protocol") == "*":
        waits = at(AWS + "proxy-protocol") if nlb and "on_first_ack" not in attributes else None
        return _Header("v2" if nlb else "v1", at(AWS + "proxy-protocol"), waits=waits)
    if tree.flag(value(DO + "enable-proxy-protocol")):
        # DigitalOcean's health checks carry the header too (references.md, cloud controllers)
        check = HealthCheck(None, sends_header=True, local=False, origin=at(DO + "enable-proxy-protocol"))
        return _Header("v1", at(DO + "enable-proxy-protocol"), health_check=check)
    linode = _linode(source, annotations, port)
    if linode is not None:
        return linode
    if tree.flag(value(HETZNER + "uses-proxyprotocol")):
        return _Header("v1", at(HETZNER + "uses-proxyprotocol"))
    openstack = (value(OPENSTACK) or "").lower()
    if openstack in ("true", "v1", "v2"):
        return _Header("v2" if openstack == "v2" else "v1", at(OPENSTACK))
    legacy = (value(OVH_LEGACY) or "").lower()
    if legacy in OVH_VERSIONS:
        return _Header("v1" if legacy == "v1" else "v2", at(OVH_LEGACY), ssl_tlv=legacy.startswith("v2-ssl"))
    if legacy:
        raise source.error(annotations, f"{OVH_LEGACY} {legacy!r}: the OVH controller knows {', '.join(OVH_VERSIONS)} "
                           "(hyphens)", OVH_LEGACY)
    return _scaleway(source, annotations, port) or _Header("none", None)


OVH_VERSIONS = ("v1", "v2", "v2-ssl", "v2-ssl-cn")
GO_TRUE, GO_FALSE = ("1", "t", "T", "TRUE", "true", "True"), ("0", "f", "F", "FALSE", "false", "False")


def _go_bool(text: str) -> bool | None:
    """Go's strconv.ParseBool, or None where it fails."""
    return True if text in GO_TRUE else False if text in GO_FALSE else None


def _scw_listed(text: str, port: int) -> bool | None:
    """Scaleway's isPortInRange: a ParseBool word (not 1/0), `*`, or service ports; None: refused."""
    flag = _go_bool(text) if text not in ("1", "0") else None
    if flag is not None:
        return flag
    if text in ("*", ""):
        return text == "*"
    ports = [_go_int(item) for item in text.replace(" ", "").split(",")]
    return None if None in ports else port in ports


def _go_int(text: str) -> int | None:
    """Go's strconv.ParseInt(text, 0, 64): 0x, 0o, 0b prefixes, a leading 0 for octal."""
    body = text[1:] if text[:1] in "+-" else text
    base = {"0x": 16, "0o": 8, "0b": 2}.get(body[:2].lower(), 8 if len(body) > 1 and body.startswith("0") else 10)
    try:
        value = int(body, base)
    except ValueError:
        return None
    return -value if text.startswith("-") else value


def _scaleway(source: Source, annotations: Tree, port: int) -> _Header | None:
    found = []
    for version in ("v1", "v2"):
        text = _annotation(source, annotations, SCALEWAY + version)
        listed = _scw_listed(text, port) if text is not None else False
        if listed is None:
            raise source.error(annotations, f"{SCALEWAY}{version} {text!r}: not true/false, * or ports", SCALEWAY + version)
        if listed:
            found.append(version)
    if len(found) == 2:
        raise source.error(annotations, f"port {port} is in both {SCALEWAY}v1 and -v2: the controller refuses it",
                           SCALEWAY + "v2")
    if found:
        return _Header(found[0], source.at(annotations, SCALEWAY + found[0]))  # type: ignore[arg-type]
    legacy = _annotation(source, annotations, SCALEWAY_LEGACY)
    if legacy is None:
        return None
    flag = _go_bool(legacy)
    if flag is None:
        ports = [_go_int(item) for item in legacy.replace(" ", "").split(",")]
        if None in ports:
            raise source.error(annotations, f"{SCALEWAY_LEGACY} {legacy!r}: not true/false or ports", SCALEWAY_LEGACY)
        flag = port in ports
    return _Header("v2", source.at(annotations, SCALEWAY_LEGACY)) if flag else None


def _linode(source: Source, annotations: Tree, port: int) -> _Header | None:
    port_key = f"{LINODE}port-{port}"
    port_config = _annotation(source, annotations, port_key)
    if port_config:
        try:
            settings = json.loads(port_config)
        except ValueError:
            raise source.error(annotations, f"{port_key}: not JSON", port_key) from None
        version = settings.get("proxy-protocol") if isinstance(settings, dict) else None
        if version in ("v1", "v2", "none"):
            return _Header("none" if version == "none" else version, source.at(annotations, port_key))
    for key in (LINODE + "default-proxy-protocol", LINODE + "proxy-protocol"):  # the second: deprecated fallback
        default = (_annotation(source, annotations, key) or "").lower()
        if default in ("v1", "v2", "none"):
            return _Header("none" if default == "none" else default, source.at(annotations, key))  # type: ignore[arg-type]
    return None


def _tls_terminated(source: Source, annotations: Tree, port: int, name: str | None) -> Origin | None:
    """Where the load balancer is told to terminate TLS on this port, or None."""
    if _annotation(source, annotations, AWS + "ssl-cert"):
        ports = _annotation(source, annotations, AWS + "ssl-ports") or "*"
        if _port_listed(ports, port, name):
            return source.at(annotations, AWS + "ssl-cert")
    tls_ports = _annotation(source, annotations, DO + "tls-ports")
    if (tls_ports and _annotation(source, annotations, DO + "certificate-id")
            and not tree.flag(_annotation(source, annotations, DO + "tls-passthrough")) and _port_listed(tls_ports, port)):
        return source.at(annotations, DO + "tls-ports")
    return None
