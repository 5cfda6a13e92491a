"""nginx stream `proxy_pass $variable` followed through `map` (and `upstream`) to real
routes: every value of the map is a server the listener may reach, chosen for the
connections the key names (by SNI for `$ssl_preread_server_name`); the findings judge the
values that are Stalwart's listeners and leave the other service on the port alone, and
the fixes printed for them pass `nginx -t`."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from proxydiag.configs.model import ProxyConfig
from proxydiag.pipeline.check import check_configurations
from tests.stalwart_configs import stalwart_toml
from tests.test_configs import codes, fixed, nginx_accepts, nginx_conf, pem, refixed_check, stalwart, write  # noqa: F401
from tests.test_configs_real import REAL, line_of

SNI_MAP = REAL / "nginx-sni-map.conf"
# Stalwart behind the proxy on 10000 + the public port, trusting the proxy's 127.0.0.1
TRUSTING = stalwart_toml("imaps", "imap", "submissions", "https", trusted=["127.0.0.1"])
# The same listeners with no trusted networks: a header is protocol data to them
TRUSTING_NOBODY = stalwart_toml("imaps", "imap", "submissions", "https")


def read(path: Path) -> ProxyConfig:
    result = check_configurations([str(path)])
    assert not result.errors, [str(error) for error in result.errors]
    return result.configs[0]


def routes_of(config: ProxyConfig) -> set[tuple[int, str, str | None]]:
    return {(route.front.port, route.endpoint, route.chosen_for) for route in config.routes if route.front}


def stream(tmp_path: Path, body: str, name: str = "nginx.conf") -> Path:
    path = write(tmp_path, name, nginx_conf(body))
    nginx_accepts(path)
    return path


# --- routes ------------------------------------------------------------------------------------


def test_sni_map_to_upstreams_is_followed_to_their_servers():
    config = read(SNI_MAP)
    assert config.problems == ()
    assert routes_of(config) == {
        (443, "127.0.0.1:10443", "SNI mail.example.com"),
        (443, "127.0.0.1:8443", "SNI other than the map's names (default)"),
        (993, "127.0.0.1:10993", None),
    }
    mail = next(route for route in config.routes if route.server_port == 10443)
    # the address is where the upstream's server line writes it; the map entry chose it; the
    # header and preread come from the server block, where proxy_pass is
    assert mail.origin.line == line_of(SNI_MAP, "server 127.0.0.1:10443")
    assert mail.chosen_by is not None and mail.chosen_by.line == line_of(SNI_MAP, "mail.example.com   stalwart_https")
    assert mail.block_origin is not None and mail.block_origin.line == line_of(SNI_MAP, "proxy_pass $backend")
    assert mail.sends == "v1" and mail.waits_for_client and not mail.tls_to_server
    assert mail.sends_origin is not None and mail.sends_origin.line == line_of(SNI_MAP, "proxy_protocol on")


@pytest.mark.lab
def test_host_port_values_regex_keys_and_hostnames(tmp_path):
    path = stream(tmp_path, """
        stream {
            map $ssl_preread_server_name $backend {
                hostnames;
                volatile;
                ~^imap\\.            127.0.0.1:10993;
                .mail.example.com   127.0.0.2:10993;
                default             10.0.0.5:993;
            }
            server {
                listen 993;
                ssl_preread on;
                proxy_ssl on;
                proxy_pass $backend;
            }
        }
        """)
    config = read(path)
    assert config.problems == ()
    assert routes_of(config) == {
        (993, "127.0.0.1:10993", "SNI ~^imap\\."),
        (993, "127.0.0.2:10993", "SNI .mail.example.com"),
        (993, "10.0.0.5:993", "SNI other than the map's names (default)"),
    }
    regex = next(route for route in config.routes if route.server_address == "127.0.0.1")
    assert regex.origin.line == line_of(path, "127.0.0.1:10993") == regex.chosen_by.line
    assert all(route.tls_to_server for route in config.routes)


@pytest.mark.lab
def test_server_port_is_the_listen_port_in_values_and_in_proxy_pass(tmp_path):
    path = stream(tmp_path, """
        stream {
            map $ssl_preread_server_name $host_only {
                mail.example.com  127.0.0.1;
                default           10.0.0.5;
            }
            map $ssl_preread_server_name $with_port {
                mail.example.com  127.0.0.1:10$server_port;
                default           10.0.0.5:$server_port;
            }
            server {
                listen 993;
                listen 465;
                ssl_preread on;
                proxy_pass $host_only:10$server_port;
            }
            server {
                listen 995;
                ssl_preread on;
                proxy_pass $with_port;
            }
            server {
                listen 143;
                proxy_pass 127.0.0.1:10${server_port};
            }
        }
        """)
    config = read(path)
    assert config.problems == ()
    assert routes_of(config) == {
        (993, "127.0.0.1:10993", "SNI mail.example.com"), (993, "10.0.0.5:10993", "SNI other than the map's names (default)"),
        (465, "127.0.0.1:10465", "SNI mail.example.com"), (465, "10.0.0.5:10465", "SNI other than the map's names (default)"),
        (995, "127.0.0.1:10995", "SNI mail.example.com"), (995, "10.0.0.5:995", "SNI other than the map's names (default)"),
        (143, "127.0.0.1:10143", None),
    }


@pytest.mark.lab
def test_map_on_server_port_gives_each_listener_its_own_value(tmp_path):
    path = stream(tmp_path, """
        stream {
            map $server_port $backend {
                993      127.0.0.1:10993;
                143      127.0.0.1:10143;
                default  127.0.0.1:10465;
            }
            server {
                listen 993;
                listen 143;
                listen 465;
                proxy_bind 127.0.0.1;
                proxy_protocol on;
                proxy_pass $backend;
            }
        }
        """)
    config = read(path)
    assert {(port, endpoint) for port, endpoint, _ in routes_of(config)} == {
        (993, "127.0.0.1:10993"), (143, "127.0.0.1:10143"), (465, "127.0.0.1:10465")}
    # 993 passed through reaches only the implicit-TLS listener: no TLS to the plain one
    result = check_configurations([str(path)], stalwart(tmp_path, TRUSTING))
    assert "PD303" not in codes(result) and "PD304" not in codes(result), result.judgements


@pytest.mark.lab
def test_map_in_an_included_file_and_include_inside_a_map(tmp_path):
    (tmp_path / "stream.d").mkdir()
    (tmp_path / "names.d").mkdir()
    write(tmp_path / "names.d", "mail.conf", "mail.example.com stalwart;\n")
    write(tmp_path / "stream.d", "map.conf", textwrap.dedent("""\
        map $ssl_preread_server_name $backend {
            include names.d/*.conf;
            default 10.0.0.5:443;
        }
        upstream stalwart {
            server 127.0.0.1:10443;
        }
        """))
    path = stream(tmp_path, """
        stream {
            include stream.d/*.conf;
            server {
                listen 443;
                ssl_preread on;
                proxy_pass $backend;
            }
        }
        """)
    config = read(path)
    assert config.problems == ()
    assert routes_of(config) == {(443, "127.0.0.1:10443", "SNI mail.example.com"),
                                 (443, "10.0.0.5:443", "SNI other than the map's names (default)")}
    mail = next(route for route in config.routes if route.server_port == 10443)
    assert mail.chosen_by is not None and mail.chosen_by.path.endswith("names.d/mail.conf")
    assert mail.origin.path.endswith("stream.d/map.conf") and mail.origin.line == 6


@pytest.mark.lab
def test_what_cannot_be_followed_stays_a_problem(tmp_path):
    path = stream(tmp_path, """
        stream {
            map $ssl_preread_server_name $backend {
                "~^(?<name>[a-z]+)\\.example\\.com$"  $name:993;
                mail.example.com                     127.0.0.1:10993;
                web.example.com                      10.0.0.5;
            }
            server {
                listen 993;
                ssl_preread on;
                proxy_pass $backend;
            }
            server {
                listen 25;
                proxy_pass $remote_addr:10025;
            }
        }
        """)
    config = read(path)
    assert routes_of(config) == {(993, "127.0.0.1:10993", "SNI mail.example.com")}
    problems = {(problem.origin.line, problem.message) for problem in config.problems}
    assert problems == {
        (line_of(path, "$name:993"), "proxy_pass $name:993: $name is chosen at run time, not followed"),
        (line_of(path, "map $ssl_preread"), "proxy_pass $backend: $backend is empty for SNI other than the map's "
                                            "names (default) (the map has no default): nginx cannot connect those"),
        (line_of(path, "10.0.0.5;"), "proxy_pass $backend: '10.0.0.5' has no port and names no upstream: nginx "
                                     "refuses it at run time (no port in upstream)"),
        (line_of(path, "$remote_addr:10025"), "proxy_pass $remote_addr:10025: $remote_addr is chosen at run time, "
                                              "not followed"),
    }


# --- findings and fixes --------------------------------------------------------------------------


@pytest.mark.lab
def test_header_to_an_untrusting_stalwart_is_pd102_and_the_web_default_is_not_judged(tmp_path):
    config = stalwart(tmp_path, TRUSTING_NOBODY)
    path = tmp_path / "nginx.conf"
    path.write_text(SNI_MAP.read_text().replace("127.0.0.1:8443", "127.0.0.1:443"))  # the web server on a mail port
    nginx_accepts(path)
    result = check_configurations([str(path)], config)
    pd102 = [judgement for judgement in result.judgements if judgement.code == "PD102"]
    assert {judgement.evidence["proxy"] for judgement in pd102} == {
        f"{path}:{line_of(path, 'server 127.0.0.1:10443')}: server 127.0.0.1:10443;",
        f"{path}:{line_of(path, 'proxy_pass 127.0.0.1:10993')}: proxy_pass 127.0.0.1:10993;"}
    sni = next(judgement for judgement in pd102 if "10443" in judgement.evidence["proxy"])
    assert "(127.0.0.1:10443, SNI mail.example.com)" in sni.message
    assert sni.evidence["chosen"] == f"{path}:{line_of(path, 'mail.example.com')}: mail.example.com   stalwart_https;"
    assert sni.evidence["chosen_for"] == "SNI mail.example.com"
    assert "127.0.0.1:443 (SNI other than the map's names (default)) too" in sni.advice
    # nothing said about the web server the default reaches (no PD608 for its port 443)
    assert not any("127.0.0.1:443" in judgement.message or ":443;" in judgement.evidence.get("proxy", "")
                   for judgement in result.judgements), result.judgements
    new = fixed(path, result, "PD102")
    assert "proxy_protocol on;" not in new.read_text()
    nginx_accepts(new)
    assert "PD102" not in codes(refixed_check(path, new, config))


@pytest.mark.lab
def test_no_header_to_a_trusting_stalwart_is_pd101_fixed_in_the_server_block(tmp_path):
    config = stalwart(tmp_path, TRUSTING)
    path = stream(tmp_path, """
        stream {
            map $ssl_preread_server_name $backend {
                mail.example.com  stalwart;
                default           10.0.0.5:993;
            }
            upstream stalwart {
                server 127.0.0.1:10993;
            }
            server {
                listen 993;
                ssl_preread on;
                proxy_bind 127.0.0.1;
                proxy_pass $backend;
            }
        }
        """)
    result = check_configurations([str(path)], config)
    assert codes(result).count("PD101") == 1, result.judgements
    pd101 = next(judgement for judgement in result.judgements if judgement.code == "PD101")
    assert not pd101.inferred and "(127.0.0.1:10993, SNI mail.example.com)" in pd101.message
    assert pd101.evidence["proxy_pass"] == f"{path}:{line_of(path, 'proxy_pass $backend')}: proxy_pass $backend;"
    assert "10.0.0.5:993 (SNI other than the map's names (default)) get it too" in pd101.advice
    assert "PD608" not in codes(result)
    new = fixed(path, result, "PD101")
    nginx_accepts(new)
    assert "PD101" not in codes(refixed_check(path, new, config))


@pytest.mark.lab
def test_tls_terminated_and_mapped_by_sni_to_an_implicit_tls_listener_is_pd304(tmp_path, pem):  # noqa: F811
    config = stalwart(tmp_path, TRUSTING)
    path = stream(tmp_path, f"""
        stream {{
            map $ssl_server_name $backend {{
                mail.example.com  127.0.0.1:10993;
                default           10.0.0.5:8080;
            }}
            server {{
                listen 993 ssl;
                ssl_certificate {pem};
                ssl_certificate_key {pem};
                proxy_bind 127.0.0.1;
                proxy_protocol on;
                proxy_pass $backend;
            }}
        }}
        """)
    result = check_configurations([str(path)], config)
    assert codes(result).count("PD304") == 1, result.judgements
    pd304 = next(judgement for judgement in result.judgements if judgement.code == "PD304")
    assert "(127.0.0.1:10993, SNI mail.example.com)" in pd304.message
    # the port is rewritten on the map entry, where it is written; the web default is not judged
    assert [edit.origin.line for edit in pd304.edits] == [line_of(path, "mail.example.com")]
    assert not any("8080" in judgement.message for judgement in result.judgements)
    new = fixed(path, result, "PD304")
    assert "mail.example.com  127.0.0.1:10143;" in new.read_text()
    nginx_accepts(new)
    assert "PD304" not in codes(refixed_check(path, new, config))

