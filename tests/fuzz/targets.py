"""Fuzz targets: one per parser, and one that drives whole small captures through every
report. Each target takes bytes and either returns or raises AssertionError (a property
broke) or any other exception (a crash). They run under atheris (tests/fuzz/fuzz.py)
and, bounded, under pytest (tests/test_fuzz.py)."""

from __future__ import annotations

import hashlib
import io
import ipaddress
import json
import os
import re
import struct
import tempfile
import time
import zlib
from pathlib import Path

from proxydiag.capture.sources import CaptureError, read_records
from proxydiag.configs.stalwart import ConfigError
from proxydiag.configs.stalwart import load as load_stalwart
from proxydiag.parsers import proxy_protocol
from proxydiag.parsers.protocols import RECOGNISERS, recognise
from proxydiag.parsers.protocols.tls import read_tls
from proxydiag.parsers.userinput import InputError, bytes_from_input
from proxydiag.pipeline.check import check_configurations

SECRET = "Zq7-s3cret-PW"  # a password no report may ever show, as text or as hex
CLIENT = ("203.0.113.77", 40123)
SERVER = ("198.51.100.25", 10025)
# Terminal control left in a report: anything but newline, and ESC only as an SGR colour.
_SGR = re.compile(r"\x1b\[[0-9;]*m")
_RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def _split(data: bytes) -> tuple[bytes, bytes]:
    """Two byte strings from one: a 2-byte length, then the first, then the rest."""
    if len(data) < 2:
        return data, b""
    cut = struct.unpack_from("!H", data)[0] % (len(data) - 1)
    return data[2 : 2 + cut], data[2 + cut :]


# --- parsers ---------------------------------------------------------------------------


def proxy_header(data: bytes) -> None:
    result = proxy_protocol.parse(data)
    document = result.to_dict(len(data))
    json.dumps(document)
    assert result.length <= len(data) or result.incomplete is False
    if result.header is not None:
        assert len(result.header.tlvs) <= proxy_protocol.MAX_TLVS
    if result.valid:  # what parses cleanly rebuilds to a header that parses the same
        assert proxy_protocol.parse(data[: result.length]).to_dict() == result.to_dict(result.length)


def recogniser(name: str):
    def target(data: bytes) -> None:
        client, server = _split(data)
        parsed = RECOGNISERS[name](client, server)
        json.dumps(parsed.opening.to_dict())

    target.__name__ = f"recognise_{name}"
    return target


def recognise_any(data: bytes) -> None:
    """The whole of recognise(): protocol choice, TLS, software, scrubbing."""
    head, server = _split(data)
    port = struct.unpack_from("!H", head)[0] if len(head) >= 2 else 25
    # The credentials on lines of their own (after whatever the fuzzer wrote).
    client = head[2:] + f"\r\na1 LOGIN user {SECRET}\r\nAUTH PLAIN {SECRET}\r\nPASS {SECRET}\r\n".encode()
    opening = recognise(client, server, port)
    shown = json.dumps(opening.to_dict())
    assert SECRET not in shown, shown


def tls(data: bytes) -> None:
    client, server = _split(data)
    opening = read_tls(client, server)
    if opening is not None:
        json.dumps(opening.to_dict())


def _read_capture(data: bytes) -> None:
    try:
        reader = read_records(io.BytesIO(data), "fuzz")
    except CaptureError as error:
        assert "\n" not in str(error)
        return
    for _record in reader:
        pass
    assert reader.info.damaged is None or "\n" not in reader.info.damaged


def pcap(data: bytes) -> None:
    _read_capture(data)


def pcapng(data: bytes) -> None:
    _read_capture(data)


def hexdump(data: bytes) -> None:
    try:
        decoded, notes = bytes_from_input(data)
    except InputError as error:
        assert "\n" not in str(error)
        return
    assert isinstance(decoded, bytes) and notes


# Scratch files in memory where there is a tmpfs (a disk's open and fsync were a tenth of the time).
_MEMORY = "/dev/shm" if os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()
_SCRATCH_DIR = os.environ.get("PROXYDIAG_FUZZ_SCRATCH") or _MEMORY
_SCRATCH = Path(_SCRATCH_DIR) / f"proxydiag-fuzz-{os.getpid()}"


def stalwart(data: bytes) -> None:
    _SCRATCH.write_bytes(data)
    try:
        config = load_stalwart(str(_SCRATCH))
    except ConfigError as error:
        assert "\n" not in str(error).strip() or "TOML" in str(error)
        return
    json.dumps(config.to_dict())


# Names a configuration file goes by: the reader is chosen by content, some by name too.
CONFIG_NAMES = ("haproxy.cfg", "nginx.conf", "stunnel.conf", "traefik.yml", "traefik.toml", "Caddyfile", "caddy.json",
                "envoy.yaml", "service.yaml", "compose.yaml", "proxy.toml")

# What each file gets after whatever the fuzzer wrote: the secret where that file's format
# keeps secrets (a password, a credential header or URL, a token, key material), and in
# comments on lines the readers cite (a listener, a route), each on lines of its own, so
# that the fuzzer's text cannot make it anything but a secret.
_S = SECRET
PLANTED_CONFIG = {
    "haproxy.cfg": (f"\n    stats auth admin:{_S}\n    http-request set-header Authorization \"Basic {_S}\"\n"
                    f"userlist fuzz_users\n    user admin password {_S}\n    user ops insecure-password {_S}\n"
                    f"frontend fuzz_smtp # password {_S}\n    bind :2525 # stats auth admin:{_S}\n"
                    f"    default_backend fuzz_stalwart\nbackend fuzz_stalwart\n"
                    f"    server s1 127.0.0.1:10025 send-proxy-v2 # {_S}\n"),
    "nginx.conf": (f'\nproxy_set_header Authorization "Basic {_S}";\nproxy_set_header Cookie "session={_S}";\n'
                   f"stream {{\n    server {{\n        listen 2525; # password {_S}\n"
                   f"        proxy_pass 127.0.0.1:10025; # {_S}\n        proxy_protocol on;\n    }}\n}}\n"
                   f"http {{\n    server {{\n        listen 8080;\n        location / {{\n"
                   f"            proxy_pass http://admin:{_S}@127.0.0.1:9000;\n        }}\n    }}\n}}\n"),
    "stunnel.conf": f"\n; key passphrase {_S}\n# PSK secret {_S}\n",
    "traefik.yml": (f'\n---\nhttp:\n  middlewares:\n    fuzz-auth:\n      basicAuth:\n        users:\n          - "admin:{_S}"\n'
                    f"    fuzz-header:\n      headers:\n        customRequestHeaders:\n          Authorization: Bearer {_S}\n"
                    f"tcp: # token {_S}\n  routers:\n    fuzz: # password {_S}\n      rule: HostSNI(`*`) # {_S}\n"
                    f"      service: fuzz\n  services:\n    fuzz:\n      loadBalancer:\n        proxyProtocol:\n"
                    f"          version: 2 # {_S}\n        servers:\n        - address: 127.0.0.1:10025 # {_S}\n"),
    "traefik.toml": (f'\n[http.middlewares.fuzz-auth.basicAuth]\nusers = ["admin:{_S}"]\n'
                     f'[http.middlewares.fuzz-header.headers.customRequestHeaders]\nAuthorization = "Bearer {_S}"\n'
                     f'[tcp.routers.fuzz] # password {_S}\nrule = "HostSNI(`*`)" # {_S}\nservice = "fuzz"\n'
                     f'[[tcp.services.fuzz.loadBalancer.servers]] # {_S}\naddress = "127.0.0.1:10025" # {_S}\n'),
    "Caddyfile": (f"\n:8080 {{\n\tbasic_auth {{ admin {_S} }}\n\treverse_proxy 127.0.0.1:9000 {{ # {_S}\n"
                  f'\t\theader_up Authorization "Basic {_S}"\n\t}}\n}}\n'),
    "caddy.json": f'"http_basic": {{"password": "{_S}", "api_token": "{_S}"}}, ',
    "envoy.yaml": (f"\n---\nstatic_resources: # {_S}\n  secrets:\n  - name: fuzz\n    tls_certificate:\n"
                   f"      private_key: {{inline_string: '-----BEGIN PRIVATE KEY-----{_S}-----END PRIVATE KEY-----'}}\n"
                   f"      password: {{inline_string: {_S}}}\n"
                   f"  listeners:\n  - name: fuzz # {_S}\n    address:\n      socket_address: {{address: 0.0.0.0, port_value: 2525}} # {_S}\n"),
    "service.yaml": (f"\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: fuzz\nstringData:\n  password: {_S}\n"
                     f"---\napiVersion: v1 # {_S}\nkind: Service\nmetadata:\n  name: fuzz # {_S}\n  annotations:\n"
                     f"    service.beta.kubernetes.io/aws-load-balancer-proxy-protocol: '*' # {_S}\nspec:\n"
                     f"  type: LoadBalancer\n  ports:\n  - port: 2525 # {_S}\n    targetPort: 10025\n"),
    "compose.yaml": (f"\nx-fuzz:\n  environment:\n    API_TOKEN: {_S}\n  labels:\n"
                     f'    - "traefik.http.middlewares.fuzz.basicauth.users=admin:{_S}"\n'),
    "proxy.toml": f'\n[fuzz.tls]\nkey-password = "{_S}"\nsecret = "{_S}"\n[listener.fuzz] # {_S}\nbind = ["0.0.0.0:2525"] # {_S}\n',
}


def config_input(name: str, text: bytes) -> bytes:
    """The proxy_config target's input format (seeds are written in it)."""
    return bytes([CONFIG_NAMES.index(name) if name in CONFIG_NAMES else 0]) + text


def planted_config(name: str, text: bytes) -> bytes:
    """The file `name` with the fuzzer's `text` and the secret planted: after it, or for
    JSON, which cannot take a line after its one value, as the first key of its object."""
    plant = PLANTED_CONFIG[name].encode()
    if name.endswith(".json"):
        opening = re.match(rb'\s*\{(?=\s*")', text)
        return text[: opening.end()] + plant + text[opening.end() :] if opening else text + b"\n{" + plant.rstrip(b", ") + b"}\n"
    return text + plant


def proxy_config(data: bytes) -> None:
    """One file through `check`: every reader, the cross-check, the fixes the rules give
    (edits of the file's own lines), rendered in every view. A file no reader takes is an
    error of one line; the planted secret is never shown; anything else is a bug."""
    if not data:
        return
    folder = _SCRATCH.with_suffix(".configs")
    folder.mkdir(exist_ok=True)
    name = CONFIG_NAMES[data[0] % len(CONFIG_NAMES)]
    path = folder / name
    path.write_bytes(planted_config(name, data[1:]))
    try:
        result = check_configurations([str(path)])
    finally:
        path.unlink()
    for error in result.errors:
        assert "\n" not in str(error).strip(), str(error)
    document = result.document()
    for finding in document["findings"]:
        if finding.get("fix") is None:  # the catalog's page: the same text for every input
            finding["fix"] = ""
    check_once(document, data)


# --- log lines and the probe's replies ---------------------------------------------------

# A client's login, as nginx quotes it in a broken header, planted after whatever the fuzzer wrote.
PLANTED_LOG_LINE = (f'2026/12/02 11:20:06 [error] 7#7: *1 broken header: "a1 LOGIN user {SECRET}" while reading '
                    "PROXY protocol, client: 203.0.113.77, server: 198.51.100.25:25")


def logs(data: bytes) -> None:
    """Any bytes as a log (every reader: Stalwart's text and JSON forms, HAProxy, nginx,
    journal exports), judged and rendered in every format: no crash, no raw control, and
    the planted login never shown."""
    from datetime import UTC

    from proxydiag.logs import NotALog, read_log
    from proxydiag.pipeline.logs import LogAnalysis
    from proxydiag.rules.logs import judge

    try:
        read = read_log(data + b"\n" + PLANTED_LOG_LINE.encode() + b"\n", "fuzz.log", UTC)
    except NotALog as error:
        assert "\n" not in str(error)
        return
    document = LogAnalysis(reads=[read], verdict=judge(read.events)).to_dict()
    for finding in document["findings"]:
        finding["fix"] = ""
    check_once(document, data)


PROBE_PORTS = (25, 10025, 587, 143, 10143, 110, 4190, 80, 2525)
PROBE_LIMITS = (256, 2048, 4096)  # line, step, target: small, so the fuzzer reaches them


class _ScriptedSocket:
    """A listener's side of one probe connection, as chunks: each recv takes at most what
    it asks for from the next chunk; then the listener is silent (a timeout)."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = [chunk for chunk in chunks if chunk]

    def settimeout(self, _seconds: float) -> None:
        pass

    def sendall(self, _data: bytes) -> None:
        pass

    def recv(self, size: int) -> bytes:
        if not self.chunks:
            raise TimeoutError
        chunk = self.chunks.pop(0)
        if len(chunk) > size:
            self.chunks.insert(0, chunk[size:])
        return chunk[:size]

    def close(self) -> None:
        pass


class _SteppingClock:
    """The probe's clock: half a millisecond more at every reading, so that an input's
    deadlines pass at the same point whenever it runs (a replay fails the same way)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.0005
        return self.now


_PROBES_CHECKED: set[bytes] = set()  # digests of the probe documents already rendered and checked


def probe_replies(data: bytes) -> None:
    """The probe reading a listener's replies (tests/test_probe_hostile.py has real ones):
    the first byte picks the port, the rest is what the listener sends, in chunks cut at
    0xfe; one step of the plan is read, judged and rendered. The reads stay within their
    limits, the views show no raw control. As in `report`: a document already checked is
    not rendered again, and rich draws one input in four, chosen by the input's CRC."""
    from proxydiag import probe
    from proxydiag.probe.steps import Target, build_header, service_of
    from proxydiag.report import probe as probe_report
    from proxydiag.rules import probe as probe_judge

    port = PROBE_PORTS[data[0] % len(PROBE_PORTS)] if data else 25
    limits = probe.ReadLimits(*PROBE_LIMITS)
    target = Target("192.0.2.10", port)
    header = b"" if not data or data[0] & 0x80 else build_header("v2", False, port)
    record = probe.StepRecord("v2" if header else "none", header, local=("192.0.2.1", 40000), remote=("192.0.2.10", port))
    wire = probe.Wire(_ScriptedSocket(data[1:].split(b"\xfe")[:64]), record, _SteppingClock(), limits)
    service = service_of(port)
    probe.converse(wire, record, service.protocol if service else None, header, False, True, target, 0.05)
    wire.close()
    assert len(record.server_text) <= limits.step, len(record.server_text)
    record.opening = recognise(record.client_text, record.server_text, port)
    document = probe_judge.document([probe.TargetProbe(target, address=target.host, records=[record])], {})
    shown = json.dumps(document)
    digest = hashlib.sha1(shown.encode()).digest()
    if digest in _PROBES_CHECKED:
        return
    outputs = {"json": shown, "markdown": probe_report.render_markdown(document, "0", "proxydiag probe")}
    if zlib.crc32(data) % 4 == 0:
        console = _console()
        probe_report.render_rich(document, console, verbose=True)
        outputs["rich"] = console.file.getvalue()
    check_outputs(outputs, SECRET)
    _PROBES_CHECKED.add(digest)


# --- whole captures through every report -------------------------------------------------


def conversation_input(port: int, header: bytes, client: bytes, server: bytes) -> bytes:
    """The report target's input format (seeds are written in it)."""
    return struct.pack("!HHH", port, len(header), len(client)) + header + client + server


def _conversation_parts(data: bytes) -> tuple[int, bytes, bytes, bytes]:
    if len(data) < 6:
        data = data.ljust(6, b"\x00")
    port, header_length, client_length = struct.unpack_from("!HHH", data)
    rest = data[6:]
    header, rest = rest[:header_length], rest[header_length:]
    client, server = rest[:client_length], rest[client_length:]
    return port or 25, header, client, server


def _capture_of(port: int, header: bytes, client: bytes, server: bytes) -> Path:
    from tests.craft import Conversation, write_pcap

    conv = Conversation(client=CLIENT, server=(SERVER[0], port))
    conv.handshake()
    # The credential right after the header: a header whose length swallows it must not
    # carry it into the evidence.
    conv.client_sends(header + f"\r\na1 LOGIN user {SECRET}\r\n".encode(), segments=2 if len(header) > 40 else 1)
    if server:
        conv.server_sends(server)
    if client:
        conv.client_sends(client)
    conv.close(by="client")
    path = _SCRATCH.with_suffix(".pcap")
    write_pcap(path, [conv])
    return path


def originals(header: bytes) -> set[str]:
    """The addresses a report with --anonymize must not show."""
    found = {CLIENT[0], SERVER[0]}
    parsed = proxy_protocol.parse(header).header
    for address in (parsed.src_addr, parsed.dst_addr) if parsed else ():
        if address and _identifies(address):
            found.add(address)
    return found


def _identifies(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:  # as --anonymize reads it: by its IPv4 (::ffff:0.0.0.0 is 0.0.0.0)
        ip = ip.ipv4_mapped
    return not (ip.is_unspecified or (ip.version == 6 and ip.is_loopback))


_CONSOLE = None


def _console():
    """One terminal console for every input (its buffer emptied each time)."""
    global _CONSOLE
    from rich.console import Console

    if _CONSOLE is None:
        _CONSOLE = Console(file=io.StringIO(), force_terminal=True, width=100, color_system="truecolor", soft_wrap=False)
    _CONSOLE.file = io.StringIO()
    return _CONSOLE


def render_all(document: dict, rich: bool = True) -> dict[str, str]:
    from proxydiag.report import json as json_report
    from proxydiag.report import markdown as markdown_report
    from proxydiag.report import rich as rich_report

    outputs = {
        "json": json_report.render_document(document),
        "markdown": markdown_report.render(document, "0", "proxydiag analyze fuzz.pcap"),
    }
    if rich:
        console = _console()
        rich_report.render(document, console)
        outputs["rich"] = console.file.getvalue()
    return outputs


def check_outputs(outputs: dict[str, str], secret: str, hidden: set[str] = frozenset()) -> None:
    json.loads(outputs["json"])
    for name, text in outputs.items():
        plain = _SGR.sub("", text)
        control = _RAW_CONTROL.search(plain)
        near = plain[max(0, control.start() - 40) : control.end() + 40] if control else ""
        assert control is None, f"{name}: raw control {control.group()!r} in {near!r}"
        for value in (secret, secret.encode().hex()):
            assert value not in text, f"{name}: the secret {value!r} is shown"
        for address in hidden:
            assert not _shows_address(text, address), f"{name}: {address} is shown with --anonymize"



_DOCUMENTS_CHECKED: set[bytes] = set()  # digests of the logs' and checks' documents already checked


def check_once(document: dict, data: bytes) -> None:
    """`document` rendered in every view and checked, unless it already was (the renderers
    are pure functions of it); rich for one input in four, chosen by the input's CRC (a
    failing input fails again when replayed)."""
    from proxydiag.report import json as json_report

    digest = hashlib.sha1(json_report.render_document(document).encode()).digest()
    if digest in _DOCUMENTS_CHECKED:
        return
    check_outputs(render_all(document, rich=zlib.crc32(data) % 4 == 0), SECRET)
    _DOCUMENTS_CHECKED.add(digest)

def _shows_address(text: str, address: str) -> bool:
    packed = ipaddress.ip_address(address).packed
    pattern = re.compile(r"(?<![\w.:])" + re.escape(address) + r"(?![\w:]|\.\d)", re.I)
    # Packed, only an address of 3 or more non-zero bytes can be told from other hex
    # (0:0:1:: is 000000000001 and 20 zeros: a pseudonym ending in ::1 before zeros holds it).
    telling = sum(1 for byte in packed if byte) >= 3
    return bool(pattern.search(text)) or (telling and packed.hex() in text.lower())


_CHECKED: set[bytes] = set()  # digests of the documents already rendered and checked


def report(data: bytes) -> None:
    """One small capture through the analysis and every renderer, plain and anonymized.

    What keeps it fast: the fixes are left out (a capture alone gets the catalog's own
    pages: no wire bytes, the same text for every input), a document already
    checked is not rendered again (the renderers and the anonymization are pure
    functions of it), and rich, the slowest renderer by far, draws the plain document
    for one input in four and the anonymized one for another, chosen by the input's
    CRC (so a failing input fails again when replayed)."""
    from proxydiag.pipeline.analysis import Settings, diagnose
    from proxydiag.report import json as json_report
    from proxydiag.report.anonymize import anonymize

    port, header, client, server = _conversation_parts(data)
    document = diagnose([str(_capture_of(port, header, client, server))], Settings()).to_dict()
    for finding in document["findings"]:
        finding["fix"] = ""
    digest = hashlib.sha1(json_report.render_document(document).encode()).digest()
    if digest in _CHECKED:
        return
    rich_for = zlib.crc32(data) % 4  # 0: the plain document, 1: the anonymized one, else neither
    check_outputs(render_all(document, rich=rich_for == 0), SECRET)
    check_outputs(render_all(anonymize(document), rich=rich_for == 1), SECRET, originals(header))
    _CHECKED.add(digest)


TARGETS = {
    "proxy": proxy_header,
    **{f"recognise_{name}": recogniser(name) for name in ("smtp", "imap", "pop3", "managesieve", "http")},
    "recognise": recognise_any,
    "tls": tls,
    "pcap": pcap,
    "pcapng": pcapng,
    "hexdump": hexdump,
    "stalwart": stalwart,
    "proxy_config": proxy_config,
    "logs": logs,
    "probe_replies": probe_replies,
    "report": report,
}
