"""Issue 27 item 5: each command is one call of a pipeline run, a typed request in and an
`Outcome` out (the report to render and what the exit code rests on); what cannot run is
one line said, never an exception through the CLI; one place (report/render.py) chooses
how a report is anonymised, for every command and format; cli.py holds no pipeline."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from proxydiag.pipeline import commands
from proxydiag.pipeline.outcome import EXIT_FINDINGS, EXIT_OK, EXIT_UNUSABLE, Outcome
from proxydiag.report.model import View
from proxydiag.report.render import render

ROOT = Path(__file__).resolve().parent.parent
CAPTURES = ROOT / "captures"
SITE = "acme-mailhub-prod"
CONFIG = "frontend smtp\n    bind :25\n    default_backend mail\nbackend mail\n    server mx1 10.77.1.2:10025 send-proxy\n"
LOG = ('2026-11-12T10:00:01Z WARN Proxy protocol error (network.proxy-error) listenerId = "smtp", '
       'localPort = 10025, remoteIp = 10.77.1.9, reason = "end of stream"\n')


@pytest.fixture
def site(tmp_path) -> Path:
    directory = tmp_path / SITE
    directory.mkdir()
    (directory / "haproxy.cfg").write_text(CONFIG)
    (directory / "stalwart.log").write_text(LOG)
    return directory


def rendered(outcome: Outcome, view: View) -> str:
    assert outcome.report is not None
    return "".join(render(outcome.report, view))


def test_check_with_logs_returns_its_report_instead_of_leaving(site):
    said: list[str] = []
    outcome = commands.check(commands.CheckRequest(said.append, [str(site / "haproxy.cfg"), str(site / "stalwart.log")]))
    document = json.loads(rendered(outcome, View("json")))
    assert {item["path"] for item in document["inputs"]} == {str(site / "stalwart.log")}
    assert document["proxy_configs"] and document["logs"]
    assert outcome.exit_code("never") == EXIT_OK and not said
    assert outcome.exit_code("warning") == (EXIT_FINDINGS if outcome.severities else EXIT_OK)


def test_a_run_that_cannot_start_says_one_line_and_fails(site):
    said: list[str] = []
    outcome = commands.analyze(commands.AnalyzeRequest(said.append, [str(CAPTURES / "haproxy-v1-smtp.pcap")],
                                                       jobs="many"))
    assert outcome == Outcome(unread=["--jobs takes a positive number or auto, not 'many'"]) == Outcome(unread=said)
    assert outcome.exit_code("never") == EXIT_UNUSABLE


def test_unread_input_is_said_and_fails_yet_the_report_is_given(site):
    said: list[str] = []
    missing = str(site / "gone.cfg")
    outcome = commands.check(commands.CheckRequest(said.append, [str(site / "haproxy.cfg"), missing]))
    assert outcome.report is not None and outcome.unread == said and len(said) == 1 and "gone.cfg" in said[0]
    assert outcome.exit_code("never") == EXIT_UNUSABLE


def test_analyze_outcome_renders_every_format_from_one_report(site):
    outcome = commands.analyze(commands.AnalyzeRequest(print, [str(CAPTURES / "haproxy-v1-smtp.pcap")]))
    document = json.loads(rendered(outcome, View("json")))
    assert document["summary"]["connections"] == len(document["connections"]) > 0
    assert outcome.severities == [finding["severity"] for finding in document["findings"]]
    assert "PROXY" in rendered(outcome, View("markdown")) and "<svg" in rendered(outcome, View("html"))


def proxydiag(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "proxydiag", *args], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)


@pytest.mark.parametrize("command", ["check", "logs"])
def test_html_command_line_is_anonymised_for_every_command(site, command):
    """The html report echoes the command line: check's and logs' kept the user's paths."""
    given = site / ("haproxy.cfg" if command == "check" else "stalwart.log")
    run = proxydiag(command, str(given), "--format", "html", "--anonymize")
    assert run.returncode in (0, 1), run.stderr
    assert "<footer>" in run.stdout and SITE not in run.stdout and given.name not in run.stdout


def proxydiag_imports(tree: ast.Module) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("proxydiag"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("proxydiag"))
    return found


def test_cli_composes_no_stage_itself():
    """cli.py calls the pipeline's runs and the report's views: no reader, fact, rule or output file of its own."""
    tree = ast.parse((ROOT / "proxydiag" / "cli.py").read_text())
    stages = {module for module in proxydiag_imports(tree)
              if not module.startswith(("proxydiag.pipeline", "proxydiag.report", "proxydiag.cli_options"))}
    assert stages <= {"proxydiag"}, stages  # __version__, cli_options
