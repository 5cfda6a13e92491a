"""Client text quoted in log lines is masked as the capture recognisers mask it (issue 28,
item 2), in every format and with --anonymize.

nginx's `broken header: "..."` quotes the client's bytes raw (src/core/ngx_proxy_protocol.c,
nginx 1.22: `ngx_log_error(NGX_LOG_ERR, ..., "broken header: \\"%*s\\"", ...)`), CR LF and
all; Stalwart's text and JSON serializers quote strings with escapes (crates/trc/src/
serializers/text.rs, json.rs). The lines below are in those formats."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from proxydiag.logs.masking import mask_log_text

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "Tr0ub4dor&3xample"
USER = "alice.wonder"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.SECRETTOKEN"
PLAIN = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()
BASIC = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
SECRETS = (PASSWORD, USER, TOKEN, PLAIN, BASIC, base64.b64encode(USER.encode()).decode(),
           base64.b64encode(PASSWORD.encode()).decode())

CLIENT_BYTES = [
    f"a1 LOGIN {USER} {PASSWORD}",
    f"LOGIN {USER} {PASSWORD}",
    f"EHLO x\r\nAUTH PLAIN {PLAIN}",
    f"AUTH LOGIN\r\n{base64.b64encode(USER.encode()).decode()}\r\n{base64.b64encode(PASSWORD.encode()).decode()}",
    f"USER {USER}\r\nPASS {PASSWORD}",
    f"GET /jmap/session?access_token={TOKEN} HTTP/1.1\r\nHost: mail.example.com\r\nAuthorization: Basic {BASIC}",
    f"POST /x HTTP/1.1\r\nCookie: session={TOKEN}",
]


def nginx_line(index: int, data: str) -> str:
    return (f"2026/12/02 11:20:{index:02d} [error] 16536#16536: *{index + 1} broken header: \"{data}\" while reading "
            f"PROXY protocol, client: 127.91.1.{index + 1}, server: 127.91.0.{index + 1}:25")


def stalwart_line(index: int, data: str) -> str:
    escaped = data.replace("\r", "\\r").replace("\n", "\\n")
    return (f'2026-11-12T10:00:{index:02d}Z WARN Proxy protocol error (network.proxy-error) listenerId = "smtp{index}", '
            f'localPort = 10025, reason = "end of stream: {escaped}"')


def journal_line(index: int, data: str) -> str:
    return json.dumps({"__REALTIME_TIMESTAMP": str(1796210435953000 + index), "SYSLOG_IDENTIFIER": "nginx",
                       "MESSAGE": nginx_line(index, data).split(" ", 2)[2].replace("[error]", "nginx: [error]", 1)})


@pytest.fixture
def logs(tmp_path) -> dict[str, Path]:
    files = {"nginx": tmp_path / "error.log", "stalwart": tmp_path / "stalwart.log", "journal": tmp_path / "journal.json"}
    files["nginx"].write_text("\n".join(nginx_line(i, data) for i, data in enumerate(CLIENT_BYTES)) + "\n")
    files["stalwart"].write_text("\n".join(stalwart_line(i, data) for i, data in enumerate(CLIENT_BYTES)) + "\n")
    files["journal"].write_text("\n".join(journal_line(i, data) for i, data in enumerate(CLIENT_BYTES)) + "\n")
    return files


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "proxydiag", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("kind", ["nginx", "stalwart", "journal"])
@pytest.mark.parametrize("form", ["rich", "json", "markdown"])
@pytest.mark.parametrize("anonymize", [False, True])
def test_logs_never_print_client_credentials(logs, kind, form, anonymize):
    result = run("logs", str(logs[kind]), "-F", form, "-v", *(["--anonymize"] if anonymize else []))
    assert result.returncode in (0, 1), result.stderr
    output = result.stdout + result.stderr
    assert "****" in output  # the lines are quoted, masked
    for secret in SECRETS:
        assert secret not in output, (kind, form, secret)


def test_analyze_with_logs_masks_them_too(logs):
    capture = ROOT / "captures" / "haproxy-v2-smtp.pcap"
    for form in ("json", "markdown"):
        result = run("analyze", str(capture), str(logs["nginx"]), str(logs["stalwart"]), "-F", form)
        assert "****" in result.stdout, result.stderr
        for secret in SECRETS:
            assert secret not in result.stdout + result.stderr, (form, secret)


def test_masking_keeps_what_is_not_a_credential():
    line = nginx_line(0, "EHLO client.example.com")
    assert mask_log_text(line) == line
    stalwart = '2026-11-12T10:00:00Z INFO IMAP LOGIN command (imap.login) listenerId = "imap", localPort = 10143'
    assert mask_log_text(stalwart) == stalwart
    masked = mask_log_text(nginx_line(0, f"a1 LOGIN {USER} {PASSWORD}"))
    assert 'broken header: "a1 LOGIN ****" while reading PROXY protocol, client: 127.91.1.1' in masked


@pytest.mark.parametrize("form", ["rich", "markdown"])
def test_names_a_log_gives_are_data_where_they_key_a_count(tmp_path, form):
    """A listener named by the log (nginx's `server:`) keys the per-listener counts: escaped
    like any log text (the fuzz target `logs` found the raw bytes in the Markdown view)."""
    log = tmp_path / "error.log"
    log.write_text('2026/12/02 11:20:06 [error] 1#1: *1 broken header: "EHLO x" while reading PROXY protocol, '
                   "client: 127.91.1.3, server: 127.91.0.1:25\x1b]0;pwned\x07\n")
    result = run("logs", str(log), "-F", form)
    assert result.returncode in (0, 1), result.stderr
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout and "pwned" in result.stdout


def test_captured_credential_headers_are_masked_without_their_names():
    """HAProxy's `capture request header Authorization` logs the value alone, in braces."""
    line = (f"Dec  2 11:20:35 lb haproxy[7]: 198.51.100.7:40000 [02/Dec/2026:11:20:35.953] www~ mail/s1 0/0/1/2/3 200 "
            f'512 - - ---- 1/1/0/0/0 0/0 {{Basic {BASIC}|mail.example.com}} "GET /jmap?access_token={TOKEN} HTTP/1.1"')
    masked = mask_log_text(line)
    assert BASIC not in masked and TOKEN not in masked, masked
    assert "{Basic ****|mail.example.com}" in masked and "access_token=****" in masked
