"""A `Report` shown as a `View` asks: the document each format renders, anonymised the
one way that fits it (the only place that chooses), then written piece by piece."""

from __future__ import annotations

import io
import ipaddress
import os
import re
import shlex
import sys
from collections.abc import Callable, Iterable, Sequence
from itertools import chain, islice
from pathlib import Path
from typing import TYPE_CHECKING

from proxydiag import __version__
from proxydiag.jsontypes import JsonDict
from proxydiag.outputs import write_replacing
from proxydiag.report.model import Report, View
from proxydiag.report.views import SHOWN_CONNECTIONS, summarised

if TYPE_CHECKING:
    from rich.console import Console

    from proxydiag.rules.base import Finding

# An option value proxydiag names itself (a format, a severity, a count, `25=none`): shown as given.
_OWN_VALUE = re.compile(r"-|[A-Za-z0-9_]+|\d+(?:\.\d+)?|\d+=[A-Za-z0-9]+")
HIDDEN = "ANONYMIZED"


class WriteError(Exception):
    """The report could not be written: one line for the user."""


def render(report: Report, view: View) -> Iterable[str]:
    """The report as pieces of text, in the view's format."""
    document, findings, more = shown(report, view)
    if report.probe:
        return _render_probe(document, findings, view)
    if view.format == "json":
        from proxydiag.report import json as json_report

        return json_report.stream_document(document) if report.connections else json_report.render_document(document)
    if view.format == "markdown":
        from proxydiag.report import markdown as markdown_report

        return markdown_report.render(document, __version__, command_line(view.arguments), findings)
    if view.format == "html":
        from proxydiag.report import html as html_report

        return html_report.render(document, __version__, command_line(view.arguments), findings)
    from proxydiag.report import rich as rich_report

    console = console_for(view.output)
    turns = rich_report.render_in_turns(document, console, view.verbose, view.quiet, more, findings)
    return (taken(console) for _ in chain(turns, [None]))


def shown(report: Report, view: View) -> tuple[JsonDict, Sequence[Finding] | None, Iterable[JsonDict]]:
    """The document the view renders, its findings typed (None: only the document knows
    them), and the connections a rich `-v` report lists after its own. Captured traffic:
    JSON is written connection by connection (under --anonymize the store is read twice:
    to learn every original, then to rewrite); the human reports summarise (the
    connections pass by once, the first ones stay)."""
    from proxydiag.report.json import document_of
    from proxydiag.report.views import told_findings

    connections = report.connections
    findings = told_findings(report.typed()) if report.typed() else None
    document = document_of(report)
    if view.format == "json" and connections is not None:
        if view.anonymize:
            from proxydiag.report.anonymize import anonymize_streamed  # only then: a light start otherwise

            return anonymize_streamed(document, lambda: connections(False), report.given, findings or ()), None, ()
        return {**document, "connections": connections(True)}, findings, ()
    if connections is not None:
        document = summarised({**document, "connections": connections(False)})
    if view.format in ("markdown", "html"):  # the ticket names the command, anonymised like the rest
        document = {**document, "command_line": command_line(view.arguments)}
    if connections is None or not (view.verbose and view.format == "rich"):  # no more to list
        if view.anonymize:
            return (*anonymized(document, report.given, view.arguments, findings or ()), ())
        return document, findings, ()
    if view.anonymize:
        from proxydiag.report.anonymize import anonymize_listing

        whole, told, rest = anonymize_listing(document, lambda: connections(False), SHOWN_CONNECTIONS, report.given,
                                              findings or ())
        return whole, told if findings else None, rest
    return document, findings, islice(connections(False), SHOWN_CONNECTIONS, None)


def _render_probe(document: JsonDict, findings: Sequence[Finding] | None, view: View) -> Iterable[str]:
    from proxydiag.report import json as json_report
    from proxydiag.report import probe as probe_report

    if view.format == "json":
        return json_report.render_document(document)
    if view.format == "markdown":
        return probe_report.render_markdown(document, __version__, command_line(view.arguments), findings)
    console = console_for(view.output)
    probe_report.render_rich(document, console, verbose=view.verbose, quiet=view.quiet, findings=findings)
    return taken(console)


def write(pieces: str | Iterable[str], output: Path | None) -> None:
    """The report to stdout or a file (a new file renamed into place), piece by piece."""
    if output is None:
        for piece in [pieces] if isinstance(pieces, str) else pieces:
            sys.stdout.write(piece)
        return
    try:
        write_replacing(output, [pieces] if isinstance(pieces, str) else pieces)
    except OSError as error:
        raise WriteError(f"cannot write {output}: {error.strerror or error}") from None


def command_line(arguments: Iterable[str]) -> str:
    return shlex.join(["proxydiag", *arguments])


# --- --anonymize: the document, and the command line it shows ------------------------------


def anonymized(document: JsonDict, given: Sequence[str], arguments: Sequence[str],
               findings: Sequence[Finding] = ()) -> tuple[JsonDict, Sequence[Finding] | None]:
    """The document under --anonymize: every address, name and given file rewritten, and
    the command line it shows keeping none of the user's own values; with its typed
    `findings` told through the pseudonyms (None when none were given)."""
    from proxydiag.report.anonymize import Anonymizer

    if "command_line" in document:  # paths no input names (-o, -w) go first: the pass would half-rewrite them
        document["command_line"] = _without_originals(document["command_line"], arguments,
                                                      lambda value: _other_path(value, given))
    document, told = Anonymizer().report(document, given, findings)
    if "command_line" in document:
        document["command_line"] = _without_originals(document["command_line"], arguments, lambda value: True)
    return document, told if findings else None


def _other_path(value: str, inputs: Sequence[str]) -> bool:
    """A file name that is not one of the inputs (an output), and not a network (10.0.0.0/8)."""
    if value in inputs or not ("/" in value or os.path.exists(value)):
        return False
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return True
    return False


def _without_originals(line: str, arguments: Iterable[str], hidden: Callable[[str], bool]) -> str:
    """The command line with each argument value that `hidden` picks replaced by a mark,
    unless proxydiag names it itself (a format, a count)."""
    for argument in arguments:
        if argument.startswith("--"):
            value = argument.partition("=")[2]
        elif argument.startswith("-") and argument != "-":
            value = argument[2:]  # -o, or -oFILE
        else:
            value = argument
        if value and not _OWN_VALUE.fullmatch(value) and hidden(value):
            line = line.replace(value, HIDDEN)
    return line


# --- rich: a console recording into a string -------------------------------------------------


def console_for(output: Path | None) -> Console:
    """Colour on a terminal, plain 100 columns elsewhere."""
    from rich.console import Console

    to_terminal = output is None and sys.stdout.isatty()
    console = Console(file=io.StringIO(), force_terminal=to_terminal, width=None if to_terminal else 100,
                      color_system="auto" if to_terminal else None, soft_wrap=False)
    if to_terminal:
        console.width = Console().width
    return console


def taken(console: Console) -> str:
    """What a console made by `console_for` has written since last taken."""
    assert isinstance(console.file, io.StringIO)
    text = console.file.getvalue()
    console.file.seek(0)
    console.file.truncate()
    return text
