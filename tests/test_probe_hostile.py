"""`proxydiag probe` against listeners that mean harm (issue 28, item 4): bounded in bytes,
memory and time whatever they send; their certificates are data in every view, and one
the parser refuses costs only its own target.

The listeners (tests/hostile_listeners.py) run on 127.91.0.0/16, each a process of its own
that ends by itself after its lifetime and is stopped by its id."""

from __future__ import annotations

import datetime
import json
import os
import resource
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests import daemons

ROOT = Path(__file__).resolve().parent.parent
LISTENERS = Path(__file__).resolve().parent / "hostile_listeners.py"
LAB_CLIENT = "127.91.0.100"
MEMORY_CAP = 100 * 1024  # KiB of resident memory the probe may use
ADDRESS_SPACE = 1 << 30  # the probe runs under this limit: a regression fails, it does not swap the machine out
HOSTILE_TEXT = "\x1b[31mred\x1b]0;title\x07\rback\u202eevil\u2028next"
HOSTILE_CHARACTERS = ("\x1b", "\x07", "\r", "\u202e", "\u2028")


def start_listener(mode: str, address: str, port: int, *files: Path, lifetime: float = 60) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, str(LISTENERS), mode, address, str(port), str(lifetime),
                                *map(str, files)], stdin=subprocess.DEVNULL)
    try:
        daemons.wait_listening(address, port, mode, LAB_CLIENT)
    except daemons.LabError:
        process.kill()
        raise
    return process


@pytest.fixture
def listener():
    started: list[subprocess.Popen] = []

    def start(mode: str, address: str, port: int, *files: Path) -> None:
        started.append(start_listener(mode, address, port, *files))

    yield start
    for process in started:
        process.kill()
        process.wait(timeout=10)


# The probe's own peak: VmHWM of its process after exec. A forked child's ru_maxrss also
# counts the pytest process it was forked from (hundreds of MiB late in a long run).
HIGH_WATER = """\
import atexit, runpy, sys
out = sys.argv.pop(1)
def note():
    with open("/proc/self/status") as status, open(out, "w") as handle:
        handle.write(next(line for line in status if line.startswith("VmHWM")).split()[1])
atexit.register(note)
sys.argv[0] = "proxydiag"
runpy.run_module("proxydiag", run_name="__main__", alter_sys=True)
"""


def run_measured(args: list[str], timeout: float) -> tuple[int, int, float, str, str]:
    """The probe in a process of its own: exit code, peak resident memory (KiB), seconds,
    stdout, stderr."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))

    with tempfile.NamedTemporaryFile("r", suffix=".hwm") as high_water:
        started = time.monotonic()
        process = subprocess.run([sys.executable, "-c", HIGH_WATER, high_water.name, *args], capture_output=True,
                                 stdin=subprocess.DEVNULL, preexec_fn=limit, env={**os.environ, "PYTHONPATH": str(ROOT)},
                                 timeout=timeout)
        seconds = time.monotonic() - started
        peak = int(high_water.read() or 0) or 1 << 40  # no note: the process died before its exit
    return (process.returncode, peak, seconds, process.stdout.decode(errors="replace"),
            process.stderr.decode(errors="replace"))


@pytest.mark.parametrize("mode, address, port", [("endless-greeting", "127.91.0.1", 10025),
                                                 ("endless-lines", "127.91.0.2", 10025)])
def test_endless_listener_is_read_within_bounds(listener, tmp_path, mode, address, port):
    listener(mode, address, port)
    written = tmp_path / "probe.pcap"
    timeout = 3.0
    code, peak, seconds, stdout, stderr = run_measured(
        ["probe", f"{address}:{port}", "--timeout", str(timeout), "-F", "json", "-w", str(written)], timeout=90)
    assert code in (0, 1), stderr
    assert peak < MEMORY_CAP, f"peak {peak} KiB"
    assert seconds < 2 * timeout + 5, seconds  # the first limit is reached long before any timeout
    assert written.stat().st_size < 1_000_000
    (target,) = json.loads(stdout)["targets"]
    assert any(step["stopped_reading"] for step in target["steps"])
    assert target["stopped_early"] and "bytes" in target["stopped_early"]
    assert "Traceback" not in stderr and "internal error" not in stderr


def certificate(tmp_path: Path, name: str, text: str, patch=None, names: int = 0) -> tuple[Path, Path]:
    """A self-signed certificate whose subject and issuer carry `text`; `patch` rewrites its DER
    (unsigned again: the probe does not verify, and OpenSSL serves what it is given); `names`:
    that many DNS names in its subjectAltName."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"mail{text}.example"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"Org{text}")])
    start = datetime.datetime(2026, 1, 1)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
               .serial_number(7).not_valid_before(start).not_valid_after(start + datetime.timedelta(days=400)))
    if names:
        alternatives = [x509.DNSName(f"host-{index:05d}.mail.example") for index in range(names)]
        builder = builder.add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
    built = builder.sign(key, hashes.SHA256())
    der = built.public_bytes(serialization.Encoding.DER)
    cert_path, key_path = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert_path.write_text(ssl.DER_cert_to_PEM_cert(patch(der) if patch else der))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def version_4(der: bytes) -> bytes:
    """The version field says 4 (the INTEGER 3): cryptography refuses the certificate."""
    at = der.index(b"\xa0\x03\x02\x01\x02")
    return der[:at] + b"\xa0\x03\x02\x01\x03" + der[at + 5 :]


def month_13(der: bytes) -> bytes:
    """notAfter in the 13th month: a time cryptography cannot read."""
    first = der.index(b"\x17\x0d")
    second = der.index(b"\x17\x0d", first + 1)
    return der[: second + 2] + b"271301000000Z" + der[second + 15 :]


def test_certificate_text_is_data_in_every_view(listener, tmp_path):
    listener("tls-imap", "127.91.0.3", 10993, *certificate(tmp_path, "hostile", HOSTILE_TEXT))
    for form in ("rich", "markdown", "json"):
        output = tmp_path / f"report.{form}"
        code, _, _, _, stderr = run_measured(["probe", "127.91.0.3:10993", "--timeout", "3", "-F", form, "-v",
                                              "-o", str(output)], timeout=90)
        assert code in (0, 1), stderr
        text = output.read_text()
        if form == "json":
            tls = json.loads(text)["targets"][0]["verdict"]["tls"]
            assert "\x1b[31mred" in tls["subject"]  # the document keeps the listener's words as they were
            continue
        assert "red" in text and "Org" in text, text
        for character in HOSTILE_CHARACTERS:
            assert character not in text, (form, repr(character))
        if form == "markdown":
            rows = [line for line in text.splitlines() if line.startswith("| ")]
            assert rows and all(line.endswith("|") and line.count(" | ") >= 4 for line in rows), rows


@pytest.mark.parametrize("patch", [version_4, month_13])
def test_unreadable_certificate_costs_only_its_target(listener, tmp_path, patch):
    listener("tls-imap", "127.91.0.4", 10993, *certificate(tmp_path, "broken", "", patch))
    listener("tls-imap", "127.91.0.5", 10993, *certificate(tmp_path, "fine", ""))
    code, _, _, stdout, stderr = run_measured(
        ["probe", "127.91.0.4:10993", "127.91.0.5:10993", "--timeout", "3", "-F", "json"], timeout=120)
    assert code in (0, 1), stderr
    assert "Warning" not in stderr and "internal error" not in stderr, stderr
    broken, fine = json.loads(stdout)["targets"]
    assert "unreadable" in broken["verdict"]["tls"]["unreadable"]
    assert broken["verdict"]["tls"]["subject"] is None
    assert fine["verdict"]["tls"]["subject"].startswith("O=Org,CN=mail")


def test_certificate_past_the_step_limit_is_cut_in_the_handshake(listener, tmp_path):
    """A certificate of about 90 KB (4,000 names) is more than one connection may send."""
    listener("tls-imap", "127.91.0.7", 10993, *certificate(tmp_path, "huge", "", names=4000))
    code, peak, _, stdout, stderr = run_measured(["probe", "127.91.0.7:10993", "--timeout", "3", "-F", "json"],
                                                 timeout=120)
    assert code in (0, 1, 2), stderr
    assert peak < MEMORY_CAP and "internal error" not in stderr, stderr
    step = json.loads(stdout)["targets"][0]["steps"][0]
    assert "stopped reading" in step["tls"]["error"] and step["stopped_reading"], step


def test_trickling_listener_holds_the_probe_no_longer_than_its_timeouts(listener):
    """A greeting that goes on a line at a time, never ending, never reaching a limit: each
    connection ends at the greeting's timeout without a word (was 5.4 s a step at
    --timeout 2: EHLO sent into the greeting, its reply awaited, QUIT), and two such end
    the plan."""
    listener("trickle-lines", "127.91.0.8", 10025)
    timeout = 2.0
    code, _, seconds, stdout, stderr = run_measured(
        ["probe", "127.91.0.8:10025", "--timeout", str(timeout), "-F", "json"], timeout=120)
    assert code in (0, 1, 2), stderr
    (target,) = json.loads(stdout)["targets"]
    assert seconds < 2 * timeout + 3, seconds
    assert target["connections"] == 2 and "whole greeting" in target["stopped_early"]
    assert all(step["greeting_unfinished"] and step["probe_spoke_first_at"] is None for step in target["steps"])
