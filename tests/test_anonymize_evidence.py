"""--anonymize and header evidence: the cloud TLVs (references.md), Azure's private
endpoint link id (PP2_TYPE_AZURE 0xEE, subtype 0x01, 4 bytes little-endian) and GCP's
Private Service Connect connection id (PP2_TYPE_GCP 0xE0, 8 bytes big-endian), are
replaced in the decoded TLV and in the header's hex evidence, also where the evidence is
cut short inside the id; what is not a name (a violation's rule id) stays."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from proxydiag.parsers import proxy_protocol as pp
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


# --- properties: any id, any place in the header, evidence whole or cut ----------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from proxydiag.parsers.header_evidence import header_evidence  # noqa: E402
from proxydiag.report.anonymize import anonymize  # noqa: E402


def _document(header: bytes) -> dict:
    """What a report holds of a header: its TLVs decoded, and its hex as evidence."""
    parsed = pp.parse(header)
    return {
        "connections": [{"proxy_header": parsed.header.to_dict() if parsed.header else None}],
        "findings": [{"evidence": {"header": header_evidence(header, limit=len(header)),
                                   "cut": header_evidence(header)}}],
    }


def _cloud_values(evidence: str) -> dict[int, bytes]:
    """The AZURE and GCP values (the Azure subtype byte left out) in a header's hex
    evidence, as far as it goes."""
    data = bytes.fromhex(evidence.split("...")[0].split(" ")[0])
    values = {kind: data[start:stop] for kind, start, stop in pp.tlv_spans(data)}
    return {kind: values[kind][kind == pp.PP2_TYPE_AZURE :] for kind in (pp.PP2_TYPE_AZURE, pp.PP2_TYPE_GCP)
            if kind in values}


@settings(max_examples=200, deadline=None)
@given(link=st.integers(0, (1 << 32) - 1), psc=st.integers(0, (1 << 64) - 1),
       unique=st.binary(min_size=0, max_size=40), azure_first=st.booleans())
def test_no_cloud_id_survives_anonymize(link, psc, unique, azure_first):
    azure = (pp.PP2_TYPE_AZURE, b"\x01" + link.to_bytes(4, "little"))
    gcp = (pp.PP2_TYPE_GCP, psc.to_bytes(8, "big"))
    tlvs = [(pp.PP2_TYPE_UNIQUE_ID, unique), *([azure, gcp] if azure_first else [gcp, azure])]
    header = pp.build_v2(src_addr="203.0.113.61", dst_addr="198.51.100.99", src_port=41000, dst_port=25, tlvs=tlvs)
    document = anonymize(_document(header))
    decoded = {tlv["name"]: tlv["value"] for tlv in document["connections"][0]["proxy_header"]["tlvs"]}
    pseudonyms = {pp.PP2_TYPE_AZURE: decoded["AZURE"]["private_endpoint_link_id"].to_bytes(4, "little"),
                  pp.PP2_TYPE_GCP: decoded["GCP"]["psc_connection_id"].to_bytes(8, "big")}
    originals = {pp.PP2_TYPE_AZURE: azure[1][1:], pp.PP2_TYPE_GCP: gcp[1]}
    assert pseudonyms[pp.PP2_TYPE_AZURE] != originals[pp.PP2_TYPE_AZURE]
    assert pseudonyms[pp.PP2_TYPE_GCP] != originals[pp.PP2_TYPE_GCP]
    evidence = document["findings"][0]["evidence"]
    assert _cloud_values(evidence["header"]) == pseudonyms  # the same pseudonyms in the whole hex
    for kind, shown in _cloud_values(evidence["cut"]).items():  # and none of the original in the cut one
        assert len(shown) < 3 or shown != originals[kind][: len(shown)], (kind, shown.hex(), evidence["cut"])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_tlv_spans_stay_within_the_header(data):
    spans = list(pp.tlv_spans(data))
    end = min(len(data), pp.V2_FIXED_LENGTH + int.from_bytes(data[14:16], "big")) if len(data) >= 16 else 0
    for _, start, stop in spans:
        assert pp.V2_FIXED_LENGTH + 3 <= start <= end and start <= stop
    for (_, _, stop), (_, following, _) in zip(spans, spans[1:], strict=False):
        assert following == stop + 3  # each TLV starts where the last one ended


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=40)), max_size=6))
def test_tlv_spans_find_the_tlvs_a_header_was_built_with(tlvs):
    header = pp.build_v2(src_addr="203.0.113.61", dst_addr="198.51.100.99", src_port=1, dst_port=25, tlvs=tlvs)
    assert [(kind, header[start:stop]) for kind, start, stop in pp.tlv_spans(header)] == tlvs


def test_violation_rule_ids_are_not_taken_for_host_names():
    document = {"findings": [{"evidence": {"violations": [{"rule": "v2.transport"}, {"rule": "v1.address"}]},
                              "message": "EHLO mail.example.net"}]}
    anonymized = anonymize(document)
    assert [v["rule"] for v in anonymized["findings"][0]["evidence"]["violations"]] == ["v2.transport", "v1.address"]
    assert "mail.example.net" not in anonymized["findings"][0]["message"]


def test_a_host_name_that_is_also_a_key_of_the_document_leaves_the_keys_alone():
    """A server that calls itself `command` (`250-command.`) makes the word a host name to
    hide; the document's own key `command` stays (the fuzzer's ninth finding)."""
    document = {"connections": [{"greeting": "250-command.", "proxy_header": {"command": "PROXY", "src_addr": "203.0.113.9"}}],
                "findings": [{"message": "203.0.113.9:25 named itself command", "evidence": {"10.0.0.1": 2}}]}
    anonymized = anonymize(document)
    header = anonymized["connections"][0]["proxy_header"]
    assert set(header) == {"command", "src_addr"} and header["command"] == "PROXY"
    assert "command" not in anonymized["connections"][0]["greeting"]
    assert "10.0.0.1" not in anonymized["findings"][0]["evidence"]  # a key that holds an address is still rewritten


def test_a_reply_names_its_host_on_its_first_line_only():
    """`250-mailhost` (the EHLO reply's first line) hides the single-label name wherever it
    stands, the reply code kept; `250-PIPELINING` and the banner's `220-` prose are no host names
    (the prose keeps the words proxydiag knows: `here` is nobody's, but not on the allowlist)."""
    text = "220-mailhost ESMTP\r\n220-Welcome here\r\n220 ready\r\n250-mailhost\r\n250-PIPELINING\r\n250 SIZE 1000"
    shown = anonymize({"connections": [{"server": text}]})["connections"][0]["server"]
    assert "mailhost" not in shown and shown.startswith("220-host") and "\r\n250-host" in shown
    assert "250-PIPELINING" in shown and "220-Welcome word" in shown and "250 SIZE 1000" in shown
    assert "here" not in shown and "220-Welcome host" not in shown


def test_pd301_s_confirmation_is_proxydiag_s_own_sentence_under_anonymize(tmp_path):
    """PD301's confirmation is proxydiag's sentence, not the server's words: under --anonymize
    it reads as it does without, and the server's own reply, quoted inside, loses its names."""
    header = pp.build_v2(src_addr="203.0.113.61", dst_addr="198.51.100.99", src_port=41000, dst_port=993)
    conv = Conversation(client=("192.0.2.10", 40000), server=("198.51.100.20", 10143))
    conv.handshake().client_sends(header)
    conv.server_sends(b"* OK [CAPABILITY IMAP4rev2 STARTTLS LOGINDISABLED] imap.example.net ready\r\n").close(by="server")
    path = write_pcap(tmp_path / "pd301.pcap", [conv])
    sentence = "the server offers STARTTLS to a client that is already encrypted"
    for args in ((), ("--anonymize",)):
        pd301 = [each for each in json.loads(_analyze(path, "-F", "json", *args))["findings"] if each["code"] == "PD301"]
        assert pd301 and pd301[0]["evidence"]["confirmation"] == sentence and "server" not in pd301[0]["evidence"]
