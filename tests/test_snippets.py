"""Every configuration snippet on the finding pages and in docs/guide.md, checked by the
program it configures: what a report prints is pasted into real configs.

A snippet's fence says what it is: ```haproxy, ```nginx stream|mail|http [server]
[>=VERSION], ```stunnel, ```toml (Stalwart up to 0.15), ```json (Stalwart 0.16 registry
objects), ```yaml traefik|envoy, ```caddyfile, ```sh. Placeholder certificate paths are
replaced by a throw-away certificate; nothing else in a snippet is changed, except a
directive value newer than the installed program, which must be declared with
`>=VERSION` on the fence (then the check runs with the value the installed program knows).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from proxydiag.configs.stalwart import parse_trusted_entry
from tests.daemons import lab_address

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted((ROOT / "proxydiag" / "findings").glob("PD*.md")) + [ROOT / "docs" / "guide.md"]
LANGUAGES = {"haproxy", "nginx", "stunnel", "toml", "json", "yaml", "caddyfile", "sh"}
NGINX_MODULES = Path("/usr/lib/nginx/modules")
LOOPBACK = lab_address("snippets", 1)  # this test's own loopback address (stunnel binds to port 0 on it)


@dataclass(frozen=True)
class Snippet:
    page: str
    line: int
    language: str
    context: tuple[str, ...]
    text: str

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}:{self.language}"

    def minimum_version(self) -> str | None:
        return next((word[2:] for word in self.context if word.startswith(">=")), None)


FENCE = re.compile(r"^```(\S*)[ \t]*([^\n]*)\n(.*?)^```[ \t]*$", re.M | re.S)


def extract(path: Path) -> list[Snippet]:
    text = path.read_text(encoding="utf-8")
    return [
        Snippet(path.name, text.count("\n", 0, match.start()) + 1, match.group(1), tuple(match.group(2).split()), match.group(3))
        for match in FENCE.finditer(text)
    ]


SNIPPETS = [snippet for page in PAGES for snippet in extract(page)]


def of(language: str) -> list[Snippet]:
    return [snippet for snippet in SNIPPETS if snippet.language == language]


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=60, **kwargs)


@pytest.fixture(scope="session")
def certificate(tmp_path_factory) -> Path:
    """A self-signed certificate with its key in one PEM file, for every placeholder path."""
    directory = tmp_path_factory.mktemp("certs")
    key, cert = directory / "key.pem", directory / "cert.pem"
    result = run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=mail.example.com",
                  "-keyout", str(key), "-out", str(cert)])
    assert result.returncode == 0, result.stderr
    combined = directory / "combined.pem"
    combined.write_text(key.read_text() + cert.read_text())
    combined.chmod(0o600)
    return combined


CERTIFICATE_PATH = re.compile(r"/[\w./-]+\.(?:pem|crt|key)\b")


def with_certificate(text: str, certificate: Path) -> str:
    return CERTIFICATE_PATH.sub(str(certificate), text)


def installed_version(command: list[str], pattern: str) -> tuple[int, ...]:
    result = run(command)
    match = re.search(pattern, result.stdout + result.stderr)
    assert match, f"cannot read the version of {command[0]}"
    return version_tuple(match.group(1))


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def test_every_snippet_declares_a_known_language():
    unknown = [f"{snippet.id} ({snippet.language or 'no info string'})" for snippet in SNIPPETS if snippet.language not in LANGUAGES]
    assert not unknown, unknown


def test_snippets_are_found():
    """The extraction itself: if it broke, every parametrized test below would pass vacuously."""
    assert {snippet.language for snippet in SNIPPETS} >= {"haproxy", "nginx", "stunnel", "toml", "json", "yaml", "caddyfile"}
    assert len(SNIPPETS) > 80


# --- HAProxy: wrapped in a minimal configuration, `haproxy -c` with zero-warning ------------

SECTION = re.compile(r"^(global|defaults|frontend|backend|listen)\b", re.M)
HAPROXY_PRELUDE = """\
global
    zero-warning
defaults
    mode tcp
    timeout connect 5s
    timeout client 1m
    timeout server 1m
"""


def haproxy_config(snippet: str) -> str:
    """Whole sections as they are; bare lines inside a backend (mode http when they are
    http-request rules); stub backends for names the snippet uses but does not define; a
    probe frontend when the snippet has none (haproxy -c refuses a config with no listener)."""
    if SECTION.search(snippet):
        body = snippet
    else:
        mode = "http" if re.search(r"^\s*http-", snippet, re.M) else "tcp"
        body = f"backend snippet\n    mode {mode}\n" + "".join(f"    {line.strip()}\n" for line in snippet.splitlines())
    defined = set(re.findall(r"^(?:backend|listen)\s+(\S+)", body, re.M))
    used = set(re.findall(r"\b(?:default_backend|use_backend)\s+(\S+)", body))
    stubs = "".join(f"backend {name}\n    server stub 192.0.2.1:25\n" for name in sorted(used - defined))
    probe = "" if re.search(r"^(frontend|listen)\b", body, re.M) else f"frontend snippet_probe\n    bind {LOOPBACK}:1\n    default_backend {sorted(defined)[0] if defined else 'snippet'}\n"
    return HAPROXY_PRELUDE + body.rstrip("\n") + "\n" + stubs + probe


@pytest.mark.lab
@pytest.mark.parametrize("snippet", of("haproxy"), ids=lambda snippet: snippet.id)
def test_haproxy_snippet_passes_haproxy_check(snippet, tmp_path, certificate):
    config = tmp_path / "haproxy.cfg"
    config.write_text(with_certificate(haproxy_config(snippet.text), certificate))
    result = run(["haproxy", "-c", "-f", str(config)])
    assert result.returncode == 0, f"{snippet.id}\n{config.read_text()}\n{result.stdout}{result.stderr}"


# --- nginx: in its context (stream, mail, http), `nginx -t` with the dynamic modules --------

NGINX_CONTEXTS = {"stream", "mail", "http"}
# Directive values that exist only from a given nginx version, and the value the installed
# version knows in their place (nginx 1.31.4: `proxy_protocol v2;`, src/stream/
# ngx_stream_proxy_module.c and src/mail/ngx_mail_proxy_module.c).
NGINX_NEWER_VALUES = {"1.31.4": [(re.compile(r"\bproxy_protocol\s+v2\s*;"), "proxy_protocol on;")]}


def nginx_config(snippet: Snippet, text: str, scratch: Path) -> str:
    context = next((word for word in snippet.context if word in NGINX_CONTEXTS), None)
    assert context, f"{snippet.id}: say which nginx context it belongs to (```nginx stream|mail|http)"
    if "server" in snippet.context:
        text = f"server {{\n{text}}}\n"
    temp_paths = "".join(f"    {name}_temp_path {scratch}/{name};\n" for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    prelude = temp_paths + "    access_log off;\n" if context == "http" else ""
    modules = "".join(f"load_module {NGINX_MODULES}/ngx_{name}_module.so;\n" for name in ("stream", "mail"))
    return f"{modules}pid {scratch}/nginx.pid;\nerror_log stderr;\nevents {{}}\n{context} {{\n{prelude}{text}}}\n"


def downgraded(snippet: Snippet, installed: tuple[int, ...]) -> str:
    """The snippet as the installed nginx can check it; only declared newer values change."""
    minimum = snippet.minimum_version()
    if minimum is None or installed >= version_tuple(minimum):
        return snippet.text
    text = snippet.text
    for pattern, replacement in NGINX_NEWER_VALUES.get(minimum, []):
        text = pattern.sub(replacement, text)
    assert text != snippet.text, f"{snippet.id}: declares nginx >= {minimum} but uses none of that version's values"
    return text


@pytest.mark.lab
@pytest.mark.parametrize("snippet", of("nginx"), ids=lambda snippet: snippet.id)
def test_nginx_snippet_passes_nginx_t(snippet, tmp_path, certificate):
    installed = installed_version(["nginx", "-v"], r"nginx/([\d.]+)")
    config = tmp_path / "nginx.conf"
    config.write_text(with_certificate(nginx_config(snippet, downgraded(snippet, installed), tmp_path), certificate))
    result = run(["nginx", "-t", "-q", "-p", str(tmp_path), "-e", "stderr", "-c", str(config)])
    assert result.returncode == 0, f"{snippet.id}\n{config.read_text()}\n{result.stderr}"


# --- stunnel: its own configuration check (it logs "Configuration successful" or fails) -----

def stunnel_check(config: Path) -> tuple[bool, str]:
    """stunnel 5.68 has no test-only switch: run it in the foreground, wait for its verdict
    on the configuration, then stop it (its listeners are moved to port 0 on our address)."""
    process = subprocess.Popen(["stunnel", str(config)], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert process.stderr is not None
    log, deadline = [], time.monotonic() + 30
    try:
        for line in process.stderr:
            log.append(line)
            if "Configuration successful" in line or "Configuration failed" in line or time.monotonic() > deadline:
                break
    finally:
        process.terminate()
        process.wait(timeout=10)
    text = "".join(log)
    return "Configuration successful" in text, text


def stunnel_config(snippet: str, scratch: Path) -> str:
    body = re.sub(r"^(\s*accept\s*=\s*).*$", rf"\g<1>{LOOPBACK}:0", snippet, flags=re.M)
    return f"foreground = yes\npid = {scratch}/stunnel.pid\n{body}"


@pytest.mark.lab
@pytest.mark.parametrize("snippet", of("stunnel"), ids=lambda snippet: snippet.id)
def test_stunnel_snippet_passes_stunnel_configuration(snippet, tmp_path, certificate):
    config = tmp_path / "stunnel.conf"
    config.write_text(with_certificate(stunnel_config(snippet.text, tmp_path), certificate))
    ok, log = stunnel_check(config)
    assert ok, f"{snippet.id}\n{config.read_text()}\n{log}"


# --- Stalwart up to 0.15: TOML keys Stalwart reads ------------------------------------------
# From v0.15.5: crates/common/src/config/server/listener.rs (server.listener.<id>.bind,
# .protocol, .tls.*, .socket.*, .proxy.trusted-networks, .max-connections, and the
# server-wide server.proxy.trusted-networks, server.socket.*, server.tls.*),
# crates/common/src/config/jmap/settings.rs (http.use-x-forwarded),
# crates/common/src/listener/blocked.rs (server.allowed-ip.<address>).

STALWART_015_KEYS = [
    r"server\.proxy\.trusted-networks(\.\d+)?",
    r"server\.allowed-ip\.[^.]+(\.[^.]+)*",
    r"server\.hostname",
    r"server\.max-connections",
    r"server\.(socket|tls)\.[a-z-]+",
    r"server\.listener\.[^.]+\.(bind(\.\d+)?|protocol|max-connections)",
    r"server\.listener\.[^.]+\.tls\.(implicit|enable|timeout|ignore-client-order|disable-protocols(\.\d+)?|disable-ciphers(\.\d+)?)",
    r"server\.listener\.[^.]+\.socket\.(reuse-addr|reuse-port|send-buffer-size|recv-buffer-size|tos|ttl|backlog|linger|nodelay)",
    r"server\.listener\.[^.]+\.proxy\.trusted-networks(\.\d+)?",
    r"http\.use-x-forwarded",
]
STALWART_015_PROTOCOLS = {"smtp", "lmtp", "imap", "http", "https", "managesieve", "pop3"}


def flat_keys(value, prefix: str = "") -> dict[str, object]:
    if isinstance(value, dict):
        return {key: item for name, child in value.items() for key, item in flat_keys(child, f"{prefix}{name}.").items()}
    if isinstance(value, list):
        return {key: item for index, child in enumerate(value) for key, item in flat_keys(child, f"{prefix}{index}.").items()}
    return {prefix[:-1]: value}


# stalwartlabs/proxy v1.0.0 src/config/mod.rs: the tables and keys its TOML has (```toml stalwart-proxy).
STALWART_PROXY_KEYS = [r"listener\.[\w-]+\.(protocol|bind|tls|proxy_protocol|proxy_trusted|forwarded|max_connections)",
                       r"destination\.[\w-]+\.(host|proxy_protocol|forwarding|forwarded|source_ips|tls_server_name)",
                       r"destination\.[\w-]+\.protocol\.(smtp|submission|lmtp|imap|pop3|managesieve|http)\.(port|tls|forwarding)",
                       r"routing\.(default_destination|smtp_passthrough_destination)"]


def stalwart_snippets(kind: str) -> list[Snippet]:
    return [snippet for snippet in of("toml") if ("stalwart-proxy" in snippet.context) == (kind == "stalwart-proxy")]


@pytest.mark.parametrize("snippet", stalwart_snippets("stalwart-proxy"), ids=lambda snippet: snippet.id)
def test_stalwart_proxy_snippet_uses_keys_it_reads(snippet):
    from proxydiag.configs import stalwart_proxy

    flat = flat_keys(tomllib.loads(snippet.text))
    unknown = [key for key in flat if not any(re.fullmatch(rf"{pattern}(\.\d+)?", key) for pattern in STALWART_PROXY_KEYS)]
    assert not unknown, f"{snippet.id}: keys stalwartlabs/proxy does not read: {unknown}"
    stalwart_proxy.parse(snippet.text, snippet.id)  # and the reader takes it


@pytest.mark.parametrize("snippet", stalwart_snippets("stalwart"), ids=lambda snippet: snippet.id)
def test_stalwart_toml_snippet_uses_keys_stalwart_reads(snippet):
    flat = flat_keys(tomllib.loads(snippet.text))
    unknown = [key for key in flat if not any(re.fullmatch(pattern, key) for pattern in STALWART_015_KEYS)]
    assert not unknown, f"{snippet.id}: keys Stalwart 0.15 does not read: {unknown}"
    for key, value in flat.items():
        if key.endswith(".protocol"):
            assert str(value).lower() in STALWART_015_PROTOCOLS, f"{snippet.id}: {key} = {value!r}"
        if re.search(r"trusted-networks(\.\d+)?$", key):
            assert parse_trusted_entry(str(value), key).problem is None, f"{snippet.id}: {key} = {value!r}"
        if re.search(r"\.bind(\.\d+)?$", key):
            assert re.fullmatch(r"(\[[0-9a-fA-F:.]+\]|[0-9.]+):\d+", str(value)), f"{snippet.id}: {key} must be a full socket address"


# --- Stalwart 0.16: registry objects ------------------------------------------------------
# crates/registry/src/schema/structs.rs (property names of NetworkListener, SystemSettings,
# Http), schema/enums_impl.rs (protocol values), types/map.rs (every set is a JSON map of
# string to true; an array is "Invalid value for object property").

STALWART_016_PROPERTIES = {
    "NetworkListener": {"name", "bind", "protocol", "overrideProxyTrustedNetworks", "useTls", "tlsImplicit", "tlsTimeout",
                        "tlsDisableCipherSuites", "tlsDisableProtocols", "tlsIgnoreClientOrder", "maxConnections",
                        "socketBacklog", "socketNoDelay", "socketReceiveBufferSize", "socketReuseAddress",
                        "socketReusePort", "socketSendBufferSize", "socketTosV4", "socketTtl"},
    "SystemSettings": {"defaultHostname", "proxyTrustedNetworks", "maxConnections", "threadPoolSize"},
    "Http": {"useXForwarded", "enableHsts", "usePermissiveCors", "redirectRoot"},
}
STALWART_016_SETS = {"bind", "overrideProxyTrustedNetworks", "proxyTrustedNetworks", "tlsDisableCipherSuites", "tlsDisableProtocols"}
STALWART_016_PROTOCOLS = {"smtp", "lmtp", "http", "imap", "pop3", "manageSieve"}


def registry_objects(document) -> list[dict]:
    if isinstance(document, list):
        return [item for element in document for item in registry_objects(element)]
    assert isinstance(document, dict), "a registry object or a list of them"
    return [document]


@pytest.mark.parametrize("snippet", of("json"), ids=lambda snippet: snippet.id)
def test_stalwart_json_snippet_has_the_registry_shapes(snippet):
    for obj in registry_objects(json.loads(snippet.text)):
        kinds = [kind for kind, names in STALWART_016_PROPERTIES.items() if set(obj) <= names]
        assert kinds, f"{snippet.id}: {sorted(obj)} are not the properties of one registry object"
        for name, value in obj.items():
            if name in STALWART_016_SETS:
                assert isinstance(value, dict) and all(item is True for item in value.values()), (
                    f"{snippet.id}: {name} is a set, a JSON map of string to true (registry/src/types/map.rs)"
                )
        if "protocol" in obj:
            assert obj["protocol"] in STALWART_016_PROTOCOLS, f"{snippet.id}: protocol {obj['protocol']!r}"
        for name in ("proxyTrustedNetworks", "overrideProxyTrustedNetworks"):
            for entry in obj.get(name, {}):
                assert parse_trusted_entry(entry, name).problem is None, f"{snippet.id}: {entry!r}"


# --- Traefik and Envoy YAML: only documented keys ---------------------------------------------
# A tree of the keys these pages may use; "*" stands for a name the user chooses. Sources:
# Traefik reference, doc.traefik.io/traefik/reference/routing-configuration/tcp/
# (router, service, serverstransport) and .../install-configuration/entrypoints/ (entry
# points: address, proxyProtocol.trustedIPs/insecure, forwardedHeaders.trustedIPs/insecure);
# Envoy API v3: config.cluster.v3.Cluster (transport_socket, upstream_bind_config,
# health_checks), config.core.v3.HealthCheck (TcpHealthCheck.proxy_protocol_config, Envoy
# PR #31691), extensions.transport_sockets.proxy_protocol.v3.ProxyProtocolUpstreamTransport,
# config.core.v3.ProxyProtocolConfig (added_tlvs: TlvEntry, whose `value` is bytes, base64 in
# YAML), config.listener.v3.ListenerFilter.

LEAF = None
TRAEFIK_TLS_ROUTER = {"passthrough": LEAF, "certResolver": LEAF, "options": LEAF}
TRAEFIK = {
    "tcp": {
        "routers": {"*": {"entryPoints": LEAF, "rule": LEAF, "ruleSyntax": LEAF, "priority": LEAF, "service": LEAF,
                          "middlewares": LEAF, "tls": TRAEFIK_TLS_ROUTER}},
        "services": {"*": {"loadBalancer": {"servers": [{"address": LEAF, "tls": LEAF}], "serversTransport": LEAF,
                                            "proxyProtocol": {"version": LEAF}, "terminationDelay": LEAF}}},
        "serversTransports": {"*": {"proxyProtocol": {"version": LEAF}, "dialTimeout": LEAF, "dialKeepAlive": LEAF,
                                    "terminationDelay": LEAF,
                                    "tls": {"serverName": LEAF, "insecureSkipVerify": LEAF, "rootCAs": LEAF}}},
    },
    "entryPoints": {"*": {"address": LEAF, "proxyProtocol": {"trustedIPs": LEAF, "insecure": LEAF},
                          "forwardedHeaders": {"trustedIPs": LEAF, "insecure": LEAF}}},
}
ENVOY_SOCKET_ADDRESS = {"address": LEAF, "port_value": LEAF}
ENVOY_PROXY_PROTOCOL_CONFIG = {"version": LEAF, "pass_through_tlvs": {"match_type": LEAF, "tlv_type": LEAF},
                               "added_tlvs": [{"type": LEAF, "value": LEAF}]}
ENVOY_TRANSPORT_SOCKET: dict = {"name": LEAF}
ENVOY_TRANSPORT_SOCKET["typed_config"] = {"@type": LEAF, "config": ENVOY_PROXY_PROTOCOL_CONFIG,
                                          "transport_socket": ENVOY_TRANSPORT_SOCKET}
ENVOY = {
    "transport_socket": ENVOY_TRANSPORT_SOCKET,
    "upstream_bind_config": {"source_address": ENVOY_SOCKET_ADDRESS},
    "config": ENVOY_PROXY_PROTOCOL_CONFIG,
    "health_checks": [{"timeout": LEAF, "interval": LEAF, "unhealthy_threshold": LEAF, "healthy_threshold": LEAF,
                       "tcp_health_check": {"send": LEAF, "receive": LEAF, "proxy_protocol_config": ENVOY_PROXY_PROTOCOL_CONFIG}}],
    "listener_filters": [{"name": LEAF, "typed_config": {"@type": LEAF}}],
}
YAML_SCHEMAS = {"traefik": TRAEFIK, "envoy": ENVOY}


def undocumented_keys(value, schema, where: str = "") -> list[str]:
    if schema is LEAF:
        return []
    if isinstance(schema, list):
        assert isinstance(value, list), f"{where} should be a list"
        return [key for item in value for key in undocumented_keys(item, schema[0], f"{where}[]")]
    assert isinstance(value, dict), f"{where} should be a map"
    found = []
    for key, item in value.items():
        child = schema.get(key, schema.get("*", "missing"))
        if child == "missing":
            found.append(f"{where}.{key}")
        else:
            found.extend(undocumented_keys(item, child, f"{where}.{key}"))
    return found


@pytest.mark.parametrize("snippet", of("yaml"), ids=lambda snippet: snippet.id)
def test_yaml_snippet_parses_and_uses_documented_keys(snippet):
    kind = next((word for word in snippet.context if word in YAML_SCHEMAS), None)
    assert kind, f"{snippet.id}: say whose configuration it is (```yaml traefik|envoy)"
    unknown = undocumented_keys(yaml.safe_load(snippet.text), YAML_SCHEMAS[kind])
    assert not unknown, f"{snippet.id}: keys not in the {kind} reference: {unknown}"



def tlv_values(value) -> list:
    """Every `added_tlvs[].value` in a parsed snippet."""
    if isinstance(value, dict):
        own = [entry.get("value") for entry in value.get("added_tlvs", []) if isinstance(entry, dict)]
        return own + [found for child in value.values() for found in tlv_values(child)]
    return [found for child in value for found in tlv_values(child)] if isinstance(value, list) else []


@pytest.mark.parametrize("snippet", [s for s in of("yaml") if "envoy" in s.context], ids=lambda snippet: snippet.id)
def test_envoy_snippet_tlv_values_are_base64(snippet):
    """TlvEntry.value is `bytes`: proto3's JSON mapping (and Envoy's YAML) wants base64."""
    import base64

    for value in tlv_values(yaml.safe_load(snippet.text)):
        assert isinstance(value, str) and base64.b64decode(value, validate=True), f"{snippet.id}: {value!r}"

# --- Caddyfile: layer4 lives inside the global option; braces balance ----------------------

LAYER4_WORDS = re.compile(r"^\s*(layer4|proxy|upstream|route)\b", re.M)


def balanced(text: str) -> bool:
    depth = 0
    for char in text:
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


@pytest.mark.parametrize("snippet", of("caddyfile"), ids=lambda snippet: snippet.id)
def test_caddyfile_snippet_is_well_formed(snippet):
    text = snippet.text
    assert balanced(text), f"{snippet.id}: braces do not balance"
    if LAYER4_WORDS.search(text) and "reverse_proxy" not in text:
        assert re.match(r"\{\s*\n\s*layer4\s*\{", text), (
            f"{snippet.id}: caddy-l4 servers must sit inside the global option: {{ layer4 {{ :25 {{ ... }} }} }}"
        )


# --- Shell commands: bash accepts them -------------------------------------------------------

@pytest.mark.parametrize("snippet", of("sh"), ids=lambda snippet: snippet.id)
def test_shell_snippet_parses(snippet):
    result = run(["bash", "-n"], input=snippet.text)
    assert result.returncode == 0, f"{snippet.id}\n{result.stderr}"


def test_the_checkers_have_their_programs():
    """Under CI a missing program fails here rather than making every check error out."""
    missing = [name for name in ("haproxy", "nginx", "stunnel", "openssl") if shutil.which(name) is None]
    missing += [str(NGINX_MODULES / f"ngx_{name}_module.so") for name in ("stream", "mail")
                if not (NGINX_MODULES / f"ngx_{name}_module.so").exists()]
    assert not missing, f"install {missing} (tests/run.sh lists the packages)"
    assert sys.version_info >= (3, 11)
