"""`proxydiag check`: every configuration file read (the unreadable ones reported, the
others still checked), then judged together with Stalwart's configuration by the same
rules as the traffic."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from proxydiag.configs import compose, haproxy, kind_of, load, traefik_entry_points
from proxydiag.configs.model import ConfigReadError, ProxyConfig, Route
from proxydiag.configs.stalwart import StalwartConfig
from proxydiag.facts.expectations import ExpectationResolver
from proxydiag.facts.model import Analysis
from proxydiag.jsontypes import JsonDict
from proxydiag.rules import crosscheck
from proxydiag.rules.base import SEVERITIES, Finding, Options
from proxydiag.rules.judge import judge_all
from proxydiag.rules.tally import Tally


@dataclass
class CheckResult:
    configs: list[ProxyConfig] = field(default_factory=list)
    errors: list[ConfigReadError] = field(default_factory=list)
    judgements: list[crosscheck.Judgement] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    stalwart: StalwartConfig | None = None

    def document(self) -> JsonDict:
        """The report document (schema proxydiag/1) with the configurations as inputs."""
        analysis = Analysis(stalwart_config=self.stalwart, findings=self.findings)
        document = analysis.to_dict()
        document["proxy_configs"] = [config.to_dict() for config in self.configs]
        document["proxy_config_errors"] = [str(error) for error in self.errors]
        return document


def check_configurations(paths: Sequence[str], stalwart: StalwartConfig | None = None, kind: str | None = None,
          server_addresses: Sequence[str] = (), judge_stalwart_file: bool = True) -> CheckResult:
    """Read every file (the unreadable ones are reported, the others still checked) and
    judge them together with Stalwart's configuration (and the Stalwart file itself, unless
    the caller's own judging does: `analyze` with captures)."""
    result = CheckResult(stalwart=stalwart)
    kinds = {path: kind or _recognised(path) for path in paths}  # each file's content read once for its kind
    published = tuple(mapping for path in paths for mapping in compose.published_ports(path))
    entry_points = traefik_entry_points([path for path in paths if kinds[path] == "traefik"])
    # HAProxy files that are one configuration split up are read together, at the first one's place
    groups = haproxy.load_groups([path for path in paths if kinds[path] == "haproxy"])
    first = {members[0]: read for members, read in groups}
    later = {path for members, _ in groups for path in members[1:]}
    for path in paths:
        if kind is None and kinds[path] != "traefik" and any(mapping.origin.path == path for mapping in published):
            continue  # a compose file without Traefik: only its published ports matter here
        try:
            read = first.get(path) or (None if path in later else load(path, kinds[path], entry_points))
        except ConfigReadError as error:
            read = error
        if isinstance(read, ConfigReadError):
            result.errors.append(read)
        elif read is not None:
            result.configs.append(read)
    setting = crosscheck.Setting(stalwart=stalwart, server_addresses=frozenset(server_addresses), published=published)
    result.judgements = crosscheck.check(result.configs, setting)
    findings = [crosscheck.to_finding(judgement) for judgement in result.judgements]
    if judge_stalwart_file:
        findings += _stalwart_findings(stalwart, tuple(route for config in result.configs for route in config.routes))
    findings.sort(key=lambda finding: (SEVERITIES.index(finding.severity), finding.code))
    result.findings = findings
    return result


def _recognised(path: str) -> str | None:
    """The file's kind from its content; None where it has none (`load` then says why)."""
    try:
        return kind_of(path)
    except ConfigReadError:
        return None


def _stalwart_findings(stalwart: StalwartConfig | None, routes: tuple[Route, ...]) -> list[Finding]:
    """The checks of the Stalwart file, read with the given proxies' routes (the same rules
    `analyze` runs)."""
    if stalwart is None:
        return []
    return judge_all([], Tally(ExpectationResolver(None, {}, stalwart, None)), Options(), stalwart, proxy_routes=routes)
