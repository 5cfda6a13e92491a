"""`proxydiag check` on Traefik, Caddy, Envoy and Kubernetes configurations: each main
mistake the cross-check knows, found with both files' lines as evidence, from configs
shaped after each program's reference documentation (cited beside each); malformed files
as one line and exit 2; the readers never raise anything but ConfigReadError.

Traefik and Envoy are not installable here (references.md); Caddy 2.6 from Debian has no
layer4 plugin and no PROXY transport, so `caddy adapt` checks the plain site blocks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from proxydiag import configs
from proxydiag.configs import caddy, envoy, fixes, kubernetes, traefik
from proxydiag.configs.model import ConfigReadError, Origin, ProxyConfig, VersionFloor
from proxydiag.configs.stalwart import load as load_stalwart
from proxydiag.pipeline.check import check_configurations
from proxydiag.report.views import told_findings
from proxydiag.rules import crosscheck
from tests.daemons import need
from tests.stalwart_configs import stalwart_toml

ROOT = Path(__file__).resolve().parent.parent
SERVER = "127.31.0.30"
LISTENERS = stalwart_toml("smtp", "submissions", "imap", "imaps", "https")
TRUSTING = stalwart_toml("smtp", "submissions", "imap", "imaps", "https", trusted=["127.31.0.0/16"])
UNTRUSTING = LISTENERS  # no trusted networks: every header is data


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def check(tmp_path: Path, files: dict[str, str], stalwart_text: str = TRUSTING):
    paths = [str(write(tmp_path, name, text)) for name, text in files.items()]
    stalwart = load_stalwart(str(write(tmp_path, "config.toml", stalwart_text)))
    result = check_configurations(paths, stalwart)
    assert not result.errors, [str(error) for error in result.errors]
    return result


def judgement(result, code: str):
    found = [j for j in result.judgements if j.code == code]
    assert found, f"{code} not found in {[j.code for j in result.judgements]}"
    return found[0]


def line_of(path: Path, needle: str) -> int:
    lines = path.read_text().splitlines()
    return next(number for number, line in enumerate(lines, start=1) if needle in line)


def cites(evidence: str, path: Path, needle: str) -> bool:
    """The evidence cites `path:LINE:` of the line holding `needle`, with that line's text."""
    return evidence.startswith(f"{path}:{line_of(path, needle)}: ") and needle in evidence


def applied(path: Path, result, code: str) -> str:
    edits = [edit for j in result.judgements if j.code == code for edit in j.edits]
    assert edits, f"{code}: no edit"
    return fixes.apply(path.read_text(), edits, str(path))


# --- Traefik ---------------------------------------------------------------------------------
# Install configuration: doc.traefik.io/traefik/reference/install-configuration/entrypoints/
# Routing: doc.traefik.io/traefik/reference/routing-configuration/tcp/{router,service,serverstransport}/

TRAEFIK_STATIC = """
entryPoints:
  smtp:
    address: ":25"
  submissions:
    address: ":465"
  imap:
    address: ":143"
  imaps:
    address: ":993"
"""


def traefik_dynamic(router: str, service: str) -> str:
    return "tcp:\n  routers:\n" + textwrap.indent(textwrap.dedent(router), "    ") + \
        "  services:\n" + textwrap.indent(textwrap.dedent(service), "    ")


def test_traefik_header_to_untrusting_listener(tmp_path):
    dynamic = traefik_dynamic("""\
        smtp:
          entryPoints: [smtp]
          rule: "HostSNI(`*`)"
          service: smtp
        """, f"""\
        smtp:
          loadBalancer:
            proxyProtocol:
              version: 2
            servers:
              - address: "{SERVER}:10025"
        """)
    result = check(tmp_path, {"traefik.yml": TRAEFIK_STATIC, "dynamic.yml": dynamic}, UNTRUSTING)
    found = judgement(result, "PD102")
    assert cites(found.evidence["proxy"], tmp_path / "dynamic.yml", f"{SERVER}:10025")
    assert cites(found.evidence["header"], tmp_path / "dynamic.yml", "version: 2")
    assert "config.toml:" in found.evidence["stalwart"]
    assert "PD110" not in [j.code for j in result.judgements]  # HostSNI(`*`) without TLS: forwarded at once


def test_page_fix_of_a_finding_without_edits_is_the_configured_proxys_alone(tmp_path):
    """Envoy's PD101 edits nothing of the user's bootstrap: its fix is the page's, and only
    Envoy's section of it (and Stalwart's), not the HAProxy and nginx sections a report
    prints when it cannot tell the proxy."""
    result = check(tmp_path, {"envoy.yaml": envoy_bootstrap(143, 10143)}, TRUSTING)
    missing = judgement(result, "PD101")
    assert not missing.edits and missing.proxy == "Envoy"
    (finding,) = told_findings([crosscheck.to_finding(missing)])
    assert finding.fix.startswith("Envoy:") and "HAProxy:" not in finding.fix and "nginx:" not in finding.fix
    assert "ProxyProtocolUpstreamTransport" in finding.fix  # the page's Envoy fix


def test_page_section_carries_the_release_the_file_shows():
    """A HAProxy file using `unique-id` (2.2) gets the page's fix for 2.2 and later first."""
    floor = VersionFloor("2.2", Origin("haproxy.cfg", 9, "    bind :25 accept-proxy"))
    assert crosscheck.page_section(ProxyConfig("haproxy", "haproxy.cfg", version_floor=floor)) == "HAProxy 2.2+"
    assert crosscheck.page_section(ProxyConfig("kubernetes", "svc.yaml")) == "Cloud load balancers"
    assert crosscheck.page_section(ProxyConfig("unknown", "x")) is None


def test_traefik_no_header_to_trusting_listener_fix_adds_it(tmp_path):
    dynamic = traefik_dynamic("""\
        imap:
          entryPoints: [imap]
          rule: "HostSNI(`*`)"
          service: imap
        """, f"""\
        imap:
          loadBalancer:
            servers:
              - address: "{SERVER}:10143"
        """)
    result = check(tmp_path, {"traefik.yml": TRAEFIK_STATIC, "dynamic.yml": dynamic})
    found = judgement(result, "PD101")
    assert found.inferred and cites(found.evidence["proxy"], tmp_path / "dynamic.yml", f"{SERVER}:10143")
    fixed = yaml.safe_load(applied(tmp_path / "dynamic.yml", result, "PD101"))
    assert fixed["tcp"]["services"]["imap"]["loadBalancer"]["proxyProtocol"] == {"version": 2}


def test_traefik_terminated_tls_fix_is_passthrough_to_implicit_tls(tmp_path):
    dynamic = traefik_dynamic("""\
        submissions:
          entryPoints: [submissions]
          rule: "HostSNI(`*`)"
          service: submission
          tls: {}
        """, f"""\
        submission:
          loadBalancer:
            proxyProtocol:
              version: 2
            servers:
              - address: "{SERVER}:10025"
        """)
    result = check(tmp_path, {"traefik.yml": TRAEFIK_STATIC, "dynamic.yml": dynamic})
    found = judgement(result, "PD301")
    assert cites(found.evidence["front"], tmp_path / "dynamic.yml", "tls: {}")
    assert "#5859" in found.advice
    fixed_text = applied(tmp_path / "dynamic.yml", result, "PD301")
    fixed = yaml.safe_load(fixed_text)
    assert fixed["tcp"]["routers"]["submissions"]["tls"] == {"passthrough": True}
    assert fixed["tcp"]["services"]["submission"]["loadBalancer"]["servers"][0]["address"] == f"{SERVER}:10465"
    (tmp_path / "dynamic.yml").write_text(fixed_text)
    again = check_configurations([str(tmp_path / "traefik.yml"), str(tmp_path / "dynamic.yml")], result.stalwart)
    assert {"PD301", "PD303", "PD304"}.isdisjoint(j.code for j in again.judgements)


def test_traefik_toml_terminated_tls_into_implicit_tls(tmp_path):
    # The TOML forms of the same reference pages.
    static = """
        [entryPoints.imaps]
          address = ":993"
        """
    dynamic = f"""
        [tcp.routers.imaps]
          entryPoints = ["imaps"]
          rule = "HostSNI(`*`)"
          service = "imaps"
          [tcp.routers.imaps.tls]

        [tcp.services.imaps.loadBalancer]
          [[tcp.services.imaps.loadBalancer.servers]]
            address = "{SERVER}:10993"
        """
    result = check(tmp_path, {"traefik.toml": static, "dynamic.toml": dynamic})
    found = judgement(result, "PD304")
    assert cites(found.evidence["proxy"], tmp_path / "dynamic.toml", f"{SERVER}:10993")
    assert cites(found.evidence["front"], tmp_path / "dynamic.toml", "[tcp.routers.imaps.tls]")


def test_traefik_waits_for_client_when_the_entry_point_has_a_tls_router(tmp_path):
    dynamic = traefik_dynamic("""\
        imaps-sni:
          entryPoints: [imap]
          rule: "HostSNI(`imap.example.test`)"
          service: imaps
          tls:
            passthrough: true
        imap:
          entryPoints: [imap]
          rule: "HostSNI(`*`)"
          service: imap
        """, f"""\
        imaps:
          loadBalancer:
            servers:
              - address: "{SERVER}:10993"
        imap:
          loadBalancer:
            servers:
              - address: "{SERVER}:10143"
        """)
    result = check(tmp_path, {"traefik.yml": TRAEFIK_STATIC, "dynamic.yml": dynamic})
    found = judgement(result, "PD110")
    assert cites(found.evidence["proxy"], tmp_path / "dynamic.yml", "tls:")
    assert cites(found.evidence["front"], tmp_path / "traefik.yml", '":143"')


@pytest.mark.parametrize("extra_router, rule, waits", [
    ("", "ClientIP(`10.0.0.0/8`)", False),
    ("", "HostSNI(`*`)", False),
    ("web:\n  entryPoints: [imap]\n  rule: Host(`mail.example.test`)\n  service: web\n  tls: {}\n", "HostSNI(`*`)", True),
])
def test_traefik_waits_only_for_what_needs_client_bytes(extra_router, rule, waits):
    # doc.traefik.io/traefik/reference/routing-configuration/tcp/routing/rules-and-priority/
    static = traefik.parse(textwrap.dedent(TRAEFIK_STATIC), "traefik.yml")
    entry_points = {"imap": static.listeners[2]}
    dynamic = "http:\n  routers:\n" + textwrap.indent(extra_router, "    ") if extra_router else ""
    dynamic += traefik_dynamic(f"imap:\n  entryPoints: [imap]\n  rule: \"{rule}\"\n  service: imap\n",
                               f"imap:\n  loadBalancer:\n    servers:\n      - address: \"{SERVER}:10143\"\n")
    (route,) = traefik.parse(dynamic, "dynamic.yml", entry_points).routes
    assert route.waits_for_client is waits and route.front is not None and route.front.port == 143


def test_traefik_passthrough_to_plain_listener_in_crd_manifests(tmp_path):
    # doc.traefik.io/traefik/reference/routing-configuration/kubernetes/crd/tcp/ingressroutetcp/
    # and .../serverstransporttcp/ (proxyProtocol in the transport).
    manifests = """
        apiVersion: traefik.io/v1alpha1
        kind: IngressRouteTCP
        metadata:
          name: imaps
        spec:
          entryPoints:
            - imaps
          routes:
            - match: HostSNI(`*`)
              services:
                - name: stalwart
                  port: 10143
                  serversTransport: pp
          tls:
            passthrough: true
        ---
        apiVersion: traefik.containo.us/v1alpha1
        kind: ServersTransportTCP
        metadata:
          name: pp
        spec:
          proxyProtocol:
            version: 2
        """
    result = check(tmp_path, {"traefik.yml": TRAEFIK_STATIC, "routes.yaml": manifests})
    found = judgement(result, "PD303")
    assert cites(found.evidence["proxy"], tmp_path / "routes.yaml", "- name: stalwart")
    assert cites(found.evidence["header"], tmp_path / "routes.yaml", "version: 2")
    route = next(config for config in result.configs if config.path.endswith("routes.yaml")).routes[0]
    assert route.sends == "v2" and route.front is not None and route.front.port == 993


def test_traefik_entry_point_reading_headers_refuses_no_client(tmp_path):
    """An entry point's `proxyProtocol` makes the header optional (go-proxyproto's USE for
    `trustedIPs`, or for everyone with `insecure`; IGNORE for the rest): clients without one
    are served, so no PD109 (the page says so too)."""
    static = """
        entryPoints:
          smtp:
            address: ":25"
            proxyProtocol: {insecure: true}
          imap:
            address: ":143"
            proxyProtocol:
              trustedIPs:
                - 10.0.0.0/8
        """
    result = check(tmp_path, {"traefik.yml": static})
    fronts = [front for config in result.configs for front in config.listeners]
    assert {front.port for front in fronts if front.accepts_header and front.header_optional} == {25, 143}
    assert "PD109" not in [j.code for j in result.judgements]


def test_traefik_trusted_ips_refuse_no_one_behind_a_proxy_that_sends_no_header(tmp_path):
    """An nginx without `proxy_protocol on` in front of a `trustedIPs` entry point: Traefik
    uses a header when one comes, so nothing is refused there (no PD109)."""
    static = TRAEFIK_STATIC.replace('address: ":25"', 'address: ":25"\n    proxyProtocol:\n      trustedIPs: [127.0.0.0/8]')
    dynamic = traefik_dynamic('smtp:\n  entryPoints: [smtp]\n  rule: "HostSNI(`*`)"\n  service: smtp\n',
                              f'smtp:\n  loadBalancer:\n    servers:\n      - address: "{SERVER}:10025"\n')
    nginx = "events {}\nstream {\n  server {\n    listen 2525;\n    proxy_pass 127.0.0.1:25;\n  }\n}\n"
    codes = [j.code for j in check(tmp_path, {"traefik.yml": static, "dynamic.yml": dynamic, "nginx.conf": nginx}).judgements]
    assert "PD109" not in codes


def test_traefik_tls_transport_sends_the_header_before_tls(tmp_path):
    """v3.7 pkg/tcp/dialer.go: tcpDialer writes the header, tcpTLSDialer then does the handshake."""
    dynamic = f"""
        tcp:
          serversTransports:
            reencrypt:
              tls:
                insecureSkipVerify: true
              proxyProtocol:
                version: 2
          services:
            imaps:
              loadBalancer:
                serversTransport: reencrypt
                servers:
                  - address: "{SERVER}:10993"
        """
    config = traefik.parse(textwrap.dedent(dynamic), "dynamic.yml")
    assert not config.routes  # no router uses the service
    config = traefik.parse(textwrap.dedent(dynamic) + "  routers:\n    r:\n      rule: \"HostSNI(`*`)\"\n      service: imaps\n",
                           "dynamic.yml")
    (route,) = config.routes
    assert route.tls_to_server and not route.header_inside_tls and route.sends == "v2" and route.front is None



# traefik/traefik v3.7 pkg/tcp/dialer.go, DialerManager.Build: `proxyProtocol = config.ProxyProtocol`,
# then `if config.ServersTransport != "" { proxyProtocol = st.ProxyProtocol }`.
def test_traefik_named_transport_decides_the_header_and_gets_the_fix(tmp_path):
    dynamic = traefik_dynamic("""\
        imap:
          entryPoints: [imap]
          rule: "HostSNI(`*`)"
          service: imap
        """, f"""\
        imap:
          loadBalancer:
            serversTransport: plain
            proxyProtocol:
              version: 2
            servers:
              - address: "{SERVER}:10143"
        """) + "  serversTransports:\n    plain:\n      dialTimeout: 5s\n"
    result = check(tmp_path, {"traefik.yml": TRAEFIK_STATIC, "dynamic.yml": dynamic})
    found = judgement(result, "PD101")  # the load balancer's proxyProtocol is ignored: no header
    assert cites(found.evidence["proxy"], tmp_path / "dynamic.yml", f"{SERVER}:10143")
    (problem,) = [p for config in result.configs for p in config.problems]
    assert "ignored" in problem.message and problem.origin.line == line_of(tmp_path / "dynamic.yml", "proxyProtocol:")
    fixed = yaml.safe_load(applied(tmp_path / "dynamic.yml", result, "PD101"))
    assert fixed["tcp"]["serversTransports"]["plain"]["proxyProtocol"] == {"version": 2}
    assert fixed["tcp"]["serversTransports"]["plain"]["dialTimeout"] == "5s"



def test_traefik_fix_names_the_transport_a_3_5_2_file_already_has(tmp_path):
    """A file whose serversTransport sends v2 is Traefik 3.5.2 or later: the fix for a service
    without a header names that transport instead of the deprecated loadBalancer.proxyProtocol."""
    dynamic = traefik_dynamic("""\
        imap:
          entryPoints: [imap]
          rule: "HostSNI(`*`)"
          service: imap
        """, f"""\
        imap:
          loadBalancer:
            servers:
              - address: "{SERVER}:10143"
        smtp:
          loadBalancer:
            serversTransport: pp
            servers:
              - address: "{SERVER}:10025"
        """) + "  serversTransports:\n    pp:\n      proxyProtocol:\n        version: 2\n"
    result = check(tmp_path, {"traefik.yml": TRAEFIK_STATIC, "dynamic.yml": dynamic})
    fixed = yaml.safe_load(applied(tmp_path / "dynamic.yml", result, "PD101"))
    balancer = fixed["tcp"]["services"]["imap"]["loadBalancer"]
    assert balancer["serversTransport"] == "pp" and "proxyProtocol" not in balancer
    (route,) = [r for r in traefik.parse(applied(tmp_path / "dynamic.yml", result, "PD101"), "d.yml").routes]
    assert route.sends == "v2"

def test_traefik_transport_version_wins_over_the_load_balancer(tmp_path):
    dynamic = traefik_dynamic("""\
        r:
          rule: "HostSNI(`*`)"
          service: smtp
        """, f"""\
        smtp:
          loadBalancer:
            serversTransport: pp
            proxyProtocol: {{version: 1}}
            servers:
              - address: "{SERVER}:10025"
        """) + "  serversTransports:\n    pp:\n      proxyProtocol:\n        version: 2\n"
    (route,) = traefik.parse(textwrap.dedent(dynamic), "dynamic.yml").routes
    assert route.sends == "v2" and route.sends_origin is not None and route.block_origin is not None
    assert route.block_origin.text.strip() == "pp:" and route.sends_origin.line > route.block_origin.line


def test_traefik_transport_not_in_the_file_is_not_guessed():
    dynamic = traefik_dynamic("""\
        r:
          rule: "HostSNI(`*`)"
          service: smtp
        """, f"""\
        smtp:
          loadBalancer:
            serversTransport: elsewhere@file
            proxyProtocol: {{version: 2}}
            servers:
              - address: "{SERVER}:10025"
        """)
    config = traefik.parse(dynamic, "dynamic.yml")
    assert not config.routes and "elsewhere@file" in config.problems[0].message


def test_traefik_labels_with_a_transport_are_not_judged_by_their_proxyprotocol(tmp_path):
    compose = """
        services:
          mail:
            image: stalwartlabs/stalwart
            labels:
              - traefik.tcp.routers.smtp.rule=HostSNI(`*`)
              - traefik.tcp.services.smtp.loadbalancer.server.port=10025
              - traefik.tcp.services.smtp.loadbalancer.serverstransport=pp@file
              - traefik.tcp.services.smtp.loadbalancer.proxyprotocol.version=2
        """
    config = configs.load(str(write(tmp_path, "compose.yml", compose)), "traefik")
    assert not config.routes
    assert any("label here is ignored" in problem.message for problem in config.problems)

# --- Caddy -----------------------------------------------------------------------------------
# caddy-l4 README (github.com/mholt/caddy-l4) and caddyserver.com/docs/json/apps/layer4/;
# Caddyfile: caddyserver.com/docs/caddyfile/directives/reverse_proxy


def test_caddy_json_layer4_header_to_untrusting_listener(tmp_path):
    config = {"apps": {"layer4": {"servers": {"smtp": {
        "listen": [":25"],
        "routes": [{"handle": [{"handler": "proxy", "proxy_protocol": "v2",
                                "upstreams": [{"dial": [f"{SERVER}:10025"]}]}]}]}}}}}
    result = check(tmp_path, {"caddy.json": json.dumps(config, indent=2)}, UNTRUSTING)
    found = judgement(result, "PD102")
    assert cites(found.evidence["proxy"], tmp_path / "caddy.json", f'"{SERVER}:10025"')
    assert cites(found.evidence["header"], tmp_path / "caddy.json", '"proxy_protocol": "v2"')


CADDY_L4 = """
{
	layer4 {
		:465 {
			route {
				tls
				proxy {
					proxy_protocol v2
					upstream SERVER:10025
				}
			}
		}
		:993 {
			route {
				proxy SERVER:10143
			}
		}
		:143 {
			@secure tls
			route @secure {
				proxy SERVER:10993
			}
			route {
				proxy SERVER:10143
			}
		}
		:25 {
			route {
				proxy_protocol
				proxy SERVER:10025
			}
		}
	}
}
""".replace("SERVER", SERVER)


def test_caddyfile_layer4_mistakes(tmp_path):
    result = check(tmp_path, {"Caddyfile": CADDY_L4})
    path = tmp_path / "Caddyfile"
    pd301 = judgement(result, "PD301")
    assert cites(pd301.evidence["front"], path, "tls") and cites(pd301.evidence["header"], path, "proxy_protocol v2")
    assert cites(judgement(result, "PD303").evidence["front"], path, ":993 {")
    pd110 = judgement(result, "PD110")
    assert cites(pd110.evidence["proxy"], path, "route @secure {")
    # caddy-l4 v0.1.2's proxy_protocol handler refuses nobody (fallback IGNORE) but reads the
    # client's first bytes with no timeout: an SMTP client waits for ever (PD110, not PD109)
    assert "PD109" not in [j.code for j in result.judgements]
    reading = [j for j in result.judgements if j.code == "PD110"
               and j.evidence["proxy"].startswith(f"{path}:{line_of(path, ':25 {') + 2}: ")]
    assert reading and "proxy_protocol" in reading[0].evidence["proxy"]
    assert any(j.code == "PD101" and cites(j.evidence["proxy"], path, f"proxy {SERVER}:10143") for j in result.judgements)
    fixed = fixes.apply(path.read_text(), reading[0].edits, str(path))
    assert caddy.parse(fixed, str(path)).listeners and "\t\t\t\tproxy_protocol\n" not in fixed


# caddy-l4 v0.1.2 modules/l4proxy/upstream.go: `local_addr` in a Caddyfile `upstream {}`,
# `upstreams[].local_address` (a list, the first of the upstream's family used) in JSON.
def test_caddy_l4_source_address_from_local_addr_and_local_address():
    caddyfile = ("{\n\tlayer4 {\n\t\t:25 {\n\t\t\troute {\n\t\t\t\tproxy {\n\t\t\t\t\tproxy_protocol v2\n"
                 f"\t\t\t\t\tupstream {{\n\t\t\t\t\t\tdial {SERVER}:10025\n\t\t\t\t\t\tlocal_addr 2001:db8::5 127.31.0.9\n"
                 "\t\t\t\t\t}\n\t\t\t\t}\n\t\t\t}\n\t\t}\n\t}\n}\n")
    (route,) = caddy.parse(caddyfile, "Caddyfile").routes
    assert route.source_address == "127.31.0.9" and route.source_origin is not None
    assert "local_addr" in route.source_origin.text
    document = {"apps": {"layer4": {"servers": {"smtp": {"listen": [":25"], "routes": [{"handle": [
        {"handler": "proxy", "proxy_protocol": "v2",
         "upstreams": [{"dial": [f"{SERVER}:10025"], "local_address": ["[2001:db8::5]:0", "127.31.0.9:0"]}]}]}]}}}}}
    (route,) = caddy.parse(json.dumps(document, indent=1), "caddy.json").routes
    assert route.source_address == "127.31.0.9" and "local_address" in route.source_origin.text


def test_caddy_l4_proxy_protocol_handler_trusts_allow_and_ignores_the_rest():
    caddyfile = ("{\n\tlayer4 {\n\t\t:25 {\n\t\t\troute {\n\t\t\t\tproxy_protocol {\n\t\t\t\t\tallow 10.0.0.0/8\n"
                 f"\t\t\t\t}}\n\t\t\t\tproxy {SERVER}:10025\n\t\t\t}}\n\t\t}}\n\t}}\n}}\n")
    config = caddy.parse(caddyfile, "Caddyfile")
    reading = [front for front in config.listeners if front.accepts_header]
    assert reading and reading[0].trusted_sources == ("10.0.0.0/8",) and reading[0].header_optional
    assert config.routes[0].waits_for_client
    required = caddy.parse(caddyfile.replace("allow 10.0.0.0/8", "allow 10.0.0.0/8\n\t\t\t\t\tfallback_policy require"),
                           "Caddyfile")
    assert not [front for front in required.listeners if front.accepts_header][0].header_optional


@pytest.mark.lab
def test_caddyfile_plaintext_into_implicit_tls_checked_by_caddy(tmp_path):
    site = f"""
        mail.example.test {{
        	reverse_proxy {SERVER}:10443
        }}
        """
    path = write(tmp_path, "Caddyfile", site)
    adapted = subprocess.run([need("caddy"), "adapt", "--config", str(path), "--adapter", "caddyfile"],
                             capture_output=True, text=True)
    assert adapted.returncode == 0, adapted.stderr
    dial = json.loads(adapted.stdout)
    assert f"{SERVER}:10443" in json.dumps(dial)
    for name, text in (("Caddyfile", path.read_text()), ("caddy.json", adapted.stdout)):
        result = check(tmp_path, {name: text})
        found = judgement(result, "PD304")
        assert found.evidence["proxy"].startswith(f"{tmp_path / name}:")


@pytest.mark.lab
@pytest.mark.parametrize("upstream, plaintext", [
    (f"{SERVER}:10443", True),
    (f"https://{SERVER}:10443 {{\n\t\ttransport http {{\n\t\t\ttls_insecure_skip_verify\n\t\t}}\n\t}}", False),
])
def test_caddy_plaintext_into_implicit_tls_check_and_capture_agree(upstream, plaintext, tmp_path):
    """Caddy 2.6 terminates TLS and proxies HTTP to a TLS-only listener (openssl s_server
    standing in for Stalwart's 10443): in plaintext, check on the Caddyfile and analyze on
    the capture both say PD304; re-encrypted, neither does."""
    from tests.test_check_lab import Capture, Running, codes_of

    client, proxy = "127.31.0.10", "127.31.0.20"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout",
                    str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem"), "-subj", "/CN=mail.example.test"],
                   check=True, capture_output=True)
    caddyfile = write(tmp_path, "Caddyfile", f"""
        {{
        	admin off
        	auto_https disable_redirects
        	storage file_system {tmp_path}/caddy-data
        }}

        https://mail.example.test:443 {{
        	bind {proxy}
        	tls {tmp_path}/cert.pem {tmp_path}/key.pem
        	reverse_proxy UPSTREAM
        }}
        """.replace("UPSTREAM", upstream))
    stalwart = write(tmp_path, "config.toml", f'[server.listener.https]\nbind = ["{SERVER}:10443"]\n'
                     'protocol = "http"\ntls.implicit = true\n')
    environment = {**os.environ, "XDG_DATA_HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path), "HOME": str(tmp_path)}
    server = Running(["openssl", "s_server", "-quiet", "-accept", f"{SERVER}:10443", "-cert", str(tmp_path / "cert.pem"),
                      "-key", str(tmp_path / "key.pem")], (SERVER, 10443))
    capture = Capture(tmp_path / "caddy.pcap", net="127.31.0.0/16")
    try:
        caddy_process = Running([need("caddy"), "run", "--config", str(caddyfile), "--adapter", "caddyfile"], (proxy, 443),
                                env=environment)
        try:
            subprocess.run(["curl", "-sk", "--max-time", "5", "--interface", client, "--resolve",
                            f"mail.example.test:443:{proxy}", "https://mail.example.test/"], capture_output=True, timeout=30)
        finally:
            caddy_process.stop()
    finally:
        capture.stop()
        server.stop()
    configuration = ("--stalwart-config", str(stalwart))
    assert subprocess.run([need("tcpdump"), "-r", str(capture.path), "-nn", "dst port 10443"], capture_output=True,
                          text=True).stdout.count("\n") > 2  # the proxy reached the server
    assert ("PD304" in codes_of("check", str(caddyfile), *configuration)) is plaintext
    assert ("PD304" in codes_of("analyze", str(capture.path), *configuration)) is plaintext




# --- Envoy -----------------------------------------------------------------------------------
# envoyproxy.io/docs/envoy/latest/api-v3/extensions/transport_sockets/proxy_protocol/v3/upstream_proxy_protocol.proto
# .../api-v3/extensions/filters/listener/proxy_protocol/v3/proxy_protocol.proto, tls_inspector,
# .../api-v3/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto, config/core/v3/health_check.proto

def envoy_bootstrap(port: int, target: int, *, listener_filters: str = "", chain_extra: str = "",
                    cluster_extra: str = "") -> str:
    def block(text: str, spaces: int) -> str:
        return textwrap.indent(textwrap.dedent(text), " " * spaces)

    return (
        "static_resources:\n"
        "  listeners:\n"
        "    - name: mail\n"
        "      address:\n"
        f"        socket_address: {{address: 0.0.0.0, port_value: {port}}}\n"
        + block(listener_filters, 6)
        + "      filter_chains:\n"
        "        - filters:\n"
        "            - name: envoy.filters.network.tcp_proxy\n"
        "              typed_config:\n"
        '                "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy\n'
        "                stat_prefix: mail\n"
        "                cluster: stalwart\n"
        + block(chain_extra, 10)
        + "  clusters:\n"
        "    - name: stalwart\n"
        "      type: STATIC\n"
        "      load_assignment:\n"
        "        cluster_name: stalwart\n"
        "        endpoints:\n"
        "          - lb_endpoints:\n"
        "              - endpoint:\n"
        "                  address:\n"
        "                    socket_address:\n"
        f"                      address: {SERVER}\n"
        f"                      port_value: {target}\n"
        + block(cluster_extra, 6)
    )


ENVOY_PP_V2 = """\
transport_socket:
  name: envoy.transport_sockets.upstream_proxy_protocol
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.transport_sockets.proxy_protocol.v3.ProxyProtocolUpstreamTransport
    config:
      version: V2
    transport_socket:
      name: envoy.transport_sockets.raw_buffer
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer
"""
ENVOY_DOWNSTREAM_TLS = """\
transport_socket:
  name: envoy.transport_sockets.tls
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
"""


@pytest.mark.parametrize("case", ["PD102", "PD101", "PD301", "PD304", "PD303", "PD110", "PD109"])
def test_envoy_mistakes(case, tmp_path):
    setups = {
        "PD102": (envoy_bootstrap(25, 10025, cluster_extra=ENVOY_PP_V2), UNTRUSTING, "version: V2", "header"),
        "PD101": (envoy_bootstrap(143, 10143), TRUSTING, "port_value: 10143", "proxy"),
        "PD301": (envoy_bootstrap(465, 10025, chain_extra=ENVOY_DOWNSTREAM_TLS, cluster_extra=ENVOY_PP_V2), TRUSTING,
                  "transport_socket:", "front"),
        "PD304": (envoy_bootstrap(993, 10993, chain_extra=ENVOY_DOWNSTREAM_TLS), TRUSTING, "port_value: 10993", "proxy"),
        "PD303": (envoy_bootstrap(993, 10143), TRUSTING, "port_value: 10143", "proxy"),
        "PD110": (envoy_bootstrap(25, 10025, listener_filters="listener_filters:\n  - name: envoy.filters.listener.tls_inspector\n"),
                  TRUSTING, "tls_inspector", "proxy"),
        "PD109": (envoy_bootstrap(25, 10025, listener_filters="listener_filters:\n  - name: envoy.filters.listener.proxy_protocol\n"),
                  TRUSTING, "envoy.filters.listener.proxy_protocol", "listener"),
    }
    text, stalwart_text, needle, key = setups[case]
    yaml.safe_load(text)  # well-formed YAML
    result = check(tmp_path, {"envoy.yaml": text}, stalwart_text)
    assert cites(judgement(result, case).evidence[key], tmp_path / "envoy.yaml", needle)
    if case in ("PD303", "PD304"):  # the fix points the endpoint at the listener that fits
        port = {"PD303": 10993, "PD304": 10143}[case]
        fixed = envoy.parse(applied(tmp_path / "envoy.yaml", result, case), str(tmp_path / "envoy.yaml"))
        assert [route.server_port for route in fixed.routes] == [port]


def test_envoy_json_bootstrap_reads_like_yaml(tmp_path):
    text = envoy_bootstrap(993, 10143, cluster_extra=ENVOY_PP_V2)
    compact = json.dumps(yaml.safe_load(text))
    assert configs.detect_kind(compact) == "envoy"
    from_yaml, from_json = envoy.parse(text, "e.yaml"), envoy.parse(compact, "e.json")
    assert [(r.endpoint, r.sends, r.front.endpoint if r.front else None) for r in from_json.routes] == \
        [(r.endpoint, r.sends, r.front.endpoint if r.front else None) for r in from_yaml.routes] == \
        [(f"{SERVER}:10143", "v2", "0.0.0.0:993")]



# api/envoy/config/core/v3/proxy_protocol.proto: TlvEntry {uint32 type; bytes value}; proto3's JSON
# (and so YAML) mapping writes bytes in base64.
def test_envoy_added_tlvs_are_base64_and_a_static_ssl_tlv_carries_tls(tmp_path):
    with_tlv = ENVOY_PP_V2.replace("      version: V2\n", "      version: V2\n      added_tlvs:\n"
                                   "        - {type: 32, value: \"AQAAAAA=\"}\n")
    text = envoy_bootstrap(465, 10025, chain_extra=ENVOY_DOWNSTREAM_TLS, cluster_extra=with_tlv)
    (route,) = envoy.parse(text, "envoy.yaml").routes
    assert route.ssl_tlv and route.sends == "v2"
    assert "PD301" not in [j.code for j in check(tmp_path, {"envoy.yaml": text}).judgements]
    hex_written = text.replace("AQAAAAA=", "01 00 00 00 00")
    with pytest.raises(ConfigReadError, match="base64"):
        envoy.parse(hex_written, "envoy.yaml")

def test_envoy_health_check_and_tlvs(tmp_path):
    text = envoy_bootstrap(143, 10143, cluster_extra=ENVOY_PP_V2 + textwrap.dedent("""\
        health_checks:
          - timeout: 1s
            interval: 5s
            unhealthy_threshold: 2
            healthy_threshold: 1
            tcp_health_check: {}
        """))
    (route,) = envoy.parse(text, "envoy.yaml").routes
    assert route.sends == "v2" and not route.ssl_tlv
    assert route.health_check is not None and not route.health_check.sends_header
    with_pp = text.replace("tcp_health_check: {}", "tcp_health_check: {proxy_protocol_config: {version: V2}}")
    assert envoy.parse(with_pp, "envoy.yaml").routes[0].health_check.sends_header


# --- Kubernetes ------------------------------------------------------------------------------
# kubernetes.io/docs/reference/labels-annotations-taints/ and kubernetes-sigs.github.io/
# aws-load-balancer-controller/latest/guide/service/annotations/; DigitalOcean, Hetzner,
# Linode, Scaleway, OVHcloud cloud controller managers' annotation pages.

def service(annotations: dict[str, str], ports: list[tuple[int, int]], name: str = "stalwart") -> str:
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"type": "LoadBalancer", "selector": {"app": "stalwart"},
                 "ports": [{"name": f"p{port}", "port": port, "targetPort": target, "protocol": "TCP"}
                           for port, target in ports]},
    }, sort_keys=False)


AWS = "service.beta.kubernetes.io/aws-load-balancer-"


def test_kubernetes_aws_nlb_header_untrusted_and_waiting_fixed_by_on_first_ack(tmp_path):
    text = service({AWS + "type": "external", AWS + "nlb-target-type": "ip", AWS + "proxy-protocol": "*"},
                   [(25, 10025)])
    result = check(tmp_path, {"service.yaml": text}, UNTRUSTING)
    path = tmp_path / "service.yaml"
    assert cites(judgement(result, "PD102").evidence["header"], path, "aws-load-balancer-proxy-protocol")
    wait = judgement(result, "PD110")
    assert cites(wait.evidence["proxy"], path, "aws-load-balancer-proxy-protocol")
    fixed = applied(path, result, "PD110")
    annotations = yaml.safe_load(fixed)["metadata"]["annotations"]
    assert "header_placement=on_first_ack" in annotations[AWS + "target-group-attributes"]
    assert kubernetes.parse(fixed, str(path)).routes[0].waits_for_client is False
    assert yaml.safe_load(applied(path, result, "PD209"))["spec"]["ports"][0]["targetPort"] == 25


def test_kubernetes_classic_elb_v1_behind_tls_and_plain_routes(tmp_path):
    text = service({AWS + "proxy-protocol": "*", AWS + "ssl-cert": "arn:aws:acm:eu-west-1:1:certificate/x",
                    AWS + "ssl-ports": "465"}, [(465, 10025), (143, 10143)])
    result = check(tmp_path, {"service.yaml": text})
    path = tmp_path / "service.yaml"
    pd302 = judgement(result, "PD302")
    assert cites(pd302.evidence["front"], path, "ssl-cert") and cites(pd302.evidence["proxy"], path, "targetPort: 10025")
    routes = result.configs[0].routes
    assert [route.sends for route in routes] == ["v1", "v1"] and not any(route.waits_for_client for route in routes)


@pytest.mark.parametrize("annotations, ports, code, needle", [
    ({}, [(143, 10143)], "PD101", "targetPort: 10143"),
    ({"service.beta.kubernetes.io/do-loadbalancer-enable-proxy-protocol": "true",
      "service.beta.kubernetes.io/do-loadbalancer-tls-ports": "993",
      "service.beta.kubernetes.io/do-loadbalancer-certificate-id": "abc"}, [(993, 10993)], "PD304", "targetPort: 10993"),
    ({"load-balancer.hetzner.cloud/uses-proxyprotocol": "true"}, [(993, 10143)], "PD303", "targetPort: 10143"),
    ({"service.beta.kubernetes.io/scw-loadbalancer-proxy-protocol-v2": "25,587"}, [(25, 10025)], "PD102",
     "targetPort: 10025"),
    ({"service.beta.kubernetes.io/linode-loadbalancer-port-25": '{"proxy-protocol": "v2"}'}, [(25, 10025)], "PD102",
     "targetPort: 10025"),
])
def test_kubernetes_clouds(annotations, ports, code, needle, tmp_path):
    stalwart_text = UNTRUSTING if code == "PD102" else TRUSTING
    result = check(tmp_path, {"service.yaml": service(annotations, ports)}, stalwart_text)
    assert cites(judgement(result, code).evidence["proxy"], tmp_path / "service.yaml", needle)


def test_cloud_balancer_in_front_of_traefik_is_a_chain(tmp_path):
    """The NLB's header reaches Traefik's entry point, which does not read it, and Traefik
    adds its own: two headers (PD106). With `proxyProtocol.trustedIPs` on the entry point the
    chain is right."""
    balancer = service({AWS + "type": "nlb", AWS + "proxy-protocol": "*",
                        AWS + "target-group-attributes": "proxy_protocol_v2.client_to_server.header_placement=on_first_ack"},
                       [(25, 25)], name="traefik")
    dynamic = traefik_dynamic('smtp:\n  entryPoints: [smtp]\n  rule: "HostSNI(`*`)"\n  service: smtp\n',
                              f'smtp:\n  loadBalancer:\n    proxyProtocol: {{version: 2}}\n    servers:\n'
                              f'      - address: "{SERVER}:10025"\n')
    files = {"service.yaml": balancer, "traefik.yml": TRAEFIK_STATIC, "dynamic.yml": dynamic}
    found = judgement(check(tmp_path, files), "PD106")
    assert cites(found.evidence["outer_route"], tmp_path / "service.yaml", "targetPort: 25")
    assert cites(found.evidence["inner_listener"], tmp_path / "traefik.yml", '":25"')
    trusting = TRAEFIK_STATIC.replace('address: ":25"', 'address: ":25"\n    proxyProtocol:\n      trustedIPs: [10.0.0.0/8]')
    codes = [j.code for j in check(tmp_path, {**files, "traefik.yml": trusting}).judgements]
    assert "PD106" not in codes and "PD109" not in codes and "PD110" not in codes


def test_kubernetes_ovh_ssl_tlv_and_named_target_port(tmp_path):
    text = service({"service.beta.kubernetes.io/ovh-loadbalancer-proxy-protocol": "v2-ssl"}, [(993, 10993)])
    text += "---\n" + service({}, [(25, 25)], "other").replace("targetPort: 25", "targetPort: smtp")
    config = kubernetes.parse(text, "svc.yaml")
    assert [(route.sends, route.ssl_tlv) for route in config.routes] == [("v2", True)]
    assert "targetPort 'smtp' is a name" in config.problems[0].message and config.problems[0].origin.line > 10



# The cloud controllers' own code: linode-cloud-controller-manager cloud/annotations (default key,
# deprecated fallback; its e2e test sets both and the default wins), scaleway-cloud-controller-manager
# scaleway/loadbalancers.go (getProxyProtocol, isPortInRange: Go's ParseBool words besides `*` and
# ports; getSendProxyV2, deprecated, still read), the OVH load balancer API (v2-ssl, v2-ssl-cn).
LINODE = "service.beta.kubernetes.io/linode-loadbalancer-"
SCW = "service.beta.kubernetes.io/scw-loadbalancer-"


@pytest.mark.parametrize("annotations, sends", [
    ({LINODE + "default-proxy-protocol": "v2"}, "v2"),
    ({LINODE + "proxy-protocol": "v1"}, "v1"),
    ({LINODE + "proxy-protocol": "v2", LINODE + "default-proxy-protocol": "v1"}, "v1"),
    ({LINODE + "default-proxy-protocol": "none", LINODE + "proxy-protocol": "v2"}, "none"),
    ({LINODE + "default-proxy-protocol": "v2", LINODE + "port-25": '{"proxy-protocol": "none"}'}, "none"),
    ({SCW + "proxy-protocol-v2": "true"}, "v2"),
    ({SCW + "proxy-protocol-v2": "True"}, "v2"),
    ({SCW + "proxy-protocol-v1": "t"}, "v1"),
    ({SCW + "proxy-protocol-v2": "false", SCW + "send-proxy-v2": "true"}, "v2"),
    ({SCW + "proxy-protocol-v2": "0x19"}, "v2"),
    ({SCW + "proxy-protocol-v2": "1"}, "none"),
    ({SCW + "send-proxy-v2": "1"}, "v2"),
    ({SCW + "send-proxy-v2": "587, 25"}, "v2"),
    ({SCW + "send-proxy-v2": "587"}, "none"),
    ({"service.beta.kubernetes.io/ovh-loadbalancer-proxy-protocol": "v2-ssl-cn"}, "v2"),
    ({"loadbalancer.openstack.org/proxy-protocol": "v2"}, "v2"),
])
def test_cloud_annotations_as_the_controllers_read_them(annotations, sends):
    (route,) = kubernetes.parse(service(annotations, [(25, 10025)]), "svc.yaml").routes
    assert route.sends == sends
    if sends != "none":
        assert route.sends_origin is not None and any(key in route.sends_origin.text for key in annotations)


@pytest.mark.parametrize("annotations, words", [
    ({SCW + "proxy-protocol-v2": "yes"}, "not true/false"),
    ({SCW + "proxy-protocol-v1": "*", SCW + "proxy-protocol-v2": "25"}, "in both"),
    ({"service.beta.kubernetes.io/ovh-loadbalancer-proxy-protocol": "v2_ssl"}, "hyphens"),
])
def test_cloud_annotations_the_controllers_refuse(annotations, words):
    with pytest.raises(ConfigReadError, match=words):
        kubernetes.parse(service(annotations, [(25, 10025)]), "svc.yaml")


def test_digitalocean_health_checks_carry_the_header(tmp_path):
    text = service({"service.beta.kubernetes.io/do-loadbalancer-enable-proxy-protocol": "true"}, [(25, 10025)])
    (route,) = kubernetes.parse(text, "svc.yaml").routes
    assert route.health_check is not None and route.health_check.sends_header
    assert "PD403" not in [j.code for j in check(tmp_path, {"service.yaml": text}).judgements]

# --- bad input -------------------------------------------------------------------------------

def run_check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "proxydiag", "check", *args], capture_output=True, text=True,
                          cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/sbin:/usr/bin:/bin"})


@pytest.mark.parametrize("name, text, kind, message", [
    ("traefik.yml", "entryPoints:\n  smtp:\n    address: ':25\n", None, "not valid YAML"),
    ("traefik.yml", "entryPoints:\n  - smtp\n", None, "entryPoints: expected a mapping"),
    ("envoy.yaml", "static_resources:\n  listeners:\n    - address: {socket_address: {port_value: x}}\n", None,
     "without a port_value"),
    ("Caddyfile", "{\n\tlayer4 {\n\t\t:25 {\n\t\t\troute {\n", None, "never closed"),
    ("caddy.json", '{"apps": {"layer4": {"servers": {"a": {"listen": [":25"], "routes": [{"handle": '
     '[{"handler": "proxy", "proxy_protocol": "v3", "upstreams": [{"dial": ["a:1"]}]}]}]}}}}}', None, "v1 or v2"),
    ("service.yaml", "apiVersion: v1\nkind: Service\nspec: [1]\n", None, "spec: expected a mapping"),
    ("whatever.yml", "a: [1, 2\n", "kubernetes", "not valid YAML"),
])
def test_malformed_files_one_line_exit_2(name, text, kind, message, tmp_path):
    path = write(tmp_path, name, text)
    run = run_check(str(path), *(["--kind", kind] if kind else []))
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and message in lines[0], run.stderr
    assert "Traceback" not in run.stderr


def test_alias_bomb_is_a_config_error_not_a_hang():
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * 10) + "]" for n in range(1, 9)]
    with pytest.raises(ConfigReadError, match="too many nodes"):
        traefik.parse("\n".join(levels) + "\nentryPoints: {}\n", "bomb.yml")


def test_detection_by_content(tmp_path):
    samples = {
        "traefik": TRAEFIK_STATIC, "caddy": CADDY_L4, "envoy": envoy_bootstrap(25, 10025),
        "kubernetes": service({}, [(25, 10025)]),
    }
    for kind, text in samples.items():
        assert configs.detect_kind(textwrap.dedent(text)) == kind


# --- properties ------------------------------------------------------------------------------

KEYS = st.sampled_from([
    "entryPoints", "address", "proxyProtocol", "trustedIPs", "insecure", "tcp", "routers", "services", "rule",
    "service", "tls", "passthrough", "loadBalancer", "servers", "version", "serversTransport", "serversTransports",
    "weighted", "name", "kind", "apiVersion", "spec", "routes", "match", "port", "metadata", "annotations", "ports",
    "targetPort", "type", "apps", "layer4", "http", "listen", "handle", "handler", "upstreams", "dial",
    "proxy_protocol", "transport", "static_resources", "listeners", "clusters", "socket_address", "port_value",
    "filter_chains", "filters", "typed_config", "cluster", "load_assignment", "endpoints", "lb_endpoints",
    "endpoint", "transport_socket", "listener_filters", "health_checks", "tcp_health_check", "config", "items",
])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 70000), st.sampled_from([
    "Service", "LoadBalancer", "IngressRouteTCP", "ServersTransportTCP", "traefik.io/v1alpha1", "v1", "v2", "V1",
    "V2", "proxy", "tls", "subroute", ":25", "10.0.0.3:10025", "[::1]:993", "HostSNI(`*`)", "*", "true", "x@file",
    "envoy.transport_sockets.upstream_proxy_protocol", "envoy.filters.network.tcp_proxy", "smtp", "reverse_proxy",
]), st.text(max_size=8))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(KEYS, inner, max_size=5)), max_leaves=30)
READERS = [traefik.parse, caddy.parse, envoy.parse, kubernetes.parse]


@settings(deadline=None)
@given(VALUES, st.sampled_from(["yaml", "json"]), st.sampled_from(READERS))
def test_readers_raise_only_config_errors_on_structured_input(value, form, reader):
    text = json.dumps(value) if form == "json" else yaml.safe_dump(value)
    try:
        config = reader(text, "input")
    except ConfigReadError as error:
        assert error.line is None or error.line >= 1
        return
    for route in config.routes:
        assert 1 <= route.origin.line <= max(1, len(text.splitlines()))


@settings(deadline=None)
@given(st.text(alphabet=st.sampled_from(list("{}[]:-#\"'`\n\t =,abc*v12@.")), max_size=200), st.sampled_from(READERS))
def test_readers_raise_only_config_errors_on_arbitrary_text(text, reader):
    try:
        reader(text, "input")
    except ConfigReadError:
        pass


def test_a_header_to_an_untrusting_listener_is_told_as_that_protocol_answers_it(tmp_path):
    """PD102 says what Stalwart makes of the header on that listener (references.md): SMTP's
    three 500s and Bye for v2, IMAP's BAD, a failed handshake on implicit TLS."""
    haproxy = f"""
        frontend smtp
            mode tcp
            bind :25
            default_backend smtp
        frontend imap
            mode tcp
            bind :143
            default_backend imap
        frontend imaps
            mode tcp
            bind :993
            default_backend imaps
        backend smtp
            mode tcp
            server s {SERVER}:10025 send-proxy-v2
        backend imap
            mode tcp
            server s {SERVER}:10143 send-proxy-v2
        backend imaps
            mode tcp
            server s {SERVER}:10993 send-proxy
        """
    result = check(tmp_path, {"haproxy.cfg": haproxy}, UNTRUSTING)
    said = {j.evidence["proxy"].split(": ")[1].split()[-2].split(":")[-1]: j.message
            for j in result.judgements if j.code == "PD102"}
    assert "221 Bye" in said["10025"] and "BAD [PARSE]" in said["10143"] and "handshake fails" in said["10993"]
    assert "500" not in said["10143"] + said["10993"]


def test_a_port_translated_on_the_way_is_no_remapped_mx_port(tmp_path):
    """Public 25 forwarded to a Kubernetes NodePort (30756) that reaches Stalwart's own
    port 25 (stalwart #774): the listener's port is 25, so no PD209, with or without
    Stalwart's configuration; 10025, which serves SMTP by convention, still is one."""
    def haproxy(port: int) -> str:
        return (f"frontend smtp\n    mode tcp\n    bind :25\n    default_backend smtp\nbackend smtp\n    mode tcp\n"
                f"    server s {SERVER}:{port} send-proxy-v2\n")

    on_25 = '[server.proxy]\ntrusted-networks = ["127.31.0.0/16"]\n[server.listener.smtp]\nbind = ["[::]:25"]\nprotocol = "smtp"\n'
    nodeport = [j.code for j in check(tmp_path, {"haproxy.cfg": haproxy(30756)}, on_25).judgements]
    alone = [j.code for j in check_configurations([str(write(tmp_path, "alone.cfg", haproxy(30756)))]).judgements]
    conventional = [j.code for j in check_configurations([str(write(tmp_path, "guide.cfg", haproxy(10025)))]).judgements]
    assert "PD209" not in nodeport and "PD209" not in alone and "PD209" in conventional


def test_pd604_only_where_the_proxies_given_may_send_no_header_to_the_http_listener(tmp_path):
    """The global trusted networks make headers mandatory on the HTTP listener: a warning
    when that listener's proxy is not given or sends none, not when every route to it sends one."""
    def haproxy(options: str) -> str:
        return (f"frontend https\n    mode tcp\n    bind :443\n    default_backend https\nbackend https\n    mode tcp\n"
                f"    server s {SERVER}:10443 {options}\n")

    sending = [j.code for j in check(tmp_path, {"sends.cfg": haproxy("send-proxy-v2")}).findings]
    silent = [j.code for j in check(tmp_path, {"silent.cfg": haproxy("")}).findings]
    assert "PD604" not in sending and "PD604" in silent


@pytest.mark.parametrize("kind, directive", [("haproxy", "`source`"), ("nginx", "`proxy_bind`"),
                                             ("stalwart-proxy", "`source_ips`"), ("envoy", "`upstream_bind_config`"),
                                             ("stunnel", "`local`"), ("traefik", None), ("caddy", None)])
def test_trust_advice_names_the_configured_proxys_own_source_directive(kind, directive):
    """PD102 with no source address set: the advice says how *this* proxy sets the address it
    connects from (a Stalwart proxy user was told about HAProxy `source` and nginx `proxy_bind`)."""
    from proxydiag.configs.stalwart import Listener

    advice = fixes.trust_advice("config.toml:3", None, Listener("smtp", "smtp", [("::", 10025)]), kind)
    if directive is None:
        assert "its host's" in advice and "`" not in advice
    else:
        assert directive in advice and ("HAProxy" in advice) == (kind == "haproxy")
