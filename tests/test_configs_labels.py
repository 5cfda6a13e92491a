"""`proxydiag check` on Traefik's Docker provider labels in compose files: the routes read
from the labels (ports, header version, TLS), the entry points from Traefik's static
configuration (a file beside, or the Traefik container's command flags), the findings citing
the label lines, and the fixes, applied, leaving a compose file that still loads with the label.

The compose files are shaped after Stalwart's Traefik guide
(https://stalw.art/docs/server/reverse-proxy/traefik, "Stalwart Compose"; the fixture
tests/configs_real/stalwart-docs-compose.yml) and Traefik's Docker routing reference
(https://doc.traefik.io/traefik/reference/routing-configuration/other-providers/docker/:
labels as a list or a mapping, `--entrypoints.NAME.address` flags in `command:`)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import yaml

from proxydiag.configs import fixes
from proxydiag.configs.stalwart import load as load_stalwart
from proxydiag.pipeline.check import check_configurations

ROOT = Path(__file__).resolve().parent.parent
REAL = ROOT / "tests" / "configs_real"
TRAEFIK_IP, STALWART_IP = "172.19.0.2", "172.19.0.5"

# Stalwart 0.15 listeners as in its Traefik guide, trusting Traefik's network on the mail
# listeners only (the guide's per-listener lists).
STALWART_MAIL_TRUST = """
[server.listener.smtp]
bind = ["[::]:25"]
protocol = "smtp"
proxy.trusted-networks = ["172.19.0.0/16"]

[server.listener.submission]
bind = ["[::]:587"]
protocol = "smtp"
proxy.trusted-networks = ["172.19.0.0/16"]

[server.listener.submissions]
bind = ["[::]:465"]
protocol = "smtp"
tls.implicit = true
proxy.trusted-networks = ["172.19.0.0/16"]

[server.listener.imaptls]
bind = ["[::]:993"]
protocol = "imap"
tls.implicit = true
proxy.trusted-networks = ["172.19.0.0/16"]

[server.listener.https]
bind = ["[::]:443"]
protocol = "http"
tls.implicit = true
proxy.trusted-networks = ["172.19.0.0/16"]

[server.listener.http]
bind = ["[::]:8080"]
protocol = "http"
"""
# The same listeners with one global list: headers become mandatory on 8080 too (Stalwart #526).
STALWART_GLOBAL_TRUST = '[server.proxy]\ntrusted-networks = ["172.19.0.0/16"]\n' + \
    STALWART_MAIL_TRUST.replace('proxy.trusted-networks = ["172.19.0.0/16"]\n', "")
STALWART_NO_TRUST = '[server.proxy]\ntrusted-networks = ["127.0.0.1"]\n' + \
    STALWART_MAIL_TRUST.replace('proxy.trusted-networks = ["172.19.0.0/16"]\n', "")

TRAEFIK_SERVICE = f"""\
  traefik:
    image: traefik:v3.1
    command:
      - --providers.docker=true
      - --providers.docker.exposedbydefault=false
      - --entrypoints.smtp.address=:25
      - --entryPoints.submissions.address=:465
      - --entrypoints.imaps.address=:993
    networks:
      proxy:
        ipv4_address: {TRAEFIK_IP}
"""


def compose(labels: str, traefik: str = TRAEFIK_SERVICE, extra: str = "") -> str:
    """A compose file: Traefik (when given) and Stalwart with these labels, on one network."""
    return (f"services:\n{traefik}  mailserver:\n    image: stalwartlabs/stalwart:latest\n{extra}"
            f"    networks:\n      proxy:\n        ipv4_address: {STALWART_IP}\n    labels:\n"
            + textwrap.indent(textwrap.dedent(labels).strip("\n"), "      ") + "\n"
            "networks:\n  proxy:\n    name: traefik_proxy\n")


def smtp(port: int | str = 25, rule: str = "HostSNI(`*`)", header: str | None = "proxyProtocol.version=2") -> str:
    """Stalwart's guide's SMTP labels, with another port, rule or header setting."""
    return "\n".join([
        "- traefik.enable=true",
        f'- "traefik.tcp.routers.smtp.rule={rule}"',
        "- traefik.tcp.routers.smtp.entrypoints=smtp",
        f"- traefik.tcp.services.smtp.loadbalancer.server.port={port}",
    ] + ([f"- traefik.tcp.services.smtp.loadbalancer.{header}"] if header else []))


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def check(tmp_path: Path, text: str, stalwart_text: str | None = STALWART_MAIL_TRUST, *others: Path):
    path = write(tmp_path, "compose.yaml", text)
    stalwart = load_stalwart(str(write(tmp_path, "config.toml", stalwart_text))) if stalwart_text else None
    result = check_configurations([str(path), *map(str, others)], stalwart)
    assert not result.errors, [str(error) for error in result.errors]
    return path, result


def routes(result):
    return sorted((route.front.port if route.front else None, route.endpoint, route.sends,
                   route.front.tls_terminated if route.front else None, route.origin.line)
                  for config in result.configs for route in config.routes)


def line_of(path: Path, needle: str) -> int:
    return next(number for number, line in enumerate(path.read_text().splitlines(), start=1) if needle in line)


def only(result, code: str):
    found = [judgement for judgement in result.judgements if judgement.code == code]
    assert len(found) == 1, [(judgement.code, judgement.message) for judgement in result.judgements]
    return found[0]


def fixed_labels(path: Path, judgement) -> list[str]:
    """The compose file with the judgement's edits applied: it still loads, and its labels."""
    text = fixes.apply(path.read_text(), judgement.edits, str(path))
    assert text != path.read_text()
    labels = yaml.safe_load(text)["services"]["mailserver"]["labels"]
    return [f"{key}={value}" for key, value in labels.items()] if isinstance(labels, dict) else labels


# --- the routes the labels make ----------------------------------------------------------------


def test_stalwart_docs_compose_routes_with_the_static_file(tmp_path):
    path = REAL / "stalwart-docs-compose.yml"
    result = check_configurations([str(path), str(REAL / "stalwart-docs-traefik.yml")])
    assert not result.errors
    assert routes(result) == [
        (25, f"{STALWART_IP}:25", "v2", False, line_of(path, "services.smtp.loadbalancer.server.port")),
        (443, f"{STALWART_IP}:443", "v2", False, line_of(path, "services.jmap.loadbalancer.server.port")),
        (443, f"{STALWART_IP}:8080", "none", True, line_of(path, "http.services.mailserver.loadbalancer.server.port")),
        (465, f"{STALWART_IP}:465", "v2", False, line_of(path, "services.smtps.loadbalancer.server.port")),
        (993, f"{STALWART_IP}:993", "v2", False, line_of(path, "services.imaps.loadbalancer.server.port")),
    ]
    smtp = next(route for config in result.configs for route in config.routes if route.server_port == 25)
    assert smtp.sends_origin is not None
    assert smtp.sends_origin.line == line_of(path, "services.smtp.loadbalancer.proxyProtocol.version=2")
    assert [config.problems for config in result.configs] == [(), ()]


def test_stalwart_docs_compose_alone_says_entry_points_are_unknown():
    path = REAL / "stalwart-docs-compose.yml"
    config = check_configurations([str(path)]).configs[0]
    assert len(config.routes) == 5 and all(route.front is None for route in config.routes)
    assert any(problem.message.startswith("router 'smtp': entry point 'smtp' is not in the files given")
               and problem.origin.line == line_of(path, "routers.smtp.entrypoints=smtp") for problem in config.problems)


def test_stalwart_docs_compose_with_trusting_listeners_has_no_pd102(tmp_path):
    stalwart = load_stalwart(str(write(tmp_path, "config.toml", STALWART_MAIL_TRUST)))
    result = check_configurations([str(REAL / "stalwart-docs-compose.yml"), str(REAL / "stalwart-docs-traefik.yml")], stalwart)
    assert not result.errors
    assert [judgement.code for judgement in result.judgements] == []


def test_stalwart_docs_compose_with_a_global_trust_list_reaches_http_without_header(tmp_path):
    path = REAL / "stalwart-docs-compose.yml"
    stalwart = load_stalwart(str(write(tmp_path, "config.toml", STALWART_GLOBAL_TRUST)))
    result = check_configurations([str(path), str(REAL / "stalwart-docs-traefik.yml")], stalwart)
    found = only(result, "PD101")
    assert found.inferred  # Traefik's own address is not in these files
    assert found.evidence["proxy"].startswith(f"{path}:{line_of(path, 'http.services.mailserver.loadbalancer.server.port')}:")
    assert found.edits == ()  # an HTTP router cannot send a header: no label to add
    assert "PD102" not in [judgement.code for judgement in result.judgements]


def test_command_flags_give_entry_points_and_traefik_address(tmp_path):
    path, result = check(tmp_path, compose(smtp()))
    config = result.configs[0]
    assert sorted(front.endpoint for front in config.listeners) == ["*:25", "*:465", "*:993"]
    assert {front.port: front.origin.line for front in config.listeners}[465] == line_of(path, "submissions.address")
    route = config.routes[0]
    assert (route.front.port, route.endpoint, route.sends) == (25, f"{STALWART_IP}:25", "v2")
    assert route.source_address == TRAEFIK_IP and route.source_origin.line == line_of(path, f"ipv4_address: {TRAEFIK_IP}")
    assert result.judgements == []


def test_labels_are_case_insensitive_and_default_to_the_only_service(tmp_path):
    path, result = check(tmp_path, compose("""
        - traefik.enable=true
        - traefik.tcp.routers.SMTP.rule=HostSNI(`*`)
        - traefik.TCP.Routers.smtp.EntryPoints=smtp
        - traefik.tcp.services.mail.LoadBalancer.server.Port=25
        - traefik.tcp.services.MAIL.loadbalancer.proxyprotocol.version=1
        """), None)
    assert routes(result) == [(25, f"{STALWART_IP}:25", "v1", False, line_of(path, "server.Port=25"))]


def test_proxyprotocol_without_version_is_v2_and_false_is_none(tmp_path):
    path, result = check(tmp_path, compose("""
        - traefik.enable=true
        - traefik.tcp.routers.smtp.rule=HostSNI(`*`)
        - traefik.tcp.routers.smtp.entrypoints=smtp
        - traefik.tcp.routers.smtp.service=smtp
        - traefik.tcp.services.smtp.loadbalancer.server.port=25
        - traefik.tcp.services.smtp.loadbalancer.proxyprotocol=true
        - traefik.tcp.routers.imaps.rule=HostSNI(`*`)
        - traefik.tcp.routers.imaps.entrypoints=imaps
        - traefik.tcp.routers.imaps.service=imaps
        - traefik.tcp.routers.imaps.tls.passthrough=true
        - traefik.tcp.services.imaps.loadbalancer.server.port=993
        - traefik.tcp.services.imaps.loadbalancer.proxyprotocol=false
        """), None)
    assert [(port, sends, terminated) for port, _, sends, terminated, _ in routes(result)] == \
        [(25, "v2", False), (993, "none", False)]


def test_labels_as_a_mapping_and_tls_terminated_by_traefik(tmp_path):
    text = compose("""
        traefik.enable: true
        traefik.tcp.routers.submissions.rule: HostSNI(`mail.example.com`)
        traefik.tcp.routers.submissions.entrypoints: submissions
        traefik.tcp.routers.submissions.tls: true
        traefik.tcp.services.submissions.loadbalancer.server.port: 465
        """)
    path, result = check(tmp_path, text, None)
    assert routes(result) == [(465, f"{STALWART_IP}:465", "none", True, line_of(path, "server.port: 465"))]
    front = result.configs[0].routes[0].front
    assert front.origin.line == line_of(path, "submissions.tls: true")


def test_defaults_without_service_or_port_label_and_disabled_containers(tmp_path):
    text = compose("""
        - traefik.enable=true
        - traefik.tcp.routers.smtp.rule=HostSNI(`*`)
        - traefik.tcp.routers.smtp.entrypoints=smtp
        """, extra="    expose:\n      - \"25\"\n") + textwrap.dedent("""\
        x-unused: {}
        """)
    text = text.replace("networks:\n  proxy:\n    name", "  other:\n    image: example/other\n    labels:\n"
                        "      - traefik.enable=false\n      - traefik.tcp.routers.other.rule=HostSNI(`*`)\n"
                        "      - traefik.tcp.services.other.loadbalancer.server.port=2525\n"
                        "  hidden:\n    image: example/hidden\n    labels:\n"
                        "      - traefik.tcp.routers.hidden.rule=HostSNI(`*`)\n"
                        "      - traefik.tcp.services.hidden.loadbalancer.server.port=2526\n"
                        "networks:\n  proxy:\n    name", 1)
    path, result = check(tmp_path, text, None)
    assert routes(result) == [(25, f"{STALWART_IP}:25", "none", False, line_of(path, '- "25"'))]
    messages = [problem.message for problem in result.configs[0].problems]
    assert any("no port label: Traefik takes the lowest port the container exposes, here 25" in m for m in messages)
    assert any(m.startswith("service 'hidden': no traefik.enable=true while exposedByDefault is false") for m in messages)


def test_servers_transport_in_labels_is_said_not_guessed(tmp_path):
    path, result = check(tmp_path, compose(smtp(header="serverstransport=pp@file") +
                                           "\n- traefik.tcp.serverstransports.pp.proxyprotocol.version=2"))
    assert result.configs[0].routes == ()
    problems = {problem.origin.line: problem.message for problem in result.configs[0].problems}
    assert "no serversTransport from labels" in problems[line_of(path, "serverstransports.pp")]
    assert "what it sends is not known" in problems[line_of(path, "serverstransport=pp@file")]
    assert "PD101" not in [judgement.code for judgement in result.judgements]


def test_command_as_one_string(tmp_path):
    traefik = ("  traefik:\n    image: docker.io/library/traefik:v3.1\n"
               "    command: --entrypoints.smtp.address=:25 --entrypoints.smtp.proxyprotocol.insecure\n")
    path, result = check(tmp_path, compose("""
        - traefik.tcp.routers.smtp.rule=HostSNI(`*`)
        - traefik.tcp.services.smtp.loadbalancer.server.port=25
        """, traefik=traefik), None)
    (front,) = result.configs[0].listeners
    assert (front.port, front.accepts_header, front.header_optional) == (25, True, True)
    assert front.origin.line == line_of(path, "command:")
    assert routes(result) == [(25, f"{STALWART_IP}:25", "none", False, line_of(path, "server.port=25"))]


# --- findings and fixes on the label lines -----------------------------------------------------


def test_missing_proxy_protocol_label_toward_trusting_listener_is_pd101_and_fixed(tmp_path):
    path, result = check(tmp_path, compose("""
        - traefik.enable=true
        - traefik.tcp.routers.smtp.rule=HostSNI(`*`)
        - traefik.tcp.routers.smtp.entrypoints=smtp
        - traefik.tcp.routers.smtp.service=smtp
        - traefik.tcp.services.smtp.loadbalancer.server.port=25
        """))
    found = only(result, "PD101")
    assert not found.inferred
    port_line = line_of(path, "loadbalancer.server.port=25")
    assert found.evidence["proxy"] == f"{path}:{port_line}: - traefik.tcp.services.smtp.loadbalancer.server.port=25"
    assert found.evidence["source"] == TRAEFIK_IP
    labels = fixed_labels(path, found)
    assert "traefik.tcp.services.smtp.loadbalancer.proxyProtocol.version=2" in labels
    assert len(labels) == 6


def test_missing_header_on_implicit_service_adds_a_service_named_after_the_router(tmp_path):
    path, result = check(tmp_path, compose("""
        traefik.enable: "true"
        traefik.tcp.routers.imaps.rule: HostSNI(`*`)
        traefik.tcp.routers.imaps.entrypoints: imaps
        traefik.tcp.routers.imaps.tls.passthrough: "true"
        """, extra="    expose:\n      - 993\n"))
    found = only(result, "PD101")
    labels = fixed_labels(path, found)
    assert 'traefik.tcp.services.imaps.loadbalancer.proxyProtocol.version=2' in labels
    # read again, the fixed file has the header and nothing left to say
    path.write_text(fixes.apply(path.read_text(), found.edits, str(path)))
    stalwart = load_stalwart(str(tmp_path / "config.toml"))
    again = check_configurations([str(path)], stalwart)
    assert [route.sends for route in again.configs[0].routes] == ["v2"]
    assert "PD101" not in [judgement.code for judgement in again.judgements]


def test_header_to_listener_that_does_not_trust_traefik_is_pd102_and_the_label_removed(tmp_path):
    path, result = check(tmp_path, compose(smtp()), STALWART_NO_TRUST)
    found = only(result, "PD102")
    version_line = line_of(path, "proxyProtocol.version=2")
    assert found.evidence["header"].startswith(f"{path}:{version_line}:")
    assert only(result, "PD206").evidence["source"] == TRAEFIK_IP
    labels = fixed_labels(path, found)
    assert not any("proxyProtocol" in label for label in labels) and len(labels) == 4


def test_mx_port_remapped_by_the_port_label_is_pd209_and_fixed(tmp_path):
    stalwart = STALWART_MAIL_TRUST.replace('bind = ["[::]:25"]', 'bind = ["[::]:10025"]')
    path, result = check(tmp_path, compose(smtp(port=10025)), stalwart)
    found = only(result, "PD209")
    assert found.evidence["proxy"].startswith(f"{path}:{line_of(path, 'server.port=10025')}:")
    labels = fixed_labels(path, found)
    assert "traefik.tcp.services.smtp.loadbalancer.server.port=25" in labels
    assert "PD102" not in [judgement.code for judgement in result.judgements]


def test_tls_terminated_by_traefik_is_pd301_and_passed_through_instead(tmp_path):
    path, result = check(tmp_path, compose("""
        - traefik.enable=true
        - traefik.tcp.routers.submissions.rule=HostSNI(`mail.example.com`)
        - traefik.tcp.routers.submissions.entrypoints=submissions
        - traefik.tcp.routers.submissions.tls=true
        - traefik.tcp.services.submissions.loadbalancer.server.port=587
        - traefik.tcp.services.submissions.loadbalancer.proxyProtocol.version=2
        """))
    found = only(result, "PD301")
    assert found.evidence["front"].startswith(f"{path}:{line_of(path, 'submissions.tls=true')}:")
    labels = fixed_labels(path, found)
    assert "traefik.tcp.routers.submissions.tls.passthrough=true" in labels
    assert "traefik.tcp.services.submissions.loadbalancer.server.port=465" in labels
    assert "traefik.tcp.routers.submissions.tls=true" not in labels


def test_rule_that_reads_the_client_first_is_pd110_and_fixed(tmp_path):
    path, result = check(tmp_path, compose(smtp(rule="ClientIP(`0.0.0.0/0`) || HostSNI(`mail.example.com`)")))
    found = only(result, "PD110")
    assert found.evidence["proxy"].startswith(f"{path}:{line_of(path, 'routers.smtp.rule=')}:")
    assert "traefik.tcp.routers.smtp.rule=HostSNI(`*`)" in fixed_labels(path, found)


def test_a_label_not_rooted_at_lower_case_traefik_drops_the_container_and_a_bad_port_is_said_once(tmp_path):
    path, result = check(tmp_path, compose(smtp(port=25) + "\n- Traefik.tcp.routers.smtp.priority=1"), None)
    assert result.configs[0].routes == ()
    assert [problem.origin.line for problem in result.configs[0].problems] == [line_of(path, "Traefik.tcp")]
    path, result = check(tmp_path, compose(smtp(port="${SMTP_PORT}")), None)
    assert [problem.message for problem in result.configs[0].problems] == ["service 'smtp': port '${SMTP_PORT}' is not a number"]
