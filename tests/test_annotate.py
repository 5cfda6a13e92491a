"""`--annotate OUT.pcapng`: the input frames written back with the judgement inside.

Wireshark (tshark) reads the annotated file back: every frame as the input had it
(number, time to the nanosecond, link type, lengths), a comment on each frame the JSON
report cites and a summary on each connection's first frame."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

import dpkt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxydiag.capture.sources import open_capture
from proxydiag.parsers.proxy_protocol import build_v2
from proxydiag.report import pcapng
from proxydiag.report.annotate import MAX_COMMENT, ConnectionVerdicts, comment_text
from proxydiag.rules.registry import ALL_RULES, RULES_BY_CODE

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = json.loads((ROOT / "captures" / "manifest.json").read_text())
SHIPPED = [ROOT / "captures" / entry["file"] for entry in MANIFEST]
EVIDENCE_FRAME_KEYS = ("client_first_frame", "greeting_frame", "frame")


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "proxydiag", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


# -- a small pcapng reader of the test's own (little-endian, as the writer writes) --------


def read_blocks(data: bytes) -> list[tuple[int, bytes]]:
    blocks, pos = [], 0
    while pos < len(data):
        block_type, length = struct.unpack_from("<II", data, pos)
        assert length % 4 == 0 and struct.unpack_from("<I", data, pos + length - 4)[0] == length
        blocks.append((block_type, data[pos + 8 : pos + length - 4]))
        pos += length
    assert pos == len(data)
    return blocks


def read_options(data: bytes) -> list[tuple[int, bytes]]:
    found, pos = [], 0
    while pos < len(data):
        code, length = struct.unpack_from("<HH", data, pos)
        if code == 0:
            assert length == 0 and pos + 4 == len(data), "opt_endofopt ends the options"
            return found
        found.append((code, data[pos + 4 : pos + 4 + length]))
        assert data[pos + 4 + length : pos + 4 + length + (-length % 4)] == b"\x00" * (-length % 4)
        pos += 4 + length + (-length % 4)
    assert not data, "options present but not ended"
    return found


def read_packet(body: bytes) -> tuple[int, int, bytes, int, list[str]]:
    interface, high, low, caplen, wire_length = struct.unpack_from("<IIIII", body)
    frame = body[20 : 20 + caplen]
    comments = [value.decode() for code, value in read_options(body[20 + caplen + (-caplen % 4) :]) if code == 1]
    return interface, high << 32 | low, frame, wire_length, comments


packets = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2**64 - 1), st.binary(max_size=70),
                             st.integers(0, 2**32 - 1), st.lists(st.text(max_size=40), max_size=3)), max_size=12)


@given(packets, st.lists(st.tuples(st.integers(0, 0xFFFF), st.integers(0, 2**32 - 1), st.integers(0, 255)),
                         min_size=3, max_size=3))
def test_the_block_writer_round_trips_through_a_reader_of_its_own_and_proxydiags(records, interfaces):
    data = pcapng.section_header("test") + b"".join(
        pcapng.interface_description(linktype, snaplen, tsresol) for linktype, snaplen, tsresol in interfaces
    ) + b"".join(pcapng.enhanced_packet(*record) for record in records)
    blocks = read_blocks(data)
    assert [block_type for block_type, _ in blocks] == [0x0A0D0D0A, 1, 1, 1] + [6] * len(records)
    for (_, body), (linktype, snaplen, tsresol) in zip(blocks[1:4], interfaces, strict=True):
        assert struct.unpack_from("<HHI", body) == (linktype, 0, snaplen)
        assert (9, bytes([tsresol])) in read_options(body[8:])
    assert [read_packet(body) for _, body in blocks[4:]] == [
        (interface, ticks, frame, wire_length, comments) for interface, ticks, frame, wire_length, comments in records
    ]
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"proxydiag-roundtrip-{os.getpid()}.pcapng"
    path.write_bytes(data)
    try:
        with open_capture(str(path), exact=True) as reader:
            read = [(interface, ticks, frame, wire_length) for _, interface, ticks, _, frame, wire_length in reader]
            assert [(item.linktype, item.snaplen, item.tsresol) for item in reader.interfaces] == interfaces
    finally:
        path.unlink()
    assert read == [(interface, ticks, frame, wire_length) for interface, ticks, frame, wire_length, _ in records]


@given(st.lists(st.tuples(st.integers(0, 2**40), st.binary(min_size=1, max_size=60)), max_size=10))
def test_dpkt_reads_the_written_packets_and_their_microsecond_times(records):
    data = pcapng.section_header("test") + pcapng.interface_description(1, 65535, 6) + b"".join(
        pcapng.enhanced_packet(0, ticks, frame, len(frame), ["a comment"]) for ticks, frame in records
    )
    import io

    read = [(round(ts * 1e6), bytes(frame)) for ts, frame in dpkt.pcapng.Reader(io.BytesIO(data))]
    assert read == [(ticks, frame) for ticks, frame in records]


def test_an_option_too_long_for_its_16_bit_length_is_refused():
    with pytest.raises(ValueError):
        pcapng.option(1, b"x" * 0x10000)


# -- comments are text ----------------------------------------------------------------------


@given(st.text())
def test_a_comment_is_one_line_without_control_or_bidi_characters_and_bounded(text):
    shown = comment_text(text)
    assert len(shown) <= MAX_COMMENT
    assert not any(ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F or char in "\u202e\u2066\u2028\u2029" for char in shown)


def test_verdicts_keep_every_connection_of_a_finding_and_the_worst_severity():
    verdicts = ConnectionVerdicts()
    last = ALL_RULES[-1].code
    verdicts.record("PD205", "info", 3)
    verdicts.record("PD301", "error", 3)
    verdicts.record(last, "warning", 70_000)
    assert verdicts.of(3) == ("error", ["PD205", "PD301"] if ALL_RULES.index(RULES_BY_CODE["PD205"]) <
                                       ALL_RULES.index(RULES_BY_CODE["PD301"]) else ["PD301", "PD205"])
    assert verdicts.of(70_000) == ("warning", [last])
    assert verdicts.of(4) == (None, []) and verdicts.of(70_001) == (None, [])


# -- the command line -------------------------------------------------------------------------


def test_annotate_with_anonymize_is_refused_in_one_line(tmp_path):
    result = run("analyze", str(SHIPPED[0]), "--anonymize", "--annotate", str(tmp_path / "out.pcapng"))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "--anonymize" in result.stderr and not (tmp_path / "out.pcapng").exists()


def test_annotate_never_overwrites_an_input_nor_reads_standard_input(tmp_path):
    copy = tmp_path / "cap.pcap"
    copy.write_bytes(SHIPPED[0].read_bytes())
    for args in (("analyze", str(copy), "--annotate", str(copy)), ("analyze", "-", "--annotate", str(tmp_path / "o")),
                 ("analyze", str(copy), "--annotate", str(tmp_path)),
                 ("analyze", str(copy), "--annotate", str(tmp_path / "no-such-directory" / "o.pcapng")),
                 ("sniff", "-i", "lo", "--duration", "1", "--annotate", str(tmp_path / "o.pcapng"))):
        result = run(*args)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)
        assert "Traceback" not in result.stderr
    assert copy.read_bytes() == SHIPPED[0].read_bytes()


def test_a_write_that_fails_late_still_gives_the_report_and_leaves_no_file(tmp_path, monkeypatch, capsys):
    import proxydiag.report.annotate as annotate_module
    from proxydiag.cli import main

    def disk_full(*_args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(annotate_module, "write_annotated", disk_full)
    monkeypatch.setattr(sys, "argv", ["proxydiag", "analyze", str(SHIPPED[0]), "-q", "--annotate", str(tmp_path / "o.pcapng")])
    with pytest.raises(SystemExit) as leaving:
        main()
    said = capsys.readouterr()
    assert leaving.value.code == 2 and "PD209" in said.out
    assert said.err.strip().splitlines() == [f"proxydiag: cannot write {tmp_path / 'o.pcapng'}: No space left on device"]
    assert list(tmp_path.iterdir()) == []


def test_a_symbolic_link_at_the_target_is_replaced_not_followed(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    target = tmp_path / "out.pcapng"
    target.symlink_to(victim)
    result = run("analyze", str(SHIPPED[0]), "--annotate", str(target), "-q", "--fail-on", "never")
    assert result.returncode == 0, result.stderr
    assert victim.read_text() == "keep me" and not target.is_symlink()
    assert target.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".proxydiag")] == []


def annotate_in_process(capture: Path, out: Path):
    """`analyze CAPTURE --annotate OUT` without a process of its own; the analysis."""
    from proxydiag.pipeline.analysis import Settings, diagnose
    from proxydiag.report.annotate import write_annotated

    verdicts = ConnectionVerdicts()
    analysis = diagnose([str(capture)], Settings(), on_cite=verdicts.record)
    with out.open("wb") as handle:
        write_annotated(handle, [str(capture)], analysis, verdicts)
    return analysis


def test_every_frame_comes_back_exactly_and_connections_beyond_the_cited_keep_their_verdict(tmp_path, monkeypatch):
    """In process, on every shipped capture: the frames, interfaces and exact timestamps of
    the input; and with a finding citing a single connection, the summaries of the others
    still name it."""
    from proxydiag.rules import judge as judging

    monkeypatch.setattr(judging, "MAX_CITED_CONNECTIONS", 1)
    for capture in SHIPPED:
        out = tmp_path / "out.pcapng"
        analysis = annotate_in_process(capture, out)
        with open_capture(str(capture), exact=True) as original, open_capture(str(out), exact=True) as annotated:
            assert list(annotated) == list(original), capture.name
            assert [(i.linktype, i.tsresol, i.tsoffset, i.options) for i in annotated.interfaces] == \
                [(i.linktype, i.tsresol, i.tsoffset, i.options) for i in original.interfaces]
        summaries = [comment for _, body in read_blocks(out.read_bytes()) if _ == 6
                     for comment in read_packet(body)[4] if comment.startswith("proxydiag connection #")]
        assert len(summaries) == len(analysis.connections), capture.name
        for finding in analysis.findings:
            naming = [line for line in summaries if f"{finding.code} {finding.slug}" in line.split("verdict:")[1]]
            assert len(naming) >= finding.count, (capture.name, finding.code)


# -- Wireshark reads it back ----------------------------------------------------------------


def tshark_frames(path: Path) -> list[dict]:
    """Every frame: number, time, interface, link type, lengths, TCP stream, comments."""
    fields = ["frame.number", "frame.time_epoch", "frame.interface_id", "frame.encap_type", "frame.len", "frame.cap_len",
              "tcp.stream", "frame.comment"]
    command = ["tshark", "-r", str(path), "-T", "json"]
    for field in fields:
        command += ["-e", field]
    output = subprocess.run(command, capture_output=True, text=True, check=True, timeout=120).stdout
    return [{name: layers.get(name, []) for name in fields} for layers in
            (packet["_source"]["layers"] for packet in json.loads(output or "[]"))]


def cited_frames(document: dict, offsets: list[int]) -> dict[str, set[int]]:
    """Code -> the frames (numbered across the inputs) the JSON report's findings cite."""
    input_of = {conn["id"]: conn["input"] for conn in document["connections"]}
    cited: dict[str, set[int]] = {}
    for finding in document["findings"]:
        frames = cited.setdefault(finding["code"], set())
        for number, frame in zip(finding["connections"], finding["first_frames"], strict=True):
            if frame is not None:
                frames.add(offsets[input_of[number]] + frame)
        for key in EVIDENCE_FRAME_KEYS:
            frame = finding["evidence"].get(key)
            if isinstance(frame, int) and finding["connections"]:
                frames.add(offsets[input_of[finding["connections"][0]]] + frame)
    return cited


def check_annotated(inputs: list[Path], out: Path, document: dict) -> None:
    originals = [tshark_frames(path) for path in inputs]
    offsets = [sum(len(frames) for frames in originals[:index]) for index in range(len(inputs))]
    annotated = tshark_frames(out)
    assert len(annotated) == sum(len(frames) for frames in originals)
    for index, frames in enumerate(originals):
        for frame, copy in zip(frames, annotated[offsets[index]:], strict=False):
            for field in ("frame.time_epoch", "frame.encap_type", "frame.len", "frame.cap_len"):
                assert copy[field] == frame[field], (inputs[index].name, frame["frame.number"], field)
    comments = {int(frame["frame.number"][0]): frame["frame.comment"] for frame in annotated}
    for code, frames in cited_frames(document, offsets).items():
        slug = RULES_BY_CODE[code].slug
        carrying = {number for number, texts in comments.items() if any(text.startswith(f"{code} {slug}: ") for text in texts)}
        assert carrying == frames, (code, sorted(carrying), sorted(frames))
    stream_of = {int(frame["frame.number"][0]): frame["tcp.stream"] for frame in annotated}
    for finding in document["findings"]:  # an evidence frame is one of its first connection's
        first = next((c for c in document["connections"] if c["id"] == finding["connections"][0]), None)
        for key in EVIDENCE_FRAME_KEYS:
            frame = finding["evidence"].get(key)
            if isinstance(frame, int) and first is not None:
                assert stream_of[offsets[first["input"]] + frame] == stream_of[offsets[first["input"]] + first["first_frame"]]
    summarised: dict[int, list[str]] = {}
    for number, texts in comments.items():
        for text in texts:
            if text.startswith("proxydiag connection #"):
                summarised.setdefault(number, []).append(text.split(":")[0])
    expected: dict[int, list[str]] = {}
    for conn in document["connections"]:
        expected.setdefault(offsets[conn["input"]] + conn["first_frame"], []).append(f"proxydiag connection #{conn['id']}")
    assert summarised == expected
    for texts in comments.values():
        assert all(text.isprintable() for text in texts)


@pytest.mark.lab
@pytest.mark.parametrize("capture", SHIPPED, ids=lambda path: path.name)
def test_tshark_reads_the_comments_on_the_frames_the_json_report_cites(tmp_path, capture):
    out, report = tmp_path / "annotated.pcapng", tmp_path / "report.json"
    result = run("analyze", str(capture), "--format", "json", "-o", str(report), "--annotate", str(out))
    assert result.returncode in (0, 1), result.stderr
    check_annotated([capture], out, json.loads(report.read_text()))


@pytest.mark.lab
def test_several_inputs_go_into_one_file_with_an_interface_block_per_input_interface(tmp_path):
    inputs = [ROOT / "captures" / "multi-if.pcapng", ROOT / "captures" / "nanosecond.pcap",
              ROOT / "captures" / "two-proxies-both-send.pcap"]
    out, report = tmp_path / "annotated.pcapng", tmp_path / "report.json"
    result = run("analyze", *map(str, inputs), "--format", "json", "-o", str(report), "--annotate", str(out))
    assert result.returncode in (0, 1), result.stderr
    check_annotated(inputs, out, json.loads(report.read_text()))
    interfaces = [body for block_type, body in read_blocks(out.read_bytes()) if block_type == 1]
    assert [struct.unpack_from("<H", body)[0] for body in interfaces] == [1, 113, 1, 1]  # lo, any; two pcaps
    assert [frame["frame.interface_id"] for frame in tshark_frames(out)][-1] == ["3"]


@pytest.mark.lab
def test_wireshark_lists_the_comments_under_expert_info(tmp_path):
    out = tmp_path / "annotated.pcapng"
    assert run("analyze", str(ROOT / "captures" / "tls-passthrough-to-plain.pcap"), "-q", "--annotate", str(out)).returncode == 1
    expert = subprocess.run(["tshark", "-r", str(out), "-q", "-z", "expert,comment"], capture_output=True, text=True,
                            check=True, timeout=120).stdout
    assert "PD303 tls-to-plaintext-listener: connection #2, error:" in expert
    assert "proxydiag connection #2:" in expert


def annotated_comments(capture: Path, out: Path) -> list[str]:
    """The comments `--annotate` writes for a capture (in process), as the file holds them."""
    annotate_in_process(capture, out)
    return [text for block_type, body in read_blocks(out.read_bytes()) if block_type == 6 for text in read_packet(body)[4]]


@pytest.mark.lab
def test_the_hostile_captures_give_comments_that_are_text(tmp_path):
    """Markup, terminal control and bidi overrides from the wire never reach a comment raw."""
    from tests.craft import Conversation, write_pcap

    manifest = json.loads((ROOT / "tests" / "hostile" / "manifest.json").read_text())
    hostile = [ROOT / "tests" / "hostile" / "files" / entry["file"] for entry in manifest
               if entry["command"] == "analyze" and entry["file"].endswith(".pcap")]
    refusal = Conversation(client=("192.0.2.20", 40000), server=("192.0.2.25", 10025))
    refusal.handshake()
    refusal.client_sends(build_v2(src_addr="203.0.113.9", dst_addr="192.0.2.25", src_port=50000, dst_port=25))
    refusal.server_sends("554 \x1b]8;;http://evil.example/\x07click\x1b]8;;\x07 \u202eevil [bold]x[/bold] <b>\r\n".encode())
    refusal.close(by="server")
    crafted = write_pcap(tmp_path / "refusal.pcap", [refusal])  # PD401 quotes the server's words
    shown = [text for capture in [*hostile, crafted] for text in annotated_comments(capture, tmp_path / "out.pcapng")]
    for text in shown:
        assert text.isprintable() and "\x1b" not in text and "\u202e" not in text, text
    assert any("UNIX_STREAM /run/\\x1b[2Jevil\\u202e" in text for text in shown)  # a v2 header's path
    out = tmp_path / "refusal.pcapng"
    assert run("analyze", str(crafted), "-q", "--annotate", str(out)).returncode == 1
    refused = [text for frame in tshark_frames(out) for text in frame["frame.comment"] if text.startswith("PD401")]
    assert refused and all("evil.example" in text and text.isprintable() and "\x1b" not in text for text in refused)


# -- flat memory ----------------------------------------------------------------------------


def test_memory_stays_flat_when_an_annotated_capture_grows(tmp_path):
    from tests.test_judging import generate, peak_rss_kib

    small, large = tmp_path / "small.pcap", tmp_path / "large.pcap"
    truth_small = generate(small, "sessions", megabytes=4, bulk_segments=0)
    truth_large = generate(large, "sessions", megabytes=16, bulk_segments=0)
    options = ("--format", "json", "--annotate", str(tmp_path / "out.pcapng"))
    grown = peak_rss_kib(large, 500, *options) - peak_rss_kib(small, 500, *options)
    per_connection = grown * 1024 / (truth_large["connections"] - truth_small["connections"])
    assert per_connection < 400, f"{per_connection:.0f} bytes more per connection"
    with open_capture(str(tmp_path / "out.pcapng")) as annotated:  # the small capture's, written last
        assert sum(1 for _ in annotated) == truth_small["packets"]


# -- sniff -w FILE --annotate OUT ------------------------------------------------------------


@pytest.mark.lab
def test_sniff_annotates_the_file_it_wrote(tmp_path):
    from tests.daemons import wait_capturing
    from tests.test_sniff import serve_smtp_once

    server = socket.socket()
    server.bind(("127.93.0.25", 0))
    server.listen()
    port = server.getsockname()[1]
    threading.Thread(target=serve_smtp_once, args=(server,), daemon=True).start()
    written, out, report = tmp_path / "live.pcap", tmp_path / "live.pcapng", tmp_path / "report.json"
    sniffer = subprocess.Popen(
        [sys.executable, "-m", "proxydiag", "sniff", "-i", "lo", "-f", f"host 127.93.0.25 and tcp port {port}",
         "--duration", "4", "--format", "json", "-o", str(report), "-w", str(written), "--annotate", str(out),
         "--fail-on", "never"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        wait_capturing(sniffer)
        with socket.create_connection(("127.93.0.25", port), timeout=5) as client:
            client.recv(4096)  # the greeting, then a header too late (PD107)
            client.sendall(build_v2(src_addr="203.0.113.7", dst_addr="192.0.2.10", src_port=40000, dst_port=25))
            client.recv(4096)
        _, err = sniffer.communicate(timeout=30)
    finally:
        if sniffer.poll() is None:
            sniffer.kill()
        server.close()
    assert sniffer.returncode == 0, err
    document = json.loads(report.read_text())
    assert document["connections"] and document["findings"]
    check_annotated([written], out, document)
