"""What a probe's connections say: each step's outcome, the listener's verdict (does it
greet, does it want a header, from this host?), and the catalog's findings with their
evidence and fixes. Pure: it reads `StepRecord`s and writes dictionaries."""

from __future__ import annotations

from dataclasses import dataclass

from proxydiag.facts.probe_hops import (
    ANSWERS_HEADER,
    CONNECT_FAILED,
    CUT,
    GREETS,
    GREETS_AFTER_CLIENT,
    REFUSED,
    SILENT,
    TLS_FAILED,
    answered_hop,
    local_refused_hop,
    opening_of,
    outcome,
    refused_hop,
    tlv_hop,
    unheaded_hop,
    verdict,
)
from proxydiag.jsontypes import JsonDict
from proxydiag.parsers.proxy_protocol import parse
from proxydiag.parsers.redact import mask_line, printable
from proxydiag.probe import StepRecord, TargetProbe
from proxydiag.probe.steps import service_of
from proxydiag.rules.base import Finding, Lowered
from proxydiag.rules.finding import make_finding
from proxydiag.rules.hops import (
    DUPLICATE_HEADER,
    EXPECTS_HEADER_FROM_CLIENT,
    LOCAL_COMMAND,
    SERVER_REJECTED,
    TLS_FLAG_LOST,
    UNEXPECTED_HEADER,
    WAITS_FOR_CLIENT,
    judge_hops,
)
from proxydiag.rules.said import Names, Said, endpoint

MAX_EXCHANGE_LINES = 12

# --- evidence -----------------------------------------------------------------------------


def header_summary(header: bytes) -> str:
    if not header:
        return "no header"
    parsed = parse(header).header
    if parsed is None:
        return f"{len(header)} bytes"
    if parsed.version == 1:
        return printable(header.rstrip(b"\r\n"))
    ssl = " + SSL TLV (client used TLS)" if parsed.ssl else ""
    return f"PROXY v2 {parsed.command} {parsed.family}{ssl} ({len(header)} bytes)"


def exchange_lines(record: StepRecord, limit: int = MAX_EXCHANGE_LINES) -> list[str]:
    """The conversation as the probe saw it: `C:` the probe, `S:` the server, times in
    seconds since the connection was made; wire text escaped, client text masked."""
    lines = []
    if record.connect_error:
        return [f"connect: {record.connect_error}"]
    if record.header:
        lines.append(f"0.000 C: {header_summary(record.header)}")
    elif record.spoke_before_greeting:
        lines.append("0.000 C: (nothing: the probe waits for a greeting)")
    if record.tls is not None:
        lines.append(f"C/S: TLS handshake: {_tls_line(record.tls)}")
    lines += _text_lines(record)
    if record.ended_by and record.ended_by != "probe":
        lines.append(f"{record.ended_at:.3f} S: {'reset' if record.ended_by == 'server-rst' else 'closed'}")
    if record.cut:
        lines.append(f"{record.ended_at:.3f} C: (stopped reading: {record.cut})")
    elif record.greeting_unfinished:
        lines.append(f"{record.ended_at:.3f} C: (no whole greeting within the timeout: the probe left without a word)")
    if len(lines) > limit:
        lines = lines[: limit - 1] + [f"... ({len(lines) - limit + 1} more lines)"]
    return lines


def _text_lines(record: StepRecord) -> list[str]:
    """Application lines, in the order they crossed; TLS records are not shown as text."""
    if record.tls is not None or record.starttls is not None:
        return [f"C: {mask_line(printable(line))}" for line in record.client_text.splitlines()[:4]] + \
               [f"S: {printable(line)}" for line in record.server_text.splitlines()[:6]]
    lines = []
    for event in record.events:
        if not event.data or (event.side == "client" and event.data == record.header):
            continue
        tag = "C" if event.side == "client" else "S"
        for line in event.data.splitlines():
            shown = mask_line(printable(line)) if tag == "C" else printable(line)
            lines.append(f"{event.at:.3f} {tag}: {shown}")
    return lines


def _tls_line(tls: JsonDict) -> str:
    if not tls["ok"]:
        return tls["error"]
    return f"{tls['version']} {tls['cipher']}, {certificate_line(tls)}"


def certificate_line(tls: JsonDict) -> str:
    """The server's certificate in a few words: its subject and expiry, or why it could not be read."""
    if tls.get("unreadable"):
        return tls["unreadable"]
    if tls["subject"] is None:
        return "no certificate"
    return f"certificate {tls['subject']} (expires {tls['not_after']})"


# --- findings -----------------------------------------------------------------------------


def findings(probe: TargetProbe, facts: JsonDict) -> list[Finding]:
    """The catalog's findings this target's connections show."""
    if probe.error:
        return []
    by_step = {record.step: record for record in probe.records}
    outcomes = {step: outcome(record) for step, record in by_step.items()}
    found = []
    none = by_step.get("none")
    unheaded = unheaded_hop(probe, facts)
    for hit in judge_hops([unheaded] if unheaded is not None else [], (WAITS_FOR_CLIENT, EXPECTS_HEADER_FROM_CLIENT)):
        if hit.code == WAITS_FOR_CLIENT.code and none is not None:
            waited = none.probe_spoke_at or 0.0
            after = (none.first_server_byte or waited) - waited
            found.append(_finding(hit.code, hit.said, none, ["none"], {
                "waited_silently_s": round(waited, 3), "greeting_after_client_s": round(after, 3)}))
        else:
            found.append(_finding(hit.code, hit.said, none, ["none", *facts["headers_accepted"]], {
                "without_header": _describe(outcomes["none"])}))
    answered = facts["headers_answered_as_commands"] + [step for step in facts["headers_refused"] if outcomes[step] == TLS_FAILED]
    if answered and facts["greets_without_header"]:
        first = by_step[answered[0]]
        first_opening = opening_of(first)
        replies = first_opening.replies_before_commands if first_opening else []
        for hit in judge_hops([answered_hop(probe, first, answered)], (UNEXPECTED_HEADER, DUPLICATE_HEADER)):
            found.append(_finding(hit.code, hit.said, first, answered, {"replies_to_header": replies}, lowered=hit.lowered))
    opened = none or (probe.records[0] if probe.records else None)
    if opened is not None:
        for hit in judge_hops([refused_hop(probe, opened, list(outcomes), _cut_everything(outcomes))], (SERVER_REJECTED,)):
            found.append(_finding(hit.code, hit.said, none, list(outcomes), {}, lowered=hit.lowered))
    local = by_step.get("v2-local")
    if local is not None and outcomes.get("v2") == GREETS and LOCAL_COMMAND.applies(
            local_refused_hop(probe, local, outcomes["v2-local"] != GREETS)):
        found.append(_finding(LOCAL_COMMAND.code, LocalRefusedSaid(probe.address or probe.target.host, probe.target.port,
                                                         _describe(outcomes["v2-local"])),
                              by_step["v2-local"], ["v2-local"], {}))
    with_tlv = by_step.get("v2-ssl")
    tlv_hit = TLS_FLAG_LOST.judge(tlv_hop(probe, with_tlv, facts)) if with_tlv is not None else None
    if tlv_hit is not None:
        found.append(_finding(tlv_hit.code, tlv_hit.said, with_tlv, ["v2", "v2-ssl"],
                              {"offer": facts["ssl_tlv_changes_offer"]}, lowered=tlv_hit.lowered))
    return found


@dataclass(frozen=True)
class LocalRefusedSaid(Said):
    address: str
    port: int
    answer: str  # what the listener did, in proxydiag's words

    def message(self, names: Names) -> str:
        return (f"{endpoint(names, self.address, self.port)} takes a v2 PROXY header but not a v2 LOCAL one "
                f"({self.answer}): health checks that send LOCAL headers fail against it.")


def _cut_everything(outcomes: dict[str, str]) -> bool:
    return len(outcomes) > 1 and all(result in (CUT, REFUSED) for result in outcomes.values())


def _describe(result: str) -> str:
    return {
        SILENT: "it stayed silent", CUT: "it closed or reset the connection", REFUSED: "it refused in its greeting",
        ANSWERS_HEADER: "it answered the header as commands", TLS_FAILED: "the TLS handshake failed",
        GREETS_AFTER_CLIENT: "it greeted only after the client spoke", GREETS: "it greeted",
        CONNECT_FAILED: "the connection failed",
    }[result]


def _finding(code: str, message: Said, record: StepRecord | None, steps: list[str], extra: JsonDict,
             lowered: Lowered | None = None) -> Finding:
    evidence = {"steps": steps, **extra}
    if record is not None:
        evidence["exchange"] = exchange_lines(record)
    return make_finding(code, message, evidence, lowered=lowered)


# --- the document ---------------------------------------------------------------------------

SCHEMA = "proxydiag-probe/1"


def step_dict(record: StepRecord) -> JsonDict:
    opening = opening_of(record)
    return {
        "step": record.step,
        "header": header_summary(record.header),
        "header_hex": record.header.hex(),
        "local": _address(record.local),
        "outcome": outcome(record),
        "connect_error": record.connect_error,
        "time_to_first_byte": record.first_server_byte,
        "probe_spoke_first_at": record.probe_spoke_at if record.spoke_before_greeting else None,
        "greeting": opening.greeting if opening else None,
        "replies_to_header": opening.replies_before_commands if opening and record.header else [],
        "capabilities": opening.capabilities if opening else [],
        "starttls_offered": opening.starttls_offered if opening else None,
        "auth_mechanisms": opening.auth_mechanisms if opening else [],
        "ended_by": record.ended_by,
        "ended_at": record.ended_at,
        "stopped_reading": record.cut,
        "greeting_unfinished": record.greeting_unfinished,
        "tls": record.tls,
        "starttls": record.starttls,
        "exchange": exchange_lines(record, limit=40),
    }


def _address(pair: tuple[str, int]) -> str | None:
    host, port = pair
    if not host:
        return None
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def target_dict(probe: TargetProbe, facts: JsonDict | None) -> JsonDict:
    service = service_of(probe.target.port)
    return {
        "target": str(probe.target),
        "address": probe.address,
        "port": probe.target.port,
        "service": service.name if service else None,
        "role": probe.judged_as,
        "planned_connections": probe.planned,
        "connections": len(probe.records),
        "stopped_early": probe.stopped if probe.stopped != "connect" else None,
        "error": probe.error,
        "verdict": facts,
        "steps": [step_dict(record) for record in probe.records],
    }


def document(probes: list[TargetProbe], options: JsonDict) -> JsonDict:
    """The probe's JSON document (schema proxydiag-probe/1; docs/guide.md lists its keys)."""
    targets, all_findings = [], []
    for probe in probes:
        facts = verdict(probe) if not probe.error else None
        targets.append(target_dict(probe, facts))
        for finding in findings(probe, facts) if facts else []:
            all_findings.append({**finding.to_dict(), "target": str(probe.target)})
    severities = [finding["severity"] for finding in all_findings]
    return {
        "schema": SCHEMA,
        "options": options,
        "summary": {
            "targets": len(probes),
            "connections": sum(len(probe.records) for probe in probes),
            "unusable": sum(1 for probe in probes if probe.error),
            "errors": severities.count("error"),
            "warnings": severities.count("warning"),
            "infos": severities.count("info"),
        },
        "targets": targets,
        "findings": all_findings,
    }
