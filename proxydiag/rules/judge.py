"""Every rule over every connection, once each, in flat memory.

The connections come in the order of a clock (when they started, for a capture file;
when they ended, live). Each is judged once the clock has moved `LOOKAHEAD` past it, so
that the other legs of its conversation are in the window of legs by then; connections
leave the window `LOOKBACK` later, or sooner when the window is full. Hits are folded
into findings as they come: a finding keeps its first hit, the first connections it
cites and a count, never all its connections."""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field, replace

from proxydiag.configs.model import Route
from proxydiag.configs.stalwart import StalwartConfig
from proxydiag.facts.correlate import RELAY_WINDOW, LegIndex
from proxydiag.facts.expectations import ExpectationResolver
from proxydiag.facts.model import Connection, FlowTableBounds, InputSummary
from proxydiag.rules.base import MAX_CITED_CONNECTIONS, SEVERITIES, Context, Finding, Hit, Options, Rule
from proxydiag.rules.finding import make_finding, severity_of
from proxydiag.rules.registry import ALL_RULES, recognise_proxy
from proxydiag.rules.tally import Tally

LOOKAHEAD = RELAY_WINDOW + 1.0  # a relayed leg starts within the relay window (plus 1 s of clock skew)
LOOKBACK = 30.0  # how long after a client connected its proxy may open the leg onwards
MAX_WINDOW = 8_192  # connections held for matching legs (about 7 KB each), whatever the clock says
SET_LIMIT = 4_096  # past this, a finding counts its connections in a bitmap

Clock = Callable[[Connection], float]
# A finding just raised (True) or grown, the connection of the hit, how many connections it added.
OnHit = Callable[["Finding", bool, "Connection | None", int], None]
# A connection (its number) is one of a finding's (code, severity): every one, not only those cited.
OnCite = Callable[[str, str, int], None]


def by_start(conn: Connection) -> float:
    return conn.start_ts


def by_end(conn: Connection) -> float:
    return conn.last_ts if conn.last_ts is not None else conn.start_ts


class Judge:
    def __init__(self, tally: Tally, options: Options, config: StalwartConfig | None = None,
                 inputs: list[InputSummary] | None = None, flow_table: FlowTableBounds | None = None,
                 clock: Clock = by_start, on_hit: OnHit | None = None,
                 on_judged: Callable[[Connection], None] | None = None, on_cite: OnCite | None = None,
                 proxy_routes: tuple[Route, ...] = ()) -> None:
        self.ctx = Context(
            tally=tally,
            expectations=tally.expectations,
            options=options,
            config=config,
            legs=LegIndex(tally.proxies),
            inputs=inputs if inputs is not None else [],
            flow_table=flow_table if flow_table is not None else FlowTableBounds(),
            proxy_routes=proxy_routes,
        )
        self.clock = clock
        self.collector = FindingCollector(on_hit, on_cite, self.ctx.legs)
        self.on_judged = on_judged
        self.window: deque[Connection] = deque()
        self.pending: deque[Connection] = deque()
        self.judged = 0

    def add(self, conn: Connection) -> None:
        """A connection, in the order of the clock."""
        legs = self.ctx.legs
        assert legs is not None
        self.window.append(conn)
        self.pending.append(conn)
        legs.add(conn)
        self.advance(self.clock(conn))

    def advance(self, now: float) -> None:
        """The clock reads `now`: what waited long enough for its partners is judged (live,
        the clock also moves when no connection ends)."""
        while self.pending and self.clock(self.pending[0]) + LOOKAHEAD < now:
            self._judge(self.pending.popleft())
        self._shrink(now)

    def _shrink(self, now: float) -> None:
        legs = self.ctx.legs
        assert legs is not None
        while self.window and (len(self.window) > MAX_WINDOW or self.clock(self.window[0]) + LOOKBACK < now):
            oldest = self.window[0]
            if self.pending and self.pending[0] is oldest:
                if len(self.window) <= MAX_WINDOW:
                    return  # still waiting for its partners
                self._judge(self.pending.popleft())  # the window is full: judged with what is there
            legs.remove(self.window.popleft())

    def _judge(self, conn: Connection) -> None:
        conn.expectation = self.ctx.expectations.for_connection(conn)
        for rule in ALL_RULES:
            for hit in rule.check(conn, self.ctx):
                self.collector.add(rule, hit, 0)
        self.judged += 1
        if self.on_judged is not None:
            self.on_judged(conn)

    def findings(self) -> list[Finding]:
        """Judge what is still waiting, add what only the whole can show, and say it."""
        while self.pending:
            self._judge(self.pending.popleft())
        for rule in ALL_RULES:
            for hit in rule.finish(self.ctx):
                self.collector.add(rule, hit, 1)
        return self.collector.findings()


def judge_all(connections: Iterable[Connection], tally: Tally, options: Options, config: StalwartConfig | None = None,
              inputs: list[InputSummary] | None = None, flow_table: FlowTableBounds | None = None,
              on_judged: Callable[[Connection], None] | None = None, on_cite: OnCite | None = None,
              proxy_routes: tuple[Route, ...] = ()) -> list[Finding]:
    """The findings of connections given in the order they started, `tally` having seen them all
    (and the routes of the proxy configurations given, where there are some)."""
    judge = Judge(tally, options, config, inputs, flow_table, on_judged=on_judged, on_cite=on_cite,
                  proxy_routes=proxy_routes)
    for conn in connections:
        judge.add(conn)
    return judge.findings()


def tally_of(connections: Iterable[Connection], resolver: ExpectationResolver, options: Options) -> Tally:
    """The first pass over connections at hand."""
    tally = Tally(resolver, options.greeting_timeout)
    for conn in connections:
        tally.observe(conn, conn.tcp.dst_port in options.services)
    return tally


class ConnectionIds:
    """Distinct connection numbers: a set while few, a bitmap when many."""

    def __init__(self) -> None:
        self.few: set[int] | None = set()
        self.bits = bytearray()
        self.count = 0

    def add(self, number: int) -> bool:
        """Add one; False if it was there already."""
        if self.few is not None:
            if number in self.few:
                return False
            self.few.add(number)
            self.count += 1
            if len(self.few) > SET_LIMIT:
                few, self.few = self.few, None
                for each in few:
                    self._set(each)
            return True
        if self._has(number):
            return False
        self._set(number)
        self.count += 1
        return True

    def _has(self, number: int) -> bool:
        byte = number >> 3
        return byte < len(self.bits) and bool(self.bits[byte] & (1 << (number & 7)))

    def _set(self, number: int) -> None:
        byte = number >> 3
        if byte >= len(self.bits):
            self.bits.extend(bytes(byte + 1 - len(self.bits) + len(self.bits) // 2))
        self.bits[byte] |= 1 << (number & 7)


@dataclass
class Group:
    """The hits of one rule on one group (usually a server endpoint), folded as they come."""

    rule: Rule
    hit: Hit  # the first hit, in report order; its connections let go
    order: tuple[int, int, int]  # (phase, first connection, arrival)
    cited: list[tuple[int, int | None, str | None]] = field(default_factory=list)  # a heap of (-id, frame, proxy)
    ids: ConnectionIds = field(default_factory=ConnectionIds)
    legs: list[int] = field(default_factory=list)  # the conversation of the first hit's connection
    named: str | None = None  # the proxy that conversation's legs name (its own words, its Server header)

    def cite(self, conn: Connection) -> None:
        if not self.ids.add(conn.id):
            return
        entry = (-conn.id, conn.first_frame, recognise_proxy(conn))
        if len(self.cited) < MAX_CITED_CONNECTIONS:
            heapq.heappush(self.cited, entry)
        elif entry > self.cited[0]:
            heapq.heapreplace(self.cited, entry)

    def finding(self) -> Finding:
        cited = sorted((-negative, frame, proxy) for negative, frame, proxy in self.cited)
        first = self.hit
        return make_finding(
            self.rule.code, first.message, first.evidence,
            connections=[number for number, _, _ in cited],
            frames=[frame for _, frame, _ in cited],
            count=self.ids.count,
            lowered=first.lowered,
            escalated=first.escalated,
            proxy=first.proxy or next((proxy for _, _, proxy in cited if proxy), None) or self.named,
            legs=self.legs,
        )


class FindingCollector:
    def __init__(self, on_hit: OnHit | None = None, on_cite: OnCite | None = None,
                 legs: LegIndex | None = None) -> None:
        self.groups: dict[tuple[str, Hashable, str | None, bool], Group] = {}
        self.on_hit = on_hit
        self.on_cite = on_cite
        self.legs = legs  # the window of legs, for the conversation of each finding's first hit
        self.sequence = 0

    def add(self, rule: Rule, hit: Hit, phase: int) -> None:
        key = (rule.code, hit.group, hit.lowered, hit.escalated)
        self.sequence += 1
        order = (phase, hit.connections[0].id if hit.connections else 0, self.sequence)
        group = self.groups.get(key)
        raised = group is None
        if group is None:
            legs, named = self._legs_of(hit)
            group = self.groups[key] = Group(rule, replace(hit, connections=[]), order, legs=legs, named=named)
        elif order < group.order:
            group.hit, group.order = replace(hit, connections=[]), order
            group.legs, group.named = self._legs_of(hit)
        before = group.ids.count
        for conn in hit.connections:
            group.cite(conn)
        if self.on_cite is not None:
            for conn in hit.connections:
                self.on_cite(rule.code, severity_of(rule.code, hit.lowered, hit.escalated), conn.id)
        if self.on_hit is not None:
            self.on_hit(group.finding(), raised, hit.connections[0] if hit.connections else None, group.ids.count - before)

    def _legs_of(self, hit: Hit) -> tuple[list[int], str | None]:
        """The connections of the conversation the hit's first connection belongs to, as
        far as the window of legs matches them, and the proxy they name (computed only when
        a group's first hit changes: rarely, hits come in the order connections started)."""
        if not hit.connections:
            return [], None
        first = hit.connections[0]
        hops = self.legs.conversation(first) if self.legs is not None else [first]
        return [hop.id for hop in hops], recognise_proxy(first, hops)

    def findings(self) -> list[Finding]:
        findings = [group.finding() for group in self.groups.values()]
        findings.sort(key=lambda finding: (SEVERITIES.index(finding.severity), finding.note, finding.code, finding.connections[:1]))
        return findings

