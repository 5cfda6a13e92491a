"""`analyze` on captures, proxy configurations and logs together: one report.

The lab (127.32.0.0/16: client .10, proxy .20, server .30): a real Postfix expects a
PROXY header on 10025 (`smtpd_upstream_proxy_protocol = haproxy`) and none on 10587. A
real HAProxy runs a configuration that sends no header to 10025, expects headers from
clients on 587 (`accept-proxy`) and still serves IMAP on 143; it logs raw lines to
stdout. The ticket's haproxy.cfg is what the administrator edited but never reloaded:
`send-proxy-v2` on the 10025 server, and the 143 frontend gone. swaks and curl talk
through the proxy while tcpdump records; `analyze cap.pcap haproxy.cfg haproxy.log` must
give one report where the configuration, the traffic and the log meet."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxydiag.pipeline.evidence import CAPTURE_MAGICS, classify, section_of
from tests.daemons import need
from tests.test_check_lab import Capture, postfix_lab, wait_listening

ROOT = Path(__file__).resolve().parent.parent
CLIENT, PROXY, SERVER = "127.32.0.10", "127.32.0.20", "127.32.0.30"
HEAD = f"""\
global
    log stdout format raw local0 info
defaults
    mode tcp
    log global
    option tcplog
    timeout connect 2s
    timeout client 2s
    timeout server 10s
    source {PROXY}
frontend fe_smtp
    bind {PROXY}:25
    default_backend be_smtp
frontend fe_submission
    bind {PROXY}:587 accept-proxy
    default_backend be_submission
backend be_submission
    server postfix {SERVER}:10587
"""
RUNNING = HEAD + f"""\
frontend fe_imap
    bind {PROXY}:143
    default_backend be_imap
backend be_imap
    server dovecot {SERVER}:10143
backend be_smtp
    server postfix {SERVER}:10025
"""
TICKET = HEAD + f"""\
backend be_smtp
    server postfix {SERVER}:10025 send-proxy-v2
"""


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "proxydiag", *args], capture_output=True, cwd=ROOT, input=stdin,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)


@pytest.fixture(scope="module")
def lab():
    with postfix_lab("proxydiag-evidence-lab.", [
        f"{SERVER}:10025 inet n - n - - smtpd -o smtpd_upstream_proxy_protocol=haproxy",
        f"{SERVER}:10587 inet n - n - - smtpd",
    ]) as work:
        running, ticket = work / "running.cfg", work / "haproxy.cfg"
        running.write_text(RUNNING)
        ticket.write_text(TICKET)
        for config in (running, ticket):
            subprocess.run([need("haproxy"), "-c", "-q", "-f", str(config)], check=True)
        capture = Capture(work / "cap.pcap", "127.32.0.0/16")
        with (work / "haproxy.log").open("wb") as log:
            proxy = subprocess.Popen([need("haproxy"), "-db", "-f", str(running)], stdout=log,
                                     stderr=subprocess.STDOUT)
            try:
                wait_listening(PROXY, 25)
                drive_clients()
            finally:
                capture.stop()
                proxy.terminate()
                proxy.wait(timeout=10)
        yield work


def drive_clients() -> None:
    swaks = [need("swaks"), "--server", PROXY, "--local-interface", CLIENT, "--from", "alice@example.test",
             "--to", "bob@example.test", "--timeout", "3", "--quit-after", "EHLO"]
    subprocess.run([*swaks, "--port", "25"], capture_output=True, timeout=30)
    subprocess.run([*swaks, "--port", "587"], capture_output=True, timeout=30)
    subprocess.run([need("curl"), "-s", "-m", "3", "--interface", CLIENT, f"imap://{PROXY}:143/"],
                   capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def report(lab):
    result = run("analyze", str(lab / "cap.pcap"), str(lab / "haproxy.cfg"), str(lab / "haproxy.log"),
                 "--format", "json", "--fail-on", "never")
    assert result.returncode == 0, result.stderr.decode()
    return json.loads(result.stdout)


def by_code(document: dict, code: str) -> list[dict]:
    return [finding for finding in document["findings"] if finding["code"] == code]


def line_of(path: Path, text: str) -> int:
    return next(number for number, line in enumerate(path.read_text().splitlines(), start=1) if text in line)


@pytest.mark.lab
def test_one_report_holds_every_kind_of_evidence(report, lab):
    kinds = {item.get("format") for item in report["inputs"]}
    assert {"pcap", "log"} <= kinds, report["inputs"]
    assert report["proxy_configs"][0]["path"] == str(lab / "haproxy.cfg")
    assert report["logs"]["per_listener"], "the log's events are counted"
    assert report["summary"]["log_events"] > 0
    assert report["connections"], "the capture's connections are there"


@pytest.mark.lab
def test_config_says_v2_traffic_carries_none_is_pd607_citing_line_and_frames(report, lab):
    server_line = line_of(lab / "haproxy.cfg", "send-proxy-v2")
    contradictions = [finding for finding in by_code(report, "PD607") if finding["evidence"].get("configured") == "v2"]
    assert contradictions, [finding["message"] for finding in report["findings"]]
    finding = contradictions[0]
    assert finding["evidence"]["proxy"].startswith(f"{lab / 'haproxy.cfg'}:{server_line}: server postfix")
    assert finding["evidence"]["observed"] == {"none": finding["count"]}
    connections = {conn["id"]: conn for conn in report["connections"]}
    for number in finding["connections"]:
        assert connections[number]["tcp"]["dst_port"] == 10025
        assert connections[number]["proxy_header"] is None
    assert finding["evidence"]["frames"] == finding["first_frames"]


@pytest.mark.lab
def test_a_port_the_file_no_longer_binds_is_pd607(report):
    unrouted = [finding for finding in by_code(report, "PD607") if finding["evidence"].get("port") == 143]
    assert unrouted, [finding["message"] for finding in by_code(report, "PD607")]
    connections = {conn["id"]: conn for conn in report["connections"]}
    assert all(connections[number]["tcp"]["dst_addr"] == PROXY for number in unrouted[0]["connections"])


@pytest.mark.lab
def test_a_server_port_no_route_targets_is_pd607(report):
    unrouted = [finding for finding in by_code(report, "PD607") if finding["evidence"].get("server_port") == 10143]
    assert unrouted, [finding["message"] for finding in by_code(report, "PD607")]
    connections = {conn["id"]: conn for conn in report["connections"]}
    assert all(connections[number]["tcp"]["src_addr"] == PROXY for number in unrouted[0]["connections"])


@pytest.mark.lab
def test_traffic_finding_quotes_the_log_line_of_its_connection(report, lab):
    connections = {conn["id"]: conn for conn in report["connections"]}
    to_postfix = [finding for finding in report["findings"] if finding["code"] in ("PD101", "PD401")
                  and any(connections[number]["tcp"]["dst_port"] == 10025 for number in finding["connections"])]
    assert to_postfix, [finding["message"] for finding in report["findings"]]
    session = line_of(lab / "haproxy.log", "be_smtp/postfix")
    assert any(line.startswith(f"{lab / 'haproxy.log'}:{session}: ") for line in to_postfix[0]["evidence"]["log_lines"])


@pytest.mark.lab
def test_stalwart_seeing_the_proxy_as_client_is_pd201_matched_to_the_leg(lab, report, tmp_path):
    """Stalwart's log (a line as its text tracer writes it) names the proxy's address as
    the client: the capture says that address is the proxy, and which leg it was."""
    from datetime import datetime, timezone

    from tests.test_logs import text_line

    leg = next(conn for conn in report["connections"] if conn["tcp"]["dst_port"] == 10025)
    stamp = datetime.fromtimestamp(leg["start_time"] + 0.2, timezone.utc).isoformat().replace("+00:00", "Z")
    stalwart_log = tmp_path / "stalwart.log"
    stalwart_log.write_text(text_line(stamp, "INFO", "SMTP connection started", "smtp.connection-start",
                                      f'listenerId = "smtp", localPort = 10025, remoteIp = {PROXY}, remotePort = '
                                      f'{leg["tcp"]["src_port"]}') + "\n")
    result = run("analyze", str(lab / "cap.pcap"), str(lab / "haproxy.cfg"), str(stalwart_log), "--format", "json",
                 "--fail-on", "never")
    document = json.loads(result.stdout)
    pd201 = by_code(document, "PD201")
    assert pd201, [finding["message"] for finding in document["findings"]]
    assert leg["id"] in pd201[0]["evidence"]["connections_matched"]


@pytest.mark.lab
def test_config_finding_cites_the_bind_line(report, lab):
    bind_line = line_of(lab / "haproxy.cfg", "accept-proxy")
    cited = [finding for finding in by_code(report, "PD109")
             if f"haproxy.cfg:{bind_line}" in json.dumps(finding["evidence"])]
    assert cited, [finding["evidence"] for finding in by_code(report, "PD109")]


@pytest.mark.lab
def test_log_finding_cites_its_connections(report):
    from_log = [finding for finding in by_code(report, "PD109") if "log_lines" in finding["evidence"]]
    assert from_log, "HAProxy logged the plain client on its accept-proxy bind"
    matched = from_log[0]["evidence"].get("connections_matched")
    assert matched
    connections = {conn["id"]: conn for conn in report["connections"]}
    assert {connections[number]["tcp"]["dst_port"] for number in matched} == {587}


@pytest.mark.lab
def test_findings_are_one_sorted_list_and_the_summary_counts_them(report):
    order = ("error", "warning", "info")
    keys = [(order.index(finding["severity"]), finding["code"]) for finding in report["findings"]]
    assert keys == sorted(keys)
    severities = [finding["severity"] for finding in report["findings"]]
    assert report["summary"]["errors"] == severities.count("error")
    assert report["summary"]["warnings"] == severities.count("warning")
    assert report["summary"]["infos"] == severities.count("info")


@pytest.mark.lab
def test_a_file_of_no_known_kind_is_one_line_and_the_others_are_reported(lab, tmp_path):
    junk = tmp_path / "notes.txt"
    junk.write_text("the proxy is broken, please help\n")
    result = run("analyze", str(lab / "cap.pcap"), str(junk), str(lab / "haproxy.cfg"), str(lab / "haproxy.log"),
                 "--format", "json")
    assert result.returncode == 2
    errors = result.stderr.decode().strip().splitlines()
    assert len(errors) == 1 and str(junk) in errors[0], errors
    document = json.loads(result.stdout)
    assert by_code(document, "PD607") and document["proxy_configs"] and document["logs"]


@pytest.mark.lab
def test_markdown_renders_and_anonymize_covers_every_kind(lab):
    result = run("analyze", str(lab / "cap.pcap"), str(lab / "haproxy.cfg"), str(lab / "haproxy.log"),
                 "--format", "markdown", "--anonymize", "--fail-on", "never")
    assert result.returncode == 0, result.stderr.decode()
    text = result.stdout.decode()
    assert "PD607" in text and "PD109" in text
    assert "127.32." not in text
    anonymized = run("analyze", str(lab / "cap.pcap"), str(lab / "haproxy.cfg"), str(lab / "haproxy.log"),
                     "--format", "json", "--anonymize", "--fail-on", "never")
    document = json.loads(anonymized.stdout)
    assert document["logs"] and document["proxy_configs"] and "127.32." not in anonymized.stdout.decode()


# --- classify -------------------------------------------------------------------------------


@pytest.mark.lab
def test_classify_by_content(lab):
    assert classify((lab / "cap.pcap").read_bytes()[:4096]) == "capture"
    assert classify((lab / "haproxy.cfg").read_bytes()) == "config"
    assert classify((lab / "haproxy.log").read_bytes()) == "log"
    assert classify(b"the proxy is broken\n") == "capture"  # the capture reader's error names it


@given(st.binary(max_size=512))
def test_classify_never_raises(data):
    assert classify(data) in ("capture", "config", "log")


@given(st.sampled_from(CAPTURE_MAGICS), st.binary(max_size=256))
def test_capture_magic_is_always_a_capture(magic, rest):
    assert classify(magic + rest) == "capture"


@given(st.lists(st.sampled_from(["frontend", "backend", "listen", "global", "defaults"]), min_size=1, max_size=6),
       st.from_regex(r"[a-z_]{1,12}", fullmatch=True))
def test_section_of_names_the_section_a_line_is_in(tmp_path_factory, kinds, name):
    path = tmp_path_factory.mktemp("sections") / "haproxy.cfg"
    named = ("frontend", "backend", "listen")
    heads = [f"{kind} {name}{index}" if kind in named else kind for index, kind in enumerate(kinds)]
    path.write_text("".join(f"{head}\n    server s 192.0.2.1:1\n" for head in heads))
    for index in range(len(kinds)):
        assert section_of(str(path), 2 * index + 2) == (f"{name}{index}" if kinds[index] in named else None)


@given(st.integers(-30_000, 30_000), st.integers(1, 65535), st.integers(1, 65535))
def test_a_log_line_and_a_connection_meet_within_the_window_on_the_same_port(milliseconds, port, other):
    from datetime import datetime, timezone

    from proxydiag.facts.model import Connection, Endpoints
    from proxydiag.logs.event import LogEvent
    from proxydiag.pipeline.evidence import MATCH_SECONDS, PortNames, same_event

    start, offset = 1_764_676_953.25, milliseconds / 1000  # log stamps have at most microseconds
    conn = Connection(id=1, input=0, first_frame=1, start_ts=start, tcp=Endpoints(PROXY, 40000, SERVER, port),
                      mid_stream=False)
    event = LogEvent(datetime.fromtimestamp(start + offset, timezone.utc), "stalwart", "network.proxy-error",
                     {"localPort": other})
    expected = abs(offset) <= MATCH_SECONDS and other == port
    assert same_event(event, conn, PortNames({})) == expected


@pytest.mark.lab
def test_a_capture_through_a_pipe_is_read_once_by_the_capture_reader(lab):
    """Process substitution (`analyze <(tcpdump -w -) haproxy.cfg`): the kind is not sniffed
    from a pipe, whose first bytes would be gone for the capture reader."""
    read, write = os.pipe()
    pipe = f"/dev/fd/{read}"
    result = subprocess.Popen([sys.executable, "-m", "proxydiag", "analyze", pipe, str(lab / "haproxy.cfg"),
                               "--format", "json", "--fail-on", "never"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, pass_fds=(read,))
    os.close(read)
    with os.fdopen(write, "wb") as sink:
        sink.write((lab / "cap.pcap").read_bytes())
    out, err = result.communicate(timeout=60)
    assert result.returncode == 0, err.decode()
    document = json.loads(out)
    assert document["connections"] and by_code(document, "PD607")


def test_check_reads_log_files_beside_the_configurations(tmp_path):
    """`check haproxy.cfg haproxy.log`: the configuration's finding and the log's, one report."""
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text("frontend fe\n    mode tcp\n    bind 127.32.9.9:25 accept-proxy\n    default_backend be\n"
                   "backend be\n    mode tcp\n    server s 127.32.9.10:25\n")
    log = tmp_path / "haproxy.log"  # the line HAProxy 2.6 logs for a client that sends no header (tests/test_logs.py)
    log.write_text("127.32.9.1:54211 [02/Dec/2026:11:20:35.953] fe/1: Received something which does not look like "
                   "a PROXY protocol header\n")
    result = subprocess.run([sys.executable, "-m", "proxydiag", "check", str(cfg), str(log), "--format", "json"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    document = json.loads(result.stdout)
    pd109 = [finding for finding in document["findings"] if finding["code"] == "PD109"]
    assert len(pd109) == 2
    assert any(str(cfg) in json.dumps(finding["evidence"]) for finding in pd109)
    assert any(f"{log}:1:" in line for finding in pd109 for line in finding["evidence"].get("log_lines", []))
