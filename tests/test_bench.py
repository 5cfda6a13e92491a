"""The benchmark works: its generators write what their truth says, and one run on a tiny
capture measures every contender and agrees with the truth. (Nothing here is timed.)"""

import json
import subprocess
import sys
from pathlib import Path

import dpkt

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import pytest
from synthetic import generate  # noqa: E402

pytestmark = [pytest.mark.slow]


def tcp_segments(capture: Path):
    with capture.open("rb") as handle:
        for _ts, frame in dpkt.pcap.Reader(handle):
            yield dpkt.ethernet.Ethernet(frame).data.data


def test_syn_flood_holds_the_syns_and_sessions_its_truth_names(tmp_path):
    capture = tmp_path / "flood.pcap"
    truth = generate(capture, "syn-flood", syns=3000, sessions=7)
    segments = list(tcp_segments(capture))
    lone_syns = [s for s in segments if s.flags == dpkt.tcp.TH_SYN and s.sport != 25 and not s.data]
    headers = [s for s in segments if s.data.startswith(b"\r\n\r\n\x00\r\nQUIT\n")]
    assert len(segments) == truth["packets"]
    assert len(lone_syns) == truth["half_open"] + truth["connections"]  # the sessions open with a SYN too
    assert len(headers) == truth["proxied_connections"] == 7


def test_tlv_amplification_headers_carry_the_empty_tlvs(tmp_path):
    capture = tmp_path / "tlv.pcap"
    truth = generate(capture, "tlv-amplification", sessions=3, tlvs=600)
    client_bytes: dict[int, bytes] = {}
    for segment in tcp_segments(capture):
        if segment.dport == 25:
            client_bytes[segment.sport] = client_bytes.get(segment.sport, b"") + segment.data
    lengths = {int.from_bytes(data[14:16], "big") for data in client_bytes.values()}
    assert len(client_bytes) == truth["connections"] == 3
    assert lengths == {12 + 3 * truth["tlvs_per_header"]}


def test_one_run_measures_every_contender_and_matches_the_truth(tmp_path):
    capture = tmp_path / "sessions.pcap"
    truth = generate(capture, "sessions", megabytes=0.3)
    results_file = tmp_path / "results.json"
    run = subprocess.run([sys.executable, str(BENCH / "run.py"), str(capture), "--results", str(results_file)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    results = {result["contender"]: result for result in json.loads(results_file.read_text())}
    assert set(results) == {"dpkt", "json", "rich", "tshark"}
    for result in results.values():
        assert result["exit_code"] == 0 and result["seconds"] > 0 and result["peak_mib"] > 1
    assert results["json"]["connections"] == results["json"]["with_proxy_header"] == truth["proxied_connections"]
    assert results["tshark"]["with_proxy_header"] == truth["proxied_connections"]
    assert results["rich"]["output_bytes"] > 0


def test_phases_and_startup_scripts_measure_what_they_say(tmp_path):
    capture = tmp_path / "sessions.pcap"
    generate(capture, "sessions", megabytes=0.3)
    phases = subprocess.run([sys.executable, str(BENCH / "phases.py"), str(capture), "--runs", "1"],
                            capture_output=True, text=True, timeout=300)
    assert phases.returncode == 0, phases.stderr
    rows = [line for line in phases.stdout.splitlines() if line.startswith("| ") and line.endswith(" s |")]
    assert [row.split(" | ")[0] for row in rows] == ["| records", "| + tracking", "| + describing",
                                                      "| whole analyze --format json"]
    startup = subprocess.run([sys.executable, str(BENCH / "startup.py"), "--tree", f"here={BENCH.parent}", "--runs", "1",
                              "--", "decode", "PROXY TCP4 192.0.2.1 192.0.2.2 1 2"],
                             capture_output=True, text=True, timeout=300)
    assert startup.returncode == 0, startup.stderr
    assert startup.stdout.splitlines()[-1].startswith("| decode PROXY TCP4") and " ms (" in startup.stdout
