"""The report's "summary" member, typed: what was read and what the rules found, counted.
Built where the evidence is judged (facts.model.Analysis, pipeline.logs, pipeline.evidence),
written by `to_dict` (the JSON of schema proxydiag/1) and read back by `of` for the views'
head (report/environment.py), which read it by attribute."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from proxydiag.jsontypes import JsonDict, JsonValue


@dataclass(frozen=True)
class Summary:
    connections: int = 0
    with_proxy_header: int = 0
    errors: int = 0
    warnings: int = 0
    infos: int = 0
    log_events: int | None = None  # None: no log was read (the key is left out)

    @classmethod
    def counting(cls, severities: Iterable[str], connections: int = 0, with_proxy_header: int = 0,
                 log_events: int | None = None) -> Summary:
        """The counts of the findings' severities, with what was read."""
        listed = list(severities)
        return cls(connections, with_proxy_header, listed.count("error"), listed.count("warning"),
                   listed.count("info"), log_events)

    def severity_counts(self) -> list[tuple[int, str]]:
        """(count, severity) of the severities found, worst first."""
        counts = [(self.errors, "error"), (self.warnings, "warning"), (self.infos, "info")]
        return [(count, name) for count, name in counts if count]

    def with_log_events(self, log_events: int) -> Summary:
        return replace(self, log_events=log_events)

    def to_dict(self) -> JsonDict:
        counts: dict[str, JsonValue] = {"connections": self.connections, "with_proxy_header": self.with_proxy_header}
        if self.log_events is not None:
            counts["log_events"] = self.log_events
        return {**counts, "errors": self.errors, "warnings": self.warnings, "infos": self.infos}

    @classmethod
    def of(cls, written: Mapping[str, JsonValue]) -> Summary:
        """The member back from its JSON (a document given as JSON, as the views take it)."""
        def count(key: str) -> int:
            value = written.get(key, 0)
            return value if isinstance(value, int) else 0

        return cls(count("connections"), count("with_proxy_header"), count("errors"), count("warnings"),
                   count("infos"), count("log_events") if "log_events" in written else None)
