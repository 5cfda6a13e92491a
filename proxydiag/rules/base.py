"""The pieces every rule is made of: a `Rule` with its code, slug and severity, the
`Hit`s it produces, and the `Finding`s that reports show (hits of one rule grouped
per server endpoint)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Hashable, Iterable, Literal, get_args

from proxydiag.configs.model import Route
from proxydiag.configs.stalwart import StalwartConfig
from proxydiag.facts.expectations import ExpectationResolver
from proxydiag.facts.model import Connection, Expectation, FlowTableBounds, InputSummary
from proxydiag.jsontypes import JsonDict
from proxydiag.rules import catalog, said
from proxydiag.rules.said import AS_THEY_ARE, Names, Said
from proxydiag.services import DEFAULT_TABLE, ServiceTable

if TYPE_CHECKING:
    from proxydiag.facts.correlate import LegIndex
    from proxydiag.rules.tally import Tally

SEVERITIES = ("error", "warning", "info")
MAX_CITED_CONNECTIONS = 20
HEALTH_CHECK_SECONDS = 1.0  # a connect-only check opens and closes within this
Lowered = Literal[
    "inferred",  # what the listener expects (or who the proxy is) was guessed, not given
    "local test",  # a client on the proxy host: the situation, not a fault
    "accepted by Stalwart",  # a malformed header Stalwart's own reader takes anyway
    "mixed versions",  # v1 and v2 on one endpoint, with no expectation given
    "conditional",  # a probe's answer that hurts only once a proxy of another kind is in front
]
LOWERED_REASONS: tuple[str, ...] = get_args(Lowered)
# Reasons that make a finding context rather than a fault: shown after the findings of its
# severity, without a fix.
NOTE_REASONS = frozenset({"local test", "accepted by Stalwart", "mixed versions"})


def page_of(code: str) -> catalog.Page:
    """The code's page; a code without one is a programming error, not a user's."""
    page = catalog.load_pages().get(code)
    if page is None or page.severity not in SEVERITIES:
        raise LookupError(f"{code} has no page with a severity in proxydiag/findings")
    return page


def lower(severity: str) -> str:
    """One step down: how sure we are matters as much as what we saw."""
    return {"error": "warning", "warning": "info"}.get(severity, "info")


@dataclass
class Options:
    """Thresholds and facts given on the command line."""

    min_connections: int = 5
    header_delay: float = 1.0
    greeting_timeout: float = 5.0
    internal_clients: bool = False
    services: ServiceTable = DEFAULT_TABLE


@dataclass
class Hit:
    """One rule firing on one connection (or one endpoint for aggregate rules)."""

    message: Said
    connections: list[Connection] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)
    group: Hashable = None  # hits with the same rule and group become one finding
    lowered: Lowered | None = None  # why the page's severity is lowered one step, if it is
    escalated: bool = False  # one step up, where the page says when
    proxy: str | None = None  # the proxy software recognised, for the fix to print


@dataclass
class Finding:
    code: str
    slug: str
    severity: str
    message: str
    connections: list[int]
    frames: list[int | None]
    count: int
    evidence: dict[str, Any]
    fix: str | None = None  # None: the page's fix for `proxy`, chosen when the report is told
    inferred: bool = False
    severity_lowered: Lowered | None = None  # why the severity is below the page's
    doc: str = ""
    proxy: str | None = None  # the proxy software recognised, whose fix the report prints
    note: bool = False  # context rather than a fault (a local test): no fix to print
    legs: list[int] = field(default_factory=list)  # the first hit's conversation, its hops client first
    said: Said | None = None  # what the rule said, typed: `message` is it told as it is

    def message_for(self, names: Names = AS_THEY_ARE) -> str:
        """The sentence, its addresses, names and quoted text through `names`."""
        return self.said.message(names) if self.said is not None else self.message

    def to_dict(self) -> JsonDict:
        return {
            "code": self.code,
            "slug": self.slug,
            "severity": self.severity,
            "message": self.message,
            "connections": self.connections,
            "first_frames": self.frames,
            "count": self.count,
            "inferred": self.inferred,
            "severity_lowered": self.severity_lowered,
            "evidence": self.evidence,
            "fix": self.fix,
            "proxy": self.proxy,
            "note": self.note,
            "doc": self.doc,
            "legs": self.legs,
        }


@dataclass
class Context:
    """What the rules may consult besides the connection itself."""

    tally: Tally  # what the first pass counted over every connection
    expectations: ExpectationResolver
    options: Options
    config: StalwartConfig | None = None
    legs: LegIndex | None = None
    inputs: list[InputSummary] = field(default_factory=list)
    flow_table: FlowTableBounds = field(default_factory=FlowTableBounds)
    cache: dict[str, Any] = field(default_factory=dict)  # what several rules compute once
    proxy_routes: tuple[Route, ...] = ()  # of the proxy configurations given with the evidence

    def expectation(self, conn: Connection) -> Expectation | None:
        """What the listener expects of this connection (`judge` resolves it once for all)."""
        return conn.expectation


class Rule:
    """A finding of the catalog. Subclasses set the code (slug and severity are its
    page's), and implement `check` (per connection) and/or `finish` (over the whole analysis)."""

    code: str = ""

    @property
    def slug(self) -> str:
        return page_of(self.code).slug

    @property
    def severity(self) -> str:
        return page_of(self.code).severity

    def check(self, conn: Connection, ctx: Context) -> Iterable[Hit]:
        return ()

    def finish(self, ctx: Context) -> Iterable[Hit]:
        return ()


def implicit_tls_listener(conn: Connection, ctx: Context) -> bool:
    """The listener wants TLS from the first byte: the Stalwart configuration says so
    where it knows the listener, else the service table (`Connection.implicit_tls_expected`)."""
    if ctx.config is not None:
        listener = ctx.config.listener_for_port(conn.tcp.dst_port)
        if listener is not None:
            return bool(listener.implicit_tls)
    return conn.implicit_tls_expected


def endpoint(conn: Connection) -> tuple[str, int]:
    return conn.tcp.dst_addr, conn.tcp.dst_port


@dataclass(frozen=True)
class Endpoint:
    """An address and port a hit speaks of, told through `Names` only in a message."""

    address: str
    port: int

    def told(self, names: Names) -> str:
        return said.endpoint(names, self.address, self.port)


def server_endpoint(conn: Connection) -> Endpoint:
    """The leg's listener: where the connection went."""
    return Endpoint(conn.tcp.dst_addr, conn.tcp.dst_port)


def address_or_text(names: Names, value: str) -> str:
    """A value that should be an address (an HTTP forwarding header's): told as an address
    when it is one, else as quoted text."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return names.text(value)
    return names.address(value)


def quoted(names: Names, text: str | None) -> str:
    """Wire, configuration or log text quoted as Python quotes it (`None` when nothing came)."""
    return repr(names.text(text)) if text is not None else repr(None)


def network(names: Names, entry: str) -> str:
    """A trusted-networks entry (`address` or `address/mask`): its address through `names`,
    anything that is not one as quoted text."""
    address, slash, mask = entry.partition("/")
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return names.text(entry)
    return f"{names.address(address)}{slash}{mask}"


def header_hex(conn: Connection, limit: int = 64) -> str:
    from proxydiag.parsers.header_evidence import header_evidence  # only the header's own structure: never the client's bytes

    return header_evidence(conn.header_bytes or b"", limit)
