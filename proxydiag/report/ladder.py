"""The ladder of one conversation: who sent what to whom, and when, hop by hop.

A pure model built from the connections of the report (the dicts every view receives,
anonymised already where the report is), drawn three ways: inline SVG (`--format html`),
a Mermaid sequenceDiagram (`--format markdown`) and text (the rich report with `-v`).
Columns are the hosts of the conversation, the real client's first; steps are the SYN,
the PROXY header with its decoded fields, the TLS handshake, the first words of each
side, the server's replies to the header's bytes and the close, each at its time after
the first SYN of the conversation where the capture gives one."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from proxydiag.jsontypes import JsonDict
from proxydiag.report.views import address

if TYPE_CHECKING:
    from proxydiag.rules.base import Finding

MAX_LABEL = 72  # characters of wire text on one step: a ladder shows the shape, the report quotes in full
MAX_REPLIES = 3  # replies to the header drawn one by one; the rest are counted
MAX_DETAILS = 4  # decoded fields or violations beside a header


@dataclass(frozen=True)
class Column:
    role: str  # client, relay, proxy, server
    address: str
    captured: bool = True  # False: a client the header names, whose leg the capture does not hold
    also: str | None = None  # the address this host connects onwards from, when it differs


@dataclass(frozen=True)
class Step:
    source: int  # column indexes
    target: int
    time: float | None  # seconds after the first SYN; None where the capture times no such event
    kind: str  # syn, syn-ack, header, tls, client, greeting, reply, fin, rst, note
    tag: str  # proxydiag's own word for the step (drawn on the arrow)
    label: str  # what was sent, wire text included (bounded)
    details: tuple[str, ...] = ()  # decoded header fields, violations
    connection: int = 0
    frame: int | None = None


@dataclass(frozen=True)
class Ladder:
    columns: tuple[Column, ...]
    steps: tuple[Step, ...]
    connections: tuple[int, ...]


def ladder_of(legs: list[JsonDict]) -> Ladder | None:
    """The ladder of the connections given (the hops of one conversation, the client's
    first); None without any."""
    if not legs:
        return None
    columns = _columns(legs)
    first = 1 if not columns[0].captured else 0
    origin = legs[0]["start_time"]
    timed: list[tuple[float, int, Step]] = []
    for hop, leg in enumerate(legs):
        for step in _leg_steps(leg, first + hop, first + hop + 1, origin):
            # a step the capture does not time is drawn after the step before it on its leg
            when = step.time if step.time is not None else (timed[-1][0] if timed else 0.0)
            timed.append((when, len(timed), step))
    steps = tuple(step for _, _, step in sorted(timed, key=lambda item: (item[0], item[1])))
    return Ladder(tuple(columns), steps, tuple(leg["id"] for leg in legs))


def _columns(legs: list[JsonDict]) -> list[Column]:
    columns = []
    header = legs[0]["proxy_header"]
    if header and header["command"] == "PROXY" and header["src_addr"] is not None:
        columns.append(Column("client", address(header["src_addr"], header["src_port"]), captured=False))
    tcp = legs[0]["tcp"]
    columns.append(Column("proxy" if columns else "client", address(tcp["src_addr"], tcp["src_port"])))
    for hop, leg in enumerate(legs):
        listener = address(leg["tcp"]["dst_addr"], leg["tcp"]["dst_port"])
        if hop == len(legs) - 1:
            columns.append(Column("server", listener))
            continue
        onward = legs[hop + 1]
        role = "proxy" if onward["proxy_header"] else "relay"
        source = onward["tcp"]["src_addr"]
        columns.append(Column(role, listener, also=source if source != leg["tcp"]["dst_addr"] else None))
    return columns


def _leg_steps(leg: JsonDict, client: int, server: int, origin: float) -> list[Step]:
    conn, timing = leg["id"], leg.get("timing") or {}
    established = timing.get("established") or leg["start_time"]

    def after(delay: float | None) -> float | None:
        return None if delay is None else round(established + delay - origin, 6)

    def step(source: int, target: int, time: float | None, kind: str, tag: str, label: str,
             details: Iterable[str] = (), frame: int | None = None) -> Step:
        return Step(source, target, time, kind, tag, bounded(label), tuple(bounded(line) for line in details), conn, frame)

    start = round(leg["start_time"] - origin, 6)
    steps = []
    if leg["mid_stream"]:
        steps.append(step(client, server, start, "note", "mid-stream", "the capture starts after this connection opened",
                          frame=leg["first_frame"]))
    else:
        steps.append(step(client, server, start, "syn", "SYN", "SYN", frame=leg["first_frame"]))
        if timing.get("established") is not None:
            steps.append(step(server, client, round(established - origin, 6), "syn-ack", "SYN-ACK", "SYN-ACK"))
    frames = leg.get("proxy_header_frames") or []
    if leg["proxy_header"] or leg["proxy_header_violations"]:
        label, details = header_lines(leg["proxy_header"], leg["proxy_header_violations"], leg["proxy_header_incomplete"])
        steps.append(step(client, server, after(timing.get("header_after")), "header", "PROXY", label, details,
                          frames[0] if frames else None))
    for extra in leg.get("extra_proxy_headers") or []:
        label, details = header_lines(extra, [], False)
        steps.append(step(client, server, None, "header", "PROXY again", "another " + label, details))
    steps += _conversation(leg, client, server, after, step)
    if leg["closed_by"] is not None:
        source, target = (client, server) if leg["closed_by"] == "client" else (server, client)
        kind = (leg["close"] or "fin").lower()
        time = None if leg.get("close_time") is None else round(leg["close_time"] - origin, 6)
        steps.append(step(source, target, time, "rst" if kind == "rst" else "fin", kind.upper(),
                          f"{leg['closed_by']} closes ({kind.upper()})"))
    return steps


def _conversation(leg: JsonDict, client: int, server: int, after: Callable[[float | None], float | None],
                  step: Callable[..., Step]) -> list[Step]:
    """The first words of each side, in the order they came, then the server's replies
    to the header's bytes."""
    timing = leg.get("timing") or {}
    said = []
    if leg["client_first"] is not None:
        hello = (leg.get("tls") or {}).get("client_hello")
        kind, tag = ("tls", "ClientHello") if hello else ("client", "client")
        said.append(step(client, server, after(timing.get("client_first_after")), kind, tag, leg["client_first"],
                         frame=leg.get("client_first_frame")))
    if leg["greeting"] is not None:
        tls = leg["greeting"].startswith("TLS")
        kind, tag = ("tls", "TLS") if tls else ("greeting", "greeting")
        said.append(step(server, client, after(timing.get("greeting_after")), kind, tag,
                         "TLS handshake from the server" if tls else leg["greeting"], frame=leg.get("greeting_frame")))
    # the order they were sent in: an untimed one after the timed ones
    said.sort(key=lambda item: (item.time is None, item.time or 0.0))
    replies = leg.get("replies_to_header") or []
    answers = [step(server, client, None, "reply", "reply to header", reply) for reply in replies[:MAX_REPLIES]]
    if len(replies) > MAX_REPLIES:
        answers.append(step(server, client, None, "reply", "reply to header", f"... {len(replies) - MAX_REPLIES} more replies"))
    # the server answered the header's bytes right after its greeting (they were waiting)
    after_greeting = next((at + 1 for at, item in enumerate(said) if item.source == server), len(said))
    return said[:after_greeting] + answers + said[after_greeting:]


def header_lines(header: JsonDict | None, violations: list[JsonDict], incomplete: bool) -> tuple[str, list[str]]:
    """A header as a label and its decoded fields (or what breaks it)."""
    if header is None:
        label = "PROXY header, incomplete" if incomplete else "PROXY header, unreadable"
        return label, [f"at byte {item['offset']}: {item['message']}" for item in violations[:MAX_DETAILS]]
    label = f"v{header['version']} header {header['command']} {header['family']}"
    details = []
    if header["src_addr"] is not None:
        details.append(f"{address(header['src_addr'], header['src_port'])} -> {address(header['dst_addr'], header['dst_port'])}")
    tlvs = [tlv["name"] for tlv in header.get("tlvs") or []]
    ssl = header.get("ssl")
    if ssl:
        flags = [name for name, bit in (("SSL", 1), ("CERT_CONN", 2), ("CERT_SESS", 4)) if ssl["client"] & bit]
        version = f" {ssl['version']}" if ssl.get("version") else ""
        details.append(f"SSL TLV: client {'|'.join(flags) or 'none'}, verify {ssl['verify']}{version}")
    elif header["version"] == 2:
        details.append("no SSL TLV")
    others = [name for name in tlvs if name != "SSL"]
    if others:
        details.append("TLVs: " + ", ".join(others[:8]) + (" ..." if len(others) > 8 else ""))
    details += [f"at byte {item['offset']}: {item['message']}" for item in violations[: MAX_DETAILS - len(details)]]
    return label, details[:MAX_DETAILS]


def bounded(text: str, limit: int = MAX_LABEL) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def time_label(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if abs(seconds) < 1.0:
        return f"+{seconds * 1000:.3f} ms"
    return f"+{seconds:.3f} s"


@dataclass(frozen=True)
class Drawn:
    """A finding's picture: its ladder, or the finding above that drew the same conversation."""

    ladder: Ladder | None = None
    above: str | None = None  # the finding's code and slug


def pictures(findings: Sequence[Finding], legs: Sequence[list[JsonDict]],
             drawn_for: Callable[[Finding], bool] = lambda finding: True) -> list[Drawn]:
    """For each finding (those `drawn_for` accepts): its ladder from its `legs` (as many as
    findings, or none: nothing drawn), drawn once per conversation."""
    first_drawn: dict[tuple[int, ...], str] = {}
    found = []
    for finding, its_legs in zip(findings, legs or [[]] * len(findings), strict=True):
        ladder = ladder_of(its_legs) if drawn_for(finding) else None
        if ladder is None:
            found.append(Drawn())
        elif ladder.connections in first_drawn:
            found.append(Drawn(above=first_drawn[ladder.connections]))
        else:
            first_drawn[ladder.connections] = f"{finding.code} {finding.slug}"
            found.append(Drawn(ladder))
    return found


def ladders_of(document: JsonDict, errors_only: bool = False) -> dict[int, Ladder]:
    """Each finding's ladder, by the finding's position in the document's findings, from
    the legs the human report kept beside it (`views.summarised`)."""
    found = {}
    for index, finding in enumerate(document.get("findings") or []):
        if errors_only and finding["severity"] != "error":
            continue
        ladder = ladder_of(finding.get("ladder_legs") or [])
        if ladder is not None:
            found[index] = ladder
    return found
