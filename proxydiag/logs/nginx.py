"""nginx's error log (`error_log FILE LEVEL;`), as ngx_log_error_core() writes it
(src/core/ngx_log.c in nginx/nginx)::

    2026/12/02 11:20:06 [error] 16536#16536: *1 broken header: "EHLO x" while reading PROXY protocol, client: 127.50.0.3, server: 127.50.0.1:22026

The time is local with no zone (`assume_tz` is applied). `*N` is the connection number.
`broken header: "..."` quotes the client's bytes raw (src/core/ngx_proxy_protocol.c), so
a CR LF inside splits the record over several lines: `record_continues` tells the reader
to join them. The same messages come through syslog (`error_log syslog:...`) with the
`nginx: ` tag and no date.

Events: `nginx.broken-header` (bytes that are no PROXY header on a `listen ...
proxy_protocol`), `nginx.proxy-protocol-error` (the client closed, reset or timed out
before sending a header), `nginx.connect` (stream `client ... connected to ...`, level
info), `nginx.message` (anything else).
"""

from __future__ import annotations

import re
from datetime import datetime, tzinfo

from proxydiag.logs.event import FieldValue, LogEvent

SOURCE = "nginx"
LEVELS = "debug|info|notice|warn|error|crit|alert|emerg"
RECORD = re.compile(
    r"(?:(?P<date>\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}) |(?:<\d{1,3}>)?(?:[A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2} (?:\S+ )?)?nginx: )"
    r"\[(?P<level>" + LEVELS + r")\] (?P<pid>\d+)#(?P<tid>\d+): (?:\*(?P<conn>\d+) )?(?P<message>.*)$",
    re.S,
)
BROKEN_HEADER = re.compile(r'broken header: "(?P<data>.*)" while reading PROXY protocol(?P<context>.*)$', re.S)
WHILE_READING = re.compile(r"(?P<reason>.+?) while reading PROXY protocol(?P<context>.*)$", re.S)
CONNECTED = re.compile(r"client (?P<client>\S+) connected to (?P<server>\S+)$")
CONTEXT = re.compile(r", (?P<key>[a-z_ ]+): (?P<value>[^,]+)")
BROKEN_START = re.compile(r'broken header: "')
MAX_JOINED_LINES = 64


def starts_record(line: str) -> bool:
    return bool(RECORD.match(line))


def record_continues(record: str, next_line: str) -> bool:
    """A broken header's quoted bytes held a line break: the record goes on until the
    line that closes the quote (`" while reading PROXY protocol`)."""
    if "while reading PROXY protocol" in record or not BROKEN_START.search(record):
        return False
    return record.count("\n") < MAX_JOINED_LINES and not starts_record(next_line)


def parse_line(record: str, file: str, number: int, assume_tz: tzinfo) -> LogEvent | None:
    match = RECORD.match(record.rstrip("\r\n"))
    if not match:
        return None
    timestamp = _date(match.group("date"), assume_tz) if match.group("date") else None
    if match.group("date") and timestamp is None:
        return None
    event, fields = _message(match.group("message"))
    fields["pid"] = int(match.group("pid"))
    if match.group("conn"):
        fields["connection"] = int(match.group("conn"))
    return LogEvent(timestamp, SOURCE, event, fields, record, file, number, match.group("level"), tz_assumed=True)


def _message(message: str) -> tuple[str, dict[str, FieldValue]]:
    broken = BROKEN_HEADER.match(message)
    if broken:
        return "nginx.broken-header", {"data": broken.group("data"), **_context(broken.group("context"))}
    reading = WHILE_READING.match(message)
    if reading:
        return "nginx.proxy-protocol-error", {"reason": reading.group("reason"), **_context(reading.group("context"))}
    connected = CONNECTED.match(message)
    if connected:
        client, _, port = connected.group("client").rpartition(":")
        return "nginx.connect", {"client": client, "client_port": int(port) if port.isdigit() else None,
                                 "server": connected.group("server")}
    return "nginx.message", {"message": message}


def _context(text: str) -> dict[str, FieldValue]:
    """`, client: A, server: B:P` after the message."""
    return {match.group("key").replace(" ", "_"): match.group("value") for match in CONTEXT.finditer(text)}


def _date(text: str, zone: tzinfo) -> datetime | None:
    try:
        return datetime.strptime(text, "%Y/%m/%d %H:%M:%S").replace(tzinfo=zone)
    except ValueError:
        return None


def format_record(event: LogEvent) -> str:
    """The error-log record of a broken-header event: `parse_line` reads it back."""
    stamp = event.timestamp
    assert stamp is not None
    fields = event.fields
    return (f"{stamp:%Y/%m/%d %H:%M:%S} [{event.level or 'error'}] {fields['pid']}#{fields['pid']}: "
            f"*{fields['connection']} broken header: \"{fields['data']}\" while reading PROXY protocol, "
            f"client: {fields['client']}, server: {fields['server']}")
