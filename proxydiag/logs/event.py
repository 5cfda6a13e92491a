"""One log line as a typed event: the common shape every log reader returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Union

from proxydiag.jsontypes import JsonDict

# A field value as the log wrote it: text, a number, a flag, nothing, or a list of these.
FieldValue = Union[str, int, float, bool, None, list["FieldValue"]]


@dataclass(frozen=True, slots=True)
class LogEvent:
    """What one line (or one record) of a log says.

    `timestamp` is always timezone-aware; where the line carries no zone (HAProxy's
    accept date, nginx's error log, syslog's RFC 3164 stamp) the reader's `assume_tz`
    was applied and `tz_assumed` says so. `event` is the source's own event name where
    it has one (Stalwart's `network.proxy-error`), else ours (`haproxy.proxy-not-header`).
    """

    timestamp: datetime | None
    source: str  # stalwart, haproxy, nginx
    event: str
    fields: dict[str, FieldValue] = field(default_factory=dict)
    raw: str = ""
    file: str = ""
    line: int = 0
    level: str | None = None
    tz_assumed: bool = False

    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def text(self, key: str) -> str | None:
        """A field as text (None when absent or empty)."""
        value = self.fields.get(key)
        return None if value in (None, "") else str(value)

    def number(self, key: str) -> int | None:
        value = self.fields.get(key)
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value
        if isinstance(value, str) and value.isdigit():
            return int(value)
        return None


@dataclass(slots=True)
class LogRead:
    """A whole file read: its events and what was skipped."""

    file: str
    events: list[LogEvent] = field(default_factory=list)
    lines: int = 0  # non-blank lines (records) seen
    foreign: int = 0  # lines of no format we know
    malformed: int = 0  # lines that began like a known format but broke it
    kinds: dict[str, int] = field(default_factory=dict)  # source -> events

    @property
    def recognised(self) -> int:
        return len(self.events)

    def add(self, event: LogEvent) -> None:
        self.events.append(event)
        self.kinds[event.source] = self.kinds.get(event.source, 0) + 1

    def to_dict(self) -> JsonDict:
        return {
            "path": self.file,
            "format": "log",
            "lines": self.lines,
            "events": self.recognised,
            "sources": dict(sorted(self.kinds.items())),
            "foreign": self.foreign,
            "malformed": self.malformed,
        }


class NotALog(ValueError):
    """The input has no line of any log format proxydiag knows."""
