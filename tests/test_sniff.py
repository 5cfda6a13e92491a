"""Live capture on loopback through the same decoder as files (needs root, as capturing
does; CI runs as root)."""

import json
import socket
import subprocess
import sys
import threading

import pytest

from proxydiag.parsers.proxy_protocol import build_v2
from tests.daemons import wait_capturing

pytestmark = [pytest.mark.lab]


def serve_smtp_once(server: socket.socket) -> None:
    conn, _ = server.accept()
    with conn:
        conn.sendall(b"220 mail.example.test Stalwart ESMTP at your service\r\n")
        conn.recv(4096)
        conn.sendall(b"221 2.0.0 Bye.\r\n")


def smtp_listener(address: str) -> tuple[socket.socket, int]:
    """A listener on `address` that serves one SMTP greeting and goodbye; its port."""
    server = socket.socket()
    server.bind((address, 0))
    server.listen()
    threading.Thread(target=serve_smtp_once, args=(server,), daemon=True).start()
    return server, server.getsockname()[1]


def start_sniffer(interface: str, port: int, seconds: float, *options: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "proxydiag", "sniff", "-i", interface, "-f", f"tcp port {port}", "--duration", str(seconds),
         *options, "--fail-on", "never"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


@pytest.mark.parametrize("interface", ["lo", "any"])
def test_sniff_decodes_a_live_session_and_writes_it(tmp_path, interface):
    """Every frame once: loopback shows each going out and coming in, and `any` sees lo too."""
    server, port = smtp_listener("127.0.0.1")
    written = tmp_path / "live.pcap"
    sniffer = start_sniffer(interface, port, 5, "--format", "json", "-w", str(written))
    wait_capturing(sniffer)
    with socket.create_connection(("127.0.0.1", port)) as client:
        client.sendall(build_v2(src_addr="203.0.113.7", dst_addr="192.0.2.10", src_port=40000, dst_port=25))
        client.recv(4096)
        client.sendall(b"QUIT\r\n")
        client.recv(4096)
    out, err = sniffer.communicate(timeout=30)
    assert sniffer.returncode == 0, err
    document = json.loads(out)
    (conn,) = [c for c in document["connections"] if c["tcp"]["dst_port"] == port]
    assert conn["proxy_header"]["src_addr"] == "203.0.113.7" and conn["greeting"].startswith("220 mail.example.test")
    assert conn["opening"]["software"]["name"] == "Stalwart"
    assert document["inputs"][0]["path"] == f"live:{interface}"
    assert all(not side["retransmissions"] for side in conn["reassembly"].values())
    replay = json.loads(subprocess.run([sys.executable, "-m", "proxydiag", "analyze", str(written), "-F", "json",
                                        "--fail-on", "never"], capture_output=True, text=True).stdout)
    assert [c["proxy_header"] for c in replay["connections"]] == [conn["proxy_header"]]


def test_sniff_unknown_interface_is_one_line_and_exit_2():
    result = subprocess.run([sys.executable, "-m", "proxydiag", "sniff", "-i", "nosuchif0", "--duration", "1"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "no interface 'nosuchif0'" in result.stderr


@pytest.mark.lab
def test_sniff_writes_the_html_page_at_the_end(tmp_path):
    """`sniff --format html`: the final report is the same self-contained page as analyze's."""
    from tests.html_inert import html_problems

    server, port = smtp_listener("127.94.0.1")
    page = tmp_path / "live.html"
    sniffer = start_sniffer("lo", port, 4, "--format", "html", "-o", str(page), "--expect", "none")
    wait_capturing(sniffer)
    with socket.create_connection(("127.94.0.1", port), source_address=("127.94.0.2", 0)) as client:
        client.sendall(build_v2(src_addr="203.0.113.7", dst_addr="192.0.2.10", src_port=40000, dst_port=25))
        client.recv(4096)
        client.sendall(b"QUIT\r\n")
        client.recv(4096)
    out, err = sniffer.communicate(timeout=30)
    server.close()
    assert sniffer.returncode == 0, err
    written = page.read_text()
    assert written.startswith("<!DOCTYPE html>") and "PD102 unexpected-proxy-header" in written, written[-2000:]
    assert written.count("<svg") >= 1 and "203.0.113.7:40000 -&gt; 192.0.2.10:25" in written
    assert not html_problems(written)
