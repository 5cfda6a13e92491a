"""Stalwart's own migration and routing proxy (stalwartlabs/proxy v1.0.0), its TOML
configuration -> ProxyConfig.

Sources (stalwartlabs/proxy v1.0.0: src/config/mod.rs, src/net/proxy_protocol.rs,
resources/config.sample.toml):
- `[listener.NAME]`: `protocol` (smtp, submission, lmtp, imap, pop3, managesieve, http),
  `bind` (a list of socket addresses), `tls` = implicit | starttls | plain (the proxy
  terminates the client's TLS itself), `proxy_protocol` = off (default) | optional | required
  with `proxy_trusted` (CIDRs): a header is read only from trusted peers; `required` refuses
  untrusted peers and trusted ones without a header, `optional` takes the header when one comes.
- `[destination.NAME]`: `host`, `proxy_protocol` (default true: a v2 header with no TLV, or
  `PROXY UNKNOWN` v1 when the client's and the proxy's address families differ), `forwarding`
  = proxy | xclient | none (also per protocol; it decides over `proxy_protocol`), `source_ips`
  (the first of the backend's family is the source address), `forwarded` (HTTP
  X-Forwarded-For), and `[destination.NAME.protocol.P]` with `port` and `tls` = implicit |
  starttls | plain towards the backend (after the header).
- `[routing]`: `default_destination`, and `smtp_passthrough_destination` for smtp/lmtp
  listeners (relayed as they come); other protocols are routed per account through the
  mapping, so any destination that serves the protocol may be reached.
The proxy greets clients and authenticates them itself: it never leaves a mail client
waiting for a server's greeting.
"""

from __future__ import annotations

import re
from typing import Any

from proxydiag.configs import tree
from proxydiag.configs.model import (
    ConfigReadError,
    FrontListener,
    HeaderVersion,
    Origin,
    ProxyConfig,
    Route,
    read_text,
    split_host_port,
)
from proxydiag.configs.tree import Source, Tree

PASSTHROUGH = ("smtp", "lmtp")


def looks_like(text: str) -> bool:
    return bool(re.search(r"(?m)^[ \t]*\[destination\.[^\]]+\][ \t]*$", text)
                and re.search(r"(?m)^[ \t]*\[(listener\.[^\]]+|routing)\][ \t]*$", text))


def load(path: str) -> ProxyConfig:
    return parse(read_text(path), path)


def parse(text: str, path: str = "config.toml") -> ProxyConfig:
    source = Source(path, text)
    document = tree.toml_document(text, path)
    destinations = tree.mapping(source, document, "destination")
    listeners_table = tree.mapping(source, document, "listener")
    if not destinations and not listeners_table:
        raise ConfigReadError(path, None, "no [listener.*] or [destination.*] tables: not a Stalwart proxy configuration")
    routing = tree.mapping(source, document, "routing")
    listeners: list[FrontListener] = []
    routes: list[Route] = []
    for name, listener in listeners_table.items():
        if not isinstance(listener, Tree):
            raise source.error(listeners_table, f"listener.{name}: expected a table", name)
        protocol = (tree.text(source, listener, "protocol") or "").lower()
        for front in _fronts(source, str(name), listener):
            listeners.append(front)
            for destination_name in _destinations_for(source, protocol, routing, destinations):
                destination = destinations.get(destination_name)
                if isinstance(destination, Tree):
                    route = _route(source, front, protocol, destination_name, destination, routing)
                    if route is not None:
                        routes.append(route)
    return ProxyConfig("stalwart-proxy", path, tuple(listeners), tuple(routes))


def _fronts(source: Source, name: str, listener: Tree) -> list[FrontListener]:
    mode = (tree.text(source, listener, "proxy_protocol") or "off").lower()
    if mode not in ("off", "optional", "required"):
        raise source.error(listener, f"listener.{name}.proxy_protocol {mode!r}: off, optional or required", "proxy_protocol")
    tls = (tree.text(source, listener, "tls") or "").lower()
    if tls not in ("implicit", "starttls", "plain"):
        raise source.error(listener, f"listener.{name}.tls {tls!r}: implicit, starttls or plain", "tls")
    trusted = tuple(str(item) for item in tree.sequence(source, listener, "proxy_trusted"))
    accepts = mode != "off" and bool(trusted)  # a header is read from trusted peers only (proxy_protocol.rs)
    origin = source.at(listener, "proxy_protocol" if accepts else "bind")
    fronts = []
    for bind in tree.sequence(source, listener, "bind"):
        parsed = split_host_port(str(bind))
        if parsed is None or parsed[1] is None:
            raise source.error(listener, f"listener.{name}.bind {bind!r}: not a socket address", "bind")
        fronts.append(FrontListener(parsed[0], parsed[1], tls_terminated=tls != "plain", accepts_header=accepts,
                                    origin=origin, trusted_sources=trusted, header_optional=mode == "optional"))
    return fronts


def _destinations_for(source: Source, protocol: str, routing: Tree, destinations: Tree) -> list[str]:
    """smtp/lmtp go to the passthrough destination; the rest to whichever destination the account
    maps to: every one that serves the protocol (the default first)."""
    if protocol in PASSTHROUGH:
        named = tree.text(source, routing, "smtp_passthrough_destination")
        return [named] if named else []
    default = tree.text(source, routing, "default_destination")
    return ([default] if default else []) + [str(name) for name in destinations if str(name) != default]


def _route(source: Source, front: FrontListener, protocol: str, name: str, destination: Tree,
           routing: Tree) -> Route | None:
    endpoint = tree.mapping(source, tree.mapping(source, destination, "protocol"), protocol)
    port = endpoint.get("port")
    if not isinstance(port, int) or isinstance(port, bool):
        return None  # this destination does not serve the protocol
    host = tree.text(source, destination, "host") or ""
    backend_tls = (tree.text(source, endpoint, "tls") or "plain").lower()
    sends, sends_origin = _header(source, destination, endpoint)
    sources = [str(item) for item in tree.sequence(source, destination, "source_ips")]
    source_address = next((item for item in sources if (":" in item) == (":" in host)), None)
    default = tree.text(source, routing, "default_destination")
    return Route(
        front=front, server_address=host, server_port=port, sends=sends, origin=source.at(endpoint, "port"),
        # implicit: TLS from the first byte; starttls: Stalwart upgrades the session itself, so it
        # knows the client is on TLS without an SSL TLV (which this proxy never sends)
        tls_to_server=backend_tls == "implicit", ssl_tlv=backend_tls == "starttls",
        source_address=source_address, source_origin=source.at(destination, "source_ips") if sources else None,
        sends_origin=sends_origin, block_origin=source.at(destination),
        chosen_for=None if name == default or protocol in PASSTHROUGH else f"accounts mapped to destination {name!r}",
    )


def _header(source: Source, destination: Tree, endpoint: Tree) -> tuple[HeaderVersion, Origin | None]:
    """`forwarding` (per protocol, then per destination) decides; else `proxy_protocol`, true by default."""
    for holder in (endpoint, destination):
        forwarding = tree.text(source, holder, "forwarding")
        if forwarding is not None:
            return ("v2" if forwarding.lower() == "proxy" else "none"), source.at(holder, "forwarding")
    flag: Any = destination.get("proxy_protocol", True)
    where = source.at(destination, "proxy_protocol") if "proxy_protocol" in destination else None
    return ("v2" if flag is True else "none"), where
