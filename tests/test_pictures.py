"""Issue 30's pictures: the ladder of a finding's conversation (report/ladder.py) as inline
SVG in `--format html`, as a Mermaid sequenceDiagram in `--format markdown` and as text
in the rich report with `-v`; every shipped capture in every one of them, and hostile
wire text inert in each (tests/html_inert.py says what inert is)."""

from __future__ import annotations

import functools
import html
import json
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from proxydiag.cli import app
from proxydiag.pipeline.analysis import Settings, diagnose
from proxydiag.report import ladder_text, mermaid
from proxydiag.report.anonymize import anonymize
from proxydiag.report.html import style_hash
from proxydiag.report.ladder import ladder_of, ladders_of
from proxydiag.report.views import summarised, told
from tests.html_inert import html_problems, mermaid_blocks, mermaid_problems

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "captures"
MANIFEST = json.loads((SHIPPED / "manifest.json").read_text())
HOSTILE = REPO / "tests" / "hostile"
HOSTILE_CAPTURES = [entry["file"] for entry in json.loads((HOSTILE / "manifest.json").read_text())
                    if entry["command"] == "analyze" and "one_line_error" not in entry["properties"]]


@functools.cache
def human_document(path: Path) -> dict:
    """The document a human report renders, as report.render.shown makes it."""
    analysis = diagnose([str(path)], Settings())
    return told(summarised(analysis.to_dict(lazy=True)))


def cli(*args: str) -> str:
    result = CliRunner().invoke(app, [*args, "--fail-on", "never"])
    assert result.exit_code == 0, result.output
    return result.output


def finding(document: dict, code: str) -> dict:
    return next(item for item in document["findings"] if item["code"] == code)


# --- the model ---------------------------------------------------------------------------


def test_a_two_leg_conversation_is_client_proxy_server_with_the_header_between_proxy_and_server():
    document = human_document(SHIPPED / "tls-terminated-no-ssl-tlv.pcap")
    ladder = ladder_of(finding(document, "PD301")["ladder_legs"])
    assert ladder is not None and ladder.connections == (1, 2)
    assert [column.role for column in ladder.columns] == ["client", "proxy", "server"]
    assert [column.address for column in ladder.columns] == ["127.80.0.10:45381", "127.80.0.20:465", "127.80.0.30:10587"]
    kinds = [(step.kind, step.source, step.target) for step in ladder.steps]
    assert kinds[0] == ("syn", 0, 1) and ladder.steps[0].time == 0.0
    assert ("tls", 0, 1) in kinds, "the client's ClientHello on the front leg"
    header = next(step for step in ladder.steps if step.kind == "header")
    assert (header.source, header.target, header.connection) == (1, 2, 2)
    assert "127.80.0.10:45381 -> 127.80.0.20:465" in header.details and "no SSL TLV" in header.details
    times = [step.time for step in ladder.steps if step.time is not None]
    assert times == sorted(times), "steps in the order they happened"
    assert kinds.index(("tls", 0, 1)) < kinds.index(("header", 1, 2)), "TLS reached the proxy before it sent the header"


def test_a_chain_of_three_legs_has_a_column_per_hop():
    document = human_document(SHIPPED / "two-proxies-both-send.pcap")
    ladder = ladder_of(finding(document, "PD106")["ladder_legs"])
    assert ladder is not None and ladder.connections == (1, 2, 3)
    assert [column.role for column in ladder.columns] == ["client", "proxy", "proxy", "server"]
    headers = [step for step in ladder.steps if step.kind == "header"]
    assert [(step.source, step.target) for step in headers] == [(1, 2), (2, 3), (2, 3)], "A's header, then B's and A's again"
    assert headers[-1].label.startswith("another v2 header")


def test_a_back_leg_alone_shows_the_client_the_header_names_as_not_captured():
    document = human_document(SHIPPED / "l4-balancer-loses-client.pcap")
    ladder = ladder_of(finding(document, "PD202")["ladder_legs"])
    assert ladder is not None and len(ladder.connections) == 1
    client, proxy, server = ladder.columns
    assert (client.role, client.captured, client.address.split(":")[0]) == ("client", False, "127.80.0.15")
    assert (proxy.role, proxy.captured, server.role) == ("proxy", True, "server")
    assert all(0 not in (step.source, step.target) for step in ladder.steps), "no arrow to a host not captured"


def test_the_replies_to_the_header_follow_the_greeting_before_the_close():
    document = human_document(SHIPPED / "header-to-plain-listener.pcap")
    steps = ladder_of(finding(document, "PD102")["ladder_legs"]).steps
    leg = [step for step in steps if step.connection == 2 and step.kind in ("greeting", "reply", "fin", "rst")]
    assert [step.kind for step in leg][:4] == ["greeting", "reply", "reply", "reply"]
    assert leg[1].label == "500 5.5.2 Error: bad syntax" and leg[1].time is None
    assert leg[-1].kind in ("fin", "rst")


def test_a_finding_without_connections_has_no_ladder():
    assert ladder_of([]) is None
    assert ladders_of({"findings": [{"severity": "error", "legs": [], "ladder_legs": []}]}) == {}


def test_the_human_report_keeps_only_the_legs_of_the_findings():
    """Connections pass by once; only the ones a finding's ladder needs stay beside it."""
    def connections():
        for number in range(1, 10_001):
            yield {"id": number, "tcp": {"dst_addr": "192.0.2.1", "dst_port": 25}, "protocol": "smtp",
                   "proxy_header": None, "proxy_header_violations": [], "opening": None}
    document = {"findings": [{"severity": "error", "connections": [7], "legs": [5, 7]}], "connections": connections()}
    result = summarised(document, keep=3)
    assert [conn["id"] for conn in result["connections"]] == [1, 2, 3]
    assert [conn["id"] for conn in result["findings"][0]["ladder_legs"]] == [5, 7]


def test_anonymized_ladders_show_pseudonyms():
    document = anonymize(human_document(SHIPPED / "tls-terminated-no-ssl-tlv.pcap"))
    ladder = ladder_of(finding(document, "PD301")["ladder_legs"])
    shown = " ".join([column.address for column in ladder.columns] + [line for step in ladder.steps for line in step.details])
    assert "127.80.0." not in shown and re.search(r"\d+\.\d+\.\d+\.\d+:465", shown)


# --- Mermaid -----------------------------------------------------------------------------


@given(st.text())
def test_mermaid_escaping_lets_through_only_safe_characters_and_round_trips(text):
    escaped = mermaid.escape(text)
    assert re.fullmatch(r"(?:[A-Za-z0-9 .,_+()-]|#\d+;)*", escaped)
    assert not re.search(r"\bend\b", escaped, re.I)
    assert re.sub(r"#(\d+);", lambda match: chr(int(match.group(1))), escaped) == text


def test_mermaid_directives_links_and_statement_ends_stay_text():
    hostile = "x;\n%%{init: {'theme':'dark'}}%%\nclick P0 href \"javascript:alert(1)\"\nstyle P0 fill:#f00 end `"
    escaped = mermaid.escape(hostile)
    for piece in ("%%", "\n", ";\n", "click P0 href \"", "`", "{", ":"):
        assert piece not in escaped
    assert escaped.startswith("x#59;#10;#37;#37;#123;init#58;")


@pytest.mark.parametrize("capture", HOSTILE_CAPTURES)
def test_every_ladder_of_a_hostile_capture_is_an_inert_sequence_diagram(capture):
    """Every finding's ladder (the report draws the errors' only), wire text and all."""
    document = human_document(HOSTILE / "files" / capture)
    diagrams = ["```mermaid\n" + "\n".join(mermaid.sequence_diagram(ladder)) + "\n```"
                for ladder in ladders_of(document).values()]
    text = "\n".join(diagrams)
    assert len(mermaid_blocks(text)) == len(diagrams)
    assert not mermaid_problems(text), mermaid_problems(text)


# --- every shipped capture, every picture -------------------------------------------------


@pytest.mark.parametrize("entry", MANIFEST, ids=[entry["file"] for entry in MANIFEST])
def test_every_shipped_capture_has_its_pictures(entry):
    path = str(SHIPPED / entry["file"])
    document = human_document(SHIPPED / entry["file"])
    with_ladder = [item for item in document["findings"] if item["ladder_legs"]]
    assert len(with_ladder) == sum(1 for item in document["findings"] if item["connections"])

    conversations = {tuple(leg["id"] for leg in item["ladder_legs"]) for item in with_ladder}

    page = cli("analyze", path, "--format", "html")
    assert not html_problems(page), html_problems(page)
    assert page.count("<svg") == len(conversations), "each conversation drawn once"
    assert page.count("<svg") + page.count("ladder is under") == len(with_ladder)
    style = re.search(r"<style>(.*?)</style>", page, re.S).group(1)
    assert f"style-src '{style_hash(html.unescape(style))}'" in page and style == html.unescape(style)

    markdown = cli("analyze", path, "--format", "markdown")
    errors = {tuple(leg["id"] for leg in item["ladder_legs"]) for item in with_ladder if item["severity"] == "error"}
    assert len(mermaid_blocks(markdown)) == len(errors) and not mermaid_problems(markdown)

    text = cli("analyze", path, "-v")
    assert text.count("(times after its first SYN)") == len(conversations)
    for item in with_ladder:
        first = ladder_of(item["ladder_legs"])
        assert "\n".join(ladder_text.legend(first)[:1]) in text
    assert "(times after its first SYN)" not in cli("analyze", path), "the text ladders come with -v"


def test_the_html_page_holds_the_verdict_findings_fixes_and_the_decoded_header():
    page = cli("analyze", str(SHIPPED / "tls-terminated-no-ssl-tlv.pcap"), "--format", "html")
    for text in ("PD301 tls-flag-lost", "127.80.0.30:10587", "send-proxy-v2-ssl", "no SSL TLV",
                 "127.80.0.10:45381 -&gt; 127.80.0.20:465", "TLS ClientHello", "@media print"):
        assert text in page, text
    assert "<script" not in page and "src=" not in page and "href=" not in page and "url(" not in page


def test_wire_text_in_the_html_page_is_a_text_node():
    page = cli("analyze", str(HOSTILE / "files" / "greeting-html-script.pcap"), "--format", "html")
    greeting = human_document(HOSTILE / "files" / "greeting-html-script.pcap")["connections"][0]["greeting"]
    assert "<" in greeting and html.escape(greeting, quote=False)[:40] in page
    assert not html_problems(page)


def test_probe_refuses_html_in_one_line():
    result = CliRunner().invoke(app, ["probe", "127.94.0.1:1", "--format", "html"])
    assert result.exit_code == 2 and "--format html" in result.output and len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("fmt", [["--format", "html"], ["--format", "markdown"], ["-v"]], ids=["html", "markdown", "rich-v"])
def test_every_picture_under_anonymize_shows_pseudonyms(fmt):
    out = cli("analyze", str(SHIPPED / "tls-terminated-no-ssl-tlv.pcap"), "--anonymize", *fmt)
    assert ("<svg" in out) or ("```mermaid" in out) or ("(times after its first SYN)" in out)
    assert "127.80.0." not in out and re.search(r"\d+\.\d+\.\d+\.\d+:465", html.unescape(out))
