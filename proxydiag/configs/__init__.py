"""Proxy configurations: readers (text -> ProxyConfig), and `check`, which reads them
with Stalwart's and reports what the traffic would show."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from proxydiag.configs import (
    caddy,
    compose,
    crosscheck,
    envoy,
    haproxy,
    kubernetes,
    nginx,
    stalwart_proxy,
    stunnel,
    traefik,
)
from proxydiag.configs.model import ConfigReadError, FrontListener, ProxyConfig
from proxydiag.model import Analysis
from proxydiag.rules.base import SEVERITIES, Finding
from proxydiag.stalwart_config import StalwartConfig
from proxydiag.userinput import read_text_bounded

KINDS = ("haproxy", "nginx", "stunnel", "traefik", "caddy", "envoy", "kubernetes", "stalwart-proxy")
# Kinds recognised but not read: what to say instead of a wrong guess.
NOT_READ = (
    ("Stalwart's configuration (give it with --stalwart-config)",
     re.compile(r"(?m)^[ \t]*\[?server\.(listener|proxy)\b|\"(NetworkListener|proxyTrustedNetworks)\"")),
    ("a Kubernetes manifest without a Service or Traefik TCP route", re.compile(r"(?m)^[ \t]*apiVersion\s*:")),
)
# Structured kinds first: their files can hold words the text formats look for.
DETECTORS = (
    ("stalwart-proxy", stalwart_proxy.looks_like),
    ("envoy", envoy.looks_like), ("traefik", traefik.looks_like), ("kubernetes", kubernetes.looks_like),
    ("caddy", caddy.looks_like), ("haproxy", haproxy.looks_like), ("nginx", nginx.looks_like),
    ("stunnel", stunnel.looks_like),
)


def detect_kind(text: str) -> str | None:
    return next((kind for kind, looks_like in DETECTORS if looks_like(text)), None)


def load(path: str, kind: str | None = None, entry_points: dict[str, FrontListener] | None = None) -> ProxyConfig:
    """One configuration file, of the kind given or recognised from its content (Traefik
    routes find their entry points in `entry_points`, from the other files given)."""
    kind = kind or kind_of(path)
    if kind == "traefik":
        return traefik.load(path, entry_points)
    reader = {"haproxy": haproxy.load, "nginx": nginx.load, "stunnel": stunnel.load, "caddy": caddy.load,
              "envoy": envoy.load, "kubernetes": kubernetes.load, "stalwart-proxy": stalwart_proxy.load}.get(kind)
    if reader is None:
        raise ConfigReadError(path, None, f"unknown kind {kind!r} (one of {', '.join(KINDS)})")
    return reader(path)


def kind_of(path: str) -> str:
    try:
        text = read_text_bounded(path)
    except OSError as error:
        raise ConfigReadError(path, None, f"cannot read ({error.strerror or error})") from None
    kind = detect_kind(text)
    if kind is None:
        other = next((name for name, pattern in NOT_READ if pattern.search(text)), None)
        raise ConfigReadError(path, None, f"this looks like {other}, which check does not read" if other else
                              f"not a configuration check reads ({', '.join(KINDS)}; --kind to say which)")
    return kind


@dataclass
class CheckResult:
    configs: list[ProxyConfig] = field(default_factory=list)
    errors: list[ConfigReadError] = field(default_factory=list)
    judgements: list[crosscheck.Judgement] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    stalwart: StalwartConfig | None = None

    def document(self) -> dict:
        """The report document (schema proxydiag/1) with the configurations as inputs."""
        analysis = Analysis(stalwart_config=self.stalwart, findings=self.findings)
        document = analysis.to_dict()
        document["proxy_configs"] = [config.to_dict() for config in self.configs]
        document["proxy_config_errors"] = [str(error) for error in self.errors]
        return document


def check(paths: Sequence[str], stalwart: StalwartConfig | None = None, kind: str | None = None,
          server_addresses: Sequence[str] = ()) -> CheckResult:
    """Read every file (the unreadable ones are reported, the others still checked) and
    judge them together with Stalwart's configuration."""
    result = CheckResult(stalwart=stalwart)
    published = tuple(mapping for path in paths for mapping in compose.published_ports(path))
    entry_points = traefik.entry_points_of([path for path in paths if _is_kind(path, kind, "traefik")])
    # HAProxy files that are one configuration split up are read together, at the first one's place
    groups = haproxy.load_groups([path for path in paths if _is_kind(path, kind, "haproxy")])
    first = {members[0]: read for members, read in groups}
    later = {path for members, _ in groups for path in members[1:]}
    for path in paths:
        if kind is None and any(mapping.origin.path == path for mapping in published) and not _is_kind(path, None, "traefik"):
            continue  # a compose file without Traefik: only its published ports matter here
        try:
            read = first.get(path) or (None if path in later else load(path, kind, entry_points))
        except ConfigReadError as error:
            read = error
        if isinstance(read, ConfigReadError):
            result.errors.append(read)
        elif read is not None:
            result.configs.append(read)
    setting = crosscheck.Setting(stalwart=stalwart, server_addresses=frozenset(server_addresses), published=published)
    result.judgements = crosscheck.check(result.configs, setting)
    findings = [crosscheck.to_finding(judgement) for judgement in result.judgements]
    findings += [finding for finding in _stalwart_findings(stalwart)
                 if not (finding.code == "PD604" and _headers_reach(finding.evidence.get("listener"), result.configs, stalwart))]
    findings.sort(key=lambda finding: (SEVERITIES.index(finding.severity), finding.code))
    result.findings = findings
    return result


def _is_kind(path: str, given: str | None, wanted: str) -> bool:
    if given is not None:
        return given == wanted
    try:
        return kind_of(path) == wanted
    except ConfigReadError:
        return False


def _headers_reach(listener_id: str | None, configs: Sequence[ProxyConfig], stalwart: StalwartConfig | None) -> bool:
    """Whether the proxies given forward to that Stalwart listener's ports, and every one of
    their routes there sends a header (PD604's worry, a proxy that sends none, is then not
    what these configurations do)."""
    listener = next((item for item in stalwart.listeners if item.id == listener_id), None) if stalwart else None
    if listener is None:
        return False
    routes = [route for config in configs for route in config.routes if route.target_port in listener.ports]
    return bool(routes) and all(route.sends != "none" for route in routes)


def _stalwart_findings(stalwart: StalwartConfig | None) -> list[Finding]:
    """The PD6xx checks of the Stalwart file alone (the same rules `analyze` runs)."""
    if stalwart is None:
        return []
    from proxydiag.expectations import ExpectationResolver
    from proxydiag.judging import judge_all
    from proxydiag.rules.base import Options
    from proxydiag.tally import Tally

    return judge_all([], Tally(ExpectationResolver(None, {}, stalwart, None)), Options(), stalwart)
