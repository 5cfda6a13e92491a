"""Real HAProxy, nginx, Postfix and Dovecot traffic, decoded by proxydiag and by
Wireshark's dissector, field by field.

Two sets of captures: the ones shipped in captures/ (made by captures/make_captures.sh),
and a fresh set that this test run makes with the same script from Debian's packages,
so that the shipped files and the script cannot drift apart.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from proxydiag.analysis import Settings, analyze_files, diagnose
from tests.tshark import FIELDS, our_fields, tshark_headers

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "captures"
MANIFEST = json.loads((SHIPPED / "manifest.json").read_text())


@pytest.fixture(scope="session")
def fresh_captures(tmp_path_factory) -> Path:
    """Run the capture script: real daemons on loopback, real clients, tcpdump."""
    out = tmp_path_factory.mktemp("captures")
    result = subprocess.run(
        ["bash", str(SHIPPED / "make_captures.sh"), str(out)],
        capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, f"make_captures.sh failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return out


def capture_sets():
    sets = [pytest.param("shipped", id="shipped")]
    if os.environ.get("PROXYDIAG_SKIP_FRESH_CAPTURES") != "1" or os.environ.get("CI") == "true":
        sets.append(pytest.param("fresh", id="fresh", marks=pytest.mark.integration))
    return sets


@pytest.fixture(params=capture_sets())
def capture_dir(request) -> Path:
    if request.param == "shipped":
        return SHIPPED
    return request.getfixturevalue("fresh_captures")


@pytest.mark.parametrize("entry", MANIFEST, ids=[entry["file"] for entry in MANIFEST])
def test_headers_match_wireshark(capture_dir, entry):
    path = capture_dir / entry["file"]
    analysis = analyze_files([str(path)])
    ours = {}
    for conn in analysis.connections:
        for frame, parsed in zip(conn.header_frames, [conn.proxy, *conn.extra_headers]):
            if parsed is not None and parsed.header is not None:
                ours[frame] = our_fields(parsed.header)
    theirs = tshark_headers(str(path))
    carries_headers = any(leg["header"] != "none" for leg in entry["back_legs"])
    assert bool(ours) == carries_headers, f"{entry['file']}: headers found where the manifest says"
    assert set(ours) <= set(theirs), "every header proxydiag reports is one Wireshark sees"
    for frame in set(theirs) - set(ours):
        # The same connection captured twice (dumpcap -i lo -i any) is one connection
        # to proxydiag; Wireshark shows each copy.
        copy = {name: theirs[frame].get(name, "") for name in FIELDS[1:]}
        assert copy in ours.values(), f"{entry['file']}: frame {frame} has a header proxydiag missed"
    for frame, fields in ours.items():
        reference = {name: theirs[frame].get(name, "") for name in fields}
        assert fields == reference, f"{entry['file']} frame {frame}"


def _matches(conn, leg) -> bool:
    header = conn.header
    if leg["header"] == "none":
        return header is None
    if conn.proxy is not None and conn.proxy.incomplete:  # the rest of the header never came
        return header is not None and header.version == int(leg["header"][1])
    return (
        header is not None
        and header.version == int(leg["header"][1])
        and (leg.get("command") is None or header.command == leg["command"])
        and (leg.get("family") is None or header.family == leg["family"])
        and (header.ssl is not None and header.ssl.client_ssl) == leg["ssl_tlv"]
        and (leg.get("header_src") is None or header.src_addr == leg["header_src"])
    )


@pytest.mark.parametrize("entry", MANIFEST, ids=[entry["file"] for entry in MANIFEST])
def test_back_legs_as_the_manifest_describes(capture_dir, entry):
    analysis = analyze_files([str(capture_dir / entry["file"])])
    assert not analysis.damaged
    for port in {leg["server_port"] for leg in entry["back_legs"]}:
        legs = [leg for leg in entry["back_legs"] if leg["server_port"] == port]
        conns = [conn for conn in analysis.connections if conn.tcp.dst_port == port]
        if any(leg["command"] == "LOCAL" for leg in legs):
            assert len(conns) >= 3, "HAProxy checks every 500 ms during the capture"
        else:
            assert len(conns) == sum(leg["count"] for leg in legs), f"{entry['file']}: back legs to port {port}"
        broken_on_purpose = {"PD103", "PD105"} & set(entry["findings"]["must"])
        for conn in conns:
            assert any(_matches(conn, leg) for leg in legs), f"{entry['file']}: connection {conn.id}"
            assert broken_on_purpose or not (conn.proxy and conn.proxy.violations)


@pytest.mark.parametrize("entry", MANIFEST, ids=[entry["file"] for entry in MANIFEST])
def test_findings_as_the_manifest_requires(capture_dir, entry):
    analysis = diagnose([str(capture_dir / entry["file"])], Settings())
    codes = [finding.code for finding in analysis.findings]
    severities = {finding.severity for finding in analysis.findings}
    must, must_not = entry["findings"]["must"], entry["findings"]["must_not"]
    for code in must:
        assert code in codes, f"{entry['file']}: {code} missing from {codes}"
    if must:
        assert codes[0] == must[0], f"{entry['file']}: the first finding should be {must[0]}, not {codes[0]}"
    for forbidden in must_not:
        if forbidden in ("error", "warning"):
            assert forbidden not in severities, f"{entry['file']}: {[(f.code, f.message) for f in analysis.findings]}"
        else:
            assert forbidden not in codes, f"{entry['file']}: {forbidden} reported"


def test_every_link_type_and_format_is_covered():
    analyses = {entry["file"]: analyze_files([str(SHIPPED / entry["file"])]) for entry in MANIFEST}
    formats = Counter(analysis.inputs[0].format for analysis in analyses.values())
    linktypes = {lt for analysis in analyses.values() for lt in analysis.inputs[0].linktypes}
    assert formats["pcap"] and formats["pcapng"]
    assert {1, 276} <= linktypes or {1, 113} <= linktypes or {0, 113} <= linktypes
