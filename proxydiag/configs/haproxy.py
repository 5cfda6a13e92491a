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

Here: the reader's entry points, the listeners and the way from a frontend to its
backends; haproxy_sections.py splits lines and sections, haproxy_servers.py reads the
`server` lines into routes.
"""

from __future__ import annotations

import re

from proxydiag.configs.haproxy_sections import Line, Section, group_files, read_sections
from proxydiag.configs.haproxy_servers import server_lines, server_routes
from proxydiag.configs.model import (
    ConfigReadError,
    FrontListener,
    Origin,
    Problem,
    ProxyConfig,
    Route,
    VersionFloor,
    read_text,
)

# Keywords only some HAProxy versions accept, and the first release that does: each is in that
# release's doc/configuration.txt and src/server.c and in no release before (haproxy/haproxy
# tags): `proxy-v2-options` from 1.9 (commit f643b8042 "MINOR: introduce proxy-v2-options for
# send-proxy-v2", first in v1.9-dev1; 1.8 refuses it), `set-proxy-v2-tlv-fmt(TYPE)` from 2.9.
KEYWORDS_SINCE = {"proxy-v2-options": "1.9", "set-proxy-v2-tlv-fmt": "2.9"}

REQUEST_BUFFER_FETCH = re.compile(r"\breq[._](?!hdr)[a-z_.]+|\breq_ssl_sni\b")


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



def parse_files(files: list[tuple[str, str]]) -> ProxyConfig:
    """Files read in order as one configuration (named after the first)."""
    sections = read_sections(files)
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
                routes.extend(server_routes(front, target, section, waits, problems))
    return ProxyConfig("haproxy", files[0][0], tuple(listeners), tuple(routes), tuple(problems), version_floor(sections))


def version_floor(sections: list[Section]) -> VersionFloor | None:
    """HAProxy is at least the newest release whose own keyword the configuration uses."""
    found = [VersionFloor(since, line.origin) for section in sections for line in section.lines for word in line.words
             if (since := KEYWORDS_SINCE.get(word.split("(", 1)[0])) is not None]
    return max(found, key=lambda floor: tuple(int(part) for part in floor.version.split(".")), default=None)


# --- front listeners ---------------------------------------------------------------------


def _front_listeners(section: Section) -> list[FrontListener]:
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


def _backends_of(section: Section, backends: dict[str, Section], problems: list[Problem]):
    """(backend, the condition that selects it) for every backend the frontend may use."""
    targets: list[tuple[Section, str]] = []
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
    if section.kind == "listen" and server_lines(section):
        targets.append((section, ""))
    return targets


DST_PORT = re.compile(r"^(?:if\s+)?(?:\{\s*dst_port\s+(\d+(?:\s+\d+)*)\s*\}|(\S+))$")


def _port_conditions(section: Section, targets: list[tuple[Section, str]]) -> list[frozenset[int] | None]:
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


def _targets_for_port(targets: list[tuple[Section, str]], ports: list[frozenset[int] | None],
                      port: int) -> list[tuple[Section, str]]:
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


def _backend_named(name: str, line: Line, backends: dict[str, Section], problems: list[Problem]) -> Section | None:
    if "%[" in name:
        problems.append(Problem(f"backend chosen at run time ({name}): its servers are not followed", line.origin))
        return None
    if name not in backends:
        raise ConfigReadError(line.origin.path, line.origin.line, f"unable to find the backend '{name}'")
    return backends[name]


def _waits_for_client(front: Section, conditions: list[str]) -> Origin | None:
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

