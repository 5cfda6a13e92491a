"""The findings catalog: one rule per finding, run over an analysis.

Adding a finding touches one rule (in the module of its block) and one page
(docs/findings/PDxxx.md)."""

from __future__ import annotations

from proxydiag.correlate import LegIndex
from proxydiag.expectations import ExpectationResolver
from proxydiag.model import Analysis, Connection
from proxydiag.proxy_protocol import PP2_TYPE_AWS, PP2_TYPE_AZURE, PP2_TYPE_GCP, PP2_TYPE_UNIQUE_ID
from proxydiag.rules import address, capture, config, header, http, server, tls
from proxydiag.rules.base import MAX_CITED_CONNECTIONS, SEVERITIES, Context, Finding, Hit, Options, Rule

ALL_RULES: list[Rule] = [
    *header.RULES,
    *address.RULES,
    *tls.RULES,
    *server.RULES,
    *http.RULES,
    *config.RULES,
    *capture.RULES,
]
RULES_BY_CODE = {rule.code: rule for rule in ALL_RULES}

__all__ = ["ALL_RULES", "RULES_BY_CODE", "Options", "judge", "recognise_proxy"]


def judge(analysis: Analysis, resolver: ExpectationResolver, options: Options, stalwart=None) -> list[Finding]:
    """Run every rule; hits of one rule on one group (usually a server endpoint) make
    one finding. Findings come out most severe first."""
    for conn in analysis.connections:
        resolver.observe(conn)
    ctx = Context(
        connections=analysis.connections,
        expectations=resolver,
        options=options,
        config=stalwart,
        legs=LegIndex.build(analysis.connections),
        inputs=analysis.inputs,
        flow_table=analysis.flow_table,
    )
    for conn in analysis.connections:
        conn.expectation = resolver.for_connection(conn)
    grouped: dict[tuple, tuple[Rule, list[Hit]]] = {}
    for rule in ALL_RULES:
        for conn in analysis.connections:
            for hit in rule.check(conn, ctx):
                _collect(grouped, rule, hit)
        for hit in rule.finish(ctx):
            _collect(grouped, rule, hit)
    findings = [_finding(rule, hits) for rule, hits in grouped.values()]
    findings.sort(key=lambda finding: (SEVERITIES.index(finding.severity), finding.note, finding.code, finding.connections[:1]))
    return findings


def _is_note(rule: Rule, hit: Hit) -> bool:
    """A hit its rule lowered for what the situation is (a local test), not for doubt:
    context, shown after the findings of its severity."""
    lowered = hit.severity is not None and SEVERITIES.index(hit.severity) > SEVERITIES.index(rule.severity)
    return lowered and not hit.inferred


def _collect(grouped: dict, rule: Rule, hit: Hit) -> None:
    key = (rule.code, hit.group, hit.severity)
    grouped.setdefault(key, (rule, []))[1].append(hit)


def _finding(rule: Rule, hits: list[Hit]) -> Finding:
    first = hits[0]
    conns: list[Connection] = []
    seen = set()
    for hit in hits:
        for conn in hit.connections:
            if conn.id not in seen:
                seen.add(conn.id)
                conns.append(conn)
    conns.sort(key=lambda conn: conn.id)
    cited = conns[:MAX_CITED_CONNECTIONS]
    proxy = first.proxy or next((recognise_proxy(conn) for conn in cited if recognise_proxy(conn)), None)
    return Finding(
        code=rule.code,
        slug=rule.slug,
        severity=first.severity or rule.severity,
        message=first.message,
        connections=[conn.id for conn in cited],
        frames=[conn.first_frame for conn in cited],
        count=len(conns),
        evidence=first.evidence,
        inferred=first.inferred,
        doc=f"docs/findings/{rule.code}.md",
        proxy=proxy,
        note=_is_note(rule, first),
    )


def recognise_proxy(conn: Connection) -> str | None:
    """Which proxy sent this header, where its bytes say so (never a guess)."""
    header = conn.header
    if header is None:
        return None
    types = {tlv.type for tlv in header.tlvs}
    if types & {PP2_TYPE_AWS, PP2_TYPE_AZURE, PP2_TYPE_GCP}:
        return "Cloud load balancers"
    if header.ssl is not None or PP2_TYPE_UNIQUE_ID in types or (header.command == "LOCAL" and header.version == 2):
        return "HAProxy"
    return None
