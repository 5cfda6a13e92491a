"""Stalwart's log formats (0.15 and 0.16 write them alike).

Text, written by the file (`tracer.log`), console (`tracer.stdout`) and journal-less
tracers through `FmtWriter` (crates/trc/src/serializers/text.rs in stalwartlabs/stalwart;
crates/common/src/telemetry/tracers/log.rs and stdout.rs use it)::

    2026-11-12T10:00:00Z WARN Proxy protocol error (network.proxy-error) listenerId = "smtp", localIp = 10.0.0.3, localPort = 10025, tls = false, reason = "end of stream"

The timestamp is mail_parser's RFC 3339 form of the event's UTC time; the level is
TRACE/DEBUG/INFO/WARN/ERROR; the event id is `group.name` (0.15 `name()`, 0.16 `as_str()`:
the same strings, built from the enum names by crates/trc/event-macro in 0.15); the keys
are the span's (the connection's `listenerId`, `localPort`, `remoteIp`, `remotePort`)
then the event's own, `spanId` left out. Strings are quoted with only `\\r \\n \\t \\\\`
escaped (a `"` inside is not); numbers, flags, addresses and durations (`12ms`) are bare;
`(null)` is no value; lists are `[a, b]`; a nested event is `Description (id) { k = v }`.
With `multiline`, each key goes on its own tab-indented line; with `ansi`, colour codes
surround the parts (both read here).

JSON, from crates/trc/src/serializers/json.rs (webhooks, the management API's history)::

    {"id": "...", "createdAt": "2026-11-12T10:00:00Z", "type": "network.proxy-error", "data": {"listenerId": "smtp", ...}}

one object per line, a JSON array of them, or a webhook body `{"events": [...]}`.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

from proxydiag.jsontypes import JsonDict
from proxydiag.logs.event import FieldValue, LogEvent

SOURCE = "stalwart"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
TEXT_LINE = re.compile(
    r"(?P<ts>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))"
    r" (?P<level>TRACE|DEBUG|INFO|WARN|ERROR) (?P<desc>.*?) "
    r"\((?P<id>[a-z][a-z0-9-]*\.[a-z0-9][a-z0-9.-]*)\)(?: (?P<keys>.*))?$"
)
TEXT_START = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\S* (?:TRACE|DEBUG|INFO|WARN|ERROR) ")
KEY = re.compile(r"([A-Za-z][A-Za-z0-9]*) = ")
NEXT_KEY = re.compile(r", [A-Za-z][A-Za-z0-9]* = ")
INTEGER = re.compile(r"-?\d+")
FLOAT = re.compile(r"-?\d+\.\d+(?:e[+-]?\d+)?")
UNESCAPE = {"r": "\r", "n": "\n", "t": "\t", "\\": "\\"}
ESCAPE = {"\r": "\\r", "\n": "\\n", "\t": "\\t", "\\": "\\\\"}

# What the journald tracer writes instead of the event id: the description
# (crates/common/src/telemetry/tracers/journald.rs puts `description()` in MESSAGE).
# Descriptions from crates/trc/src/event/enums_impl.rs (0.16; 0.15's description.rs agrees).
EVENT_BY_DESCRIPTION = {
    "Proxy protocol error": "network.proxy-error",
    "Blocked IP address": "security.ip-blocked",
    "Banned due to authentication errors": "security.authentication-ban",
    "Banned due to abuse": "security.abuse-ban",
    "Banned due to scan": "security.scan-ban",
    "Banned due to loitering": "security.loiter-ban",
    "X-Forwarded-For header is missing": "http.x-forwarded-missing",
    "SMTP connection started": "smtp.connection-start",
    "IMAP connection started": "imap.connection-start",
    "POP3 connection started": "pop3.connection-start",
    "ManageSieve connection started": "manage-sieve.connection-start",
    "HTTP connection started": "http.connection-start",
    "MAIL FROM without authentication": "smtp.mail-from-unauthenticated",
}
# Key names (crates/trc/src/event/enums_impl.rs `Key::as_str`), to undo journald's upper case.
KNOWN_KEYS = ("listenerId", "localIp", "localPort", "remoteIp", "remotePort", "reason", "tls", "details", "code",
              "protocol", "accountName", "path", "to", "from", "domain", "hostname", "id", "version", "result",
              "elapsed", "size", "total", "type", "value", "expires")
KEY_BY_UPPER = {key.upper(): key for key in KNOWN_KEYS}
# The reply to MAIL FROM where AUTH is required (crates/smtp/src/inbound/mail.rs).
AUTH_FIRST_REPLY = "503 5.5.1 You must authenticate first."


def starts_text_line(line: str) -> bool:
    return bool(TEXT_START.match(ANSI.sub("", line)))


def parse_text_line(line: str) -> tuple[str, str, str, str, dict[str, FieldValue]] | None:
    """(timestamp, level, description, event id, fields) of one text line, or None when
    it is not one. Multiline records come joined with their tab-indented key lines."""
    plain = ANSI.sub("", line).rstrip("\r\n")
    head, _, rest = plain.partition("\n")
    match = TEXT_LINE.match(head)
    if not match:
        return None
    keys = match.group("keys") or ""
    if rest:
        keys = ", ".join(part.strip("\t") for part in [keys, *rest.split("\n")] if part.strip("\t"))
    fields = parse_fields(keys)
    if fields is None:
        return None
    return match.group("ts"), match.group("level"), match.group("desc"), match.group("id"), fields


def parse_fields(text: str) -> dict[str, FieldValue] | None:
    """`key = value, key = value` as a dict; None when the text breaks the form."""
    fields: dict[str, FieldValue] = {}
    pos = 0
    while pos < len(text):
        key = KEY.match(text, pos)
        if key is None:
            return None
        parsed = _value(text, key.end(), top=True)
        if parsed is None:
            return None
        fields[key.group(1)], pos = parsed
        if pos < len(text):
            if not text.startswith(", ", pos):
                return None
            pos += 2
    return fields


def _value(text: str, pos: int, top: bool) -> tuple[FieldValue, int] | None:
    if text.startswith('"', pos):
        return _string(text, pos, top)
    if text.startswith("[", pos):
        return _array(text, pos)
    end = _bare_end(text, pos, top)
    return _bare(text[pos:end]), end


def _string(text: str, pos: int, top: bool) -> tuple[FieldValue, int] | None:
    """A quoted string; its end is a quote followed by the end, the next key (at the top)
    or the next item (in a list): Stalwart does not escape quotes inside."""
    out: list[str] = []
    index = pos + 1
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            out.append(UNESCAPE.get(text[index + 1], "\\" + text[index + 1]))
            index += 2
            continue
        if char == '"' and _closes(text, index + 1, top):
            return "".join(out), index + 1
        out.append(char)
        index += 1
    return None


def _closes(text: str, after: int, top: bool) -> bool:
    if after == len(text):
        return True
    if top:
        return bool(NEXT_KEY.match(text, after))
    return text.startswith(", ", after) or text.startswith("]", after)


def _array(text: str, pos: int) -> tuple[FieldValue, int] | None:
    items: list[FieldValue] = []
    index = pos + 1
    if text.startswith("]", index):
        return items, index + 1
    while index < len(text):
        parsed = _value(text, index, top=False)
        if parsed is None:
            return None
        item, index = parsed
        items.append(item)
        if text.startswith("]", index):
            return items, index + 1
        if not text.startswith(", ", index):
            return None
        index += 2
    return None


def _bare_end(text: str, pos: int, top: bool) -> int:
    depth = 0
    index = pos
    while index < len(text):
        char = text[index]
        if char == "{":
            depth += 1
        elif char == "}" and depth:
            depth -= 1
        elif depth == 0 and (NEXT_KEY.match(text, index) if top else text.startswith((", ", "]"), index)):
            return index
        index += 1
    return index


def _bare(token: str) -> FieldValue:
    if token in ("true", "false"):
        return token == "true"
    if token == "(null)":
        return None
    if INTEGER.fullmatch(token):
        return int(token)
    if FLOAT.fullmatch(token):
        return float(token)
    return token


def format_text_line(event: LogEvent) -> str:
    """The line Stalwart's text tracer writes for this event (description = event id when
    the event came from elsewhere): `parse_text_line` reads it back."""
    stamp = (event.timestamp or datetime.fromtimestamp(0, timezone.utc)).astimezone(timezone.utc)
    description = event.fields.get("_description") or event.event
    keys = ", ".join(f"{key} = {_format_value(value)}" for key, value in event.fields.items() if not key.startswith("_"))
    return f"{stamp.strftime('%Y-%m-%dT%H:%M:%SZ')} {event.level or 'INFO'} {description} ({event.event})" + (
        f" {keys}" if keys else "")


def _format_value(value: FieldValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "(null)"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_format_value(item) for item in value) + "]"
    return '"' + "".join(ESCAPE.get(char, char) for char in value) + '"'


def parse_timestamp(text: str) -> datetime | None:
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return stamp if stamp.tzinfo is not None else None


def text_event(line: str, file: str, number: int) -> LogEvent | None:
    parsed = parse_text_line(line)
    if parsed is None:
        return None
    stamp, level, _description, event_id, fields = parsed
    timestamp = parse_timestamp(stamp)
    if timestamp is None:
        return None
    return LogEvent(timestamp, SOURCE, event_id, fields, line, file, number, level)


def is_json_event(value: Any) -> bool:
    return (isinstance(value, dict) and isinstance(value.get("type"), str) and "." in value["type"]
            and isinstance(value.get("createdAt"), str) and isinstance(value.get("data", {}), dict))


def json_event(value: JsonDict, raw: str, file: str, number: int) -> LogEvent | None:
    """One event of the JSON serializer; None when the object is not one."""
    if not is_json_event(value):
        return None
    timestamp = parse_timestamp(value["createdAt"])
    if timestamp is None:
        return None
    return LogEvent(timestamp, SOURCE, value["type"], dict(value.get("data") or {}), raw, file, number)


def journal_event(entry: dict[str, Any], message: str, timestamp: datetime | None, raw: str, file: str,
                  number: int) -> LogEvent | None:
    """An event of Stalwart's journald tracer: the description in MESSAGE, each key an
    upper-case field (LISTENERID, REMOTEIP, ...)."""
    event_id = EVENT_BY_DESCRIPTION.get(message)
    if event_id is None:
        return None
    fields: dict[str, FieldValue] = {}
    for name, value in entry.items():
        if name in KEY_BY_UPPER and isinstance(value, str):
            fields[KEY_BY_UPPER[name]] = _bare(value) if KEY_BY_UPPER[name] != "reason" else value
    return LogEvent(timestamp, SOURCE, event_id, fields, raw, file, number, _journal_level(entry.get("PRIORITY")))


def _journal_level(priority: Any) -> str | None:
    levels = {"3": "ERROR", "4": "WARN", "6": "INFO", "7": "DEBUG"}
    return levels.get(str(priority)) if priority is not None else None
