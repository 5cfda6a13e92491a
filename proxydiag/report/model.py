"""What a command hands its views: the `Report` the pipeline built, and the `View` the
command line asked for. Light on purpose: the command line imports it at start."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from proxydiag.report.environment import Environment
    from proxydiag.rules.base import Finding

FORMATS = ("rich", "json", "markdown", "html")


@dataclass
class View:
    """How the report is shown: the options every reporting command shares."""

    format: str = "rich"  # one of FORMATS
    output: Path | None = None
    anonymize: bool = False
    quiet: bool = False
    verbose: bool = False
    arguments: Sequence[str] = ()  # the command line after `proxydiag`, as given


@dataclass
class Report:
    """What every view renders. `findings`: the rules' `Finding`s, in the order of the
    document's "findings", typed: the rich, Markdown and HTML views read them by attribute,
    the JSON document writes its findings from them (report/json.py `document_of`, which
    tells each its fix), and `--anonymize` rewrites each into a `Finding` holding no
    original (its message told through the pseudonyms from its typed `said`).
    `document`: the JSON of schema proxydiag/1, the one form every command writes and
    `--anonymize` rewrites; `environment` reads its head typed (the inputs, the
    configurations, Stalwart's, the counts), as every human view does.
    `connections`: for captured traffic, read afresh from the store at each call
    (`encoded`: as the JSON text judging wrote, for the JSON report), never whole in
    memory; they stay the JSON objects the store streams, on purpose: a connection is
    written once and read by the views row by row. `probe`: a probe's document, whose
    steps have views of their own."""

    document: dict[str, Any]
    connections: Callable[[bool], Iterator[Any]] | None = None
    probe: bool = False
    given: Sequence[str] = ()  # the files the command was given: hidden under --anonymize wherever they stand
    findings: Sequence[Finding] = ()

    @classmethod
    def of_files(cls, document: dict[str, Any], given: Iterable[str | Path | None], **more: Any) -> Report:
        return cls(document, given=[str(path) for path in given if path is not None], **more)

    @property
    def environment(self) -> Environment:
        from proxydiag.report.environment import Environment

        return Environment.of(self.document)

    def typed(self) -> Sequence[Finding]:
        """The document's findings, typed; none when they are not known for each of its own."""
        if len(self.findings) != len(self.document.get("findings") or ()):
            return ()
        return self.findings
