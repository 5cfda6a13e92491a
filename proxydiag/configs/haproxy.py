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
    """A proxy section keyword with a name and no brace starts a line, or a file of a split
    configuration starts with a `global` or `defaults` line."""
    return bool(re.search(r"(?m)^[ \t]*(frontend|backend|listen)([ \t]+[^\s{};=]+)+[ \t]*(#.*)?$", text)
                or re.search(r"\A([ \t\r\f\v]*(#[^\n]*)?\n)*[ \t]*(global|defaults)([ \t]+[\w.-]+)?[ \t]*(#.*)?$", text, re.M))


def parse(text: str, path: str = "haproxy.cfg") -> ProxyConfig:
    """The whole file -> ProxyConfig; raises ConfigReadError (with the line) where
    HAProxy itself would refuse to start."""
    return parse_files([(path, text)])


def load_groups(paths: list[str]) -> list[tuple[list[str], ProxyConfig | ConfigReadError]]:
    """The files of one HAProxy read together where they are one configuration split up
    (`haproxy -f global.cfg -f mail.cfg`, `-f conf.d/`), each with the files it was read from."""
    found: list[tuple[list[str], ProxyConfig | ConfigReadError]] = []
    for group in group_files([(path, read_text(path)) for path in paths]):
        try:
            found.append(([path for path, _ in group], parse_files(group)))
        except ConfigReadError as error:
            found.append(([path for path, _ in group], error))
    return found


def group_files(files: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """Files in the order given, gathered where one cannot stand alone: a file joins the
    ones before it when those hold no proxy yet (global, defaults), when it holds no
    frontend or listen of its own (backends only), or when it uses a backend it does not
    define. Files that each stand alone are separate proxies (a chain of two)."""
    groups: list[list[tuple[str, str]]] = []
    for path, text in files:
        kinds, defined, used = _outline(text)
        previous = [_outline(other)[0] for _, other in groups[-1]] if groups else []
        lone = bool(kinds & {"frontend", "listen"}) and used <= defined
        if groups and (not lone or not any(earlier & {"frontend", "listen", "backend"} for earlier in previous)):
            groups[-1].append((path, text))
        else:
            groups.append([(path, text)])
    return groups


def _outline(text: str) -> tuple[set[str], set[str], set[str]]:
    """The section kinds of a file, the backends it defines and those it names."""
    kinds: set[str] = set()
    defined: set[str] = set()
    used: set[str] = set()
    for raw in text.splitlines():
        words = split_words(raw) or []
        if words and (words[0] in PROXY_SECTIONS or words[0] in OTHER_SECTIONS):
            kinds.add(words[0])
            if words[0] in ("backend", "listen") and len(words) > 1:
                defined.add(words[1])
        elif words[:1] in (["use_backend"], ["default_backend"]) and len(words) > 1 and "%[" not in words[1]:
            used.add(words[1])
    return kinds, defined, used


def parse_files(files: list[tuple[str, str]]) -> ProxyConfig:
    """Files read in order as one configuration (named after the first)."""
    sections = _sections(files)
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
        ports = _port_conditions(section, targets)
        for front in fronts:
            for target, _ in _targets_for_port(targets, ports, front.port):
                routes.extend(_routes(front, target, section, waits, problems))
    return ProxyConfig("haproxy", files[0][0], tuple(listeners), tuple(routes), tuple(problems))


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


def _sections(files: list[tuple[str, str]]) -> list[_Section]:
    """Every section of the files, in order: a section ends with its file, a defaults
    section applies to the proxies after it in later files too."""
    sections: list[_Section] = []
    named_defaults: dict[str, _Section] = {}
    last_defaults: _Section | None = None
    for path, text in files:
        last_defaults = _file_sections(path, text, sections, named_defaults, last_defaults)
    if not any(section.kind in ("frontend", "listen", "backend") for section in sections):
        raise ConfigReadError(files[0][0], None, "no frontend, backend or listen section: not an HAProxy configuration")
    return sections


def _file_sections(path: str, text: str, sections: list[_Section], named_defaults: dict[str, _Section],
                   last_defaults: _Section | None) -> _Section | None:
    current: _Section | None = None
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
            if keyword in ("frontend", "backend", "listen") and len(words) > 2 and words[2] != "from":
                raise ConfigReadError(path, number, f"'{' '.join(words[:3])}': HAProxy 2.x refuses anything after the "
                                      "section name (\"please use the 'bind' keyword for listening addresses\"): "
                                      f"write 'bind {words[2]}' inside the section")
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
    return last_defaults


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
    if section.kind == "listen" and _server_lines(section):
        targets.append((section, ""))
    return targets


DST_PORT = re.compile(r"^(?:if\s+)?(?:\{\s*dst_port\s+(\d+(?:\s+\d+)*)\s*\}|(\S+))$")


def _port_conditions(section: _Section, targets: list[tuple[_Section, str]]) -> list[frozenset[int] | None]:
    """For each target, the destination ports its `use_backend` condition selects when it
    tests nothing but `dst_port` (inline, or one named `acl NAME dst_port N...`); None when
    it depends on something else (or is the default backend)."""
    acls: dict[str, list[str]] = {}
    for line in section.find("acl"):
        if len(line.words) > 3:
            acls.setdefault(line.words[1], []).append(" ".join(line.words[2:]))
    return [_dst_ports(condition, acls) for _, condition in targets]


def _dst_ports(condition: str, acls: dict[str, list[str]]) -> frozenset[int] | None:
    match = DST_PORT.match(condition.strip())
    if not condition or match is None:
        return None
    if match.group(1):
        return _port_numbers(match.group(1).split())
    tests = acls.get(match.group(2), [])
    ports = [_port_numbers(test.split()[1:]) if test.split()[0] == "dst_port" else None for test in tests]
    if not ports or any(found is None for found in ports):
        return None
    return frozenset(port for found in ports if found for port in found)


def _port_numbers(words: list[str]) -> frozenset[int] | None:
    return frozenset(int(word) for word in words) if words and all(word.isdigit() for word in words) else None


def _targets_for_port(targets: list[tuple[_Section, str]], ports: list[frozenset[int] | None],
                      port: int) -> list[tuple[_Section, str]]:
    """The backends a connection to `port` may reach: `use_backend` rules are tried in
    order and the first that matches wins (4.2 use_backend); a rule on other ports never
    matches, and one that surely matches hides every later rule and the default backend."""
    reachable = []
    for target, selects in zip(targets, ports):
        if selects is not None and port not in selects:
            continue
        reachable.append(target)
        if selects is not None:
            break
    return reachable


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
    for line in _server_lines(backend):
        spec, words = _server_spec(line)
        options = _ServerOptions()
        for default in defaults_line:
            options.apply(default.words[1:])
        options.apply(words)
        address, port = _server_address(spec, front.port, line.origin, problems)
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


def _server_lines(backend: _Section) -> list[_Line]:
    """`server` and `server-template` lines, in the order written."""
    return [line for line in backend.lines if line.words[0] in ("server", "server-template")]


def _server_spec(line: _Line) -> tuple[str, list[str]]:
    """The address and the options of `server NAME ADDR OPTS` or `server-template PREFIX
    NUM|RANGE FQDN[:PORT] OPTS` (5.3: every server of a template has the same address)."""
    where = 3 if line.words[0] == "server-template" else 2
    if len(line.words) <= where:
        raise ConfigReadError(line.origin.path, line.origin.line, f"'{line.words[0]}' needs a name and an address")
    return line.words[where], line.words[where + 1:]


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
