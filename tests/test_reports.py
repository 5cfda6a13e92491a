"""The reports people paste into tickets: rich (plain when not a terminal), Markdown,
JSON, with and without --anonymize.

Snapshots live in tests/snapshots/; after a deliberate change of a report (or of the
shipped captures), refresh them with PROXYDIAG_UPDATE_SNAPSHOTS=1 and read the diff."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

REPO = Path(__file__).resolve().parent.parent
CAPTURES = REPO / "captures"
SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"
SNAPSHOT_CAPTURES = ["v1-behind-tls.pcap", "header-to-plain-listener.pcap", "haproxy-v2-imap.pcap"]


def run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="100")
    return subprocess.run([sys.executable, "-m", "proxydiag", *args], capture_output=True, text=True, timeout=120,
                          env=env, cwd=REPO)


def check_snapshot(name: str, text: str) -> None:
    path = SNAPSHOTS / name
    if os.environ.get("PROXYDIAG_UPDATE_SNAPSHOTS") == "1":
        SNAPSHOTS.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"no snapshot {name}: run with PROXYDIAG_UPDATE_SNAPSHOTS=1"
    assert text == path.read_text(), f"{name} differs from its snapshot"


@pytest.mark.parametrize("capture", SNAPSHOT_CAPTURES)
@pytest.mark.parametrize("fmt", ["rich", "markdown", "json"])
def test_report_snapshots(capture, fmt):
    result = run("analyze", f"captures/{capture}", "--format", fmt, "--fail-on", "never")
    assert result.returncode == 0, result.stderr
    check_snapshot(f"{Path(capture).stem}.{fmt}.txt", result.stdout)


def test_rich_report_is_plain_text_when_not_a_terminal():
    result = run("analyze", "captures/v1-behind-tls.pcap")
    assert "\x1b[" not in result.stdout
    assert "PD302 tls-flag-impossible-v1" in result.stdout and "send-proxy-v2-ssl" in result.stdout


def test_rich_report_fits_80_columns():
    env = dict(os.environ, COLUMNS="80")
    result = subprocess.run([sys.executable, "-m", "proxydiag", "analyze", "captures/v1-behind-tls.pcap"],
                            capture_output=True, text=True, env=env, cwd=REPO)
    assert max(len(line.rstrip()) for line in result.stdout.splitlines()) <= 100


def markdown_tokens(text: str):
    return MarkdownIt("commonmark").enable("table").parse(text)


def test_markdown_renders_as_a_document_with_tables():
    result = run("analyze", "captures/v1-behind-tls.pcap", "--format", "markdown", "--fail-on", "never")
    tokens = markdown_tokens(result.stdout)
    headings = [tokens[i + 1].content for i, token in enumerate(tokens) if token.type == "heading_open"]
    assert headings[:4] == ["proxydiag report", "Environment", "Endpoints", "Findings"]
    assert any(h.startswith("WARNING PD302") for h in headings)
    tables = [token for token in tokens if token.type == "table_open"]
    assert len(tables) == 2, "the endpoint table and the connection table parse as tables"
    rows = [token for token in tokens if token.type == "tr_open"]
    assert len(rows) >= 2 + 3
    fences = [token for token in tokens if token.type == "fence"]
    assert any("send-proxy-v2-ssl" in fence.content for fence in fences), "the fix's configuration is a code block"
    html = MarkdownIt("commonmark").enable("table").render(result.stdout)
    assert "<table>" in html and html.count("<h1>") == 1


def test_markdown_names_version_and_command_line():
    result = run("analyze", "captures/v1-behind-tls.pcap", "--format", "markdown", "--fail-on", "never")
    assert "proxydiag 0.1.0" in result.stdout and "proxydiag analyze captures/v1-behind-tls.pcap --format markdown" in result.stdout


# --- anonymisation ---------------------------------------------------------------------

ADDRESS = re.compile(r"(?:\d{1,3}\.){3}\d{1,3}|[0-9a-fA-F:]*:[0-9a-fA-F:]+")


def originals(capture: str) -> tuple[set[str], set[str]]:
    """Every address and host name the capture shows, from the plain JSON report."""
    document = json.loads(run("analyze", f"captures/{capture}", "--format", "json", "--fail-on", "never").stdout)
    addresses, names = set(), set()
    for conn in document["connections"]:
        addresses.update({conn["tcp"]["src_addr"], conn["tcp"]["dst_addr"]})
        header = conn["proxy_header"] or {}
        addresses.update(addr for addr in (header.get("src_addr"), header.get("dst_addr")) if addr)
        for text in (conn["greeting"] or "", conn["client_first"] or ""):
            names.update(re.findall(r"\b[\w-]+(?:\.[\w-]+)*\.(?:test|example|com|net|org)\b", text))
    return {a for a in addresses if a != "::1"}, names


@pytest.mark.parametrize("capture", ["haproxy-v2-smtp.pcap", "haproxy-ipv6.pcap", "v1-behind-tls.pcap"])
@pytest.mark.parametrize("fmt", ["rich", "json", "markdown"])
def test_anonymized_output_contains_no_original_address_or_name(capture, fmt):
    addresses, names = originals(capture)
    assert addresses and names
    result = run("analyze", f"captures/{capture}", "--format", fmt, "--anonymize", "--fail-on", "never")
    assert result.returncode == 0, result.stderr
    found = {token for token in ADDRESS.findall(result.stdout)}
    for address in addresses:
        assert address not in found, f"{address} survived --anonymize"
    for name in names:
        assert name not in result.stdout, f"{name} survived --anonymize"


def test_pseudonyms_are_stable_and_keep_the_kind_of_address():
    document = json.loads(run("analyze", "captures/haproxy-v2-smtp.pcap", "--format", "json", "--anonymize",
                              "--fail-on", "never").stdout)
    conns = document["connections"]
    back = [conn for conn in conns if conn["proxy_header"]]
    front = [conn for conn in conns if not conn["proxy_header"]]
    # the client named in each header is the client of a front leg, under the same pseudonym
    assert {conn["proxy_header"]["src_addr"] for conn in back} <= {conn["tcp"]["src_addr"] for conn in front}
    for conn in conns:
        for addr in (conn["tcp"]["src_addr"], conn["tcp"]["dst_addr"]):
            assert ipaddress.ip_address(addr).is_loopback, "loopback stays loopback"
    assert document["anonymized"] is True


def test_progress_reports_bytes_read_and_connections(tmp_path):
    """The progress bar's feed: called during long reads with the bytes read so far."""
    import struct

    from proxydiag.pipeline.analysis import analyze_files
    from proxydiag.pipeline.shards import Progress

    path = tmp_path / "many.pcap"
    frame = b"\x00" * 12 + b"\x08\x06" + b"\x00" * 28  # ARP-sized, not TCP: read and skipped
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        record = struct.pack("<IIII", 1, 0, len(frame), len(frame)) + frame
        out.write(record * 140_000)
    calls = []
    analyze_files([str(path)], Progress(lambda index, done, total, conns: calls.append((index, done, total, conns))))
    assert len(calls) >= 2
    assert all(index == 0 and total == path.stat().st_size and 0 < done <= total for index, done, total, _ in calls)
    assert [done for _, done, _, _ in calls] == sorted(done for _, done, _, _ in calls)



def test_reports_show_each_fix_whole_as_the_catalog_trimmed_it():
    """Fixes are trimmed in one place (catalog.essential, at the end of a section's first
    configuration block); no view cuts them again."""
    for fmt in ("rich", "markdown"):
        shown = run("analyze", "captures/v1-behind-tls.pcap", "--format", fmt).stdout
        assert "tls.implicit = true" in shown, fmt


def test_anonymize_covers_the_probe_document():
    """`probe --anonymize`: targets, the exchanges and the source option keep no original."""
    from proxydiag.report.anonymize import anonymize

    document = {
        "schema": "proxydiag-probe/1",
        "options": {"source": "10.1.2.3", "timeout": 5},
        "targets": [{"target": "mail.example.com:25", "address": "198.51.100.7",
                     "steps": [{"exchange": ["0.001 S: 220 mx1.example.com ESMTP Postfix"]}]}],
        "findings": [{"code": "PD102", "message": "198.51.100.7:25 answered the header", "target": "mail.example.com:25",
                      "evidence": {}, "fix": ""}],
    }
    shown = json.dumps(anonymize(document))
    for original in ("10.1.2.3", "198.51.100.7", "mail.example.com", "mx1.example.com"):
        assert original not in shown


ADDRESS_OR_PSEUDONYM = re.compile(r"\[?[0-9a-fA-F:.]*[.:][0-9a-fA-F:.]+\]?")


@pytest.mark.parametrize("capture", sorted(path.name for path in CAPTURES.glob("*.pcap*")))
def test_anonymize_leaves_each_fix_as_the_page_wrote_it_but_for_addresses(capture):
    """A fix is proxydiag's own text: anonymised, only the capture's addresses in it change
    (a Stalwart key such as `[server.proxy]` is not a host name)."""
    def fixes(*extra: str) -> list[str]:
        result = run("analyze", f"captures/{capture}", "--format", "json", "--fail-on", "never", *extra)
        return [ADDRESS_OR_PSEUDONYM.sub("ADDR", finding["fix"] or "") for finding in json.loads(result.stdout)["findings"]]

    assert fixes("--anonymize") == fixes()


def test_anonymize_keeps_stalwart_keys_and_event_names_a_finding_quotes(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('[server.listener."smtp"]\nbind = ["[::]:10025"]\nprotocol = "smtp"\n'
                      'proxy.override = true\n'
                      '[server.proxy]\ntrusted-networks = ["127.0.0.1/32"]\n')
    result = run("analyze", "captures/haproxy-v2-smtp.pcap", "--stalwart-config", str(config), "--format", "json",
                 "--anonymize", "--fail-on", "never")
    document = json.loads(result.stdout)
    messages = " ".join(finding["message"] for finding in document["findings"])
    assert "server.listener.smtp.proxy.override" in messages
    assert str(config) not in result.stdout and str(tmp_path) not in result.stdout


def test_anonymized_json_is_the_same_whether_the_store_spilled_or_not():
    """The anonymised JSON reads the store twice (learn, then rewrite as it writes): a
    store on disk gives the very document one in memory gives."""
    code = ("import sys, proxydiag.facts.store as s; s.SPILL_AFTER = {bound}; "
            "sys.argv = ['proxydiag', 'analyze', 'captures/two-proxies-both-send.pcap', 'captures/haproxy-ipv6.pcap', "
            "'--format', 'json', '--anonymize', '--fail-on', 'never']; "
            "from proxydiag.cli import main; main()")
    outputs = [subprocess.run([sys.executable, "-c", code.format(bound=bound)], capture_output=True, text=True,
                              cwd=REPO, timeout=120) for bound in (0, 1_000_000)]
    assert outputs[0].stdout == outputs[1].stdout and json.loads(outputs[0].stdout)["anonymized"] is True
    assert "127.0.0.1" not in outputs[0].stdout


@pytest.mark.parametrize("anonymized", [False, True], ids=["plain", "anonymized"])
def test_rich_verbose_lists_every_connection_once_in_order(tmp_path, anonymized):
    """-v lists them all, in tables of 200 written as they are rendered (the store is read
    again rather than held); the first table alone has a title and headers."""
    sys.path.insert(0, str(REPO / "bench"))
    from synthetic import generate

    capture = tmp_path / "many.pcap"
    truth = generate(capture, "sessions", megabytes=1, bulk_segments=0)
    assert truth["connections"] > 400
    result = run("analyze", str(capture), "-v", "--fail-on", "never", *(["--anonymize"] if anonymized else []))
    assert result.returncode == 0, result.stderr
    table = result.stdout[result.stdout.index("Connections"):]
    ids = [int(number) for number in re.findall(r"^ *(\d+) ", table, re.M)]
    assert ids == list(range(1, truth["connections"] + 1))
    assert result.stdout.count("client (per header)") == 1 and "more connections" not in result.stdout
    assert ("203.0.113." in result.stdout) is not anonymized


@pytest.mark.parametrize("fmt", ["rich", "markdown"])
def test_human_reports_say_what_the_configurations_hold_that_was_not_judged(tmp_path, fmt):
    """A route chosen at run time, a Stalwart listener Stalwart itself refuses: the JSON
    lists them as problems, and the reports people read say so too (else "no findings"
    reads as "all is well")."""
    nginx = tmp_path / "nginx.conf"
    nginx.write_text("events {}\nstream {\n  server {\n    listen 2525;\n    proxy_pass $chosen_elsewhere;\n"
                     "    proxy_protocol on;\n  }\n}\n")
    stalwart = tmp_path / "listeners.json"
    stalwart.write_text(json.dumps({"list": [{"name": "smtp", "protocol": "smtp", "bind": ["[::]:10025"]}]}))
    result = run("check", str(nginx), "--stalwart-config", str(stalwart), "--format", fmt, "--fail-on", "never")
    assert result.returncode == 0, result.stderr
    shown = re.sub(r"\\(.)", r"\1", " ".join(result.stdout.split()))  # unwrapped, Markdown escapes undone
    assert "nginx.conf:5: proxy_pass $chosen_elsewhere" in shown
    assert "a set written as a JSON array" in shown and "bind (smtp)" in shown


def test_no_findings_says_what_was_looked_at(tmp_path):
    """`check` reads no traffic: its "no findings" is about the configurations, not headers."""
    nginx = tmp_path / "nginx.conf"
    nginx.write_text("events {}\nstream {\n  server {\n    listen 993;\n    proxy_pass 127.0.0.1:10993;\n"
                     "    proxy_protocol on;\n  }\n}\n")
    for fmt in ("rich", "markdown"):
        shown = run("check", str(nginx), "--format", fmt).stdout
        assert "No findings: the proxy configurations show no problem." in shown and "greeting" not in shown, fmt


def test_rich_fix_code_block_is_set_apart_from_the_explain_pointer():
    """A fix ending in a code block ran straight into "more: proxydiag explain"; a blank
    line now closes every fix."""
    lines = [line.rstrip() for line in run("analyze", "captures/v1-behind-tls.pcap").stdout.splitlines()]
    fixes = [index for index, line in enumerate(lines) if line.strip() == "fix:"]
    pointers = [next(index for index in range(start, len(lines)) if lines[index].strip().startswith("more: "))
                for start in fixes]
    assert pointers and all(lines[index - 1] == "" for index in pointers)
