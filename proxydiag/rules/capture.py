"""PD9xx: about the capture itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from proxydiag.facts.model import Connection
from proxydiag.rules.base import Context, Hit, Rule
from proxydiag.rules.said import Names, Said


@dataclass(frozen=True)
class SnapLengthCut(Said):
    connections: int

    def message(self, names: Names) -> str:
        return f"The snap length cut {self.connections} connection opening(s) short: capture with `tcpdump -s 0`."


@dataclass(frozen=True)
class StartedBeforeCapture(Said):
    connections: int

    def message(self, names: Names) -> str:
        return (f"{self.connections} connection(s) started before the capture: their first bytes, and so their PROXY "
                "headers, are unknown. Start the capture before the connections.")


@dataclass(frozen=True)
class NoMailFound(Said):
    busiest: tuple[tuple[int, int], ...]  # (server port, connections), busiest first

    def message(self, names: Names) -> str:
        ports = ", ".join(f"{port} ({count})" for port, count in self.busiest) or "none"
        return (f"No mail traffic found (no mail port, no mail greeting, no PROXY header). Busiest server ports: {ports}. "
                "Capture on the interface facing the mail server with a filter such as 'tcp port 25 or tcp port 993', "
                "or pass --ports.")


@dataclass(frozen=True)
class InputDamaged(Said):
    path: str
    problem: str  # the reader's account, which may name the file again

    def message(self, names: Names) -> str:
        return f"{names.path(self.path)}: {names.text(self.problem)}; the analysis covers what came before."


@dataclass(frozen=True)
class FlowTableFull(Said):
    half_open: int
    idle: int
    by_cap: int
    dropped: int

    def message(self, names: Names) -> str:
        parts = [
            f"{self.half_open} half-open flows (SYNs never answered: a flood or a scan) dropped unseen"
            if self.half_open else "",
            f"{self.idle} idle flows judged before their end" if self.idle else "",
            f"{self.by_cap} flows let go because the table was full" if self.by_cap else "",
        ]
        return ("The flow table hit its bounds: " + "; ".join(part for part in parts if part) + f" ({self.dropped} flows "
                "never described). The findings cover the rest; memory stayed bounded.")


class CaptureTruncated(Rule):
    code = "PD901"

    def check(self, conn: Connection, ctx: Context) -> Iterator[Hit]:
        if any(side.get("snapped_bytes") for side in conn.reassembly.values()):
            cut = ctx.tally.snapped
            yield Hit(
                SnapLengthCut(cut),
                [conn], {"connections": cut}, group="snaplen",
            )


class MidStream(Rule):
    code = "PD902"

    def check(self, conn: Connection, ctx: Context) -> Iterator[Hit]:
        if conn.mid_stream:
            partial = ctx.tally.mid_stream
            yield Hit(
                StartedBeforeCapture(partial),
                [conn], {"connections": partial}, group="mid-stream",
            )


class NoMailTraffic(Rule):
    code = "PD903"

    def finish(self, ctx: Context) -> Iterator[Hit]:
        tally = ctx.tally
        if not ctx.inputs or (any(item.error for item in ctx.inputs) and not tally.connections):
            return  # no capture given (a configuration check), or none could be read
        if tally.mail:
            return
        busiest = tally.ports.most_common(5)
        yield Hit(
            NoMailFound(tuple(busiest)),
            evidence={"busiest_ports": dict(busiest)}, group="no-mail",
        )


class CaptureDamaged(Rule):
    code = "PD904"

    def finish(self, ctx: Context) -> Iterator[Hit]:
        for item in ctx.inputs:
            if item.damaged:
                yield Hit(InputDamaged(item.path, item.damaged),
                          evidence={"input": item.path, "problem": item.damaged}, group=item.path)


class FlowTableBounded(Rule):
    code = "PD905"

    def finish(self, ctx: Context) -> Iterator[Hit]:
        bounds = ctx.flow_table
        if not bounds.hit:
            return
        yield Hit(
            FlowTableFull(bounds.evicted_half_open, bounds.evicted_idle, bounds.evicted_by_cap, bounds.dropped),
            evidence=bounds.to_dict(), group="flow-table",
        )


RULES = [CaptureTruncated(), MidStream(), NoMailTraffic(), CaptureDamaged(), FlowTableBounded()]
