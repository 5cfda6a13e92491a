"""One way to make a finding: code, slug and severity from the catalog (the pages),
whatever the evidence; a lower severity only for a reason the finding reports. The
judges of each kind of evidence, fed facts built directly (tests/facts.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from proxydiag.configs.stalwart import StalwartConfig, load
from proxydiag.facts.expectations import ExpectationResolver
from proxydiag.rules import catalog, crosscheck
from proxydiag.rules import probe as probe_judge
from proxydiag.rules.base import LOWERED_REASONS, NOTE_REASONS, SEVERITIES, Options
from proxydiag.rules.evidence import traffic_vs_configs
from proxydiag.rules.finding import make_finding
from proxydiag.rules.judge import judge_all, tally_of
from proxydiag.rules.logs import judge as judge_logs
from proxydiag.rules.said import Sentence
from proxydiag.rules.tally import Tally
from tests.facts import connection, log_event, probe_step, proxy_config, route, target_probe

ROOT = Path(__file__).resolve().parent.parent
GREETING = b"220 mx.example.test ESMTP Postfix\r\n"
ANSWERS_V2 = GREETING + b"500 5.5.2 Error: bad syntax\r\n" * 3 + b"221 2.0.0 Bye\r\n"
EHLO = b"EHLO probe.example.test\r\n"
OFFER = GREETING + b"250-mx.example.test\r\n250-STARTTLS\r\n250 AUTH PLAIN LOGIN\r\n"


def test_a_finding_takes_slug_severity_and_page_from_the_catalog():
    finding = make_finding("PD301", Sentence("m"), {"x": 1}, connections=[3], frames=[14])
    page = catalog.load_pages()["PD301"]
    assert (finding.slug, finding.severity, finding.doc) == (page.slug, page.severity, "docs/findings/PD301.md")
    assert finding.to_dict()["severity_lowered"] is None and not finding.inferred and not finding.note


@pytest.mark.parametrize("reason", LOWERED_REASONS)
def test_a_lower_severity_is_reported_with_its_reason(reason):
    finding = make_finding("PD101", Sentence("m"), {}, lowered=reason)
    assert finding.severity == SEVERITIES[SEVERITIES.index(catalog.load_pages()["PD101"].severity) + 1]
    assert finding.to_dict()["severity_lowered"] == reason
    assert finding.inferred == (reason == "inferred") and finding.note == (reason in NOTE_REASONS)


def test_a_code_without_a_page_is_refused():
    with pytest.raises(LookupError):
        make_finding("PD999", Sentence("m"), {})


# --- the probe: the pages' severities, lowered only for a stated reason ----------------------


def probe_findings(*records, host="192.0.2.10", port=10025, role=None):
    probe = target_probe(host, port, *records, role=role)
    return {finding.code: finding for finding in probe_judge.findings(probe, probe_judge.verdict(probe))}


def test_probe_pd102_is_an_error_as_its_page_says():
    found = probe_findings(probe_step("none", GREETING, port=10025), probe_step("v2", ANSWERS_V2, port=10025))
    assert found["PD102"].severity == "error" and found["PD102"].severity_lowered is None


def test_probe_pd106_on_a_public_port_is_lowered_because_it_is_conditional():
    found = probe_findings(probe_step("none", GREETING, port=25), probe_step("v2", ANSWERS_V2, port=25), port=25)
    assert (found["PD106"].severity, found["PD106"].severity_lowered) == ("warning", "conditional")


def test_probe_pd301_is_one_step_below_its_page_with_the_reason():
    found = probe_findings(probe_step("v2", OFFER, EHLO), probe_step("v2-ssl", OFFER, EHLO))
    assert (found["PD301"].severity, found["PD301"].severity_lowered) == ("warning", "conditional")
    assert not found["PD301"].note  # the fix is printed


def test_probe_pd109_on_a_front_that_waits_for_a_header():
    found = probe_findings(probe_step("none", ended_by="server-fin", port=25), probe_step("v2", GREETING, port=25),
                           port=25)
    assert found["PD109"].severity == "error" and found["PD109"].slug == "proxy-expects-header-from-client"


# --- PD604 reads the given proxies' routes ---------------------------------------------------

STALWART_HTTP = """
[server.proxy]
trusted-networks = ["198.51.100.2/32"]

[server.listener."http"]
bind = ["[::]:8080"]
protocol = "http"
"""


def pd604(stalwart: StalwartConfig, *routes) -> list:
    tally = Tally(ExpectationResolver(None, {}, stalwart, None))
    findings = judge_all([], tally, Options(), stalwart, proxy_routes=tuple(routes))
    return [finding for finding in findings if finding.code == "PD604"]


@pytest.fixture
def stalwart_http(tmp_path) -> StalwartConfig:
    path = tmp_path / "config.toml"
    path.write_text(STALWART_HTTP)
    return load(str(path))


def test_pd604_without_proxies_given(stalwart_http):
    assert pd604(stalwart_http)


def test_pd604_not_raised_where_every_given_route_to_the_listener_sends_a_header(stalwart_http):
    assert not pd604(stalwart_http, route(("192.0.2.10", 8080), "v2", front_port=443))


def test_pd604_raised_where_a_given_route_sends_none(stalwart_http):
    assert pd604(stalwart_http, route(("192.0.2.10", 8080), "v2", front_port=443),
                 route(("192.0.2.10", 8080), "none", front_port=80))


# --- PD606's three meanings, three codes: judged from facts ----------------------------------

PROXY = "198.51.100.2"


def test_pd607_a_route_s_legs_carry_another_header_than_it_sends():
    legs = [connection(1, src=(PROXY, 40001), header="none", client_first="EHLO x"),
            connection(2, src=(PROXY, 40002), header="v2")]
    (finding,) = traffic_vs_configs(legs, [proxy_config(route(("192.0.2.10", 10025), "v2"))])
    assert (finding.code, finding.slug, finding.severity) == ("PD607", "traffic-vs-proxy-config", "error")
    assert finding.evidence["configured"] == "v2" and finding.evidence["observed"] == {"none": 1}
    assert finding.connections == [1] and finding.frames == [10] and finding.fix is None  # the page's fix


def test_pd607_clients_reach_a_proxy_port_no_listener_binds():
    config = proxy_config(route(("192.0.2.10", 10025), "v2"))
    front_leg = connection(1, src=("203.0.113.7", 50000), dst=("192.0.2.20", 143), protocol="imap")
    back_leg = connection(2, src=("192.0.2.20", 40000), dst=("192.0.2.10", 10025), header="v2")
    found = traffic_vs_configs([front_leg, back_leg], [config])
    assert [(finding.code, finding.evidence.get("port")) for finding in found] == [("PD607", 143)]


def test_pd607_absent_when_the_traffic_is_what_the_file_says():
    legs = [connection(1, src=(PROXY, 40001), header="v2")]
    assert traffic_vs_configs(legs, [proxy_config(route(("192.0.2.10", 10025), "v2"))]) == []


def test_pd608_a_route_to_a_port_no_stalwart_listener_binds(stalwart_http):
    judgements = crosscheck.check([proxy_config(route(("192.0.2.10", 10587), "v2", front_port=587))],
                                  crosscheck.Setting(stalwart=stalwart_http))
    (finding,) = [crosscheck.to_finding(j) for j in judgements if j.code == "PD608"]
    assert (finding.slug, finding.severity, finding.severity_lowered) == ("unknown-listener-port", "warning", "inferred")
    assert not [j for j in judgements if j.code == "PD606"]


def test_pd608_traffic_to_a_port_no_stalwart_listener_binds(stalwart_http):
    conn = connection(1, src=(PROXY, 40001), dst=("192.0.2.10", 10587), header="v2")
    tally = tally_of([conn], ExpectationResolver(None, {}, stalwart_http, None), Options())
    found = {finding.code: finding for finding in judge_all([conn], tally, Options(), stalwart_http)}
    assert found["PD608"].severity == "error" and found["PD608"].evidence == {"port": 10587}
    assert "PD606" not in found


# --- log lines ---------------------------------------------------------------------------------


def test_haproxy_log_of_a_client_without_a_header_is_pd109_at_its_page_s_severity():
    events = [log_event("haproxy.proxy-timeout", seconds=index, frontend="submission", bind="1",
                        error="Timeout while waiting for PROXY protocol header", client="127.0.0.1") for index in range(2)]
    (finding,) = judge_logs(events).findings
    assert (finding.code, finding.severity, finding.proxy, finding.count) == ("PD109", "error", "HAProxy", 2)
    assert finding.severity_lowered is None and len(finding.evidence["log_lines"]) == 2


def test_log_findings_that_rest_on_a_guess_say_so():
    starts = [log_event("smtp.connection-start", source="stalwart", seconds=index, remoteIp=PROXY,
                        listenerId="smtp", localPort=25) for index in range(6)]
    (finding,) = judge_logs(starts).findings
    assert (finding.code, finding.severity, finding.severity_lowered, finding.inferred) == \
        ("PD202", "info", "inferred", True)


# --- analyze with configurations beside the capture: PD604 reads their routes there too --------

HAPROXY_TO_HTTP = """\
defaults
    mode tcp
frontend fe
    bind 127.80.0.20:443
    default_backend be
backend be
    server s 127.80.0.30:8080{sends}
"""


def report_codes(*args: str) -> list[str]:
    run = subprocess.run([sys.executable, "-m", "proxydiag", *args, "--format", "json", "--fail-on", "never"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert run.returncode == 0, run.stderr
    return [finding["code"] for finding in json.loads(run.stdout)["findings"]]


@pytest.mark.parametrize("sends, raised", [(" send-proxy-v2", False), ("", True)])
def test_analyze_and_check_agree_on_pd604_from_the_given_routes(tmp_path, sends, raised):
    stalwart = tmp_path / "config.toml"
    stalwart.write_text(STALWART_HTTP + "\n[http]\nuse-x-forwarded = true\n")
    haproxy = tmp_path / "haproxy.cfg"
    haproxy.write_text(HAPROXY_TO_HTTP.format(sends=sends))
    analyzed = report_codes("analyze", str(ROOT / "captures" / "haproxy-v2-smtp.pcap"), str(haproxy),
                            "--stalwart-config", str(stalwart))
    checked = report_codes("check", str(haproxy), "--stalwart-config", str(stalwart))
    assert ("PD604" in analyzed, "PD604" in checked) == (raised, raised)
    assert analyzed.count("PD605") == checked.count("PD605") == 1  # the Stalwart file judged once


# --- PD104: one Stalwart proxy's v2 headers and its PROXY UNKNOWN fallback -----------------------


def mixed_findings(*legs: tuple[str, str]) -> list:
    """Legs to one listener, each (its own source, the header it carries), judged by the capture rules."""
    connections = [connection(number, src=(source, 40000 + number), dst=("192.0.2.10", 10143), header=header,
                              client_first="a1 CAPABILITY", protocol="imap")
                   for number, (source, header) in enumerate(legs, start=1)]
    return [f for f in judge_all(connections, tally_of(connections, ExpectationResolver(), Options()), Options())
            if f.code == "PD104"]


def test_pd104_names_stalwart_s_proxy_falling_back_to_proxy_unknown():
    (pd104,) = mixed_findings(("198.51.100.2", "v2"), ("198.51.100.2", "v1-unknown"), ("198.51.100.2", "v2"))
    assert pd104.proxy == "Stalwart proxy" and "configured differently" not in pd104.message
    assert "v1 PROXY UNKNOWN lines (1) from one sender, 198.51.100.2" in pd104.message
    assert "section Stalwart proxy" in pd104.message
    assert catalog.load_pages()["PD104"].fix_for(pd104.proxy).startswith("Stalwart proxy:")


@pytest.mark.parametrize("legs", [
    (("198.51.100.2", "v2"), ("198.51.100.2", "v1")),  # a v1 line with addresses: configured so
    (("198.51.100.2", "v2"), ("198.51.100.3", "v1-unknown")),  # two senders
], ids=["v1-with-addresses", "two-senders"])
def test_pd104_still_tells_two_configurations_apart(legs):
    (pd104,) = mixed_findings(*legs)
    assert "two proxies, or two server lines, are configured differently" in pd104.message and pd104.proxy is None
