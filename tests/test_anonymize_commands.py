"""`--anonymize` on every command that prints a report (issue 28, item 5): check takes it,
the command line a ticket echoes keeps no path or address of the user's, and names from
certificates are pseudonymised; nothing original survives in any format."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_probe_hostile import certificate, start_listener

ROOT = Path(__file__).resolve().parent.parent
SITE = "acme-mailhub-prod"  # a directory name that identifies the site
BACKEND = "10.77.1.2"
PROXY = "10.77.1.9"
HOST = "mx1.acme-mailhub.example"
ORGANISATION = "Acme Mailhub GmbH"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "proxydiag", *args], capture_output=True, text=True, timeout=120)


@pytest.fixture
def site(tmp_path) -> Path:
    directory = tmp_path / SITE
    directory.mkdir()
    (directory / "haproxy.cfg").write_text(
        "frontend smtp\n    bind :25\n    default_backend mail\n"
        f"backend mail\n    server {HOST} {BACKEND}:10025 send-proxy\n")
    (directory / "stalwart.log").write_text(
        f'2026-11-12T10:00:00Z INFO SMTP connection started (smtp.connection-start) listenerId = "smtp", '
        f"localPort = 10025, remoteIp = {PROXY}, remotePort = 40000\n"
        f'2026-11-12T10:00:01Z WARN Proxy protocol error (network.proxy-error) listenerId = "smtp", '
        f'localPort = 10025, remoteIp = {PROXY}, reason = "end of stream"\n')
    (directory / "broken.conf").write_text("stream {\n")
    return directory


def assert_nothing_original(output: str, *originals: str) -> None:
    for original in originals:
        assert original not in output, (original, output)


@pytest.mark.parametrize("form", ["rich", "json", "markdown"])
def test_check_takes_anonymize(site, form):
    result = run("check", str(site / "haproxy.cfg"), str(site / "broken.conf"), "--anonymize", "-F", form,
                 "-o", str(site / "report.out"))
    assert result.returncode == 2, result.stderr  # broken.conf is unreadable; the report is still written
    report = (site / "report.out").read_text()
    assert "input" in report
    assert_nothing_original(report, SITE, BACKEND, HOST, "haproxy.cfg", "broken.conf")


@pytest.mark.parametrize("form", ["rich", "json", "markdown"])
def test_logs_command_line_keeps_no_original(site, form):
    result = run("logs", str(site / "stalwart.log"), "--proxy-address", PROXY, "--anonymize", "-F", form,
                 "-o", str(site / "ticket.md"))
    assert result.returncode in (0, 1), result.stderr
    report = (site / "ticket.md").read_text()
    if form == "markdown":
        assert "proxydiag logs" in report and "--proxy-address" in report
    assert_nothing_original(report, SITE, PROXY, "stalwart.log", "ticket.md")


def test_analyze_with_logs_and_configs_keeps_no_path(site):
    capture = ROOT / "captures" / "haproxy-v2-smtp.pcap"
    for form in ("json", "markdown"):
        result = run("analyze", str(capture), str(site / "stalwart.log"), str(site / "broken.conf"), "--anonymize",
                     "-F", form)
        assert result.stdout, result.stderr
        assert_nothing_original(result.stdout, SITE, "stalwart.log", "broken.conf", PROXY, "haproxy-v2-smtp")


def test_probe_names_and_command_line_are_pseudonymised(tmp_path):
    address = "127.91.0.6"
    listener = start_listener("tls-imap", address, 10993, *certificate(tmp_path, "org", f" {ORGANISATION}"))
    try:
        for form in ("rich", "json", "markdown"):
            output = tmp_path / f"{SITE}.{form}"
            result = run("probe", f"{address}:10993", "--timeout", "3", "--anonymize", "-F", form, "-v",
                         "-o", str(output), "-w", str(tmp_path / f"{SITE}.pcap"))
            assert result.returncode in (0, 1), result.stderr
            report = output.read_text()
            assert "TLS" in report
            assert_nothing_original(report, ORGANISATION, "Acme", address, SITE)
    finally:
        listener.kill()
        listener.wait(timeout=10)


def test_probe_target_named_by_a_single_label_is_pseudonymised():
    for form in ("json", "markdown", "rich"):
        result = run("probe", "localhost:9", "--timeout", "1", "--anonymize", "-F", form)
        assert result.returncode == 2 and "anon.invalid" in result.stdout, result.stdout + result.stderr
        assert_nothing_original(result.stdout, "localhost", "127.0.0.1")


@pytest.mark.parametrize("form", ["jsonl", "markdown"])
def test_sniff_keeps_no_path_of_the_user(tmp_path, form):
    written = tmp_path / f"{SITE}.pcap"
    result = run("sniff", "-i", "lo", "--duration", "1", "--anonymize", "-F", form, "-w", str(written))
    assert result.returncode in (0, 1), result.stderr
    assert result.stdout and "input" in result.stdout
    assert_nothing_original(result.stdout, SITE)
