"""An Envoy bootstrap (YAML or JSON, API v3) -> ProxyConfig.

Sources (envoyproxy.io API v3 reference):
- `static_resources.listeners[]`: `address.socket_address.{address, port_value}`;
  `listener_filters[]` named `envoy.filters.listener.proxy_protocol` (type
  envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol): the listener reads a
  header from whoever connects; `envoy.filters.listener.tls_inspector` reads the client's
  first bytes (up to `listener_filters_timeout`, 15 s) before a filter chain is chosen;
  `filter_chains[]` with `filter_chain_match` (`server_names`, `application_protocols`
  need the inspector), `filters[]` `envoy.filters.network.tcp_proxy` (`cluster`), and
  `transport_socket` `envoy.transport_sockets.tls` (Envoy terminates TLS).
- `static_resources.clusters[]`: `name`, `load_assignment.endpoints[].lb_endpoints[].
  endpoint.address.socket_address`; `transport_socket` named
  `envoy.transport_sockets.upstream_proxy_protocol` (envoy.extensions.transport_sockets.
  proxy_protocol.v3.ProxyProtocolUpstreamTransport): `config.version` V1 or V2 (default V1),
  `config.pass_through_tlvs` (only TLVs received from downstream are passed; Envoy makes
  none of its own, so no SSL TLV), and the wrapped `transport_socket` (`tls`: TLS to the
  server, after the header); `health_checks[].tcp_health_check` (no header unless
  `proxy_protocol_config`, envoyproxy/envoy PR #31691, 1.31).
- `config.added_tlvs[]` (config.core.v3.TlvEntry, api/envoy/config/core/v3/proxy_protocol.proto):
  `type` (uint32) and `value` (`bytes`): base64 in YAML and JSON, as proto3's JSON mapping
  writes bytes; a static SSL TLV (type 0x20, first byte with PP2_CLIENT_SSL) tells the server
  every client used TLS.
"""

from __future__ import annotations

import base64
import binascii
import re

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

PROXY_PROTOCOL_FILTER = ("envoy.filters.listener.proxy_protocol", "envoy.listener.proxy_protocol")
TLS_INSPECTOR = ("envoy.filters.listener.tls_inspector", "envoy.listener.tls_inspector")
TCP_PROXY = ("envoy.filters.network.tcp_proxy", "envoy.tcp_proxy")
UPSTREAM_PROXY_PROTOCOL = "envoy.transport_sockets.upstream_proxy_protocol"
TLS_SOCKET = ("envoy.transport_sockets.tls", "tls")


def looks_like(text: str) -> bool:
    return bool(re.search(r"(?m)(^[ \t]*|[{,]\s*)\"?static_resources\"?\s*:", text))


def load(path: str) -> ProxyConfig:
    return parse(read_text(path), path)


def parse(text: str, path: str = "envoy.yaml") -> ProxyConfig:
    source = Source(path, text)
    documents = tree.yaml_documents(text, path)
    root = documents[0] if documents else None
    if not isinstance(root, Tree) or "static_resources" not in root:
        raise ConfigReadError(path, None, "no static_resources: not an Envoy bootstrap")
    resources = tree.mapping(source, root, "static_resources")
    clusters = {tree.text(source, cluster, "name") or "": cluster
                for cluster, _ in tree.items_of(source, tree.sequence(source, resources, "clusters"), "clusters")}
    listeners: list[FrontListener] = []
    routes: list[Route] = []
    problems: list[Problem] = []
    for listener, _ in tree.items_of(source, tree.sequence(source, resources, "listeners"), "listeners"):
        front, inspector = _listener(source, listener)
        listeners.append(front)
        for chain, _ in tree.items_of(source, tree.sequence(source, listener, "filter_chains"), "filter_chains"):
            routes += _chain_routes(source, chain, front, inspector, clusters, problems)
    return ProxyConfig("envoy", path, tuple(listeners), tuple(routes), tuple(problems))


def _socket_address(source: Source, holder: Tree, what: str) -> tuple[str, int, Origin]:
    socket = tree.mapping(source, tree.mapping(source, holder, "address"), "socket_address")
    port = socket.get("port_value")
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise source.error(socket, f"{what}: socket_address without a port_value", "port_value")
    address = tree.text(source, socket, "address") or ""
    return address, port, source.at(socket, "port_value")


def _listener(source: Source, listener: Tree) -> tuple[FrontListener, Origin | None]:
    address, port, origin = _socket_address(source, listener, "listener")
    accepts: Origin | None = None
    inspector: Origin | None = None
    for item, line in tree.items_of(source, tree.sequence(source, listener, "listener_filters"), "listener_filters"):
        name = tree.text(source, item, "name") or ""
        if name in PROXY_PROTOCOL_FILTER or _typed(item).endswith("listener.proxy_protocol.v3.ProxyProtocol"):
            accepts = source.at(item, "name")
        if name in TLS_INSPECTOR or _typed(item).endswith("tls_inspector.v3.TlsInspector"):
            inspector = source.at(item, "name")
    front = FrontListener(address, port, tls_terminated=False, accepts_header=accepts is not None,
                          origin=accepts or source.at(listener, "address"))
    return front, inspector


def _typed(item: Tree) -> str:
    typed = item.get("typed_config")
    kind = typed.get("@type") if isinstance(typed, Tree) else None
    return kind if isinstance(kind, str) else ""


def _chain_routes(source: Source, chain: Tree, front: FrontListener, inspector: Origin | None,
                  clusters: dict[str, Tree], problems: list[Problem]) -> list[Route]:
    socket = chain.get("transport_socket")
    if isinstance(socket, Tree) and _socket_name(socket) in TLS_SOCKET:
        front = FrontListener(front.address, front.port, tls_terminated=True, accepts_header=front.accepts_header,
                              origin=source.at(chain, "transport_socket"), trusted_sources=front.trusted_sources)
    match = tree.mapping(source, chain, "filter_chain_match")
    needs_bytes = "server_names" in match or "application_protocols" in match
    wait = (source.at(match, "server_names" if "server_names" in match else "application_protocols")
            if needs_bytes else inspector)
    if front.tls_terminated:  # the client speaks first: its ClientHello
        wait = None
    routes = []
    for item, _ in tree.items_of(source, tree.sequence(source, chain, "filters"), "filters"):
        if (tree.text(source, item, "name") or "") not in TCP_PROXY and not _typed(item).endswith("tcp_proxy.v3.TcpProxy"):
            continue
        config = tree.mapping(source, item, "typed_config")
        name = tree.text(source, config, "cluster")
        cluster = clusters.get(name or "")
        if cluster is None:
            problems.append(Problem(f"tcp_proxy cluster {name!r} is not among static_resources.clusters",
                                    source.at(config, "cluster")))
            continue
        routes += _cluster_routes(source, cluster, front, wait)
    return routes


def _socket_name(socket: Tree) -> str:
    name = socket.get("name")
    if isinstance(name, str):
        return name
    kind = _typed(socket)
    return "envoy.transport_sockets.tls" if kind.endswith("UpstreamTlsContext") or kind.endswith("DownstreamTlsContext") else kind


def _header(source: Source, cluster: Tree) -> tuple[HeaderVersion, Origin | None, bool, bool]:
    """(version, where it is set, TLS to the server, TLVs passed through)."""
    socket = cluster.get("transport_socket")
    if not isinstance(socket, Tree):
        return "none", None, False, False
    if _socket_name(socket) in TLS_SOCKET:
        return "none", None, True, False
    if _socket_name(socket) != UPSTREAM_PROXY_PROTOCOL and not _typed(socket).endswith("ProxyProtocolUpstreamTransport"):
        return "none", None, False, False
    typed = tree.mapping(source, socket, "typed_config")
    config = tree.mapping(source, typed, "config")
    version = tree.text(source, config, "version") or "V1"
    if version.upper() not in ("V1", "V2"):
        raise source.error(config, f"proxy protocol version {version!r}: V1 or V2", "version")
    inner = typed.get("transport_socket")
    tls = isinstance(inner, Tree) and _socket_name(inner) in TLS_SOCKET
    where = source.at(config, "version") if "version" in config else source.at(socket, "name")
    return ("v1" if version.upper() == "V1" else "v2"), where, tls, "pass_through_tlvs" in config


SSL_TLV, PP2_CLIENT_SSL = 0x20, 0x01


def _static_ssl_tlv(source: Source, cluster: Tree) -> bool:
    """Whether `added_tlvs` holds an SSL TLV whose client byte says TLS (its value is base64)."""
    socket = cluster.get("transport_socket")
    config = tree.mapping(source, tree.mapping(source, socket, "typed_config"), "config") if isinstance(socket, Tree) else Tree()
    found = False
    for entry, _ in tree.items_of(source, tree.sequence(source, config, "added_tlvs"), "added_tlvs"):
        value = _tlv_bytes(source, entry)
        found = found or (entry.get("type") == SSL_TLV and bool(value) and bool(value[0] & PP2_CLIENT_SSL))
    return found


def _tlv_bytes(source: Source, entry: Tree) -> bytes:
    text = entry.get("value", "")
    try:
        return base64.b64decode(str(text), validate=True)
    except (binascii.Error, ValueError):
        raise source.error(entry, f"added_tlvs value {text!r}: a bytes field, written in base64 in YAML and JSON "
                           "(01 00 00 00 00 is \"AQAAAAA=\")", "value") from None


def _health_check(source: Source, cluster: Tree) -> HealthCheck | None:
    for check, _ in tree.items_of(source, tree.sequence(source, cluster, "health_checks"), "health_checks"):
        tcp = check.get("tcp_health_check")
        if tcp is None:
            continue
        sends = isinstance(tcp, Tree) and "proxy_protocol_config" in tcp
        port = tree.mapping(source, check, "alt_port").get("value") if isinstance(check.get("alt_port"), Tree) else None
        return HealthCheck(port if isinstance(port, int) and not isinstance(port, bool) else None, sends_header=sends,
                           local=False, origin=source.at(check, "tcp_health_check"))
    return None


def _cluster_routes(source: Source, cluster: Tree, front: FrontListener, wait: Origin | None) -> list[Route]:
    sends, sends_origin, tls, _passes = _header(source, cluster)
    ssl_tlv = sends == "v2" and _static_ssl_tlv(source, cluster)
    check = _health_check(source, cluster)
    routes = []
    assignment = tree.mapping(source, cluster, "load_assignment")
    for group, _ in tree.items_of(source, tree.sequence(source, assignment, "endpoints"), "endpoints"):
        for item, _ in tree.items_of(source, tree.sequence(source, group, "lb_endpoints"), "lb_endpoints"):
            address, port, origin = _socket_address(source, tree.mapping(source, item, "endpoint"), "endpoint")
            routes.append(Route(front, address, port, sends, origin, tls_to_server=tls, ssl_tlv=ssl_tlv,
                                waits_for_client=wait is not None, wait_origin=wait, health_check=check,
                                sends_origin=sends_origin, block_origin=source.at(cluster, "name")))
    return routes

