"""The capture rules' typed hits, from fact builders: a hit's sentence names addresses, host
names and quoted text only through the `Names` it is told with, so pseudonyms leave no
original in it, and `AS_THEY_ARE` tells it as the reports always have."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import typing

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxydiag.configs.stalwart import from_toml, parse_trusted_entry
from proxydiag.facts.expectations import ExpectationResolver
from proxydiag.facts.model import Connection
from proxydiag.facts.provenance import ExpectOption, Majority, Provenance, StalwartListener, TrustedNetworksOption
from proxydiag.rules import address as address_rules
from proxydiag.rules import capture, config, front, http, server, tls
from proxydiag.rules import header as header_rules
from proxydiag.rules.address import Chain, LegOwnSource, TrustList
from proxydiag.rules.base import Endpoint, Finding, Options, address_or_text, network
from proxydiag.rules.front import SendsHeadersItself
from proxydiag.rules.judge import judge_all, tally_of
from proxydiag.rules.said import AS_THEY_ARE, Said
from proxydiag.rules.tls import CertificateUnverified, OffersStarttls, RefusedClearText
from tests.facts import connection

PSEUDONYMS_V4 = ipaddress.ip_network("240.0.0.0/4")  # reserved: never drawn, so a pseudonym is never an original
PSEUDONYMS_V6 = ipaddress.ip_network("3fff::/20")
PSEUDONYM = re.compile(r"240\.0\.\d+\.\d+|3fff:ffff::[0-9a-f]+|host\d+\.anon\.invalid|input\d+|text\d+")


class Pseudonyms:
    """`Names` as `--anonymize` means them: every value a stable pseudonym of its kind."""

    def __init__(self) -> None:
        self.given: dict[tuple[str, str], str] = {}

    def _named(self, kind: str, value: str, shape: str) -> str:
        return self.given.setdefault((kind, value), shape.format(len(self.given) + 1))

    def address(self, address: str) -> str:
        shape = "3fff:ffff::{:x}" if ":" in address else "240.0.0.{}"
        return self._named("address", address, shape)

    def host(self, name: str) -> str:
        return self._named("host", name, "host{}.anon.invalid")

    def path(self, path: str) -> str:
        return self._named("path", path, "input{}")

    def text(self, text: str) -> str:
        return self._named("text", text, "text{}")


def ordinary(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """An address a capture shows between a proxy and a mail server: not a pseudonym's, not
    unspecified, loopback, multicast or IPv4-mapped (those are judged apart)."""
    if address in (PSEUDONYMS_V4 if address.version == 4 else PSEUDONYMS_V6):
        return False
    mapped = isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None
    return not (address.is_unspecified or address.is_loopback or address.is_multicast or mapped)


ADDRESSES = st.ip_addresses().filter(ordinary).map(str)
# Host names as greetings and commands carry them, single labels too; "zq" keeps them apart
# from the sentence's own words.
HOSTS = st.from_regex(r"zq[a-z0-9]{2,8}(\.[a-z][a-z0-9-]{0,8}[a-z0-9]){0,3}", fullmatch=True)


def left_over(message: str) -> str:
    """The message without its pseudonyms: what could still be an original."""
    return PSEUDONYM.sub("#", message)


def judged(connections: list[Connection], resolver: ExpectationResolver, options: Options | None = None) -> list[Finding]:
    options = options or Options()
    return judge_all(connections, tally_of(connections, resolver, options), options)


@given(src=ADDRESSES, dst=ADDRESSES, client=ADDRESSES, host=HOSTS, header=st.sampled_from(["none", "v1", "v2"]),
       expect=st.sampled_from([None, "v1", "v2", "none"]), trusted=st.booleans(), greeted=st.booleans(),
       spoke=st.booleans(), cut_off=st.booleans())
def test_pseudonyms_leave_no_original_in_any_capture_finding(src, dst, client, host, header, expect, trusted, greeted,
                                                              spoke, cut_off):
    """Every capture rule's sentence is typed: told through pseudonyms, none of the addresses
    or host names of the evidence is left, and told as they are it is the report's message."""
    findings, originals = situation(src, dst, client, host, header, expect, trusted, greeted, spoke, cut_off)
    for finding in findings:
        assert finding.said is not None, f"{finding.code} said a str"
        assert finding.message_for(AS_THEY_ARE) == finding.message
        hidden = left_over(finding.message_for(Pseudonyms()))
        assert not [original for original in originals if original in hidden], (finding.code, hidden)


def situation(src: str, dst: str, client: str, host: str, header: str, expect: str | None, trusted: bool, greeted: bool,
              spoke: bool, cut_off: bool) -> tuple[list[Finding], set[str]]:
    """Five alike connections from a proxy to a listener, judged; and the originals they show."""
    connections = []
    for number in range(1, 6):
        conn = connection(number, src=(src, 40000 + number), dst=(dst, 10025), header=header, client=client,
                          client_first=f"EHLO {host}" if spoke else None, greeting=f"220 {host} ESMTP" if greeted else None)
        if cut_off:
            conn.closed_by, conn.close_kind, conn.close_ts = "server", "rst", conn.start_ts + 0.2
        connections.append(conn)
    network_of_src = str(ipaddress.ip_network(f"{src}/{24 if ':' not in src else 64}", strict=False))
    entries = [parse_trusted_entry(network_of_src if trusted else "192.0.2.128/25", "--trusted-networks")]
    findings = judged(connections, ExpectationResolver(expect, {}, None, entries))
    return findings, {src, dst, client, host, network_of_src.split("/")[0]}


def test_the_situations_drawn_reach_many_kinds_of_hit():
    """The property above judges sentences, not silence: its situations make many rules speak."""
    kinds = set()
    for header, expect, trusted, greeted, spoke, cut_off in [
        ("none", "v2", True, False, True, False), ("v2", "none", False, True, False, False),
        ("v1", "v2", False, False, True, False), ("none", None, False, False, False, True),
        ("v2", None, True, True, True, False), ("none", "v2", True, False, False, True),
    ]:
        findings, _ = situation("198.51.100.2", "2001:db8::25", "10.1.2.3", "zqmx.example.net", header, expect, trusted,
                                greeted, spoke, cut_off)
        kinds |= {type(finding.said).__name__ for finding in findings}
    assert len(kinds) >= 8, kinds


def test_as_they_are_a_missing_header_reads_as_it_always_did():
    conn = connection(src=("2001:db8::7", 40000), dst=("2001:db8::25", 10025), client_first="EHLO zqmx.example.net")
    (finding,) = [f for f in judged([conn], ExpectationResolver("v2")) if f.code == "PD101"]
    assert finding.message == ("Connection to [2001:db8::25]:10025 starts with 'EHLO zqmx.example.net' instead of a "
                               "PROXY header, but the listener expects one (--expect v2).")
    hidden = finding.message_for(Pseudonyms())
    assert hidden == "Connection to [3fff:ffff::1]:10025 starts with 'text2' instead of a PROXY header, but the " \
                     "listener expects one (--expect v2)."


def test_as_they_are_an_untrusted_proxy_names_the_list_it_was_judged_against():
    conn = connection(src=("198.51.100.2", 40000), dst=("192.0.2.10", 10025), header="v2")
    entries = [parse_trusted_entry(text, "--trusted-networks") for text in ("10.0.0.0/8", "2001:db8::/32")]
    (finding,) = [f for f in judged([conn], ExpectationResolver(None, {}, None, entries)) if f.code == "PD206"]
    assert finding.message == ("The proxy 198.51.100.2 sends PROXY headers to 192.0.2.10:10025 but is not in the "
                               "trusted networks (--trusted-networks ['10.0.0.0/8', '2001:db8::/32']): Stalwart reads "
                               "its header as protocol data.")
    assert finding.evidence["trusted_networks"] == "--trusted-networks ['10.0.0.0/8', '2001:db8::/32']"
    hidden = finding.message_for(Pseudonyms())
    assert "240.0.0.3/8" in hidden and "3fff:ffff::4/32" in hidden and "10.0.0.0" not in hidden


def test_as_they_are_a_banned_proxy_and_one_client_address():
    connections = [connection(number, src=("198.51.100.2", 40000 + number), dst=("192.0.2.10", 10025))
                   for number in range(1, 4)]
    for conn in connections:
        conn.closed_by, conn.close_kind, conn.close_ts = "server", "fin", conn.start_ts + 0.2
    (banned,) = [f for f in judged(connections, ExpectationResolver()) if f.code == "PD401"]
    assert banned.message.startswith("Every connection from 198.51.100.2 to 192.0.2.10:10025 was cut off before any "
                                      "greeting: the server has likely banned the proxy's own address")
    assert banned.message_for(Pseudonyms()).startswith("Every connection from 240.0.0.1 to 240.0.0.2:10025 was cut off")

    headers = [connection(number, dst=("192.0.2.10", 10025), header="v2", client="2001:db8::77") for number in range(1, 6)]
    (one,) = [f for f in judged(headers, ExpectationResolver()) if f.code == "PD202"]
    assert one.message == ("All 5 PROXY headers to 192.0.2.10:10025 carry the same client address 2001:db8::77: an L4 "
                           "balancer or a NAT in front of the proxy hides the real clients.")


def test_a_value_that_should_be_an_address_is_told_as_text_when_it_is_not_one():
    names = Pseudonyms()
    assert address_or_text(names, "2001:db8::77") == "3fff:ffff::1"
    assert address_or_text(names, "unknown") == "text2"
    assert network(names, "10.0.0.0/8") == "240.0.0.3/8"
    assert network(names, "mail.example.net/24") == "text4"  # not an address: quoted text, never half-shown
    assert network(AS_THEY_ARE, "10.0.0.0/8") == "10.0.0.0/8"


# --- every kind of hit, its fields drawn: no field reaches the sentence unnamed -------------------

KIND_MODULES = (address_rules, capture, config, front, header_rules, http, server, tls)
KINDS = sorted((kind for module in KIND_MODULES for kind in vars(module).values()
                if isinstance(kind, type) and issubclass(kind, Said) and kind.__module__ == module.__name__),
               key=lambda kind: kind.__name__)
# Fields in proxydiag's own words (the service table's names, recognised protocols, a parser's
# rule id, an expectation's value): never the evidence's, so told as they are.
OWN_WORDS = {"service", "protocol", "rule", "expected", "value"}
NAMED = st.one_of(ADDRESSES, HOSTS)
ENDPOINTS = st.builds(Endpoint, ADDRESSES, st.integers(1, 65535))
TRUST_LISTS = st.builds(TrustList, st.none() | NAMED, st.lists(NAMED, max_size=3).map(tuple))
CLAUSES = st.one_of(st.builds(LegOwnSource, ADDRESSES), st.builds(SendsHeadersItself, ADDRESSES),
                    st.builds(RefusedClearText, NAMED), TRUST_LISTS, st.builds(OffersStarttls))
EXPECTED_VALUES = st.sampled_from(["v1", "v2", "any", "none"])
PROVENANCES = st.one_of(st.builds(ExpectOption, EXPECTED_VALUES, st.none() | st.integers(1, 65535)),
                        st.builds(StalwartListener, NAMED, NAMED, ADDRESSES, st.booleans()),
                        st.builds(TrustedNetworksOption, st.booleans()),
                        st.builds(Majority, st.integers(0, 10**6), st.integers(0, 10**6), ADDRESSES,
                                  st.integers(1, 65535), st.booleans()))


def drawn(name: str, kind_of: object) -> st.SearchStrategy[object]:
    """Values for one field of a hit kind, by its type (and, for a str, whether it is ours)."""
    if kind_of is str:
        return st.sampled_from(["smtp", "imap", "v2"]) if name in OWN_WORDS else NAMED
    simple: dict[object, st.SearchStrategy[object]] = {
        int: st.integers(0, 10**6), float: st.floats(0, 10**4), bool: st.booleans(), Endpoint: ENDPOINTS, Said: CLAUSES, Provenance: PROVENANCES,
        Chain: st.builds(Chain, ADDRESSES, st.lists(ENDPOINTS, min_size=1, max_size=3).map(tuple)),
        TrustList: TRUST_LISTS,
    }
    if kind_of in simple:
        return simple[kind_of]
    arguments = typing.get_args(kind_of)
    if typing.get_origin(kind_of) is tuple and arguments[-1] is Ellipsis:
        return st.lists(drawn(name, arguments[0]), max_size=3).map(tuple)
    if typing.get_origin(kind_of) is tuple:
        return st.tuples(*(drawn(name, argument) for argument in arguments))
    if type(None) in arguments:  # X | None
        (other,) = [argument for argument in arguments if argument is not type(None)]
        return st.none() | drawn(name, other)
    raise AssertionError(f"no strategy for {name}: {kind_of}")


def kind_drawn(kind: type[Said]) -> st.SearchStrategy[Said]:
    hints = typing.get_type_hints(kind)
    return st.builds(kind, **{field.name: drawn(field.name, hints[field.name]) for field in dataclasses.fields(kind)})


def originals_in(value: object, name: str = "") -> set[str]:
    """Every address and name a hit holds (its own words aside), nested clauses included."""
    if isinstance(value, str):
        return set() if name in OWN_WORDS else {value}
    if isinstance(value, tuple):
        return set().union(*(originals_in(item, name) for item in value))
    if dataclasses.is_dataclass(value):
        return set().union(*(originals_in(getattr(value, field.name), field.name) for field in dataclasses.fields(value)))
    return set()


def test_every_capture_rule_kind_is_drawn():
    assert len(KINDS) >= 50 and LegOwnSource in KINDS and CertificateUnverified in KINDS


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.__name__)
def test_no_field_of_a_kind_reaches_its_sentence_unnamed(kind):
    @given(kind_drawn(kind))
    @settings(max_examples=25)
    def told_through_pseudonyms(said: Said) -> None:
        hidden = left_over(said.message(Pseudonyms()))
        assert not [original for original in originals_in(said) if original in hidden], hidden
        assert said.message(AS_THEY_ARE)

    told_through_pseudonyms()


def test_the_stalwart_listener_an_expectation_comes_from_is_told_through_names():
    """The provenance is typed: the listener id, the configuration's path and the leg's source
    each go through their own kind of name, the sentence's words stay (before, the whole
    provenance went through `Names.text` as one quoted string)."""
    config = from_toml({"server": {"listener": {"acme-submission": {"bind": ["0.0.0.0:10025"], "protocol": "smtp"}}}},
                       "/srv/acme-mailhub/stalwart/config.toml")
    conn = connection(src=("198.51.100.2", 40000), dst=("192.0.2.10", 10025), header="v2")
    (finding,) = [f for f in judged([conn], ExpectationResolver(config=config)) if f.code == "PD102"]
    assert finding.message.endswith("(Stalwart listener 'acme-submission' (/srv/acme-mailhub/stalwart/config.toml): "
                                    "source 198.51.100.2 is not trusted).")
    hidden = finding.message_for(Pseudonyms())
    assert hidden == ("240.0.0.1:10025 received a PROXY v2 header but does not expect one "
                      "(Stalwart listener 'text2' (input3): source 240.0.0.4 is not trusted).")
