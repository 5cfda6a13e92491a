"""What a probe's connections say: each step's outcome, the listener's verdict (does it
greet, does it want a header, from this host?), and the catalog's findings with their
evidence and fixes. Pure: it reads `StepRecord`s and writes dictionaries."""

from __future__ import annotations

from proxydiag.jsontypes import JsonDict
from proxydiag.parsers.protocols import MailOpening
from proxydiag.parsers.proxy_protocol import parse
from proxydiag.parsers.redact import mask_line, printable
from proxydiag.probe import StepRecord, TargetProbe
from proxydiag.probe.steps import service_of
from proxydiag.rules.base import Finding, Lowered
from proxydiag.rules.finding import make_finding

MAX_EXCHANGE_LINES = 12

# Step outcomes
CONNECT_FAILED = "connect-failed"
TLS_FAILED = "tls-failed"
GREETS = "greets"
ANSWERS_HEADER = "answers-header-as-commands"
GREETS_AFTER_CLIENT = "greets-after-client-spoke"
REFUSED = "refused"
CUT = "cut"
SILENT = "silent"


def outcome(record: StepRecord) -> str:
    if record.connect_error is not None:
        return CONNECT_FAILED
    if record.tls is not None and not record.tls["ok"]:
        return TLS_FAILED
    opening = record.opening
    if isinstance(opening, MailOpening) and opening.greeting is not None:
        if opening.greeting_refused:
            return REFUSED
        if record.spoke_before_greeting:
            return GREETS_AFTER_CLIENT
        if record.header and opening.replies_before_commands:
            return ANSWERS_HEADER
        return GREETS
    if record.server_text:
        return GREETS  # a protocol without a greeting the recognisers know (HTTP answers, ...)
    return CUT if record.ended_by in ("server-fin", "server-rst") else SILENT


def _opening(record: StepRecord) -> MailOpening | None:
    return record.opening if isinstance(record.opening, MailOpening) else None


def verdict(probe: TargetProbe) -> JsonDict:
    """The listener in a few facts (the JSON document's `verdict`)."""
    by_step = {record.step: record for record in probe.records}
    outcomes = {record.step: outcome(record) for record in probe.records}
    none = by_step.get("none")
    headers = [step for step in outcomes if step != "none"]
    accepted = [step for step in headers if outcomes[step] == GREETS]
    answered = [step for step in headers if outcomes[step] == ANSWERS_HEADER]
    greets_plain = outcomes.get("none") == GREETS
    expects_header = None
    if outcomes.get("none") in (SILENT, CUT, REFUSED) and accepted:
        expects_header = True
    elif greets_plain:
        expects_header = False
    best = next((r for r in probe.records if outcome(r) in (GREETS, GREETS_AFTER_CLIENT) and _opening(r)), None)
    opening = _opening(best) if best else None
    return {
        "greets_without_header": greets_plain,
        "time_to_greeting": none.greeting_time if none is not None and greets_plain else None,
        "greets_only_after_client_spoke": outcomes.get("none") == GREETS_AFTER_CLIENT,
        "expects_header": expects_header,
        "headers_accepted": accepted,
        "headers_answered_as_commands": answered,
        "headers_refused": [step for step in headers if outcomes[step] in (REFUSED, CUT, TLS_FAILED, SILENT)],
        "trusted": _trusted(outcomes, accepted),
        "protocol": opening.protocol if opening else None,
        "software": (opening.software or {}).get("name") if opening and opening.software else None,
        "capabilities": opening.capabilities if opening else [],
        "starttls_offered": opening.starttls_offered if opening else None,
        "auth_mechanisms": opening.auth_mechanisms if opening else [],
        "ssl_tlv_changes_offer": _tlv_changes_offer(by_step, outcomes),
        "tls": next((r.tls for r in probe.records if r.tls and r.tls["ok"]), None),
        "starttls": next((r.starttls for r in probe.records if r.starttls), None),
    }


def _trusted(outcomes: dict[str, str], accepted: list[str]) -> bool | None:
    """Whether the listener takes PROXY headers from this host: it read one as a header
    (and greeted), or it answered them as commands / cut every connection."""
    if any(step in accepted for step in ("v1", "v2", "v2-ssl")):
        return True
    header_outcomes = [result for step, result in outcomes.items() if step != "none"]
    if header_outcomes and all(result in (ANSWERS_HEADER, CUT, REFUSED, TLS_FAILED) for result in header_outcomes):
        return False
    return None


def _tlv_changes_offer(by_step: dict[str, StepRecord], outcomes: dict[str, str]) -> JsonDict | None:
    """STARTTLS and AUTH mechanisms offered with a plain v2 header and with the SSL TLV."""
    if outcomes.get("v2") != GREETS or outcomes.get("v2-ssl") != GREETS:
        return None
    plain, ssl = _opening(by_step["v2"]), _opening(by_step["v2-ssl"])
    if plain is None or ssl is None or plain.starttls_offered is None or ssl.starttls_offered is None:
        return None
    return {
        "changed": (plain.starttls_offered, plain.auth_mechanisms) != (ssl.starttls_offered, ssl.auth_mechanisms),
        "without_tlv": {"starttls": plain.starttls_offered, "auth": plain.auth_mechanisms},
        "with_tlv": {"starttls": ssl.starttls_offered, "auth": ssl.auth_mechanisms},
    }


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
    role = probe.judged_as
    by_step = {record.step: record for record in probe.records}
    outcomes = {step: outcome(record) for step, record in by_step.items()}
    target = str(probe.target)
    found = []
    none = by_step.get("none")
    if none is not None and outcomes["none"] == GREETS_AFTER_CLIENT:
        waited = none.probe_spoke_at or 0.0
        after = (none.first_server_byte or waited) - waited
        found.append(_finding("PD110",
            f"{target} greets only once the client speaks: no greeting while the probe stayed silent for {waited:.1f} s, "
            f"then one {after:.3f} s after its first command. Mail clients wait for the greeting: they hang until "
            "their timeout (the proxy waits for the client before it connects to the server or sends its header).",
            none, ["none"], {"waited_silently_s": round(waited, 3), "greeting_after_client_s": round(after, 3)}))
    if facts["expects_header"] and role == "front":
        found.append(_finding("PD109",
            f"{target} is a public mail port, yet it waits for a PROXY header: it never greeted a client without one "
            f"({_describe(outcomes['none'])}) but greeted with {', '.join(facts['headers_accepted'])}. Real clients send "
            "no header: the proxy was told to accept headers from clients instead of sending them to the server.",
            none, ["none", *facts["headers_accepted"]], {}))
    answered = facts["headers_answered_as_commands"] + [step for step in facts["headers_refused"] if outcomes[step] == TLS_FAILED]
    if answered and facts["greets_without_header"]:
        first = by_step[answered[0]]
        first_opening = _opening(first)
        replies = first_opening.replies_before_commands if first_opening else []
        if role == "server":
            found.append(_finding("PD102",
                f"{target} greets without a header and answers PROXY headers ({', '.join(answered)}) as commands: it takes "
                "no header from this host (this host is not in its trusted networks, or the listener has no PROXY "
                "support on). A proxy sending headers to it breaks every session.",
                first, answered, {"replies_to_header": replies}))
        else:  # right for a public port: it hurts only once a proxy sending headers is put in front
            found.append(_finding("PD106",
                f"{target} answers a PROXY header from its client as commands ({', '.join(answered)}): right for a public "
                "port, but a proxy put in front of it that sends headers (a chain) would have them read as mail commands "
                "behind its own header; the inner proxy must then accept them.",
                first, answered, {"replies_to_header": replies}, lowered="conditional"))
    if _cut_everything(outcomes):
        found.append(_finding("PD401",
            f"{target} cut every connection from this host without a greeting, with and without a header: it takes "
            "connections (headers) only from other sources (e.g. Dovecot's haproxy_trusted_networks), or has banned "
            "this host.", none, list(outcomes), {}, lowered="inferred"))
    if outcomes.get("v2") == GREETS and outcomes.get("v2-local") not in (GREETS, None):
        found.append(_finding("PD203",
            f"{target} takes a v2 PROXY header but not a v2 LOCAL one ({_describe(outcomes['v2-local'])}): health "
            "checks that send LOCAL headers fail against it.", by_step["v2-local"], ["v2-local"], {}))
    tlv = facts["ssl_tlv_changes_offer"]
    if tlv is not None and not tlv["changed"] and tlv["with_tlv"]["starttls"]:
        found.append(_finding("PD301",
            f"{target} offers the same with the SSL TLV (client used TLS) as without it, STARTTLS included: it ignores "
            "the header's TLS flag, so behind a TLS-terminating proxy it takes every client for a plaintext one.",
            by_step["v2-ssl"], ["v2", "v2-ssl"], {"offer": tlv}, lowered="conditional"))
    return found


def _cut_everything(outcomes: dict[str, str]) -> bool:
    return len(outcomes) > 1 and all(result in (CUT, REFUSED) for result in outcomes.values())


def _describe(result: str) -> str:
    return {
        SILENT: "it stayed silent", CUT: "it closed or reset the connection", REFUSED: "it refused in its greeting",
        ANSWERS_HEADER: "it answered the header as commands", TLS_FAILED: "the TLS handshake failed",
        GREETS_AFTER_CLIENT: "it greeted only after the client spoke", GREETS: "it greeted",
        CONNECT_FAILED: "the connection failed",
    }[result]


def _finding(code: str, message: str, record: StepRecord | None, steps: list[str], extra: JsonDict,
             lowered: Lowered | None = None) -> Finding:
    evidence = {"steps": steps, **extra}
    if record is not None:
        evidence["exchange"] = exchange_lines(record)
    return make_finding(code, message, evidence, lowered=lowered)


# --- the document ---------------------------------------------------------------------------

SCHEMA = "proxydiag-probe/1"


def step_dict(record: StepRecord) -> JsonDict:
    opening = _opening(record)
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
