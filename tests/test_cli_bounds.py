"""Hostile command lines and output paths: numbers that are not numbers, files that are not
where they seem (issue 28, items 6 and 7)."""

import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer.main

from proxydiag.capture.live import PcapFiles, Rotation
from proxydiag.cli import app


def run(*args, stdin: bytes | None = None, timeout: float = 60):
    return subprocess.run([sys.executable, "-m", "proxydiag", *args], input=stdin, capture_output=True,
                          timeout=timeout)


def float_options() -> list[tuple[str, str]]:
    """Every (command, option) that takes a float, found in the app itself so that a new one is covered."""
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    return [(name, param.opts[0]) for name, command in commands.items() for param in command.params
            if param.type.name == "float"]


def test_float_options_are_found():
    assert ("sniff", "--duration") in float_options() and ("probe", "--timeout") in float_options()


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN", "-Infinity"])
def test_non_finite_numbers_refused(value):
    for command, option in float_options():
        result = run(command, option, value, timeout=20)
        stderr = result.stderr.decode()
        assert result.returncode == 2, (command, option, stderr)
        assert stderr.count("\n") == 1 and option in stderr and "finite" in stderr, (command, option, stderr)
        assert result.stdout == b""


# --- output files (item 6) ------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
CAPTURE = ROOT / "captures" / "haproxy-v2-smtp.pcap"
STALWART_LINE = ('2026-11-12T10:00:00Z WARN Proxy protocol error (network.proxy-error) listenerId = "imaps", '
                 'localPort = 10993, reason = "end of stream"\n')
HAPROXY_CFG = "frontend smtp\n    bind :25\n    default_backend mail\nbackend mail\n    server s1 10.0.0.3:10025 send-proxy-v2\n"


@pytest.fixture
def evidence(tmp_path) -> dict[str, Path]:
    """One input of each kind, in a directory of the test's own."""
    files = {"capture": tmp_path / "cap.pcap", "log": tmp_path / "stalwart.log", "config": tmp_path / "haproxy.cfg"}
    shutil.copy(CAPTURE, files["capture"])
    files["log"].write_text(STALWART_LINE)
    files["config"].write_text(HAPROXY_CFG)
    return files


def commands(evidence: dict[str, Path]) -> dict[str, list[str]]:
    """A report-writing invocation of each command, without its -o."""
    return {"analyze": ["analyze", str(evidence["capture"])], "logs": ["logs", str(evidence["log"])],
            "check": ["check", str(evidence["config"])], "probe": ["probe", "127.91.0.1:9", "--timeout", "1"]}


@pytest.mark.parametrize("command", ["analyze", "logs", "check", "probe"])
def test_output_never_follows_a_link(tmp_path, evidence, command):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    link = tmp_path / "report.md"
    link.symlink_to(victim)
    result = run(*commands(evidence)[command], "-F", "markdown", "-o", str(link))
    assert result.returncode in (0, 1, 2), result.stderr
    assert victim.read_text() == "precious\n"
    assert not link.is_symlink() and "proxydiag" in link.read_text()
    assert sorted(path.name for path in tmp_path.iterdir() if path.name.startswith(".")) == []  # no part file left


@pytest.mark.parametrize("kind", ["capture", "log", "config"])
def test_output_naming_an_input_is_refused(evidence, kind):
    command = {"capture": "analyze", "log": "logs", "config": "check"}[kind]
    before = evidence[kind].read_bytes()
    for name in (evidence[kind], evidence[kind].parent / "." / evidence[kind].name):
        result = run(*commands(evidence)[command], "-o", str(name))
        stderr = result.stderr.decode()
        assert result.returncode == 2 and stderr.count("\n") == 1 and "would replace" in stderr, stderr
        assert evidence[kind].read_bytes() == before and result.stdout == b""


def test_output_naming_the_stalwart_configuration_is_refused(tmp_path, evidence):
    stalwart = tmp_path / "config.toml"
    stalwart.write_text('[server.listener.smtp]\nbind = ["0.0.0.0:25"]\nprotocol = "smtp"\n')
    alias = tmp_path / "alias.toml"
    alias.symlink_to(stalwart)
    result = run("analyze", str(evidence["capture"]), "--stalwart-config", str(stalwart), "-o", str(alias))
    assert result.returncode == 2 and "would replace" in result.stderr.decode()
    assert stalwart.read_text().startswith("[server.listener.smtp]")


def test_probe_pcap_is_private_and_distinct_from_the_report(tmp_path):
    written = tmp_path / "probe.pcap"
    run("probe", "127.91.0.1:9", "--timeout", "1", "-w", str(written), "-F", "json", "-o", str(tmp_path / "r.json"))
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    same = run("probe", "127.91.0.1:9", "-w", str(written), "-o", str(written))
    assert same.returncode == 2 and "would replace" in same.stderr.decode()


def test_capture_files_are_private_and_replace_links(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (tmp_path / "cap.pcap").symlink_to(victim)
    files = PcapFiles(str(tmp_path / "cap.pcap"), Rotation(megabytes=0.001))
    for index in range(40):
        files.write(1700000000 + index, 1, bytes(100))
    files.close()
    assert victim.read_text() == "precious\n" and len(files.kept) > 2
    for path in files.kept:
        assert not os.path.islink(path) and stat.S_IMODE(os.stat(path).st_mode) == 0o600


@pytest.mark.parametrize("option", ["-o", "-w"])
def test_sniff_checks_its_outputs_before_capturing(tmp_path, option):
    started = time.monotonic()
    result = run("sniff", "-i", "lo", "--duration", "20", option, str(tmp_path / "missing" / "x"), timeout=15)
    stderr = result.stderr.decode()
    assert result.returncode == 2 and stderr.count("\n") == 1 and "missing" in stderr, stderr
    assert time.monotonic() - started < 10 and "capturing" not in stderr


def test_sniff_events_file_is_not_written_through_a_link(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (tmp_path / "events.jsonl").symlink_to(victim)
    result = run("sniff", "-i", "lo", "--duration", "2", "-F", "jsonl", "-o", str(tmp_path / "events.jsonl"), timeout=30)
    assert result.returncode == 2 and "symbolic link" in result.stderr.decode()
    assert victim.read_text() == "precious\n"


def test_streams_are_written_through_never_replaced(tmp_path):
    """/dev/null, /dev/stdout and a FIFO are names of streams: the report goes into them
    (renaming a file over /dev/null as root would replace the device)."""
    capture = str(CAPTURE)
    result = run("analyze", capture, "-F", "json", "-o", "/dev/null")
    assert result.returncode == 0 and result.stdout == b"", result.stderr
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    result = run("analyze", capture, "-F", "json", "-o", "/dev/stdout")
    assert result.returncode == 0 and b'"schema": "proxydiag/1"' in result.stdout, result.stderr
    assert os.path.islink("/dev/stdout")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)
    result = run("analyze", capture, "-F", "json", "-o", str(fifo))
    assert result.returncode == 0, result.stderr
    assert b'"schema": "proxydiag/1"' in reader.communicate(timeout=30)[0]
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_sniff_rotating_output_is_checked_by_its_first_name(tmp_path):
    """-w with -G names its files through strftime: the directory checked is the first file's."""
    (tmp_path / time.strftime("%Y")).mkdir()
    pattern = str(tmp_path / "%Y" / "cap-%H%M%S.pcap")
    result = run("sniff", "-i", "lo", "--duration", "1", "-w", pattern, "-G", "60", "-F", "json", timeout=30)
    assert result.returncode in (0, 1), result.stderr
    (written,) = list((tmp_path / time.strftime("%Y")).iterdir())
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
