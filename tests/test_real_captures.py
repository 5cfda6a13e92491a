"""Real HAProxy, nginx, stunnel, Postfix and Dovecot traffic, laid out as in production,
decoded by proxydiag and by Wireshark's dissector, and judged as the manifest requires.

Two sets of captures: the ones shipped in captures/ (made by captures/make_captures.sh),
and a fresh set that this test run makes with the same script from Debian's packages,
so that the shipped files and the script cannot drift apart.

Nothing here counts what a clock decides: health checks arrive every few hundred
milliseconds, so a capture of two seconds holds "at least one" of them, never a number.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from proxydiag.cli import app
from proxydiag.pipeline.analysis import Settings, analyze_files, diagnose
from proxydiag.rules import catalog
from tests.tshark import FIELDS, our_fields, tshark_headers

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "captures"
MANIFEST = json.loads((SHIPPED / "manifest.json").read_text())
ENTRY_IDS = [entry["file"] for entry in MANIFEST]
SEVERITIES = ("error", "warning", "info")
# Every lab client is a loopback address (loopback is all the lab has), which a report
# rightly calls a local test at info level. That note comes with every capture and is
# not what a capture is about: it never counts as the first finding, unless it is.
LAB_NOTES = ("PD205:info",)

# The lab's throw-away credentials (make_captures.sh): the user name counts as one.
USER, PASSWORD = "alice@example.test", "Tr0ub4dor&3xample"
SECRETS = [
    USER,
    PASSWORD,
    base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode(),
    base64.b64encode(USER.encode()).decode(),
    base64.b64encode(PASSWORD.encode()).decode(),
]


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


FRESH = os.environ.get("PROXYDIAG_SKIP_FRESH_CAPTURES") != "1" or os.environ.get("CI") == "true"


def capture_sets():
    sets = [pytest.param("shipped", id="shipped")]
    if FRESH:
        sets.append(pytest.param("fresh", id="fresh", marks=pytest.mark.lab))
    return sets


@pytest.fixture(params=capture_sets())
def capture_dir(request) -> Path:
    if request.param == "shipped":
        return SHIPPED
    return request.getfixturevalue("fresh_captures")


@functools.cache
def analysed(path: Path):
    """One analysis per capture file and test session: the tests below only read it."""
    return analyze_files([str(path)])


@functools.cache
def diagnosed(path: Path):
    return diagnose([str(path)], Settings())


if FRESH:
    @pytest.mark.lab
    def test_the_script_writes_the_shipped_manifest(fresh_captures):
        """Everything but the packet counts is decided by the script, not by the run."""
        def stable(manifest):
            return [{key: value for key, value in entry.items() if key != "packets"} for entry in manifest]

        assert stable(json.loads((fresh_captures / "manifest.json").read_text())) == stable(MANIFEST)


@pytest.mark.lab
@pytest.mark.parametrize("entry", MANIFEST, ids=ENTRY_IDS)
def test_headers_match_wireshark(capture_dir, entry):
    path = capture_dir / entry["file"]
    analysis = analysed(path)
    ours = {}
    for conn in analysis.connections:
        for frame, parsed in zip(conn.header_frames, [conn.proxy, *conn.extra_headers], strict=False):
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


def _count_holds(leg, seen: int) -> bool:
    """An exact count where the clients decide it; at least a floor where the clock does."""
    return seen == leg["count"] if leg["count"] is not None else seen >= leg["at_least"]


@pytest.mark.parametrize("entry", MANIFEST, ids=ENTRY_IDS)
def test_back_legs_as_the_manifest_describes(capture_dir, entry):
    analysis = analysed(capture_dir / entry["file"])
    assert not analysis.damaged
    broken_on_purpose = {"PD103", "PD105"} & set(entry["findings"]["must"])
    for server in {(leg["server"], leg["server_port"]) for leg in entry["back_legs"]}:
        legs = [leg for leg in entry["back_legs"] if (leg["server"], leg["server_port"]) == server]
        conns = [conn for conn in analysis.connections if (conn.tcp.dst_addr, conn.tcp.dst_port) == server]
        for conn in conns:
            assert any(_matches(conn, leg) for leg in legs), f"{entry['file']}: connection {conn.id} to {server}"
            assert broken_on_purpose or not (conn.proxy and conn.proxy.violations)
        # A connection may fit two legs only when they differ in what proxydiag does not
        # tell apart; the manifest's legs of one server never do.
        for leg in legs:
            seen = sum(1 for conn in conns if _matches(conn, leg))
            assert _count_holds(leg, seen), f"{entry['file']}: {seen} connections to {server} fit {leg}"


@pytest.mark.parametrize("leg,seen,holds", [
    ({"count": 2}, 2, True), ({"count": 2}, 3, False), ({"count": None, "at_least": 1}, 7, True),
    ({"count": None, "at_least": 1}, 8, True), ({"count": None, "at_least": 1}, 0, False),
])
def test_clock_driven_counts_are_floors(leg, seen, holds):
    assert _count_holds(leg, seen) is holds


def test_clock_driven_legs_are_floors_in_the_manifest():
    """Health checks are the clock's: their legs never carry an exact count."""
    for entry in MANIFEST:
        for leg in entry["back_legs"]:
            if "check" in entry["proxy"] and leg["header"] in ("none", "v2") and leg["header_src"] is None:
                assert leg["count"] is None and leg["at_least"] >= 1, entry["file"]


def _split(item: str) -> tuple[str | None, str | None]:
    """A manifest item: a code (PD205), a code at a severity (PD205:info) or a severity."""
    if item in SEVERITIES:
        return None, item
    code, _, severity = item.partition(":")
    return code, severity or None


def _reported(findings, item: str) -> bool:
    code, severity = _split(item)
    return any((code is None or f.code == code) and (severity is None or f.severity == severity) for f in findings)


def test_manifest_names_only_catalog_codes_and_severities():
    for entry in MANIFEST:
        for item in entry["findings"]["must"] + entry["findings"]["must_not"]:
            code, severity = _split(item)
            assert severity is None or severity in SEVERITIES, (entry["file"], item)
            assert code is None or catalog.find_page(code) is not None, (entry["file"], item)


@pytest.mark.parametrize("entry", MANIFEST, ids=ENTRY_IDS)
def test_findings_as_the_manifest_requires(capture_dir, entry):
    findings = diagnosed(capture_dir / entry["file"]).findings
    reported = [f"{finding.code}:{finding.severity}" for finding in findings]
    must, must_not = entry["findings"]["must"], entry["findings"]["must_not"]
    for item in must:
        assert _reported(findings, item), f"{entry['file']}: {item} missing from {reported}"
    if must:
        leading = [f for f in findings if must[0] in LAB_NOTES or f"{f.code}:{f.severity}" not in LAB_NOTES]
        assert leading and _reported(leading[:1], must[0]), \
            f"{entry['file']}: the first finding should be {must[0]}, not {reported[:1]}"
    for item in must_not:
        assert not _reported(findings, item), \
            f"{entry['file']}: {item} reported: {[(f.code, f.severity, f.message) for f in findings]}"


def _carries_secrets(path: Path) -> bool:
    data = path.read_bytes()
    return any(secret.encode() in data for secret in SECRETS)


WITH_SECRETS = [entry for entry in MANIFEST if _carries_secrets(SHIPPED / entry["file"])]


def test_the_lab_records_credentials():
    names = {entry["file"] for entry in WITH_SECRETS}
    assert {"pop3-user-to-plain-listener.pcap", "pop3-user-no-header.pcap", "haproxy-v2-smtp.pcap",
            "nginx-mail-imap.pcap"} <= names


@pytest.mark.parametrize("fmt", ["rich", "json", "markdown", "html"])
@pytest.mark.parametrize("entry", WITH_SECRETS, ids=[entry["file"] for entry in WITH_SECRETS])
def test_no_report_shows_a_credential(capture_dir, entry, fmt):
    """The user name and the password cross the wire in cleartext (POP3 USER/PASS, IMAP
    LOGIN, AUTH PLAIN); no report prints them, masked once for every view."""
    result = CliRunner().invoke(app, ["analyze", str(capture_dir / entry["file"]), "--format", fmt,
                                      "--fail-on", "never", "--verbose"])
    assert result.exit_code == 0, result.output
    unwrapped = re.sub(r"\s+", "", result.output)  # a narrow terminal may wrap a secret
    for secret in SECRETS:
        assert secret not in result.output and secret not in unwrapped, f"{entry['file']} ({fmt}) shows {secret!r}"


def test_every_link_type_and_format_is_covered():
    analyses = {entry["file"]: analysed(SHIPPED / entry["file"]) for entry in MANIFEST}
    formats = Counter(analysis.inputs[0].format for analysis in analyses.values())
    linktypes = {lt for analysis in analyses.values() for lt in analysis.inputs[0].linktypes}
    assert formats["pcap"] and formats["pcapng"]
    assert {1, 276} <= linktypes or {1, 113} <= linktypes or {0, 113} <= linktypes
