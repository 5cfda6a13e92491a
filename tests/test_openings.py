"""What each side said first, on real captures of Postfix and Dovecot behind HAProxy and
nginx: protocol, greeting, software, capabilities, STARTTLS, AUTH (masked), TLS, who
spoke first and who closed."""

from pathlib import Path

import pytest

from proxydiag.pipeline.analysis import Settings, diagnose

CAPTURES = Path(__file__).resolve().parent.parent / "captures"


def connections(name: str):
    return diagnose([str(CAPTURES / name)], Settings()).connections


def back_legs(name: str):
    return [conn for conn in connections(name) if conn.header is not None]


def test_smtp_through_haproxy_v2_plain_starttls_and_auth():
    plain, starttls, auth = back_legs("haproxy-v2-smtp.pcap")
    for conn in (plain, starttls, auth):
        assert conn.protocol == "smtp" and conn.first_speaker == "server"
        assert conn.greeting == "220 mail.example.test ESMTP Postfix"
        assert conn.opening.software["name"] == "Postfix" and conn.opening.software["certain"]
        assert "STARTTLS" in conn.opening.capabilities and conn.opening.hello_command == "EHLO"
        assert conn.timing_greeting_after is not None and 0 <= conn.timing_greeting_after < 1
    assert plain.opening.commands == ["EHLO", "MAIL", "RCPT", "DATA", "QUIT"] and not plain.opening.upgraded
    assert starttls.opening.starttls_requested and starttls.opening.upgraded
    assert starttls.opening.starttls_reply.startswith("220")
    assert starttls.opening.tls.server_hello.version == "TLS 1.3", "the handshake after STARTTLS is read too"
    assert auth.opening.auth_method == "PLAIN" and auth.opening.auth_reply.startswith("235")
    assert "PLAIN" in auth.opening.auth_mechanisms


def test_implicit_tls_front_leg_and_its_plaintext_back_leg():
    front, back = connections("haproxy-v2ssl-smtps.pcap")
    assert front.protocol == "tls" and front.tls_client_hello and front.opening.tls_from_first_byte
    assert "TLS 1.3" in front.opening.tls.client_hello.supported_versions
    assert front.opening.tls.server_hello.version == "TLS 1.3"
    assert back.protocol == "smtp" and back.header.ssl.client_ssl and back.header.ssl.version == "TLSv1.3"
    assert back.opening.auth_method == "PLAIN"


def test_imap_and_pop3_through_haproxy_to_dovecot():
    imap, imaps, pop3 = back_legs("haproxy-v2-imap.pcap")
    for conn in (imap, imaps):
        assert conn.protocol == "imap" and conn.opening.greeting_code == "OK"
        assert conn.opening.software["name"] == "Dovecot"
        assert conn.opening.starttls_offered and "AUTH=PLAIN" in conn.opening.capabilities
        assert conn.opening.auth_method == "PLAIN" and "OK" in conn.opening.auth_reply
    assert pop3.protocol == "pop3" and pop3.greeting.startswith("+OK Dovecot")
    assert pop3.opening.auth_method == "PLAIN"


def test_nginx_v1_to_postfix_and_dovecot():
    smtp, imap = back_legs("nginx-v1.pcap")
    assert (smtp.header.version, smtp.protocol, imap.header.version, imap.protocol) == (1, "smtp", 1, "imap")
    assert imap.opening.software["name"] == "Dovecot"


def test_header_answered_as_commands_by_a_listener_without_proxy_support():
    (conn,) = back_legs("header-to-plain-listener.pcap")
    assert conn.first_speaker == "server" and conn.greeting.startswith("220")
    assert conn.replies_to_header and all(reply.startswith("500 5.5.2") for reply in conn.replies_to_header)
    assert conn.to_dict()["header_answered_as_command"] is True


def test_silent_listener_and_who_closed():
    back = [conn for conn in connections("no-header-to-proxy-listener.pcap") if conn.tcp.dst_port == 10025][0]
    assert back.header is None and back.first_speaker == "client" and back.client_first == "QUIT"
    assert back.greeting.startswith("421") and back.opening.greeting_refused is True
    assert back.closed_by == "server" and back.close_kind == "rst"


@pytest.mark.parametrize("name", ["haproxy-v2-smtp.pcap", "haproxy-v2-imap.pcap", "nginx-v1.pcap"])
def test_every_connection_says_who_closed_and_when(name):
    for conn in connections(name):
        assert conn.closed_by in ("client", "server") and conn.close_kind in ("fin", "rst")
        assert conn.close_ts >= conn.start_ts
