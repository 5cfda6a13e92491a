"""Credentials seen on the wire are never printed, in any output format.

The shipped captures carry alice's password in cleartext: AUTH PLAIN on SMTP
(haproxy-v2-smtp session 3, the back leg of haproxy-v2ssl-smtps), AUTHENTICATE PLAIN
on IMAP and AUTH PLAIN on POP3 (haproxy-v2-imap), IMAP LOGIN through nginx."""

import base64
import subprocess
import sys
from pathlib import Path

import pytest

CAPTURES = Path(__file__).resolve().parent.parent / "captures"
USER, PASSWORD = "alice@example.test", "Tr0ub4dor&3xample"
SECRETS = [
    PASSWORD,
    base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode(),
    base64.b64encode(f"{USER}\0{USER}\0{PASSWORD}".encode()).decode(),
    base64.b64encode(PASSWORD.encode()).decode(),
]
FORMATS = ["rich", "json"]


def captures_with_credentials() -> list[Path]:
    found = [path for path in sorted(CAPTURES.glob("*.pcap*")) if PASSWORD.encode() in path.read_bytes()
             or any(secret.encode() in path.read_bytes() for secret in SECRETS[1:])]
    assert found, "the shipped captures should carry the test password somewhere"
    return found


@pytest.mark.parametrize("capture", captures_with_credentials(), ids=lambda path: path.name)
@pytest.mark.parametrize("fmt", FORMATS)
def test_no_output_format_prints_a_credential(capture, fmt):
    result = subprocess.run(
        [sys.executable, "-m", "proxydiag", "analyze", str(capture), "--format", fmt, "--fail-on", "never"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    for secret in SECRETS:
        assert secret not in output
    assert "PROXY" in output or "proxy_header" in output  # a real report, not an empty one
