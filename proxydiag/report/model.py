"""What a command hands its views: the `Report` the pipeline built, and the `View` the
command line asked for. Light on purpose: the command line imports it at start."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
    """What every view renders: the document (schema proxydiag/1, each finding told its
    fix) and, for captured traffic, its connections read afresh from the store at each
    call (`encoded`: as the JSON text judging wrote, for the JSON report), never whole in
    memory. `probe`: a probe's document, whose steps have views of their own. `findings`:
    the `Finding`s of the document's "findings", in its order, whose typed `said` the
    anonymiser tells through its pseudonyms."""

    document: dict[str, Any]
    connections: Callable[[bool], Iterator[Any]] | None = None
    probe: bool = False
    given: Sequence[str] = ()  # the files the command was given: hidden under --anonymize wherever they stand
    findings: Sequence[Finding] = ()

    @classmethod
    def of_files(cls, document: dict[str, Any], given: Iterable[str | Path | None], **more: Any) -> Report:
        return cls(document, given=[str(path) for path in given if path is not None], **more)

    def typed(self) -> Sequence[Finding]:
        """The document's findings, typed; none when they are not known for each of its own."""
        if len(self.findings) != len(self.document.get("findings") or ()):
            return ()
        return self.findings
