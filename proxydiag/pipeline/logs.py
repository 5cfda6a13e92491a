"""`proxydiag logs`: files read, events judged, and the result as the JSON document every
report renders (spec/cli.md's schema: no connections, one input per log file, and a
`logs` section with the counts per listener and per source)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import tzinfo

from proxydiag.facts.model import SCHEMA
from proxydiag.facts.summary import Summary
from proxydiag.jsontypes import JsonDict
from proxydiag.logs.event import LogEvent, LogRead, NotALog
from proxydiag.logs.reader import read_log
from proxydiag.rules.logs import LogOptions, LogVerdict, judge


@dataclass
class LogAnalysis:
    reads: list[LogRead] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # one line each: what could not be read
    verdict: LogVerdict | None = None

    @property
    def events(self) -> list[LogEvent]:
        return [event for read in self.reads for event in read.events]

    def to_dict(self) -> JsonDict:
        findings = self.verdict.findings if self.verdict else []
        return {
            "schema": SCHEMA,
            "inputs": [read.to_dict() for read in self.reads],
            "summary": Summary.counting((finding.severity for finding in findings), log_events=len(self.events)).to_dict(),
            "stalwart_config": None,
            "connections": [],
            "findings": [finding.to_dict() for finding in findings],
            "logs": self.verdict.to_dict() if self.verdict else {},
        }


def analyze_logs(paths: Iterable[str], open_input: Callable[[str], bytes], options: LogOptions,
                 assume_tz: tzinfo) -> LogAnalysis:
    """Read every file (`open_input` gives its bytes or raises OSError), then judge all
    their events together: a Stalwart log and a proxy log are one story."""
    analysis = LogAnalysis()
    for path in paths:
        name = "<stdin>" if path == "-" else path
        try:
            data = open_input(path)
        except OSError as error:
            analysis.errors.append(f"cannot read {name}: {error.strerror or error}")
            continue
        try:
            analysis.reads.append(read_log(data, name, assume_tz))
        except NotALog as error:
            analysis.errors.append(str(error))
    analysis.verdict = judge(sorted(analysis.events, key=_order), options)
    return analysis


def _order(event: LogEvent) -> tuple[bool, float, str, int]:
    return (event.timestamp is None, event.timestamp.timestamp() if event.timestamp else 0.0, event.file, event.line)
