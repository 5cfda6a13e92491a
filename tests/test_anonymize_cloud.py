"""--anonymize covers the cloud TLVs (references.md): Azure's private endpoint link id
(PP2_TYPE_AZURE 0xEE, subtype 0x01, 4 bytes little-endian) and GCP's Private Service
Connect connection id (PP2_TYPE_GCP 0xE0, 8 bytes big-endian), in the decoded TLV and in
the header's hex evidence, also where the evidence is cut short inside the id."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from proxydiag import proxy_protocol as pp
from tests.craft import Conversation, write_pcap

REPO = Path(__file__).resolve().parent.parent
LINK_ID = 0x5A17C3D9
PSC_ID = 0x9E8D7C6B5A493827
AZURE = (pp.PP2_TYPE_AZURE, b"\x01" + LINK_ID.to_bytes(4, "little"))
GCP = (pp.PP2_TYPE_GCP, PSC_ID.to_bytes(8, "big"))
HEADERS = {
    "both-whole": [AZURE, GCP],
    # 18 bytes of UNIQUE_ID first: the GCP id straddles the 64 bytes the evidence shows
    "gcp-cut-by-evidence": [(pp.PP2_TYPE_UNIQUE_ID, b"u" * 18), AZURE, GCP],
}


def _capture(path: Path, tlvs: list[tuple[int, bytes]]) -> Path:
    """A server that greets first and answers the header as a command: PD102 quotes the
    header's hex."""
    header = pp.build_v2(src_addr="203.0.113.61", dst_addr="198.51.100.99", src_port=41000, dst_port=25, tlvs=tlvs)
    conv = Conversation(client=("192.0.2.10", 40000), server=("198.51.100.20", 10025))
    conv.handshake()
    conv.server_sends(b"220 mx.example.net ESMTP\r\n")
    conv.client_sends(header)
    conv.server_sends(b"500 5.5.2 Error: bad syntax\r\n")
    conv.close(by="server")
    return write_pcap(path, [conv])


def _id_pieces() -> list[str]:
    """Every 3-byte run of either id as hex (wire order and the other), and the numbers."""
    pieces = [str(LINK_ID), str(PSC_ID)]
    for value in (LINK_ID.to_bytes(4, "little"), LINK_ID.to_bytes(4, "big"), PSC_ID.to_bytes(8, "big"),
                  PSC_ID.to_bytes(8, "little")):
        pieces += [value[i : i + 3].hex() for i in range(len(value) - 2)]
    return pieces


def _analyze(path: Path, *args: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="200")
    result = subprocess.run([sys.executable, "-m", "proxydiag", "analyze", str(path), "--fail-on", "never", *args],
                            capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    return result.stdout


@pytest.mark.parametrize("case", sorted(HEADERS))
def test_cloud_ids_shown_plainly_and_never_with_anonymize(case, tmp_path):
    path = _capture(tmp_path / f"{case}.pcap", HEADERS[case])
    plain = json.loads(_analyze(path, "-F", "json"))
    [hit] = [f for f in plain["findings"] if f["code"] == "PD102"]
    assert LINK_ID.to_bytes(4, "little").hex() in hit["evidence"]["header"]  # the evidence the test is about
    tlvs = {tlv["name"]: tlv["value"] for tlv in plain["connections"][0]["proxy_header"]["tlvs"]}
    assert tlvs["AZURE"] == {"subtype": 1, "private_endpoint_link_id": LINK_ID}
    assert tlvs["GCP"] == {"psc_connection_id": PSC_ID}

    anonymized_json = _analyze(path, "-F", "json", "--anonymize")
    for output in (anonymized_json, _analyze(path, "-F", "markdown", "--anonymize"), _analyze(path, "--anonymize", "-v")):
        shown = [piece for piece in _id_pieces() if piece in output.lower()]
        assert not shown, f"original id bytes {shown} survive --anonymize"
    document = json.loads(anonymized_json)
    tlvs = {tlv["name"]: tlv["value"] for tlv in document["connections"][0]["proxy_header"]["tlvs"]}
    assert tlvs["AZURE"]["subtype"] == 1  # the kind of id stays; only the id is replaced
    assert isinstance(tlvs["AZURE"]["private_endpoint_link_id"], int) and isinstance(tlvs["GCP"]["psc_connection_id"], int)
    [hit] = [f for f in document["findings"] if f["code"] == "PD102"]
    pseudonym = tlvs["AZURE"]["private_endpoint_link_id"].to_bytes(4, "little").hex()
    assert "ee000501" + pseudonym in hit["evidence"]["header"]  # the same pseudonym in the hex and the TLV
