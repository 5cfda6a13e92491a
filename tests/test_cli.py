"""The command line as a user meets it: real processes, exit codes, one-line errors."""

import json
import subprocess
import sys

import dpkt
import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from proxydiag.parsers.proxy_protocol import PP2_TYPE_SSL, build_ssl_value, build_v2

CLIENT, SERVER = "10.1.0.2", "10.1.0.3"
SECRET = "Tr0ub4dor&3xample"


def run(*args, stdin: bytes | None = None):
    return subprocess.run(
        [sys.executable, "-m", "proxydiag", *args], input=stdin, capture_output=True, timeout=60
    )


def smtp_session_frames() -> list[bytes]:
    header = build_v2(
        src_addr="203.0.113.7", dst_addr="192.0.2.10", src_port=40000, dst_port=465,
        tlvs=[(PP2_TYPE_SSL, build_ssl_value(version="TLSv1.3"))],
    )
    client_data = [header, b"EHLO client.example\r\n", b"AUTH PLAIN AGFsaWNlAFRyMHViNGRvciYzeGFtcGxl\r\n", f"PASS {SECRET}\r\n".encode()]
    c, s = {"src": CLIENT, "dst": SERVER}, {"src": SERVER, "dst": CLIENT}
    frames = [
        IP(**c) / TCP(sport=5555, dport=25, flags="S", seq=1000),
        IP(**s) / TCP(sport=25, dport=5555, flags="SA", seq=5000, ack=1001),
        IP(**c) / TCP(sport=5555, dport=25, flags="A", seq=1001, ack=5001),
    ]
    seq = 1001
    for chunk in client_data:
        frames.append(IP(**c) / TCP(sport=5555, dport=25, flags="PA", seq=seq, ack=5001) / Raw(chunk))
        seq += len(chunk)
        if chunk is header:
            greeting = b"220 mail.example.test Stalwart ESMTP at your service\r\n"
            frames.append(IP(**s) / TCP(sport=25, dport=5555, flags="PA", seq=5001, ack=seq) / Raw(greeting))
    frames.append(IP(**c) / TCP(sport=5555, dport=25, flags="FA", seq=seq, ack=5001))
    return [bytes(Ether() / frame) for frame in frames]


@pytest.fixture
def capture(tmp_path):
    path = tmp_path / "session.pcap"
    with open(path, "wb") as handle:
        writer = dpkt.pcap.Writer(handle)
        for index, frame in enumerate(smtp_session_frames()):
            writer.writepkt(frame, ts=1700000000 + index / 100)
    return path


def test_analyze_json_document(capture):
    result = run("analyze", str(capture), "--format", "json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["schema"] == "proxydiag/1"
    assert document["inputs"][0]["format"] == "pcap" and document["inputs"][0]["packets"] == 9
    (conn,) = document["connections"]
    assert conn["tcp"] == {"src_addr": CLIENT, "src_port": 5555, "dst_addr": SERVER, "dst_port": 25}
    header = conn["proxy_header"]
    assert (header["version"], header["command"], header["family"]) == (2, "PROXY", "TCP4")
    assert (header["src_addr"], header["src_port"], header["dst_port"]) == ("203.0.113.7", 40000, 465)
    assert header["ssl"]["client_ssl"] is True and header["ssl"]["version"] == "TLSv1.3"
    assert conn["greeting"].startswith("220 mail.example.test Stalwart")
    assert conn["closed_by"] == "client" and conn["first_speaker"] == "server"
    assert document["summary"]["with_proxy_header"] == 1


def test_credentials_never_printed(capture):
    for fmt in ("rich", "json"):
        result = run("analyze", str(capture), "--format", fmt)
        output = result.stdout.decode() + result.stderr.decode()
        assert SECRET not in output and "AGFsaWNlAFRyMHViNGRvciYzeGFtcGxl" not in output


def test_analyze_reads_standard_input(capture):
    result = run("analyze", "-", "--format", "json", stdin=capture.read_bytes())
    assert result.returncode == 0 and json.loads(result.stdout)["connections"][0]["proxy_header"]["version"] == 2


def test_damaged_capture_reports_what_was_readable(capture, tmp_path):
    damaged = tmp_path / "cut.pcap"
    damaged.write_bytes(capture.read_bytes()[:-30])
    result = run("analyze", str(damaged), "--format", "json")
    assert result.returncode == 2
    assert len(result.stderr.decode().strip().splitlines()) == 1 and b"Traceback" not in result.stderr
    assert json.loads(result.stdout)["connections"], "the readable part is still analysed"


@pytest.mark.parametrize("content", [b"hello world, not a capture\n", b"", b"\x1f\x8b\x08\x00gzip"])
def test_foreign_files_exit_2_with_one_line(tmp_path, content):
    path = tmp_path / "foreign.bin"
    path.write_bytes(content)
    result = run("analyze", str(path))
    assert result.returncode == 2 and result.stdout == b""
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("proxydiag: ") and "Traceback" not in lines[0]


def test_missing_file_and_directory(tmp_path):
    for target in (tmp_path / "nope.pcap", tmp_path):
        result = run("analyze", str(target))
        assert result.returncode == 2 and len(result.stderr.decode().strip().splitlines()) == 1


def test_decode_hex_json():
    header = build_v2(src_addr="192.0.2.1", dst_addr="192.0.2.2", src_port=1, dst_port=25)
    result = run("decode", header.hex() + "45484c4f", "--format", "json")
    document = json.loads(result.stdout)
    assert result.returncode == 0
    assert document["proxy_header"]["src_addr"] == "192.0.2.1" and document["violations"] == []
    assert document["trailing"] == 4


def test_decode_v1_text_and_violations():
    result = run("decode", "PROXY TCP4 192.0.2.1 192.0.2.2 1 070", "--format", "json")
    document = json.loads(result.stdout)
    assert result.returncode == 1
    assert document["violations"][0]["rule"] == "v1.port" and document["violations"][0]["offset"] == 33


def test_decode_raw_stdin_and_hexdump():
    header = build_v2(command="LOCAL", family="UNSPEC")
    raw = run("decode", "-", stdin=header)
    assert raw.returncode == 0 and b"LOCAL UNSPEC" in raw.stdout
    dump = "\n".join(
        f"{offset:08x}  " + " ".join(f"{byte:02x}" for byte in header[offset : offset + 16]) + "  |................|"
        for offset in range(0, len(header), 16)
    )
    result = run("decode", "-", stdin=dump.encode())
    assert result.returncode == 0 and b"LOCAL UNSPEC" in result.stdout


def test_decode_garbage_is_exit_2():
    result = run("decode", "this is not hex")
    assert result.returncode == 2 and len(result.stderr.decode().strip().splitlines()) == 1


def test_decode_not_a_header_is_exit_1():
    result = run("decode", "45484c4f", "--format", "json")
    assert result.returncode == 1 and json.loads(result.stdout)["proxy_header"] is None


def test_bad_option_is_one_line_naming_the_help():
    result = run("analyze", "--no-such-option")
    lines = result.stderr.decode().strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "--help" in lines[0]


def test_decode_names_the_client_certificate_and_its_shape():
    from tests.test_proxy_protocol import DER_CERT, with_client_cert

    good = run("decode", with_client_cert(DER_CERT).hex())
    assert good.returncode == 0 and f"client_cert={len(DER_CERT)} bytes" in good.stdout.decode()
    bad = run("decode", with_client_cert(b"\x02\x01\x01").hex())
    assert bad.returncode == 1 and "v2.ssl-client-cert" in bad.stdout.decode()
