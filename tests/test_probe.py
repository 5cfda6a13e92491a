"""`proxydiag probe` against real listeners (tests/probe_lab.py: Postfix, Dovecot, HAProxy,
nginx stream, stunnel on 127.40.0.0/16), its bad inputs, and its target parser."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxydiag.probe.steps import Target, TargetError, parse_target
from tests.probe_lab import CLOSED, HAPROXY, NGINX, PROBE_TRUSTED, PROBE_UNTRUSTED, SERVER, STUNNEL, running_lab

TIMEOUT = 1.5


def run_probe(*args: str, timeout: float = 120):
    return subprocess.run([sys.executable, "-m", "proxydiag", "probe", "--timeout", str(TIMEOUT), *args],
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def lab():
    with running_lab() as started:
        yield started


def probe_json(*args: str) -> dict:
    result = run_probe("--format", "json", "--fail-on", "never", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def by_target(document: dict) -> dict[str, dict]:
    return {target["target"]: target for target in document["targets"]}


def codes(document: dict, target: str) -> set[str]:
    return {finding["code"] for finding in document["findings"] if finding["target"] == target}


def outcomes(target: dict) -> dict[str, str]:
    return {step["step"]: step["outcome"] for step in target["steps"]}


@pytest.fixture(scope="module")
def servers(lab) -> dict:
    """Postfix and Dovecot probed from the trusted source address, in one run."""
    return probe_json("--source", PROBE_TRUSTED, f"{SERVER}:25", f"{SERVER}:10025", f"{SERVER}:143",
                      f"{SERVER}:10143", f"{SERVER}:10993")


@pytest.mark.lab
def test_postfix_without_proxy_greets_and_answers_headers_as_commands(servers):
    target = by_target(servers)[f"{SERVER}:25"]
    verdict = target["verdict"]
    assert verdict["greets_without_header"] and verdict["expects_header"] is False and verdict["trusted"] is False
    assert verdict["software"] == "Postfix" and verdict["starttls_offered"] is True
    assert set(verdict["headers_answered_as_commands"]) == {"v1", "v2", "v2-ssl", "v2-local"}
    v2 = next(step for step in target["steps"] if step["step"] == "v2")
    assert v2["replies_to_header"][0].startswith("500") and v2["replies_to_header"][-1].startswith("221")
    assert verdict["starttls"]["ok"] and verdict["starttls"]["subject"] == "CN=mail.example.test"
    assert codes(servers, f"{SERVER}:25") == {"PD106"}  # a public port: a chain's header would be read as commands


@pytest.mark.lab
def test_postfix_with_upstream_proxy_protocol_waits_for_a_header(servers):
    target = by_target(servers)[f"{SERVER}:10025"]
    verdict = target["verdict"]
    assert outcomes(target)["none"] in ("silent", "cut", "refused")
    assert verdict["expects_header"] is True and verdict["trusted"] is True
    assert verdict["headers_accepted"] == ["v1", "v2", "v2-ssl", "v2-local"]
    assert verdict["ssl_tlv_changes_offer"]["changed"] is False  # Postfix ignores the TLV
    assert "PD301" in codes(servers, f"{SERVER}:10025") and "PD102" not in codes(servers, f"{SERVER}:10025")


@pytest.mark.lab
def test_dovecot_without_proxy_is_pd102_on_a_server_port(servers):
    # 143 here is Dovecot's plain listener: a public port, so the header answered is PD106 there.
    target = by_target(servers)[f"{SERVER}:143"]
    assert target["verdict"]["greets_without_header"] and target["verdict"]["software"] == "Dovecot"
    assert "v2" in target["verdict"]["headers_answered_as_commands"]


@pytest.mark.lab
def test_dovecot_haproxy_listener_trusts_the_probing_host(servers):
    target = by_target(servers)[f"{SERVER}:10143"]
    verdict = target["verdict"]
    assert outcomes(target)["none"] == "cut"  # Dovecot resets on bytes that are no header
    assert verdict["expects_header"] is True and verdict["trusted"] is True
    assert verdict["ssl_tlv_changes_offer"]["changed"] is True  # PLAIN offered once the TLV says TLS
    assert "PLAIN" in verdict["ssl_tlv_changes_offer"]["with_tlv"]["auth"]
    assert not codes(servers, f"{SERVER}:10143") & {"PD102", "PD109", "PD110", "PD401"}


@pytest.mark.lab
def test_dovecot_haproxy_listener_cuts_an_untrusted_host(lab):
    document = probe_json("--source", PROBE_UNTRUSTED, f"{SERVER}:10143")
    (target,) = document["targets"]
    assert set(outcomes(target).values()) == {"cut"}
    assert target["verdict"]["trusted"] is False and target["verdict"]["expects_header"] is None
    assert codes(document, f"{SERVER}:10143") == {"PD401"}
    assert all(step["local"].startswith(f"{PROBE_UNTRUSTED}:") for step in target["steps"])


@pytest.mark.lab
def test_implicit_tls_dovecot_port(servers):
    target = by_target(servers)[f"{SERVER}:10993"]
    verdict = target["verdict"]
    assert verdict["tls"]["ok"] and verdict["tls"]["subject"] == "CN=mail.example.test" and verdict["tls"]["not_after"]
    assert verdict["greets_without_header"] and verdict["protocol"] == "imap"
    assert set(outcomes(target).values()) == {"greets", "tls-failed"}  # a header breaks the handshake
    assert "PD102" in codes(servers, f"{SERVER}:10993")


@pytest.fixture(scope="module")
def fronts(lab) -> dict:
    return probe_json("--source", PROBE_TRUSTED, f"{HAPROXY}:25", f"{HAPROXY}:587", f"{HAPROXY}:143",
                      f"{NGINX}:25", f"{NGINX}:587", f"{STUNNEL}:465", f"{HAPROXY}:2525")


@pytest.mark.lab
@pytest.mark.parametrize("front", [f"{HAPROXY}:25", f"{HAPROXY}:587", f"{HAPROXY}:143", f"{NGINX}:25"])
def test_front_ports_that_send_a_header_or_none_greet_at_once(fronts, front):
    target = by_target(fronts)[front]
    assert target["verdict"]["greets_without_header"] and target["verdict"]["time_to_greeting"] < TIMEOUT
    assert target["verdict"]["headers_answered_as_commands"]  # behind the proxy's own header, ours is commands
    assert codes(fronts, front) == {"PD106"}


@pytest.mark.lab
def test_stunnel_front_terminates_tls_and_greets(fronts):
    target = by_target(fronts)[f"{STUNNEL}:465"]
    verdict = target["verdict"]
    assert verdict["tls"]["ok"] and verdict["greets_without_header"] and verdict["software"] == "Postfix"
    assert verdict["starttls_offered"] is True  # Postfix behind stunnel's v1 header cannot know the client used TLS


@pytest.mark.lab
def test_nginx_listen_proxy_protocol_demands_a_header_from_clients(fronts):
    target = by_target(fronts)[f"{NGINX}:587"]
    assert outcomes(target)["none"] == "cut" and target["verdict"]["expects_header"] is True
    assert "PD109" in codes(fronts, f"{NGINX}:587")


@pytest.mark.lab
def test_haproxy_inspect_delay_waits_for_the_client(fronts):
    target = by_target(fronts)[f"{HAPROXY}:2525"]
    assert outcomes(target)["none"] == "greets-after-client-spoke"
    (finding,) = [f for f in fronts["findings"] if f["target"] == f"{HAPROXY}:2525" and f["code"] == "PD110"]
    assert finding["severity"] == "error" and finding["evidence"]["waited_silently_s"] >= TIMEOUT
    assert "tcp-request" in finding["fix"]


@pytest.mark.lab
def test_rich_and_markdown_views(lab):
    rich = run_probe("--source", PROBE_TRUSTED, f"{HAPROXY}:2525")
    assert rich.returncode == 1 and "PD110 proxy-waits-for-client" in rich.stdout and "\x1b" not in rich.stdout
    assert "at most 5 connections" in rich.stderr
    markdown = run_probe("--format", "markdown", "--source", PROBE_TRUSTED, f"{SERVER}:10025")
    assert markdown.returncode == 0 and markdown.stdout.startswith("# proxydiag probe report")
    assert "### WARNING PD301 tls-flag-lost" in markdown.stdout and "PROXY TCP4 192.0.2.1 192.0.2.10 40000 10025" in markdown.stdout


@pytest.mark.lab
def test_written_capture_is_read_by_analyze(lab, tmp_path):
    written = tmp_path / "probe.pcap"
    result = run_probe("--source", PROBE_TRUSTED, "-w", str(written), "--fail-on", "never", f"{SERVER}:10025")
    assert result.returncode == 0, result.stderr
    analysis = subprocess.run([sys.executable, "-m", "proxydiag", "analyze", str(written), "-F", "json", "--fail-on",
                               "never"], capture_output=True, text=True)
    document = json.loads(analysis.stdout)
    headers = [conn["proxy_header"] for conn in document["connections"]]
    assert len(headers) == 5 and headers[0] is None
    assert [h["version"] for h in headers[1:]] == [1, 2, 2, 2] and headers[4]["command"] == "LOCAL"
    assert headers[3]["ssl"]["client_ssl"] and headers[1]["src_addr"] == "192.0.2.1"
    assert all(conn["greeting"].startswith("220 mail.example.test") for conn in document["connections"][1:])


# --- bad input ---------------------------------------------------------------------------


def assert_one_line_exit_2(result, words: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    errors = [line for line in result.stderr.splitlines() if not line.startswith("proxydiag: probing ")]
    assert len(errors) == 1 and words in errors[0] and "Traceback" not in result.stderr


def test_closed_port():
    assert_one_line_exit_2(run_probe("--source", PROBE_TRUSTED, f"{CLOSED}:25"), "connection refused")


def test_unresolvable_host_name():
    assert_one_line_exit_2(run_probe("no-such-host.invalid:25"), "cannot resolve 'no-such-host.invalid'")


def test_unreachable_address_within_the_timeout():
    started = time.monotonic()
    result = run_probe("192.0.2.1:25")  # TEST-NET-1: routed nowhere, the connect times out (or is unreachable)
    assert time.monotonic() - started < 4 * TIMEOUT + 5
    assert_one_line_exit_2(result, "192.0.2.1:25")


def test_a_listener_that_never_answers():
    silent = socket.socket()
    silent.bind(("127.40.0.31", 0))
    silent.listen(16)
    port = silent.getsockname()[1]
    try:
        started = time.monotonic()
        result = run_probe("--source", PROBE_TRUSTED, f"127.40.0.31:{port}")
        assert time.monotonic() - started < 5 * TIMEOUT + 5  # stops after two silent connections
        assert_one_line_exit_2(result, "never answered")
    finally:
        silent.close()


@pytest.mark.parametrize("text", ["mail.example.com", "[::1]25", "::1:25", "host:0", "host:70000", "host:x", ":25", "[nope]:25"])
def test_bad_targets_are_one_line(text):
    assert_one_line_exit_2(run_probe(text), text.strip())


# --- the target parser --------------------------------------------------------------------


@given(st.ip_addresses(), st.integers(1, 65535))
def test_targets_round_trip(address, port):
    target = Target(str(address), port)
    assert parse_target(str(target)) == target


@given(st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?){0,3}", fullmatch=True),
       st.integers(1, 65535))
def test_host_names_parse(host, port):
    assert parse_target(f"{host}:{port}") == Target(host, port)


@given(st.text(max_size=40))
def test_any_text_parses_or_says_why(text):
    try:
        target = parse_target(text)
    except TargetError as error:
        assert str(error)
    else:
        assert 0 < target.port < 65536 and target.host


@pytest.mark.parametrize(("port", "role", "judged"), [
    (25, None, "front"), (10025, None, "server"), (993, None, "front"), (4190, None, "server"),
    (25, "server", "server"), (10025, "front", "front"),
])
def test_role_from_the_port_unless_the_user_says(port, role, judged):
    """`--role`: a Stalwart listening on 25 itself (no proxy) is a server, whatever its port."""
    from proxydiag.probe import TargetProbe

    assert TargetProbe(Target("192.0.2.25", port), role=role).judged_as == judged


def test_a_bad_role_is_one_line():
    result = subprocess.run([sys.executable, "-m", "proxydiag", "probe", "127.40.0.99:25", "--role", "middle"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
