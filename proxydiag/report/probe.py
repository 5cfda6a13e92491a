"""The probe's document (schema proxydiag-probe/1) for people: rich and Markdown. The
findings are shown exactly as `analyze` shows them; wire text stays data (rich Text cells,
escaped Markdown cells)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from proxydiag.facts.summary import Summary
from proxydiag.jsontypes import JsonDict
from proxydiag.report import markdown as markdown_report
from proxydiag.report import rich as rich_report
from proxydiag.report.environment import Environment
from proxydiag.report.views import visible_document, visible_findings
from proxydiag.rules.probe import certificate_line

if TYPE_CHECKING:
    from proxydiag.rules.base import Finding

STYLES = rich_report.STYLES


@dataclass(frozen=True)
class Verdict:
    """What the probe concluded of a listener (the document's probe_verdict)."""

    protocol: str | None
    software: str | None
    greets_only_after_client_spoke: bool
    expects_header: bool | None
    headers_accepted: tuple[str, ...]
    greets_without_header: bool
    time_to_greeting: float | None
    trusted: bool | None
    tls: JsonDict | None  # the handshake's facts, as rules/probe.py `certificate_line` reads them
    starttls: JsonDict | None

    @classmethod
    def of(cls, item: JsonDict) -> Verdict:
        return cls(item.get("protocol"), item.get("software"), bool(item.get("greets_only_after_client_spoke")),
                   item.get("expects_header"), tuple(item.get("headers_accepted") or ()),
                   bool(item.get("greets_without_header")), item.get("time_to_greeting"), item.get("trusted"),
                   item.get("tls"), item.get("starttls"))


@dataclass(frozen=True)
class ProbedStep:
    """One connection of the probe: what it sent first (`step`), what came of it, the exchange."""

    step: str
    outcome: str
    exchange: tuple[str, ...]

    @classmethod
    def of(cls, item: JsonDict) -> ProbedStep:
        return cls(str(item.get("step")), str(item.get("outcome")), tuple(item.get("exchange") or ()))


@dataclass(frozen=True)
class ProbedTarget:
    """A listener probed (the document's probe_target)."""

    target: str
    role: str
    error: str | None
    verdict: Verdict | None
    steps: tuple[ProbedStep, ...]

    @classmethod
    def of(cls, item: JsonDict) -> ProbedTarget:
        verdict = item.get("verdict")
        return cls(str(item.get("target")), str(item.get("role")), item.get("error"),
                   Verdict.of(verdict) if isinstance(verdict, dict) else None,
                   tuple(ProbedStep.of(step) for step in item.get("steps") or ()))


@dataclass(frozen=True)
class ProbeSummary:
    """The probe's counts: its targets, and the connections and severities every report counts."""

    targets: int
    counts: Summary

    @classmethod
    def of(cls, item: JsonDict) -> ProbeSummary:
        targets = item.get("targets")
        return cls(targets if isinstance(targets, int) else 0, Summary.of(item))


def targets_of(document: JsonDict) -> list[ProbedTarget]:
    return [ProbedTarget.of(item) for item in document.get("targets") or ()]


def listener_line(target: ProbedTarget) -> str:
    """The verdict in one sentence."""
    if target.error:
        return target.error
    verdict = target.verdict
    if verdict is None:
        return "?: no greeting seen"
    what = verdict.protocol or "?"
    if verdict.software:
        what += f" ({verdict.software})"
    if verdict.greets_only_after_client_spoke:
        return f"{what}: greets only after the client speaks"
    if verdict.expects_header:
        return f"{what}: expects a PROXY header from this host ({', '.join(verdict.headers_accepted)} accepted)"
    if verdict.greets_without_header:
        seconds = verdict.time_to_greeting
        when = f" after {seconds:.3f} s" if seconds is not None else ""
        return f"{what}: greets without a header{when}; headers from this host are not taken"
    if verdict.trusted is False:
        return f"{what}: cuts connections from this host, with or without a header"
    return f"{what}: no greeting seen"


def _tls_summary(verdict: Verdict | None) -> str:
    if verdict is None:
        return ""
    tls = verdict.tls or verdict.starttls
    if not tls or not tls.get("ok"):
        return ""
    how = "TLS" if verdict.tls else "STARTTLS"
    return f"{how} {tls['version']}, {certificate_line(tls)}"


def render_rich(document: JsonDict, console: Console, verbose: bool = False, quiet: bool = False,
                findings: Sequence[Finding] | None = None) -> None:
    shown = visible_findings(document, findings)
    document = visible_document(document)  # certificate text and greetings are the listener's: shown, never obeyed
    summary, targets = ProbeSummary.of(document.get("summary") or {}), targets_of(document)
    head = Text()
    head.append("proxydiag probe", style="bold")
    head.append(f"  — {summary.targets} target(s), {summary.counts.connections} connections\n")
    parts = [f"{count} {name}{'s' if count != 1 else ''}" for count, name in summary.counts.severity_counts()]
    head.append(", ".join(parts) if parts else "no findings", style=STYLES["error"] if summary.counts.errors else "green")
    console.print(head)
    if not quiet:
        console.print(_targets_table(targets))
    console.print(rich_report._findings(document, shown, verbose, Environment.of(document)))
    if verbose:
        for target in targets:
            for step in target.steps:
                console.print(Text(f"{target.target} step {step.step}: {step.outcome}", style="bold"))
                if step.exchange:  # one print: a print per line was most of a probe report's time
                    console.print(Text("\n".join("    " + line for line in step.exchange)))


def _targets_table(targets: list[ProbedTarget]) -> Table:
    table = Table(title="Listeners", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for name in ("target", "role", "verdict", "steps", "TLS"):
        table.add_column(name, overflow="fold")
    for target in targets:
        steps = "\n".join(f"{step.step}: {step.outcome}" for step in target.steps)
        table.add_row(Text(target.target), target.role, Text(listener_line(target)), Text(steps),
                      Text(_tls_summary(target.verdict)))
    return table


def render_markdown(document: JsonDict, version: str, command_line: str,
                    findings: Sequence[Finding] | None = None) -> str:
    shown = visible_findings(document, findings)
    document = visible_document(document)
    cell = markdown_report._cell
    command_line = document.get("command_line") or command_line
    summary, targets = ProbeSummary.of(document.get("summary") or {}), targets_of(document)
    out = ["# proxydiag probe report", "", f"- proxydiag {version}: {markdown_report.code(command_line)}",
           f"- {summary.targets} target(s), {summary.counts.connections} connections", "",
           "## Listeners", "", "| target | role | verdict | steps | TLS |", "|---|---|---|---|---|"]
    for target in targets:
        steps = ", ".join(f"{step.step}: {step.outcome}" for step in target.steps)
        out.append(f"| {cell(target.target)} | {target.role} | {cell(listener_line(target))} | {cell(steps)} | "
                   f"{cell(_tls_summary(target.verdict))} |")
    out.append("")
    out += markdown_report._findings(document, shown, Environment.of(document))
    out += ["## Conversations", ""]
    for target in targets:
        for step in target.steps:
            exchange = [line.replace("`", "'") for line in step.exchange]  # wire text cannot close the fence
            out += [f"### {target.target}: {step.step} ({step.outcome})", "", "```text", *exchange, "```", ""]
    return "\n".join(out).rstrip() + "\n"
