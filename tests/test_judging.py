"""Streaming judgement: the store, the first-pass tally, the window of legs, and findings
folded as they come. What is judged in flat memory must equal what was judged whole."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import proxydiag.facts.store as store_module
import proxydiag.rules.judge as judging
from proxydiag.facts.store import ConnectionStore
from proxydiag.pipeline.analysis import Settings, analyze_files, diagnose
from proxydiag.rules.base import Hit
from proxydiag.rules.judge import ConnectionIds, Group
from proxydiag.rules.registry import RULES_BY_CODE
from proxydiag.rules.said import Sentence

ROOT = Path(__file__).resolve().parent.parent
CAPTURES = sorted((ROOT / "captures").glob("*.pcap*"))
sys.path.insert(0, str(ROOT / "bench"))
from synthetic import generate  # noqa: E402


def document(path: Path) -> str:
    analysis = diagnose([str(path)], Settings())
    return json.dumps(analysis.to_dict(), sort_keys=True, default=str)


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda path: path.name)
def test_a_spilled_store_gives_the_same_document_as_one_held_in_memory(capture, monkeypatch):
    held = document(capture)
    monkeypatch.setattr(store_module, "SPILL_AFTER", 0)
    assert document(capture) == held


def test_the_store_spills_past_its_bound_and_keeps_report_order(monkeypatch):
    capture = max(CAPTURES, key=lambda path: len(analyze_files([str(path)]).connections))
    monkeypatch.setattr(store_module, "SPILL_AFTER", 2)
    connections = analyze_files([str(capture)]).connections
    assert isinstance(connections, ConnectionStore) and connections.spilled
    keys = [(conn.input, conn.first_frame) for conn in connections]
    assert keys == sorted(keys)
    assert [conn.id for conn in connections] == list(range(1, len(connections) + 1))
    assert len(connections) >= 3 and [conn.id for conn in connections[1:3]] == [2, 3]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(1, 10_000), st.floats(0, 1e6)), max_size=40),
       st.integers(0, 45))
def test_store_order_and_numbers_whatever_the_order_of_arrival(keys, spill_after):
    template = diagnose([str(CAPTURES[0])], Settings()).connections[0]
    store = ConnectionStore(spill_after=spill_after)
    for number, (source, frame, start) in enumerate(keys):
        conn = store_module.pickle.loads(store_module.pickle.dumps(template))
        conn.input, conn.first_frame, conn.start_ts, conn.greeting = source, frame, start, str(number)
        store.append(conn)
    in_report_order = sorted(range(len(keys)), key=lambda at: (keys[at][0], keys[at][1]))
    assert [conn.greeting for conn in store] == [str(at) for at in in_report_order]
    assert [conn.id for conn in store] == list(range(1, len(keys) + 1))
    starts = [conn.start_ts for conn in store.by_start()]
    assert starts == sorted(starts) and len(starts) == len(keys)
    store.close()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 20_000), max_size=6_000))
def test_connection_ids_count_distinct_numbers_as_a_set_would(numbers):
    ids, seen = ConnectionIds(), set()
    for number in numbers:
        assert ids.add(number) == (number not in seen)
        seen.add(number)
    assert ids.count == len(seen)


@settings(max_examples=50, deadline=None)
@given(st.permutations(list(range(1, 60))), st.integers(0, 3))
def test_a_finding_cites_its_lowest_numbered_connections_whatever_the_order(numbers, repeats):
    template = diagnose([str(CAPTURES[0])], Settings()).connections[0]
    rule = RULES_BY_CODE["PD101"]
    group = Group(rule, Hit(Sentence("m")), (0, 0, 0))
    for number in numbers + numbers[:repeats]:
        conn = store_module.pickle.loads(store_module.pickle.dumps(template))
        conn.id = number
        group.cite(conn)
    finding = group.finding()
    assert finding.connections == list(range(1, 21))
    assert finding.count == len(numbers)


def findings_by_code(analysis) -> dict[str, int]:
    counts: dict[str, int] = {}
    for finding in analysis.findings:
        counts[finding.code] = counts.get(finding.code, 0) + finding.count
    return counts


LEG_CODES = {"PD101", "PD102", "PD109", "PD110", "PD201", "PD205", "PD209", "PD301", "PD303", "PD304"}


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda path: path.name)
def test_the_window_of_legs_never_holds_more_than_its_bound(capture, monkeypatch):
    whole = diagnose([str(capture)], Settings())
    monkeypatch.setattr(judging, "MAX_WINDOW", 2)
    widest = 0
    add = judging.Judge.add

    def watched(judge, conn):
        nonlocal widest
        add(judge, conn)
        widest = max(widest, len(judge.window))

    monkeypatch.setattr(judging.Judge, "add", watched)
    narrow = diagnose([str(capture)], Settings())
    assert widest <= 2
    # what needs no other leg is judged alike, however narrow the window
    alone = {code: count for code, count in findings_by_code(whole).items() if code not in LEG_CODES}
    assert alone == {code: count for code, count in findings_by_code(narrow).items() if code not in LEG_CODES}


def peak_rss_kib(capture: Path, bound: int, *options: str) -> int:
    """The peak memory of analyze with at most `bound` connections held at once (store, window)."""
    options = options or ("--format", "json")
    code = (f"import sys, proxydiag.facts.store as s, proxydiag.rules.judge as j; s.SPILL_AFTER = j.MAX_WINDOW = {bound}; sys.argv = ['proxydiag', 'analyze', "
            f"*{list(options)!r}, '-o', '/dev/null', {str(capture)!r}]; import runpy; "
            "runpy.run_module('proxydiag', run_name='__main__')")
    child = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)})
    _, status, usage = os.wait4(child.pid, 0)
    assert os.waitstatus_to_exitcode(status) in (0, 1)
    return usage.ru_maxrss


@pytest.mark.slow
@pytest.mark.parametrize("options", [(), ("--format", "json", "--anonymize"), ("-v",), ("-v", "--anonymize")],
                         ids=["json", "json-anonymized", "rich-all-connections", "rich-all-connections-anonymized"])
def test_memory_stays_flat_when_the_capture_grows(tmp_path, options):
    small, large = tmp_path / "small.pcap", tmp_path / "large.pcap"
    truth_small = generate(small, "sessions", megabytes=4, bulk_segments=0)
    truth_large = generate(large, "sessions", megabytes=16, bulk_segments=0)
    assert truth_large["connections"] >= 3 * truth_small["connections"]
    grown = peak_rss_kib(large, 500, *options) - peak_rss_kib(small, 500, *options)
    # four times the connections: what grows is a few numbers per connection, not the connections
    per_connection = grown * 1024 / (truth_large["connections"] - truth_small["connections"])
    # A connection held costs some 20 KB as a dict; the bounded tallies (per source, up to
    # 65,536 keys) and, for rich, the console's and the allocator's slack cost far less.
    limit = 400 if "-v" not in options else 1_500
    assert per_connection < limit, f"{per_connection:.0f} bytes more per connection"


def test_judging_order_does_not_depend_on_the_order_connections_were_stored(monkeypatch):
    capture = next(path for path in CAPTURES if "chain" in path.name)
    whole = {(f.code, f.count, tuple(f.connections)) for f in diagnose([str(capture)], Settings()).findings}
    real_append = ConnectionStore.append
    arrived: list = []

    def shuffled_append(store, conn):
        arrived.append(conn)

    monkeypatch.setattr(ConnectionStore, "append", shuffled_append)
    analysis = analyze_files([str(capture)])
    random.Random(7).shuffle(arrived)
    store = ConnectionStore()
    for conn in arrived:
        real_append(store, conn)
    analysis.connections = store
    monkeypatch.setattr(ConnectionStore, "append", real_append)
    from proxydiag.pipeline.analysis import judge_analysis

    judge_analysis(analysis, Settings())
    assert {(f.code, f.count, tuple(f.connections)) for f in analysis.findings} == whole
