"""--format html: one self-contained page to attach to a ticket or open locally.

The page is a Jinja2 template with autoescaping: every text from the wire or a file is
a text node (an SVG <text> included), never markup; attributes hold only numbers and
class names proxydiag chose. No script, no external resource, and a Content-Security-
Policy that allows none: the one stylesheet is inline and allowed by its hash."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING

from proxydiag.jsontypes import JsonDict
from proxydiag.report.environment import CaptureRead, Environment, LogFileRead
from proxydiag.report.ladder import Ladder, Step, pictures, time_label
from proxydiag.report.views import (
    client_label,
    endpoint_of,
    endpoint_verdicts,
    evidence_lines,
    header_label,
    ladder_legs_of,
    outcome_label,
    tls_label,
    visible_document,
    visible_findings,
    where_line,
)

if TYPE_CHECKING:
    from proxydiag.rules.base import Finding

MAX_CONNECTIONS = 200
# Ladder geometry, in SVG user units (pixels at 100 %).
TIME_WIDTH = 84
LANE_GAP = 170
LABEL_GAP = 36
LABEL_WIDTH = 560
TOP = 62
ROW = 26
DETAIL_ROW = 16
MAX_LANE_TEXT = 24  # characters of an address under a lane (the legend below has it whole)


@dataclass(frozen=True)
class SvgLine:
    x1: float
    y1: float
    x2: float
    y2: float
    cls: str


@dataclass(frozen=True)
class SvgText:
    x: float
    y: float
    text: str
    cls: str
    anchor: str = "start"
    title: str | None = None  # the whole text, where the drawn one is cut


@dataclass
class SvgLadder:
    width: float
    height: float
    lines: list[SvgLine] = field(default_factory=list)
    heads: list[tuple[str, str]] = field(default_factory=list)  # (points, class): arrowheads
    texts: list[SvgText] = field(default_factory=list)
    legend: list[str] = field(default_factory=list)
    caption: str = ""


def render(document: JsonDict, version: str, command_line: str, findings: Sequence[Finding] | None = None) -> str:
    """`findings`: the document's, typed (None: read from the document)."""
    from jinja2 import Environment, PackageLoader, StrictUndefined
    from markupsafe import Markup

    environment = Environment(loader=PackageLoader("proxydiag", "report/templates"), autoescape=True,
                              undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    style = resources.files("proxydiag").joinpath("report/templates/report.css").read_text()
    shown = visible_findings(document, findings)
    document = visible_document(document)
    return environment.get_template("report.html").render(
        # the stylesheet is proxydiag's own file, inside <style> (raw text, where an escape would stay literal)
        page=page_of(document, shown, version, document.get("command_line") or command_line), style=Markup(style),
        style_hash=style_hash(style))


def style_hash(style: str) -> str:
    """The CSP source that allows exactly this stylesheet."""
    return "sha256-" + base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()


def page_of(document: JsonDict, typed: Sequence[Finding], version: str, command_line: str) -> JsonDict:
    """What the template shows, every value a plain string or number."""
    environment = Environment.of(document)
    summary = environment.summary
    findings = []
    for finding, picture in zip(typed, pictures(typed, ladder_legs_of(document)), strict=True):
        findings.append({
            "severity": finding.severity, "code": finding.code, "slug": finding.slug,
            "inferred": finding.inferred, "message": finding.message,
            "evidence": [line.partition(": ")[::2] for line in evidence_lines(finding, limit=12)],
            "where": where_line(finding) if finding.connections else "",
            "ladder": svg_of(picture.ladder) if picture.ladder is not None else None,
            "ladder_above": picture.above,
            "fix": fix_blocks(finding.fix) if finding.fix else [],
        })
    connections = [{
        "id": conn["id"], "client": client_label(conn), "server": endpoint_of(conn), "protocol": conn["protocol"] or "?",
        "header": header_label(conn), "tls": tls_label(conn), "greeting": (conn["greeting"] or "")[:120],
        "outcome": outcome_label(conn),
    } for conn in document["connections"][:MAX_CONNECTIONS]]
    return {
        "inputs": [_input_line(read) for read in environment.inputs],
        "summary": summary,
        "counts": summary.severity_counts(),
        "endpoints": endpoint_verdicts(document),
        "problems": environment.problems(),
        "findings": findings,
        "no_findings": environment.no_findings_text() if not findings else "",
        "connections": connections,
        "more_connections": max(summary.connections - len(connections), 0),
        "anonymized": environment.anonymized,
        "version": version,
        "command_line": command_line,
    }


def _input_line(read: CaptureRead | LogFileRead) -> str:
    if isinstance(read, LogFileRead):
        return f"log {read.path}: {read.lines} lines, {read.events} events"
    state = "".join(f", {what}: {said}" for what, said in read.state())
    return f"capture {read.path}: {read.format or '?'}, {read.packets} packets{state}"


def svg_of(ladder: Ladder) -> SvgLadder:
    """The ladder laid out: lanes side by side, a row per step, what was sent to the right."""
    lanes = [TIME_WIDTH + 40 + index * LANE_GAP for index in range(len(ladder.columns))]
    label_x = lanes[-1] + LABEL_GAP
    height = TOP + sum(ROW + DETAIL_ROW * len(step.details) for step in ladder.steps) + 12
    svg = SvgLadder(width=label_x + LABEL_WIDTH, height=height)
    for x, column in zip(lanes, ladder.columns, strict=True):
        role = column.role if column.captured else f"{column.role} (per header)"
        svg.texts.append(SvgText(x, 18, role, "role", "middle"))
        shown = column.address if len(column.address) <= MAX_LANE_TEXT else column.address[: MAX_LANE_TEXT - 3] + "..."
        svg.texts.append(SvgText(x, 34, shown, "lane-address", "middle", column.address if shown != column.address else None))
        svg.lines.append(SvgLine(x, 42, x, height - 6, "lifeline" if column.captured else "lifeline ghost"))
    y = TOP
    for step in ladder.steps:
        _draw_step(svg, step, lanes, label_x, y)
        y += ROW + DETAIL_ROW * len(step.details)
    svg.legend = [f"{column.role}: {column.address}" + (f" (connects onwards from {column.also})" if column.also else "")
                  + ("" if column.captured else " (named by the PROXY header; its leg is not in the capture)")
                  for column in ladder.columns]
    svg.caption = (f"Conversation {', '.join(f'#{number}' for number in ladder.connections)}: "
                   "times after its first SYN; frame numbers as Wireshark counts them.")
    return svg


def _draw_step(svg: SvgLadder, step: Step, lanes: Sequence[float], label_x: float, y: float) -> None:
    kind = f"k-{step.kind}"
    svg.texts.append(SvgText(TIME_WIDTH, y + 4, time_label(step.time), "time", "end"))
    source, target = lanes[step.source], lanes[step.target]
    if source == target:
        svg.heads.append((f"{source - 5},{y} {source},{y - 5} {source + 5},{y} {source},{y + 5}", f"head {kind}"))
    else:
        direction = 1 if target > source else -1
        svg.lines.append(SvgLine(source, y, target - direction * 8, y, f"arrow {kind}"))
        svg.heads.append((f"{target},{y} {target - direction * 9},{y - 4.5} {target - direction * 9},{y + 4.5}", f"head {kind}"))
        svg.texts.append(SvgText((source + target) / 2, y - 5, step.tag, f"tag {kind}", "middle"))
    where = f"  #{step.connection} frame {step.frame}" if step.frame is not None else ""
    svg.texts.append(SvgText(label_x, y + 4, step.label, f"label {kind}"))
    if where:
        svg.texts.append(SvgText(label_x + LABEL_WIDTH - 4, y + 4, where.strip(), "frame", "end"))
    for offset, line in enumerate(step.details, start=1):
        svg.texts.append(SvgText(label_x + 14, y + 4 + offset * DETAIL_ROW, line, "detail"))


_FENCE = re.compile(r"^\s*```")


def fix_blocks(text: str) -> list[JsonDict]:
    """A finding page's fix (Markdown) as blocks the template shows as text: headings,
    paragraphs with `code` spans, and code blocks; never rendered as HTML."""
    blocks: list[JsonDict] = []
    paragraph: list[str] = []
    code: list[str] | None = None

    def flush() -> None:
        if paragraph:
            blocks.append({"kind": "text", "spans": _spans(" ".join(line.strip() for line in paragraph))})
            paragraph.clear()

    for line in text.splitlines():
        if code is not None:
            if _FENCE.match(line):
                blocks.append({"kind": "code", "text": "\n".join(code)})
                code = None
            else:
                code.append(line)
        elif _FENCE.match(line):
            flush()
            code = []
        elif line.startswith("#"):
            flush()
            blocks.append({"kind": "heading", "text": line.lstrip("#").strip()})
        elif not line.strip():
            flush()
        else:
            paragraph.append(line)
    flush()
    if code:
        blocks.append({"kind": "code", "text": "\n".join(code)})
    return blocks


def _spans(text: str) -> list[tuple[bool, str]]:
    """(is code, text) pieces: odd pieces between backticks are code."""
    return [(index % 2 == 1, piece) for index, piece in enumerate(text.split("`")) if piece]
