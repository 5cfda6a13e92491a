"""`check` on configurations in the shapes real deployments write, which the project does not
ship (issue 27, "Done when": a configuration mistake that a capture of it gets right is right
in `check` too). Each fixture is written here in the shape found; the docstring says where."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from proxydiag.configs import fixes
from proxydiag.configs.stalwart import load as load_stalwart
from proxydiag.pipeline.check import check_configurations
from tests.test_configs import haproxy_accepts

STALWART_TRUSTS_NOBODY = """\
[server.listener."smtp"]
bind = ["[::]:25"]
protocol = "smtp"
"""
STALWART_TRUSTS_THE_PROXY = '[server]\nproxy.trusted-networks = ["10.0.0.0/8"]\n\n' + STALWART_TRUSTS_NOBODY


def haproxy_smtp(tmp_path: Path, server_line: str) -> Path:
    """Haraka's docs/HAProxy.md `listen smtp` section (smtpchk, check-send-proxy), with its
    address on a `bind` line as HAProxy 2.x requires."""
    path = tmp_path / "haproxy.cfg"
    path.write_text(textwrap.dedent(f"""\
        defaults
            mode tcp
            timeout connect 3s
            timeout client 30s
            timeout server 30s
        listen smtp
            bind :25
            option tcplog
            option smtpchk
            balance roundrobin
            {server_line}
        """))
    return path


def checked(tmp_path: Path, proxy: Path, stalwart_text: str):
    stalwart = tmp_path / "config.toml"
    stalwart.write_text(stalwart_text)
    return check_configurations([str(proxy)], load_stalwart(str(stalwart)))


def fixed(proxy: Path, judgement) -> str:
    return fixes.apply(proxy.read_text(), judgement.edits, str(proxy))


def test_health_checks_sending_a_header_to_a_listener_that_trusts_no_proxy_are_pd102(tmp_path):
    """`check-send-proxy` without `send-proxy`: HAProxy 2.6.12 sends its checks a v1 header
    (`PROXY TCP4 ...` seen on loopback), and a Stalwart listener that trusts no proxy reads it
    as a command, as a capture of those checks shows (PD102). The fix drops the option, and
    check then finds nothing in the result."""
    proxy = haproxy_smtp(tmp_path, "server smtp1 10.0.0.5:25 check-send-proxy check inter 10s")
    result = checked(tmp_path, proxy, STALWART_TRUSTS_NOBODY)
    (judgement,) = result.judgements
    assert judgement.code == "PD102" and "sends a v1 PROXY header" in judgement.message, judgement.message
    assert "500 5.5.1" in judgement.message, judgement.message
    assert judgement.evidence["health_check"].startswith(f"{proxy}:11:"), judgement.evidence
    proxy.write_text(fixed(proxy, judgement))
    assert "check-send-proxy" not in proxy.read_text()
    assert checked(tmp_path, proxy, STALWART_TRUSTS_NOBODY).judgements == []


def test_the_fix_of_an_unexpected_header_stops_the_checks_sending_one_too(tmp_path):
    """`send-proxy` with `check-send-proxy` (Haraka's example): removing only `send-proxy`
    would leave the checks sending headers the listener does not take."""
    proxy = haproxy_smtp(tmp_path, "server smtp1 10.0.0.5:25 check-send-proxy check inter 10s send-proxy")
    result = checked(tmp_path, proxy, STALWART_TRUSTS_NOBODY)
    assert [judgement.code for judgement in result.judgements] == ["PD102"], result.judgements
    proxy.write_text(fixed(proxy, result.judgements[0]))
    assert "send-proxy" not in proxy.read_text(), proxy.read_text()
    assert checked(tmp_path, proxy, STALWART_TRUSTS_NOBODY).judgements == []


@pytest.mark.lab
@pytest.mark.parametrize("server_line", ["server smtp1 10.0.0.5:25 check-send-proxy check inter 10s",
                                         "server smtp1 10.0.0.5:25 check-send-proxy check inter 10s send-proxy"])
def test_the_fixes_of_headers_to_checks_pass_haproxy(tmp_path, server_line):
    proxy = haproxy_smtp(tmp_path, server_line)
    haproxy_accepts(proxy)
    (judgement,) = checked(tmp_path, proxy, STALWART_TRUSTS_NOBODY).judgements
    proxy.write_text(fixed(proxy, judgement))
    haproxy_accepts(proxy)


def test_health_checks_with_a_header_to_a_listener_that_trusts_the_proxy_are_fine(tmp_path):
    proxy = haproxy_smtp(tmp_path, "server smtp1 10.0.0.5:25 check-send-proxy check inter 10s send-proxy")
    assert checked(tmp_path, proxy, STALWART_TRUSTS_THE_PROXY).judgements == []


def test_files_named_for_another_kind_are_read_by_their_content(tmp_path):
    """A HAProxy file named like YAML and an nginx file named .txt: the kind comes from the
    content, whatever the name."""
    source = haproxy_smtp(tmp_path, "server smtp1 10.0.0.5:25 send-proxy")
    haproxy = tmp_path / "mail.yml"
    haproxy.write_text(source.read_text())
    nginx = tmp_path / "proxy.txt"
    nginx.write_text("stream {\n    server { listen 993; proxy_pass 10.0.0.5:993; proxy_protocol on; }\n}\n")
    result = check_configurations([str(haproxy), str(nginx)])
    assert not result.errors, [str(error) for error in result.errors]
    assert [(config.kind, config.path) for config in result.configs] == [("haproxy", str(haproxy)), ("nginx", str(nginx))]


ENVOY_UPSTREAM_PROXY_PROTOCOL = """\
static_resources:
  listeners:
  - name: smtp
    address:
      socket_address: { address: 0.0.0.0, port_value: 25 }
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: smtp
          cluster: stalwart_smtp
  clusters:
  - name: stalwart_smtp
    type: STRICT_DNS
    load_assignment:
      cluster_name: stalwart_smtp
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: { address: 10.0.0.5, port_value: 25 }
    transport_socket:
      name: envoy.transport_sockets.upstream_proxy_protocol
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.proxy_protocol.v3.ProxyProtocolUpstreamTransport
        config: { version: V2 }
        transport_socket:
          name: envoy.transport_sockets.raw_buffer
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer
"""


def test_a_fix_with_no_edit_of_the_users_lines_starts_with_the_pages_fix_not_with_its_alternative(tmp_path):
    """Envoy's upstream PROXY protocol transport socket (Envoy's docs, ProxyProtocolUpstreamTransport
    wrapping raw_buffer) to a listener that trusts no proxy: no line of it is edited, so the fix
    is the page's for Envoy, then the other way ("Or, ... trusted networks"), never that alone."""
    proxy = tmp_path / "envoy.yaml"
    proxy.write_text(ENVOY_UPSTREAM_PROXY_PROTOCOL)
    result = checked(tmp_path, proxy, STALWART_TRUSTS_NOBODY)
    (finding,) = result.findings
    assert finding.code == "PD102" and finding.fix is not None, finding
    assert finding.fix.startswith("Envoy:") and "upstream_proxy_protocol" in finding.fix, finding.fix
    assert "Or, if this proxy should pass client addresses" in finding.fix and "HAProxy" not in finding.fix, finding.fix


NGINX_MAIL_WITH_HEADER = """\
events {}
mail {
    server_name mail.example.org;
    auth_http 127.0.0.1:9000/auth;
    server {
        listen 993 ssl;
        protocol imap;
        proxy_protocol on;
    }
    server {
        listen 143;
        protocol imap;
    }
}
"""


def test_a_mail_block_sending_a_header_to_a_back_end_auth_http_names_is_said_not_judged(tmp_path):
    """nginx's mail proxy (ngx_mail_proxy_module `proxy_protocol on;`, 1.19.8+, in the
    shape of the nginx mail proxies found with auth_http): the back end is named at run time,
    so the header is not judged; the report says so instead of "no problem" for it."""
    proxy = tmp_path / "nginx.conf"
    proxy.write_text(NGINX_MAIL_WITH_HEADER)
    result = checked(tmp_path, proxy, STALWART_TRUSTS_NOBODY)
    (config,) = result.configs
    assert [(str(problem.origin), "not judged" in problem.message) for problem in config.problems] == [
        (f"{proxy}:8", True)], config.problems
    assert result.judgements == []


HAPROXY_PORTLESS_CHECKED = """\
defaults
    mode tcp
    timeout connect 5s
    timeout client 1m
    timeout server 1m
    default-server send-proxy-v2 check inter 30s

frontend ft_smtp
    bind :25
    bind :587
    default_backend bk_smtp

backend bk_smtp
    server mail 10.0.0.5{options}
"""


def test_a_checked_server_without_a_port_is_said_refused_by_haproxy(tmp_path):
    """A server written without a port (the client's destination port is kept: one backend
    for 25 and 587) with `check` from default-server: HAProxy refuses to start. Said once for
    the line, not once per port; with `check port 25` or an SRV name nothing is said."""
    proxy = tmp_path / "haproxy.cfg"
    proxy.write_text(HAPROXY_PORTLESS_CHECKED.format(options=""))
    (config,) = check_configurations([str(proxy)]).configs
    assert [(str(problem.origin), "refuses `check`" in problem.message) for problem in config.problems] == [
        (f"{proxy}:14", True)], config.problems
    for options in (" port 25", " no-check"):
        proxy.write_text(HAPROXY_PORTLESS_CHECKED.format(options=options))
        assert check_configurations([str(proxy)]).configs[0].problems == (), options


@pytest.mark.lab
def test_haproxy_refuses_a_checked_server_without_a_port(tmp_path):
    import subprocess

    from tests.test_configs import need

    proxy = tmp_path / "haproxy.cfg"
    proxy.write_text(HAPROXY_PORTLESS_CHECKED.format(options=""))
    run = subprocess.run([need("haproxy"), "-c", "-f", str(proxy)], capture_output=True, text=True)
    assert run.returncode != 0 and "neither service port nor check port" in run.stderr + run.stdout
    proxy.write_text(HAPROXY_PORTLESS_CHECKED.format(options=" port 25"))
    haproxy_accepts(proxy)
