"""The views read a Report's typed findings: the human ones by attribute, the JSON document
written from them (report.json.document_of); what each finding says is its `Finding`'s
(told through the pseudonyms under --anonymize), not the document's copy."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from proxydiag.report.model import Report, View
from proxydiag.report.render import render
from proxydiag.report.views import finding_of, told, told_findings
from proxydiag.rules.finding import make_finding
from proxydiag.rules.said import Sentence
from tests.test_said import _Reached

SUMMARY = {"connections": 0, "with_proxy_header": 0, "errors": 1, "warnings": 0, "infos": 0}


def report_of(*findings) -> Report:
    document = told({"schema": "proxydiag/1", "inputs": [], "summary": SUMMARY, "connections": [],
                     "stalwart_config": None,
                     "findings": [finding.to_dict() for finding in findings]})
    return Report(document, findings=findings)


def shown(report: Report, fmt: str, anonymize: bool = False) -> str:
    return "".join(render(report, View(format=fmt, anonymize=anonymize, output=Path("report.out"))))


@pytest.mark.parametrize("fmt", ["rich", "markdown", "html", "json"])
def test_each_view_says_what_the_typed_finding_says(fmt):
    finding = make_finding("PD101", Sentence("what the document holds"), {"port": 25})
    report = report_of(finding)
    report = replace(report, findings=[replace(finding, message="what the Finding holds")])
    text = shown(report, fmt)
    assert "what the Finding holds" in text and "what the document holds" not in text


@pytest.mark.parametrize("fmt", ["rich", "markdown", "html"])
def test_each_human_view_tells_a_typed_finding_through_the_pseudonyms(fmt):
    finding = make_finding("PD101", _Reached("2001:db8:5::25", 25, "220 mailhub ESMTP zorkmail"), {})
    text = shown(report_of(finding), fmt, anonymize=True)
    assert "answered" in text and "mailhub" not in text and "2001:db8:5::25" not in text


def test_a_document_read_back_gives_the_findings_it_was_written_from():
    finding = make_finding("PD101", Sentence("a sentence"), {"listener": "10.0.0.1:25"}, connections=[3, 4], frames=[1, None],
                           count=5, lowered="inferred", legs=[2, 3])
    (told_one,) = told_findings([finding])
    assert finding_of(told_one.to_dict()).to_dict() == told_one.to_dict()
    assert told_one.fix and told({"findings": [finding.to_dict()]})["findings"][0]["fix"] == told_one.fix


def test_the_json_document_tells_each_typed_finding_its_fix_and_keeps_what_the_document_adds():
    from proxydiag.report.json import document_of

    finding = make_finding("PD101", Sentence("a sentence"), {})
    document = {"schema": "proxydiag/1", "findings": [{**finding.to_dict(), "listener": "10.0.0.1:25"}]}
    (written,) = document_of(Report(document, findings=[finding]))["findings"]
    assert written["fix"] == told_findings([finding])[0].fix and written["fix"]
    assert written["listener"] == "10.0.0.1:25" and list(written)[:3] == ["code", "slug", "severity"]
