"""Where live frames come from: tcpdump's pcap stream read in pieces of any size, and the
packet socket used when there is no tcpdump (both on loopback; capturing needs root)."""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxydiag.capture.livesources import PacketSocket, PcapStream, Tcpdump, open_source

records = st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 999_999), st.binary(max_size=300)), max_size=20)


def pcap_bytes(entries, linktype: int = 1, order: str = "<") -> bytes:
    out = struct.pack(order + "IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype)
    for seconds, micros, data in entries:
        out += struct.pack(order + "IIII", seconds, micros, len(data), len(data) + 7) + data
    return out


@settings(max_examples=200, deadline=None)
@given(records, st.lists(st.integers(1, 64), max_size=40), st.sampled_from(["<", ">"]), st.sampled_from([1, 113, 276]))
def test_a_pcap_stream_gives_the_same_records_however_it_is_cut(entries, cuts, order, linktype):
    data = pcap_bytes(entries, linktype, order)
    stream, frames, at = PcapStream(), [], 0
    for size in cuts + [len(data)]:
        frames += list(stream.feed(data[at:at + size]))
        at += size
    assert [(frame, wire) for _, _, frame, wire in frames] == [(data_, len(data_) + 7) for _, _, data_ in entries]
    assert all(kind == linktype for _, kind, _, _ in frames)
    assert [round(ts, 6) for ts, _, _, _ in frames] == [round(s + m / 1e6, 6) for s, m, _ in entries]


def one_session(address: tuple[str, int]) -> None:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(address)
    server.listen()

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.sendall(b"220 test ESMTP\r\n")
            conn.recv(100)

    thread = threading.Thread(target=serve)
    thread.start()
    with socket.create_connection(address) as client:
        client.recv(100)
        client.sendall(b"QUIT\r\n")
    thread.join()
    server.close()


def frames_of(source, seconds: float) -> list:
    frames, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        frames += list(source.frames(0.1))
    source.close()
    return frames


@pytest.mark.lab
def test_the_packet_socket_sees_each_loopback_frame_once_with_the_kernels_time():
    address = ("127.0.0.77", 12399)
    source = PacketSocket("lo", f"tcp port {address[1]}")
    before = time.time()
    one_session(address)
    frames = frames_of(source, 1.0)
    assert b"QUIT\r\n" in b"".join(frame for _, _, frame, _ in frames) and len(frames) >= 8
    assert len({frame for _, _, frame, _ in frames}) == len(frames), "a frame seen twice (out and in)"
    assert all(kind == 1 and before - 1 <= ts <= time.time() + 1 for ts, kind, _, _ in frames)
    assert source.dropped == 0


@pytest.mark.lab
def test_tcpdump_is_the_source_where_it_is_installed_and_stops_cleanly():
    address = ("127.0.0.78", 12398)
    source = open_source("lo", f"tcp port {address[1]}")
    assert isinstance(source, Tcpdump)
    one_session(address)
    frames = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(frames) < 8:
        frames += list(source.frames(0.2))
    frames += list(source.rest())
    source.close()
    assert source.process.returncode is not None
    assert len(frames) >= 8 and b"QUIT\r\n" in b"".join(frame for _, _, frame, _ in frames)
    assert source.dropped == 0
