"""One situation, several kinds of evidence, one code at one severity (its page's): the
mistakes of the shipped captures, shown also as the configuration that makes them, the log
lines they leave and the probe's steps, each run through its command (the probe's steps
built as facts: the lab's probe of real daemons is tests/test_check_lab.py's).

- PD101: HAProxy (127.80.0.20) without send-proxy in front of a listener (10025) that trusts
  it and so waits for a header: capture, configuration, Stalwart's log.
- PD102: HAProxy sends a v2 header to a listener (127.80.0.31:10025) that does not trust it:
  capture, configuration, probe. No log reader knows a line for it: Stalwart logs nothing
  of an untrusted peer's header but the commands it makes (a `tls.handshake-error` at debug
  level on implicit TLS, which plaintext without a header leaves too).
- PD103: a sender puts a malformed v1 header (port `070`) first, to a listener that requires
  a header: capture (to Postfix), and the log of an HAProxy front that requires one (its
  "Received an invalid PROXY protocol header", conn_err_code_str() of src/connection.c, as
  the lab's real HAProxy writes it: tests/test_logs.py). A configuration cannot show a
  malformed header, and the probe sends only well-formed ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from proxydiag.cli import app
from proxydiag.logs.stalwart import format_text_line
from proxydiag.rules import catalog
from proxydiag.rules import probe as probe_judge
from tests.facts import log_event, probe_step, target_probe
from tests.stalwart_configs import stalwart_toml

ROOT = Path(__file__).resolve().parent.parent
PROXY = "127.80.0.20"
HAPROXY = """\
defaults
    mode tcp
    source {proxy}
frontend smtp
    bind :25
    default_backend mail
backend mail
    server postfix {server}:10025{sends}
"""
GREETING = b"220 mail.example.test ESMTP Postfix\r\n"
BAD_SYNTAX = b"500 5.5.2 Error: bad syntax\r\n"


def findings_of(*args: str) -> list[dict]:
    run = CliRunner().invoke(app, [*args, "--format", "json", "--fail-on", "never"])
    assert run.exit_code == 0, run.output
    return json.loads(run.stdout)["findings"]


def severities(findings: list[dict], code: str) -> list[str]:
    return sorted({finding["severity"] for finding in findings if finding["code"] == code})


def stalwart_log(path: Path, count: int = 3) -> Path:
    """Stalwart's text log of header-less connections from a trusted peer, at irregular times
    (clients, not a health check)."""
    events = [log_event("network.proxy-error", source="stalwart", seconds=seconds, listenerId="smtp", localPort=10025,
                        remoteIp=PROXY, remotePort=40000 + seconds, reason="end of stream")
              for seconds in (0, 7, 9)[:count]]
    path.write_text("".join(format_text_line(event) + "\n" for event in events))
    return path


@pytest.fixture
def pd101(tmp_path) -> dict[str, list[dict]]:
    stalwart = tmp_path / "config.toml"
    stalwart.write_text(stalwart_toml("smtp", trusted=[PROXY]))
    config = tmp_path / "haproxy.cfg"
    config.write_text(HAPROXY.format(proxy=PROXY, server="127.80.0.30", sends=""))
    return {
        "capture": findings_of("analyze", str(ROOT / "captures" / "no-header-to-proxy-listener.pcap"),
                               "--stalwart-config", str(stalwart)),
        "configuration": findings_of("check", str(config), "--stalwart-config", str(stalwart)),
        "log": findings_of("logs", str(stalwart_log(tmp_path / "stalwart.log"))),
    }


@pytest.fixture
def pd102(tmp_path) -> dict[str, list[dict]]:
    stalwart = tmp_path / "config.toml"
    stalwart.write_text(stalwart_toml("smtp", trusted=["192.0.2.99"]))
    config = tmp_path / "haproxy.cfg"
    config.write_text(HAPROXY.format(proxy=PROXY, server="127.80.0.31", sends=" send-proxy-v2"))
    probed = target_probe("127.80.0.31", 10025, probe_step("none", GREETING, port=10025),
                          probe_step("v2", GREETING + BAD_SYNTAX * 3, port=10025))
    return {
        "capture": findings_of("analyze", str(ROOT / "captures" / "header-to-plain-listener.pcap")),
        "configuration": findings_of("check", str(config), "--stalwart-config", str(stalwart)),
        "probe": [finding.to_dict() for finding in probe_judge.findings(probed, probe_judge.verdict(probed))],
    }


@pytest.fixture
def pd103(tmp_path) -> dict[str, list[dict]]:
    log = tmp_path / "haproxy.log"
    log.write_text("".join(f"203.0.113.7:{40000 + n} [05/Dec/2026:10:00:0{n}.000] fe_smtp/1: Received an invalid PROXY "
                           "protocol header\n" for n in range(3)))
    return {
        "capture": findings_of("analyze", str(ROOT / "captures" / "malformed-v1.pcap")),
        "log": findings_of("logs", str(log)),
    }


@pytest.mark.parametrize("code", ["PD101", "PD102", "PD103"])
def test_one_situation_gives_one_code_and_severity_through_each_kind_of_evidence(code, request):
    shown = request.getfixturevalue(code.lower())
    page = catalog.load_pages()[code].severity
    assert {kind: severities(findings, code) for kind, findings in shown.items()} == {kind: [page] for kind in shown}, {
        kind: sorted((finding["code"], finding["severity"]) for finding in findings) for kind, findings in shown.items()}


def test_each_kind_cites_its_own_evidence(pd101, pd102):
    def first(findings: list[dict], code: str) -> dict:
        return next(finding for finding in findings if finding["code"] == code)

    assert first(pd101["capture"], "PD101")["first_frames"]
    assert "haproxy.cfg:8" in first(pd101["configuration"], "PD101")["evidence"]["proxy"]
    assert all("stalwart.log:" in line for line in first(pd101["log"], "PD101")["evidence"]["log_lines"])
    assert first(pd101["log"], "PD101")["count"] == 3
    assert "500 5.5.2" in first(pd102["probe"], "PD102")["message"]
    assert first(pd102["probe"], "PD102")["evidence"]["steps"] == ["v2"]
