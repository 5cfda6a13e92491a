"""`--anonymize` by typed names and an allowlist (issue 27 item 3): wire, log and
certificate text keeps only the tokens proxydiag knows, every other token a stable
pseudonym; a typed finding's message is told through the pseudonyms, never rewritten
from prose."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxydiag.pipeline.analysis import Settings, diagnose
from proxydiag.report.allowlist import allowed_text, is_known
from proxydiag.report.anonymize import Anonymizer, anonymize
from proxydiag.report.model import Report, View
from proxydiag.report.pseudonyms import Pseudonyms
from proxydiag.report.render import render
from proxydiag.report.views import told
from proxydiag.rules.finding import make_finding
from proxydiag.rules.said import Sentence
from tests.craft import Conversation, write_pcap
from tests.test_said import _Reached

# --- the leaks issue 27 names -------------------------------------------------------------


def test_a_single_label_host_in_a_probe_greeting_is_hidden_in_the_exchange_and_the_message():
    document = {"schema": "proxydiag-probe/1", "options": {},
                "targets": [{"target": "192.0.2.7:25", "address": "192.0.2.7",
                             "steps": [{"exchange": ["0.001 S: 220 mailhub ESMTP Postfix"]}]}],
                "findings": [{"code": "PD102", "message": "192.0.2.7:25 answered '220 mailhub ESMTP Postfix'",
                              "evidence": {}, "fix": ""}]}
    shown = json.dumps(anonymize(document))
    assert "mailhub" not in shown
    assert "0.001 S: 220 host1.anon.invalid ESMTP Postfix" in shown  # the same pseudonym in both
    assert "answered '220 host1.anon.invalid ESMTP Postfix'" in shown


def test_an_ipv6_address_that_ends_a_sentence_is_hidden():
    document = {"findings": [{"code": "PD101", "message": "No header from 2001:db8:5::7. Nor from [2001:db8:5::8]:25.",
                              "evidence": {"reply": "421 closing, peer 2001:db8:5::9."}}]}
    shown = json.dumps(anonymize(document))
    assert "2001:db8:5::" not in shown
    assert re.search(r"from 2001:db8:200::\d\. Nor from \[2001:db8:200::\d\]:25\.", shown)


def test_a_single_label_name_anywhere_in_wire_text_is_hidden():
    """Not only where a protocol names a host: the allowlist keeps what it knows, whatever
    the rest looks like (a client's EHLO word, a TLS client certificate's CN)."""
    document = {"connections": [{"client_first": "EHLO bobs-laptop", "server_first_line": "* OK mailhub ready",
                                 "evidence": {"cn": "mallory"}, "tls": {"server_name": "intranet"},
                                 "opening": {"capabilities": ["PIPELINING", "X-ACMECORP-ROUTE"]}}]}
    shown = json.dumps(anonymize(document))
    assert '"PIPELINING", "word' in shown
    for original in ("bobs-laptop", "mailhub", "mallory", "intranet", "ACMECORP"):
        assert original not in shown
    assert "EHLO " in shown and "* OK " in shown and " ready" in shown


# --- the allowlist itself -------------------------------------------------------------------


def test_known_tokens_stay_and_the_rest_becomes_stable_pseudonyms():
    names = Pseudonyms()
    text = "250-mx7.example.org Hello zork [10.1.2.3]\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 AUTH PLAIN LOGIN"
    shown = allowed_text(text, names)
    assert shown == ("250-host1.anon.invalid Hello word1 [10.200.0.1]\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n"
                     "250 AUTH PLAIN LOGIN")
    assert allowed_text("zork at 10.1.2.3", names) == "word1 at 10.200.0.1"  # the same original, the same pseudonym


def test_reply_codes_numbers_escapes_and_punctuation_are_known():
    for token in ("220", "250-", "5.7.1", "+OK", "-ERR", "LITERAL+", "\\x0d\\x0a", "****", "2026-11-12T10:00:01Z",
                  "(Debian)", "[CAPABILITY", "network.proxy-error", "remoteIp", "HTTP/1.1"):
        assert allowed_text(token, Pseudonyms()) == token, token
    for token in ("mailhub", "Acme", "zq42"):
        assert not is_known(token), token


@pytest.mark.parametrize("run", ["\\x00", "250-", "a/", "zq=", "[", "-"])
def test_a_token_thousands_of_pieces_long_is_shown_without_recursing(run):
    """Binary wire text escaped by a view is one long token of escapes (4 KiB of it)."""
    shown = allowed_text("220 ready " + run * 5_000 + "zq", Pseudonyms())
    assert shown.startswith("220 ready ") and "zq" not in shown


@given(st.text(max_size=300))
def test_any_text_goes_through_the_allowlist(text):
    names = Pseudonyms()
    shown = allowed_text(text, names)
    assert allowed_text(text, names) == shown  # the same pseudonyms again


# --- typed findings -------------------------------------------------------------------------


def test_a_typed_finding_is_told_through_the_pseudonyms_of_the_whole_report():
    said = _Reached("2001:db8:5::25", 25, "220 mailhub ESMTP zorkmail")
    finding = make_finding("PD101", said, {})
    document = {"connections": [{"tcp": {"dst_addr": "2001:db8:5::25"}, "greeting": "220 mailhub ESMTP zorkmail"}],
                "findings": [finding.to_dict()]}
    shown = anonymize(document, findings=[finding])
    address = shown["connections"][0]["tcp"]["dst_addr"]
    greeting = shown["connections"][0]["greeting"]
    assert shown["findings"][0]["message"] == f"[{address}]:25 answered {greeting!r}"
    assert "mailhub" not in json.dumps(shown) and "zorkmail" not in json.dumps(shown)


def test_an_anonymised_report_has_typed_findings_holding_no_original():
    said = _Reached("2001:db8:5::25", 25, "220 mailhub ESMTP zorkmail")
    finding = make_finding("PD101", said, {"greeting": "220 mailhub ESMTP zorkmail"}, fix="at 2001:db8:5::25")
    document = {"findings": [{**finding.to_dict(), "listener": "[2001:db8:5::25]:25"}]}
    shown, (told,) = Anonymizer().report(document, findings=[finding])
    assert told.said is None and told.message_for() == told.message == shown["findings"][0]["message"]
    assert told.evidence == shown["findings"][0]["evidence"] and told.fix == shown["findings"][0]["fix"]
    assert (told.code, told.severity, told.connections) == (finding.code, finding.severity, finding.connections)
    assert not [original for original in ("2001:db8:5::25", "mailhub", "zorkmail")
                if original in json.dumps(shown) or original in repr(told)]


# --- property: nothing original survives in any format --------------------------------------

ORIGINAL_WORDS = st.from_regex(r"zq[a-z0-9]{1,8}", fullmatch=True)  # `zq` never stands in a pseudonym
V4 = st.tuples(st.integers(0, 199), st.integers(0, 255), st.integers(1, 254)).map(lambda t: f"10.{t[0]}.{t[1]}.{t[2]}")
V6 = st.tuples(st.integers(1, 0xffff), st.integers(1, 0xffff)).map(lambda t: f"2001:db8:77:{t[0]:x}::{t[1]:x}")
HOSTS = st.lists(ORIGINAL_WORDS, min_size=1, max_size=3).map(lambda labels: ".".join([*labels, "zqtld"]))
KNOWN = st.sampled_from(["ESMTP", "Postfix", "ready", "OK", "5.7.1", "AUTH", "PLAIN", "(Debian)"])
TOKENS = st.one_of(ORIGINAL_WORDS, V4, V6, HOSTS, KNOWN)
JOINERS = st.sampled_from([" ", ", ", ". ", " (", ") ", " [", "] ", ": ", " '", "' ", "=", "@", "/", " <", "> "])


@st.composite
def texts(draw: st.DrawFn) -> tuple[str, list[str]]:
    tokens = draw(st.lists(TOKENS, min_size=1, max_size=8))
    joined = tokens[0]
    for token in tokens[1:]:
        joined += draw(JOINERS) + token
    addresses = [token for token in tokens if re.fullmatch(r"10(?:\.\d+){3}|2001:db8:77:.*", token)]
    return joined + draw(st.sampled_from(["", ".", ":"])), addresses


def assert_no_original(shown: str, addresses: list[str]) -> None:
    assert "zq" not in shown, shown
    for address in addresses:
        assert not re.search(r"(?<![\w:.])" + re.escape(address) + r"(?![\w:])", shown), (address, shown)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts(), texts(), texts())
def test_random_greeting_log_line_and_subject_keep_no_original_in_any_format(tmp_path, greeting, client, line):
    (greeting_text, greeting_addresses), (client_text, client_addresses), (line_text, line_addresses) = \
        greeting, client, line
    conv = Conversation(("192.0.2.5", 40000), ("192.0.2.25", 25)).handshake()
    conv.server_sends(f"220 {greeting_text}\r\n".encode())
    conv.client_sends(f"EHLO {client_text}\r\n".encode())
    conv.close(by="client")
    analysis = diagnose([str(write_pcap(tmp_path / "any.pcap", [conv]))], Settings())
    document = told(analysis.to_dict())
    quoted = make_finding("PD101", Sentence("a log line and a certificate quoted"), {
        "log_lines": [f"stalwart.log:3: 2026-11-12T10:00:01Z WARN {line_text}"], "cn": line_text})
    document["findings"].append({**quoted.to_dict(), "fix": ""})
    addresses = greeting_addresses + client_addresses + line_addresses
    report = Report(document, findings=[*analysis.findings, quoted])
    for form in ("rich", "markdown", "html", "json"):
        shown = "".join(render(report, View(form, anonymize=True, verbose=True)))
        assert_no_original(shown, addresses)
    for connection in document["connections"]:  # sniff's jsonl events
        assert_no_original(json.dumps(Anonymizer().connection(connection)), addresses)
    subject = anonymize({"schema": "proxydiag-probe/1", "targets": [
        {"target": "192.0.2.7:25", "tls": {"subject": f"CN={line_text},O={client_text},C=DE"}}]})
    assert_no_original(json.dumps(subject), addresses)


def test_sniff_events_tell_a_typed_finding_through_the_pseudonyms(tmp_path):
    """jsonl: the finding event and the final report's findings, each through the one
    Anonymizer of the stream (the same pseudonym in both)."""
    from proxydiag.facts.model import Analysis
    from proxydiag.pipeline.sensor import JsonlSink

    finding = make_finding("PD101", _Reached("2001:db8:5::25", 25, "220 mailhub ESMTP"), {})
    sink = JsonlSink(tmp_path / "events.jsonl", Anonymizer())
    sink.finding(finding, True, None, 1)
    document = told(Analysis(findings=[finding]).to_dict())
    del document["connections"]  # as sniff's final report
    sink.stop(Report(document, findings=[finding]))
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    told_live, told_at_stop = events[0]["finding"]["message"], events[1]["report"]["findings"][0]["message"]
    assert told_live == told_at_stop == "[2001:db8:200::1]:25 answered '220 host1.anon.invalid ESMTP'"


def test_a_quoted_configuration_line_keeps_only_what_proxydiag_knows():
    """A HAProxy server's name is a single label nothing marks as a host: the evidence
    quoting its line and the fix's diff of it keep the directives, not the name."""
    line = "server mailhub-acme 10.77.1.2:10025 send-proxy check"
    fix = f"In /srv/acme/haproxy.cfg, line 5:\n\n```diff\n-    {line}\n+    {line}\n```\n\nand so on"
    document = {"proxy_configs": [{"path": "/srv/acme/haproxy.cfg"}],
                "findings": [{"evidence": {"proxy": f"/srv/acme/haproxy.cfg:5: {line}"}, "fix": fix}]}
    shown = anonymize(document, ["/srv/acme/haproxy.cfg"])
    finding = shown["findings"][0]
    assert finding["evidence"]["proxy"] == "input1.cfg:5: server word1 10.200.0.1:10025 send-proxy check"
    assert finding["fix"] == ("In input1.cfg, line 5:\n\n```diff\n-    server word1 10.200.0.1:10025 send-proxy check\n"
                              "+    server word1 10.200.0.1:10025 send-proxy check\n```\n\nand so on")


def test_the_probe_report_carries_the_findings_its_document_lists(tmp_path):
    """What a probe's findings said, typed, reaches the anonymiser as for every command."""
    from proxydiag.pipeline.probing import ProbeRequest, probe
    from tests.test_probe_hostile import certificate, start_listener

    listener = start_listener("tls-imap", "127.91.0.7", 10994, *certificate(tmp_path, "org", " Acme Mailhub GmbH"))
    try:
        outcome = probe(ProbeRequest(say=lambda line: None, targets=["127.91.0.7:10994"], timeout=3))
    finally:
        listener.kill()
        listener.wait(timeout=10)
    assert outcome.report is not None
    listed = [finding["code"] for finding in outcome.report.document["findings"]]
    assert listed and [finding.code for finding in outcome.report.findings] == listed
    assert len(outcome.report.typed()) == len(listed)


def test_a_file_the_command_read_is_named_by_its_pseudonym_inside_quoted_text():
    """check's evidence on a Stalwart listener ends with where its trusted networks are set:
    the file keeps its pseudonym and line there too, and proxydiag's own words stay."""
    stalwart = "/srv/acme/stalwart/config.toml"
    quoted = f"{stalwart}:8: listener 'imaptls', trusted networks 10.0.0.1 ({stalwart}:12)"
    document = {"stalwart_config": {"path": stalwart}, "findings": [{"evidence": {"stalwart": quoted}}]}
    shown = anonymize(document, [stalwart])["findings"][0]["evidence"]["stalwart"]
    assert shown == "input1.toml:8: listener 'word1', trusted networks 10.200.0.1 (input1.toml:12)"


def test_the_unchanged_line_a_fix_inserts_after_is_quoted_text_too():
    """An insertion shows the user's line it follows as context (` proxy_pass NAME;`): the
    upstream's name is theirs, as on a changed line."""
    fix = "In /srv/acme/nginx.conf, line 14:\n\n```diff\n         proxy_pass imaps_backend;\n+        proxy_protocol on;\n```"
    document = {"proxy_configs": [{"path": "/srv/acme/nginx.conf"}], "findings": [{"fix": fix}]}
    shown = anonymize(document, ["/srv/acme/nginx.conf"])["findings"][0]["fix"]
    assert "imaps_backend" not in shown and "acme" not in shown
    assert shown == "In input1.conf, line 14:\n\n```diff\n         proxy_pass word1;\n+        proxy_protocol on;\n```"
