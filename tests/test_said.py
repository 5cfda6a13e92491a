"""Typed hits: a finding's sentence is written from its fields, through the `Names` it is given."""

from dataclasses import dataclass

from proxydiag.rules.finding import make_finding
from proxydiag.rules.said import AS_THEY_ARE, Names, Said, endpoint


@dataclass(frozen=True)
class _Reached(Said):
    address: str
    port: int
    greeting: str

    def message(self, names: Names) -> str:
        return f"{endpoint(names, self.address, self.port)} answered {names.text(self.greeting)!r}"


class _Hidden:
    def address(self, address: str) -> str:
        return "192.0.2.1"

    def host(self, name: str) -> str:
        return "host1.anon.invalid"

    def path(self, path: str) -> str:
        return "input1"

    def text(self, text: str) -> str:
        return "220 host1.anon.invalid ESMTP"


def test_a_typed_hit_is_told_as_it_is_and_through_other_names():
    said = _Reached("2001:db8::25", 25, "220 mx.example.net ESMTP")
    finding = make_finding("PD101", said, {})
    assert finding.message == "[2001:db8::25]:25 answered '220 mx.example.net ESMTP'"
    assert finding.message_for(AS_THEY_ARE) == finding.message
    hidden = finding.message_for(_Hidden())
    assert "2001:db8::25" not in hidden and "mx.example.net" not in hidden
    assert hidden == "192.0.2.1:25 answered '220 host1.anon.invalid ESMTP'"


def test_a_plain_sentence_is_its_own_message():
    finding = make_finding("PD101", "no header at all", {})
    assert finding.said is None and finding.message_for(_Hidden()) == "no header at all"
