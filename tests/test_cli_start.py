"""Fast start: the light commands import only what they use (no analysis, rules, scapy or
rich's Markdown), which is most of what `proxydiag decode` used to spend starting."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEADER = "0d0a0d0a000d0a515549540a2111000ccb007107c000020a9c40001900"
# pydantic: typer 0.29 imports it for every command with a parameter (about 100 ms); pyproject keeps typer below it.
HEAVY = ("proxydiag.pipeline.analysis", "proxydiag.rules.registry", "proxydiag.capture.flows", "proxydiag.pipeline.shards", "scapy", "rich.markdown",
         "pydantic", "prometheus_client", "jinja2", "proxydiag.pipeline.commands")


def imported_modules(*args: str, ok=(0, 1)) -> set[str]:
    """The modules a run of `proxydiag ARGS` imported, from python -X importtime."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    run = subprocess.run([sys.executable, "-X", "importtime", "-m", "proxydiag", *args],
                         capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode in ok, run.stderr[-2000:]
    return {line.rsplit("|", 1)[1].strip() for line in run.stderr.splitlines() if line.startswith("import time:")}


@pytest.mark.parametrize("args", [("decode", HEADER), ("decode", "--format", "json", HEADER), ("explain", "PD101"),
                                  ("rules",), ("rules", "--format", "json"), ("--help",), ("decode", "--help")])
def test_light_commands_leave_the_analysis_unimported(args):
    modules = imported_modules(*args)
    assert "proxydiag.cli" in modules  # the measurement saw the run
    # typer's own rich help formatter imports rich.markdown: only --help may have it.
    heavy = tuple(name for name in HEAVY if name != "rich.markdown" or "--help" not in args)
    loaded = sorted(name for name in modules if name.startswith(heavy))
    assert not loaded, f"{' '.join(args)} imported {loaded}"


def test_analyze_still_imports_what_it_needs(tmp_path):
    modules = imported_modules("analyze", "--format", "json", str(tmp_path / "missing.pcap"), ok=(2,))
    assert {"proxydiag.pipeline.analysis", "proxydiag.rules.registry", "proxydiag.capture.flows"} <= modules


# What a capture alone never needs: the configuration and log readers (and what they import),
# the judging of configurations, anonymisation without --anonymize, a progress bar not shown,
# the Markdown of a fix the report does not show.
NOT_FOR_A_CAPTURE = ("proxydiag.configs.kinds", "proxydiag.configs.haproxy", "proxydiag.configs.nginx",
                     "proxydiag.configs.traefik", "proxydiag.configs.caddy", "proxydiag.pipeline.check",
                     "proxydiag.rules.crosscheck", "proxydiag.logs", "proxydiag.pipeline.logs", "proxydiag.report.anonymize",
                     "crossplane", "yaml", "jinja2", "scapy", "rich.markdown", "rich.progress", "markdown_it", "pygments",
                     "pydantic", "prometheus_client")


@pytest.mark.parametrize("args", [("--format", "json"), ("--format", "rich"), ("--format", "markdown")])
def test_analyze_of_a_capture_alone_leaves_the_other_readers_unimported(args):
    # correct-with-local-checks: no finding with a fix shown, so not even a fix's Markdown is rendered
    modules = imported_modules("analyze", str(ROOT / "captures" / "correct-with-local-checks.pcap"), *args,
                               "--fail-on", "never")
    assert "proxydiag.pipeline.analysis" in modules
    loaded = sorted(name for name in modules if name.startswith(NOT_FOR_A_CAPTURE))
    assert not loaded, f"analyze {' '.join(args)} imported {loaded}"


def test_analyze_imports_the_readers_a_configuration_beside_the_capture_needs(tmp_path):
    config = tmp_path / "haproxy.cfg"
    config.write_text("frontend smtp\n    bind :25\n    default_backend mail\nbackend mail\n"
                      "    server s1 10.0.0.5:10025 send-proxy-v2\n")
    modules = imported_modules("analyze", str(ROOT / "captures" / "haproxy-v2-smtp.pcap"), str(config),
                               "--format", "json", "--fail-on", "never", ok=(0, 1, 2))
    assert {"proxydiag.configs.kinds", "proxydiag.configs.haproxy", "proxydiag.pipeline.check"} <= modules
