"""Tests for proxydiag.capture.sources: pcap/pcapng readers on files, streams and broken input."""

from __future__ import annotations

import gzip
import io
import json
import os
import random
import struct
import subprocess
import sys
import threading
from pathlib import Path

import dpkt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxydiag.capture import sources
from proxydiag.capture.sources import CaptureError, open_capture, read_records

ROOT = Path(__file__).resolve().parent.parent

# -- capture builders -------------------------------------------------------

PCAP_MAGIC = {"usec": 0xA1B2C3D4, "nsec": 0xA1B23C4D, "modified": 0xA1B2CD34}


def pcap_bytes(records, *, order="<", kind="usec", linktype=1, snaplen=65535):
    """records: (sec, frac, data, wire_length); frac in the file's unit."""
    out = [struct.pack(order + "IHHiIII", PCAP_MAGIC[kind], 2, 4, 0, 0, snaplen, linktype)]
    for sec, frac, data, wire_length in records:
        out.append(struct.pack(order + "IIII", sec, frac, len(data), wire_length))
        if kind == "modified":
            out.append(struct.pack(order + "IHBx", 3, 0x0800, 0))
        out.append(data)
    return b"".join(out)


def ng_block(order, block_type, body):
    body += b"\0" * (-len(body) % 4)
    length = len(body) + 12
    return struct.pack(order + "II", block_type, length) + body + struct.pack(order + "I", length)


def ng_options(order, *options):
    encoded = b""
    for code, value in options:
        encoded += struct.pack(order + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)
    return encoded + struct.pack(order + "HH", 0, 0)


def shb(order, options=b""):
    return ng_block(order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1) + options)


def idb(order, linktype, snaplen=0, options=b""):
    return ng_block(order, 1, struct.pack(order + "HHI", linktype, 0, snaplen) + options)


def epb(order, interface, ticks, data, wire_length=None):
    fields = (interface, ticks >> 32, ticks & 0xFFFFFFFF, len(data), wire_length or len(data))
    return ng_block(order, 6, struct.pack(order + "IIIII", *fields) + data)


def pb(order, interface, ticks, data):
    fields = (interface, 0, ticks >> 32, ticks & 0xFFFFFFFF, len(data), len(data))
    return ng_block(order, 2, struct.pack(order + "HHIIII", *fields) + data)


def spb(order, wire_length, data):
    return ng_block(order, 3, struct.pack(order + "I", wire_length) + data)


def tsresol(order, value):
    return ng_options(order, (9, bytes([value])))


def frame(n, size=None):
    """Distinct, recognisable frame bytes."""
    size = size or 40 + n
    return bytes((n + i) & 0xFF for i in range(size))


def read_all(path):
    with open_capture(str(path)) as reader:
        return list(reader), reader.info


def read_bytes(data, path="mem"):
    reader = read_records(io.BytesIO(data), path)
    return list(reader), reader.info


def assert_records(actual, expected, tolerance=1e-9):
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected):
        assert got[0] == want[0]
        assert got[1] == pytest.approx(want[1], abs=tolerance)
        assert got[2:] == want[2:]
        assert type(got[3]) is bytes


def assert_damaged(info):
    assert info.damaged
    assert "\n" not in info.damaged


# -- pcap -------------------------------------------------------------------


def test_pcap_written_by_dpkt(tmp_path):
    path = tmp_path / "dpkt.pcap"
    frames = [frame(i) for i in range(5)]
    with open(path, "wb") as f:
        writer = dpkt.pcap.Writer(f, linktype=dpkt.pcap.DLT_EN10MB)
        for i, data in enumerate(frames):
            writer.writepkt(data, ts=1700000000.25 + i * 0.001)

    records, info = read_all(path)

    assert_records(records, [(i + 1, 1700000000.25 + i * 0.001, 1, frames[i], len(frames[i])) for i in range(5)], 1e-6)
    assert (info.format, info.linktypes, info.packets, info.damaged) == ("pcap", [1], 5, None)
    assert info.size == info.bytes_read == path.stat().st_size
    assert info.path == str(path)


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize(
    "kind, frac, expected_ts",
    [("usec", 123456, 7.123456), ("nsec", 123456789, 7.123456789), ("modified", 654321, 7.654321)],
)
def test_pcap_variants_by_hand(order, kind, frac, expected_ts):
    data = pcap_bytes(
        [(7, frac, frame(1), 1514), (8, 0, frame(2, 60), 60)], order=order, kind=kind, linktype=113
    )

    records, info = read_bytes(data)

    assert_records(records, [(1, expected_ts, 113, frame(1), 1514), (2, 8.0, 113, frame(2, 60), 60)], 1e-12)
    assert info.linktypes == [113] and info.damaged is None
    assert info.bytes_read == len(data)
    assert info.size is None


def test_pcap_linktype_fcs_bits_are_masked():
    fcs_info = (2 << 28) | 0x04000000
    records, info = read_bytes(pcap_bytes([(1, 0, frame(1), 41)], linktype=fcs_info | 276))
    assert info.linktypes == [276]
    assert records[0][2] == 276


def test_pcap_header_only_yields_nothing():
    records, info = read_bytes(pcap_bytes([]))
    assert records == [] and info.damaged is None and info.packets == 0


def test_pcap_frame_larger_than_a_chunk():
    big = os.urandom(sources.MAX_CAPLEN)
    records, info = read_bytes(pcap_bytes([(1, 0, frame(1), 41), (2, 0, big, len(big)), (3, 0, frame(3), 43)]))
    assert [r[3] for r in records] == [frame(1), big, frame(3)]
    assert info.damaged is None


def test_packets_counts_records_yielded_so_far():
    reader = read_records(io.BytesIO(pcap_bytes([(i, 0, frame(i), 50) for i in range(10)])), "mem")
    iterator = iter(reader)
    for expected in range(1, 4):
        next(iterator)
        assert reader.info.packets == expected


def test_random_capture_matches_dpkt_reader(tmp_path):
    rnd = random.Random(42)
    path = tmp_path / "random.pcap"
    with open(path, "wb") as f:
        writer = dpkt.pcap.Writer(f)
        ts = 1_700_000_000.0
        for _ in range(3000):
            ts += rnd.random() / 100
            writer.writepkt(rnd.randbytes(rnd.randint(60, 1500)), ts=ts)
    with open(path, "rb") as f:
        reference = list(dpkt.pcap.Reader(f))

    records, info = read_all(path)

    assert len(records) == len(reference) == info.packets == 3000
    assert [r[0] for r in records] == list(range(1, 3001))
    for (_, ts, linktype, data, wire_length), (ref_ts, ref_data) in zip(records, reference):
        assert abs(ts - ref_ts) < 1e-6
        assert data == ref_data and wire_length == len(ref_data) and linktype == 1


# -- pcapng -----------------------------------------------------------------


def two_interface_capture(order):
    """Two sections; the first has an Ethernet (us) and a SLL2 (ns) interface."""
    nrb = ng_block(order, 4, ng_options(order, (1, b"\x7f\x00\x00\x01localhost\0")))
    isb = ng_block(order, 5, struct.pack(order + "III", 0, 0, 0))
    custom = ng_block(order, 0x40000BAD, b"\x00\x00\x7f\xffsomething")
    offset_and_binary_resolution = ng_options(order, (9, bytes([0x80 | 10])), (14, struct.pack(order + "q", 1000)))
    return b"".join([
        shb(order, ng_options(order, (4, b"test suite"))),
        idb(order, 1, 65535),
        idb(order, 276, 262144, tsresol(order, 9)),
        nrb,
        epb(order, 0, 1_700_000_000_123_456, frame(1), 1514),
        epb(order, 1, 1_700_000_000_123_456_789, frame(2)),
        custom,
        spb(order, len(frame(3)), frame(3)),
        pb(order, 1, 5_000_000_001, frame(4)),
        isb,
        shb(order),
        idb(order, 101, 0, offset_and_binary_resolution),
        epb(order, 0, 3 * 1024 + 512, frame(5)),
    ])


@pytest.mark.parametrize("order", ["<", ">"])
def test_pcapng_interfaces_sections_and_block_kinds(order):
    records, info = read_bytes(two_interface_capture(order))

    assert_records(records, [
        (1, 1_700_000_000.123456, 1, frame(1), 1514),
        (2, 1_700_000_000.123456789, 276, frame(2), len(frame(2))),
        # frame 3 is the custom block, numbered but not yielded, as in Wireshark
        (4, 1_700_000_000.123456789, 1, frame(3), len(frame(3))),  # SPB: previous timestamp
        (5, 5.000000001, 276, frame(4), len(frame(4))),
        (6, 1000 + 3.5, 101, frame(5), len(frame(5))),
    ], 1e-6)
    assert records[3][1] == pytest.approx(5.000000001, abs=1e-12)
    assert info.format == "pcapng"
    assert info.linktypes == [1, 276, 101]
    assert info.packets == 5 and info.damaged is None


def test_pcapng_sections_may_change_byte_order():
    data = two_interface_capture("<") + shb(">") + idb(">", 1) + epb(">", 0, 2_000_000, frame(9))
    records, info = read_bytes(data)
    assert [r[0] for r in records] == [1, 2, 4, 5, 6, 7]
    assert records[-1][1:] == (2.0, 1, frame(9), len(frame(9)))
    assert info.damaged is None


def test_pcapng_new_section_forgets_interfaces():
    first_section = shb("<") + idb("<", 1) + idb("<", 276)
    data = first_section + shb("<") + idb("<", 1) + epb("<", 1, 0, frame(1)) + epb("<", 0, 0, frame(2))
    records, info = read_bytes(data)
    assert [(r[0], r[3]) for r in records] == [(1, frame(2))]
    assert_damaged(info)
    assert "interface 1" in info.damaged


def test_pcapng_simple_packet_length_is_limited_by_snaplen_and_wire_length():
    data = b"".join([
        shb("<"),
        idb("<", 1, snaplen=64),
        spb("<", 1000, frame(1, 100)),  # snapped at 64
        spb("<", 30, frame(2, 40)),  # padding beyond the wire length is not data
    ])
    records, info = read_bytes(data)
    assert [(r[3], r[4]) for r in records] == [(frame(1, 64), 1000), (frame(2, 30), 30)]
    assert [r[1] for r in records] == [0.0, 0.0]
    assert info.damaged is None


def test_pcapng_epb_for_undescribed_interface_is_skipped_and_reported():
    data = shb("<") + idb("<", 1) + epb("<", 0, 1, frame(1)) + epb("<", 5, 2, frame(2)) + epb("<", 0, 3, frame(3))
    records, info = read_bytes(data)
    assert [(r[0], r[3]) for r in records] == [(1, frame(1)), (2, frame(3))]
    assert_damaged(info)
    assert "interface 5" in info.damaged


def test_pcapng_blocks_larger_than_a_chunk():
    big = os.urandom(sources.MAX_CAPLEN)
    data = shb("<") + idb("<", 1) + ng_block("<", 0xBAD, os.urandom(3 << 20)) + epb("<", 0, 1, big)
    records, info = read_bytes(data)
    assert [r[3] for r in records] == [big]
    assert info.damaged is None


def test_pcapng_matches_dpkt_pcapng_reader_on_single_interface():
    rnd = random.Random(7)
    frames = [rnd.randbytes(rnd.randint(60, 1500)) for _ in range(200)]
    data = shb("<") + idb("<", 1, 0, tsresol("<", 9)) + b"".join(
        epb("<", 0, 1_700_000_000_000_000_000 + i * 1_234_567, f) for i, f in enumerate(frames)
    )
    reference = list(dpkt.pcapng.Reader(io.BytesIO(data)))

    records, _ = read_bytes(data)

    assert len(records) == len(reference) == 200
    for (_, ts, _, got, _), (ref_ts, ref_data) in zip(records, reference):
        assert abs(ts - ref_ts) < 1e-6 and got == ref_data


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 64])
def test_records_split_across_tiny_chunks(monkeypatch, chunk_size):
    pcap = pcap_bytes([(i, i, frame(i), 99) for i in range(20)])
    pcapng = two_interface_capture("<")
    expected_pcap, expected_ng = read_bytes(pcap)[0], read_bytes(pcapng)[0]
    monkeypatch.setattr(sources, "CHUNK_SIZE", chunk_size)

    assert read_bytes(pcap)[0] == expected_pcap
    assert read_bytes(pcapng)[0] == expected_ng


class Trickle(io.RawIOBase):
    """A stream that hands out at most 3 bytes per read and cannot seek."""

    def __init__(self, data):
        self._data = memoryview(data)

    def readable(self):
        return True

    def read(self, n=-1):
        n = 3 if n < 0 else min(n, 3)
        piece, self._data = bytes(self._data[:n]), self._data[n:]
        return piece


def test_short_reads_are_completed():
    data = two_interface_capture(">")
    reader = read_records(Trickle(data), "trickle")
    assert list(reader) == read_bytes(data)[0]
    assert reader.info.bytes_read == len(data)


# -- standard input and pipes -------------------------------------------------


def test_stdin_is_read_without_seeking(tmp_path):
    data = pcap_bytes([(i, 0, frame(i, 1000), 1000) for i in range(1000)])
    script = (
        "import json; from proxydiag.capture.sources import open_capture\n"
        "r = open_capture('-')\n"
        "recs = [(n, ts, lt, len(b), w) for n, ts, lt, b, w in r]\n"
        "print(json.dumps([recs, r.info.path, r.info.size, r.info.bytes_read, r.info.damaged]))"
    )
    # a pipe, not a redirected file: stdin cannot seek
    result = subprocess.run(
        [sys.executable, "-c", script], input=data, capture_output=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True,
    )
    records, path, size, bytes_read, damaged = json.loads(result.stdout)
    assert records == [[i + 1, float(i), 1, 1000, 1000] for i in range(1000)]
    assert (path, size, bytes_read, damaged) == ("-", None, len(data), None)


def test_read_records_over_a_pipe():
    data = two_interface_capture("<") + b"".join(epb("<", 0, i, frame(i, 1400)) for i in range(2000))
    read_fd, write_fd = os.pipe()

    def write():
        with open(write_fd, "wb") as pipe:
            pipe.write(data)

    writer = threading.Thread(target=write)
    writer.start()
    with open(read_fd, "rb") as stream:
        assert not stream.seekable()
        reader = read_records(stream, "-")
        records = list(reader)
    writer.join()
    assert len(records) == 2005
    assert records[-1][3] == frame(1999, 1400)
    assert reader.info.bytes_read == len(data) and reader.info.damaged is None


def test_read_records_leaves_the_stream_open_but_open_capture_closes_its_file(tmp_path):
    stream = io.BytesIO(pcap_bytes([(1, 0, frame(1), 41)]))
    with read_records(stream, "mem"):
        pass
    assert not stream.closed

    path = tmp_path / "a.pcap"
    path.write_bytes(pcap_bytes([(1, 0, frame(1), 41)]))
    with open_capture(str(path)) as reader:
        stream = reader._stream
    assert stream.closed


# -- damaged captures ---------------------------------------------------------


def complete_pcap(count=5):
    return pcap_bytes([(i, 0, frame(i), 80) for i in range(count)])


PCAP_RECORD_END = [24 + sum(16 + len(frame(i)) for i in range(n + 1)) for n in range(5)]


@pytest.mark.parametrize(
    "cut, where",
    [(PCAP_RECORD_END[2] + 7, "record header"), (PCAP_RECORD_END[2] + 16 + 5, "packet data")],
)
def test_pcap_cut_short_yields_complete_records(cut, where):
    records, info = read_bytes(complete_pcap()[:cut])
    assert [r[0] for r in records] == [1, 2, 3]
    assert_damaged(info)
    assert where in info.damaged and "packet 4" in info.damaged


def test_pcap_absurd_caplen_stops_reading():
    data = bytearray(complete_pcap())
    struct.pack_into("<I", data, PCAP_RECORD_END[1] + 8, sources.MAX_CAPLEN + 1)
    records, info = read_bytes(bytes(data))
    assert [r[0] for r in records] == [1, 2]
    assert_damaged(info)
    assert str(sources.MAX_CAPLEN + 1) in info.damaged


def pcapng_prefix():
    return shb("<") + idb("<", 1) + epb("<", 0, 1, frame(1)) + epb("<", 0, 2, frame(2))


@pytest.mark.parametrize("cut", [3, 11, 30, 40])
def test_pcapng_cut_inside_a_block(cut):
    records, info = read_bytes(pcapng_prefix() + epb("<", 0, 3, frame(3))[:cut])
    assert [r[3] for r in records] == [frame(1), frame(2)]
    assert_damaged(info)
    assert "middle of a block" in info.damaged


@pytest.mark.parametrize("length", [0, 8, 13, 0xFFFFFFFC])
def test_pcapng_garbage_block_length(length):
    bad = struct.pack("<II", 6, length) + bytes(40)
    records, info = read_bytes(pcapng_prefix() + bad + epb("<", 0, 3, frame(3)))
    assert [r[3] for r in records] == [frame(1), frame(2)]
    assert_damaged(info)
    assert "block length" in info.damaged


def test_pcapng_mismatched_trailing_length():
    bad = bytearray(epb("<", 0, 3, frame(3)))
    bad[-4:] = struct.pack("<I", 12)
    records, info = read_bytes(pcapng_prefix() + bytes(bad) + epb("<", 0, 4, frame(4)))
    assert [r[3] for r in records] == [frame(1), frame(2)]
    assert_damaged(info)


def test_pcapng_caplen_beyond_block_is_skipped():
    bad = bytearray(epb("<", 0, 3, frame(3)))
    struct.pack_into("<I", bad, 20, 4000)
    records, info = read_bytes(pcapng_prefix() + bytes(bad) + epb("<", 0, 4, frame(4)))
    assert [(r[0], r[3]) for r in records] == [(1, frame(1)), (2, frame(2)), (3, frame(4))]
    assert_damaged(info)


def test_pcapng_packet_before_any_interface():
    records, info = read_bytes(shb("<") + spb("<", 10, frame(1, 10)) + idb("<", 1) + spb("<", 10, frame(2, 10)))
    assert [r[3] for r in records] == [frame(2, 10)]
    assert_damaged(info)


def test_first_problem_is_kept():
    data = shb("<") + idb("<", 1) + epb("<", 3, 1, frame(1)) + epb("<", 0, 2, frame(2))[:20]
    records, info = read_bytes(data)
    assert [r[3] for r in records] == []
    assert "interface 3" in info.damaged


def test_read_error_midway_is_reported_as_damage():
    class FailingDisk(io.BytesIO):
        def read1(self, n=-1):
            if self.tell() >= PCAP_RECORD_END[1]:
                raise OSError(5, "Input/output error")
            return super().read1(min(n, PCAP_RECORD_END[1] - self.tell()))

    reader = read_records(FailingDisk(complete_pcap()), "disk.pcap")
    assert [r[0] for r in reader] == [1, 2]
    assert_damaged(reader.info)
    assert "Input/output error" in reader.info.damaged


# -- files that are not captures ---------------------------------------------


def assert_capture_error(path_or_data, *words):
    with pytest.raises(CaptureError) as caught:
        if isinstance(path_or_data, bytes):
            read_records(io.BytesIO(path_or_data), "input.bin")
        else:
            open_capture(str(path_or_data))
    message = str(caught.value)
    assert "\n" not in message
    for word in words:
        assert word in message
    return message


def test_text_file(tmp_path):
    path = tmp_path / "capture.txt"
    path.write_text("Hello, this is tcpdump output\n")
    message = assert_capture_error(path, "capture.txt", "not a pcap or pcapng", "48 65 6c 6c", "tcpdump -w")
    assert "text" in message


def test_empty_file(tmp_path):
    path = tmp_path / "empty.pcap"
    path.write_bytes(b"")
    assert_capture_error(path, "empty")


@pytest.mark.parametrize(
    "compress, tool",
    [(gzip.compress, "zcat"), (lambda d: b"\x28\xb5\x2f\xfd" + d, "zstdcat"), (lambda d: b"\xfd7zXZ\0" + d, "xzcat")],
)
def test_compressed_file(tmp_path, compress, tool):
    path = tmp_path / "c.pcap.gz"
    path.write_bytes(compress(complete_pcap()))
    assert_capture_error(path, "decompress it first", f"{tool} {path} | proxydiag analyze -")


def test_directory(tmp_path):
    assert_capture_error(tmp_path, "directory")


def test_missing_file(tmp_path):
    assert_capture_error(tmp_path / "nope.pcap", "nope.pcap", "no such file")


def test_missing_file_with_newline_in_name(tmp_path):
    assert_capture_error(tmp_path / "two\nlines.pcap", "no such file")


def test_permission_denied(monkeypatch, tmp_path):
    # root ignores file modes, so simulate the error open() would raise
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(sources, "open", denied, raising=False)
    assert_capture_error(tmp_path / "secret.pcap", "secret.pcap", "permission denied")


@pytest.mark.parametrize(
    "data, words",
    [
        (b"\xd4\xc3", ["not a pcap", "d4 c3"]),
        (struct.pack("<I", 0xA1B2C3D4) + bytes(10), ["pcap file header"]),
        (b"\x0a\x0d\x0d\x0a\x1c\x00", ["pcapng section header"]),
        (b"\x0a\x0d\x0d\x0a\x1c\x00\x00\x00\x01\x02\x03\x04", ["byte-order magic"]),
    ],
)
def test_truncated_or_bad_headers(data, words):
    assert_capture_error(data, *words)


# -- arbitrary input never raises anything else --------------------------------


def consume(make_reader):
    try:
        reader = make_reader()
    except CaptureError as e:
        assert "\n" not in str(e)
        return
    records = list(reader)
    frame_numbers = [r[0] for r in records]
    assert frame_numbers == sorted(set(frame_numbers)) and all(n >= 1 for n in frame_numbers)
    assert reader.info.packets == len(records)
    assert reader.info.damaged is None or "\n" not in reader.info.damaged


fuzz = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@fuzz
@given(st.binary(max_size=2000))
def test_arbitrary_bytes(data):
    consume(lambda: read_records(io.BytesIO(data), "fuzz"))


@fuzz
@given(st.sampled_from(["<", ">"]), st.binary(max_size=2000))
def test_arbitrary_bytes_after_pcap_header(order, tail):
    consume(lambda: read_records(io.BytesIO(pcap_bytes([], order=order) + tail), "fuzz"))


@fuzz
@given(st.sampled_from(["<", ">"]), st.binary(max_size=2000))
def test_arbitrary_bytes_after_pcapng_header(order, tail):
    consume(lambda: read_records(io.BytesIO(shb(order) + idb(order, 1) + tail), "fuzz"))


block_types = st.sampled_from([0x0A0D0D0A, 1, 2, 3, 5, 6, 0xBAD])


@fuzz
@given(st.lists(st.tuples(block_types, st.binary(max_size=64)), max_size=12))
def test_plausible_pcapng_blocks(blocks):
    data = shb("<") + idb("<", 1) + b"".join(ng_block("<", t, body) for t, body in blocks)
    consume(lambda: read_records(io.BytesIO(data), "fuzz"))


@fuzz
@given(st.binary(max_size=300))
def test_arbitrary_file_contents(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "f.pcap"
    path.write_bytes(data)
    consume(lambda: open_capture(str(path)))


# -- Wireshark agrees -----------------------------------------------------------


@pytest.mark.lab
@pytest.mark.parametrize("order", ["<", ">"])
def test_frame_numbers_and_times_match_tshark(tmp_path, order):
    path = tmp_path / "two.pcapng"
    path.write_bytes(two_interface_capture(order))
    fields = ["frame.number", "frame.time_epoch", "frame.len", "frame.cap_len"]
    result = subprocess.run(
        ["tshark", "-r", str(path), "-T", "fields", *[arg for f in fields for arg in ("-e", f)]],
        capture_output=True, text=True, check=True,
    )
    rows = [line.split("\t") for line in result.stdout.splitlines()]

    records, _ = read_all(path)

    packet_rows = [row for row in rows if row[0] != "3"]  # frame 3 is the custom block
    assert len(rows) == 6
    assert [int(r[0]) for r in packet_rows] == [r[0] for r in records]
    assert [int(r[2]) for r in packet_rows] == [r[4] for r in records]
    assert [int(r[3]) for r in packet_rows] == [len(r[3]) for r in records]
    for row, record in zip(packet_rows, records):
        if record[0] != 4:  # an SPB has no time of its own
            assert float(row[1]) == pytest.approx(record[1], abs=1e-6)


@pytest.mark.lab
def test_mergecap_output_with_two_link_types(tmp_path):
    ether, sll2 = tmp_path / "ether.pcap", tmp_path / "sll2.pcap"
    ether.write_bytes(pcap_bytes([(100, 1, frame(1), 41), (102, 0, frame(3), 43)], linktype=1))
    sll2.write_bytes(pcap_bytes([(101, 5, frame(2), 42)], linktype=276))
    merged = tmp_path / "merged.pcapng"
    subprocess.run(["mergecap", "-F", "pcapng", "-w", str(merged), str(ether), str(sll2)], check=True)

    records, info = read_all(merged)

    assert_records(records, [
        (1, 100.000001, 1, frame(1), 41), (2, 101.000005, 276, frame(2), 42), (3, 102.0, 1, frame(3), 43),
    ], 1e-9)
    assert info.linktypes == [1, 276] and info.damaged is None
