"""--format markdown: a self-contained report to paste into a support ticket.

Everything that came from the wire or from a file (greetings, addresses, paths, evidence,
messages quoting them) is data: it goes into code spans or has every Markdown
construct escaped, so a capture cannot add images, links, HTML or headings to a ticket.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from proxydiag.jsontypes import JsonDict
from proxydiag.report.environment import Environment, LogFileRead
from proxydiag.report.ladder import pictures
from proxydiag.report.mermaid import sequence_diagram
from proxydiag.report.views import (
    client_label,
    endpoint_of,
    endpoint_verdicts,
    evidence_lines,
    header_label,
    ladder_legs_of,
    outcome_label,
    summarised,
    tls_label,
    visible_document,
    visible_findings,
    where_line,
)

if TYPE_CHECKING:
    from proxydiag.rules.base import Finding

MAX_CONNECTIONS = 30
# Any ASCII punctuation may be backslash-escaped in CommonMark; these are the ones that
# start emphasis, links, images, autolinks (www., scheme:, user@host), HTML, entities,
# headings, lists and table cells. A hyphen matters only where a line starts.
_PUNCTUATION = re.compile(r"""([!#&()*+.:<>@\[\\\]_`{|}~]|^-)""")
_BACKTICK_RUN = re.compile(r"`+")


def render(document: JsonDict, version: str, command_line: str, findings: Sequence[Finding] | None = None) -> str:
    """`findings`: the document's, typed (None: read from the document)."""
    shown = visible_findings(document, findings)
    document = visible_document(document)
    command_line = document.get("command_line") or command_line
    environment = Environment.of(document)
    out: list[str] = ["# proxydiag report", ""]
    out += _environment(document, environment, version, command_line)
    out += _verdicts(document)
    out += _problems(environment)
    out += _findings(document, shown, environment)
    out += _connections(document, environment.summary.connections)
    return "\n".join(out).rstrip() + "\n"


def escape(text: object) -> str:
    """Prose that quotes data: every punctuation character escaped, one line."""
    return _PUNCTUATION.sub(r"\\\1", str(text)).replace("\n", " ")


def code(text: object, in_table: bool = False) -> str:
    """Data as a code span, whatever backticks it holds; in a table its pipes are escaped
    (GFM splits cells on them even inside code spans)."""
    text = str(text).replace("\n", " ")
    if in_table:
        text = text.replace("|", "\\|")
    if not text:
        return " "
    longest = max((len(run) for run in _BACKTICK_RUN.findall(text)), default=0)
    fence = "`" * (longest + 1)
    padding = " " if text.startswith(("`", " ")) or text.endswith(("`", " ")) else ""
    return f"{fence}{padding}{text}{padding}{fence}"


def _cell(text: object) -> str:
    return code(text, in_table=True) if text not in (None, "") else " "


def _environment(document: JsonDict, environment: Environment, version: str, command_line: str) -> list[str]:
    summary = environment.summary
    lines = ["## Environment", ""]
    for read in environment.inputs:
        if isinstance(read, LogFileRead):
            sources = ", ".join(f"{escape(name)} {count}" for name, count in read.sources) or "none"
            lines.append(f"- log {code(read.path)}: {read.lines} lines, {read.events} events ({sources}), "
                         f"{read.foreign} foreign and {read.malformed} malformed lines skipped")
            continue
        state = "".join(f", {what}: {escape(said)}" for what, said in read.state())
        lines.append(f"- capture {code(read.path)}: {escape(read.format or '?')}, link types "
                     f"{code(list(read.linktypes))}, {read.packets} packets{state}")
    for config in environment.proxy_configs or ():
        lines.append(f"- {escape(config.kind)} configuration {code(config.path)}: {config.listeners} "
                     f"listeners, {config.routes} routes")
    software = document.get("servers_recognised")
    if software is None:
        software = summarised(document, keep=0)["servers_recognised"]
    if software:
        lines.append(f"- servers recognised: {', '.join(code(name) for name in software)}")
    if environment.stalwart is not None:
        stalwart, trusted = environment.stalwart, list(environment.stalwart.trusted_networks)
        lines.append(f"- Stalwart configuration {code(stalwart.path)} ({escape(stalwart.style)}): "
                     f"{stalwart.listeners} listeners, trusted networks {code(trusted) if trusted else 'none'}")
    lines.append(f"- {summary.connections} TCP connections, {summary.with_proxy_header} with a PROXY header; "
                 f"{summary.errors} errors, {summary.warnings} warnings, {summary.infos} infos")
    if environment.anonymized:
        lines.append("- addresses and host names are pseudonyms (`--anonymize`)")
    lines += [f"- proxydiag {version}: {code(command_line)}", ""]
    return lines


def _problems(environment: Environment) -> list[str]:
    problems = environment.problems()
    if not problems:
        return []
    return ["## Not judged, or refused by the program that reads it", "", *(f"- {escape(problem)}" for problem in problems), ""]


def _verdicts(document: JsonDict) -> list[str]:
    rows = endpoint_verdicts(document)
    if not rows:
        return []
    lines = ["## Endpoints", "", "| server endpoint | protocol | connections | header | verdict |", "|---|---|---:|---|---|"]
    for row in rows:
        verdict = (f"**{row['errors']} error(s)**" if row["errors"] else
                   f"{row['warnings']} warning(s)" if row["warnings"] else "healthy")
        protocol = "/".join(row["protocols"]) + (f" ({row['software']})" if row["software"] else "")
        lines.append(f"| {_cell(row['endpoint'])} | {_cell(protocol)} | {row['connections']} | "
                     f"{_cell(', '.join(row['headers']))} | {verdict} |")
    return lines + [""]


def _findings(document: JsonDict, findings: Sequence[Finding], environment: Environment) -> list[str]:
    lines = ["## Findings", ""]
    if not findings:
        return lines + [environment.no_findings_text(), ""]
    drawn = pictures(findings, ladder_legs_of(document), lambda finding: finding.severity == "error")
    for finding, picture in zip(findings, drawn, strict=True):
        inferred = " (expectation inferred)" if finding.inferred else ""
        title = f"{finding.severity.upper()} {finding.code} {finding.slug}"
        lines += [f"### {escape(title)}{inferred}", "", escape(finding.message), ""]
        for line in evidence_lines(finding):
            name, _, value = line.partition(": ")
            lines.append(f"- {escape(name)}: {code(value)}")
        if finding.connections:
            lines.append(f"- where: {escape(where_line(finding))}")
        lines.append("")
        if picture.ladder is not None:
            numbers = ", ".join(f"#{number}" for number in picture.ladder.connections)
            lines += [f"Conversation {escape(numbers)}, times after its first SYN:", "", "```mermaid",
                      *sequence_diagram(picture.ladder), "```", ""]
        elif picture.above:
            lines += [f"The conversation's ladder is under {escape(picture.above)} above.", ""]
        if finding.fix and finding.severity != "info":
            lines += ["**Fix**", "", _demote_headings(finding.fix), ""]
        lines += [f"More: {code('proxydiag explain ' + finding.code)}", ""]
    return lines


def _demote_headings(text: str) -> str:
    """Fix excerpts come from the pages; their headings must not outrank the report's."""
    return "\n".join(("####" + line.lstrip("#")) if line.startswith("#") else line for line in text.splitlines())


def _connections(document: JsonDict, total: int) -> list[str]:
    connections = document["connections"]
    if not connections:
        return []
    lines = ["## Connections", "", "| # | client (per header) | server | protocol | header | TLS | greeting | outcome |",
             "|---:|---|---|---|---|---|---|---|"]
    for conn in connections[:MAX_CONNECTIONS]:
        greeting = (conn["greeting"] or "")[:60]
        lines.append(
            f"| {conn['id']} | {_cell(client_label(conn))} | {_cell(endpoint_of(conn))} | {_cell(conn['protocol'] or '?')} | "
            f"{_cell(header_label(conn))} | {_cell(tls_label(conn))} | {_cell(greeting)} | {_cell(outcome_label(conn))} |"
        )
    if total > min(len(connections), MAX_CONNECTIONS):
        lines += ["", f"{total - min(len(connections), MAX_CONNECTIONS)} more connections: run with `--format json` for all."]
    return lines + [""]
