"""`sniff` as a long-running sensor: the JSON-lines events, the Prometheus exporter scraped
by a real Prometheus, -w rotation like tcpdump's -C/-G/-W, SIGTERM, SIGHUP.

The lab (tests/sensor_lab.py) is real HAProxy in front of real Postfix on 127.60.0.0/16;
live capture needs root (CI runs as root)."""

from __future__ import annotations

import io
import ipaddress
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import dpkt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxydiag.capture.live import PcapFiles, Rotation
from proxydiag.facts.model import Analysis
from proxydiag.pipeline.analysis import Reader, Settings, analyze_files, judge_analysis
from proxydiag.pipeline.sensor import (
    EVENT_SCHEMA,
    OTHER,
    JsonlSink,
    MetricsSink,
    SensorError,
    SniffEvents,
    final_report,
    listener_of,
    parse_listen_address,
)
from proxydiag.report.anonymize import Anonymizer
from proxydiag.services import DEFAULT_TABLE
from tests.daemons import wait_capturing
from tests.sensor_lab import BROKEN, CLIENT, HAPROXY, HEALTHY, SERVER, Prometheus, free_port, running_lab, smtp_session, swaks

ROOT = Path(__file__).resolve().parent.parent
CAPTURES = ROOT / "captures"
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
LAB_FILTER = f"tcp and (host {HAPROXY} or host {SERVER})"  # not the exporter and Prometheus talking


def proxydiag(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "proxydiag", *args], capture_output=True, text=True, env=ENV,
                          timeout=kwargs.pop("timeout", 120), **kwargs)


def start_sniff(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "proxydiag", "sniff", "-i", "lo", *args], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def events_of(text: str) -> list[dict]:
    """Every line one JSON object with the event keys."""
    events = [json.loads(line) for line in text.splitlines()]
    for event in events:
        assert event["schema"] == EVENT_SCHEMA and event["event"] in ("start", "connection", "finding", "heartbeat", "stop")
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", event["time"])
    return events


def wait_until(condition, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"not within {seconds} s: {what}")


# --- --metrics ADDR:PORT ---------------------------------------------------------------

ports = st.integers(1, 65535)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
hostnames = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?){0,3}", fullmatch=True)


@given(st.one_of(ipv4, hostnames), ports)
def test_listen_address_round_trips(host, port):
    assert parse_listen_address(f"{host}:{port}") == (host, port)


@given(ipv6, ports)
def test_listen_address_takes_ipv6_in_brackets(host, port):
    assert parse_listen_address(f"[{host}]:{port}") == (str(ipaddress.IPv6Address(host)), port)


@given(st.text(max_size=60))
def test_listen_address_refuses_with_a_value_error_only(text):
    try:
        host, port = parse_listen_address(text)
    except ValueError as error:
        assert text[:20].strip() in str(error) or repr(text)[:20] in str(error)
        return
    assert 0 < port < 65536 and host and "\n" not in host


@pytest.mark.parametrize("text", ["9465", ":9465", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "::1:9465",
                                  "[::1]", "[nope]:9465", "127.0.0.1:94x5", "host name:9465"])
def test_listen_address_refuses_what_it_cannot_bind(text):
    with pytest.raises(ValueError):
        parse_listen_address(text)


# --- -w rotation (-C, -G, -W) ----------------------------------------------------------

def packets_in(path: str) -> list[tuple[float, bytes]]:
    with open(path, "rb") as handle:
        return [(round(ts, 6), bytes(frame)) for ts, frame in dpkt.pcap.Reader(handle)]


def frames(count: int, start: float = 1_700_000_000.0, step: float = 0.5, size: int = 200):
    return [(start + index * step, bytes([index % 256]) * size) for index in range(count)]


def test_size_rotation_starts_a_file_once_one_is_past_the_limit(tmp_path):
    files = PcapFiles(str(tmp_path / "cap.pcap"), Rotation(megabytes=0.001))  # 1000 bytes
    files.open(1_700_000_000.0)
    written = frames(23)
    for ts, frame in written:
        files.write(ts, 1, frame)
    files.close()
    assert len(files.kept) > 2  # tcpdump's names: FILE, FILE1, FILE2, ...
    assert files.kept == [str(tmp_path / "cap.pcap") + (str(index) if index else "") for index in range(len(files.kept))]
    for path in files.kept[:-1]:  # checked before each packet: just past the limit, by less than one record
        assert 1000 < os.path.getsize(path) <= 1000 + 16 + 200
    assert [packet for path in files.kept for packet in packets_in(path)] == written


def test_time_rotation_names_files_by_strftime_and_cuts_at_each_period(tmp_path):
    pattern = str(tmp_path / "cap-%H%M%S.pcap")
    files = PcapFiles(pattern, Rotation(seconds=10))
    start = 1_700_000_000.0
    files.open(start)
    written = frames(60, start=start, step=0.5)  # 30 s of packets
    for ts, frame in written:
        files.write(ts, 1, frame)
    files.close()
    assert files.kept == [time.strftime(pattern, time.localtime(start + offset)) for offset in (0, 10, 20)]
    for index, path in enumerate(files.kept):
        assert [ts for ts, _ in packets_in(path)] == [ts for ts, _ in written if index * 10 <= ts - start < index * 10 + 10]


def test_file_count_keeps_the_newest_files(tmp_path):
    files = PcapFiles(str(tmp_path / "ring.pcap"), Rotation(megabytes=0.001, keep=2))
    files.open(1_700_000_000.0)
    written = frames(40)
    for ts, frame in written:
        files.write(ts, 1, frame)
    files.close()
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(Path(path).name for path in files.kept)
    assert len(files.kept) == 2
    kept = [packet for path in files.kept for packet in packets_in(path)]
    assert kept == written[-len(kept):]  # the newest packets, in order


def test_a_new_link_type_starts_a_new_file(tmp_path):
    files = PcapFiles(str(tmp_path / "cap.pcap"))
    files.open(1_700_000_000.0)
    files.write(1_700_000_000.0, 1, b"e" * 60)
    files.write(1_700_000_001.0, 113, b"s" * 60)
    files.close()
    linktypes = []
    for path in files.kept:
        with open(path, "rb") as handle:
            linktypes.append(dpkt.pcap.Reader(handle).datalink())
    assert linktypes == [1, 113]


def test_rotation_options_need_w_and_numbers_above_zero():
    for args, message in ((["-C", "1"], "give -w FILE"), (["-w", "x.pcap", "-W", "3"], "needs -C or -G"),
                          (["-w", "x.pcap", "-G", "0"], "above 0"), (["--heartbeat", "0"], "above 0")):
        result = proxydiag("sniff", "-i", "lo", *args)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert message in result.stderr


# --- the event adapter and the sinks ---------------------------------------------------

class Recorder:
    def __init__(self):
        self.events: list[tuple] = []

    def start(self, info):
        self.events.append(("start",))

    def connection(self, conn, findings):
        self.events.append(("connection", conn.id, tuple(finding.code for finding in findings)))

    def finding(self, finding, first, listener, added):
        self.events.append(("finding", finding.code, listener, first, added, finding.count))

    def heartbeat(self, counters):
        self.events.append(("heartbeat", counters["connections"]))

    def stop(self, report):
        self.events.append(("stop", tuple(sorted(finding["code"] for finding in report.document["findings"]))))


def test_each_connection_is_told_once_and_each_finding_once_then_as_it_grows():
    source = analyze_files([str(CAPTURES / "haproxy-v2-smtp.pcap"), str(CAPTURES / "no-header-to-proxy-listener.pcap")])
    settings, recorder = Settings(), Recorder()
    reader = Reader(settings, DEFAULT_TABLE)
    events = SniffEvents([recorder], heartbeat_seconds=3600, counters=lambda: {"connections": events.told})
    live = events.live_judge(reader, settings)
    reader.then = live.add
    events.start({})
    for conn in sorted(source.connections, key=lambda conn: conn.last_ts or conn.start_ts):  # as they end
        reader.analysis.connections.append(conn)
        reader.analysis.tally.observe(conn, conn.tcp.dst_port in DEFAULT_TABLE)
        reader.then(conn)
        events.tick()  # no heartbeat due: nothing told
    analysis = reader.done()
    analysis.inputs = source.inputs
    judge_analysis(analysis, settings)
    events.finish(analysis)
    told = [event[1] for event in recorder.events if event[0] == "connection"]
    assert sorted(told) == sorted(conn.id for conn in source.connections)
    raised = [event for event in recorder.events if event[0] == "finding"]
    assert all(event[4] == event[5] for event in raised if event[3])  # raised: all it counts was just added
    assert sum(event[4] for event in raised) == sum(finding.count for finding in live.collector.findings())
    assert ("finding", "PD101", "127.80.0.30:10025", True, 1, 1) in raised
    assert recorder.events[-2:] == [("heartbeat", len(source.connections)),
                                    ("stop", tuple(sorted(finding.code for finding in analysis.findings)))]


def test_jsonl_escapes_terminal_controls_and_anonymizes_with_stable_pseudonyms(tmp_path):
    source = analyze_files([str(CAPTURES / "haproxy-v2-smtp.pcap")])
    conn, other = [c for c in source.connections if listener_of(c) == listener_of(source.connections[0])][:2]
    conn.greeting = "220 mail.example.test \u202egnp.exe\x9b31m"
    stream = io.StringIO()
    sink = JsonlSink(anonymizer=Anonymizer())
    sink._handle = stream
    sink.connection(conn, [])
    sink.connection(other, [])
    text = stream.getvalue()
    assert "\u202e" not in text and "\x9b" not in text and "\\u202e" in text and "\\u009b" in text
    first, second = events_of(text)
    assert first["connection"]["greeting"].startswith("220 host") and "example.test" not in text
    for address in (conn.tcp.src_addr, conn.tcp.dst_addr):
        assert not re.search(rf"(?<![\d.]){re.escape(address)}(?![\d])", text)
    assert first["listener"] == second["listener"] != listener_of(conn)  # one pseudonym across events
    assert first["connection"]["tcp"]["dst_addr"] == first["listener"].rsplit(":", 1)[0]


def counters(packets: int) -> dict:
    """A heartbeat's counters, shaped as sensor.capture_counters gives them."""
    return {"packets": packets, "connections": 0, "open_flows": 0, "capture_dropped": 0,
            "flow_table_evictions": {"half_open": 0, "idle": 0, "cap": 0}}


def test_jsonl_file_is_reopened_after_logrotate_moved_it(tmp_path):
    path = tmp_path / "events.jsonl"
    sink = JsonlSink(path)
    sink.heartbeat(counters(packets=1))
    path.rename(tmp_path / "events.jsonl.1")
    sink.heartbeat(counters(packets=2))  # still the moved file, as logrotate expects until told
    sink.request_reopen()
    sink.heartbeat(counters(packets=3))
    sink.stop(final_report(Analysis()))
    assert [event["counters"]["packets"] for event in events_of((tmp_path / "events.jsonl.1").read_text())] == [1, 2]
    assert [event["event"] for event in events_of(path.read_text())] == ["heartbeat", "stop"]


def test_metrics_bound_the_listener_labels_and_refuse_a_port_in_use():
    port = free_port(CLIENT)
    sink = MetricsSink(CLIENT, port, max_listeners=2)
    source = analyze_files([str(CAPTURES / "haproxy-v2-smtp.pcap"), str(CAPTURES / "haproxy-v2-imap.pcap"),
                            str(CAPTURES / "haproxy-v2-sieve.pcap")])
    listeners = {listener_of(conn) for conn in source.connections}
    assert len(listeners) > 2
    for conn in source.connections:
        sink.connection(conn, [])
    with urllib.request.urlopen(f"http://{CLIENT}:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    labels = set(re.findall(r'^proxydiag_connections_total\{listener="([^"]+)"', text, re.M))
    assert len(labels) == 3 and OTHER in labels and labels - {OTHER} <= listeners
    clients = {conn.tcp.src_addr for conn in source.connections} - {conn.tcp.dst_addr for conn in source.connections}
    assert not any(f'"{client}' in text for client in clients)
    with pytest.raises(SensorError, match="cannot serve metrics"):
        MetricsSink(CLIENT, port)


def test_metrics_option_errors_are_one_line_and_exit_2():
    taken = free_port(CLIENT)
    with __import__("socket").socket() as holder:
        holder.bind((CLIENT, taken))
        holder.listen()
        for value, message in (("nonsense", "is not ADDR:PORT"), (f"{CLIENT}:99999", "port must be"),
                               (f"{CLIENT}:{taken}", "cannot serve metrics")):
            result = proxydiag("sniff", "-i", "lo", "--metrics", value, "--duration", "1")
            assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
            assert message in result.stderr


def test_analyze_refuses_jsonl_in_one_line():
    result = proxydiag("analyze", "--format", "jsonl", str(CAPTURES / "haproxy-v2-smtp.pcap"))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1


# --- live ------------------------------------------------------------------------------

@pytest.mark.lab
def test_sigterm_ends_the_capture_with_the_final_report(tmp_path):
    with running_lab():
        sniffer = start_sniff("-f", LAB_FILTER, "-F", "json", "--fail-on", "never")
        wait_capturing(sniffer)
        assert swaks(25).returncode == 0
        time.sleep(1.0)
        sniffer.send_signal(signal.SIGTERM)
        out, err = sniffer.communicate(timeout=30)
    assert sniffer.returncode == 0, err
    document = json.loads(out)
    assert {listener for listener in (f"{c['tcp']['dst_addr']}:{c['tcp']['dst_port']}" for c in document["connections"])} \
        == {f"{HAPROXY}:25", HEALTHY}


@pytest.mark.lab
def test_prometheus_scrapes_the_counters_and_alerts_on_the_broken_listener(tmp_path):
    rules = """groups:
- name: proxydiag
  rules:
  - alert: ProxyHeaderMissing
    expr: increase(proxydiag_findings_total{code="PD101"}[1m]) > 0
    for: 0s
"""
    exporter = f"{CLIENT}:{free_port(CLIENT)}"
    events_path, written = tmp_path / "events.jsonl", tmp_path / "sensor.pcap"
    healthy_sessions, broken_sessions = 4, 3
    with running_lab() as lab:
        sniffer = start_sniff("-f", LAB_FILTER, "--format", "jsonl", "-o", str(events_path), "--metrics", exporter,
                              "--heartbeat", "1", "-w", str(written), "--fail-on", "never")
        prometheus = Prometheus(lab, exporter, rules)
        prometheus.start()
        wait_until(lambda: prometheus.values("proxydiag_up") == {(): 1.0}, 30, "proxydiag_up scraped")
        for _ in range(healthy_sessions):
            assert swaks(25).returncode == 0
        for _ in range(broken_sessions):  # one after the other: the counter grows while Prometheus watches
            assert swaks(587).returncode != 0
            time.sleep(2.5)
        wait_until(lambda: prometheus.values(f'proxydiag_proxy_headers_total{{listener="{BROKEN}"}}')
                   == {(("listener", BROKEN), ("version", "none")): broken_sessions}, 30, "the broken leg's headers")
        wait_until(lambda: prometheus.values(f'proxydiag_proxy_headers_total{{listener="{HEALTHY}"}}')
                   == {(("listener", HEALTHY), ("version", "2")): healthy_sessions}, 30, "the healthy leg's headers")
        connections = prometheus.values("proxydiag_connections_total")
        assert connections[(("listener", f"{HAPROXY}:25"), ("service", "smtp"))] == healthy_sessions
        assert connections[(("listener", HEALTHY), ("service", "smtp"))] == healthy_sessions
        assert connections[(("listener", BROKEN), ("service", "submission"))] == broken_sessions
        assert prometheus.values("proxydiag_capture_packets_total")[()] > 0
        assert prometheus.values("proxydiag_capture_dropped_packets_total") == {(): 0.0}
        assert set(prometheus.values("proxydiag_flow_table_evictions_total")) == {
            (("reason", reason),) for reason in ("half_open", "idle", "cap")}
        firing = wait_until(lambda: [alert for alert in prometheus.api("alerts")["alerts"] if alert["state"] == "firing"],
                            30, "the PD101 alert fires")
        assert {alert["labels"]["listener"] for alert in firing} == {BROKEN}
        assert {alert["labels"]["severity"] for alert in firing} == {"error"}
        sniffer.send_signal(signal.SIGTERM)
        _, err = sniffer.communicate(timeout=60)
    assert sniffer.returncode == 0, err
    events = events_of(events_path.read_text())
    assert events[0]["event"] == "start" and events[-1]["event"] == "stop"
    assert {(event["finding"]["code"], event["listener"]) for event in events if event["event"] == "finding"
            and event["finding"]["severity"] == "error"} == {("PD101", BROKEN)}


def sensor_seconds() -> float:
    default = 600 if os.environ.get("CI") == "true" else 60
    return float(os.environ.get("PROXYDIAG_SENSOR_SECONDS", default))


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def generate(stop: threading.Event, rate: float, broken_every: int) -> int:
    """SMTP sessions through HAProxy at `rate` per second until `stop`; every
    `broken_every`-th to the broken listener (in a thread: it waits out Postfix)."""
    sessions = 0
    started = time.monotonic()
    while not stop.is_set():
        sessions += 1
        if sessions % broken_every == 0:
            threading.Thread(target=smtp_session, args=(587,), daemon=True).start()
        else:
            smtp_session(25)
        stop.wait(max(0.0, started + sessions / rate - time.monotonic()))
    return sessions


@pytest.mark.soak
@pytest.mark.lab
def test_a_bounded_run_streams_parseable_events_in_flat_memory_and_agrees_with_analyze(tmp_path):
    seconds = sensor_seconds()
    written, events_path = tmp_path / "run.pcap", tmp_path / "events.jsonl"
    with running_lab():
        sniffer = start_sniff("-f", LAB_FILTER, "--format", "jsonl", "-o", str(events_path), "--heartbeat", "5",
                              "-w", str(written), "--fail-on", "never")
        wait_capturing(sniffer)
        stop = threading.Event()
        generator = threading.Thread(target=generate, args=(stop, 4.0, 20), daemon=True)
        started = time.monotonic()
        generator.start()
        samples: list[tuple[float, int]] = []
        while time.monotonic() - started < seconds:
            samples.append((time.monotonic() - started, rss_kib(sniffer.pid)))
            time.sleep(1.0)
        stop.set()
        generator.join(timeout=30)
        time.sleep(6.0)  # the broken sessions end, Postfix's resets are seen
        sniffer.send_signal(signal.SIGTERM)
        _, err = sniffer.communicate(timeout=300)
    assert sniffer.returncode == 0, err
    events = events_of(events_path.read_text())
    assert events[0]["event"] == "start" and events[-1]["event"] == "stop"
    kinds = {event["event"] for event in events}
    assert {"connection", "finding", "heartbeat"} <= kinds
    first_half = max(rss for at, rss in samples if at < seconds / 2)
    second_half = max(rss for at, rss in samples if at >= seconds / 2)
    print(f"RSS first half max {first_half} KiB, second half max {second_half} KiB, "
          f"{len(events)} events in {seconds:.0f} s")
    assert second_half <= first_half * 1.10, f"RSS grew from {first_half} KiB to {second_half} KiB"
    replay = json.loads(proxydiag("analyze", "--format", "json", "--fail-on", "never", str(written), timeout=600).stdout)
    where = {c["id"]: f"{c['tcp']['dst_addr']}:{c['tcp']['dst_port']}" for c in replay["connections"]}
    expected = {(f["code"], where[f["connections"][0]] if f["connections"] else None) for f in replay["findings"]}
    streamed = {(f["code"], f["listener"]) for f in events[-1]["report"]["findings"]}
    assert streamed == expected
    assert ("PD101", BROKEN) in streamed
    told = [event["connection"]["id"] for event in events if event["event"] == "connection"]
    assert len(told) == len(set(told)) == len(replay["connections"])


# --- docs/sensor.md's snippets, checked by the programs that read them -----------------

SENSOR_DOC = ROOT / "docs" / "sensor.md"


def fenced(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", SENSOR_DOC.read_text(), re.M | re.S)


@pytest.mark.lab
def test_the_documented_prometheus_config_and_rules_pass_promtool(tmp_path):
    config, rules = fenced("yaml")
    (tmp_path / "prometheus.yml").write_text(config)
    (tmp_path / "proxydiag-rules.yml").write_text(rules)
    checked = subprocess.run(["promtool", "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True,
                             text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 4 rules found" in checked.stdout + checked.stderr
    assert 'proxydiag_findings_total{code="PD101"}' in rules and "for: 5m" in rules


@pytest.mark.lab
def test_the_documented_systemd_unit_verifies(tmp_path):
    (unit,) = fenced("ini")
    executable = Path(sys.executable).parent / "proxydiag"
    assert executable.exists(), "pip install -e . puts the proxydiag script beside the interpreter"
    (tmp_path / "proxydiag.service").write_text(unit.replace("/usr/local/bin/proxydiag", str(executable)))
    verified = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "proxydiag.service")], capture_output=True,
                              text=True)
    assert verified.returncode == 0, verified.stderr
    assert "proxydiag.service" not in verified.stderr, verified.stderr  # no warning about the unit itself
    for needed in ("User=proxydiag", "AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN", "NoNewPrivileges=yes",
                   "ProtectSystem=strict", "ReadWritePaths=", "-G 3600 -W 24", "--metrics 127.0.0.1:9465"):
        assert needed in unit
