"""HAProxy's `haproxy.cfg` -> ProxyConfig.

What is read (HAProxy 2.6 configuration manual, doc/configuration.txt in haproxy/haproxy:
sections 4 "Proxies", 5.1 "Bind options", 5.2 "Server and default-server options"):
- `frontend`, `backend`, `listen` and `defaults` sections (a proxy takes the last
  `defaults` section above it, or the one named with `from`);
- `bind ADDR:PORT[,...] [ssl crt ...] [accept-proxy]` and `tcp-request connection
  expect-proxy layer4`: the listener terminates TLS, expects a header from its clients;
- `server NAME ADDR[:PORT] [send-proxy | send-proxy-v2 | send-proxy-v2-ssl |
  send-proxy-v2-ssl-cn] [proxy-v2-options ssl,cert-cn,ssl-cipher] [ssl] [check
  [port N] [addr A] [check-send-proxy]] [source A]`, with `default-server` lines; a
  server without a port takes the client's destination port (`:+N` adds N to it);
- `source ADDR` (the address towards the servers);
- `default_backend` and `use_backend` (a `req.ssl_sni` condition routes on client bytes);
- `tcp-request inspect-delay` with `tcp-request content` rules or `use_backend`
  conditions that fetch from the request buffer (`req.*`, `req_*`): HAProxy waits for
  client bytes before it connects to the server.

Health checks send a header (v2: the LOCAL command) when the server line sends one and
the check has no `port` or `addr` of its own; `check-send-proxy` forces it (5.2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

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
    split_host_port,
)

PROXY_SECTIONS = frozenset({"frontend", "backend", "listen", "defaults"})
OTHER_SECTIONS = frozenset({
    "global", "peers", "resolvers", "userlist", "mailers", "program", "http-errors", "ring", "cache", "crt-store",
    "log-forward", "traces", "acme", "fcgi-app", "dynamic-update",
})
# Server options that take a value: their value is never read as an option.
SERVER_VALUE_OPTIONS = frozenset({
    "port", "addr", "source", "proxy-v2-options", "inter", "fastinter", "downinter", "rise", "fall", "weight",
    "maxconn", "minconn", "maxqueue", "crt", "ca-file", "crl-file", "verify", "verifyhost", "sni", "alpn", "npn",
    "ciphers", "ciphersuites", "cookie", "id", "init-addr", "resolvers", "resolve-prefer", "resolve-opts",
    "resolve-net", "slowstart", "observe", "on-error", "on-marked-down", "on-marked-up", "error-limit", "agent-port",
    "agent-inter", "agent-addr", "agent-send", "check-sni", "check-alpn", "check-proto", "track", "redir",
    "pool-max-conn", "pool-low-conn", "pool-purge-delay", "max-reuse", "tcp-ut", "namespace", "ssl-min-ver",
    "ssl-max-ver", "curves", "sigalgs", "client-sigalgs", "socks4", "set-proxy-v2-tlv-fmt", "log-proto", "ws",
    "shard", "proto", "usesrc", "interface", "hash-key", "guid", "log-bufsize", "strict-maxconn",
})
SEND_PROXY_OPTIONS = {
    "send-proxy": "v1", "send-proxy-v2": "v2", "send-proxy-v2-ssl": "v2", "send-proxy-v2-ssl-cn": "v2",
}
REQUEST_BUFFER_FETCH = re.compile(r"\breq[._](?!hdr)[a-z_.]+|\breq_ssl_sni\b")


@dataclass
class _Line:
    words: list[str]
    origin: Origin


@dataclass
class _Section:
    kind: str
    name: str
    origin: Origin
    defaults: _Section | None = None
    lines: list[_Line] = field(default_factory=list)

    def find(self, *keyword: str) -> list[_Line]:
        """Lines starting with these words, this section's own."""
        return [line for line in self.lines if tuple(line.words[: len(keyword)]) == keyword]

    def last(self, *keyword: str) -> _Line | None:
        """The last such line here, else in the defaults in force."""
        own = self.find(*keyword)
        if own:
            return own[-1]
        return self.defaults.last(*keyword) if self.defaults is not None else None


@dataclass
class _ServerOptions:
    sends: HeaderVersion = "none"
    ssl_tlv: bool = False
    ssl_cn: bool = False
    ssl_cipher: bool = False
    tls: bool = False
    check: bool = False
    check_port: int | None = None
    check_addr: str | None = None
    check_send_proxy: bool = False
    source: str | None = None

    def apply(self, words: list[str]) -> None:
        """Options in the order written; later ones (and `no-...`) override earlier ones."""
        index = 0
        while index < len(words):
            word = words[index]
            value = words[index + 1] if index + 1 < len(words) else ""
            if word in SEND_PROXY_OPTIONS:
                self.sends = SEND_PROXY_OPTIONS[word]  # type: ignore[assignment]
                self.ssl_tlv = self.ssl_tlv or word.startswith("send-proxy-v2-ssl")
                self.ssl_cn = self.ssl_cn or word == "send-proxy-v2-ssl-cn"
            elif word in ("no-send-proxy", "no-send-proxy-v2", "no-send-proxy-v2-ssl", "no-send-proxy-v2-ssl-cn"):
                self.sends, self.ssl_tlv, self.ssl_cn = "none", False, False
            elif word == "proxy-v2-options":
                options = set(value.split(","))
                self.ssl_tlv = self.ssl_tlv or bool(options & {"ssl", "cert-cn", "ssl-cipher", "cert-sig", "cert-key"})
                self.ssl_cn = self.ssl_cn or "cert-cn" in options
                self.ssl_cipher = self.ssl_cipher or "ssl-cipher" in options
            elif word == "ssl":
                self.tls = True
            elif word == "no-ssl":
                self.tls = False
            elif word == "check":
                self.check = True
            elif word == "no-check":
                self.check = False
            elif word == "check-send-proxy":
                self.check_send_proxy = True
            elif word == "port":
                self.check_port = int(value) if value.isdigit() else None
            elif word == "addr":
                self.check_addr = value or None
            elif word == "source":
                self.source = _address_only(value)
            if word in SERVER_VALUE_OPTIONS:
                index += 1
            index += 1


def load(path: str) -> ProxyConfig:
    return parse(read_text(path), path)


def looks_like(text: str) -> bool:
    """A proxy section keyword with a name and no brace starts a line."""
    return bool(re.search(r"(?m)^[ \t]*(frontend|backend|listen)[ \t]+[^\s{};]+[ \t]*(#.*)?$", text))


def parse(text: str, path: str = "haproxy.cfg") -> ProxyConfig:
    """The whole file -> ProxyConfig; raises ConfigReadError (with the line) where
    HAProxy itself would refuse to start."""
    sections = _sections(text, path)
    backends = {section.name: section for section in sections if section.kind in ("backend", "listen")}
    listeners: list[FrontListener] = []
    routes: list[Route] = []
    problems: list[Problem] = []
    for section in sections:
        if section.kind not in ("frontend", "listen"):
            continue
        fronts = _front_listeners(section)
        listeners.extend(fronts)
        targets = _backends_of(section, backends, problems)
        waits = _waits_for_client(section, [condition for _, condition in targets])
        for target, _ in targets:
            for front in fronts:
                routes.extend(_routes(front, target, section, waits, problems))
    return ProxyConfig("haproxy", path, tuple(listeners), tuple(routes), tuple(problems))


# --- lines and sections ------------------------------------------------------------------


def split_words(line: str) -> list[str] | None:
    """HAProxy's word splitting: blanks separate, quotes group, backslash escapes, `#`
    starts a comment. None when a quote is left open."""
    words: list[str] = []
    current: list[str] = []
    quote = ""
    in_word = False
    index = 0
    while index < len(line):
        char = line[index]
        if quote:
            if char == quote:
                quote = ""
            elif char == "\\" and quote == '"' and index + 1 < len(line):
                index += 1
                current.append(line[index])
            else:
                current.append(char)
        elif char in "\"'":
            quote, in_word = char, True
        elif char == "\\" and index + 1 < len(line):
            index += 1
            current.append(line[index])
            in_word = True
        elif char == "#":
            break
        elif char in " \t\r\n\f\v":
            if in_word:
                words.append("".join(current))
                current, in_word = [], False
        else:
            current.append(char)
            in_word = True
        index += 1
    if quote:
        return None
    if in_word:
        words.append("".join(current))
    return words


def _sections(text: str, path: str) -> list[_Section]:
    sections: list[_Section] = []
    named_defaults: dict[str, _Section] = {}
    current: _Section | None = None
    last_defaults: _Section | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        origin = Origin(path, number, raw)
        words = split_words(raw)
        if words is None:
            raise ConfigReadError(path, number, "unmatched quote")
        if not words:
            continue
        keyword = words[0]
        if keyword in PROXY_SECTIONS or keyword in OTHER_SECTIONS:
            name = words[1] if len(words) > 1 and words[1] != "from" else ""
            current = _Section(keyword, name, origin)
            if keyword in ("frontend", "backend", "listen") and not name:
                raise ConfigReadError(path, number, f"'{keyword}' needs a name")
            if keyword in PROXY_SECTIONS:
                current.defaults = _defaults_for(words, last_defaults, named_defaults, path, number)
            if keyword == "defaults":
                last_defaults = current
                if name:
                    named_defaults[name] = current
            sections.append(current)
        elif current is None:
            raise ConfigReadError(path, number, f"unknown keyword '{keyword}' out of section")
        else:
            current.lines.append(_Line(words, origin))
    if not any(section.kind in ("frontend", "listen", "backend") for section in sections):
        raise ConfigReadError(path, None, "no frontend, backend or listen section: not an HAProxy configuration")
    return sections


def _defaults_for(words: list[str], last: _Section | None, named: dict[str, _Section], path: str, number: int):
    if "from" in words[1:]:
        index = words.index("from")
        if index + 1 >= len(words) or words[index + 1] not in named:
            raise ConfigReadError(path, number, "'from' names no defaults section defined above")
        return named[words[index + 1]]
    return last


# --- front listeners ---------------------------------------------------------------------


def _front_listeners(section: _Section) -> list[FrontListener]:
    expect_proxy = [line for line in section.find("tcp-request", "connection") if "expect-proxy" in line.words]
    conditional = tuple(" ".join(line.words[line.words.index("if") + 1 :]) for line in expect_proxy if "if" in line.words)
    fronts = []
    for line in section.find("bind"):
        if len(line.words) < 2:
            raise ConfigReadError(line.origin.path, line.origin.line, "'bind' needs an address")
        options = line.words[2:]
        for address, port in _bind_addresses(line.words[1], line.origin):
            fronts.append(FrontListener(
                address=address,
                port=port,
                tls_terminated="ssl" in options,
                accepts_header="accept-proxy" in options or bool(expect_proxy),
                origin=line.origin,
                trusted_sources=conditional if "accept-proxy" not in options else (),
            ))
    return fronts


def _bind_addresses(spec: str, origin: Origin) -> list[tuple[str, int]]:
    found: list[tuple[str, int]] = []
    for part in spec.split(","):
        family, at, rest = part.partition("@")
        if at and family in ("unix", "abns", "fd", "sockpair", "quic4", "quic6", "udp", "udp4", "udp6"):
            continue
        address_text = rest if at else part
        if address_text.startswith("/"):
            continue  # a UNIX socket path
        host, _, port_text = address_text.rpartition(":")
        low, dash, high = port_text.partition("-")
        if not (low.isdigit() and (not dash or high.isdigit())) or not 0 < int(low) < 65536:
            raise ConfigReadError(origin.path, origin.line, f"'bind {spec}': no valid port")
        last = int(high) if dash else int(low)
        found.extend((host.strip("[]"), port) for port in range(int(low), min(last, int(low) + 15) + 1))
    return found


# --- from front to back ------------------------------------------------------------------


def _backends_of(section: _Section, backends: dict[str, _Section], problems: list[Problem]):
    """(backend, the condition that selects it) for every backend the frontend may use."""
    targets: list[tuple[_Section, str]] = []
    for line in section.find("use_backend"):
        name = line.words[1] if len(line.words) > 1 else ""
        condition = " ".join(line.words[2:])
        target = _backend_named(name, line, backends, problems)
        if target is not None:
            targets.append((target, condition))
    default = section.last("default_backend")
    if default is not None and len(default.words) > 1:
        target = _backend_named(default.words[1], default, backends, problems)
        if target is not None:
            targets.append((target, ""))
    if section.kind == "listen" and section.find("server"):
        targets.append((section, ""))
    return targets


def _backend_named(name: str, line: _Line, backends: dict[str, _Section], problems: list[Problem]) -> _Section | None:
    if "%[" in name:
        problems.append(Problem(f"backend chosen at run time ({name}): its servers are not followed", line.origin))
        return None
    if name not in backends:
        raise ConfigReadError(line.origin.path, line.origin.line, f"unable to find the backend '{name}'")
    return backends[name]


def _waits_for_client(front: _Section, conditions: list[str]) -> Origin | None:
    """Where the frontend starts waiting for client bytes before it connects, if it does:
    its content rules and backend switching wait, up to the inspect delay, for every
    request-buffer fetch they use to be decided, whichever backend is chosen in the end."""
    delay = front.last("tcp-request", "inspect-delay")
    if delay is None or delay.words[2:3] in (["0"], ["0s"], ["0ms"]):
        return None
    content = [" ".join(line.words) for line in front.find("tcp-request", "content")]
    if any(REQUEST_BUFFER_FETCH.search(rule) for rule in content + conditions):
        return delay.origin
    return None


def _routes(front: FrontListener, backend: _Section, frontend: _Section, waits: Origin | None,
            problems: list[Problem]) -> list[Route]:
    routes = []
    defaults_line = [line for section in (backend.defaults, backend) if section is not None
                     for line in section.find("default-server")]
    source_line = backend.last("source")
    for line in backend.find("server"):
        if len(line.words) < 3:
            raise ConfigReadError(line.origin.path, line.origin.line, "'server' needs a name and an address")
        options = _ServerOptions()
        for default in defaults_line:
            options.apply(default.words[1:])
        options.apply(line.words[3:])
        address, port = _server_address(line.words[2], front.port, line.origin, problems)
        if address is None:
            continue
        source = options.source or (_address_only(source_line.words[1]) if source_line and len(source_line.words) > 1 else None)
        routes.append(Route(
            front=front,
            server_address=address,
            server_port=port,
            sends=options.sends,
            origin=line.origin,
            ssl_tlv=options.ssl_tlv,
            ssl_cn=options.ssl_cn,
            ssl_cipher=options.ssl_cipher,
            tls_to_server=options.tls,
            source_address=source,
            waits_for_client=waits is not None,
            health_check=_health_check(options, line.origin),
            sends_origin=line.origin,
            source_origin=line.origin if options.source else (source_line.origin if source_line else None),
            wait_origin=waits,
            block_origin=backend.origin,
        ))
    return routes


def _server_address(spec: str, front_port: int, origin: Origin, problems: list[Problem]) -> tuple[str | None, int | None]:
    family, at, rest = spec.partition("@")
    text = rest if at and family in ("ipv4", "ipv6", "tcp", "tcp4", "tcp6") else spec
    if at and family not in ("ipv4", "ipv6", "tcp", "tcp4", "tcp6"):
        problems.append(Problem(f"server address {spec!r} is not a TCP address: not followed", origin))
        return None, None
    host, colon, port_text = text.rpartition(":") if not text.endswith("]") else (text, "", "")
    if not colon or (":" in host and not host.endswith("]")):
        return text.strip("[]"), None  # no port: the client's destination port
    host = host.strip("[]")
    if port_text[:1] in "+-" and port_text[1:].isdigit():
        return host, front_port + int(port_text)
    parsed = split_host_port(f"[{host}]:{port_text}")
    if parsed is None:
        raise ConfigReadError(origin.path, origin.line, f"server address {spec!r}: invalid port")
    return host, parsed[1]


def _health_check(options: _ServerOptions, origin: Origin) -> HealthCheck | None:
    if not options.check:
        return None
    own_target = options.check_port is not None or options.check_addr is not None
    sends = options.check_send_proxy or (options.sends != "none" and not own_target)
    return HealthCheck(port=options.check_port, sends_header=sends, local=sends and options.sends == "v2", origin=origin)


def _address_only(text: str) -> str:
    parsed = split_host_port(text)
    return parsed[0] if parsed else text
