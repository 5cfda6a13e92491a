"""Logs as evidence: readers for Stalwart's, HAProxy's and nginx's log lines (text ->
typed `LogEvent`), and `judge` turning their events into findings of the catalog."""

from proxydiag.logs.event import LogEvent, LogRead, NotALog
from proxydiag.logs.reader import parse_record, read_log, records

__all__ = ["LogEvent", "LogRead", "NotALog", "parse_record", "read_log", "records"]
