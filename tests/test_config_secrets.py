"""Secrets in configurations never reach a report (issue 28 item 1). A cited line is the
directive and its arguments: no comment, no value of a secret-bearing directive or key, and
a bounded window of a long line (a one-line JSON file is every key of the file on one line).
The fixes printed as edits of the user's lines follow the same rule. Every format, with and
without --anonymize."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxydiag.configs.citation import LIMIT, MASK, shown_line
from tests.stalwart_configs import stalwart_toml

ROOT = Path(__file__).resolve().parent.parent
SERVER = "127.31.0.30"
UNTRUSTING = stalwart_toml("smtp", "submissions", "imap", "imaps")
TRUSTING = stalwart_toml("smtp", "submissions", "imap", "imaps", trusted=["127.31.0.0/16"])

CADDY_TOKEN, CADDY_HASH, PRIVATE_KEY = "cf-api-TOKEN-9f8e7d", "$2a$14$Secret.Hash.Of.Alice", "MIIEvQIBADANBgkqhkiG9w0Secret"
NGINX_SECRET, BASIC, URL_PASSWORD = "Hunter2-in-a-comment", "YWxpY2U6czNjcmV0LXBhc3M=", "Url-Pass-In-Proxy-Pass"
HAPROXY_SECRET, LABEL_HASH = "haproxy-Stats-Pw-7", "$$apr1$$H6uskkkW$$IgXLP6ewTrSuBkTrqE8wj"
SECRETS = (CADDY_TOKEN, CADDY_HASH, PRIVATE_KEY, NGINX_SECRET, BASIC, URL_PASSWORD, HAPROXY_SECRET, LABEL_HASH.replace("$$", "$"),
           LABEL_HASH)


def caddy_autosave() -> str:
    """Caddy's autosave.json and admin API output: one line, the API token, a basic-auth
    hash and an inline private key beside the layer4 route the finding is about."""
    return json.dumps({
        "admin": {"listen": "localhost:2019"},
        "apps": {
            "tls": {"certificates": {"load_pem": [{"certificate": "-----BEGIN CERTIFICATE-----MIIB-----END CERTIFICATE-----",
                                                   "key": f"-----BEGIN PRIVATE KEY-----{PRIVATE_KEY}-----END PRIVATE KEY-----"}]},
                    "automation": {"policies": [{"issuers": [{"module": "acme", "challenges": {"dns": {"provider": {
                        "name": "cloudflare", "api_token": CADDY_TOKEN}}}}]}]}},
            "http": {"servers": {"web": {"listen": [":8080"], "routes": [{"handle": [{"handler": "authentication",
                     "providers": {"http_basic": {"accounts": [{"username": "alice", "password": CADDY_HASH}]}}}]}]}}},
            "layer4": {"servers": {"smtp": {"listen": [":25"], "routes": [{"handle": [{
                "handler": "proxy", "proxy_protocol": "v2", "upstreams": [{"dial": [f"{SERVER}:10025"]}]}]}]}}},
        },
    }, separators=(",", ":"))


NGINX = f"""\
stream {{
    server {{
        listen 25;
        proxy_pass {SERVER}:10025;   # password={NGINX_SECRET}
    }}
}}
http {{
    server {{
        listen 8081;
        location / {{
            proxy_set_header Authorization "Basic {BASIC}";
            proxy_pass http://alice:{URL_PASSWORD}@127.0.0.1:9000;
        }}
    }}
}}
"""
HAPROXY = f"""\
global
    maxconn 100
userlist admins
    user admin password $6${HAPROXY_SECRET}
defaults
    mode tcp
    timeout connect 3s
    timeout client 30s
    timeout server 30s
listen stats
    bind :8404
    mode http
    stats enable
    stats auth admin:{HAPROXY_SECRET}
listen smtp
    bind :25
    server stalwart {SERVER}:10025 send-proxy-v2 # stats auth admin:{HAPROXY_SECRET}
"""
COMPOSE = f"""\
services:
  traefik:
    image: traefik:v3.1
    command: ["--providers.docker=true", "--entrypoints.smtp.address=:25"]
  stalwart:
    image: stalwartlabs/stalwart:latest
    labels: {{traefik.enable: "true", traefik.tcp.routers.smtp.rule: "HostSNI(`*`)", traefik.tcp.routers.smtp.entrypoints: smtp, traefik.tcp.services.smtp.loadbalancer.server.port: "10025", traefik.tcp.services.smtp.loadbalancer.proxyprotocol.version: "2", traefik.http.middlewares.auth.basicauth.users: "alice:{LABEL_HASH}"}}
"""
CASES = {  # file name: (text, Stalwart configuration, a code the file must give)
    "autosave.json": (caddy_autosave(), UNTRUSTING, "PD102"),
    "nginx.conf": (NGINX, TRUSTING, "PD101"),
    "haproxy.cfg": (HAPROXY, UNTRUSTING, "PD102"),
    "compose.yml": (COMPOSE, UNTRUSTING, "PD102"),
}


def run_check(tmp_path: Path, name: str, *args: str) -> subprocess.CompletedProcess:
    text, stalwart, _ = CASES[name]
    (tmp_path / name).write_text(text)
    (tmp_path / "config.toml").write_text(stalwart)
    return subprocess.run([sys.executable, "-m", "proxydiag", "check", str(tmp_path / name), "--stalwart-config",
                           str(tmp_path / "config.toml"), "--fail-on", "never", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("format", ["json", "markdown", "rich", "html"])
@pytest.mark.parametrize("anonymize", [False, True], ids=["plain", "anonymized"])
def test_no_secret_of_a_configuration_reaches_a_report(tmp_path, name, format, anonymize):
    run = run_check(tmp_path, name, "--format", format, *(["--anonymize"] if anonymize else []))
    assert run.returncode == 0, run.stderr
    said = run.stdout + run.stderr
    assert CASES[name][2] in said, f"{name}: the finding the file holds is still reported"
    for secret in SECRETS:
        assert secret not in said, f"{name} {format}: {secret!r} shown"
    assert "#" not in "".join(line for line in said.splitlines() if "send-proxy-v2" in line), "a comment was cited"


def test_nginx_route_to_a_url_with_a_password_names_the_host_only(tmp_path):
    """`proxy_pass http://user:password@host`: the route's server is the host and port,
    never the user information before it (the tests/fuzz proxy_config target found it)."""
    from proxydiag.configs import nginx

    path = tmp_path / "nginx.conf"
    path.write_text(NGINX)
    routes = nginx.load(str(path)).to_dict()["routes"]
    assert [route["server"] for route in routes if route["front"] == "*:8081"] == ["127.0.0.1:9000"], routes
    assert URL_PASSWORD not in json.dumps(routes) and "alice" not in json.dumps(routes)


def test_stunnel_error_quotes_the_line_without_its_secret():
    """A line stunnel cannot read is quoted in the error as a citation: a JSON file given as
    stunnel's shows its key, never the password (the tests/fuzz proxy_config target found it)."""
    from proxydiag.configs import stunnel
    from proxydiag.configs.model import ConfigReadError

    with pytest.raises(ConfigReadError) as raised:
        stunnel.parse(f'[imaps]\naccept = 993\n{{"http_basic": {{"password": "{HAPROXY_SECRET}"}}}}\n', "stunnel.conf")
    assert "stunnel.conf:3:" in str(raised.value) and "expected option = value" in str(raised.value)
    assert '"password"' in str(raised.value) and HAPROXY_SECRET not in str(raised.value), raised.value


def test_a_cited_line_of_a_one_line_file_is_the_window_around_its_key(tmp_path):
    run = run_check(tmp_path, "autosave.json", "--format", "json")
    document = json.loads(run.stdout)
    cited = [value for finding in document["findings"] for value in finding["evidence"].values()
             if isinstance(value, str) and "autosave.json:1:" in value]
    assert cited, document["findings"]
    for citation in cited:
        shown = citation.split(": ", 1)[1]
        assert len(shown) <= LIMIT + 2 and "proxy_protocol" in shown or "dial" in shown, citation


def test_the_printed_fix_edits_the_line_without_its_comment_or_secret(tmp_path):
    run = run_check(tmp_path, "haproxy.cfg", "--format", "json")
    fixes = [finding["fix"] or "" for finding in json.loads(run.stdout)["findings"]]
    edit = next(fix for fix in fixes if "-    server stalwart" in fix)
    assert "send-proxy-v2" in edit and HAPROXY_SECRET not in edit and "#" not in edit.split("```diff", 1)[1]


@pytest.mark.parametrize(("line", "kept", "hidden"), [
    ('    proxy_set_header Authorization "Basic dXNlcjpwdw==";', "proxy_set_header Authorization", "dXNlcjpwdw=="),
    ("    user alice insecure-password Pl41n", "user alice", "Pl41n"),
    ('secret = "stalwart-admin"', "secret =", "stalwart-admin"),
    ('"api_token":"tok-123","name":"cloudflare"', '"name":"cloudflare"', "tok-123"),
    ("    - traefik.http.middlewares.a.basicauth.users=bob:$$apr1$$x$$y", "basicauth.users=", "bob:"),
    ('  private-key = "-----BEGIN PRIVATE KEY-----MIIEv"', "private-key", "MIIEv"),
    ("proxy_pass http://carol:pw9@10.0.0.5:8080/;", "proxy_pass http://", "pw9"),
    ("    server s1 10.0.0.5:10025 send-proxy   # was: password hunter2", "send-proxy", "hunter2"),
])
def test_shown_line_keeps_the_directive_and_hides_the_secret(line, kept, hidden):
    shown = shown_line(line)
    assert kept in shown and hidden not in shown and (MASK in shown or "#" not in shown), shown


def test_shown_line_keeps_quoted_hashes_and_ordinary_directives():
    assert shown_line('    ssl_ciphers "EECDH#AESGCM";') == '    ssl_ciphers "EECDH#AESGCM";'
    assert shown_line("    proxy_pass 127.0.0.1:10025;") == "    proxy_pass 127.0.0.1:10025;"
    assert shown_line("tls.passthrough: true") == "tls.passthrough: true"


@given(st.text(max_size=3000), st.text(max_size=40))
def test_shown_line_is_bounded_whatever_the_line(line, focus):
    shown = shown_line(line, focus)
    assert len(shown.strip()) <= LIMIT + 2
