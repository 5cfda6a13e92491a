"""Logs as evidence (proxydiag/logs): readers, judge and `proxydiag logs`.

HAProxy's and nginx's lines are recorded here from the real daemons (Debian's haproxy 2.6
and nginx 1.22 with the stream module) on 127.50.0.0/16, driven by real clients. Stalwart
cannot be installed here: its lines are built in the formats of its source
(stalwartlabs/stalwart crates/trc/src/serializers/text.rs and json.rs,
crates/common/src/telemetry/tracers/journald.rs; the events and their keys from
crates/common/src/network/listen.rs and mod.rs, crates/smtp/src/inbound/mail.rs,
crates/http/src/request.rs).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxydiag.logs import NotALog, read_log, stalwart
from proxydiag.logs import haproxy as haproxy_log
from proxydiag.logs import nginx as nginx_log
from proxydiag.logs.event import LogEvent
from proxydiag.rules.logs import LogOptions, judge
from tests.daemons import lab_address, need

ROOT = Path(__file__).resolve().parent.parent
PROXY = lab_address("logs", 1)
BACKEND = lab_address("logs", 2)
CLIENT = lab_address("logs", 3)


def codes(findings) -> list[str]:
    return [finding.code for finding in findings]


def judged(text: str, **options):
    return judge(read_log(text.encode(), "stalwart.log").events, LogOptions(**options)).findings


def free_port(address: str = PROXY) -> int:
    with socket.socket() as probe:
        probe.bind((address, 0))
        return probe.getsockname()[1]




def run_clients(port: int) -> None:
    """What plain clients send to a listener that waits for a PROXY header: a mail
    command, an HTTP request, a TLS ClientHello, nothing at all, and a broken header."""
    swaks_like = b"EHLO client.example.test\r\n"
    for payload in (swaks_like, b"PROXY TCP4 203.0.113.7 192.0.2.10 40000\r\n"):
        subprocess.run(["socat", "-t", "0.5", "-", f"TCP:{PROXY}:{port},bind={CLIENT}"], input=payload,
                       capture_output=True, timeout=10)
    subprocess.run(["curl", "-s", "-m", "2", "--interface", CLIENT, f"http://{PROXY}:{port}/"], capture_output=True,
                   timeout=10)
    subprocess.run(["openssl", "s_client", "-connect", f"{PROXY}:{port}"], input=b"", capture_output=True, timeout=10)
    subprocess.run(["socat", "-u", "/dev/null", f"TCP:{PROXY}:{port},bind={CLIENT}"], capture_output=True, timeout=10)


def wait_listening(port: int, process: subprocess.Popen) -> None:
    for _ in range(100):
        assert process.poll() is None, "the daemon exited"
        with socket.socket() as probe:
            if probe.connect_ex((PROXY, port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {PROXY}:{port}")


@pytest.fixture(scope="module")
def haproxy_logs(tmp_path_factory) -> dict[str, Path]:
    """A real HAProxy with `bind ... accept-proxy`, logging raw to stdout and RFC 5424 to
    a syslog socket, after plain clients talked to it."""
    binary = need("haproxy")
    for tool in ("socat", "curl", "openssl"):
        need(tool)
    work = tmp_path_factory.mktemp("haproxy")
    port = free_port()
    syslog = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    syslog.bind((PROXY, 0))
    syslog.settimeout(0.5)
    config = work / "haproxy.cfg"
    config.write_text(f"""global
    log stdout format raw local0 info
    log {PROXY}:{syslog.getsockname()[1]} format rfc5424 local0 info
defaults
    mode tcp
    log global
    option tcplog
    timeout connect 1s
    timeout client 1s
    timeout server 1s
frontend fe_smtp
    bind {PROXY}:{port} accept-proxy
    default_backend be_stalwart
backend be_stalwart
    server stalwart {BACKEND}:10025 send-proxy-v2
""")
    subprocess.run([binary, "-c", "-f", str(config)], check=True, capture_output=True)
    raw = work / "haproxy-stdout.log"
    with raw.open("wb") as out:
        process = subprocess.Popen([binary, "-db", "-f", str(config)], stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_listening(port, process)
            run_clients(port)
            time.sleep(1.5)  # the silent client's timeout
        finally:
            process.terminate()
            process.wait(timeout=10)
    datagrams = []
    try:
        while True:
            datagrams.append(syslog.recv(65536).decode())
    except socket.timeout:
        pass
    syslog.close()
    rfc5424 = work / "haproxy-rfc5424.log"
    rfc5424.write_text("\n".join(datagrams) + "\n")
    return {"raw": raw, "rfc5424": rfc5424}


@pytest.fixture(scope="module")
def nginx_error_log(tmp_path_factory) -> Path:
    """A real nginx stream server with `listen ... proxy_protocol` and its error log."""
    binary = need("nginx")
    module = Path("/usr/lib/nginx/modules/ngx_stream_module.so")
    assert module.exists(), "libnginx-mod-stream is not installed (tests/run.sh installs it)"
    work = tmp_path_factory.mktemp("nginx")
    port = free_port()
    error_log = work / "error.log"
    config = work / "nginx.conf"
    config.write_text(f"""load_module {module};
pid {work}/nginx.pid;
error_log {error_log} info;
daemon off;
events {{}}
stream {{
    server {{ listen {PROXY}:{port} proxy_protocol; proxy_protocol_timeout 1s; proxy_pass {BACKEND}:10025; }}
}}
""")
    args = [binary, "-c", str(config), "-p", str(work), "-e", str(error_log)]
    subprocess.run([*args, "-t"], check=True, capture_output=True)
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, process)
        run_clients(port)
        time.sleep(1.5)
    finally:
        process.terminate()
        process.wait(timeout=10)
    return error_log


# --- real HAProxy and nginx -------------------------------------------------------------

@pytest.mark.lab
@pytest.mark.parametrize("form", ["raw", "rfc5424"])
def test_haproxy_accept_proxy_from_plain_clients_is_pd109(haproxy_logs, form):
    read = read_log(haproxy_logs[form].read_bytes(), str(haproxy_logs[form]))
    events = {event.event for event in read.events}
    assert "haproxy.proxy-not-header" in events
    findings = judge(read.events).findings
    pd109 = next(finding for finding in findings if finding.code == "PD109")
    assert pd109.severity == "error"
    assert list(pd109.evidence["per_listener"]) == ["fe_smtp/1"]
    assert CLIENT in pd109.evidence["per_source"]
    assert any("does not look like a PROXY protocol header" in line for line in pd109.evidence["log_lines"])
    assert all(event.timestamp is not None and event.timestamp.tzinfo for event in read.events)


@pytest.mark.lab
def test_haproxy_broken_header_is_pd103_not_pd109(haproxy_logs):
    read = read_log(haproxy_logs["raw"].read_bytes(), "haproxy.log")
    findings = judge(read.events).findings
    pd103 = [finding for finding in findings if finding.code == "PD103"]
    assert pd103 and "invalid PROXY protocol header" in pd103[0].evidence["log_lines"][0]


@pytest.mark.lab
def test_haproxy_rfc5424_stamp_carries_the_zone(haproxy_logs):
    read = read_log(haproxy_logs["rfc5424"].read_bytes(), "haproxy.log")
    assert read.events and not any(event.tz_assumed for event in read.events)


@pytest.mark.lab
def test_nginx_broken_header_is_pd109_and_a_broken_proxy_line_pd103(nginx_error_log):
    read = read_log(nginx_error_log.read_bytes(), str(nginx_error_log))
    broken = [event for event in read.events if event.event == "nginx.broken-header"]
    assert any(str(event.fields["data"]).startswith("EHLO") for event in broken)
    assert any(str(event.fields["data"]).startswith("GET / HTTP/1.1\nHost:") for event in broken)  # joined lines
    assert read.malformed == 0 and read.foreign == 0
    findings = judge(read.events).findings
    pd109 = next(finding for finding in findings if finding.code == "PD109")
    assert "nginx" in pd109.message and CLIENT in pd109.evidence["per_source"]
    assert "PD103" in codes(findings)


@pytest.mark.lab
def test_cli_on_real_logs_quotes_lines_without_terminal_control(nginx_error_log, haproxy_logs):
    result = subprocess.run(
        [sys.executable, "-m", "proxydiag", "logs", str(nginx_error_log), str(haproxy_logs["raw"]), "--format", "rich"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert result.returncode == 1, result.stderr
    assert "PD109" in result.stdout and f"{nginx_error_log.name}:" in result.stdout
    assert not any(ord(char) < 32 and char not in "\n" for char in result.stdout)  # the ClientHello is escaped


# --- Stalwart's formats -------------------------------------------------------------------

def text_line(stamp: str, level: str, description: str, event: str, keys: str) -> str:
    """A line as FmtWriter writes it (crates/trc/src/serializers/text.rs)."""
    return f"{stamp} {level} {description} ({event}) {keys}"


def connection_start(second: int, ip: str, listener: str = "smtp", port: int = 10025, protocol: str = "SMTP") -> str:
    return text_line(f"2026-11-12T10:00:{second:02d}Z", "INFO", f"{protocol} connection started",
                     f"{protocol.lower()}.connection-start",
                     f'listenerId = "{listener}", localPort = {port}, remoteIp = {ip}, remotePort = {40000 + second}')


def proxy_error(reason: str, tls: bool = False) -> str:
    return text_line("2026-11-12T10:00:00Z", "WARN", "Proxy protocol error", "network.proxy-error",
                     f'listenerId = "imaps", localIp = 10.0.0.3, localPort = 10993, tls = {str(tls).lower()}, '
                     f'reason = "{reason}"')


@pytest.mark.parametrize("reason", ["end of stream", "invalid proxy header"])
def test_proxy_error_is_pd101(reason):
    findings = judged(proxy_error(reason, tls=True))
    assert codes(findings) == ["PD101"]
    assert findings[0].evidence["reasons"] == {reason: 1}
    assert ("PD103" in findings[0].message) == (reason == "invalid proxy header")



def proxy_error_at(second: int) -> str:
    return text_line(f"2026-11-12T10:{second // 60:02d}:{second % 60:02d}Z", "WARN", "Proxy protocol error",
                     "network.proxy-error", 'listenerId = "smtp", localIp = 10.0.0.3, localPort = 10025, tls = false, '
                     'reason = "end of stream"')


def test_proxy_errors_at_a_fixed_period_are_health_checks_pd403():
    """HAProxy's `inter 2s` checks (or a cloud balancer's) on a listener that wants a header:
    the same error like clockwork is the checker, not clients (PD403, not PD101)."""
    findings = judged("\n".join(proxy_error_at(second) for second in range(0, 60, 10)))
    assert codes(findings) == ["PD403"] and findings[0].evidence["period_seconds"] == 10
    irregular = "\n".join(proxy_error_at(second) for second in (0, 3, 17, 18, 40, 41))
    assert codes(judged(irregular)) == ["PD101"]

def test_proxy_error_from_the_os_is_not_pd101():
    assert judged(proxy_error("Connection reset by peer (os error 104)")) == []


def test_connection_start_from_a_given_proxy_is_pd201():
    log = "\n".join(connection_start(second, "10.0.0.2") for second in range(2))
    assert codes(judged(log, proxy_addresses=frozenset({"10.0.0.2"}))) == ["PD201"]
    assert judged(log, proxy_addresses=frozenset({"10.0.0.9"})) == []  # near miss: another address


def test_one_address_behind_every_connection_is_pd202_inferred():
    crowd = "\n".join(connection_start(second, "10.0.0.2") for second in range(6))
    findings = judged(crowd)
    assert codes(findings) == ["PD202"] and findings[0].inferred and findings[0].severity == "info"
    varied = "\n".join(connection_start(second, f"203.0.113.{second + 1}") for second in range(6))
    assert judged(varied) == []
    assert judged("\n".join(connection_start(second, "10.0.0.2") for second in range(3))) == []  # too few


def ban_log() -> str:
    return "\n".join([
        connection_start(1, "10.0.0.2"),
        proxy_error("end of stream"),
        text_line("2026-11-12T10:05:00Z", "INFO", "Banned due to abuse", "security.abuse-ban",
                  'listenerId = "smtp", localPort = 10025, remoteIp = 10.0.0.2, remotePort = 40003'),
        *(text_line(f"2026-11-12T10:06:0{n}Z", "INFO", "Blocked IP address", "security.ip-blocked",
                    f'listenerId = "smtp", localPort = 10025, remoteIp = 10.0.0.2, remotePort = {41000 + n}')
          for n in range(3)),
    ])


def test_ban_of_the_proxy_is_pd401_with_a_timeline():
    findings = judged(ban_log(), proxy_addresses=frozenset({"10.0.0.2"}))
    pd401 = next(finding for finding in findings if finding.code == "PD401")
    timeline = pd401.evidence["timeline"]
    assert "security.abuse-ban" in timeline["split_by"]
    assert timeline["before"] == {"smtp.connection-start": 1, "network.proxy-error": 1}
    assert timeline["after"] == {"security.ip-blocked": 3}
    assert not pd401.inferred


def test_ban_of_a_client_is_no_pd401():
    assert "PD401" not in codes(judged(ban_log(), proxy_addresses=frozenset({"10.0.0.7"})))


@pytest.mark.parametrize("listener,port,expected", [
    ("smtp", 10025, ["PD209"]), ("smtp", 2525, ["PD209"]), ("smtp", 25, []), ("submission", 10587, []),
    ("submissions", 465, []),
])
def test_mail_from_unauthenticated_off_port_25_is_pd209(listener, port, expected):
    line = text_line("2026-11-12T10:00:00Z", "INFO", "MAIL FROM without authentication",
                     "smtp.mail-from-unauthenticated",
                     f'listenerId = "{listener}", localPort = {port}, remoteIp = 203.0.113.7, remotePort = 40000')
    assert codes(judged(line)) == expected


def test_a_quoted_503_is_pd209_inferred():
    line = ("Nov 12 10:00:00 mx postfix/smtp[123]: 0ABC: to=<a@example.com>, relay=mail.example.com[192.0.2.10]:25, "
            "status=bounced (host said: 503 5.5.1 You must authenticate first. (in reply to MAIL FROM command))")
    findings = judged(line)
    assert codes(findings) == ["PD209"] and findings[0].inferred


def test_x_forwarded_missing_is_pd501():
    line = text_line("2026-11-12T10:00:00Z", "WARN", "X-Forwarded-For header is missing", "http.x-forwarded-missing",
                     'listenerId = "http", localPort = 10443, remoteIp = 10.0.0.2, remotePort = 40000')
    findings = judged(line)
    assert codes(findings) == ["PD501"] and findings[0].evidence["per_listener"] == {"http (port 10443)": 1}


def as_json(line: str) -> dict:
    """The same event as the JSON serializer writes it (crates/trc/src/serializers/json.rs)."""
    event = stalwart.text_event(line, "x", 1)
    assert event is not None
    return {"createdAt": event.timestamp.isoformat().replace("+00:00", "Z"), "type": event.event,
            "data": event.fields}


def as_journal(line: str) -> dict:
    """The same event through the journald tracer (crates/common/src/telemetry/tracers/
    journald.rs: the description in MESSAGE, each key upper-cased), as journalctl -o json shows it."""
    parsed = stalwart.parse_text_line(line)
    assert parsed is not None
    stamp, level, description, _event, fields = parsed
    entry = {"__REALTIME_TIMESTAMP": str(int(stalwart.parse_timestamp(stamp).timestamp() * 1_000_000)),
             "PRIORITY": "4" if level == "WARN" else "6", "SYSLOG_IDENTIFIER": "stalwart", "MESSAGE": description}
    entry.update({key.upper(): str(value).lower() if isinstance(value, bool) else str(value)
                  for key, value in fields.items()})
    return entry


@pytest.mark.parametrize("form", ["json lines", "json array", "webhook", "journal"])
def test_every_stalwart_form_gives_the_same_findings(form):
    lines = ban_log().splitlines()
    if form == "json lines":
        text = "\n".join(json.dumps(as_json(line)) for line in lines)
    elif form == "json array":
        text = json.dumps([as_json(line) for line in lines], indent=2)
    elif form == "webhook":
        text = json.dumps({"events": [as_json(line) for line in lines]})
    else:
        text = "\n".join(json.dumps(as_journal(line)) for line in lines)
    options = {"proxy_addresses": frozenset({"10.0.0.2"})}
    assert codes(judged(text, **options)) == codes(judged(ban_log(), **options))


def test_journal_wraps_other_daemons_lines():
    haproxy_line = "127.50.0.3:54211 [02/Dec/2026:11:20:35.953] fe_smtp/1: Received something which does not look like a PROXY protocol header"
    entry = {"__REALTIME_TIMESTAMP": "1796210435953000", "SYSLOG_IDENTIFIER": "haproxy", "_PID": "1",
             "MESSAGE": haproxy_line}
    read = read_log(json.dumps(entry).encode(), "journal.json")
    assert [event.event for event in read.events] == ["haproxy.proxy-not-header"]
    assert read.events[0].timestamp == datetime.fromtimestamp(1796210435.953, timezone.utc)


def test_multiline_and_ansi_text_lines():
    multiline = ('\x1b[37m2026-11-12T10:00:00Z\x1b[0m \x1b[33;1mWARN\x1b[0m \x1b[37;1mProxy protocol error\x1b[0m '
                 '(network.proxy-error)\n\tlistenerId = "imaps"\n\tlocalPort = 10993\n\treason = "end of stream"\n')
    read = read_log(multiline.encode(), "x")
    assert len(read.events) == 1
    assert read.events[0].fields == {"listenerId": "imaps", "localPort": 10993, "reason": "end of stream"}


def test_values_of_every_kind():
    line = text_line("2026-11-12T10:00:00.5+02:00", "INFO", "x", "a.b-c",
                     'text = "a, b = c\\n", n = -3, f = 1.5, on = true, none = (null), ip = ::ffff:10.0.0.1, '
                     'took = 12ms, list = ["x", 2], nested = Desc (e.f) { k = 1, j = "v" }, last = 1')
    event = stalwart.text_event(line, "x", 1)
    assert event is not None and event.timestamp.utcoffset().total_seconds() == 7200
    assert event.fields == {"text": "a, b = c\n", "n": -3, "f": 1.5, "on": True, "none": None, "ip": "::ffff:10.0.0.1",
                            "took": "12ms", "list": ["x", 2], "nested": 'Desc (e.f) { k = 1, j = "v" }', "last": 1}


# --- malformed, foreign, not a log ---------------------------------------------------------

def test_foreign_and_malformed_lines_are_counted_and_skipped():
    text = "\n".join([proxy_error("end of stream"), "hello world", "2026-11-12T10:00:00Z WARN broken (x.y) = 1",
                      "{not json", "", proxy_error("end of stream")])
    read = read_log(text.encode(), "mixed.log")
    assert len(read.events) == 2 and read.foreign == 1 and read.malformed == 2


def test_not_a_log_is_refused():
    with pytest.raises(NotALog):
        read_log(b"\xd4\xc3\xb2\xa1\x02\x00\x04\x00" + bytes(range(256)) * 4, "capture.pcap")
    with pytest.raises(NotALog):
        read_log(b"just some\ntext\n", "notes.txt")
    assert read_log(b"", "empty.log").events == []


def run_cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "proxydiag", "logs", *args], input=stdin, capture_output=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)


def test_cli_not_a_log_is_one_line_and_exit_2(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("nothing here\n")
    result = run_cli(str(notes))
    assert result.returncode == 2 and result.stderr.decode().count("\n") == 1 and b"Traceback" not in result.stderr
    missing = run_cli(str(tmp_path / "missing.log"))
    assert missing.returncode == 2 and b"cannot read" in missing.stderr


def test_cli_reads_stdin_and_anonymizes_quoted_lines():
    result = run_cli("-", "--format", "json", "--anonymize", "--proxy-address", "10.0.0.2", stdin=ban_log().encode())
    assert result.returncode == 1
    document = json.loads(result.stdout)
    assert "10.0.0.2" not in result.stdout.decode() and "10.0.0.3" not in result.stdout.decode()
    assert {finding["code"] for finding in document["findings"]} >= {"PD401", "PD201", "PD101"}
    assert document["inputs"][0]["path"] == "<stdin>"


def test_cli_markdown_and_fail_on(tmp_path):
    log = tmp_path / "stalwart.log"
    log.write_text(connection_start(1, "203.0.113.9") + "\n")
    quiet = run_cli(str(log), "--format", "markdown")
    assert quiet.returncode == 0 and b"No findings" in quiet.stdout
    log.write_text(text_line("2026-11-12T10:00:00Z", "WARN", "X-Forwarded-For header is missing",
                             "http.x-forwarded-missing", 'listenerId = "http", localPort = 10443') + "\n")
    assert run_cli(str(log)).returncode == 0  # a warning, and --fail-on error
    assert run_cli(str(log), "--fail-on", "warning").returncode == 1


# --- properties ----------------------------------------------------------------------------

@given(st.text())
def test_readers_never_raise_on_text(text):
    for line in text.split("\n"):
        stalwart.text_event(line, "f", 1)
        haproxy_log.parse_line(line, "f", 1, timezone.utc)
        nginx_log.parse_line(line, "f", 1, timezone.utc)


@given(st.binary())
def test_read_log_never_raises_but_not_a_log(data):
    try:
        read = read_log(data, "f")
    except NotALog:
        return
    assert read.lines >= len(read.events)


KEYS = st.from_regex(r"[a-z][A-Za-z0-9]{0,8}", fullmatch=True)
SAFE_TEXT = st.text(st.characters(blacklist_characters='"', blacklist_categories=("Cs",)), max_size=30)
VALUES = st.one_of(SAFE_TEXT, st.integers(-10**12, 10**12), st.booleans(), st.none(),
                   st.lists(st.one_of(st.integers(0, 9999), SAFE_TEXT.filter(lambda s: "]" not in s)), max_size=3))
STAMPS = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 1, 1),
                      timezones=st.just(timezone.utc)).map(lambda stamp: stamp.replace(microsecond=0))


@given(STAMPS, st.sampled_from(["INFO", "WARN", "ERROR", "DEBUG", "TRACE"]),
       st.from_regex(r"[a-z][a-z-]{0,10}\.[a-z][a-z-]{0,15}", fullmatch=True), st.dictionaries(KEYS, VALUES, max_size=6))
def test_stalwart_text_round_trip(stamp, level, event_id, fields):
    event = LogEvent(stamp, "stalwart", event_id, fields, level=level)
    line = stalwart.format_text_line(event)
    parsed = stalwart.text_event(line, "f", 1)
    assert parsed is not None
    assert (parsed.timestamp, parsed.level, parsed.event, parsed.fields) == (stamp, level, event_id, fields)


@given(STAMPS.map(lambda stamp: stamp.replace(microsecond=123000)), st.ip_addresses().map(str),
       st.integers(1, 65535), st.from_regex(r"[A-Za-z_][A-Za-z0-9_.-]{0,15}", fullmatch=True),
       st.sampled_from(sorted(haproxy_log.PROXY_ERRORS)))
def test_haproxy_round_trip(stamp, client, port, frontend, error):
    event = LogEvent(stamp, "haproxy", haproxy_log.PROXY_ERRORS[error],
                     {"client": client, "client_port": port, "frontend": frontend, "bind": "1", "error": error})
    parsed = haproxy_log.parse_line(haproxy_log.format_connection_error(event), "f", 1, timezone.utc)
    assert parsed is not None and (parsed.timestamp, parsed.event, parsed.fields) == (stamp, event.event, event.fields)


@given(STAMPS, st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"), max_size=40),
       st.ip_addresses(v=4).map(str), st.integers(1, 10**6))
def test_nginx_round_trip(stamp, data, client, connection):
    event = LogEvent(stamp, "nginx", "nginx.broken-header",
                     {"data": data, "client": client, "server": f"{PROXY}:25", "pid": 7, "connection": connection},
                     level="error")
    parsed = nginx_log.parse_line(nginx_log.format_record(event), "f", 1, timezone.utc)
    assert parsed is not None and (parsed.timestamp, parsed.event, parsed.fields) == (stamp, event.event, event.fields)
