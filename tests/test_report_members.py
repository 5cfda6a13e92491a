"""The report's typed members (issue 27 item 4): each writes exactly its schema's keys,
reads back what it wrote, and is what the commands' documents hold."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from proxydiag.facts.model import Analysis
from proxydiag.facts.summary import Summary
from proxydiag.pipeline.check import CheckResult
from proxydiag.pipeline.evidence import Besides
from proxydiag.pipeline.logs import LogAnalysis
from proxydiag.report import schema
from proxydiag.report.views import EndpointVerdict, endpoint_verdicts, summarised

counts = st.integers(min_value=0, max_value=2**40)
summaries = st.builds(Summary, counts, counts, counts, counts, counts, st.none() | counts)


@given(summaries)
def test_a_summary_validates_and_reads_back_key_for_key(summary):
    written = summary.to_dict()
    schema.validate(written, "summary")
    assert Summary.of(written) == summary
    assert Summary.of(written).to_dict() == written


def test_log_events_is_written_only_when_logs_were_read():
    assert "log_events" not in Summary().to_dict()
    assert Summary().with_log_events(0).to_dict()["log_events"] == 0


def test_counting_counts_each_severity():
    summary = Summary.counting(["error", "info", "error", "warning"], connections=3, with_proxy_header=1)
    assert (summary.errors, summary.warnings, summary.infos) == (2, 1, 1)
    assert (summary.connections, summary.with_proxy_header, summary.log_events) == (3, 1, None)


def test_the_analysis_document_writes_its_typed_summary():
    analysis = Analysis()
    assert analysis.to_dict()["summary"] == analysis.summary().to_dict() == Summary().to_dict()


def test_the_logs_document_writes_its_typed_summary():
    document = LogAnalysis().to_dict()
    assert Summary.of(document["summary"]) == Summary(log_events=0)
    schema.validate(document)


texts = st.text(max_size=20)
verdicts = st.builds(EndpointVerdict, texts, counts, st.lists(texts, max_size=3).map(tuple),
                     st.lists(texts, max_size=3).map(tuple), texts, counts, counts)


@given(verdicts)
def test_an_endpoint_verdict_reads_back_key_for_key(verdict):
    written = verdict.to_dict()
    assert EndpointVerdict.of(written) == verdict
    assert json.loads(json.dumps(written)) == written


def _conn(conn_id, port, protocol="smtp"):
    return {"id": conn_id, "protocol": protocol, "proxy_header": None, "proxy_header_violations": [], "opening": None,
            "tcp": {"src_addr": "192.0.2.1", "src_port": 40000 + conn_id, "dst_addr": "192.0.2.9", "dst_port": port}}


def test_the_endpoints_come_worst_first_and_are_read_typed():
    document = {"findings": [{"connections": [2], "severity": "warning"}, {"connections": [3], "severity": "error"}],
                "connections": [_conn(1, 25), _conn(2, 587), _conn(3, 993, "imap"), _conn(4, 25)]}
    rows = endpoint_verdicts(document)
    assert [(row.errors, row.warnings, row.connections) for row in rows] == [(1, 0, 1), (0, 1, 1), (0, 0, 2)]
    assert rows[0].protocol_label() == "imap"
    assert endpoint_verdicts(summarised(document, keep=0)) == rows


def test_what_configurations_and_logs_add_is_written_from_their_typed_results():
    checked, logs = CheckResult(), LogAnalysis()
    document = Besides(checked, logs).add_to(Analysis().to_dict())
    schema.validate(document)
    assert list(document)[-3:] == ["proxy_configs", "proxy_config_errors", "logs"]
    assert Summary.of(document["summary"]) == Summary(log_events=0)
    assert Besides().add_to(Analysis().to_dict()) == Analysis().to_dict()
    assert {**Analysis().to_dict(), **checked.sections()} == checked.document()
