"""What a report says it read, typed: the inputs (captures and logs), the proxy
configurations, Stalwart's configuration and the counts. Every human view's head (rich's
headline, Markdown's and HTML's environment, the "no findings" sentence and the list of
what was not judged) reads these, by attribute.

They are read from the report's JSON document (schema proxydiag/1), the one form every
command writes and `--anonymize` rewrites; so the pseudonyms and the escapes of the
document (views.visible_document) are what these hold, and no view reads an original.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from proxydiag.jsontypes import JsonDict


def _count(item: Mapping[str, Any], key: str) -> int:
    value = item.get(key)
    return value if isinstance(value, int) else 0


def _text(item: Mapping[str, Any], key: str) -> str | None:
    value = item.get(key)
    return value if isinstance(value, str) else None


def _texts(item: Mapping[str, Any], key: str) -> tuple[str, ...]:
    return tuple(str(value) for value in item.get(key) or ())


@dataclass(frozen=True)
class Summary:
    """The document's counts."""

    connections: int = 0
    with_proxy_header: int = 0
    log_events: int = 0
    errors: int = 0
    warnings: int = 0
    infos: int = 0

    @classmethod
    def of(cls, item: Mapping[str, Any]) -> Summary:
        return cls(*(_count(item, key) for key in ("connections", "with_proxy_header", "log_events", "errors",
                                                   "warnings", "infos")))

    def severity_counts(self) -> list[tuple[int, str]]:
        """(count, severity) of the severities found, worst first."""
        counts = [(self.errors, "error"), (self.warnings, "warning"), (self.infos, "info")]
        return [(count, name) for count, name in counts if count]


@dataclass(frozen=True)
class CaptureRead:
    """A capture read (the document's capture_input)."""

    path: str
    format: str | None
    linktypes: tuple[int, ...]
    packets: int
    damaged: str | None
    error: str | None

    @classmethod
    def of(cls, item: Mapping[str, Any]) -> CaptureRead:
        return cls(str(item.get("path")), _text(item, "format"), tuple(item.get("linktypes") or ()),
                   _count(item, "packets"), _text(item, "damaged"), _text(item, "error"))

    def state(self) -> tuple[tuple[str, str], ...]:
        """What went wrong reading it: ("damaged", what), ("unreadable", why), where it did."""
        return tuple((what, said) for what, said in (("damaged", self.damaged), ("unreadable", self.error)) if said)


@dataclass(frozen=True)
class LogFileRead:
    """A log file read (the document's log_input)."""

    path: str
    lines: int
    events: int
    sources: tuple[tuple[str, int], ...]  # events per source (stalwart, haproxy, ...)
    foreign: int
    malformed: int

    @classmethod
    def of(cls, item: Mapping[str, Any]) -> LogFileRead:
        sources = item.get("sources") or {}
        return cls(str(item.get("path")), _count(item, "lines"), _count(item, "events"),
                   tuple((str(name), int(count)) for name, count in sources.items()), _count(item, "foreign"),
                   _count(item, "malformed"))


@dataclass(frozen=True)
class ProxyConfigRead:
    """A proxy configuration read (the document's proxy_config)."""

    kind: str
    path: str
    listeners: int
    routes: int
    problems: tuple[str, ...]

    @classmethod
    def of(cls, item: Mapping[str, Any]) -> ProxyConfigRead:
        return cls(str(item.get("kind")), str(item.get("path")), len(item.get("listeners") or ()),
                   len(item.get("routes") or ()), _texts(item, "problems"))


@dataclass(frozen=True)
class StalwartRead:
    """Stalwart's configuration read (the document's stalwart_config)."""

    path: str
    style: str
    listeners: int
    trusted_networks: tuple[str, ...]
    problems: tuple[str, ...]

    @classmethod
    def of(cls, item: Mapping[str, Any]) -> StalwartRead:
        return cls(str(item.get("path")), str(item.get("style")), len(item.get("listeners") or ()),
                   _texts(item, "trusted_networks"), _texts(item, "problems"))


@dataclass(frozen=True)
class Environment:
    """What the report read. `proxy_configs` is None where the command reads none (analyze,
    logs), and `logs_read` says whether it reads logs, so a view says what "no findings" covers."""

    summary: Summary
    inputs: tuple[CaptureRead | LogFileRead, ...]  # in the order given
    proxy_configs: tuple[ProxyConfigRead, ...] | None
    stalwart: StalwartRead | None
    logs_read: bool  # the command reads logs
    logs_judged: bool  # and they gave a verdict (an empty "logs" section: none)
    anonymized: bool

    @classmethod
    def of(cls, document: JsonDict) -> Environment:
        inputs = [item for item in document.get("inputs") or () if isinstance(item, dict)]
        configs = document.get("proxy_configs")
        stalwart = document.get("stalwart_config")
        return cls(
            summary=Summary.of(document.get("summary") or {}),
            inputs=tuple(LogFileRead.of(item) if item.get("format") == "log" else CaptureRead.of(item) for item in inputs),
            proxy_configs=None if configs is None else tuple(ProxyConfigRead.of(item) for item in configs),
            stalwart=StalwartRead.of(stalwart) if isinstance(stalwart, dict) else None,
            logs_read=document.get("logs") is not None,
            logs_judged=bool(document.get("logs")),
            anonymized=bool(document.get("anonymized")),
        )

    @property
    def captures(self) -> tuple[CaptureRead, ...]:
        return tuple(item for item in self.inputs if isinstance(item, CaptureRead))

    @property
    def logs(self) -> tuple[LogFileRead, ...]:
        return tuple(item for item in self.inputs if isinstance(item, LogFileRead))

    def problems(self) -> list[str]:
        """What the configurations hold that was not judged, or that Stalwart or the proxy
        would refuse: each proxy configuration's problems, then Stalwart's."""
        found = [problem for config in self.proxy_configs or () for problem in config.problems]
        if self.stalwart is not None:
            found += [f"{self.stalwart.path}: {problem}" for problem in self.stalwart.problems]
        return found

    def no_findings_text(self) -> str:
        """What "no findings" covers: the traffic when there was some, else what was read."""
        if self.summary.connections:
            return "No findings: every header and greeting looks as expected."
        read = [what for shown, what in ((bool(self.proxy_configs), "the proxy configurations"),
                                         (self.stalwart is not None, "Stalwart's configuration"),
                                         (self.logs_judged, "the logs")) if shown]
        if not read:
            return "No findings: no connection was captured."
        problems = " (apart from what was not judged, above)" if self.problems() else ""
        return f"No findings: {' and '.join(read)} show no problem{problems}."
