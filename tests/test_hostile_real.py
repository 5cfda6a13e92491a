"""Hostile text from real programs (tests/hostile_lab.py): Postfix's smtpd_banner and
Dovecot's login_greeting hold rich markup, a Markdown image and link and raw HTML; HAProxy
sends a UNIQUE_ID whose format holds the same plus ESC, BEL and U+202E, and the client's
odd SNI as AUTHORITY; swaks says EHLO with markup and authenticates (AUTH LOGIN, AUTH
PLAIN), a socket client and openssl s_client log in to IMAP, curl sends a request line with
markup through nginx. tcpdump records it all; `proxydiag analyze` must then render every
format (rich to a file and to a terminal, Markdown, JSON; with and without --anonymize)
with nothing raw, nothing live, no password and, anonymized, no original address or name.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import subprocess
from pathlib import Path

import pytest

from tests import hostile_lab as lab_module
from tests.hostile_lab import CLIENT, EHLO, HAPROXY, HOSTNAME, NGINX, PASSWORD, REQUEST_PATH, SNI, USER
from tests.test_hostile import check_properties, run

pytestmark = [pytest.mark.lab]

REPO = Path(__file__).resolve().parent.parent
SGR = re.compile(r"\x1b\[[0-9;]*m")
LAB_ADDRESS = re.compile(r"127\.70\.\d{1,3}\.\d{1,3}")
PROPERTIES = {"properties": ["renders", "no_raw_control", "markdown_inert"]}
CLIENT_NAME = "client7.lab-hostile.test"  # the EHLO name of the session through 465


def password_forms() -> list[str]:
    """The password as sent and as the SASL mechanisms and a hex dump would show it."""
    plain = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()
    login = base64.b64encode(PASSWORD.encode()).decode()
    return [PASSWORD, PASSWORD.encode().hex(), plain, login]


# --- the clients ---------------------------------------------------------------------------


def swaks(auth: str) -> None:
    subprocess.run(
        ["swaks", "--server", HAPROXY, "--port", "25", "--local-interface", CLIENT, "--ehlo", EHLO, "--auth", auth,
         "--auth-user", USER, "--auth-password", PASSWORD, "--from", "alice@example.test", "--to", "bob@example.test",
         "--quit-after", "AUTH", "--timeout", "10"],
        capture_output=True, timeout=30,
    )


def imap_login() -> bytes:
    """A LOGIN through HAProxy's plain 143, from the lab's client address."""
    received = b""
    with socket.create_connection((HAPROXY, 143), 10, (CLIENT, 0)) as conn:
        conn.settimeout(10)
        received += conn.recv(4096)
        conn.sendall(f"a1 LOGIN {USER} {PASSWORD}\r\n".encode())
        received += conn.recv(4096)
        conn.sendall(b"a2 LOGOUT\r\n")
        while chunk := conn.recv(4096):
            received += chunk
    return received


def openssl_session(port: int, lines: list[str]) -> None:
    """TLS to HAProxy with an odd SNI (it becomes the AUTHORITY TLV); the lines inside."""
    subprocess.run(
        ["openssl", "s_client", "-connect", f"{HAPROXY}:{port}", "-servername", SNI, "-quiet", "-crlf"],
        input="".join(line + "\n" for line in lines).encode(), capture_output=True, timeout=30,
    )


def curl_request_line() -> None:
    subprocess.run(["curl", "-sg", "--interface", CLIENT, "--max-time", "10", "-o", "/dev/null",
                    f"http://{NGINX}{REQUEST_PATH}"], capture_output=True, timeout=30)


# --- proxydiag -------------------------------------------------------------------------------


def proxydiag(args: list[str], terminal: bool = False) -> tuple[int, str, str]:
    return run(args, terminal, columns=250)  # wide: wire text is checked as shown, not folded


def outputs(capture: Path, anonymize: bool) -> dict[str, tuple[int, str, str]]:
    extra = ["--anonymize"] if anonymize else []
    base = ["analyze", str(capture), "-v", *extra]
    return {
        "rich-file": proxydiag(base),
        "rich-terminal": proxydiag(base, terminal=True),
        "markdown": proxydiag([*base, "--format", "markdown"]),
        "json": proxydiag([*base, "--format", "json"]),
        "html": proxydiag([*base, "--format", "html"]),
    }


def originals(document: dict) -> set[str]:
    """Every address the plain report names: the capture's endpoints and the headers'."""
    found = set()
    for conn in document["connections"]:
        found |= {conn["tcp"]["src_addr"], conn["tcp"]["dst_addr"]}
        header = conn.get("proxy_header") or {}
        found |= {header[key] for key in ("src_addr", "dst_addr") if header.get(key)}
    return found


def _shows_address(text: str, address: str) -> bool:
    import ipaddress

    pattern = re.compile(r"(?<![\w.:])" + re.escape(address) + r"(?![\w:]|\.\d)")
    return bool(pattern.search(text)) or ipaddress.ip_address(address).packed.hex() in text.lower()


# --- the test ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def capture(tmp_path_factory) -> Path:
    missing = lab_module.missing_programs()
    assert not missing, f"the hostile lab needs {', '.join(missing)} (tests/run.sh installs them)"
    path = tmp_path_factory.mktemp("hostile-real") / "hostile.pcap"
    with lab_module.running_lab() as lab:
        lab.start_capture(path)
        swaks("LOGIN")
        swaks("PLAIN")
        answered = imap_login()
        openssl_session(993, [f"a1 LOGIN {USER} {PASSWORD}", "a2 LOGOUT"])
        openssl_session(465, [f"EHLO {CLIENT_NAME}", "QUIT"])
        curl_request_line()
        lab.stop_capture()
    assert b"[/bold]" in answered, answered  # Dovecot said what it was told to
    assert PASSWORD.encode() in path.read_bytes()  # the password crossed the wire in the clear
    return path


def test_the_capture_holds_the_hostile_text(capture):
    code, out, err = proxydiag(["analyze", str(capture), "--format", "json"])
    assert code in (0, 1), err
    document = json.loads(out)
    seen = [(conn["tcp"]["dst_port"], conn.get("greeting"), conn.get("client_first"),
             (conn.get("opening") or {}).get("auth_method")) for conn in document["connections"]]
    greetings = " ".join(conn.get("greeting") or "" for conn in document["connections"])
    assert "[/bold]" in greetings and "![x](http://127.70.0.9/p.png)" in greetings and "<img src=x>" in greetings, seen
    assert "\\x1b]8;;" in greetings and "\\xe2\\x80\\xae" in greetings, seen  # the controls, shown escaped
    tlvs = [tlv for conn in document["connections"] for tlv in (conn.get("proxy_header") or {}).get("tlvs") or []]
    assert any(tlv["name"] == "AUTHORITY" and tlv["value"] == SNI for tlv in tlvs), tlvs
    assert any(tlv["name"] == "UNIQUE_ID" for tlv in tlvs), tlvs
    first_lines = " ".join(conn.get("client_first") or "" for conn in document["connections"])
    assert "[link=http://127.70.0.9/]" in first_lines, seen  # curl's request line or swaks's EHLO
    codes = [finding["code"] for finding in document["findings"]]
    assert "PD102" in codes, (codes, seen)  # the header's hex as evidence
    methods = {(conn.get("opening") or {}).get("auth_method") for conn in document["connections"]}
    assert {"LOGIN", "PLAIN"} <= methods, seen  # swaks authenticated both ways, IMAP logged in


@pytest.mark.parametrize("anonymize", [False, True], ids=["plain", "anonymized"])
def test_reports_of_hostile_real_traffic(capture, anonymize):
    plain_text = proxydiag(["analyze", str(capture), "--format", "json"])[1]
    hidden = originals(json.loads(plain_text)) | set(LAB_ADDRESS.findall(plain_text))  # 127.70.0.9 from the text
    assert any(LAB_ADDRESS.fullmatch(address) for address in hidden)
    for name, (code, out, err) in outputs(capture, anonymize).items():
        where = f"{name}{' --anonymize' if anonymize else ''}"
        assert code in (0, 1), f"{where}: exit {code}: {err}"
        assert "Traceback" not in err and "internal error" not in err, f"{where}: {err}"
        fmt = name.split("-")[0]
        check_properties(PROPERTIES, fmt, out, err, anonymize, where)
        for form in password_forms():
            assert form not in out and form not in err, f"{where}: the password is shown ({form})"
        if name.startswith("rich") and not anonymize:  # wire text is shown as text, never read as markup
            assert "[/bold]" in out and "[link=http://127.70.0.9/]x[/link]" in out, f"{where}: markup lost"
        if anonymize:
            assert not LAB_ADDRESS.search(out), f"{where}: {LAB_ADDRESS.search(out).group()} survives --anonymize"
            for address in hidden:
                assert not _shows_address(out, address), f"{where}: {address} survives --anonymize"
                assert address.encode().hex() not in out.lower(), f"{where}: {address} survives as hex text"
            for host in (HOSTNAME, SNI, CLIENT_NAME):
                for form in (host.lower(), host.encode().hex(), host.lower().encode().hex()):
                    assert form not in out.lower(), f"{where}: {host} survives --anonymize ({form})"
