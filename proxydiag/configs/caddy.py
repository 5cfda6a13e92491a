"""Caddy's configuration (JSON, and Caddyfile `layer4` and site blocks) -> ProxyConfig.

Sources:
- Caddy JSON (caddyserver.com/docs/json): `apps.http.servers.NAME.listen`,
  `.listener_wrappers[{"wrapper": "proxy_protocol"}]` (the listener reads a header),
  `.tls_connection_policies`, `.routes[].handle[]` with `{"handler": "reverse_proxy",
  "upstreams": [{"dial": "host:port"}], "transport": {"protocol": "http",
  "proxy_protocol": "v1"|"v2", "tls": {}}}` and `{"handler": "subroute", "routes": [...]}`.
- caddy-l4 (mholt/caddy-l4, layer4 app): `apps.layer4.servers.NAME.listen`, `.routes[]`
  with `match` and `handle[]`: `{"handler": "tls"}` (terminates TLS),
  `{"handler": "proxy_protocol"}` (reads a header from the client), `{"handler": "proxy",
  "proxy_protocol": "v1"|"v2", "upstreams": [{"dial": ["host:port"], "tls": {}}]}`.
  Its Caddyfile form lives in the global options block, `{ layer4 { ADDRESS { @m tls sni x;
  route [@m] { tls; proxy [UPSTREAM...] { proxy_protocol v2; upstream ADDR { tls } } } } } }`
  (references.md). Matchers other than `remote_ip`/`local_ip` read the client's first
  bytes before a route is chosen (caddy-l4 `matching_timeout`).
- Caddyfile (caddyserver.com/docs/caddyfile/concepts): tokens split on white space, quotes
  and backquotes group, `#` starts a comment, `{`/`}` open and close blocks; a site address
  with a host name or port 443 gets automatic HTTPS; `reverse_proxy UPSTREAM... { to ...;
  transport http { proxy_protocol v2; tls } }`; global `servers { listener_wrappers {
  proxy_protocol } }`.
- No TLVs are ever sent (caddyserver/caddy #5967; references.md).
- caddy-l4 v0.1.2, modules/l4proxy/upstream.go: the source address towards an upstream is
  `local_addr ADDR...` inside `upstream {}` in a Caddyfile and `upstreams[].local_address` (a
  list: the first of the upstream's address family is used) in JSON, from v0.1.1.
- caddy-l4 v0.1.2, modules/l4proxyprotocol/handler.go: the `proxy_protocol` handler gives
  sources in `allow` the USE policy and the rest `fallback_policy` (IGNORE by default: a
  header is read and its address dropped; nobody is refused without one unless REQUIRE), and
  reads the client's first bytes with no timeout unless `timeout` is set: a mail client
  waiting for the greeting waits for ever.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from typing import Any

from proxydiag.configs import tree
from proxydiag.configs.model import (
    ConfigReadError,
    FrontListener,
    HeaderVersion,
    Origin,
    Problem,
    ProxyConfig,
    Route,
    read_text,
    split_host_port,
)
from proxydiag.configs.tree import Source, Tree

DATA_FREE_MATCHERS = frozenset({"remote_ip", "local_ip", "not"})
MAX_DEPTH = 100


def looks_like(text: str) -> bool:
    return bool(re.search(r"\"apps\"\s*:\s*\{", text) or re.search(r"(?m)^[ \t]*layer4\s*\{", text)
                or re.search(r"(?m)^[ \t]*reverse_proxy\b", text))


def load(path: str) -> ProxyConfig:
    return parse(read_text(path), path)


def parse(text: str, path: str = "Caddyfile") -> ProxyConfig:
    if text.lstrip().startswith("{") and _is_json(text):
        return _parse_json(text, path)
    return _parse_caddyfile(text, path)


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


@dataclass
class _Found:
    listeners: list[FrontListener] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def _front(source_origin: Origin, address: str, tls: bool, accepts: bool, default_port: int | None = None) -> FrontListener | None:
    text = re.sub(r"^(tcp|udp|tcp4|tcp6)/", "", address)
    parsed = split_host_port(text)
    if parsed is None:
        return None
    host, port = parsed
    port = port if port is not None else default_port
    if port is None:
        return None
    return FrontListener(host, port, tls_terminated=tls, accepts_header=accepts, origin=source_origin)


def _reading_front(front: FrontListener, origin: Origin, allow: Any, fallback: str | None) -> FrontListener:
    """The listener as the `proxy_protocol` handler makes it: a header from `allow` used, from
    others ignored (IGNORE, the default fallback), required only with fallback_policy REQUIRE."""
    return replace(front, accepts_header=True, origin=origin, trusted_sources=tuple(str(item) for item in allow or ()),
                   header_optional=(fallback or "ignore").lower() != "require")


def _source_address(addresses: Any, server: str) -> str | None:
    """The first local address of the upstream's family (caddy-l4 dials from it), without a port."""
    wanted_v6 = ":" in server
    for address in addresses or ():
        text = str(address).strip()
        host = text[1:].partition("]")[0] if text.startswith("[") else text.partition(":")[0] if text.count(":") == 1 else text
        if host and "{" not in host and (":" in host) == wanted_v6:
            return host
    return None


def _upstream(dial: str) -> tuple[str, int] | None:
    parsed = split_host_port(re.sub(r"^(tcp|tcp4|tcp6)/", "", dial.strip()))
    if parsed is None or parsed[1] is None:
        return None
    return parsed[0], parsed[1]


def _version(value: Any, source: Source, holder: Tree, key: str) -> HeaderVersion:
    if value in (None, "", False):
        return "none"
    if value in ("v1", "v2"):
        return value
    raise source.error(holder, f"proxy_protocol {value!r}: v1 or v2", key)


# --- JSON ------------------------------------------------------------------------------------


def _parse_json(text: str, path: str) -> ProxyConfig:
    source = Source(path, text)
    documents = tree.yaml_documents(text, path)
    root = documents[0] if documents else None
    if not isinstance(root, Tree):
        raise ConfigReadError(path, None, "expected a JSON object at the top")
    apps = tree.mapping(source, root, "apps")
    found = _Found()
    for kind in ("layer4", "http"):
        servers = tree.mapping(source, tree.mapping(source, apps, kind), "servers")
        for name, server in servers.items():
            if not isinstance(server, Tree):
                raise source.error(servers, f"apps.{kind}.servers.{name}: expected an object", name)
            _json_server(source, server, kind, found)
    if not found.listeners:
        raise ConfigReadError(path, None, "no apps.layer4 or apps.http servers with listen addresses: nothing to check")
    return ProxyConfig("caddy", path, tuple(found.listeners), tuple(found.routes), tuple(found.problems))


def _json_server(source: Source, server: Tree, kind: str, found: _Found) -> None:
    listen = tree.sequence(source, server, "listen")
    wrappers = [item for item in tree.sequence(source, server, "listener_wrappers") if isinstance(item, Tree)]
    accepts = any(item.get("wrapper") == "proxy_protocol" for item in wrappers)
    tls = kind == "http" and server.get("tls_connection_policies") is not None
    fronts = []
    for address, line in zip(listen, listen.item_lines):
        front = _front(source.origin(line, str(address)), str(address), tls, accepts)
        if front is None:
            found.problems.append(Problem(f"listen address {address!r} not understood", source.origin(line, str(address))))
            continue
        if kind == "http" and front.port == 443:
            front = replace(front, tls_terminated=True)
        fronts.append(front)
    found.listeners += fronts
    routes = tree.items_of(source, tree.sequence(source, server, "routes"), "routes")
    for front in fronts:
        _json_routes(source, routes, front, found, None, 0)


def _json_routes(source: Source, routes: list[tuple[Tree, int]], front: FrontListener, found: _Found,
                 wait: Origin | None, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ConfigReadError(source.path, None, "routes nested too deeply")
    for route, line in routes:
        matchers = [item for item in tree.sequence(source, route, "match") if isinstance(item, Tree)]
        if wait is None and any(set(matcher) - DATA_FREE_MATCHERS for matcher in matchers):
            wait = source.at(route, "match")
        current = front
        for handler, handler_line in tree.items_of(source, tree.sequence(source, route, "handle"), "handle"):
            name = tree.text(source, handler, "handler")
            if name == "tls":
                current = replace(current, tls_terminated=True, origin=source.origin(handler_line))
            elif name == "proxy_protocol":
                origin = source.origin(handler_line)
                found.listeners.append(_reading_front(front, origin, tree.sequence(source, handler, "allow"),
                                                      tree.text(source, handler, "fallback_policy")))
                wait = wait or origin
            elif name == "subroute":
                inner = tree.items_of(source, tree.sequence(source, handler, "routes"), "routes")
                _json_routes(source, inner, current, found, wait, depth + 1)
            elif name in ("proxy", "reverse_proxy"):
                _json_proxy(source, handler, name, current, wait, found)


def _json_proxy(source: Source, handler: Tree, name: str, front: FrontListener, wait: Origin | None, found: _Found) -> None:
    transport = tree.mapping(source, handler, "transport") if name == "reverse_proxy" else handler
    sends = _version(transport.get("proxy_protocol"), source, transport, "proxy_protocol")
    sends_origin = source.at(transport, "proxy_protocol") if sends != "none" else None
    for upstream, line in tree.items_of(source, tree.sequence(source, handler, "upstreams"), "upstreams"):
        dials = upstream.get("dial")
        tls_to_server = upstream.get("tls") is not None or transport.get("tls") is not None
        listed = dials if isinstance(dials, tree.Items) else tree.Items(line)
        if not isinstance(dials, tree.Items):
            listed.append(dials)
            listed.item_lines.append(upstream.key_lines.get("dial", line))
        for dial, dial_line in zip(listed, listed.item_lines):
            target = _upstream(str(dial)) if isinstance(dial, (str, int)) else None
            origin = source.origin(dial_line or line, str(dial))
            if target is None:
                found.problems.append(Problem(f"upstream {dial!r}: no host:port", origin))
                continue
            local = tree.sequence(source, upstream, "local_address") if name == "proxy" else None
            found.routes.append(Route(front, target[0], target[1], sends, origin, tls_to_server=tls_to_server,
                                      waits_for_client=wait is not None, wait_origin=wait, sends_origin=sends_origin,
                                      block_origin=source.at(handler),
                                      source_address=_source_address(local, target[0]),
                                      source_origin=source.at(upstream, "local_address") if local else None))


# --- Caddyfile -------------------------------------------------------------------------------


@dataclass
class Directive:
    """One Caddyfile line: its words, its line, and its block (None: no block)."""

    words: list[str]
    line: int
    block: list[Directive] | None = None

    def find(self, name: str) -> list[Directive]:
        return [child for child in self.block or [] if child.words and child.words[0] == name]


def tokens(text: str, path: str) -> list[tuple[str, int, bool]]:
    """(token, line, first on its line)."""
    out: list[tuple[str, int, bool]] = []
    line, index, length = 1, 0, len(text)
    line_start = True
    while index < length:
        char = text[index]
        if char == "\n":
            line, index, line_start = line + 1, index + 1, True
            continue
        if char in " \t\r":
            index += 1
            continue
        if char == "#":
            while index < length and text[index] != "\n":
                index += 1
            continue
        start_line = line
        if char in "\"`":
            end = index + 1
            while end < length and text[end] != char:
                if text[end] == "\\" and char == '"':
                    end += 1
                end += 1
            if end >= length:
                raise ConfigReadError(path, start_line, "unmatched quote")
            word = text[index + 1:end]
            line += word.count("\n")
            index = end + 1
        else:
            end = index
            while end < length and text[end] not in " \t\r\n":
                end += 1
            word, index = text[index:end], end
        out.append((word, start_line, line_start))
        line_start = False
    return out


def directives(text: str, path: str) -> list[Directive]:
    """The Caddyfile as nested directives: a line ending in `{` opens a block, `}` closes it."""
    stack: list[list[Directive]] = [[]]
    opened: list[int] = []
    current: Directive | None = None
    for word, line, first in tokens(text, path):
        if word == "}" and first:
            if len(stack) == 1:
                raise ConfigReadError(path, line, "unexpected '}'")
            stack.pop()
            opened.pop()
            current = None
            continue
        if word == "{":
            if first or current is None:
                current = Directive([], line)
                stack[-1].append(current)
            current.block = []
            stack.append(current.block)
            opened.append(line)
            current = None
            continue
        if first or current is None:
            current = Directive([word], line)
            stack[-1].append(current)
        else:
            current.words.append(word)
    if len(stack) > 1:
        raise ConfigReadError(path, opened[-1], "'{' never closed")
    return stack[0]


def _parse_caddyfile(text: str, path: str) -> ProxyConfig:
    source = Source(path, text)
    blocks = directives(text, path)
    found = _Found()
    global_options = blocks[0] if blocks and not blocks[0].words and blocks[0].block is not None else None
    accepts_http = False
    if global_options is not None:
        for layer4 in global_options.find("layer4"):
            for server in layer4.block or []:
                _caddyfile_l4_server(source, server, found)
        accepts_http = any(wrappers.find("proxy_protocol") for servers in global_options.find("servers")
                           for wrappers in servers.find("listener_wrappers"))
    for site in blocks[1:] if global_options is not None else blocks:
        if site.block is not None and site.words:
            _caddyfile_site(source, site, accepts_http, found)
    if not found.listeners:
        raise ConfigReadError(path, None, "no layer4 servers or site blocks: not a Caddyfile check can read")
    return ProxyConfig("caddy", path, tuple(found.listeners), tuple(found.routes), tuple(found.problems))


def _caddyfile_l4_server(source: Source, server: Directive, found: _Found) -> None:
    fronts = []
    for address in server.words:
        front = _front(source.origin(server.line), address, False, False)
        if front is None:
            raise ConfigReadError(source.path, server.line, f"layer4 address {address!r}: no port")
        fronts.append(front)
    found.listeners += fronts
    matchers = {child.words[0]: child.words[1] if len(child.words) > 1 else "" for child in server.block or []
                if child.words and child.words[0].startswith("@")}
    for front in fronts:
        wait: Origin | None = None
        for route in server.find("route"):
            named = [word for word in route.words[1:] if word.startswith("@")]
            if wait is None and any(matchers.get(name, "") not in DATA_FREE_MATCHERS for name in named):
                wait = source.origin(route.line)
            _caddyfile_handlers(source, route.block or [], front, wait, found)


def _caddyfile_handlers(source: Source, handlers: list[Directive], front: FrontListener, wait: Origin | None,
                        found: _Found) -> None:
    current = front
    for handler in handlers:
        name = handler.words[0] if handler.words else ""
        if name == "tls":
            current = replace(current, tls_terminated=True, origin=source.origin(handler.line))
        elif name == "proxy_protocol":
            origin = source.origin(handler.line)
            allow = [word for item in handler.find("allow") for word in item.words[1:]]
            fallback = next((item.words[1] for item in handler.find("fallback_policy") if len(item.words) > 1), None)
            found.listeners.append(_reading_front(front, origin, allow, fallback))
            wait = wait or origin
        elif name == "proxy":
            _caddyfile_proxy(source, handler, current, wait, found)


def _caddyfile_proxy(source: Source, proxy: Directive, front: FrontListener, wait: Origin | None, found: _Found) -> None:
    setting = proxy.find("proxy_protocol")
    version = setting[-1].words[1] if setting and len(setting[-1].words) > 1 else None
    sends = _checked_version(source, setting[-1], version) if setting else "none"
    sends_origin = source.origin(setting[-1].line) if setting else None
    upstreams: list[tuple[str, int, Directive | None]] = [(word, proxy.line, None) for word in proxy.words[1:]]
    for child in proxy.find("upstream"):
        dials = child.words[1:] + [word for item in child.find("dial") for word in item.words[1:]]
        upstreams += [(word, child.line, child) for word in dials]
    for dial, line, block in upstreams:
        target = _upstream(dial)
        if target is None:
            found.problems.append(Problem(f"upstream {dial!r}: no host:port", source.origin(line)))
            continue
        local = block.find("local_addr") if block is not None else []
        found.routes.append(Route(front, target[0], target[1], sends, source.origin(line),
                                  tls_to_server=bool(block and block.find("tls")),
                                  waits_for_client=wait is not None, wait_origin=wait, sends_origin=sends_origin,
                                  block_origin=source.origin(proxy.line),
                                  source_address=_source_address([w for item in local for w in item.words[1:]], target[0]),
                                  source_origin=source.origin(local[0].line) if local else None))


def _checked_version(source: Source, directive: Directive, version: str | None) -> HeaderVersion:
    if version in ("v1", "v2"):
        return version  # type: ignore[return-value]
    raise ConfigReadError(source.path, directive.line, f"proxy_protocol {version!r}: v1 or v2")


def _caddyfile_site(source: Source, site: Directive, accepts: bool, found: _Found) -> None:
    fronts = []
    for address in site.words:
        front = _site_front(source.origin(site.line), address.rstrip(","), accepts)
        if front is not None:
            fronts.append(front)
    found.listeners += fronts
    for proxy in _all(site.block or [], "reverse_proxy", 0):
        for front in fronts:
            _caddyfile_reverse_proxy(source, proxy, front, found)


def _site_front(origin: Origin, address: str, accepts: bool) -> FrontListener | None:
    scheme, _, rest = address.rpartition("://")
    parsed = split_host_port(rest.split("/")[0])
    if parsed is None:
        return None
    host, port = parsed
    if port is None:
        port = 80 if scheme == "http" else 443
    tls = scheme == "https" or (scheme != "http" and (port == 443 or bool(re.search(r"[A-Za-z]", host))))
    return FrontListener(host if not re.search(r"[A-Za-z]", host) else "", port, tls_terminated=tls,
                         accepts_header=accepts, origin=origin)


def _all(block: list[Directive], name: str, depth: int) -> list[Directive]:
    if depth > MAX_DEPTH:
        raise ValueError("nested too deeply")
    out = []
    for child in block:
        if child.words and child.words[0] == name:
            out.append(child)
        elif child.block:
            out += _all(child.block, name, depth + 1)
    return out


def _caddyfile_reverse_proxy(source: Source, proxy: Directive, front: FrontListener, found: _Found) -> None:
    transports = [child for child in proxy.find("transport") if child.words[1:2] == ["http"]]
    setting = [item for transport in transports for item in transport.find("proxy_protocol")]
    version = setting[-1].words[1] if setting and len(setting[-1].words) > 1 else None
    sends = _checked_version(source, setting[-1], version) if setting else "none"
    tls = any(transport.find("tls") for transport in transports)
    upstreams = [(word, proxy.line) for word in proxy.words[1:]]
    upstreams += [(word, child.line) for child in proxy.find("to") for word in child.words[1:]]
    for dial, line in upstreams:
        scheme, _, rest = dial.rpartition("://")
        target = _upstream(rest)
        if target is None:
            found.problems.append(Problem(f"upstream {dial!r}: no host:port", source.origin(line)))
            continue
        found.routes.append(Route(front, target[0], target[1], sends, source.origin(line),
                                  tls_to_server=tls or scheme == "https",
                                  sends_origin=source.origin(setting[-1].line) if setting else None,
                                  block_origin=source.origin(proxy.line)))
