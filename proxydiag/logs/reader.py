"""A log file (or standard input) as events: records found, each tried by every reader.

Formats are recognised line by line, so one file may mix them (a `journalctl -o json`
export holds Stalwart, HAProxy and nginx records together). A line of no format we know
is counted as foreign, one that starts like a known format but breaks it as malformed;
neither stops the reading. `journalctl -o json` records are unwrapped: the journal's
`__REALTIME_TIMESTAMP` (microseconds, UTC) dates them, and MESSAGE is read as a line of
its own unless it is an event of Stalwart's journald tracer (stalwart.journal_event).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timezone, tzinfo
from typing import Any

from proxydiag.jsontypes import JsonValue
from proxydiag.logs import haproxy, nginx, stalwart
from proxydiag.logs.event import LogEvent, LogRead, NotALog

BINARY_PROBE = 4096


def read_log(data: bytes, file: str, assume_tz: tzinfo = timezone.utc) -> LogRead:
    """Every event of one log; NotALog when the data holds no line of any known format."""
    text = data.decode("utf-8", errors="backslashreplace")
    result = LogRead(file)
    document = _json_document(text)
    if document is not None:
        _read_json_document(document, text, result)
    else:
        for number, record in records(text):
            result.lines += 1
            event = parse_record(record, file, number, assume_tz)
            if event is not None:
                result.add(event)
            elif _looks_known(record):
                result.malformed += 1
            else:
                result.foreign += 1
    if result.lines and not result.events:
        what = "binary data" if b"\0" in data[:BINARY_PROBE] else f"{result.lines} lines"
        raise NotALog(f"{file}: no line of a log proxydiag reads (Stalwart text or JSON, HAProxy, nginx error log, "
                      f"journalctl -o json) in {what}")
    return result


def records(text: str) -> Iterator[tuple[int, str]]:
    """(first line number, record) for each record: a line, or a line with what continues
    it (Stalwart's multiline keys, nginx's broken header holding a line break)."""
    current: str | None = None
    start = 0
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if current is not None and _continues(current, line):
            current += "\n" + line
            continue
        if current is not None and current.strip():
            yield start, current
        current, start = line, number
    if current is not None and current.strip():
        yield start, current


def _continues(record: str, line: str) -> bool:
    if line.startswith("\t") and stalwart.starts_text_line(record):
        return True
    return nginx.record_continues(record, line)


def parse_record(record: str, file: str, number: int, assume_tz: tzinfo) -> LogEvent | None:
    """One record through every reader: the first that knows it wins."""
    if record.lstrip().startswith("{"):
        value = _json(record)
        if isinstance(value, dict):
            return _journal(value, record, file, number, assume_tz) or stalwart.json_event(value, record, file, number)
        return None
    return parse_line(record, file, number, assume_tz)


def parse_line(line: str, file: str, number: int, assume_tz: tzinfo) -> LogEvent | None:
    return (stalwart.text_event(line, file, number)
            or haproxy.parse_line(line, file, number, assume_tz)
            or nginx.parse_line(line, file, number, assume_tz)
            or quoted_reply(line, file, number))


def quoted_reply(line: str, file: str, number: int) -> LogEvent | None:
    """A line of any other log (a sending MTA's, a client's) quoting Stalwart's refusal of
    an unauthenticated MAIL FROM (crates/smtp/src/inbound/mail.rs)."""
    if stalwart.AUTH_FIRST_REPLY not in line:
        return None
    return LogEvent(None, "other", "smtp.reply-authenticate-first", {"reply": stalwart.AUTH_FIRST_REPLY}, line, file,
                    number)


def _journal(entry: dict[str, Any], raw: str, file: str, number: int, assume_tz: tzinfo) -> LogEvent | None:
    if "MESSAGE" not in entry or not ("__REALTIME_TIMESTAMP" in entry or "_PID" in entry or "PRIORITY" in entry):
        return None
    message = _journal_message(entry["MESSAGE"])
    timestamp = _journal_time(entry.get("__REALTIME_TIMESTAMP"))
    native = stalwart.journal_event(entry, message, timestamp, raw, file, number)
    if native is not None:
        return native
    inner = parse_line(message, file, number, assume_tz)
    if inner is None:
        return None
    if timestamp is not None and (inner.tz_assumed or inner.timestamp is None):
        return replace(inner, timestamp=timestamp, tz_assumed=False)
    return inner


def _journal_message(value: Any) -> str:
    """MESSAGE is text, or a list of byte values when it was not valid UTF-8."""
    if isinstance(value, list) and all(isinstance(item, int) and 0 <= item < 256 for item in value):
        return bytes(value).decode("utf-8", errors="backslashreplace")
    return value if isinstance(value, str) else ""


def _journal_time(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value) / 1_000_000, timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _json_document(text: str) -> list[JsonValue] | None:
    """The events of a whole-file JSON document (an array of Stalwart events, or a webhook
    body `{"events": [...]}`), None when the file is something else."""
    stripped = text.lstrip()
    if not stripped.startswith(("[", "{")):
        return None
    value = _json(stripped)
    if isinstance(value, dict) and isinstance(value.get("events"), list):
        return value["events"]
    if isinstance(value, list):
        return value
    return None


def _read_json_document(items: list[JsonValue], text: str, result: LogRead) -> None:
    for index, item in enumerate(items, start=1):
        result.lines += 1
        raw = json.dumps(item, ensure_ascii=False) if isinstance(item, dict) else str(item)
        event = stalwart.json_event(item, raw, result.file, index) if isinstance(item, dict) else None
        if event is not None:
            result.add(event)
        else:
            result.malformed += 1


def _looks_known(record: str) -> bool:
    return (record.lstrip().startswith("{") or stalwart.starts_text_line(record) or nginx.starts_record(record)
            or bool(haproxy.RFC5424.match(record)))
