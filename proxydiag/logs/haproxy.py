"""HAProxy's log lines.

A line is an optional syslog envelope, then HAProxy's message:

- RFC 3164, as HAProxy sends it to a syslog target (`log ADDR local0`):
  `<134>Dec  2 11:20:24 haproxy[16935]: MSG` (no host), or as rsyslog files it
  (`/var/log/haproxy.log`): `Dec  2 11:20:24 host haproxy[16935]: MSG` or with rsyslog's
  precise stamps `2026-12-02T11:20:24.996770+00:00 host haproxy[16935]: MSG`;
- RFC 5424 (`format rfc5424`): `<134>1 2026-12-02T11:20:24.996770+00:00 - haproxy 16935 - - MSG`;
- none (`log stdout format raw`, `-d`): `MSG`.

Messages (HAProxy 2.6, recorded from Debian's package by tests/test_logs.py):

- a connection error before any session, e.g. on a `bind ... accept-proxy`:
  `127.50.0.3:54211 [02/Dec/2026:11:20:35.953] fe_smtp/1: Received something which does not look like a PROXY protocol header`
  (texts from `conn_err_code_str()`, src/connection.c in haproxy/haproxy);
- the TCP (`option tcplog`) and HTTP (`option httplog`) session logs:
  `1.2.3.4:1 [02/Dec/2026:11:20:28.061] fe_smtp be/s1 1/-1/3006 0 SC 1/1/0/0/3 0/0`;
- anything else after a `haproxy[pid]:` tag (start-up, server state) is kept as
  `haproxy.message`.

The accept date has no zone: `assume_tz` is applied, unless the RFC 5424 stamp gives one.
"""

from __future__ import annotations

import re
from datetime import datetime, tzinfo

from proxydiag.logs.event import FieldValue, LogEvent

SOURCE = "haproxy"
MONTHS = {name: number for number, name in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1)}
RFC5424 = re.compile(r"<\d{1,3}>1 (?P<ts>\S+) \S+ (?P<app>\S+) \S+ \S+ (?:-|\[.*?\]) ?(?P<msg>.*)$")
RFC3164 = re.compile(
    r"(?:<\d{1,3}>)?(?:(?P<bsd>[A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2})|(?P<iso>\d{4}-\d{2}-\d{2}T\S+))"
    r" (?:(?P<host>[^\s\[\]:]+) )?(?P<tag>[A-Za-z0-9_.-]+)(?:\[\d+\])?: (?P<msg>.*)$"
)
CLIENT_AND_DATE = r"(?P<ip>[0-9A-Fa-f:.]+):(?P<port>\d{1,5}) \[(?P<date>\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2}(?:\.\d+)?)\] "
CONNECTION_ERROR = re.compile(CLIENT_AND_DATE + r"(?P<frontend>[^\s/]+)/(?P<bind>\S+): (?P<error>.+)$")
SESSION = re.compile(
    CLIENT_AND_DATE + r"(?P<frontend>\S+) (?P<backend>[^\s/]+)/(?P<server>\S+) (?P<timers>[-\d/+]+) (?P<rest>.*)$"
)
TERMINATION = re.compile(r"(?:^|\s)(?P<state>[-A-Za-z]{2}(?:[-A-Za-z]{2})?) \d+/\d+/\d+/\d+/\+?\d+ \d+/\d+")
ACCEPT_DATE = re.compile(r"(\d{2})/([A-Z][a-z]{2})/(\d{4}):(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?$")

# conn_err_code_str() of src/connection.c: the errors of a listener reading a PROXY header.
PROXY_ERRORS = {
    "Received something which does not look like a PROXY protocol header": "haproxy.proxy-not-header",
    "Connection closed while waiting for PROXY protocol header": "haproxy.proxy-empty",
    "Connection error while waiting for PROXY protocol header": "haproxy.proxy-abort",
    "Timeout while waiting for PROXY protocol header": "haproxy.proxy-timeout",
    "Truncated PROXY protocol header received": "haproxy.proxy-truncated",
    "Received an invalid PROXY protocol header": "haproxy.proxy-bad-header",
    "Received an unhandled protocol in the PROXY protocol header": "haproxy.proxy-bad-protocol",
}


def strip_envelope(line: str) -> tuple[str, datetime | None, str | None]:
    """(message, the envelope's timestamp, its tag) with the syslog envelope removed."""
    match = RFC5424.match(line)
    if match:
        return match.group("msg"), _iso(match.group("ts")), match.group("app")
    match = RFC3164.match(line)
    if match:
        stamp = _iso(match.group("iso")) if match.group("iso") else None
        return match.group("msg"), stamp, match.group("tag")
    return line, None, None


def parse_line(line: str, file: str, number: int, assume_tz: tzinfo) -> LogEvent | None:
    """One HAProxy log line as an event; None when it is not one."""
    text = line.rstrip("\r\n")
    message, envelope_ts, tag = strip_envelope(text)
    zone = envelope_ts.tzinfo if envelope_ts is not None and envelope_ts.tzinfo is not None else None
    for pattern, build in ((CONNECTION_ERROR, _connection_error), (SESSION, _session)):
        match = pattern.match(message)
        if match:
            event, fields = build(match)
            timestamp = accept_date(match.group("date"), zone or assume_tz)
            if timestamp is None:
                return None
            return LogEvent(timestamp, SOURCE, event, fields, line, file, number, tz_assumed=zone is None)
    if tag is not None and tag.lower().startswith("haproxy"):
        return LogEvent(envelope_ts, SOURCE, "haproxy.message", {"message": message}, line, file, number,
                        tz_assumed=envelope_ts is None)
    return None


def _connection_error(match: re.Match[str]) -> tuple[str, dict[str, FieldValue]]:
    error = match.group("error").rstrip(".")
    event = PROXY_ERRORS.get(error, "haproxy.connection-error")
    return event, {"client": match.group("ip"), "client_port": int(match.group("port")),
                   "frontend": match.group("frontend"), "bind": match.group("bind"), "error": error}


def _session(match: re.Match[str]) -> tuple[str, dict[str, FieldValue]]:
    fields: dict[str, FieldValue] = {
        "client": match.group("ip"), "client_port": int(match.group("port")), "frontend": match.group("frontend"),
        "backend": match.group("backend"), "server": match.group("server"), "timers": match.group("timers"),
    }
    termination = TERMINATION.search(match.group("rest"))
    if termination:
        fields["termination"] = termination.group("state")
    return "haproxy.session", fields


def accept_date(text: str, zone: tzinfo) -> datetime | None:
    """HAProxy's `%t` (`02/Dec/2026:11:20:35.953`) in the given zone."""
    match = ACCEPT_DATE.match(text)
    if not match or match.group(2) not in MONTHS:
        return None
    day, _month, year, hour, minute, second, fraction = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    try:
        return datetime(int(year), MONTHS[match.group(2)], int(day), int(hour), int(minute), int(second), micro,
                        tzinfo=zone)
    except ValueError:
        return None


def format_connection_error(event: LogEvent) -> str:
    """The raw (`log stdout format raw`) line of a connection error: `parse_line` reads it back."""
    stamp = event.timestamp
    assert stamp is not None
    date = f"{stamp.day:02d}/{list(MONTHS)[stamp.month - 1]}/{stamp.year}:{stamp:%H:%M:%S}.{stamp.microsecond // 1000:03d}"
    fields = event.fields
    return f"{fields['client']}:{fields['client_port']} [{date}] {fields['frontend']}/{fields['bind']}: {fields['error']}"


def _iso(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
