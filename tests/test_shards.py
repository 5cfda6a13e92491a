"""Both cores: connections tracked by several worker processes are the connections one
process finds (ids aside: each worker numbers its own), a damaged file reads the same,
and a worker that fails or dies ends the run with one line, never a hang."""

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxydiag.capture.flows import shard_of
from proxydiag.capture.packet import reverse_key
from proxydiag.facts.describe import describe
from proxydiag.pipeline import shards
from proxydiag.pipeline.shards import ShardError, resolve_jobs, track_files

ROOT = Path(__file__).resolve().parent.parent
CAPTURES = sorted((ROOT / "captures").glob("*.pcap*"))
sys.path.insert(0, str(ROOT / "bench"))

from synthetic import generate  # noqa: E402


def connections(paths, jobs):
    found = []
    summary = track_files([str(path) for path in paths], on_connection=found.append, jobs=jobs)
    without_ids = Counter(json.dumps({**conn.to_dict(), "id": None}, sort_keys=True) for conn in found)
    return without_ids, summary


def assert_same_with_two_workers(paths):
    alone, summary_alone = connections(paths, 1)
    shared, summary_shared = connections(paths, 2)
    assert shared == alone
    assert summary_shared == summary_alone
    return alone, summary_alone


@pytest.mark.parametrize("capture", CAPTURES, ids=[path.name for path in CAPTURES])
def test_two_workers_find_what_one_process_finds(capture):
    found, _ = assert_same_with_two_workers([capture])
    assert found  # every capture holds connections: the comparison compared something


def test_all_captures_as_one_analysis_split_alike():
    found, summary = assert_same_with_two_workers(CAPTURES)
    assert len(summary.inputs) == len(CAPTURES) and sum(found.values()) > len(CAPTURES)


def test_a_generated_capture_is_shared_out_and_found_whole(tmp_path):
    capture = tmp_path / "sessions.pcap"
    truth = generate(capture, "sessions", megabytes=1.5)
    found, _ = assert_same_with_two_workers([capture])
    assert sum(found.values()) == truth["connections"]


def test_a_damaged_file_says_the_same_and_keeps_what_was_readable(tmp_path):
    capture = tmp_path / "cut.pcap"
    whole = (ROOT / "captures" / "haproxy-v2-smtp.pcap").read_bytes()
    capture.write_bytes(whole[: len(whole) * 2 // 3])
    found, summary = assert_same_with_two_workers([capture])
    assert summary.inputs[0].damaged and "cut off" in summary.inputs[0].damaged
    assert found


def test_a_missing_file_is_one_error_not_one_per_worker(tmp_path):
    _, summary = assert_same_with_two_workers([tmp_path / "missing.pcap", ROOT / "captures" / "nginx-v1.pcap"])
    assert summary.inputs[0].error and summary.inputs[1].error is None


def test_the_workers_share_of_the_flow_table_sums_to_its_bounds():
    limits = shards.worker_limits(shards.FlowLimits(max_open=75_001, max_buffered_bytes=1000), 2)
    assert (limits.max_open, limits.max_buffered_bytes) == (37_500, 500)


def test_a_worker_that_raises_is_one_line(monkeypatch):
    def broken(tracked, services):
        raise ValueError("no such thing")

    monkeypatch.setattr(shards, "describe", broken)  # the workers are forked with it
    with pytest.raises(ShardError) as failure:
        track_files([str(ROOT / "captures" / "haproxy-v2-smtp.pcap")], jobs=2)
    message = str(failure.value)
    assert "\n" not in message and "ValueError: no such thing" in message and "worker" in message


def test_a_worker_that_dies_is_one_line_not_a_hang(monkeypatch):
    def dying(tracked, services):
        if os.getpid() != parent:
            os._exit(9)
        return describe(tracked, services)

    parent = os.getpid()
    monkeypatch.setattr(shards, "describe", dying)
    with pytest.raises(ShardError) as failure:
        track_files([str(ROOT / "captures" / "haproxy-v2-smtp.pcap")], jobs=2)
    assert "ended without finishing (exit code 9)" in str(failure.value)


def test_the_command_line_takes_jobs_and_refuses_nonsense(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    capture = str(ROOT / "captures" / "haproxy-v2-smtp.pcap")
    reports = []
    for jobs in ("1", "2"):
        output = tmp_path / f"report-{jobs}.json"
        run = subprocess.run([sys.executable, "-m", "proxydiag", "analyze", "--format", "json", "--jobs", jobs,
                              "-o", str(output), capture], env=env, capture_output=True, timeout=120)
        assert run.returncode in (0, 1), run.stderr
        reports.append(output.read_text())
    assert reports[0] == reports[1]  # the same document, connection numbers too
    refused = subprocess.run([sys.executable, "-m", "proxydiag", "analyze", "--jobs", "0", capture],
                             env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "--jobs" in refused.stderr


def test_jobs_auto_is_one_for_small_captures_and_standard_input(tmp_path):
    small = str(ROOT / "captures" / "haproxy-v2-smtp.pcap")
    assert resolve_jobs([small], None) == 1
    assert resolve_jobs(["-"], 4) == 1
    assert resolve_jobs([small], 3) == 3
    large = tmp_path / "large.pcap"
    with large.open("wb") as handle:
        handle.truncate(shards.AUTO_JOBS_FROM)
    assert resolve_jobs([str(large)], None) == min(shards._usable_cpus(), shards.AUTO_JOBS_MAX)


ipv4 = st.binary(min_size=4, max_size=4)
ipv6 = st.binary(min_size=16, max_size=16)
port = st.binary(min_size=2, max_size=2)


@given(st.one_of(st.tuples(ipv4, ipv4), st.tuples(ipv6, ipv6)), port, port, st.integers(1, 64))
def test_both_directions_of_a_flow_go_to_one_worker(addresses, source_port, destination_port, workers):
    key = addresses[0] + addresses[1] + source_port + destination_port
    assert shard_of(key, workers) == shard_of(reverse_key(key), workers)
    assert 0 <= shard_of(key, workers) < workers


@pytest.mark.parametrize("server_port", [25, 110, 143, 993])
def test_one_client_host_s_connections_spread_over_the_workers(server_port):
    """Consecutive source ports from one address, or address and port stepping together
    (a sum of bytes alone would keep one parity), share out about evenly."""
    for step_address in (False, True):
        counts = Counter()
        for index in range(2000):
            client = bytes([10, 0, (index >> 8) & 0xFF if step_address else 0, index & 0xFF if step_address else 7])
            key = client + bytes([192, 0, 2, 10]) + (1024 + index).to_bytes(2, "big") + server_port.to_bytes(2, "big")
            counts[shard_of(key, 2)] += 1
        assert min(counts.values()) > 800, counts
