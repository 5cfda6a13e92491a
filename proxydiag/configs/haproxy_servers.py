"""HAProxy's `server` lines -> Routes: the options each server line sets over its
`default-server` lines, its address, and the health check it runs (doc/configuration.txt
in haproxy/haproxy, 2.6: 5.2 "Server and default-server options", 5.3 "Server IP address
resolution", for `server-template`)."""

from __future__ import annotations

from dataclasses import dataclass

from proxydiag.configs.haproxy_sections import Line, Section
from proxydiag.configs.model import (
    ConfigReadError,
    FrontListener,
    HeaderVersion,
    HealthCheck,
    Origin,
    Problem,
    Route,
    split_host_port,
)

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
                self.source = address_only(value)
            if word in SERVER_VALUE_OPTIONS:
                index += 1
            index += 1


def server_routes(front: FrontListener, backend: Section, frontend: Section, waits: Origin | None,
            problems: list[Problem]) -> list[Route]:
    routes = []
    defaults_line = [line for section in (backend.defaults, backend) if section is not None
                     for line in section.find("default-server")]
    source_line = backend.last("source")
    for line in server_lines(backend):
        spec, words = _server_spec(line)
        options = _ServerOptions()
        for default in defaults_line:
            options.apply(default.words[1:])
        options.apply(words)
        address, port = _server_address(spec, front.port, line.origin, problems)
        if address is None:
            continue
        if options.check and port is None and options.check_port is None and not address.startswith("_"):  # SRV: ports resolved
            _refused_check(line.origin, problems)
        source = options.source or (address_only(source_line.words[1]) if source_line and len(source_line.words) > 1 else None)
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


def server_lines(backend: Section) -> list[Line]:
    """`server` and `server-template` lines, in the order written."""
    return [line for line in backend.lines if line.words[0] in ("server", "server-template")]


def _server_spec(line: Line) -> tuple[str, list[str]]:
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


def _refused_check(origin: Origin, problems: list[Problem]) -> None:
    """HAProxy (2.6.12 seen) refuses to start: "server has neither service port nor check port"."""
    problem = Problem("HAProxy refuses `check` on a server without a port (\"has neither service port nor check "
                      "port\"): write the server's port, or `check port N`", origin)
    if problem not in problems:  # the same line, once per frontend port that reaches it
        problems.append(problem)


def _health_check(options: _ServerOptions, origin: Origin) -> HealthCheck | None:
    if not options.check:
        return None
    own_target = options.check_port is not None or options.check_addr is not None
    sends = options.check_send_proxy or (options.sends != "none" and not own_target)
    return HealthCheck(port=options.check_port, sends_header=sends, local=sends and options.sends == "v2", origin=origin)


def address_only(text: str) -> str:
    parsed = split_host_port(text)
    return parsed[0] if parsed else text
