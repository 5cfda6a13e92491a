"""A captured leg as a hop (facts/capture_hops.py): the TLS and trust facts a capture adds,
judged by the same predicates as any other evidence's hop (rules/hops.py)."""

from __future__ import annotations

import pytest

from proxydiag.facts.capture_hops import connection_hop, listener_tls_shown, malformed_hop, tls_hop, trust_hop
from proxydiag.facts.expectations import ExpectationResolver
from proxydiag.facts.model import Connection
from proxydiag.parsers.protocols.base import Opening
from proxydiag.parsers.proxy_protocol import build_v2, parse
from proxydiag.rules.base import Options
from proxydiag.rules.hops import LOCAL_COMMAND, MALFORMED_HEADER, TLS_RULES, UNTRUSTED_PROXY_SOURCE, judge_hops
from proxydiag.rules.judge import judge_all, tally_of
from proxydiag.services import DEFAULT_TABLE
from tests.facts import connection


def with_tls(conn: Connection, client_hello: bool = False, server_tls: bool = False) -> Connection:
    """The leg with TLS seen: the client's ClientHello, the server's TLS records."""
    conn.tls_client_hello = client_hello
    conn.opening = Opening(client_sent_tls=client_hello, server_sent_tls=server_tls,
                           tls_answered_with_plaintext=client_hello and conn.greeting is not None and not server_tls)
    return conn


def tls_codes(conn: Connection, terminated: bool = False, expected: bool = False, relayed: bool = False) -> list[str]:
    return [hit.code for hit in judge_hops([tls_hop(conn, terminated, expected, relayed)], TLS_RULES)]


def test_a_clienthello_answered_in_plaintext_shows_a_listener_without_implicit_tls():
    conn = with_tls(connection(dst=("192.0.2.10", 10465), client_first="TLS ClientHello", greeting="220 mx ESMTP"),
                    client_hello=True)
    assert listener_tls_shown(conn, expected=True, relayed=False) is False  # its answer over the table
    assert tls_codes(conn, expected=True) == ["PD303"]
    assert tls_codes(conn, expected=True, relayed=True) == []  # the answer came from further on


def test_plaintext_to_a_listener_that_stays_silent_or_answers_with_tls_is_pd304():
    silent = connection(dst=("192.0.2.10", 10465), header="v2", client_first="EHLO client")
    assert listener_tls_shown(silent, expected=True, relayed=False) is True
    assert tls_codes(silent, expected=True) == ["PD304"]
    alert = with_tls(connection(dst=("192.0.2.10", 10465), client_first="EHLO client", greeting="TLS record"),
                     server_tls=True)
    assert tls_codes(alert, expected=True) == ["PD304"]


def test_a_plaintext_greeting_or_an_idle_leg_is_not_pd304():
    greeted = connection(dst=("192.0.2.10", 10465), client_first="EHLO client", greeting="220 mx ESMTP")
    assert listener_tls_shown(greeted, expected=True, relayed=False) is False
    assert tls_codes(greeted, expected=True) == []
    assert tls_codes(connection(dst=("192.0.2.10", 10465)), expected=True) == []  # nothing sent, nothing known
    assert tls_codes(connection(dst=("192.0.2.10", 10465)), terminated=True, expected=True) == ["PD304"]
    assert tls_codes(connection(dst=("192.0.2.10", 10465), client_first="EHLO", mid_stream=True), expected=True) == []


@pytest.mark.parametrize("header, found", [("v2", ["PD301"]), ("v1", ["PD302"]), ("v1-unknown", ["PD302"]),
                                           ("none", [])])
def test_a_terminated_client_s_tls_that_the_header_does_not_carry(header, found):
    conn = connection(header=header, client_first="EHLO client", greeting="220 mx ESMTP")
    assert tls_codes(conn, terminated=True) == found
    assert tls_codes(conn) == []  # no evidence of the client's TLS before this leg


def test_a_header_that_did_not_parse_says_nothing_of_tls_nor_of_its_sender():
    conn = connection(header="v2", client_first="EHLO client")
    assert conn.header_bytes is not None
    conn.proxy = parse(conn.header_bytes[:14])  # cut short inside the fixed part
    hop = tls_hop(conn, True, False, False)
    assert hop.unparsed and hop.sends == "v2"
    assert tls_codes(conn, terminated=True) == []
    assert not UNTRUSTED_PROXY_SOURCE.applies(trust_hop(conn, trusted=False))


def test_a_header_from_a_sender_the_listener_does_not_trust_is_pd206():
    for header in ("v1", "v2"):
        conn = connection(header=header)
        assert UNTRUSTED_PROXY_SOURCE.applies(trust_hop(conn, trusted=False))
        assert not UNTRUSTED_PROXY_SOURCE.applies(trust_hop(conn, trusted=True))
    assert not UNTRUSTED_PROXY_SOURCE.applies(trust_hop(connection(header="none"), trusted=False))


def test_the_hop_cites_the_frames_it_was_read_from():
    cites = tls_hop(connection(number=2, client_first="EHLO", greeting="220 mx"), False, False, False).provenance.cited()
    assert cites[0] == "frame 20" and cites[1] == "frame 24: the sender's first bytes"


def test_a_header_with_a_violation_is_pd103_unless_the_capture_explains_it():
    conn = connection(header="v2")
    assert conn.header_bytes is not None
    cut = parse(conn.header_bytes[:20])  # incomplete: the header declares more than came
    assert MALFORMED_HEADER.applies(malformed_hop(conn, cut, explained=False))
    assert not MALFORMED_HEADER.applies(malformed_hop(conn, cut, explained=True))  # snap length, or PD105
    assert conn.proxy is not None and not MALFORMED_HEADER.applies(malformed_hop(conn, conn.proxy, explained=False))


def test_a_captured_local_header_is_pd203():
    conn = connection(header="v2")
    conn.proxy = parse(build_v2("LOCAL", "UNSPEC"))
    assert connection_hop(conn, None).sends == "local" and LOCAL_COMMAND.applies(connection_hop(conn, None))
    assert not LOCAL_COMMAND.applies(connection_hop(connection(header="v2"), None))


@pytest.mark.parametrize("header", ["v1", "v2"])
def test_plaintext_behind_termination_to_an_implicit_tls_listener_is_pd304_alone(header):
    """As a configuration's hop says: the handshake fails before the header's TLS flag could matter."""
    silent = connection(dst=("192.0.2.10", 10465), header=header, client_first="EHLO client")
    assert tls_codes(silent, terminated=True, expected=True) == ["PD304"]
    assert tls_codes(silent, terminated=True, expected=False) == ["PD301" if header == "v2" else "PD302"]


def test_the_capture_rules_judge_it_as_a_configuration_does():
    """A v2 header without the SSL TLV behind an implicit-TLS public port (465), plaintext to a
    listener that waits for a ClientHello: PD304 alone, as `check` says of the configuration
    (before, the capture said PD301 too)."""
    conn = connection(dst=("192.0.2.10", 10465), header="v2", client_first="EHLO client")
    conn.header_service = DEFAULT_TABLE.lookup(465)
    found = judge_all([conn], tally_of([conn], ExpectationResolver(), Options()), Options())
    assert sorted(finding.code for finding in found) == ["PD304"]
