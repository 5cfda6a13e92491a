"""Seed corpora for the fuzz targets, taken from the captures in captures/ (their
headers, both sides of every connection, the capture files themselves) and from the
Stalwart configurations the tests use."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

from proxydiag.capture.flows import FlowTable, TrackedConnection
from proxydiag.capture.sources import open_capture
from proxydiag.parsers import proxy_protocol
from tests.fuzz.targets import CONFIG_NAMES, config_input, conversation_input

REPO = Path(__file__).resolve().parents[2]
CAPTURES = REPO / "captures"
CONFIG_SEEDS = REPO / "tests" / "configs_real"  # configurations modelled on real deployments
SMALL_CAPTURE = 64 << 10

STALWART_SEEDS = [
    b'[server.listener.smtp]\nbind = ["0.0.0.0:10025"]\nprotocol = "smtp"\n'
    b'[server.listener.smtp.proxy]\ntrusted-networks = ["10.0.0.0/8"]\n',
    b'[server.proxy]\ntrusted-networks = {"192.0.2.0/24" = true}\n[server.listener.imaps]\nbind = "[::]:10993"\n'
    b'protocol = "imap"\ntls.implicit = true\n',
    b'[{"@type": "NetworkListener", "name": "smtp", "bind": ["0.0.0.0:10025"], "protocol": "smtp", '
    b'"proxy": {"trustedNetworks": ["10.0.0.0/8"]}}]\n',
]


# The kinds tests/configs_real has none of.
CONFIG_SEEDS_MORE = [
    ("stunnel.conf", b"[imaps]\naccept = 993\nconnect = 127.0.0.1:10143\nprotocol = proxy\ncert = /etc/ssl/mail.pem\n"),
    ("Caddyfile", b"{\n\tlayer4 {\n\t\t:25 {\n\t\t\troute {\n\t\t\t\tproxy {\n\t\t\t\t\tproxy_protocol v2\n"
                  b"\t\t\t\t\tupstream 127.0.0.1:10025\n\t\t\t\t}\n\t\t\t}\n\t\t}\n\t}\n}\n"),
    ("caddy.json", b'{"apps": {"layer4": {"servers": {"smtp": {"listen": [":25"], "routes": [{"handle": [{"handler": '
                   b'"proxy", "proxy_protocol": "v2", "upstreams": [{"dial": ["127.0.0.1:10025"]}]}]}]}}}}}'),
    ("envoy.yaml", b"static_resources:\n  listeners:\n  - name: smtp\n    address:\n      socket_address: {address: 0.0.0.0, "
                   b"port_value: 25}\n    filter_chains:\n    - filters:\n      - name: envoy.filters.network.tcp_proxy\n"
                   b"        typed_config:\n          '@type': type.googleapis.com/envoy.extensions.filters.network."
                   b"tcp_proxy.v3.TcpProxy\n          stat_prefix: smtp\n          cluster: stalwart\n"),
    ("service.yaml", b"apiVersion: v1\nkind: Service\nmetadata:\n  name: mail\n  annotations:\n"
                     b"    service.beta.kubernetes.io/aws-load-balancer-proxy-protocol: '*'\nspec:\n  type: LoadBalancer\n"
                     b"  ports:\n  - name: smtp\n    port: 25\n    targetPort: 10025\n"),
]


# Real secret-bearing directives of each format (with a password of their own: the target
# plants SECRET after them, and a seed holding it would let the fuzzer move it).
CONFIG_SEEDS_SECRETS = [
    ("haproxy.cfg", b"global\n    log stdout local0\ndefaults\n    mode tcp\n    timeout connect 5s\n"
                    b"userlist admins\n    user ops password $6$salt$seed-password-hash\n"
                    b"listen stats\n    mode http\n    bind :8404\n    stats enable\n    stats auth admin:seed-password\n"
                    b"frontend smtp\n    bind :25\n    default_backend stalwart_smtp\n"
                    b"backend stalwart_smtp\n    server s1 127.0.0.1:10025 send-proxy-v2\n"),
    ("nginx.conf", b"stream {\n    server {\n        listen 25;\n        proxy_pass 127.0.0.1:10025;\n"
                   b"        proxy_protocol on;\n    }\n}\nhttp {\n    server {\n        listen 8080;\n"
                   b"        location / {\n            proxy_set_header Authorization \"Basic c2VlZDpzZWVk\";\n"
                   b"            proxy_pass http://user:seed-password@127.0.0.1:9000;\n        }\n    }\n}\n"),
    ("stunnel.conf", b"; PSK and key passphrase kept elsewhere\n[imaps]\naccept = 993\nconnect = 127.0.0.1:10143\n"
                     b"protocol = proxy\ncert = /etc/ssl/mail.pem\nkey = /etc/ssl/private/mail.key\n"
                     b"PSKsecrets = /etc/stunnel/psk.txt\n"),
    ("traefik.yml", b"entryPoints:\n  smtp:\n    address: \":25\"\ntcp:\n  routers:\n    smtp:\n      entryPoints: [smtp]\n"
                    b"      rule: HostSNI(`*`)\n      service: smtp\n  services:\n    smtp:\n      loadBalancer:\n"
                    b"        proxyProtocol:\n          version: 2\n        servers:\n        - address: 127.0.0.1:10025\n"
                    b"http:\n  middlewares:\n    auth:\n      basicAuth:\n        users:\n        - \"admin:$apr1$seed$hash\"\n"),
    ("traefik.toml", b'[entryPoints.smtp]\naddress = ":25"\n[tcp.routers.smtp]\nentryPoints = ["smtp"]\n'
                     b'rule = "HostSNI(`*`)"\nservice = "smtp"\n[tcp.services.smtp.loadBalancer.proxyProtocol]\n'
                     b'version = 2\n[[tcp.services.smtp.loadBalancer.servers]]\naddress = "127.0.0.1:10025"\n'
                     b'[http.middlewares.auth.basicAuth]\nusers = ["admin:$apr1$seed$hash"]\n'),
    ("Caddyfile", b"example.com {\n\tbasic_auth {\n\t\tadmin $2a$14$seedhash\n\t}\n\treverse_proxy 127.0.0.1:8080 {\n"
                  b"\t\theader_up Authorization \"Bearer seed-token\"\n\t}\n}\n"),
    ("caddy.json", b'{"apps": {"http": {"servers": {"srv0": {"listen": [":443"], "routes": [{"handle": [{"handler": '
                   b'"authentication", "providers": {"http_basic": {"accounts": [{"username": "admin", "password": '
                   b'"$2a$14$seedhash"}]}}}, {"handler": "reverse_proxy", "upstreams": [{"dial": "127.0.0.1:8080"}]}]}]}}}}}'),
    ("envoy.yaml", b"static_resources:\n  secrets:\n  - name: mail_cert\n    tls_certificate:\n"
                   b"      certificate_chain: {filename: /etc/ssl/mail.pem}\n"
                   b"      private_key: {inline_string: \"-----BEGIN PRIVATE KEY-----seed-----END PRIVATE KEY-----\"}\n"
                   b"  listeners:\n  - name: smtp\n    address:\n      socket_address: {address: 0.0.0.0, port_value: 25}\n"),
    ("service.yaml", b"apiVersion: v1\nkind: Secret\nmetadata:\n  name: mail-tls\nstringData:\n  password: seed-password\n"
                     b"---\napiVersion: v1\nkind: Service\nmetadata:\n  name: mail\n  annotations:\n"
                     b"    service.beta.kubernetes.io/aws-load-balancer-proxy-protocol: '*'\nspec:\n  type: LoadBalancer\n"
                     b"  ports:\n  - name: smtp\n    port: 25\n    targetPort: 10025\n"),
    ("compose.yaml", b"services:\n  traefik:\n    image: traefik:v3\n    environment:\n      - CF_API_TOKEN=seed-token\n"
                     b"    labels:\n      - \"traefik.http.middlewares.auth.basicauth.users=admin:$$apr1$$seed\"\n"
                     b"  stalwart:\n    image: stalwartlabs/stalwart\n    ports:\n      - \"25:10025\"\n"
                     b"    environment:\n      ADMIN_SECRET: seed-password\n"),
]


# Log lines in each format the readers know (tests/test_logs.py records the real daemons').
LOG_SEEDS = [
    b'2026-11-12T10:00:00Z WARN Proxy protocol error (network.proxy-error) listenerId = "imaps", localIp = 10.0.0.3, '
    b'localPort = 10993, tls = true, reason = "end of stream"\n'
    b'2026-11-12T10:00:01Z INFO SMTP connection started (smtp.connection-start) listenerId = "smtp", localPort = 10025, '
    b"remoteIp = 10.0.0.2, remotePort = 40001\n",
    b'{"createdAt": "2026-11-12T10:00:00Z", "type": "network.proxy-error", "data": {"listenerId": "smtp", '
    b'"localPort": 10025, "reason": "invalid proxy header"}}\n',
    b"2026/12/02 11:20:06 [error] 16536#16536: *1 broken header: \"EHLO x\r\nAUTH LOGIN\r\n\" while reading PROXY "
    b"protocol, client: 127.50.0.3, server: 127.50.0.1:22026\n",
    b"<134>Dec  2 11:20:35 haproxy[1]: 127.50.0.3:54211 [02/Dec/2026:11:20:35.953] fe_smtp/1: Received something which "
    b"does not look like a PROXY protocol header\n",
    b'{"__REALTIME_TIMESTAMP": "1796210435953000", "SYSLOG_IDENTIFIER": "nginx", "MESSAGE": "nginx: [error] 7#7: *3 '
    b'broken header: \\"GET / HTTP/1.1\\" while reading PROXY protocol, client: 10.0.0.9, server: 0.0.0.0:25"}\n',
]


def connections() -> list[TrackedConnection]:
    found: list[TrackedConnection] = []
    table = FlowTable(found.append)
    for index, path in enumerate(sorted(CAPTURES.glob("*.pcap*"))):
        with open_capture(str(path)) as reader:
            table.consume(index, reader)
        table.flush()
    return found


def _split_input(first: bytes, second: bytes) -> bytes:
    return struct.pack("!H", len(first)) + first + second


def seeds(target: str) -> list[bytes]:
    if target == "pcap":
        return [p.read_bytes()[:SMALL_CAPTURE] for p in sorted(CAPTURES.glob("*.pcap"))]
    if target == "pcapng":
        return [p.read_bytes()[:SMALL_CAPTURE] for p in sorted(CAPTURES.glob("*.pcapng"))]
    if target == "stalwart":
        return list(STALWART_SEEDS)
    if target == "logs":
        return list(LOG_SEEDS)
    if target == "proxy_config":
        files = [config_input(_config_name(path), path.read_bytes()) for path in sorted(CONFIG_SEEDS.rglob("*"))
                 if path.is_file() and path.suffix not in (".toml", ".json")]  # those are Stalwart's
        proxies = [config_input("proxy.toml", path.read_bytes()) for path in sorted(CONFIG_SEEDS.glob("stalwart-proxy*.toml"))]
        return files + proxies + [config_input(name, text) for name, text in CONFIG_SEEDS_MORE + CONFIG_SEEDS_SECRETS]
    tracked = connections()
    headers = []
    for conn in tracked:
        result = proxy_protocol.parse(conn.client.data)
        if result.version is not None:
            headers.append(conn.client.data[: result.length or 120])
    if target == "proxy":
        return headers
    if target == "hexdump":
        return [_xxd(header) for header in headers] + [header.hex().encode() for header in headers]
    if target == "report":
        found = []
        for conn in tracked:
            result = proxy_protocol.parse(conn.client.data)
            header = conn.client.data[: result.length]
            found.append(conversation_input(conn.server_port, header, conn.client.data[result.length :][:2048],
                                            conn.server.data[:2048]))
        return found
    if target == "probe_replies":  # a port's index, then the server's bytes in chunks
        return [bytes([index % 9]) + b"\xfe".join(_segments(conn.server.data[:4096])) for index, conn in enumerate(tracked)
                if conn.server.data]
    if target == "recognise":
        return [_split_input(struct.pack("!H", conn.server_port) + _application(conn)[:4096], conn.server.data[:4096])
                for conn in tracked]
    return [_split_input(_application(conn)[:4096], conn.server.data[:4096]) for conn in tracked]


def _segments(data: bytes) -> list[bytes]:
    """A server's bytes as the lines it sent (each its own chunk)."""
    return data.splitlines(keepends=True) or [data]


def _application(conn: TrackedConnection) -> bytes:
    result = proxy_protocol.parse(conn.client.data)
    return conn.client.data[result.length :]


def _xxd(data: bytes) -> bytes:
    rows = []
    for offset in range(0, len(data), 16):
        row = data[offset : offset + 16]
        words = " ".join(row[i : i + 2].hex() for i in range(0, len(row), 2))
        text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in row)
        rows.append(f"{offset:08x}: {words:<39}  {text}")
    return ("\n".join(rows) + "\n").encode()


def write_corpus(target: str, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for seed in seeds(target):
        (directory / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
    return directory


def _config_name(path: Path) -> str:
    """The name in CONFIG_NAMES a seed file goes by (its kind, by its own name)."""
    name = path.name.lower()
    for candidate in CONFIG_NAMES:
        stem = candidate.split(".")[0].lower()
        if stem in name or (candidate.endswith(".cfg") and name.endswith(".cfg")) or (candidate.endswith(".conf") and name.endswith(".conf")):
            return candidate
    return "compose.yaml" if "compose" in name else CONFIG_NAMES[0]
