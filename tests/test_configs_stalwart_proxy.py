"""`proxydiag check` on Stalwart's own proxy (stalwartlabs/proxy v1.0.0): its TOML read as
src/config/mod.rs reads it (destinations send a v2 header unless told otherwise; listeners
terminate the client's TLS), judged against Stalwart's listeners like the other proxies."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from proxydiag import configs
from proxydiag.configs import fixes, stalwart_proxy
from proxydiag.configs.model import ConfigReadError
from tests.test_configs_more import SERVER, TRUSTING, UNTRUSTING, check, judgement

PROXY_TOML = f"""
[routing]
default_destination = "stalwart"

[destination.stalwart]
host = "{SERVER}"
source_ips = ["2001:db8::7", "127.31.0.7"]
{{destination_extra}}
[destination.stalwart.protocol.imap]
port = 10143
tls = "{{backend_tls}}"

[listener.imaps]
protocol = "imap"
bind = ["0.0.0.0:993"]
tls = "implicit"
"""


def proxy_toml(backend_tls: str = "plain", destination_extra: str = "") -> str:
    return PROXY_TOML.format(backend_tls=backend_tls, destination_extra=destination_extra)


def test_recognised_and_read_as_its_source_reads_it():
    text = proxy_toml()
    assert configs.detect_kind(text) == "stalwart-proxy"
    (route,) = stalwart_proxy.parse(text, "proxy.toml").routes
    assert (route.sends, route.server_port, route.source_address) == ("v2", 10143, "127.31.0.7")  # proxy_protocol: true by default
    assert route.front is not None and route.front.tls_terminated and not route.tls_to_server


def test_header_to_an_untrusting_listener_is_fixed_on_the_destination(tmp_path):
    result = check(tmp_path, {"proxy.toml": proxy_toml()}, UNTRUSTING)
    found = judgement(result, "PD102")
    fixed = fixes.apply((tmp_path / "proxy.toml").read_text(), found.edits, str(tmp_path / "proxy.toml"))
    assert tomllib.loads(fixed)["destination"]["stalwart"]["proxy_protocol"] is False
    assert stalwart_proxy.parse(fixed, "proxy.toml").routes[0].sends == "none"


def test_terminated_tls_to_a_plain_backend_loses_the_flag_and_starttls_keeps_it(tmp_path):
    found = judgement(check(tmp_path, {"proxy.toml": proxy_toml("plain")}, TRUSTING), "PD301")
    assert 'tls = \\"starttls\\"' in found.advice or 'tls = "starttls"' in found.advice
    codes = [j.code for j in check(tmp_path, {"proxy.toml": proxy_toml("starttls")}, TRUSTING).judgements]
    assert "PD301" not in codes and "PD303" not in codes


@pytest.mark.parametrize("extra, sends", [('forwarding = "xclient"', "none"), ("proxy_protocol = false", "none"),
                                           ('proxy_protocol = false\nforwarding = "proxy"', "v2")])
def test_forwarding_decides_over_proxy_protocol(extra, sends):
    (route,) = stalwart_proxy.parse(proxy_toml(destination_extra=extra), "proxy.toml").routes
    assert route.sends == sends


def test_a_listener_reads_headers_only_from_proxy_trusted():
    listener = '\nproxy_protocol = "required"\nproxy_trusted = ["10.0.0.0/8"]\n'
    fronts = stalwart_proxy.parse(proxy_toml() + listener, "proxy.toml").listeners
    assert fronts[0].accepts_header and fronts[0].trusted_sources == ("10.0.0.0/8",) and not fronts[0].header_optional
    untrusted = stalwart_proxy.parse(proxy_toml() + '\nproxy_protocol = "required"\n', "proxy.toml").listeners
    assert not untrusted[0].accepts_header
    with pytest.raises(ConfigReadError, match="off, optional or required"):
        stalwart_proxy.parse(proxy_toml() + '\nproxy_protocol = "yes"\n', "proxy.toml")


def test_the_upstream_sample_reads(tmp_path):
    """resources/config.sample.toml's shape: two destinations, implicit and STARTTLS backends."""
    sample = Path(__file__).parent / "configs_real" / "stalwart-proxy-sample.toml"
    config = stalwart_proxy.load(str(sample))
    assert {route.server_address for route in config.routes} == {"10.0.1.10", "10.0.1.20"}
    assert all(route.sends == "v2" for route in config.routes)


@pytest.mark.parametrize("text", [
    '[listener.x]\nprotocol = 1\nbind = "nope"\ntls = "plain"\n[destination.d]\nhost = 3\n',
    '[listener.x]\nprotocol = "imap"\nbind = ["0.0.0.0:99999"]\ntls = "plain"\n[destination.d]\n',
    '[routing]\ndefault_destination = ["a"]\n[destination.a]\nprotocol = 5\n[listener.l]\nprotocol = "imap"\n'
    'bind = []\ntls = "plain"\n',
    'listener = 5\ndestination = "x"\n',
    '[destination.a.protocol.imap]\nport = "143"\n[listener.l]\nprotocol = "imap"\nbind = ["[::]:143"]\ntls = "implicit"\n',
])
def test_hostile_tables_give_one_line_errors_or_nothing(text):
    try:
        config = stalwart_proxy.parse(text, "proxy.toml")
    except ConfigReadError as error:
        assert error.line is None or error.line >= 1
        return
    assert all(route.server_port is not None for route in config.routes)
