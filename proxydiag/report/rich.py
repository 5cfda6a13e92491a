"""The report for people: a verdict per endpoint, the findings with their evidence and
fix, then the connections. Colour only where it helps; plain text when not a terminal."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from functools import cache
from itertools import chain, islice
from typing import TYPE_CHECKING

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from proxydiag.jsontypes import JsonDict
from proxydiag.report import ladder_text
from proxydiag.report.environment import Environment
from proxydiag.report.ladder import Drawn, Ladder, pictures
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

STYLES = {"error": "bold red", "warning": "yellow", "info": "cyan"}
MAX_TABLE_ROWS = 200


def render(document: JsonDict, console: Console, verbose: bool = False, quiet: bool = False,
           findings: Sequence[Finding] | None = None) -> None:
    for _ in render_in_turns(document, console, verbose, quiet, findings=findings):
        pass


def render_in_turns(document: JsonDict, console: Console, verbose: bool = False, quiet: bool = False,
                    more: Iterable[JsonDict] = (), findings: Sequence[Finding] | None = None) -> Iterator[None]:
    """Every string of the document is data: rich gets it as `Text` (never markup), with
    control characters already shown as escapes. `more`: connections after the document's
    own (with -v), printed in further tables of MAX_TABLE_ROWS. A generator: it pauses
    after each table, for the caller to take what the console has written so far.
    `findings`: the document's, typed (None: read from the document)."""
    shown = visible_findings(document, findings)
    document = visible_document(document)
    environment = Environment.of(document)
    console.print(_headline(environment))
    if not quiet and (not environment.logs_read or document["connections"]):
        console.print(_verdict(document))
    if environment.problems():  # with the findings: what they could not cover
        console.print(_problems(environment.problems()))
    console.print(_findings(document, shown, verbose, environment))
    if quiet or not document["connections"]:
        return
    more = iter(more)
    first = next(more, None)
    shown = document["connections"] if verbose or first is not None else document["connections"][:MAX_TABLE_ROWS]
    console.print(_connections(shown, environment.summary.connections, more_follow=first is not None))
    yield
    rows = chain([first], more) if first is not None else iter(())
    while batch := list(islice(rows, MAX_TABLE_ROWS)):
        console.print(_connections(visible_document(batch), 0, continued=True))
        yield


def _headline(environment: Environment) -> Text:
    summary, captures, stalwart = environment.summary, environment.captures, environment.stalwart
    parts = []
    if captures or (not environment.logs_read and environment.proxy_configs is None and stalwart is None):
        packets = sum(capture.packets for capture in captures)
        parts.append(f"{len(captures)} capture{'s' if len(captures) != 1 else ''}, {packets} packets, "
                     f"{summary.connections} connections, {summary.with_proxy_header} with a PROXY header")
    if environment.logs_read:
        logs, events = len(environment.logs), summary.log_events
        parts.append(f"{logs} log{'s' if logs != 1 else ''}, {events} event{'s' if events != 1 else ''} read")
    if environment.proxy_configs is not None:
        paths = ", ".join(config.path for config in environment.proxy_configs) or "none readable"
        parts.append(f"proxy configurations: {paths}" + (f"; Stalwart: {stalwart.path}" if stalwart else ""))
    if not parts and stalwart:
        parts.append(f"Stalwart configuration {stalwart.path}")
    text = Text()
    text.append("proxydiag", style="bold")
    text.append("  — " + "; ".join(parts) + "\n")
    counts = [f"{count} {name}{'s' if count != 1 else ''}" for count, name in summary.severity_counts()]
    text.append(", ".join(counts) if counts else "no findings", style=STYLES["error"] if summary.errors else "green")
    return text


def _verdict(document: JsonDict) -> Table:
    table = Table(title="Endpoints", title_justify="left", box=box.SIMPLE_HEAD, expand=False, pad_edge=False)
    table.add_column("", width=1, no_wrap=True)
    table.add_column("server endpoint", no_wrap=True)
    table.add_column("protocol")
    table.add_column("conns", justify="right")
    table.add_column("header")
    table.add_column("verdict")
    for row in endpoint_verdicts(document):
        if row["errors"]:
            mark, verdict, style = "✗", f"{row['errors']} error(s)", STYLES["error"]
        elif row["warnings"]:
            mark, verdict, style = "!", f"{row['warnings']} warning(s)", STYLES["warning"]
        else:
            mark, verdict, style = "✓", "healthy", "green"
        protocol = "/".join(row["protocols"]) + (f" ({row['software']})" if row["software"] else "")
        table.add_row(Text(mark, style=style), Text(row["endpoint"]), Text(protocol), Text(str(row["connections"])),
                      Text(", ".join(row["headers"])), Text(verdict, style=style))
    return table


def _problems(problems: list[str]) -> Group:
    lines: list[RenderableType] = [Text("\nNot judged, or refused by the program that reads it", style="bold")]
    lines += [Padding(Text(problem, style=STYLES["warning"]), (0, 0, 0, 2)) for problem in problems]
    return Group(*lines)


def _findings(document: JsonDict, findings: Sequence[Finding], verbose: bool, environment: Environment) -> Group:
    if not findings:
        return Group(Text("\n" + environment.no_findings_text(), style="green"))
    parts: list[RenderableType] = [Text("\nFindings", style="bold")]
    drawn = pictures(findings, ladder_legs_of(document)) if verbose else [Drawn()] * len(findings)
    for finding, picture in zip(findings, drawn, strict=True):
        title = Text()
        title.append(f" {finding.severity.upper():7} ", style=STYLES[finding.severity])
        title.append(f"{finding.code} {finding.slug}", style="bold")
        if finding.inferred:
            title.append("  (expectation inferred)", style="dim")
        body: list[RenderableType] = [Text(finding.message)]
        for line in evidence_lines(finding, limit=12 if verbose else 5):
            body.append(Text(line, style="dim"))
        if finding.connections:
            body.append(Text(f"where: {where_line(finding)}", style="dim"))
        if picture.ladder is not None:
            body.append(_ladder(picture.ladder))
        elif picture.above:
            body.append(Text(f"conversation: its ladder is under {picture.above} above", style="dim"))
        if finding.fix and (finding.severity != "info" or verbose):
            body.append(Text("fix:", style="bold"))
            body.append(_markdown(finding.fix))
            body.append(Text(""))  # a fix's last code block would otherwise run into the pointer below
        body.append(Text(f"more: proxydiag explain {finding.code}", style="dim"))
        parts.append(title)
        parts.append(Padding(Group(*body), (0, 0, 1, 4)))
    return Group(*parts)


LADDER_STYLES = {"header": "bold blue", "tls": "magenta", "reply": "red", "rst": "red", "greeting": "green",
                 "client": "default", "detail": "blue", "lanes": "bold"}



def _markdown(text: str) -> RenderableType:
    """A fix's Markdown; rich.markdown (markdown-it, pygments) is imported only by a report that shows one."""
    return _fix_markdown()(text)


@cache
def _fix_markdown() -> type:
    """rich's Markdown with code blocks padded on the sides only: its own blank line above and
    below a block doubled the one between blocks ("In FILE, line N:", two blank lines, the diff)."""
    from rich.markdown import CodeBlock, Markdown
    from rich.syntax import Syntax

    class TightCodeBlock(CodeBlock):
        def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
            yield Syntax(str(self.text).rstrip(), self.lexer_name, theme=self.theme, word_wrap=True, padding=(0, 1))

    class FixMarkdown(Markdown):
        elements = {**Markdown.elements, "fence": TightCodeBlock, "code_block": TightCodeBlock}

    return FixMarkdown

def _ladder(ladder: Ladder) -> Group:
    """The conversation of the finding's first hit, as a ladder of text."""
    heading = Text("conversation " + ", ".join(f"#{number}" for number in ladder.connections)
                   + " (times after its first SYN):", style="bold")
    grid = Table.grid(padding=(0, 1))
    grid.add_column(justify="right", no_wrap=True, min_width=ladder_text.TIME_WIDTH)
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold", ratio=1)
    for row in ladder_text.rows_of(ladder):
        style = LADDER_STYLES.get(row.kind, "dim")
        grid.add_row(Text(row.time, style="dim"), Text(row.drawing, style=style), Text(row.text, style=style))
    legend = [Text(line, style="dim") for line in ladder_text.legend(ladder)]
    return Group(heading, *legend, grid)


def _connections(connections: list[JsonDict], total: int, more_follow: bool = False, continued: bool = False) -> Table:
    """The table of connections; a continued one (with -v, past the first MAX_TABLE_ROWS)
    has neither title nor column headers."""
    table = Table(title=None if continued else "Connections", title_justify="left",
                  box=box.SIMPLE_HEAD, show_edge=not continued,
                  pad_edge=continued, show_header=not continued)
    for title in ("#", "client (per header)\n→ server", "proto", "header", "greeting", "closed by"):
        # a continued table, headerless, keeps the widths the headers gave the first one
        width = max(map(len, title.splitlines()))
        if title == "greeting":
            table.add_column(title, overflow="fold", ratio=1, min_width=16)
        else:
            table.add_column(title, justify="right" if title == "#" else "left", no_wrap=True, min_width=width)
    for conn in connections:
        tls = tls_label(conn)
        cells = (
            str(conn["id"]),
            f"{client_label(conn)}\n→ {endpoint_of(conn)}",
            (conn["protocol"] or "?") + (f"\n{tls}" if tls != "-" and conn["protocol"] != "tls" else ""),
            header_label(conn),
            (conn["greeting"] or "")[:120],
            outcome_label(conn),
        )
        table.add_row(*(Text(cell) for cell in cells))
    if not continued and not more_follow and len(connections) < total:
        table.caption = Text(f"{total - len(connections)} more connections: use -v or --format json")
    return table
