"""Connections that open alike are recognised once: the recognisers run once per distinct
(client bytes, server bytes, port), and those connections share the `Opening`."""

from __future__ import annotations

import pytest

from proxydiag.facts import describe
from proxydiag.pipeline.analysis import analyze_files
from tests.craft import Conversation, write_pcap

GREETING = b"220 mx.example.test ESMTP\r\n"
EHLO_REPLY = b"250-mx.example.test\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n"


def smtp_session(client_port: int, ehlo: bytes, start: float) -> Conversation:
    conv = Conversation(client=("198.51.100.7", client_port), server=("192.0.2.25", 25), start=start)
    conv.handshake().server_sends(GREETING).client_sends(ehlo).server_sends(EHLO_REPLY)
    return conv.close()


@pytest.fixture
def counted_recognise(monkeypatch):
    calls: list[tuple[bytes, bytes]] = []
    real = describe.recognise

    def counting(client, server, *rest):
        calls.append((client, server))
        return real(client, server, *rest)

    monkeypatch.setattr(describe, "recognise", counting)
    describe.recognised.cache_clear()
    yield calls
    describe.recognised.cache_clear()


def test_identical_openings_are_recognised_once_and_share_it(tmp_path, counted_recognise):
    sessions = [smtp_session(40001, b"EHLO a.example\r\n", 1.0), smtp_session(40002, b"EHLO a.example\r\n", 2.0),
                smtp_session(40003, b"EHLO b.example\r\n", 3.0)]
    analysis = analyze_files([str(write_pcap(tmp_path / "alike.pcap", sessions))])
    first, second, third = sorted(analysis.connections, key=lambda conn: conn.tcp.src_port)
    assert len(counted_recognise) == 2
    assert first.opening is second.opening
    assert third.opening is not first.opening
    assert third.opening.to_dict()["client_first_line"] == "EHLO b.example"
    assert first.opening.to_dict()["client_first_line"] == "EHLO a.example"


def test_the_same_bytes_on_another_port_are_recognised_again(tmp_path, counted_recognise):
    on_25 = smtp_session(40001, b"EHLO a.example\r\n", 1.0)
    on_587 = Conversation(client=("198.51.100.7", 40002), server=("192.0.2.25", 587), start=2.0)
    on_587.handshake().server_sends(GREETING).client_sends(b"EHLO a.example\r\n").server_sends(EHLO_REPLY).close()
    analysis = analyze_files([str(write_pcap(tmp_path / "ports.pcap", [on_25, on_587]))])
    ports = {conn.tcp.dst_port: conn.opening for conn in analysis.connections}
    assert len(counted_recognise) == 2
    assert ports[25] is not ports[587] and ports[587].server_port == 587


def test_remembered_openings_are_bounded():
    assert describe.recognised.cache_info().maxsize == describe.OPENINGS_REMEMBERED <= 1024
