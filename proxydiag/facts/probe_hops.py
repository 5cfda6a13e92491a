"""A probe's connections as facts: each step's outcome, the listener in a few facts (does it
greet, does it want a header, from this host?), and the hops the steps show: the probe
without a header (as a client would connect), and the probe with the header a listener
answered as commands (as a proxy would send it).

Fact building only: the rules (rules/hops.py, rules/probe.py) judge what is built here.
"""

from __future__ import annotations

from dataclasses import replace

from proxydiag.facts.hop import Cite, Expects, Hop, Party, Provenance, Sent
from proxydiag.jsontypes import JsonDict
from proxydiag.parsers.protocols import MailOpening
from proxydiag.probe import StepRecord, TargetProbe
from proxydiag.probe.steps import service_of

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


def opening_of(record: StepRecord) -> MailOpening | None:
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
    best = next((r for r in probe.records if outcome(r) in (GREETS, GREETS_AFTER_CLIENT) and opening_of(r)), None)
    opening = opening_of(best) if best else None
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
    plain, ssl = opening_of(by_step["v2"]), opening_of(by_step["v2-ssl"])
    if plain is None or ssl is None or plain.starttls_offered is None or ssl.starttls_offered is None:
        return None
    return {
        "changed": (plain.starttls_offered, plain.auth_mechanisms) != (ssl.starttls_offered, ssl.auth_mechanisms),
        "without_tlv": {"starttls": plain.starttls_offered, "auth": plain.auth_mechanisms},
        "with_tlv": {"starttls": ssl.starttls_offered, "auth": ssl.auth_mechanisms},
    }


# --- hops ----------------------------------------------------------------------------------


def _listener(probe: TargetProbe) -> Party:
    return Party(address=probe.address or probe.target.host, port=probe.target.port)


def _prober(record: StepRecord) -> Party:
    return Party(address=record.local[0] or None, software="the probe")


def _provenance(steps: list[str]) -> Provenance:
    return Provenance("probe", tuple(Cite(None, None, f"step {step}") for step in steps))


def _probe_hop(probe: TargetProbe, record: StepRecord, steps: list[str]) -> Hop:
    """The probe's connection of one step to the target, before what the step showed."""
    return Hop(sender=_prober(record), listener=_listener(probe),
               listener_role="proxy" if probe.judged_as == "front" else "server", sends="none", expects=None,
               provenance=_provenance(steps), service=service_of(probe.target.port))


def unheaded_hop(probe: TargetProbe, facts: JsonDict) -> Hop | None:
    """The probe without a header, as a client connects: the listener required one (silent or
    cut without, greeting with one), or greeted only once the client spoke."""
    none = next((record for record in probe.records if record.step == "none"), None)
    if none is None:
        return None
    waited = outcome(none) == GREETS_AFTER_CLIENT
    expects: Expects | None = "required" if facts["expects_header"] else "none" if facts["greets_without_header"] else None
    # a greeting after the client spoke is a mail greeting: the server speaks first
    return replace(_probe_hop(probe, none, ["none", *facts["headers_accepted"]]), expects=expects,
                   server_speaks_first=True if waited else None, waits_for_client=waited)


def answered_hop(probe: TargetProbe, record: StepRecord, steps: list[str]) -> Hop:
    """The probe's header, answered as commands (or with a failed TLS handshake) by a listener
    that greets without one: it takes no header from this host."""
    opening = opening_of(record)
    sends: Sent = "v1" if record.step == "v1" else "v2"
    return replace(_probe_hop(probe, record, steps), sends=sends, expects="none",
                   replies=tuple(opening.replies_before_commands) if opening is not None else (),
                   listener_implicit_tls=record.tls is not None)


def tlv_hop(probe: TargetProbe, record: StepRecord, facts: JsonDict) -> Hop:
    """The probe's v2 header with the SSL TLV (the client used TLS), and whether the listener
    offered the same as without it, STARTTLS included: then it ignores the TLV."""
    offer = facts["ssl_tlv_changes_offer"]
    ignored = offer is not None and not offer["changed"] and bool(offer["with_tlv"]["starttls"])
    return replace(_probe_hop(probe, record, ["v2", "v2-ssl"]), sends="v2", ssl_tlv=True, tlv_ignored=ignored)


def local_refused_hop(probe: TargetProbe, record: StepRecord, refused: bool) -> Hop:
    """The probe's v2 LOCAL step, where its v2 PROXY step was greeted: `refused` where the
    listener did not greet after the LOCAL header."""
    return replace(_probe_hop(probe, record, ["v2", "v2-local"]), sends="v2", expects="required",
                   refuses_local=refused)


def refused_hop(probe: TargetProbe, record: StepRecord, steps: list[str], cut_everything: bool) -> Hop:
    """Every step of the probe, with and without a header, cut or refused before a greeting."""
    return replace(_probe_hop(probe, record, steps), refused_all=cut_everything, inferred=True)
