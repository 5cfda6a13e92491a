"""Log events judged: the findings of the catalog that log lines show.

| evidence | finding |
|---|---|
| Stalwart `network.proxy-error`, reason `end of stream` / `invalid proxy header` | PD101 (a trusted peer sent no valid header; `invalid` may also be PD103) |
| the same errors repeating at a fixed period on one listener (from one address, where the line names it) | PD403: a proxy's health checks, not clients |
| `*.connection-start` whose `remoteIp` is a proxy (`--proxy-address`) | PD201 |
| one `remoteIp` behind (nearly) every connection of a listener | PD202, and that address is taken for a proxy |
| `security.ip-blocked` / `security.*-ban` of a proxy's address | PD401, with the log split before/after the ban |
| `smtp.mail-from-unauthenticated` on an SMTP listener not on port 25, or a quoted `503 5.5.1 You must authenticate first.` | PD209 |
| `http.x-forwarded-missing` | PD501 |
| HAProxy `Received something which does not look like a PROXY protocol header` (and closed/timeout/truncated while waiting for one) | PD109 |
| HAProxy `Received an invalid PROXY protocol header`, `... unhandled protocol ...` | PD103 |
| nginx `broken header: "..." while reading PROXY protocol` (bytes that are no header), timeouts and closes while reading it | PD109 |
| nginx `broken header` quoting a `PROXY ...` line | PD103 |

Why: Stalwart reads a header only from trusted peers (crates/common/src/network/listen.rs)
and logs `network.proxy-error` with the `proxy-header` crate's io error: "end of stream"
when the peer closed before a whole header, "invalid proxy header" when its bytes do not
parse (crates.io proxy-header 0.1, src/io.rs). The findings carry no connections: their
evidence is the log lines themselves (file:line), counted per listener and per source.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from proxydiag.facts.hop import Hop
from proxydiag.facts.log_hops import (
    ban_hop,
    client_without_header_hop,
    is_client_without_header,
    is_missing_header_error,
    listener_of,
    malformed_header_hop,
    missing_header_hop,
    mx_hop,
    normal_address,
    source_of,
)
from proxydiag.jsontypes import JsonDict
from proxydiag.logs.event import LogEvent
from proxydiag.logs.masking import mask_log_text
from proxydiag.rules.base import SEVERITIES, Finding
from proxydiag.rules.finding import make_finding
from proxydiag.rules.hops import (
    EXPECTS_HEADER_FROM_CLIENT,
    HEALTH_CHECK_WITHOUT_HEADER,
    MALFORMED_HEADER,
    MISSING_HEADER,
    MX_PORT_REMAPPED,
    SERVER_REJECTED,
    HopRule,
    judge_hops,
)
from proxydiag.rules.said import Names, Said
from proxydiag.services import DEFAULT_TABLE

MAX_QUOTED = 5
MAX_QUOTE_CHARS = 300
CONNECTION_STARTS = frozenset({"smtp.connection-start", "imap.connection-start", "pop3.connection-start",
                               "manage-sieve.connection-start", "http.connection-start"})
BANS = frozenset({"security.authentication-ban", "security.abuse-ban", "security.scan-ban", "security.loiter-ban"})
# Health checks come at the checker's interval (HAProxy `inter` 2 s, Traefik, cloud balancers
# 5-30 s): at least this many errors whose gaps all stay within PERIOD_TOLERANCE of their median.
MIN_PERIODIC = 4
PERIOD_TOLERANCE = 0.15
HAPROXY_MALFORMED_HEADER = frozenset({"haproxy.proxy-bad-header", "haproxy.proxy-bad-protocol"})
SUBMISSION_PORTS = frozenset({587, 465})


@dataclass(frozen=True)
class LogOptions:
    proxy_addresses: frozenset[str] = frozenset()
    min_connections: int = 5  # connections a listener needs before one address can dominate it
    dominance: float = 0.9  # the share of a listener's connections that makes an address its proxy


@dataclass
class LogVerdict:
    findings: list[Finding]
    per_listener: dict[str, int]
    per_source: dict[str, int]
    proxy_addresses: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> JsonDict:
        return {"per_listener": self.per_listener, "per_source": self.per_source,
                "proxy_addresses": self.proxy_addresses}


def judge(events: list[LogEvent], options: LogOptions = LogOptions()) -> LogVerdict:
    given = {normal_address(address) for address in options.proxy_addresses}
    inferred = dominant_addresses(events, options) - given
    proxies = given | inferred
    findings = [
        *_proxy_errors(events),
        *_client_is_proxy(events, given, inferred),
        *_bans(events, proxies, inferred),
        *_mx_needs_auth(events),
        *_forwarded_missing(events),
        *_proxy_waits_for_header(events),
    ]
    findings.sort(key=lambda item: (SEVERITIES.index(item.severity), item.code, item.message))
    return LogVerdict(
        findings=findings,
        per_listener=_count(events, listener_of, limit=None),
        per_source=_count(events, source_of, limit=None),
        proxy_addresses={"given": sorted(given), "inferred": sorted(inferred)},
    )


def dominant_addresses(events: Iterable[LogEvent], options: LogOptions) -> set[str]:
    """Addresses behind nearly every connection of a Stalwart listener: a proxy whose
    header was missing, ignored or carried no address."""
    by_listener: dict[str | None, Counter[str]] = defaultdict(Counter)
    for event in events:
        if event.event in CONNECTION_STARTS or event.event == "security.ip-blocked":
            source = source_of(event)
            if source:
                by_listener[listener_of(event)][source] += 1
    dominant = set()
    for counts in by_listener.values():
        total = sum(counts.values())
        address, top = counts.most_common(1)[0]
        if total >= options.min_connections and top / total >= options.dominance:
            dominant.add(address)
    return dominant


def _proxy_errors(events: list[LogEvent]) -> Iterable[Finding]:
    errors = [event for event in events if is_missing_header_error(event)]
    for group in _by(errors, listener_of).values():
        period = periodic(group)
        evidence: JsonDict = {"period_seconds": period} if period is not None else {"reasons": dict(Counter(
            mask_log_text(event.text("reason") or "", all_client=True) for event in group))}
        yield from _hop_finding((MISSING_HEADER, HEALTH_CHECK_WITHOUT_HEADER), missing_header_hop(group, period), group,
                                evidence)


def _hop_finding(rules: tuple[HopRule, ...], hop: Hop, group: list[LogEvent], evidence: JsonDict,
                 proxy: str | None = None) -> Iterable[Finding]:
    for hit in judge_hops([hop], rules):
        yield _finding(hit.code, group, hit.said, evidence, inferred=hit.lowered == "inferred", proxy=proxy)


def periodic(group: list[LogEvent]) -> float | None:
    """The fixed period (seconds) at which these events repeat, or None: health checks come like
    clockwork, clients do not."""
    stamps = sorted(event.timestamp.timestamp() for event in group if event.timestamp is not None)
    if len(stamps) < MIN_PERIODIC:
        return None
    gaps = sorted(later - earlier for earlier, later in zip(stamps, stamps[1:]))
    median = gaps[len(gaps) // 2]
    if median < 1 or any(abs(gap - median) > PERIOD_TOLERANCE * median for gap in gaps):
        return None
    return round(median, 1)


LOG_SENTENCES = {
    "proxy-as-client": "Stalwart's listener {listener} sees the proxy {address} as the client of {count} connection(s): "
                       "the PROXY header was missing, ignored or carried no address.",
    "one-address": "Every connection Stalwart's listener {listener} logs comes from {address} ({count}): a proxy or NAT "
                   "whose clients' addresses are lost (give it with --proxy-address to be sure).",
    "forwarded-missing": "Stalwart's HTTP listener {listener} takes client addresses from X-Forwarded-For, but {count} "
                         "request(s) carried none: the proxy in front does not set it.",
    "malformed-headers": "{software} received {count} malformed PROXY header(s) on {listener}.",
}


@dataclass(frozen=True)
class LogSaid(Said):
    """What the lines of one listener say (`kind`: one of LOG_SENTENCES): the listener in its
    log's words, how many lines, the address they name, the software that wrote them."""

    kind: str
    listener: str
    count: int
    address: str = ""
    software: str = ""

    def message(self, names: Names) -> str:
        return LOG_SENTENCES[self.kind].format(listener=names.text(self.listener), count=self.count,
                                               address=names.address(self.address) if self.address else "",
                                               software=self.software)


def _client_is_proxy(events: list[LogEvent], given: set[str], inferred: set[str]) -> Iterable[Finding]:
    starts = [event for event in events if event.event in CONNECTION_STARTS and source_of(event) in given | inferred]
    for listener, group in _by(starts, listener_of).items():
        address = source_of(group[0])
        if address in given:
            yield _finding("PD201", group, LogSaid("proxy-as-client", listener, len(group), address or ""), {})
        else:
            yield _finding("PD202", group, LogSaid("one-address", listener, len(group), address or ""), {}, inferred=True)


def _bans(events: list[LogEvent], proxies: set[str], inferred: set[str]) -> Iterable[Finding]:
    blocked = [event for event in events
               if (event.event == "security.ip-blocked" or event.event in BANS) and source_of(event) in proxies]
    for address, group in _by(blocked, source_of).items():
        ban = next((event for event in group if event.event in BANS), group[0])
        yield from _hop_finding((SERVER_REJECTED,), ban_hop(group, address, address in inferred), group,
                                {"timeline": timeline(events, ban, address)})


def timeline(events: list[LogEvent], split: LogEvent, address: str | None) -> JsonDict:
    """What the log shows before and after the event that split it (a ban)."""
    def counts(part: list[LogEvent]) -> dict[str, int]:
        return dict(Counter(event.event for event in part
                            if source_of(event) == address or event.event == "network.proxy-error").most_common())

    before = [event for event in events if _before(event, split)]
    after = [event for event in events if event is not split and not _before(event, split)]
    return {"split_at": split.timestamp.isoformat() if split.timestamp else None, "split_by": quote(split),
            "before": counts(before), "after": counts(after)}


def _before(event: LogEvent, split: LogEvent) -> bool:
    if event.timestamp is not None and split.timestamp is not None:
        return event.timestamp < split.timestamp
    return (event.file, event.line) < (split.file, split.line)


def _mx_needs_auth(events: list[LogEvent]) -> Iterable[Finding]:
    stalwart = [event for event in events if event.event == "smtp.mail-from-unauthenticated" and _mx_listener(event)]
    for group in _by(stalwart, listener_of).values():
        yield from _hop_finding((MX_PORT_REMAPPED,), mx_hop(group), group, {})
    quoted = [event for event in events if event.event == "smtp.reply-authenticate-first"]
    if quoted:
        yield from _hop_finding((MX_PORT_REMAPPED,), mx_hop(quoted, listener_known=False), quoted, {})


def _mx_listener(event: LogEvent) -> bool:
    port = event.number("localPort")
    name = (event.text("listenerId") or "").lower()
    if port is None or port == 25 or "sub" in name:
        return False
    service = DEFAULT_TABLE.lookup(port)
    return service is None or service.public_port not in SUBMISSION_PORTS


def _forwarded_missing(events: list[LogEvent]) -> Iterable[Finding]:
    missing = [event for event in events if event.event == "http.x-forwarded-missing"]
    for listener, group in _by(missing, listener_of).items():
        yield _finding("PD501", group, LogSaid("forwarded-missing", listener, len(group)), {})


def _proxy_waits_for_header(events: list[LogEvent]) -> Iterable[Finding]:
    """A proxy's front that requires a header: clients without one (PD109), malformed headers (PD103)."""
    for (missing, proxy, _listener), group in _by_proxy_front(events).items():
        kinds = {"kinds": dict(Counter(_kind(event) for event in group))}
        if missing:
            yield from _hop_finding((EXPECTS_HEADER_FROM_CLIENT,), client_without_header_hop(group), group, kinds, proxy)
        elif MALFORMED_HEADER.applies(malformed_header_hop(group)):
            said = LogSaid("malformed-headers", listener_of(group[0]) or "?", len(group), software=proxy)
            yield _finding(MALFORMED_HEADER.code, group, said, kinds, proxy=proxy)


def _by_proxy_front(events: list[LogEvent]) -> dict[tuple[bool, str, str | None], list[LogEvent]]:
    """A proxy's header errors per front listener: clients that sent none, or malformed ones."""
    grouped: dict[tuple[bool, str, str | None], list[LogEvent]] = defaultdict(list)
    for event in events:
        missing = is_client_without_header(event)
        if missing or event.event in HAPROXY_MALFORMED_HEADER or event.event == "nginx.broken-header":
            proxy = "HAProxy" if event.source == "haproxy" else "nginx"
            grouped[(missing, proxy, listener_of(event))].append(event)
    return grouped


def _kind(event: LogEvent) -> str:
    said = event.text("error") or event.text("reason")
    if said:
        return mask_log_text(said, all_client=True)
    data = mask_log_text(str(event.fields.get("data", "")), all_client=True)
    return "broken header: " + (printable(data[:24]) or "(nothing)")


def _finding(code: str, group: list[LogEvent], message: Said, evidence: JsonDict, inferred: bool = False,
             proxy: str | None = None) -> Finding:
    return make_finding(
        code, message,
        {
            "log_lines": [quote(event) for event in group[:MAX_QUOTED]],
            "count": len(group),
            **evidence,
            "per_listener": _count(group, listener_of),
            "per_source": _count(group, source_of),
            "first_seen": _time(group, min),
            "last_seen": _time(group, max),
        },
        count=len(group),
        lowered="inferred" if inferred else None,
        proxy=proxy,
    )


def quote(event: LogEvent) -> str:
    """The log line as evidence: where it is, and its text with every credential in what
    it quotes of a client masked and every control character shown as an escape (a log line
    is data, never terminal control)."""
    text = printable(mask_log_text(event.raw))
    if len(text) > MAX_QUOTE_CHARS:
        text = text[:MAX_QUOTE_CHARS] + "..."
    return f"{event.where()}: {text}"


def printable(text: str) -> str:
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def _by(events: Iterable[LogEvent], key: Callable[[LogEvent], str | None]) -> dict[str, list[LogEvent]]:
    grouped: dict[str, list[LogEvent]] = defaultdict(list)
    for event in events:
        grouped[key(event) or "?"].append(event)
    return dict(grouped)


def _count(events: list[LogEvent], key: Callable[[LogEvent], str | None], limit: int | None = 5) -> dict[str, int]:
    return dict(Counter(value for value in map(key, events) if value).most_common(limit))


def _time(events: list[LogEvent], pick: Callable[[list[datetime]], datetime]) -> str | None:
    stamps = [event.timestamp for event in events if event.timestamp is not None]
    return pick(stamps).isoformat() if stamps else None
