"""The header rules judged from hops built directly (tests/facts.py), whatever the evidence."""

from __future__ import annotations

from dataclasses import replace

import pytest

from proxydiag.configs.stalwart import load
from proxydiag.facts.hop import Hop, Party, Provenance
from proxydiag.facts.log_hops import ban_hop, client_without_header_hop, malformed_header_hop, missing_header_hop
from proxydiag.facts.probe_hops import answered_hop, local_refused_hop, unheaded_hop, verdict
from proxydiag.rules import catalog, crosscheck
from proxydiag.rules.finding import make_finding
from proxydiag.rules.hops import HOP_RULES, LOCAL_COMMAND, MALFORMED_HEADER, judge_hops
from tests.facts import hop, log_event, probe_step, proxy_config, route, target_probe
from tests.stalwart_configs import stalwart_toml


class _Hidden:
    def address(self, address: str) -> str:
        return "192.0.2.1"

    def host(self, name: str) -> str:
        return "host1.anon.invalid"

    def path(self, path: str) -> str:
        return "input1"

    def text(self, text: str) -> str:
        return "x"


def codes(*hops) -> list[tuple[str, str | None]]:
    return [(hit.code, hit.lowered) for hit in judge_hops(hops)]


@pytest.mark.parametrize("kind", ["capture", "config", "log", "probe"])
def test_the_same_hop_gives_the_same_code_whatever_showed_it(kind):
    assert codes(hop("none", "required", kind=kind)) == [("PD101", None)]
    assert codes(hop("v2", "none", kind=kind)) == [("PD102", None), ("PD206", None)]
    assert codes(hop("none", "required", role="proxy", kind=kind)) == [("PD109", None)]
    assert codes(hop(waits_for_client=True, server_speaks_first=True, expects=None, kind=kind)) == [("PD110", None)]


def test_pd101_needs_a_listener_that_requires_a_header_and_none_sent():
    assert codes(hop("none", "none")) == [] and codes(hop("none", "optional")) == [] and codes(hop("v1", "required")) == []
    assert codes(hop("none", None)) == []


def test_pd101_is_lowered_where_the_expectation_was_guessed():
    assert codes(hop("none", "required", inferred=True)) == [("PD101", "inferred")]


def test_pd102_only_for_a_header_the_server_does_not_take_and_pd206_where_the_sender_is_known():
    assert codes(hop("v1", "none")) == [("PD102", None), ("PD206", None)]
    assert codes(replace(hop("v1", "none"), sender=Party())) == [("PD102", None)]
    assert codes(replace(hop("local", "none"), sender=Party())) == [("PD102", None)]  # read as commands all the same
    assert codes(hop("v2", "required")) == [] and codes(hop("v2", None)) == []


def test_a_header_demanded_by_a_proxy_front_is_pd109_not_pd101():
    assert codes(hop("none", "required", role="proxy")) == [("PD109", None)]
    assert codes(hop("none", "required", role="proxy", inferred=True)) == [("PD109", "inferred")]
    assert codes(hop("none", "optional", role="proxy")) == []


@pytest.mark.parametrize("speaks_first, opens_tls, found", [(True, False, True), (False, False, False),
                                                            (True, True, False), (None, False, False)])
def test_pd110_only_where_the_client_waits_for_the_greeting(speaks_first, opens_tls, found):
    waiting = hop(expects=None, waits_for_client=True, server_speaks_first=speaks_first, client_opens_tls=opens_tls)
    assert codes(waiting) == ([("PD110", None)] if found else [])
    assert codes(hop(expects=None, server_speaks_first=True)) == []


def test_every_rule_takes_its_severity_from_the_catalog():
    hits = list(judge_hops([hop("none", "required"), hop("v2", "none"), hop("none", "required", role="proxy"),
                            hop(expects=None, waits_for_client=True, server_speaks_first=True),
                            hop("none", "required", health_check=True), hop(expects=None, public_port=25, protocol="smtp"),
                            hop("v2", "none", role="proxy", adds_header=True),
                            hop("none", None, terminated=True, listener_implicit_tls=True),
                            hop("none", None, tls=True, listener_implicit_tls=False),
                            hop("v1", None, terminated=True), hop("v2", None, terminated=True),
                            hop(expects=None, refused_all=True)]))
    assert sorted(hit.code for hit in hits) == sorted(rule.code for rule in HOP_RULES)
    pages = catalog.load_pages()
    assert all(make_finding(hit.code, hit.said, {}).severity == pages[hit.code].severity for hit in hits)


def test_a_health_check_without_header_is_pd403_not_pd101():
    assert codes(hop("none", "required", health_check=True)) == [("PD403", None)]
    assert codes(hop("local", "required", health_check=True)) == []
    assert codes(hop("none", None, health_check=True)) == []


@pytest.mark.parametrize("public, own, protocol, inferred, found", [
    (25, 10025, "smtp", False, True), (25, 25, "smtp", False, False), (587, 10587, "smtp", False, False),
    (25, 10143, "imap", False, False), (25, None, "smtp", False, False), (25, None, "smtp", True, True)])
def test_pd209_where_public_25_reaches_another_smtp_port(public, own, protocol, inferred, found):
    remapped = Hop(sender=Party(), listener=Party(port=own), listener_role="server", sends="none", expects=None,
                   provenance=Provenance("log"), public_port=public, protocol=protocol, inferred=inferred)
    assert codes(remapped) == ([("PD209", "inferred" if inferred else None)] if found else [])


def test_the_sentence_names_the_hop_through_names():
    hit = next(judge_hops([hop("v2", "none", replies=("500 5.5.1 Invalid command.",))]))
    told = make_finding(hit.code, hit.said, {})
    assert "10.0.0.3:10025" in told.message and "10.0.0.2" in told.message and "500 5.5.1" in told.message
    hidden = told.message_for(_Hidden())
    assert "10.0.0." not in hidden and "500 5.5.1" not in hidden and "192.0.2.1:10025" in hidden


# --- the hops each kind of evidence builds ------------------------------------------------

def test_stalwart_proxy_errors_are_a_hop_to_a_listener_requiring_a_header():
    group = [log_event("network.proxy-error", source="stalwart", seconds=s, reason="invalid proxy header",
                       listenerId="smtp", localPort=10025, remoteIp="::ffff:10.0.0.2") for s in (0, 3)]
    built = missing_header_hop(group)
    assert (built.listener_role, built.sends, built.expects, built.unparsed) == ("server", "none", "required", True)
    assert built.sender.address == "10.0.0.2" and built.listener.name == "smtp" and built.listener.port == 10025
    assert built.service is not None and built.service.protocol == "smtp"  # 10025: SMTP in Stalwart's layout
    assert built.provenance.kind == "log" and built.provenance.count == 2
    assert built.provenance.cited() == ["stalwart.log:1", "stalwart.log:4"]


def test_a_proxy_s_not_a_header_errors_are_a_hop_to_its_front():
    group = [log_event("haproxy.proxy-not-header", client="203.0.113.9", frontend="fe", bind=":25"),
             log_event("haproxy.proxy-timeout", client="203.0.113.8", frontend="fe", bind=":25")]
    built = client_without_header_hop(group)
    assert (built.listener_role, built.sends, built.expects) == ("proxy", "none", "required")
    assert built.sender.address is None and built.listener.software == "HAProxy"


GREETING = b"220 mx.example.test ESMTP\r\n"


def test_a_probe_front_that_greets_only_with_a_header_is_a_hop_requiring_one():
    probe = target_probe("192.0.2.10", 25, probe_step("none", ended_by="server-fin", port=25), probe_step("v2", GREETING))
    built = unheaded_hop(probe, verdict(probe))
    assert built is not None and (built.listener_role, built.sends, built.expects) == ("proxy", "none", "required")
    assert built.provenance.cited() == ["step none", "step v2"]
    assert built.service is not None and built.service.name == "smtp"


def test_a_probe_header_answered_as_commands_is_a_hop_the_listener_does_not_expect():
    answered = probe_step("v1", GREETING + b"500 5.5.1 Invalid command.\r\n", port=10025)
    probe = target_probe("192.0.2.10", 10025, probe_step("none", GREETING, port=10025), answered)
    built = answered_hop(probe, answered, ["v1"])
    assert (built.listener_role, built.sends, built.expects) == ("server", "v1", "none")
    assert built.replies == ("500 5.5.1 Invalid command.",)


@pytest.mark.parametrize("facts, found", [
    ({"terminated": True, "listener_implicit_tls": True}, ("PD304", None)),
    ({"terminated": True, "listener_implicit_tls": True, "tls": True}, None),  # the proxy speaks TLS on
    ({"passthrough": True, "listener_implicit_tls": False}, ("PD303", None)),
    ({"tls": True, "listener_implicit_tls": False}, ("PD303", None)),
    ({"passthrough": True, "listener_implicit_tls": None}, None),  # the listener's TLS unknown
    ({"terminated": True, "sends": "v1"}, ("PD302", None)),
    ({"terminated": True, "sends": "v2"}, ("PD301", None)),
    ({"terminated": True, "sends": "v2", "ssl_tlv": True}, None),
    ({"sends": "v2", "ssl_tlv": True, "tlv_ignored": True}, ("PD301", "conditional")),
    ({"terminated": True, "sends": "none"}, None),
    ({"plaintext": True, "listener_implicit_tls": True}, ("PD304", None)),  # a capture saw the plaintext
    ({"plaintext": True, "listener_implicit_tls": None}, None),
    ({"terminated": True, "sends": "v2", "starttls": True}, None),  # its accepted STARTTLS tells the server
    ({"terminated": True, "sends": "v1", "starttls": True}, None),
    ({"terminated": True, "sends": "v2", "unparsed": True}, None),  # a header that did not parse is PD103's
])
def test_tls_on_the_hop(facts, found):
    sends = facts.pop("sends", "none")
    assert codes(hop(sends, None, **facts)) == ([found] if found else [])


@pytest.mark.parametrize("adds, found", [(True, ("PD106", None)), (None, ("PD106", "conditional")), (False, None)])
def test_a_header_to_a_proxy_that_does_not_take_one_and_adds_its_own(adds, found):
    assert codes(hop("v2", "none", role="proxy", adds_header=adds)) == ([found] if found else [])
    assert codes(hop("v2", "optional", role="proxy", adds_header=adds)) == []


def test_pd401_where_the_server_cut_every_connection_of_the_sender():
    assert codes(hop(expects=None, refused_all=True)) == [("PD401", None)]
    assert codes(hop(expects=None, refused_all=True, inferred=True)) == [("PD401", "inferred")]
    assert codes(hop(expects=None, refused_all=True, role="proxy")) == [] and codes(hop(expects=None)) == []


def test_a_ban_in_stalwart_s_log_is_a_hop_refused_whole():
    group = [log_event("security.abuse-ban", source="stalwart", remoteIp="10.0.0.2"),
             log_event("security.ip-blocked", source="stalwart", seconds=1, remoteIp="10.0.0.2")]
    built = ban_hop(group, "10.0.0.2", inferred=False)
    assert built.refused_all and built.banned and built.provenance.count == 1
    told = make_finding("PD401", next(judge_hops([built])).said, {}).message
    assert "10.0.0.2" in told and "banned" in told


def test_check_s_findings_are_told_through_other_names_with_no_original_left(tmp_path):
    stalwart = tmp_path / "config.toml"
    stalwart.write_text(stalwart_toml("smtp", "submission", trusted=["198.51.100.2"]))
    configs = [proxy_config(route(("192.0.2.10", 10025), "none", source="198.51.100.2"),
                            route(("192.0.2.10", 10587), "v2", front_port=587, source="198.51.100.9"),
                            path=str(tmp_path / "haproxy.cfg"))]
    judged = crosscheck.check(configs, crosscheck.Setting(stalwart=load(str(stalwart))))
    assert {"PD101", "PD102", "PD206"} <= {judgement.code for judgement in judged}
    for judgement in judged:
        finding = crosscheck.to_finding(judgement)
        assert finding.said is not None, judgement.code
        hidden = finding.message_for(_Hidden())
        assert not any(original in hidden for original in ("192.0.2.10", "198.51.100", str(tmp_path))), hidden


# --- PD103 and PD203: judged from hops, each kind of evidence showing them its own way -----

def header_codes(built: Hop) -> list[str]:
    return [hit.code for hit in judge_hops([built], (*HOP_RULES, MALFORMED_HEADER, LOCAL_COMMAND))]


def test_a_malformed_header_is_pd103_not_a_missing_one():
    assert header_codes(hop("v2", None, malformed=True)) == ["PD103"]
    assert header_codes(hop("none", "required", role="proxy", malformed=True, unparsed=True)) == ["PD103"]
    assert header_codes(hop("none", "required", role="proxy", unparsed=True)) == ["PD109"]
    assert header_codes(hop("v2", None)) == []


def test_a_proxy_s_log_of_broken_headers_is_a_malformed_header_hop():
    group = [log_event("haproxy.proxy-bad-header", client="203.0.113.9", frontend="fe", bind=":25")]
    built = malformed_header_hop(group)
    assert (built.listener_role, built.malformed, built.listener.software) == ("proxy", True, "HAProxy")
    assert header_codes(built) == ["PD103"]  # not PD109: the client sent something header-like


def test_stalwart_s_invalid_header_is_not_told_apart_from_a_missing_one():
    group = [log_event("network.proxy-error", source="stalwart", reason="invalid proxy header", listenerId="smtp",
                       localPort=10025, remoteIp="10.0.0.2")]
    assert not MALFORMED_HEADER.applies(missing_header_hop(group))


def test_a_local_header_or_a_listener_refusing_one_is_pd203():
    assert header_codes(hop("local", "required")) == ["PD203"]
    assert header_codes(hop("v2", "required", refuses_local=True)) == ["PD203"]
    assert header_codes(hop("v2", "required")) == []
    said = LOCAL_COMMAND.judge(hop("v2", "required", refuses_local=True))
    assert said is not None and "not a v2 LOCAL one" in said.said.message(_Hidden())


@pytest.mark.parametrize("local_step, found", [(b"", ["PD203"]), (GREETING, [])])
def test_a_probe_s_local_step_refused_where_its_v2_step_was_greeted(local_step, found):
    local = probe_step("v2-local", local_step, ended_by=None if local_step else "server-fin")
    probe = target_probe("192.0.2.10", 10025, probe_step("v2", GREETING), local)
    assert header_codes(local_refused_hop(probe, local, refused=not local_step)) == found
