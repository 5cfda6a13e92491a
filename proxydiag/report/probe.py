"""The probe's document (schema proxydiag-probe/1) for people: rich and Markdown. The
findings are shown exactly as `analyze` shows them; wire text stays data (rich Text cells,
escaped Markdown cells)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from proxydiag.jsontypes import JsonDict
from proxydiag.report import markdown as markdown_report
from proxydiag.report import rich as rich_report
from proxydiag.report.environment import Environment
from proxydiag.report.views import visible_document, visible_findings
from proxydiag.rules.probe import certificate_line

if TYPE_CHECKING:
    from proxydiag.rules.base import Finding

STYLES = rich_report.STYLES


def listener_line(target: JsonDict) -> str:
    """The verdict in one sentence."""
    if target["error"]:
        return target["error"]
    verdict = target["verdict"]
    what = verdict["protocol"] or "?"
    if verdict["software"]:
        what += f" ({verdict['software']})"
    if verdict["greets_only_after_client_spoke"]:
        return f"{what}: greets only after the client speaks"
    if verdict["expects_header"]:
        return f"{what}: expects a PROXY header from this host ({', '.join(verdict['headers_accepted'])} accepted)"
    if verdict["greets_without_header"]:
        seconds = verdict["time_to_greeting"]
        when = f" after {seconds:.3f} s" if seconds is not None else ""
        return f"{what}: greets without a header{when}; headers from this host are not taken"
    if verdict["trusted"] is False:
        return f"{what}: cuts connections from this host, with or without a header"
    return f"{what}: no greeting seen"


def _tls_summary(verdict: JsonDict | None) -> str:
    if not verdict:
        return ""
    tls = verdict["tls"] or verdict["starttls"]
    if not tls or not tls.get("ok"):
        return ""
    how = "TLS" if verdict["tls"] else "STARTTLS"
    return f"{how} {tls['version']}, {certificate_line(tls)}"


def render_rich(document: JsonDict, console: Console, verbose: bool = False, quiet: bool = False,
                findings: Sequence[Finding] | None = None) -> None:
    shown = visible_findings(document, findings)
    document = visible_document(document)  # certificate text and greetings are the listener's: shown, never obeyed
    summary = document["summary"]
    head = Text()
    head.append("proxydiag probe", style="bold")
    head.append(f"  — {summary['targets']} target(s), {summary['connections']} connections\n")
    counts = [(summary["errors"], "error"), (summary["warnings"], "warning"), (summary["infos"], "info")]
    parts = [f"{count} {name}{'s' if count != 1 else ''}" for count, name in counts if count]
    head.append(", ".join(parts) if parts else "no findings", style=STYLES["error"] if summary["errors"] else "green")
    console.print(head)
    if not quiet:
        console.print(_targets_table(document))
    console.print(rich_report._findings(document, shown, verbose, Environment.of(document)))
    if verbose:
        for target in document["targets"]:
            for step in target["steps"]:
                console.print(Text(f"{target['target']} step {step['step']}: {step['outcome']}", style="bold"))
                if step["exchange"]:  # one print: a print per line was most of a probe report's time
                    console.print(Text("\n".join("    " + line for line in step["exchange"])))


def _targets_table(document: JsonDict) -> Table:
    table = Table(title="Listeners", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for name in ("target", "role", "verdict", "steps", "TLS"):
        table.add_column(name, overflow="fold")
    for target in document["targets"]:
        steps = "\n".join(f"{step['step']}: {step['outcome']}" for step in target["steps"])
        table.add_row(Text(target["target"]), target["role"], Text(listener_line(target)), Text(steps),
                      Text(_tls_summary(target["verdict"])))
    return table


def render_markdown(document: JsonDict, version: str, command_line: str,
                    findings: Sequence[Finding] | None = None) -> str:
    shown = visible_findings(document, findings)
    document = visible_document(document)
    cell = markdown_report._cell
    command_line = document.get("command_line") or command_line
    out = ["# proxydiag probe report", "", f"- proxydiag {version}: {markdown_report.code(command_line)}",
           f"- {document['summary']['targets']} target(s), {document['summary']['connections']} connections", "",
           "## Listeners", "", "| target | role | verdict | steps | TLS |", "|---|---|---|---|---|"]
    for target in document["targets"]:
        steps = ", ".join(f"{step['step']}: {step['outcome']}" for step in target["steps"])
        out.append(f"| {cell(target['target'])} | {target['role']} | {cell(listener_line(target))} | {cell(steps)} | "
                   f"{cell(_tls_summary(target['verdict']))} |")
    out.append("")
    out += markdown_report._findings(document, shown, Environment.of(document))
    out += ["## Conversations", ""]
    for target in document["targets"]:
        for step in target["steps"]:
            exchange = [line.replace("`", "'") for line in step["exchange"]]  # wire text cannot close the fence
            out += [f"### {target['target']}: {step['step']} ({step['outcome']})", "", "```text", *exchange, "```", ""]
    return "\n".join(out).rstrip() + "\n"
