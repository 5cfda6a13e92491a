"""A captured leg's hop (facts/capture_hops.py) judged by the same predicates as a
configuration's, a log's or a probe's: PD301-PD304 and PD206, from connections built
directly (tests/facts.py), without a pcap."""

from __future__ import annotations

from proxydiag.facts.capture_hops import connection_hop
from proxydiag.parsers.proxy_protocol import PP2_TYPE_SSL, build_ssl_value, build_v2, parse
from proxydiag.rules.hops import (
    PLAINTEXT_TO_TLS_LISTENER,
    TLS_FLAG_IMPOSSIBLE,
    TLS_FLAG_LOST,
    TLS_TO_PLAINTEXT_LISTENER,
    UNTRUSTED_PROXY_SOURCE,
    judge_hops,
)
from tests.facts import connection


def with_ssl_tlv(conn):
    header = build_v2("PROXY", "TCP4", "203.0.113.7", "192.0.2.10", 40000, 465, tlvs=[(PP2_TYPE_SSL, build_ssl_value())])
    conn.proxy, conn.header_bytes = parse(header), header
    return conn


def test_a_v2_header_without_the_ssl_tlv_behind_terminated_tls_is_pd301():
    hop = connection_hop(connection(header="v2"), None, terminated=True)
    assert hop.sends == "v2" and not hop.ssl_tlv and TLS_FLAG_LOST.applies(hop)


def test_the_ssl_tlv_or_tls_on_the_leg_itself_is_no_pd301():
    assert connection_hop(with_ssl_tlv(connection(header="v2")), None, terminated=True).ssl_tlv
    assert not TLS_FLAG_LOST.applies(connection_hop(with_ssl_tlv(connection(header="v2")), None, terminated=True))
    passed_through = connection(header="v2")
    passed_through.tls_client_hello = True  # the client's TLS goes on to the server: it does the TLS itself
    assert not TLS_FLAG_LOST.applies(connection_hop(passed_through, None, terminated=True))
    assert not TLS_FLAG_LOST.applies(connection_hop(connection(header="v2"), None))  # no sign of TLS in front


def test_a_v1_header_behind_terminated_tls_is_pd302_and_not_pd301():
    hop = connection_hop(connection(header="v1"), None, terminated=True)
    assert TLS_FLAG_IMPOSSIBLE.applies(hop) and not TLS_FLAG_LOST.applies(hop)
    assert not TLS_FLAG_IMPOSSIBLE.applies(connection_hop(connection(header="v2"), None, terminated=True))


def test_tls_passed_through_to_a_plaintext_listener_is_pd303():
    hello = connection(header="v2")
    hello.tls_client_hello = True
    assert TLS_TO_PLAINTEXT_LISTENER.applies(connection_hop(hello, None, listener_implicit_tls=False))
    assert not TLS_TO_PLAINTEXT_LISTENER.applies(connection_hop(hello, None, listener_implicit_tls=True))
    assert not TLS_TO_PLAINTEXT_LISTENER.applies(connection_hop(connection(header="v2"), None, listener_implicit_tls=False))


def test_plaintext_after_termination_to_an_implicit_tls_listener_is_pd304():
    plain = connection(header="v2", dst=("192.0.2.10", 10465), client_first="EHLO client.example")
    assert PLAINTEXT_TO_TLS_LISTENER.applies(connection_hop(plain, None, terminated=True, listener_implicit_tls=True))
    assert not PLAINTEXT_TO_TLS_LISTENER.applies(connection_hop(plain, None, terminated=True, listener_implicit_tls=False))


def test_a_header_from_a_source_the_trust_list_leaves_out_is_pd206_and_pd102():
    untrusted = connection_hop(connection(header="v2"), None, expects="none")
    assert UNTRUSTED_PROXY_SOURCE.applies(untrusted)
    assert [hit.code for hit in judge_hops([untrusted])] == ["PD102", "PD206"]
    assert not UNTRUSTED_PROXY_SOURCE.applies(connection_hop(connection(header="v2"), None, expects="required"))
    assert not UNTRUSTED_PROXY_SOURCE.applies(connection_hop(connection(header="none"), None, expects="none"))
