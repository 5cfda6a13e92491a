"""The report's typed head (report/environment.py): what the human views read by attribute
instead of the JSON document's keys, from the documents the commands write."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from proxydiag.report.environment import CaptureRead, Environment, LogFileRead

REPO = Path(__file__).resolve().parent.parent


def document_of(*args: str) -> dict:
    run = subprocess.run([sys.executable, "-m", "proxydiag", *args, "--format", "json", "--fail-on", "never"],
                         capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_an_analyze_document_reads_as_its_captures_and_counts():
    document = document_of("analyze", "captures/haproxy-v2-smtp.pcap")
    environment = Environment.of(document)
    (capture,) = environment.inputs
    assert isinstance(capture, CaptureRead) and capture.path == "captures/haproxy-v2-smtp.pcap"
    assert capture.packets == document["inputs"][0]["packets"] > 0 and capture.state() == ()
    assert environment.summary.connections == document["summary"]["connections"] > 0
    assert environment.proxy_configs is None and environment.stalwart is None and not environment.logs_read
    assert [name for _, name in environment.summary.severity_counts()] == \
        [name for name, key in (("error", "errors"), ("warning", "warnings"), ("info", "infos")) if document["summary"][key]]


def test_inputs_keep_their_order_and_kinds():
    document = {"inputs": [{"path": "b.log", "format": "log", "lines": 3, "events": 2, "sources": {"stalwart": 2},
                            "foreign": 1, "malformed": 0},
                           {"path": "a.pcap", "format": "pcap", "linktypes": [1], "packets": 9, "damaged": "cut at 40",
                            "error": None}],
                "summary": {"connections": 0}, "logs": {"events": 2}}
    environment = Environment.of(document)
    assert [type(read) for read in environment.inputs] == [LogFileRead, CaptureRead]
    assert environment.logs[0].sources == (("stalwart", 2),) and environment.captures[0].state() == (("damaged", "cut at 40"),)
    assert environment.no_findings_text() == "No findings: the logs show no problem."


def test_no_findings_says_what_was_read_and_what_was_not_judged():
    bare = Environment.of({"summary": {"connections": 0}})
    assert bare.no_findings_text() == "No findings: no connection was captured."
    checked = Environment.of({"summary": {"connections": 0},
                              "proxy_configs": [{"kind": "nginx", "path": "n.conf", "listeners": ["*:25"], "routes": [],
                                                 "problems": ["n.conf:4: include of a missing file"]}],
                              "stalwart_config": {"path": "config.toml", "style": "toml", "listeners": [],
                                                  "trusted_networks": [], "problems": ["proxy.override is never read"]}})
    assert checked.problems() == ["n.conf:4: include of a missing file", "config.toml: proxy.override is never read"]
    assert checked.no_findings_text() == ("No findings: the proxy configurations and Stalwart's configuration show no "
                                          "problem (apart from what was not judged, above).")
    traffic = Environment.of({"summary": {"connections": 2}})
    assert traffic.no_findings_text() == "No findings: every header and greeting looks as expected."


def test_a_probed_target_reads_typed_and_says_its_verdict_in_one_line():
    from proxydiag.report.probe import ProbedTarget, ProbeSummary, listener_line

    item = {"target": "127.0.0.1:10025", "role": "server", "error": None,
            "verdict": {"protocol": "smtp", "software": "Stalwart", "greets_only_after_client_spoke": False,
                        "expects_header": True, "headers_accepted": ["v1", "v2"], "greets_without_header": False,
                        "time_to_greeting": None, "trusted": True, "tls": None, "starttls": None},
            "steps": [{"step": "none", "outcome": "silent", "exchange": ["(nothing)"]}]}
    target = ProbedTarget.of(item)
    assert [step.outcome for step in target.steps] == ["silent"]
    assert listener_line(target) == "smtp (Stalwart): expects a PROXY header from this host (v1, v2 accepted)"
    assert listener_line(ProbedTarget.of({**item, "error": "connection refused", "verdict": None})) == "connection refused"
    assert ProbeSummary.of({"targets": 1, "connections": 5, "warnings": 2}).counts.severity_counts() == [(2, "warning")]


def test_an_empty_logs_section_is_read_but_not_said_to_show_no_problem():
    """analyze with a log that gave no verdict writes "logs": {}: the headline counts the
    log, the "no findings" sentence does not claim the logs were judged."""
    environment = Environment.of({"summary": {"connections": 0}, "logs": {}})
    assert environment.logs_read and not environment.logs_judged
    assert environment.no_findings_text() == "No findings: no connection was captured."
